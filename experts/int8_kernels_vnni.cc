// AVX-512 VNNI int8 kernel (int8_kernels.h). This file is compiled with
// the AVX-512 F/BW/VL/VNNI flags and only called after the CPU was checked
// (the avx512_bf16 tier, which includes VNNI); it uses no standard-library
// templates.
#include "common/x86_intrinsics.h"
#include "experts/int8_kernels.h"

#include <cstring>

namespace moe {
namespace int8k {
namespace {

constexpr int64_t kQuadsPerGroup = kGroup / kQuad;

// R rows × P panels of 16 columns. Per quad and row one vpdpbusd: the
// weights + 128 (u8) times x (s8), four products summed into each int32
// lane exactly; per group the + 128 is taken off (128 · Σ x of the row's
// group), then one fma per sum into the f32 accumulators.
template <int R, int P, bool kPrefetch>
void Tile(const TileArgs& a) {
  __m512 acc[R][P];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
    for (int j = 0; j < P; ++j) {
      acc[r][j] = a.first ? _mm512_setzero_ps() : _mm512_loadu_ps(a.acc + r * a.acc_stride + j * 16);
    }
  }
  const uint8_t* w = a.w;
  const uint8_t* x = a.x;
  for (int64_t g = 0; g < a.groups; ++g, w += kGroup * kPanelCols, x += kGroup) {
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

template <int R, int P>
void TileFor(const TileArgs& a) {
  if (a.prefetch_bytes != 0) {
    Tile<R, P, true>(a);
  } else {
    Tile<R, P, false>(a);
  }
}

template <int R>
void TileRows(int panels, const TileArgs& a) {
  switch (panels) {
    case 1:
      return TileFor<R, 1>(a);
    case 2:
      return TileFor<R, 2>(a);
    case 3:
      return TileFor<R, 3>(a);
    default:
      return TileFor<R, 4>(a);
  }
}

}  // namespace

int TilePanelsVnni(int rows) { return rows <= 2 ? 4 : 2; }

void TileVnni(int rows, int panels, const TileArgs& args) {
  switch (rows) {
    case 1:
      return TileRows<1>(panels, args);
    case 2:
      return TileRows<2>(panels, args);
    case 3:
      return panels >= 2 ? TileFor<3, 2>(args) : TileFor<3, 1>(args);
    default:
      return panels >= 2 ? TileFor<4, 2>(args) : TileFor<4, 1>(args);
  }
}

}  // namespace int8k
}  // namespace moe
