// DenseFfn: one FFN block (expert, shared expert or dense MLP) on oneDNN.
//
// Inputs and outputs are f32 rows. In bf16 mode the input rows are rounded
// to bf16 (nearest even), the matmuls take bf16 operands with f32
// accumulation, the hidden activations are kept in bf16 (as a bf16 PyTorch
// model does) and the output is written in f32. In int8 mode
// (quantized_matmul.h) the weights are int8 with per-channel scales, each
// matmul quantizes its own input rows per token, and the hidden
// activations stay f32.
//
// SwiGLU blocks (gated, SiLU) run W1 and W3 as one matmul on the stacked
// matrix [W1; W3], its result in the compute dtype, then silu(gate) ⊙ up
// (SiluProduct / SiluProductBf16: in bf16 the rounding points of PyTorch's
// act_fn(w1(x)) * w3(x)). Other blocks run W1 with the activation as a
// post-op and, when gated, W3 with the product as one; in bf16 each
// post-op sees its Linear's result rounded to bf16 first, as in PyTorch
// (packed_matmul.h).
//
// Thread-safety: immutable after Create(). Run() may be called from several
// threads at once, each with its own FfnWorkspace.
#ifndef MOE_EXPERTS_DENSE_FFN_H_
#define MOE_EXPERTS_DENSE_FFN_H_

#include <cstdint>
#include <memory>
#include <oneapi/dnnl/dnnl.hpp>
#include <string>

#include "absl/status/statusor.h"
#include "common/dtype.h"
#include "experts/aligned_buffer.h"
#include "experts/ffn_weights.h"
#include "experts/packed_matmul.h"

namespace moe {

// Per-thread scratch memory for DenseFfn::Run. Grows to the largest batch
// seen and keeps its pages.
struct FfnWorkspace {
  FfnWorkspace();
  AlignedBuffer src_lowp;  // input rows in the compute dtype (bf16 mode)
  AlignedBuffer hidden1;   // act(W1 x + b1), or [W1 x + b1 | W3 x + b3] (SwiGLU)
  AlignedBuffer hidden;    // the input of W2
  AlignedBuffer scratchpad;
  dnnl::stream stream;
};

class DenseFfn {
 public:
  // Packs `weights` (validated against `spec`) for `compute` (f32, bf16 or
  // int8).
  // `what` names the block in messages. The weights may be freed afterwards.
  static absl::StatusOr<std::unique_ptr<DenseFfn>> Create(const FfnSpec& spec,
                                                          const FfnWeights& weights, DType compute,
                                                          MatmulCacheRegistry* registry,
                                                          const std::string& what);

  // y[rows, d_model] = FFN(x[rows, d_model]); rows >= 0. x and y must not
  // overlap.
  absl::Status Run(const float* x, int64_t rows, float* y, FfnWorkspace* ws) const;

  const FfnSpec& spec() const { return spec_; }
  DType compute() const { return compute_; }
  // Bytes of packed weights held (every matrix, scales included).
  size_t weight_bytes() const;
  // The oneDNN implementation of the down projection (e.g. brg:avx512_core).
  std::string impl() const { return down_->impl(); }

 private:
  DenseFfn(const FfnSpec& spec, DType compute) : spec_(spec), compute_(compute) {}

  FfnSpec spec_;
  DType compute_;
  std::unique_ptr<PackedMatmul> gate_up_;  // [W1; W3] (+[b1; b3]): SwiGLU only
  std::unique_ptr<PackedMatmul> up_act_;   // W1 (+b1), activation: not SwiGLU
  std::unique_ptr<PackedMatmul> up_mul_;   // W3 (+b3), ⊙ act(W1 x): other gated
  std::unique_ptr<PackedMatmul> down_;     // W2 (+b2)
};

}  // namespace moe

#endif  // MOE_EXPERTS_DENSE_FFN_H_
