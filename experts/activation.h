// The activations an expert FFN can apply, and their Hugging Face names.
#ifndef MOE_EXPERTS_ACTIVATION_H_
#define MOE_EXPERTS_ACTIVATION_H_

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace moe {

enum class Activation {
  kRelu,      // max(x, 0)
  kGelu,      // x * Phi(x), exact (erf) form
  kGeluTanh,  // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
  kSilu,      // x * sigmoid(x)  (a.k.a. swish)
};

// "relu", "gelu", "gelu_tanh", "silu".
const char* ActivationName(Activation a);

// Parses a config.json `hidden_act` / `activation_function` value:
// relu; gelu; gelu_new, gelu_pytorch_tanh, gelu_fast, gelu_tanh -> gelu_tanh;
// silu, swish -> silu. Anything else is INVALID_ARGUMENT naming the value.
absl::StatusOr<Activation> ParseActivation(absl::string_view name);

}  // namespace moe

#endif  // MOE_EXPERTS_ACTIVATION_H_
