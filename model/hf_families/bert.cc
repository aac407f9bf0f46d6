// BERT: [bert.]encoder.layer.L.{intermediate,output}.dense.
// Reads config.json into a layer layout, and writes one back.
#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/hf_config_reader.h"
#include "model/hf_families.h"

namespace moe {

using json = nlohmann::json;

absl::Status ResolveBert(const ConfigReader& r, int layer, const std::string& /*family*/,
                         const HasTensorFn& has, HfLayerLayout* l) {
  MOE_RETURN_IF_ERROR(CheckLayer(r, layer, "num_hidden_layers"));
  MOE_ASSIGN_OR_RETURN(int64_t h, r.PositiveInt("hidden_size"));
  MOE_ASSIGN_OR_RETURN(int64_t ff, r.PositiveInt("intermediate_size"));
  MOE_ASSIGN_OR_RETURN(Activation act, ReadActivation(r, "hidden_act", "gelu"));
  std::string p = absl::StrCat("bert.encoder.layer.", layer, ".");
  if (!has(p + "intermediate.dense.weight")) p = absl::StrCat("encoder.layer.", layer, ".");
  FfnTensorNames n;
  n.w1 = p + "intermediate.dense.weight";
  n.b1 = p + "intermediate.dense.bias";
  n.w2 = p + "output.dense.weight";
  n.b2 = p + "output.dense.bias";
  MakeDense(l, "bert", h, MakeFfnSpec(h, ff, act, false, true), n);
  return absl::OkStatus();
}

absl::Status WriteBertConfig(const LayerSpec& s, json* out) {
  json& c = *out;
  const std::string act = HfActivationName(s.expert.activation);
  if (!s.dense || s.expert.gated || !s.expert.has_bias) {
    return UnsupportedSpec(s, "a dense plain MLP with biases is needed");
  }
  c["architectures"] = {"BertModel"};
  c["num_hidden_layers"] = 1;
  c["hidden_size"] = s.d_model;
  c["intermediate_size"] = s.expert.d_ff;
  c["hidden_act"] = act;
  return absl::OkStatus();
}

}  // namespace moe
