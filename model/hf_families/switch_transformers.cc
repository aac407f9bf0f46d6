// Switch Transformers: encoder.block.L.layer.1.mlp.{router.classifier,
// experts.expert_E.{wi,wo}} (or mlp.{wi,wo} when dense).
// Reads config.json into a layer layout, and writes one back.
#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/hf_config_reader.h"
#include "model/hf_families.h"

namespace moe {

using json = nlohmann::json;

absl::Status ResolveSwitch(const ConfigReader& r, int layer, const std::string& family,
                           const HasTensorFn& /*has*/, HfLayerLayout* l) {
  MOE_RETURN_IF_ERROR(CheckLayer(r, layer, "num_layers"));
  MOE_ASSIGN_OR_RETURN(int64_t h, r.PositiveInt("d_model"));
  MOE_ASSIGN_OR_RETURN(int64_t ff, r.PositiveInt("d_ff"));
  MOE_ASSIGN_OR_RETURN(int64_t e, r.PositiveInt("num_experts"));
  MOE_ASSIGN_OR_RETURN(int64_t layers, r.PositiveInt("num_layers"));
  MOE_ASSIGN_OR_RETURN(int64_t sparse_layers, r.Int("num_sparse_encoder_layers", 3));
  MOE_ASSIGN_OR_RETURN(Activation act, ReadActivation(r, "dense_act_fn", "relu"));
  MOE_ASSIGN_OR_RETURN(bool router_bias, r.Bool("router_bias", false));
  MOE_ASSIGN_OR_RETURN(double capacity, r.Number("capacity_factor", 0.0));
  const int64_t step = sparse_layers > 0 ? layers / sparse_layers : 0;
  const bool is_moe = step > 0 && (step == 1 || layer % step == 1);
  const std::string p = absl::StrCat("encoder.block.", layer, ".layer.1.mlp.");
  if (!is_moe) {
    FfnTensorNames n;
    n.w1 = p + "wi.weight";
    n.w2 = p + "wo.weight";
    MakeDense(l, "switch_transformers", h, MakeFfnSpec(h, ff, act, false, false), n);
    return absl::OkStatus();
  }
  l->spec.family = "switch_transformers";
  l->spec.d_model = h;
  l->spec.expert = MakeFfnSpec(h, ff, act, false, false);
  l->spec.router.num_experts = static_cast<int>(e);
  l->spec.router.top_k = 1;
  l->spec.router.scoring = ScoringFunc::kSoftmax;
  l->spec.router.capacity_factor = capacity;
  l->spec.gate_bias = router_bias;
  l->gate_weight = p + "router.classifier.weight";
  if (router_bias) l->gate_bias = p + "router.classifier.bias";
  for (int64_t i = 0; i < e; ++i) {
    FfnTensorNames n;
    n.w1 = absl::StrCat(p, "experts.expert_", i, ".wi.weight");
    n.w2 = absl::StrCat(p, "experts.expert_", i, ".wo.weight");
    l->experts.push_back(n);
  }
  return absl::OkStatus();
}

absl::Status WriteSwitchConfig(const LayerSpec& s, json* out) {
  json& c = *out;
  const std::string act = HfActivationName(s.expert.activation);
  if (s.dense || s.expert.gated || s.expert.has_bias || s.router.top_k != 1 ||
      s.router.scoring != ScoringFunc::kSoftmax || s.router.renormalize || s.has_shared()) {
    return UnsupportedSpec(s, "switch layers are plain top-1 softmax without renormalisation");
  }
  c["architectures"] = {"SwitchTransformersEncoderModel"};
  c["num_layers"] = 1;
  c["num_sparse_encoder_layers"] = 1;
  c["d_model"] = s.d_model;
  c["d_ff"] = s.expert.d_ff;
  c["num_experts"] = s.router.num_experts;
  c["router_bias"] = s.gate_bias;
  c["dense_act_fn"] = act;
  if (s.router.capacity_factor > 0) c["capacity_factor"] = s.router.capacity_factor;
  return absl::OkStatus();
}

}  // namespace moe
