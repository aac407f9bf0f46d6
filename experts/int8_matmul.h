// Int8Matmul: y[M, N] = post(x[M, K] · Wᵀ + b) with int8 weights and int8
// activations (--dtype=int8), on the project's own kernels
// (int8_kernels.h): AVX-512 VNNI on the avx512_bf16 tier and above, AVX2
// below.
//
// Weights are quantized once, at Create(), symmetrically per output
// channel: s_w[n] = max_k |W[n, k]| / 127, q_w = nearest_even(W · 127 /
// max_k |W[n, k]|), in [-127, 127]. Each call quantizes each input row on
// its own, per group of kGroup (32) inputs along K the same way (scale
// s_x[m, g]; llama.cpp's Q8_0 activation blocks), and writes
//   y[m, n] = post(acc · s_w[n] + b[n]),
//   acc = fma(float(Σ_{k in g} q_x[m, k] · q_w[n, k]), s_x[m, g], acc)
//         over the groups g in order, from +0,
// the int32 group sums exact, followed by the bias, activation or product
// and f32 dst of the panel epilogue (panel_kernels.h). src, multiplier
// and dst are f32.
//
// Bitwise contract: each output element depends only on its own row and
// the weights: never on the row count, the row's position, the thread
// count, nor on which kernel (VNNI or AVX2) ran. Both tiers give the same
// bits.
//
// Thread-safety: immutable after Create(); Execute() may run concurrently
// with distinct scratch buffers.
#ifndef MOE_EXPERTS_INT8_MATMUL_H_
#define MOE_EXPERTS_INT8_MATMUL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/cpu_tier.h"
#include "common/tensor.h"
#include "experts/aligned_buffer.h"
#include "experts/matmul_shape.h"

namespace moe {

class Int8Matmul {
 public:
  // The longest K accepted (the f32 sums of 32-input groups are meant for
  // FFN widths; 1M keeps the scratch sizes far from overflow).
  static constexpr int64_t kMaxK = 1 << 20;

  // The matrix [top; bottom] ([n_top, K] and [N - n_top, K]; bottom may be
  // null; any float weight dtype), bias [N] or empty as shape.bias says.
  // shape.compute must be kI8 and shape.dst kF32. Shapes must already be
  // validated by the caller. INVALID_ARGUMENT for K > kMaxK or a
  // non-finite weight (naming the column); FAILED_PRECONDITION on a CPU
  // below the avx2 tier. `tier` picks the kernel (<= ActiveCpuTier()).
  static absl::StatusOr<std::unique_ptr<Int8Matmul>> Create(const MatmulShape& shape,
                                                            const Tensor& top,
                                                            const Tensor* bottom,
                                                            const Tensor& bias, CpuTier tier);

  // src: [rows, K] f32; dst: [rows, N] f32; multiplier: [rows, N] f32 for
  // kMultiply, else null. dst must not overlap src or multiplier. rows >= 0.
  void Execute(const float* src, int64_t rows, float* dst, const float* multiplier,
               AlignedBuffer* scratch) const;

  // "own:int8 avx512 vnni (per-channel weights, activations per 32-input
  // group)".
  std::string impl() const;
  const MatmulShape& shape() const { return shape_; }
  // Bytes of packed weights and scales held.
  size_t weight_bytes() const;
  // The weight scales s_w[n] (N of them) and the quantized weight q_w[n, k],
  // for tests.
  float weight_scale(int64_t n) const { return col_scale_[static_cast<size_t>(n)]; }
  int8_t quantized_weight(int64_t n, int64_t k) const;

 private:
  Int8Matmul(const MatmulShape& shape, bool vnni);

  MatmulShape shape_;
  bool vnni_;
  int64_t padded_k_ = 0;  // K rounded up to a multiple of kGroup
  int64_t panels_ = 0;    // ceil(N / 16)
  AlignedBuffer weights_; // panels_ × padded_k_ × 16 bytes (int8_kernels.h)
  std::vector<float> col_scale_;   // panels_ × 16, zero past N
  std::vector<float> bias_;        // panels_ × 16, zero past N; empty without bias
};

}  // namespace moe

#endif  // MOE_EXPERTS_INT8_MATMUL_H_
