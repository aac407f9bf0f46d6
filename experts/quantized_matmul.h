// QuantizedMatmul: y[M, N] = post(x[M, K] · Wᵀ + b) with int8 or int4
// weights and int8 activations (--dtype=int8, --dtype=int4), on the
// project's own kernels (quantized_kernels.h): AVX-512 VNNI on the
// avx512_bf16 tier and above, AVX2 below.
//
// Weights are quantized once, at Create():
//   int8 (compute kI8): symmetric per output channel: s_w[n] = max_k
//     |W[n, k]| / 127, q_w = nearest_even(W · (127 / max_k |W[n, k]|)) in
//     [-127, 127].
//   int4 (compute kI4): per output channel and group of 32 inputs along
//     K, Q4_0's scheme: m = the group's value of largest magnitude
//     (the first one on ties), s_w[n, g] = bf16(m / -8), q_w =
//     clamp(nearest_even(W · (1 / s_w[n, g])), -8, 7) (so m maps to -8; 0
//     for an all-zero group). 4.5 bits per weight with the scales: bf16
//     rather than Q4_0's f16, whose normal range stops at 6e-5 (the scale
//     of a group of weights below 5e-4 would lose precision), at 2^-8
//     relative precision, far below the 4-bit step. Rounding is to nearest
//     even where llama.cpp rounds halves up or away from zero.
// Each call quantizes each input row on its own, per group of 32 inputs
// along K: s_x[m, g] = max |x| / 127, q_x = nearest_even(x · (127 / max |x|))
// (llama.cpp's Q8_0 activation blocks), and writes
//   int8: y[m, n] = post(acc · s_w[n] + b[n]),
//         acc = fma(float(Σ_{k in g} q_x[m, k] · q_w[n, k]), s_x[m, g], acc)
//   int4: y[m, n] = post(acc + b[n]),
//         acc = fma(float(Σ_{k in g} q_x[m, k] · q_w[n, k]),
//                   s_x[m, g] · s_w[n, g], acc)
// over the groups g in order, from +0, the int32 group sums exact,
// followed by the bias, activation or product and f32 dst of the panel
// epilogue (panel_kernels.h). src, multiplier and dst are f32. A column
// (int8) or group (int4, activations) whose largest magnitude is nonzero
// but below 127 / FLT_MAX (~3.7e-37), where the inverse scale would
// overflow, is taken as all zeros with scale 0.
//
// Bitwise contract: each output element depends only on its own row and
// the weights: never on the row count, the row's position, the thread
// count, nor on which kernel (VNNI or AVX2) ran. Both tiers give the same
// bits.
//
// Thread-safety: immutable after Create(); Execute() may run concurrently
// with distinct scratch buffers.
#ifndef MOE_EXPERTS_QUANTIZED_MATMUL_H_
#define MOE_EXPERTS_QUANTIZED_MATMUL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/cpu_tier.h"
#include "common/tensor.h"
#include "experts/aligned_buffer.h"
#include "experts/matmul_shape.h"
#include "experts/quantized_kernels.h"

namespace moe {

class QuantizedMatmul {
 public:
  // The longest K accepted (the f32 sums of 32-input groups are meant for
  // FFN widths; 1M keeps the scratch sizes far from overflow).
  static constexpr int64_t kMaxK = 1 << 20;

  // The matrix [top; bottom] ([n_top, K] and [N - n_top, K]; bottom may be
  // null; any float weight dtype), bias [N] or empty as shape.bias says.
  // shape.compute must be kI8 or kI4 and shape.dst kF32. Shapes must
  // already be validated by the caller. INVALID_ARGUMENT for K > kMaxK or
  // a non-finite weight (naming the column); FAILED_PRECONDITION on a CPU
  // below the avx2 tier. `tier` picks the kernel (<= ActiveCpuTier()).
  static absl::StatusOr<std::unique_ptr<QuantizedMatmul>> Create(const MatmulShape& shape,
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
  // For tests: the quantized weight q_w[n, k] and its scale (int8: s_w[n];
  // int4: s_w[n, k / 32]).
  int8_t quantized_weight(int64_t n, int64_t k) const;
  float weight_scale(int64_t n, int64_t k) const;

 private:
  QuantizedMatmul(const MatmulShape& shape, bool vnni);

  // One Execute() pass of up to 256 rows: its quantized rows, their group
  // scales and corrections, and the f32 sums, all in the caller's scratch.
  struct Pass {
    const uint8_t* xq = nullptr;
    const float* x_scale = nullptr;
    const int32_t* x_corr = nullptr;
    float* acc = nullptr;
    int64_t rows = 0;
    int64_t blocks = 0;  // row blocks of at most 4 rows, as even as possible
    int64_t BlockBegin(int64_t b) const { return b * rows / blocks; }
  };
  // The tiles of panels [p0, p0 + panels) for row blocks [b0, b1).
  void RunTiles(const Pass& pass, int64_t p0, int panels, int64_t b0, int64_t b1) const;
  // Their weight scales (int8), bias, post-op and dst rows [rs, re) of the
  // pass (which starts at row r0 of the call).
  void Finish(const Pass& pass, int64_t r0, int64_t p0, int panels, int64_t rs, int64_t re,
              const float* multiplier, float* dst) const;
  qk::WeightFormat format() const {
    return int4_ ? qk::WeightFormat::kInt4 : qk::WeightFormat::kInt8;
  }

  // Packs the columns of panel p (int8 or int4); returns a column holding
  // a non-finite weight, or -1.
  int64_t PackPanel(int64_t p, const Tensor& top, const Tensor* bottom);
  const uint8_t* PanelData(int64_t p) const;

  MatmulShape shape_;
  bool vnni_;
  bool int4_;
  int64_t padded_k_ = 0;  // K rounded up to a multiple of 32
  int64_t groups_ = 0;    // padded_k_ / 32
  int64_t panels_ = 0;    // ceil(N / 16)
  int64_t panel_bytes_ = 0;
  AlignedBuffer weights_;         // panels_ × panel_bytes_ (quantized_kernels.h)
  uint8_t* packed_ = nullptr;     // weights_'s bytes
  std::vector<float> col_scale_;  // int8: panels_ × 16, zero past N
  std::vector<float> bias_;       // panels_ × 16, zero past N; empty without bias
};

}  // namespace moe

#endif  // MOE_EXPERTS_QUANTIZED_MATMUL_H_
