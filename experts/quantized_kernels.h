// The inner loops of QuantizedMatmul (quantized_matmul.h), one
// implementation per instruction set, each in its own translation unit
// compiled for it:
//   quantized_kernels_avx2.cc  AVX2: vpmaddubsw, vpmaddwd
//   quantized_kernels_vnni.cc  AVX-512 VNNI: vpdpbusd
// Callers must check the CPU first; nothing here checks.
//
// K is padded with zeros to a multiple of kGroup and cut into groups of
// kGroup inputs; each group of a row has its own activation scale. N is
// cut into panels of kPanelCols columns, the last one zero-padded.
//
// Packed weights, per panel, in K order:
//   kInt8: per quad q (inputs 4q..4q+3), 64 bytes: column c at bytes
//          4c..4c+3. Values in [-127, 127] as int8 for the AVX2 kernel
//          (which multiplies |x| by sign(w, x)); + 128 as uint8 for the
//          VNNI kernel. One f32 scale per column, kept by the caller.
//   kInt4: per group g, 4 blocks of 64 bytes then 16 bf16 scales (one per
//          column: kInt4GroupBytes in all). Block i holds quads 2i and
//          2i + 1 of the group: byte 4c + j has q[c][8i + j] + 8 in its
//          low nibble and q[c][8i + 4 + j] + 8 in its high nibble, q in
//          [-8, 7].
// Unsigned weight operands (kInt8 on VNNI: w + 128; kInt4: w + 8) are
// corrected per group with offset · Σ x of the row's group.
//
// Quantized activations (QuantizeRowAvx2): per row, padded K bytes of int8
// in [-127, 127] (zero past the real K), one f32 scale per group and, where a
// correction is needed, offset · Σ q per group (int32).
//
// Summation order, the bitwise contract: for each output element, per
// group g in order, the exact int32 dot product d_g of the group's
// quantized inputs and weights (|d_g| <= 32 · 127², never overflowing,
// whatever the kernel computes it with: the AVX2 int8 kernel's int16 pair
// sums stay within 2 · 127², its int4 kernel's group sums within 8 · 2 ·
// 15 · 127), then
//   kInt8: acc = fma(float(d_g), x_scale_g, acc)
//   kInt4: acc = fma(float(d_g), x_scale_g · w_scale_g[c], acc)
// from acc = +0. Tiles of any size and both kernels compute exactly this,
// so the bits never depend on the row count, the row's position, the K
// chunking, the thread split or the kernel.
//
// Thread-safety: pure functions on caller-owned memory.
#ifndef MOE_EXPERTS_QUANTIZED_KERNELS_H_
#define MOE_EXPERTS_QUANTIZED_KERNELS_H_

#include <cstdint>

namespace moe::qk {

enum class WeightFormat { kInt8, kInt4 };

inline constexpr int64_t kPanelCols = 16;
inline constexpr int64_t kQuad = 4;
// Inputs per activation scale (llama.cpp's Q8_0 block) and per int4
// weight scale (its Q4_0 block).
inline constexpr int64_t kGroup = 32;
inline constexpr int64_t kInt8GroupBytes = kGroup * kPanelCols;           // 512
inline constexpr int64_t kInt4GroupBytes = kGroup * kPanelCols / 2 + 32;  // 288
inline constexpr int64_t GroupBytes(WeightFormat f) {
  return f == WeightFormat::kInt8 ? kInt8GroupBytes : kInt4GroupBytes;
}
// Rows one tile covers at most.
inline constexpr int kMaxTileRows = 4;

// Continues acc[r][c] (r < rows, c < 16 * panels; f32) with `groups`
// groups: row r's quantized inputs at x + r * x_stride bytes (the chunk's
// first group), its scales at x_scale + r * scale_stride and its
// corrections at x_corr + r * scale_stride; panel j's weights at w + j *
// panel_stride bytes. first: start from +0 instead of acc.
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

// rows <= kMaxTileRows; panels <= TilePanels*(format, rows).
void TileAvx2(WeightFormat format, int rows, int panels, const TileArgs& args);
void TileVnni(WeightFormat format, int rows, int panels, const TileArgs& args);
int TilePanelsAvx2(WeightFormat format, int rows);
int TilePanelsVnni(WeightFormat format, int rows);

// The correction offset of the unsigned weight operand (0: none).
inline constexpr int32_t CorrectionOffset(WeightFormat f, bool vnni) {
  return f == WeightFormat::kInt4 ? 8 : vnni ? 128 : 0;
}

// Quantizes one row of k floats, group by group: amax_g = max |x| over the
// group, q = clamp(nearest_even(x · (127 / amax_g)), -127, 127), scale_g =
// amax_g / 127 (0, with every q 0, for an all-zero group or one whose amax
// is below 127 / FLT_MAX; NaN for a group holding a NaN or an infinity, so
// the outputs are NaN). Writes padded_k bytes (zeros past
// k; padded_k a multiple of kGroup), padded_k / kGroup scales and, when
// offset is not 0, offset · Σ q per group to corr.
void QuantizeRowAvx2(const float* x, int64_t k, int64_t padded_k, int32_t offset, uint8_t* q,
                     float* scale, int32_t* corr);

// values[r][c] = acc[r][c] · col_scale[c] in place, for r < rows and c in
// [c0, c1) (multiples of 8). Each element on its own.
void ScaleColumnsAvx2(float* acc, int64_t acc_stride, int64_t rows, int64_t c0, int64_t c1,
                      const float* col_scale);

}  // namespace moe::qk

#endif  // MOE_EXPERTS_QUANTIZED_KERNELS_H_
