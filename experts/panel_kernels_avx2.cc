// AVX2 + FMA panel kernels (panel_kernels.h). This file is compiled with
// -mavx2 -mfma -mf16c and only called after the CPU was checked; it uses
// no standard-library templates, so no AVX2 code can leak into functions
// other files share.
#include <cstring>

#include "common/x86_intrinsics.h"
#include "experts/panel_kernels.h"

namespace moe::panel {
namespace {

// The 16 weights of one panel at one k, as two f32 vectors (columns 0-7
// and 8-15).
template <bool kBf16>
inline void LoadWeights(const void* w, int64_t at, __m256* lo, __m256* hi) {
  if constexpr (kBf16) {
    const __m256i v =
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(w) + at));
    *lo = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
    *hi =
        _mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32(static_cast<int>(0xffff0000u))));
  } else {
    const float* f = static_cast<const float*>(w) + at;
    *lo = _mm256_loadu_ps(f);
    *hi = _mm256_loadu_ps(f + 8);
  }
}

inline void Prefetch(const void* p, int64_t ahead) {
  const uintptr_t at = reinterpret_cast<uintptr_t>(p) + static_cast<uintptr_t>(ahead);
  // An integer: the address may lie past the buffer, where pointer
  // arithmetic would be undefined; a prefetch never faults.
  // NOLINTNEXTLINE(performance-no-int-to-ptr)
  _mm_prefetch(reinterpret_cast<const char*>(at), _MM_HINT_T0);
}

// One k step of an MR × NP tile: every sum of the tile takes one fma.
template <int MR, int NP, bool kBf16>
__attribute__((always_inline)) inline void Step(const char* wbase, int64_t panel_bytes,
                                                const float* x, int64_t x_step, int64_t k,
                                                __m256 (&acc)[MR][NP][2]) {
  constexpr int64_t kElem = kBf16 ? 2 : 4;
  __m256 w[NP][2];
#pragma GCC unroll 4
  for (int p = 0; p < NP; ++p) {
    LoadWeights<kBf16>(wbase + p * panel_bytes + k * 16 * kElem, 0, &w[p][0], &w[p][1]);
  }
#pragma GCC unroll 6
  for (int r = 0; r < MR; ++r) {
    const __m256 xb = _mm256_broadcast_ss(x + k * x_step + r);
#pragma GCC unroll 4
    for (int p = 0; p < NP; ++p) {
      acc[r][p][0] = _mm256_fmadd_ps(xb, w[p][0], acc[r][p][0]);
      acc[r][p][1] = _mm256_fmadd_ps(xb, w[p][1], acc[r][p][1]);
    }
  }
}

// The sums stay in registers for the whole chunk (every loop over rows and
// panels is unrolled: MR * NP * 2 <= 12 of the 16 vector registers).
template <int MR, int NP, bool kBf16>
void Tile(const TileArgs& a) {
  __m256 acc[MR][NP][2];
#pragma GCC unroll 6
  for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 4
    for (int p = 0; p < NP; ++p) {
      if (a.first) {
        acc[r][p][0] = _mm256_setzero_ps();
        acc[r][p][1] = _mm256_setzero_ps();
      } else {
        acc[r][p][0] = _mm256_loadu_ps(a.acc + r * a.acc_stride + 16 * p);
        acc[r][p][1] = _mm256_loadu_ps(a.acc + r * a.acc_stride + 16 * p + 8);
      }
    }
  }
  constexpr int64_t kElem = kBf16 ? 2 : 4;
  const char* wbase = static_cast<const char*>(a.w);
  const int64_t panel_bytes = a.panel_stride * kElem;
  const int64_t n = a.k_count;
  // k steps per 64-byte line of one panel: 1 (f32) or 2 (bf16).
  constexpr int64_t kStepsPerLine = 64 / (16 * kElem);
  int64_t k = 0;
  if (a.prefetch_bytes != 0) {
    for (; k + kStepsPerLine <= n; k += kStepsPerLine) {
#pragma GCC unroll 4
      for (int p = 0; p < NP; ++p) {
        Prefetch(wbase + p * panel_bytes + k * 16 * kElem, a.prefetch_bytes);
      }
#pragma GCC unroll 2
      for (int64_t s = 0; s < kStepsPerLine; ++s) {
        Step<MR, NP, kBf16>(wbase, panel_bytes, a.x, a.x_step, k + s, acc);
      }
    }
  }
