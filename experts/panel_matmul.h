// PanelMatmul: y[M, N] = post(x[M, K] · Wᵀ + b) on the project's own
// kernels (panel_kernels.h), for the CPU tiers where oneDNN 2.6.3 cannot
// give a batch-invariant summation order or bf16 at all (AVX2), and for
// bf16 where the CPU has AVX-512 but no AVX512_BF16.
//
// Weights are packed once, at Create(), into 16-column panels in the
// precision of the shape (bf16 stays bf16: half the bytes of f32, widened
// in registers); nothing is repacked per call. Each call streams every
// panel once: the panels are split over the OpenMP team (GCC builds), and
// each thread walks its panels in K chunks, running every row block of the
// batch over the chunk while it sits in L1.
//
// Bitwise contract: each output element is the sequential fma chain of
// panel_kernels.h over k = 0..K-1, then + bias, the activation or the
// product, and the rounding to dst, all per element. With a bf16 dst and a
// post-op, the biased sum is rounded to bf16 before the post-op, where a
// bf16 PyTorch model rounds its Linear's output. It depends on K, N,
// the dtypes and the CPU tier only: never on the row count, the row's
// position in the batch or the thread count.
//
// Thread-safety: immutable after Create(); Execute() may run concurrently
// with distinct scratch buffers.
#ifndef MOE_EXPERTS_PANEL_MATMUL_H_
#define MOE_EXPERTS_PANEL_MATMUL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/tensor.h"
#include "experts/aligned_buffer.h"
#include "experts/matmul_shape.h"
#include "experts/panel_kernels.h"

namespace moe {

class PanelMatmul {
 public:
  // The matrix [top; bottom] ([n_top, K] and [N - n_top, K]; bottom may
  // be null; any weight dtype, rounded to the compute dtype as
  // FloatToBf16 does); bias [N] (any float dtype) or empty as shape.bias
  // says. Shapes must already be validated by the caller. Fails with
  // FAILED_PRECONDITION on a CPU without AVX2/FMA/F16C.
  static absl::StatusOr<std::unique_ptr<PanelMatmul>> Create(const MatmulShape& shape,
                                                             const Tensor& top,
                                                             const Tensor* bottom,
                                                             const Tensor& bias);

  // src: [rows, K] of the compute dtype; dst: [rows, N] of the dst dtype;
  // multiplier: [rows, N] of the compute dtype for kMultiply, else null.
  // dst must not overlap src or multiplier. rows >= 0.
  void Execute(const void* src, int64_t rows, void* dst, const void* multiplier,
               AlignedBuffer* scratch) const;

  // "own avx2 panels (bf16 weights, f32 fma chain)".
  std::string impl() const;
  const MatmulShape& shape() const { return shape_; }
  // Bytes of packed weights held.
  size_t weight_bytes() const { return weight_bytes_; }

 private:
  explicit PanelMatmul(const MatmulShape& shape);

  // How one pass of m (<= kPassRows) rows is cut: row blocks of at most
  // kMaxTileRows rows, block b being rows [begin(b), begin(b + 1)), and
  // groups of panels_per_tile panels.
  struct PassLayout {
    int64_t m = 0, blocks = 0, groups = 0;
    int panels_per_tile = 0;
    int64_t begin(int64_t b) const { return b * m / blocks; }
  };
  PassLayout LayoutPass(int64_t m) const;
  // The pass's rows (at src_pass) widened to f32 and interleaved by k per
  // block into xpack.
  void PackPass(const char* src_pass, const PassLayout& l, float* xpack) const;
  // The accumulators of blocks [b0, b1) for panel group `group`.
  void RunTiles(const PassLayout& l, int64_t group, int64_t b0, int64_t b1, const float* xpack,
                float* acc) const;
  // Bias, post-op and conversion of those accumulators into dst (the
  // pass starts at row r0).
  void RunEpilogue(const PassLayout& l, int64_t group, int64_t b0, int64_t b1, int64_t r0,
                   const float* acc, const void* multiplier, void* dst) const;

  MatmulShape shape_;
  int64_t panels_ = 0;  // ceil(N / 16)
  size_t weight_bytes_ = 0;
  AlignedBuffer weights_;    // panels_ × K × 16 elements of the compute dtype
  std::vector<float> bias_;  // panels_ × 16, zero past N; empty without bias
};

// The epilogue activation of `shape` (kNone unless its post-op is
// kActivation).
panel::Act PanelActivation(const MatmulShape& shape);

// The post-op of `shape` (kActivation or kMultiply) on a bf16 result that
// was rounded to bf16 before it, in place: values[r, c] =
// bf16(post(values[r, c])) for rows × shape.n values; multiplier: rows ×
// shape.n bf16 values for kMultiply, else null. This is PyTorch's order
// (a bf16 Linear rounds its output, then the activation or the product
// rounds its own), for results whose kernel applies post-ops before the
// rounding (oneDNN). The same per-element code as the panel epilogue, so
// the bits do not depend on the rows or the thread split. Requires AVX2
// (CpuMeetsBaseline()); spread over the OpenMP team for large results.
void ApplyBf16PostOp(const MatmulShape& shape, int64_t rows, const void* multiplier, void* values);

}  // namespace moe

#endif  // MOE_EXPERTS_PANEL_MATMUL_H_
