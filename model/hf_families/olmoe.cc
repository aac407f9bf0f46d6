// OLMoE: model.layers.L.mlp.{gate,experts.E.*_proj}.
// Reads config.json into a layer layout, and writes one back.
#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/hf_config_reader.h"
#include "model/hf_families.h"

namespace moe {

using json = nlohmann::json;

// OLMoE: every layer is MoE; intermediate_size is the expert size; softmax
// top-k, renormalised only with norm_topk_prob; no shared expert.
absl::Status ResolveOlmoe(const ConfigReader& r, int layer, const std::string& family,
                          const HasTensorFn& /*has*/, HfLayerLayout* l) {
  MOE_RETURN_IF_ERROR(CheckLayer(r, layer, "num_hidden_layers"));
  MOE_ASSIGN_OR_RETURN(int64_t h, r.PositiveInt("hidden_size"));
  MOE_ASSIGN_OR_RETURN(int64_t ff, r.PositiveInt("intermediate_size"));
  MOE_ASSIGN_OR_RETURN(int64_t e, r.PositiveInt("num_experts"));
  MOE_ASSIGN_OR_RETURN(int64_t k, r.PositiveInt("num_experts_per_tok"));
  MOE_ASSIGN_OR_RETURN(bool norm, r.Bool("norm_topk_prob", false));
  MOE_ASSIGN_OR_RETURN(Activation act, ReadActivation(r, "hidden_act", "silu"));
  const std::string p = absl::StrCat("model.layers.", layer, ".mlp.");
  l->spec.family = "olmoe";
  l->spec.d_model = h;
  l->spec.expert = MakeFfnSpec(h, ff, act, true, false);
  l->spec.router.num_experts = static_cast<int>(e);
  l->spec.router.top_k = static_cast<int>(k);
  l->spec.router.scoring = ScoringFunc::kSoftmax;
  l->spec.router.renormalize = norm;
  l->gate_weight = p + "gate.weight";
  for (int64_t i = 0; i < e; ++i) {
    l->experts.push_back(ProjNames(absl::StrCat(p, "experts.", i, "."), false));
  }
  return absl::OkStatus();
}

absl::Status WriteOlmoeConfig(const LayerSpec& s, json* out) {
  MOE_RETURN_IF_ERROR(WriteSoftmaxMoeKeys(s, out));
  json& c = *out;
  c["architectures"] = {"OlmoeForCausalLM"};
  c["intermediate_size"] = s.expert.d_ff;  // OLMoE: the expert size
  return absl::OkStatus();
}

}  // namespace moe