#pragma GCC unroll 2
  for (; k < n; ++k) Step<MR, NP, kBf16>(wbase, panel_bytes, a.x, a.x_step, k, acc);
#pragma GCC unroll 6
  for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 4
    for (int p = 0; p < NP; ++p) {
      _mm256_storeu_ps(a.acc + r * a.acc_stride + 16 * p, acc[r][p][0]);
      _mm256_storeu_ps(a.acc + r * a.acc_stride + 16 * p + 8, acc[r][p][1]);
    }
  }
}

template <bool kBf16>
void TileFor(int rows, int panels, const TileArgs& a) {
  switch (rows * 8 + panels) {
    case 1 * 8 + 1:
      return Tile<1, 1, kBf16>(a);
    case 1 * 8 + 2:
      return Tile<1, 2, kBf16>(a);
    case 1 * 8 + 3:
      return Tile<1, 3, kBf16>(a);
    case 1 * 8 + 4:
      return Tile<1, 4, kBf16>(a);
    case 2 * 8 + 1:
      return Tile<2, 1, kBf16>(a);
    case 2 * 8 + 2:
      return Tile<2, 2, kBf16>(a);
    case 2 * 8 + 3:
      return Tile<2, 3, kBf16>(a);
    case 3 * 8 + 1:
      return Tile<3, 1, kBf16>(a);
    case 3 * 8 + 2:
      return Tile<3, 2, kBf16>(a);
    case 4 * 8 + 1:
      return Tile<4, 1, kBf16>(a);
    case 5 * 8 + 1:
      return Tile<5, 1, kBf16>(a);
    case 6 * 8 + 1:
      return Tile<6, 1, kBf16>(a);
    default:
      break;
  }
  // Unreachable for valid arguments (panel_matmul.cc never asks for more):
  // fall back to one panel at a time, which gives the same bits.
  for (int p = 0; p < panels; ++p) {
    TileArgs one = a;
    one.w = static_cast<const char*>(a.w) + p * a.panel_stride * (kBf16 ? 2 : 4);
    one.acc = a.acc + 16 * p;
    for (int r0 = 0; r0 < rows; r0 += kMaxTileRows) {
      TileArgs part = one;
      part.x = a.x + r0;
      part.acc = one.acc + r0 * a.acc_stride;
      const int r = rows - r0 < kMaxTileRows ? rows - r0 : kMaxTileRows;
      TileFor<kBf16>(r, 1, part);
    }
  }
}

// ---- Epilogue -------------------------------------------------------------

