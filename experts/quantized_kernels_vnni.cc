// AVX-512 VNNI kernels (quantized_kernels.h). This file is compiled with
// the AVX-512 F/BW/VL/VNNI flags and only called after the CPU was checked
// (the avx512_bf16 tier, which includes VNNI); it uses no standard-library
// templates.
#include <cstring>

#include "common/x86_intrinsics.h"
#include "experts/quantized_kernels.h"

namespace moe::qk {
namespace {

constexpr int64_t kQuadsPerGroup = kGroup / kQuad;

// int8: R rows × P panels of 16 columns. Per quad and row one vpdpbusd: the
// weights + 128 (u8) times x (s8), four products summed into each int32
// lane exactly; per group the + 128 is taken off (128 · Σ x of the row's
// group), then one fma per sum into the f32 accumulators.
template <int R, int P, bool kPrefetch>
void TileInt8(const TileArgs& a) {
  __m512 acc[R][P];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
    for (int j = 0; j < P; ++j) {
      acc[r][j] =
          a.first ? _mm512_setzero_ps() : _mm512_loadu_ps(a.acc + r * a.acc_stride + j * 16);
    }
  }
  const uint8_t* w = a.w;
  const uint8_t* x = a.x;
  for (int64_t g = 0; g < a.groups; ++g, w += kInt8GroupBytes, x += kGroup) {
    __m512i dot[R][P];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
      for (int j = 0; j < P; ++j) dot[r][j] = _mm512_setzero_si512();
    }
#pragma GCC unroll 8
    for (int qq = 0; qq < kQuadsPerGroup; ++qq) {
      __m512i wv[P];
#pragma GCC unroll 4
      for (int j = 0; j < P; ++j) {
        const uint8_t* at = w + j * a.panel_stride + qq * 64;
        if constexpr (kPrefetch) {
          _mm_prefetch(reinterpret_cast<const char*>(at + a.prefetch_bytes), _MM_HINT_T0);
        }
        wv[j] = _mm512_loadu_si512(at);
      }
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        int32_t quad;
        std::memcpy(&quad, x + r * a.x_stride + qq * 4, 4);
        const __m512i xb = _mm512_set1_epi32(quad);
#pragma GCC unroll 4
        for (int j = 0; j < P; ++j) dot[r][j] = _mm512_dpbusd_epi32(dot[r][j], wv[j], xb);
      }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m512i corr = _mm512_set1_epi32(a.x_corr[r * a.scale_stride + g]);
      const __m512 scale = _mm512_set1_ps(a.x_scale[r * a.scale_stride + g]);
#pragma GCC unroll 4
      for (int j = 0; j < P; ++j) {
        acc[r][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(dot[r][j], corr)), scale,
                                    acc[r][j]);
      }
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
    for (int j = 0; j < P; ++j) _mm512_storeu_ps(a.acc + r * a.acc_stride + j * 16, acc[r][j]);
  }
}

// R rows × P panels of 16 columns. Per block of two quads: the nibbles
// (w + 8, u8 0..15) times x (s8), one vpdpbusd per quad and row; per
// group the + 8 is taken off (8 · Σ x) and the sums fma'd with x_scale ·
// w_scale.
template <int R, int P, bool kPrefetch>
void TileInt4(const TileArgs& a) {
  __m512 acc[R][P];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
    for (int j = 0; j < P; ++j) {
      acc[r][j] =
          a.first ? _mm512_setzero_ps() : _mm512_loadu_ps(a.acc + r * a.acc_stride + j * 16);
    }
  }
  const __m512i low4 = _mm512_set1_epi8(0x0f);
  const uint8_t* w = a.w;
  const uint8_t* x = a.x;
  for (int64_t g = 0; g < a.groups; ++g, w += kInt4GroupBytes, x += kGroup) {
    __m512i dot[R][P];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
      for (int j = 0; j < P; ++j) dot[r][j] = _mm512_setzero_si512();
    }
#pragma GCC unroll 4
    for (int b = 0; b < 4; ++b) {
      __m512i lo[P], hi[P];
#pragma GCC unroll 4
      for (int j = 0; j < P; ++j) {
        const uint8_t* at = w + j * a.panel_stride + b * 64;
        if constexpr (kPrefetch) {
          _mm_prefetch(reinterpret_cast<const char*>(at + a.prefetch_bytes), _MM_HINT_T0);
        }
        const __m512i v = _mm512_loadu_si512(at);
        lo[j] = _mm512_and_si512(v, low4);
        hi[j] = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
      }
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        int32_t q0, q1;
        std::memcpy(&q0, x + r * a.x_stride + b * 8, 4);
        std::memcpy(&q1, x + r * a.x_stride + b * 8 + 4, 4);
        const __m512i x0 = _mm512_set1_epi32(q0), x1 = _mm512_set1_epi32(q1);
#pragma GCC unroll 4
        for (int j = 0; j < P; ++j) {
          dot[r][j] = _mm512_dpbusd_epi32(dot[r][j], lo[j], x0);
          dot[r][j] = _mm512_dpbusd_epi32(dot[r][j], hi[j], x1);
        }
      }
    }
    __m512 w_scale[P];
#pragma GCC unroll 4
    for (int j = 0; j < P; ++j) {
      // bf16 to f32: the 16 bits on top of a zero low half.
      w_scale[j] = _mm512_castsi512_ps(_mm512_slli_epi32(
          _mm512_cvtepu16_epi32(
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + j * a.panel_stride + 256))),
          16));
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m512i corr = _mm512_set1_epi32(a.x_corr[r * a.scale_stride + g]);
      const __m512 x_scale = _mm512_set1_ps(a.x_scale[r * a.scale_stride + g]);
#pragma GCC unroll 4
      for (int j = 0; j < P; ++j) {
        acc[r][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(dot[r][j], corr)),
                                    _mm512_mul_ps(x_scale, w_scale[j]), acc[r][j]);
      }
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
    for (int j = 0; j < P; ++j) _mm512_storeu_ps(a.acc + r * a.acc_stride + j * 16, acc[r][j]);
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

template <WeightFormat F, int R>
void TileRows(int panels, const TileArgs& a) {
  switch (panels) {
    case 1:
      return TileFor<F, R, 1>(a);
    case 2:
      return TileFor<F, R, 2>(a);
    case 3:
      return TileFor<F, R, 3>(a);
    default:
      return TileFor<F, R, 4>(a);
  }
}

template <WeightFormat F>
void TileFormat(int rows, int panels, const TileArgs& args) {
  switch (rows) {
    case 1:
      return TileRows<F, 1>(panels, args);
    case 2:
      return TileRows<F, 2>(panels, args);
    case 3:
      return panels >= 2 ? TileFor<F, 3, 2>(args) : TileFor<F, 3, 1>(args);
    default:
      return panels >= 2 ? TileFor<F, 4, 2>(args) : TileFor<F, 4, 1>(args);
  }
}

}  // namespace

int TilePanelsVnni(WeightFormat, int rows) { return rows <= 2 ? 4 : 2; }

void TileVnni(WeightFormat format, int rows, int panels, const TileArgs& args) {
  if (format == WeightFormat::kInt8) {
    TileFormat<WeightFormat::kInt8>(rows, panels, args);
  } else {
    TileFormat<WeightFormat::kInt4>(rows, panels, args);
  }
}

}  // namespace moe::qk
