// MatmulShape: what one packed weight matrix computes, shared by every
// matmul implementation (oneDNN primitives and the project's own panel
// kernels). No oneDNN types here.
#ifndef MOE_EXPERTS_MATMUL_SHAPE_H_
#define MOE_EXPERTS_MATMUL_SHAPE_H_

#include <cstdint>
#include <string>

#include "common/dtype.h"
#include "experts/activation.h"

namespace moe {

enum class MatmulPostOp {
  kNone,
  kActivation,  // eltwise activation on the result
  kMultiply,    // result ⊙ a second [M, N] input of the compute dtype
};

// y[M, N] = post(x[M, K] · Wᵀ + b), W given as [N, K] (Hugging Face's
// [out, in]).
struct MatmulShape {
  int64_t k = 0;                // input features
  int64_t n = 0;                // output features
  DType compute = DType::kF32;  // weights: f32, bf16, int8 or int4 (int8/int4: src f32)
  DType dst = DType::kF32;      // output dtype (f32 or bf16)
  MatmulPostOp post = MatmulPostOp::kNone;
  Activation activation = Activation::kRelu;  // kActivation only
  bool bias = false;

  // A unique text key, e.g. "1024x4096:bf16->bf16:post0:act0:bias0".
  std::string Key() const;
};

}  // namespace moe

#endif  // MOE_EXPERTS_MATMUL_SHAPE_H_
