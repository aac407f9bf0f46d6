// FfnSpec and FfnWeights: the shape and the tensors of one dense FFN block
// (a routed expert, a shared expert or a dense MLP).
//
//   plain:  y = W2 · act(W1 x + b1) + b2
//   gated:  y = W2 · (act(W1 x + b1) ⊙ (W3 x + b3)) + b2
//
// Tensors follow the Hugging Face [out, in] convention: W1, W3 are
// [d_ff, d_model], W2 is [d_model, d_ff]; biases are [d_ff] / [d_model].
#ifndef MOE_EXPERTS_FFN_WEIGHTS_H_
#define MOE_EXPERTS_FFN_WEIGHTS_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "common/tensor.h"
#include "experts/activation.h"

namespace moe {

struct FfnSpec {
  int64_t d_model = 0;
  int64_t d_ff = 0;
  Activation activation = Activation::kSilu;
  bool gated = true;      // SwiGLU / GeGLU when true.
  bool has_bias = false;  // b1 (and b3 when gated) and b2 present.
  // gpt-oss's clamped SwiGLU when > 0 (gated SiLU only): gate = min(gate,
  // limit), up = clamp(up, -limit, limit), (up + 1) * gate *
  // sigmoid(1.702 gate). 0: the plain silu(gate) * up.
  float swiglu_limit = 0;
};

inline FfnSpec MakeFfnSpec(int64_t d_model, int64_t d_ff, Activation activation, bool gated,
                           bool has_bias) {
  FfnSpec f;
  f.d_model = d_model;
  f.d_ff = d_ff;
  f.activation = activation;
  f.gated = gated;
  f.has_bias = has_bias;
  return f;
}

struct FfnWeights {
  Tensor w1;  // [d_ff, d_model]  (gate_proj / w1 / fc1)
  Tensor w3;  // [d_ff, d_model]  (up_proj / w3), gated only
  Tensor w2;  // [d_model, d_ff]  (down_proj / w2 / fc2)
  Tensor b1;  // [d_ff], has_bias only
  Tensor b3;  // [d_ff], has_bias and gated only
  Tensor b2;  // [d_model], has_bias only
};

// Checks that `w` holds exactly the tensors `spec` asks for, with the right
// shapes. `what` names the block in messages ("expert 3").
absl::Status ValidateFfnWeights(const FfnSpec& spec, const FfnWeights& w, const std::string& what);

}  // namespace moe

#endif  // MOE_EXPERTS_FFN_WEIGHTS_H_
