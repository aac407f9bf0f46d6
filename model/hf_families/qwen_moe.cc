// Qwen2-MoE and Qwen3-MoE: model.layers.L.mlp.{gate,experts.E.*_proj,shared_expert.*,
// shared_expert_gate}; dense where mlp_only_layers / decoder_sparse_step say so.
// Reads config.json into a layer layout, and writes one back.
#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/hf_config_reader.h"
#include "model/hf_families.h"

namespace moe {

using json = nlohmann::json;

// Qwen2-MoE and Qwen3-MoE (the same block; Qwen3 has no shared expert, so
// its config has no shared_expert_intermediate_size).
absl::Status ResolveQwenMoe(const ConfigReader& r, int layer, const std::string& family,
                            const HasTensorFn& /*has*/, HfLayerLayout* l) {
  MOE_RETURN_IF_ERROR(CheckLayer(r, layer, "num_hidden_layers"));
  MOE_ASSIGN_OR_RETURN(int64_t h, r.PositiveInt("hidden_size"));
  MOE_ASSIGN_OR_RETURN(Activation act, ReadActivation(r, "hidden_act", "silu"));
  MOE_ASSIGN_OR_RETURN(int64_t e, r.Int("num_experts", 0));
  MOE_ASSIGN_OR_RETURN(int64_t step, r.Int("decoder_sparse_step", 1));
  MOE_ASSIGN_OR_RETURN(std::vector<int64_t> mlp_only, r.IntList("mlp_only_layers"));
  const std::string p = absl::StrCat("model.layers.", layer, ".mlp.");
  const bool is_moe = std::find(mlp_only.begin(), mlp_only.end(), layer) == mlp_only.end() &&
                      e > 0 && step > 0 && (layer + 1) % step == 0;
  if (!is_moe) {
    MOE_ASSIGN_OR_RETURN(int64_t ff, r.PositiveInt("intermediate_size"));
    MakeDense(l, family, h, MakeFfnSpec(h, ff, act, true, false), ProjNames(p, false));
    return absl::OkStatus();
  }
  MOE_ASSIGN_OR_RETURN(int64_t ff, r.PositiveInt("moe_intermediate_size"));
  MOE_ASSIGN_OR_RETURN(int64_t k, r.PositiveInt("num_experts_per_tok"));
  MOE_ASSIGN_OR_RETURN(bool norm, r.Bool("norm_topk_prob", false));
  MOE_ASSIGN_OR_RETURN(int64_t shared_ff, r.Int("shared_expert_intermediate_size", 0));
  l->spec.family = family;
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
  if (shared_ff > 0) {
    l->spec.shared = MakeFfnSpec(h, shared_ff, act, true, false);
    l->spec.shared_gate = true;
    l->shared = ProjNames(p + "shared_expert.", false);
    l->shared_gate = p + "shared_expert_gate.weight";
  }
  return absl::OkStatus();
}

absl::Status WriteQwen2MoeConfig(const LayerSpec& s, json* out) {
  json& c = *out;
  const std::string act = HfActivationName(s.expert.activation);
  if (s.dense || !s.expert.gated || s.expert.has_bias ||
      s.router.scoring != ScoringFunc::kSoftmax || s.router.n_group != 1 ||
      (s.has_shared() && !s.shared_gate)) {
    return UnsupportedSpec(s,
                           "qwen2_moe layers are gated softmax top-k with a gated shared expert");
  }
  c["architectures"] = {"Qwen2MoeForCausalLM"};
  c["num_hidden_layers"] = 1;
  c["hidden_size"] = s.d_model;
  c["intermediate_size"] = s.has_shared() ? s.shared.d_ff : s.expert.d_ff;
  c["moe_intermediate_size"] = s.expert.d_ff;
  c["shared_expert_intermediate_size"] = s.has_shared() ? s.shared.d_ff : 0;
  c["num_experts"] = s.router.num_experts;
  c["num_experts_per_tok"] = s.router.top_k;
  c["norm_topk_prob"] = s.router.renormalize;
  c["decoder_sparse_step"] = 1;
  c["mlp_only_layers"] = json::array();
  c["hidden_act"] = act;
  return absl::OkStatus();
}

absl::Status WriteQwen3MoeConfig(const LayerSpec& s, json* out) {
  MOE_RETURN_IF_ERROR(WriteSoftmaxMoeKeys(s, out));
  json& c = *out;
  c["architectures"] = {"Qwen3MoeForCausalLM"};
  c["intermediate_size"] = 3 * s.expert.d_ff;  // the dense MLP size (unused here)
  c["moe_intermediate_size"] = s.expert.d_ff;
  c["decoder_sparse_step"] = 1;
  c["mlp_only_layers"] = json::array();
  return absl::OkStatus();
}

}  // namespace moe
