// DeepSeek-V2 and -V3: model.layers.L.mlp.{gate(.e_score_correction_bias),
// experts.E.*_proj,shared_experts.*}; dense before first_k_dense_replace and off
// moe_layer_freq.
// Reads config.json into a layer layout, and writes one back.
#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/hf_config_reader.h"
#include "model/hf_families.h"

namespace moe {

using json = nlohmann::json;

absl::Status ResolveDeepseek(const ConfigReader& r, int layer, const std::string& family,
                             const HasTensorFn& /*has*/, HfLayerLayout* l) {
  const bool v3 = family == "deepseek_v3";
  MOE_RETURN_IF_ERROR(CheckLayer(r, layer, "num_hidden_layers"));
  MOE_ASSIGN_OR_RETURN(int64_t h, r.PositiveInt("hidden_size"));
  MOE_ASSIGN_OR_RETURN(Activation act, ReadActivation(r, "hidden_act", "silu"));
  MOE_ASSIGN_OR_RETURN(int64_t e, r.Int("n_routed_experts", 0));
  MOE_ASSIGN_OR_RETURN(int64_t first_dense, r.Int("first_k_dense_replace", 0));
  MOE_ASSIGN_OR_RETURN(int64_t freq, r.Int("moe_layer_freq", 1));
  const std::string p = absl::StrCat("model.layers.", layer, ".mlp.");
  const bool is_moe = e > 0 && layer >= first_dense && freq > 0 && layer % freq == 0;
  if (!is_moe) {
    MOE_ASSIGN_OR_RETURN(int64_t ff, r.PositiveInt("intermediate_size"));
    MakeDense(l, family, h, MakeFfnSpec(h, ff, act, true, false), ProjNames(p, false));
    return absl::OkStatus();
  }
  MOE_ASSIGN_OR_RETURN(int64_t ff, r.PositiveInt("moe_intermediate_size"));
  MOE_ASSIGN_OR_RETURN(int64_t k, r.PositiveInt("num_experts_per_tok"));
  MOE_ASSIGN_OR_RETURN(std::string scoring, r.String("scoring_func", v3 ? "sigmoid" : "softmax"));
  MOE_ASSIGN_OR_RETURN(std::string method, r.String("topk_method", v3 ? "noaux_tc" : "greedy"));
  MOE_ASSIGN_OR_RETURN(bool norm, r.Bool("norm_topk_prob", v3));
  MOE_ASSIGN_OR_RETURN(double scale, r.Number("routed_scaling_factor", v3 ? 2.5 : 1.0));
  MOE_ASSIGN_OR_RETURN(int64_t shared_n, r.Int("n_shared_experts", 0));
  RouterOptions& o = l->spec.router;
  o.num_experts = static_cast<int>(e);
  o.top_k = static_cast<int>(k);
  if (scoring == "softmax") {
    o.scoring = ScoringFunc::kSoftmax;
  } else if (scoring == "sigmoid") {
    o.scoring = ScoringFunc::kSigmoid;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        r.path(), ": config key 'scoring_func' must be softmax or sigmoid, got '", scoring, "'"));
  }
  if (method == "noaux_tc" || method == "group_limited_greedy") {
    MOE_ASSIGN_OR_RETURN(int64_t n_group, r.PositiveInt("n_group"));
    MOE_ASSIGN_OR_RETURN(int64_t topk_group, r.PositiveInt("topk_group"));
    o.n_group = static_cast<int>(n_group);
    o.topk_group = static_cast<int>(topk_group);
    o.group_score = method == "noaux_tc" ? GroupScore::kSumTop2 : GroupScore::kMax;
    l->spec.correction_bias = method == "noaux_tc";
  } else if (method != "greedy" && method != "gready") {
    return absl::InvalidArgumentError(
        absl::StrCat(r.path(),
                     ": config key 'topk_method' must be greedy, group_limited_greedy or "
                     "noaux_tc, got '",
                     method, "'"));
  }
  // Weights as the families compute them: V3 renormalises (top_k > 1) and
  // always scales; V2 either renormalises or scales.
  o.renormalize = norm && k > 1;
  o.renorm_epsilon = 1e-20f;
  o.routed_scaling_factor = (v3 || !o.renormalize) ? static_cast<float>(scale) : 1.0f;
  l->spec.family = family;
  l->spec.d_model = h;
  l->spec.expert = MakeFfnSpec(h, ff, act, true, false);
  l->gate_weight = p + "gate.weight";
  if (l->spec.correction_bias) l->correction_bias = p + "gate.e_score_correction_bias";
  for (int64_t i = 0; i < e; ++i) {
    l->experts.push_back(ProjNames(absl::StrCat(p, "experts.", i, "."), false));
  }
  if (shared_n > 0) {
    l->spec.shared = MakeFfnSpec(h, ff * shared_n, act, true, false);
    l->shared = ProjNames(p + "shared_experts.", false);
  }
  return absl::OkStatus();
}

absl::Status WriteDeepseekConfig(const LayerSpec& s, json* out) {
  json& c = *out;
  const std::string act = HfActivationName(s.expert.activation);
  if (s.dense || !s.expert.gated || s.expert.has_bias ||
      s.router.scoring != ScoringFunc::kSigmoid || !s.correction_bias ||
      s.router.group_score != GroupScore::kSumTop2 || s.shared_gate ||
      (s.has_shared() && s.shared.d_ff % s.expert.d_ff != 0)) {
    return UnsupportedSpec(s,
                           "deepseek_v3 layers are sigmoid noaux_tc with ungated shared experts");
  }
  c["architectures"] = {"DeepseekV3ForCausalLM"};
  c["num_hidden_layers"] = 1;
  c["hidden_size"] = s.d_model;
  c["intermediate_size"] = s.has_shared() ? s.shared.d_ff : s.expert.d_ff;
  c["moe_intermediate_size"] = s.expert.d_ff;
  c["n_routed_experts"] = s.router.num_experts;
  c["n_shared_experts"] = s.has_shared() ? s.shared.d_ff / s.expert.d_ff : 0;
  c["num_experts_per_tok"] = s.router.top_k;
  c["n_group"] = s.router.n_group;
  c["topk_group"] = s.router.topk_group;
  c["norm_topk_prob"] = s.router.renormalize;
  c["routed_scaling_factor"] = s.router.routed_scaling_factor;
  c["scoring_func"] = "sigmoid";
  c["topk_method"] = "noaux_tc";
  c["first_k_dense_replace"] = 0;
  c["moe_layer_freq"] = 1;
  c["hidden_act"] = act;
  return absl::OkStatus();
}

}  // namespace moe
