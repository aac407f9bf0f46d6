// AVX2 kernels (quantized_kernels.h). This file is compiled with -mavx2
// -mfma -mf16c and only called after the CPU was checked; it uses no
// standard-library templates, so no AVX2 code can leak into functions other
// files share.
#include <cstring>

#include "common/x86_intrinsics.h"
#include "experts/quantized_kernels.h"

namespace moe::qk {
namespace {

constexpr int64_t kQuadsPerGroup = kGroup / kQuad;

template <int R, int P>
inline void ZeroAcc(const TileArgs& a) {
  for (int r = 0; r < R; ++r) {
    for (int i = 0; i < 2 * P; ++i) {
      _mm256_storeu_ps(a.acc + r * a.acc_stride + i * 8, _mm256_setzero_ps());
    }
  }
}

// R rows × P panels; each panel is two 8-column vectors. Per quad and row:
// |x| (u8) times sign(w, x) (s8) in pairs to int16 (<= 2 · 127² in
// magnitude, so never saturating), pairs to int32, summed over the group;
// then one fma per sum into the f32 accumulators.
template <int R, int P, bool kPrefetch>
void TileInt8(const TileArgs& a) {
  // The f32 sums live in a.acc (touched once per group): the 16 vector
  // registers hold the group's integer sums, the weights and the inputs.
  if (a.first) ZeroAcc<R, P>(a);
  const __m256i ones = _mm256_set1_epi16(1);
  const uint8_t* wg = a.w;
  const uint8_t* xg = a.x;
  for (int64_t g = 0; g < a.groups; ++g, wg += kInt8GroupBytes, xg += kGroup) {
    __m256i dot[R][2 * P];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
      for (int i = 0; i < 2 * P; ++i) dot[r][i] = _mm256_setzero_si256();
    }
#pragma GCC unroll 1
    for (int qq = 0; qq < kQuadsPerGroup; ++qq) {
      __m256i w[2 * P];
#pragma GCC unroll 4
      for (int j = 0; j < P; ++j) {
        const uint8_t* at = wg + j * a.panel_stride + qq * 64;
        if constexpr (kPrefetch) {
          _mm_prefetch(reinterpret_cast<const char*>(at + a.prefetch_bytes), _MM_HINT_T0);
        }
        w[2 * j] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(at));
        w[2 * j + 1] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(at + 32));
      }
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        int32_t quad;
        std::memcpy(&quad, xg + r * a.x_stride + qq * 4, 4);
        const __m256i xb = _mm256_set1_epi32(quad);
        const __m256i ax = _mm256_sign_epi8(xb, xb);
#pragma GCC unroll 8
        for (int i = 0; i < 2 * P; ++i) {
          const __m256i pairs = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(w[i], xb));
          dot[r][i] = _mm256_add_epi32(dot[r][i], _mm256_madd_epi16(pairs, ones));
        }
      }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m256 scale = _mm256_broadcast_ss(a.x_scale + r * a.scale_stride + g);
#pragma GCC unroll 8
      for (int i = 0; i < 2 * P; ++i) {
        float* at = a.acc + r * a.acc_stride + i * 8;
        _mm256_storeu_ps(
            at, _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot[r][i]), scale, _mm256_loadu_ps(at)));
      }
    }
  }
}

