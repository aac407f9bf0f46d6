// The inner loops of PanelMatmul (panel_matmul.h), one implementation per
// instruction set, each in its own translation unit compiled for it
// (panel_kernels_avx2.cc: AVX2 + FMA). Callers must check the CPU first
// (CpuMeetsBaseline() for the AVX2 ones); nothing here checks.
//
// Packed weights: N is cut into panels of kPanelCols columns, the last one
// zero-padded. Panel p holds, for k = 0..K-1 in order, the 16 weights of
// columns 16p..16p+15 at input k:
//   f32:  16 floats, column 16p + i at position i;
//   bf16: 16 bf16 values as 8 32-bit lanes, lane i holding column 16p + i
//         in its low half and column 16p + i + 8 in its high half (so a
//         shift and a mask widen a lane's two columns to f32).
//
// Summation order, the bitwise contract: every output element is
// acc = fma(x[k], w[k], acc) for k = 0, 1, ..., K-1 from acc = +0, each
// fma rounding once, operands widened exactly to f32. Tiles of any size
// compute exactly this per element, so the bits never depend on the row
// count, the row's position, the K chunking or the thread split.
//
// Thread-safety: pure functions on caller-owned memory.
#ifndef MOE_EXPERTS_PANEL_KERNELS_H_
#define MOE_EXPERTS_PANEL_KERNELS_H_

#include <cstdint>

// Only <cstdint> here: the AVX2 translation unit includes this header and
// must not instantiate inline code that other files share.
namespace moe::panel {

enum class Type { kF32, kBF16 };
enum class Act { kNone, kRelu, kGelu, kGeluTanh, kSilu };

inline constexpr int64_t kPanelCols = 16;
// Rows and panels one tile call covers: rows <= kMaxTileRows and
// rows * panels <= kMaxTileRows (at most 12 sum registers of 16; the
// multi-panel shapes for 1-3 rows also hold 2 weight vectors per panel,
// so the compiler reloads some weights from L1 there).
inline constexpr int kMaxTileRows = 6;
inline constexpr int kMaxTilePanels = 4;

// Continues the sums acc[r][c] (r < rows, c < 16 * panels) with the
// products of k_count consecutive inputs: input k of row r at
// x[k * x_step + r] (f32, the rows of a block interleaved so that one
// k's broadcasts share a cache line), weights of panel j at
// w + j * panel_stride elements (the chunk's first k). first: the sums
// start from +0 instead of acc's contents.
struct TileArgs {
  const float* x = nullptr;
  int64_t x_step = 0;
  const void* w = nullptr;
  int64_t panel_stride = 0;  // elements (f32 or bf16) between panels
  int64_t k_count = 0;
  float* acc = nullptr;
  int64_t acc_stride = 0;
  bool first = true;
  // Bytes past each panel's current position to prefetch (0: none); the
  // addresses may lie past the matrix.
  int64_t prefetch_bytes = 0;
};

void TileAvx2(int rows, int panels, Type weights, const TileArgs& args);

// The finished sums to the output, per element, in this order: + bias[c]
// (one f32 add); rounded to bf16 if round_bf16_first (PyTorch's bf16
// Linear rounds its result before the activation or product sees it); the
// activation (act); × multiplier (widened from its dtype); rounded to the
// dst dtype (bf16: nearest even, as FloatToBf16). Covers rows [0, rows) and columns [c0, c1) (c0 a
// multiple of 8); acc and bias are indexed by column and padded to a
// multiple of 16, multiplier and dst hold exactly n_valid columns per row.
struct EpilogueArgs {
  const float* acc = nullptr;
  int64_t acc_stride = 0;
  const float* bias = nullptr;  // null: no bias
  bool round_bf16_first = false;
  Act act = Act::kNone;
  const void* multiplier = nullptr;  // null: no product
  Type multiplier_type = Type::kF32;
  void* dst = nullptr;
  Type dst_type = Type::kF32;
  int64_t row_stride = 0;  // of dst and multiplier, in elements
  int64_t rows = 0;
  int64_t c0 = 0, c1 = 0;
};

void EpilogueAvx2(const EpilogueArgs& args);

// values[i] = bf16(act(float(values[i])) × float(multiplier[i])) for
// i < n, in place: the activation only when act is not kNone, the product
// only when multiplier is not null, rounded as EpilogueAvx2 rounds. The
// post-op of a bf16 result that was rounded first (computed elsewhere).
void Bf16PostOpAvx2(Act act, const uint16_t* multiplier, int64_t n, uint16_t* values);

// dst[i] = float(src[i]) for bf16 src (exact).
void WidenBf16Avx2(const uint16_t* src, int64_t n, float* dst);

}  // namespace moe::panel

#endif  // MOE_EXPERTS_PANEL_KERNELS_H_
