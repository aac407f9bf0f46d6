#include "experts/activation.h"

#include "absl/strings/str_cat.h"

namespace moe {

const char* ActivationName(Activation a) {
  switch (a) {
    case Activation::kRelu:
      return "relu";
    case Activation::kGelu:
      return "gelu";
    case Activation::kGeluTanh:
      return "gelu_tanh";
    case Activation::kSilu:
      return "silu";
  }
  return "?";
}

absl::StatusOr<Activation> ParseActivation(absl::string_view name) {
  if (name == "relu") return Activation::kRelu;
  if (name == "gelu") return Activation::kGelu;
  if (name == "gelu_new" || name == "gelu_pytorch_tanh" || name == "gelu_fast" ||
      name == "gelu_tanh") {
    return Activation::kGeluTanh;
  }
  if (name == "silu" || name == "swish") return Activation::kSilu;
  return absl::InvalidArgumentError(
      absl::StrCat("unsupported activation '", name,
                   "' (supported: relu, gelu, gelu_new/gelu_pytorch_tanh, silu/swish)"));
}

}  // namespace moe