// R rows × P panels, two 8-column vectors per panel. Per block of two
// quads: the nibbles (w + 8, u8 0..15) times x (s8) in pairs to int16, the
// group's eight pair sums per lane added in int16 (<= 8 · 2 · 15 · 127, no
// saturation), then to int32 once per group, corrected by 8 · Σ x and
// fma'd with x_scale · w_scale.
template <int R, int P, bool kPrefetch>
void TileInt4(const TileArgs& a) {
  // The f32 sums live in a.acc (touched once per group): the 16 vector
  // registers hold the group's integer sums, the weights and the inputs.
  if (a.first) ZeroAcc<R, P>(a);
  const __m256i ones = _mm256_set1_epi16(1);
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  const uint8_t* wg = a.w;
  const uint8_t* xg = a.x;
  for (int64_t g = 0; g < a.groups; ++g, wg += kInt4GroupBytes, xg += kGroup) {
    __m256i dot[R][2 * P];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
      for (int i = 0; i < 2 * P; ++i) dot[r][i] = _mm256_setzero_si256();
    }
#pragma GCC unroll 4
    for (int b = 0; b < 4; ++b) {
      __m256i lo[2 * P], hi[2 * P];
#pragma GCC unroll 4
      for (int j = 0; j < P; ++j) {
        const uint8_t* at = wg + j * a.panel_stride + b * 64;
        if constexpr (kPrefetch) {
          _mm_prefetch(reinterpret_cast<const char*>(at + a.prefetch_bytes), _MM_HINT_T0);
        }
#pragma GCC unroll 2
        for (int h = 0; h < 2; ++h) {
          const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(at + 32 * h));
          lo[2 * j + h] = _mm256_and_si256(v, low4);
          hi[2 * j + h] = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
        }
      }
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        int32_t q0, q1;
        std::memcpy(&q0, xg + r * a.x_stride + b * 8, 4);
        std::memcpy(&q1, xg + r * a.x_stride + b * 8 + 4, 4);
        const __m256i x0 = _mm256_set1_epi32(q0), x1 = _mm256_set1_epi32(q1);
#pragma GCC unroll 8
        for (int i = 0; i < 2 * P; ++i) {
          dot[r][i] = _mm256_add_epi16(
              dot[r][i],
              _mm256_add_epi16(_mm256_maddubs_epi16(lo[i], x0), _mm256_maddubs_epi16(hi[i], x1)));
        }
      }
    }
    __m256 w_scale[2 * P];
#pragma GCC unroll 4
    for (int j = 0; j < P; ++j) {
      const uint8_t* scales = wg + j * a.panel_stride + 256;
      // bf16 to f32: the 16 bits on top of a zero low half.
      w_scale[2 * j] = _mm256_castsi256_ps(_mm256_slli_epi32(
          _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(scales))), 16));
      w_scale[2 * j + 1] = _mm256_castsi256_ps(_mm256_slli_epi32(
          _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(scales + 16))),
          16));
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m256i corr = _mm256_set1_epi32(a.x_corr[r * a.scale_stride + g]);
      const __m256 x_scale = _mm256_broadcast_ss(a.x_scale + r * a.scale_stride + g);
#pragma GCC unroll 8
      for (int i = 0; i < 2 * P; ++i) {
        const __m256i d = _mm256_sub_epi32(_mm256_madd_epi16(dot[r][i], ones), corr);
        float* at = a.acc + r * a.acc_stride + i * 8;
        _mm256_storeu_ps(at,
                         _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), _mm256_mul_ps(x_scale, w_scale[i]),
                                         _mm256_loadu_ps(at)));
      }
    }
  }
}

template <WeightFormat F, int R, int P>
void TileFor(const TileArgs& a) {
  if (a.prefetch_bytes != 0) {
    if constexpr (F == WeightFormat::kInt8) {
      TileInt8<R, P, true>(a);
    } else {
      TileInt4<R, P, true>(a);
    }
  } else {
    if constexpr (F == WeightFormat::kInt8) {
      TileInt8<R, P, false>(a);
    } else {
      TileInt4<R, P, false>(a);
    }
  }
}

template <WeightFormat F>
void TileFormat(int rows, int panels, const TileArgs& args) {
  switch (rows) {
    case 1:
      return panels >= 2 ? TileFor<F, 1, 2>(args) : TileFor<F, 1, 1>(args);
    case 2:
      return TileFor<F, 2, 1>(args);
    case 3:
      return TileFor<F, 3, 1>(args);
    default:
      return TileFor<F, 4, 1>(args);
  }
}

