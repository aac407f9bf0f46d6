// The inner loops of Int8Matmul (int8_matmul.h), one implementation per
// instruction set, each in its own translation unit compiled for it:
//   int8_kernels_avx2.cc  AVX2: vpmaddubsw on |x| and sign(w, x), vpmaddwd
//   int8_kernels_vnni.cc  AVX-512 VNNI: vpdpbusd on (w + 128) as u8 and x
//                         as s8, corrected by 128 · Σ x per group
// Callers must check the CPU first; nothing here checks.
//
// K is padded with zeros to a multiple of kGroup and cut into groups of
// kGroup inputs; each group of a row has its own activation scale.
//
// Packed weights: int8 in [-127, 127] (the VNNI kernel's copy + 128, as
// uint8), N cut into panels of kPanelCols columns, the last one
// zero-padded. Panel p holds, for quad q = 0..K/4-1 in order, 64 bytes:
// column 16p + c at bytes 4c..4c+3, inputs 4q..4q+3.
//
// Quantized activations (QuantizeRowAvx2): per row, K bytes of int8 in
// [-127, 127] (zero past the real K), one f32 scale per group and, for the
// VNNI kernel, 128 · Σ q per group (int32).
//
// Summation order, the bitwise contract: for each output element, per
// group g in order, the exact int32 dot product d_g of the group's
// quantized inputs and weights (|d_g| <= 32 · 127², never overflowing,
// whatever the kernel computes it with: the AVX2 kernel's int16 pair sums
// stay within 2 · 127²), then acc = fma(float(d_g), scale_g, acc) from acc
// = +0. Tiles of any size and both kernels compute exactly this, so the
// bits never depend on the row count, the row's position, the K chunking,
// the thread split or the kernel.
//
// Thread-safety: pure functions on caller-owned memory.
#ifndef MOE_EXPERTS_INT8_KERNELS_H_
#define MOE_EXPERTS_INT8_KERNELS_H_

#include <cstdint>

namespace moe {
namespace int8k {

inline constexpr int64_t kPanelCols = 16;
inline constexpr int64_t kQuad = 4;
// Inputs per activation scale (llama.cpp's Q8_0 block).
inline constexpr int64_t kGroup = 32;
// Rows one tile covers, and the panels it covers at most.
inline constexpr int kMaxTileRows = 4;
inline constexpr int kMaxTilePanels = 4;

// Continues acc[r][c] (r < rows, c < 16 * panels; f32) with `groups`
// groups: row r's quantized inputs at x + r * x_stride bytes (the chunk's
// first group), its scales at x_scale + r * scale_stride and its
// corrections (VNNI only) at x_corr + r * scale_stride; panel j's weights
// at w + j * panel_stride bytes. first: start from +0 instead of acc.
struct TileArgs {
  const uint8_t* x = nullptr;
  int64_t x_stride = 0;
  const float* x_scale = nullptr;
  const int32_t* x_corr = nullptr;
  int64_t scale_stride = 0;
  const uint8_t* w = nullptr;
  int64_t panel_stride = 0;
  int64_t groups = 0;
  float* acc = nullptr;
  int64_t acc_stride = 0;  // floats between rows
  bool first = true;
  // Bytes past each panel's current position to prefetch (0: none).
  int64_t prefetch_bytes = 0;
};

// rows <= kMaxTileRows; panels <= TilePanels*(rows).
void TileAvx2(int rows, int panels, const TileArgs& args);
void TileVnni(int rows, int panels, const TileArgs& args);
// The most panels one tile of `rows` rows covers.
int TilePanelsAvx2(int rows);
int TilePanelsVnni(int rows);

// Quantizes one row of k floats, group by group: amax_g = max |x| over the
// group, q = clamp(nearest_even(x · (127 / amax_g)), -127, 127), scale_g =
// amax_g / 127 (0 for an all-zero group; NaN for a group holding a NaN or
// an infinity, so the outputs are NaN). Writes padded_k bytes (zeros past
// k; padded_k a multiple of kGroup), padded_k / kGroup scales and, when
// corr is not null, 128 · Σ q per group.
void QuantizeRowAvx2(const float* x, int64_t k, int64_t padded_k, uint8_t* q, float* scale,
                     int32_t* corr);

// values[r][c] = acc[r][c] · col_scale[c] in place, for r < rows and c in
// [c0, c1) (multiples of 8). Each element on its own.
void ScaleColumnsAvx2(float* acc, int64_t acc_stride, int64_t rows, int64_t c0, int64_t c1,
                      const float* col_scale);

}  // namespace int8k
}  // namespace moe

#endif  // MOE_EXPERTS_INT8_KERNELS_H_