// e^x for f32 lanes: x clamped to [-87.3, 88.3], n = round(x log2 e),
// r = x - n ln 2 (in two parts), Cephes' degree-5 polynomial for e^r - 1 - r,
// times 2^n; +inf above 88.72, NaN kept.
inline __m256 Exp(__m256 x) {
  const __m256 inf_at = _mm256_set1_ps(88.7228394f);
  const __m256 over = _mm256_cmp_ps(x, inf_at, _CMP_GT_OQ);
  const __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
  __m256 c = _mm256_min_ps(x, _mm256_set1_ps(88.3f));
  c = _mm256_max_ps(c, _mm256_set1_ps(-87.3f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(c, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), c);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  const __m256 r2 = _mm256_mul_ps(r, r);
  p = _mm256_fmadd_ps(p, r2, r);
  p = _mm256_add_ps(p, _mm256_set1_ps(1.0f));
  const __m256i e =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  __m256 y = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
  y = _mm256_blendv_ps(y, _mm256_set1_ps(__builtin_inff()), over);
  return _mm256_blendv_ps(y, x, nan);
}

// x / (1 + e^(-s·x)): silu (s = 1) and gelu_tanh's x·sigmoid(2y) form.
inline __m256 TimesSigmoid(__m256 x, __m256 arg) {
  const __m256 e = Exp(_mm256_sub_ps(_mm256_setzero_ps(), arg));
  return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

// x·Φ(x) = 0.5·x·erfc(-x/√2), erfc from Numerical Recipes' Chebyshev fit
// (fractional error < 1.2e-7): erfc(z) = t·exp(-z² + P(t)), t = 1/(1+z/2),
// z >= 0; erfc(-z) = 2 - erfc(z).
inline __m256 Gelu(__m256 x) {
  const __m256 u = _mm256_mul_ps(x, _mm256_set1_ps(0.70710678118654752f));
  const __m256 z = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), u);
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(0.5f), z, one));
  static const float kP[] = {0.17087277f,  -0.82215223f, 1.48851587f, -1.13520398f, 0.27886807f,
                             -0.18628806f, 0.09678418f,  0.37409196f, 1.00002368f,  -1.26551223f};
  __m256 p = _mm256_set1_ps(kP[0]);
  for (int i = 1; i < 10; ++i) p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(kP[i]));
  const __m256 arg = _mm256_sub_ps(p, _mm256_mul_ps(z, z));
  const __m256 half_erfc = _mm256_mul_ps(_mm256_set1_ps(0.5f), _mm256_mul_ps(t, Exp(arg)));
  // u <= 0: Φ = erfc(|u|)/2; u > 0: Φ = 1 - erfc(u)/2.
  const __m256 positive = _mm256_cmp_ps(u, _mm256_setzero_ps(), _CMP_GT_OQ);
  const __m256 phi = _mm256_blendv_ps(half_erfc, _mm256_sub_ps(one, half_erfc), positive);
  return _mm256_mul_ps(x, phi);
}

inline __m256 Activate(Act act, __m256 v) {
  switch (act) {
    case Act::kNone:
      return v;
    case Act::kRelu:
      return _mm256_max_ps(_mm256_setzero_ps(), v);  // NaN stays NaN
    case Act::kSilu:
      return TimesSigmoid(v, v);
    case Act::kGeluTanh: {
      // 0.5 x (1 + tanh(y)) = x · sigmoid(2y), y = √(2/π)(x + 0.044715 x³).
      const __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(v, v), v);
      const __m256 y = _mm256_mul_ps(_mm256_set1_ps(0.79788456080286536f),
                                     _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), x3, v));
      return TimesSigmoid(v, _mm256_add_ps(y, y));
    }
    case Act::kGelu:
      return Gelu(v);
  }
  return v;
}

// Round to nearest even bf16, as FloatToBf16 (NaN kept, made quiet); the
// 8 results in the low 128 bits.
inline __m128i ToBf16(__m256 v) {
  const __m256i bits = _mm256_castps_si256(v);
  const __m256i high = _mm256_srli_epi32(bits, 16);
  const __m256i lsb = _mm256_and_si256(high, _mm256_set1_epi32(1));
  const __m256i rounded = _mm256_srli_epi32(
      _mm256_add_epi32(bits, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), lsb)), 16);
  const __m256i quiet = _mm256_or_si256(high, _mm256_set1_epi32(0x40));
  const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  const __m256i r = _mm256_blendv_epi8(rounded, quiet, nan);
  const __m256i packed = _mm256_packus_epi32(r, r);  // lanes 0-3 | 0-3 per half
  return _mm256_castsi256_si128(_mm256_permute4x64_epi64(packed, 0x08));
}

// The same rounding, kept as f32 lanes.
inline __m256 RoundBf16(__m256 v) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(ToBf16(v)), 16));
}

inline __m256 WidenBf16x8(const uint16_t* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

}  // namespace

void TileAvx2(int rows, int panels, Type weights, const TileArgs& args) {
  if (weights == Type::kBF16) {
    TileFor<true>(rows, panels, args);
  } else {
    TileFor<false>(rows, panels, args);
  }
}

