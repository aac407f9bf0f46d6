// gpt-oss: model.layers.L.mlp.{router,experts.gate_up_proj*,experts.down_proj*}.
// Reads config.json into a layer layout, and writes one back.
#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/hf_config_reader.h"
#include "model/hf_families.h"

namespace moe {

using json = nlohmann::json;

// gpt-oss: the router has a bias, picks the top k logits and takes the
// softmax over those k (the same weights as a softmax over all, then
// renormalised over the k); the experts are one clamped-SwiGLU FFN each,
// with biases, stored together (HfLayerLayout::packed_experts).
absl::Status ResolveGptOss(const ConfigReader& r, int layer, const std::string& family,
                           const HasTensorFn& /*has*/, HfLayerLayout* l) {
  MOE_RETURN_IF_ERROR(CheckLayer(r, layer, "num_hidden_layers"));
  MOE_ASSIGN_OR_RETURN(int64_t h, r.PositiveInt("hidden_size"));
  MOE_ASSIGN_OR_RETURN(int64_t ff, r.PositiveInt("intermediate_size"));
  MOE_ASSIGN_OR_RETURN(int64_t e, r.PositiveInt("num_local_experts"));
  MOE_ASSIGN_OR_RETURN(int64_t k_default, r.Int("experts_per_token", 4));
  MOE_ASSIGN_OR_RETURN(int64_t k, r.Int("num_experts_per_tok", k_default));
  MOE_ASSIGN_OR_RETURN(double limit, r.Number("swiglu_limit", 7.0));
  if (k < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(r.path(), ": config key 'num_experts_per_tok' must be >= 1, got ", k));
  }
  if (!(limit > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat(r.path(), ": config key 'swiglu_limit' must be > 0, got ", limit));
  }
  const std::string p = absl::StrCat("model.layers.", layer, ".mlp.");
  l->spec.family = "gpt_oss";
  l->spec.d_model = h;
  l->spec.expert = MakeFfnSpec(h, ff, Activation::kSilu, true, true);
  l->spec.expert.swiglu_limit = static_cast<float>(limit);
  l->spec.router.num_experts = static_cast<int>(e);
  l->spec.router.top_k = static_cast<int>(k);
  l->spec.router.scoring = ScoringFunc::kSoftmax;
  l->spec.router.renormalize = true;
  l->spec.gate_bias = true;
  l->gate_weight = p + "router.weight";
  l->gate_bias = p + "router.bias";
  l->packed_experts = p + "experts.";
  return absl::OkStatus();
}

absl::Status WriteGptOssConfig(const LayerSpec& s, json* out) {
  json& c = *out;
  const std::string act = HfActivationName(s.expert.activation);
  if (s.dense || !s.expert.gated || !s.expert.has_bias || !(s.expert.swiglu_limit > 0) ||
      s.expert.activation != Activation::kSilu || s.router.scoring != ScoringFunc::kSoftmax ||
      !s.router.renormalize || !s.gate_bias || s.correction_bias || s.has_shared() ||
      s.router.n_group != 1 || s.router.capacity_factor != 0 ||
      s.router.routed_scaling_factor != 1.0f) {
    return UnsupportedSpec(s,
                           "gpt_oss layers are clamped-SwiGLU experts with biases, a router with "
                           "a bias, softmax over the top k (ungrouped, unscaled, no capacity "
                           "factor) and no shared expert");
  }
  c["architectures"] = {"GptOssForCausalLM"};
  c["num_hidden_layers"] = 1;
  c["hidden_size"] = s.d_model;
  c["intermediate_size"] = s.expert.d_ff;
  c["num_local_experts"] = s.router.num_experts;
  c["num_experts_per_tok"] = s.router.top_k;
  c["experts_per_token"] = s.router.top_k;
  c["swiglu_limit"] = s.expert.swiglu_limit;
  c["hidden_act"] = act;
  c["quantization_config"] = {
      {"quant_method", "mxfp4"},
      {"modules_to_not_convert",
       {"model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"}}};
  return absl::OkStatus();
}

}  // namespace moe