// Eight floats to eight int32: nearest even (the default MXCSR mode), then
// clamped to [-127, 127].
inline __m256i QuantizeEight(const float* x, __m256 inv) {
  const __m256i v = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x), inv));
  return _mm256_max_epi32(_mm256_min_epi32(v, _mm256_set1_epi32(127)), _mm256_set1_epi32(-127));
}

// One group of kGroup floats (x) to bytes; returns its scale and sets *sum
// to Σ q.
inline float QuantizeGroup(const float* x, uint8_t* q, int32_t* sum) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256 largest = _mm256_set1_ps(3.40282347e+38f);
  __m256 amax8 = _mm256_setzero_ps();
  __m256 bad8 = _mm256_setzero_ps();
  for (int i = 0; i < kGroup; i += 8) {
    const __m256 v = _mm256_and_ps(_mm256_loadu_ps(x + i), abs_mask);
    amax8 = _mm256_max_ps(amax8, v);
    bad8 = _mm256_or_ps(bad8, _mm256_cmp_ps(v, largest, _CMP_NLE_UQ));  // NaN or inf
  }
  float lanes[8];
  _mm256_storeu_ps(lanes, amax8);
  float amax = 0;
  for (float v : lanes) amax = v > amax ? v : amax;
  const float inv_scalar = 127.0f / amax;
  // A zero group, or one so small (max |x| < 127 / FLT_MAX) that 127 /
  // max overflows: all zeros, scale 0.
  if (_mm256_movemask_ps(bad8) != 0 || !(inv_scalar <= 3.40282347e+38f)) {
    std::memset(q, 0, kGroup);
    *sum = 0;
    return _mm256_movemask_ps(bad8) != 0 ? __builtin_nanf("") : 0.0f;
  }
  const __m256 inv = _mm256_set1_ps(inv_scalar);
  const __m256i a = QuantizeEight(x, inv), b = QuantizeEight(x + 8, inv);
  const __m256i c = QuantizeEight(x + 16, inv), d = QuantizeEight(x + 24, inv);
  // Bytes in order: packing interleaves 128-bit lanes; the permute undoes it.
  const __m256i bytes = _mm256_permutevar8x32_epi32(
      _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d)),
      _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), bytes);
  int32_t s[8];
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(s),
                      _mm256_add_epi32(_mm256_add_epi32(a, b), _mm256_add_epi32(c, d)));
  *sum = s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
  return amax / 127.0f;
}

}  // namespace

int TilePanelsAvx2(WeightFormat, int rows) { return rows <= 1 ? 2 : 1; }

void TileAvx2(WeightFormat format, int rows, int panels, const TileArgs& args) {
  if (format == WeightFormat::kInt8) {
    TileFormat<WeightFormat::kInt8>(rows, panels, args);
  } else {
    TileFormat<WeightFormat::kInt4>(rows, panels, args);
  }
}

void QuantizeRowAvx2(const float* x, int64_t k, int64_t padded_k, int32_t offset, uint8_t* q,
                     float* scale, int32_t* corr) {
  const int64_t groups = padded_k / kGroup;
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t at = g * kGroup;
    float tail[kGroup];
    const float* in = x + at;
    if (at + kGroup > k) {  // the partial (or empty) last groups, zero-padded
      for (int64_t i = 0; i < kGroup; ++i) tail[i] = at + i < k ? x[at + i] : 0.0f;
      in = tail;
    }
    int32_t sum = 0;
    scale[g] = QuantizeGroup(in, q + at, &sum);
    if (offset != 0) corr[g] = offset * sum;
  }
}

void ScaleColumnsAvx2(float* acc, int64_t acc_stride, int64_t rows, int64_t c0, int64_t c1,
                      const float* col_scale) {
  for (int64_t r = 0; r < rows; ++r) {
    float* row = acc + r * acc_stride;
    for (int64_t c = c0; c < c1; c += 8) {
      _mm256_storeu_ps(row + c,
                       _mm256_mul_ps(_mm256_loadu_ps(row + c), _mm256_loadu_ps(col_scale + c)));
    }
  }
}

}  // namespace moe::qk