void EpilogueAvx2(const EpilogueArgs& a) {
  const int64_t n = a.row_stride;
  for (int64_t r = 0; r < a.rows; ++r) {
    const float* acc = a.acc + r * a.acc_stride;
    for (int64_t c = a.c0; c < a.c1; c += 8) {
      const int64_t valid = n - c < 8 ? n - c : 8;
      if (valid <= 0) break;
      __m256 v = _mm256_loadu_ps(acc + c);
      if (a.bias != nullptr) v = _mm256_add_ps(v, _mm256_loadu_ps(a.bias + c));
      if (a.round_bf16_first) v = RoundBf16(v);
      if (a.act != Act::kNone) v = Activate(a.act, v);
      if (a.multiplier != nullptr) {
        __m256 m;
        if (a.multiplier_type == Type::kBF16) {
          const uint16_t* src = static_cast<const uint16_t*>(a.multiplier) + r * n + c;
          uint16_t tail[8] = {0, 0, 0, 0, 0, 0, 0, 0};
          if (valid < 8) {
            std::memcpy(tail, src, static_cast<size_t>(valid) * 2);
            src = tail;
          }
          m = WidenBf16x8(src);
        } else {
          const float* src = static_cast<const float*>(a.multiplier) + r * n + c;
          float tail[8] = {0, 0, 0, 0, 0, 0, 0, 0};
          if (valid < 8) {
            std::memcpy(tail, src, static_cast<size_t>(valid) * 4);
            src = tail;
          }
          m = _mm256_loadu_ps(src);
        }
        v = _mm256_mul_ps(v, m);
      }
      if (a.dst_type == Type::kBF16) {
        uint16_t* out = static_cast<uint16_t*>(a.dst) + r * n + c;
        const __m128i b = ToBf16(v);
        if (valid == 8) {
          _mm_storeu_si128(reinterpret_cast<__m128i*>(out), b);
        } else {
          uint16_t tail[8];
          _mm_storeu_si128(reinterpret_cast<__m128i*>(tail), b);
          std::memcpy(out, tail, static_cast<size_t>(valid) * 2);
        }
      } else {
        float* out = static_cast<float*>(a.dst) + r * n + c;
        if (valid == 8) {
          _mm256_storeu_ps(out, v);
        } else {
          float tail[8];
          _mm256_storeu_ps(tail, v);
          std::memcpy(out, tail, static_cast<size_t>(valid) * 4);
        }
      }
    }
  }
}

void Bf16PostOpAvx2(Act act, const uint16_t* multiplier, int64_t n, uint16_t* values) {
  for (int64_t i = 0; i < n; i += 8) {
    const int64_t valid = n - i < 8 ? n - i : 8;
    uint16_t in[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    uint16_t mul[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    const uint16_t* v_src = values + i;
    const uint16_t* m_src = multiplier != nullptr ? multiplier + i : nullptr;
    if (valid < 8) {
      std::memcpy(in, v_src, static_cast<size_t>(valid) * 2);
      v_src = in;
      if (m_src != nullptr) {
        std::memcpy(mul, m_src, static_cast<size_t>(valid) * 2);
        m_src = mul;
      }
    }
    __m256 v = WidenBf16x8(v_src);
    if (act != Act::kNone) v = Activate(act, v);
    if (m_src != nullptr) v = _mm256_mul_ps(v, WidenBf16x8(m_src));
    const __m128i b = ToBf16(v);
    if (valid == 8) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(values + i), b);
    } else {
      uint16_t tail[8];
      _mm_storeu_si128(reinterpret_cast<__m128i*>(tail), b);
      std::memcpy(values + i, tail, static_cast<size_t>(valid) * 2);
    }
  }
}

void WidenBf16Avx2(const uint16_t* src, int64_t n, float* dst) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, WidenBf16x8(src + i));
  for (; i < n; ++i) {
    const uint32_t bits = static_cast<uint32_t>(src[i]) << 16;
    std::memcpy(dst + i, &bits, 4);
  }
}

}  // namespace moe::panel
