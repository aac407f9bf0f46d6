#include "model/hf_config_reader.h"

#include <utility>

namespace moe {

absl::Status CheckLayer(const ConfigReader& r, int layer, const char* key) {
  MOE_ASSIGN_OR_RETURN(int64_t n, r.PositiveInt(key));
  if (layer < 0 || layer >= n) {
    return absl::OutOfRangeError(absl::StrCat("layer ", layer, " out of range: ", r.path(),
                                              " says ", key, " = ", n, " (valid: 0..", n - 1, ")"));
  }
  return absl::OkStatus();
}

FfnTensorNames ProjNames(const std::string& prefix, bool bias) {
  FfnTensorNames n;
  n.w1 = prefix + "gate_proj.weight";
  n.w3 = prefix + "up_proj.weight";
  n.w2 = prefix + "down_proj.weight";
  if (bias) {
    n.b1 = prefix + "gate_proj.bias";
    n.b3 = prefix + "up_proj.bias";
    n.b2 = prefix + "down_proj.bias";
  }
  return n;
}

void MakeDense(HfLayerLayout* l, const std::string& family, int64_t d_model, FfnSpec ffn,
               FfnTensorNames names) {
  l->spec.family = family;
  l->spec.d_model = d_model;
  l->spec.dense = true;
  l->spec.expert = ffn;
  l->spec.router = RouterOptions();
  l->experts = {std::move(names)};
}

absl::StatusOr<Activation> ReadActivation(const ConfigReader& r, const std::string& key,
                                          const std::string& def) {
  MOE_ASSIGN_OR_RETURN(std::string name, r.String(key, def));
  auto act = ParseActivation(name);
  if (!act.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(r.path(), ": config key '", key, "': ", act.status().message()));
  }
  return *act;
}

std::string HfActivationName(Activation a) {
  return a == Activation::kGeluTanh ? "gelu_new" : ActivationName(a);
}

absl::Status WriteSoftmaxMoeKeys(const LayerSpec& s, nlohmann::json* config) {
  if (s.dense || !s.expert.gated || s.expert.has_bias || s.has_shared() || s.gate_bias ||
      s.router.scoring != ScoringFunc::kSoftmax || s.router.n_group != 1) {
    return UnsupportedSpec(
        s, absl::StrCat(s.family, " layers are gated softmax top-k without a shared expert"));
  }
  nlohmann::json& c = *config;
  c["num_hidden_layers"] = 1;
  c["hidden_size"] = s.d_model;
  c["num_experts"] = s.router.num_experts;
  c["num_experts_per_tok"] = s.router.top_k;
  c["norm_topk_prob"] = s.router.renormalize;
  c["hidden_act"] = HfActivationName(s.expert.activation);
  return absl::OkStatus();
}

absl::Status UnsupportedSpec(const LayerSpec& spec, const std::string& why) {
  return absl::InvalidArgumentError(
      absl::StrCat("cannot write a ", spec.family, " checkpoint for this layer: ", why));
}

}  // namespace moe
