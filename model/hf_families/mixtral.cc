// Mixtral: model.layers.L.block_sparse_moe.{gate,experts.E.{w1,w3,w2}}; softmax top-k,
// renormalised. Reads config.json into a layer layout, and writes one back.
#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/hf_config_reader.h"
#include "model/hf_families.h"

namespace moe {

using json = nlohmann::json;

absl::Status ResolveMixtral(const ConfigReader& r, int layer, const std::string& family,
                            const HasTensorFn& /*has*/, HfLayerLayout* l) {
  MOE_RETURN_IF_ERROR(CheckLayer(r, layer, "num_hidden_layers"));
  MOE_ASSIGN_OR_RETURN(int64_t h, r.PositiveInt("hidden_size"));
  MOE_ASSIGN_OR_RETURN(int64_t ff, r.PositiveInt("intermediate_size"));
  MOE_ASSIGN_OR_RETURN(int64_t e, r.PositiveInt("num_local_experts"));
  MOE_ASSIGN_OR_RETURN(int64_t k, r.PositiveInt("num_experts_per_tok"));
  MOE_ASSIGN_OR_RETURN(Activation act, ReadActivation(r, "hidden_act", "silu"));
  const std::string p = absl::StrCat("model.layers.", layer, ".block_sparse_moe.");
  l->spec.family = "mixtral";
  l->spec.d_model = h;
  l->spec.expert = MakeFfnSpec(h, ff, act, true, false);
  l->spec.router.num_experts = static_cast<int>(e);
  l->spec.router.top_k = static_cast<int>(k);
  l->spec.router.scoring = ScoringFunc::kSoftmax;
  l->spec.router.renormalize = true;
  l->gate_weight = p + "gate.weight";
  for (int64_t i = 0; i < e; ++i) {
    const std::string q = absl::StrCat(p, "experts.", i, ".");
    FfnTensorNames n;
    n.w1 = q + "w1.weight";
    n.w3 = q + "w3.weight";
    n.w2 = q + "w2.weight";
    l->experts.push_back(n);
  }
  return absl::OkStatus();
}

absl::Status WriteMixtralConfig(const LayerSpec& s, json* out) {
  json& c = *out;
  const std::string act = HfActivationName(s.expert.activation);
  if (s.dense || !s.expert.gated || s.expert.has_bias || s.has_shared() ||
      s.router.scoring != ScoringFunc::kSoftmax || !s.router.renormalize || s.router.n_group != 1 ||
      s.router.capacity_factor != 0) {
    return UnsupportedSpec(s, "mixtral layers are gated, unbiased, softmax top-k renormalised");
  }
  c["architectures"] = {"MixtralForCausalLM"};
  c["num_hidden_layers"] = 1;
  c["hidden_size"] = s.d_model;
  c["intermediate_size"] = s.expert.d_ff;
  c["num_local_experts"] = s.router.num_experts;
  c["num_experts_per_tok"] = s.router.top_k;
  c["hidden_act"] = act;
  return absl::OkStatus();
}

}  // namespace moe
