// GPT-2: [transformer.]h.L.mlp.{c_fc,c_proj} (Conv1D: [in, out]).
// Reads config.json into a layer layout, and writes one back.
#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/hf_config_reader.h"
#include "model/hf_families.h"

namespace moe {

using json = nlohmann::json;

absl::Status ResolveGpt2(const ConfigReader& r, int layer, const std::string& /*family*/,
                         const HasTensorFn& has, HfLayerLayout* l) {
  MOE_RETURN_IF_ERROR(CheckLayer(r, layer, "n_layer"));
  MOE_ASSIGN_OR_RETURN(int64_t h, r.PositiveInt("n_embd"));
  MOE_ASSIGN_OR_RETURN(int64_t ff, r.Int("n_inner", 4 * h));
  MOE_ASSIGN_OR_RETURN(Activation act, ReadActivation(r, "activation_function", "gelu_new"));
  std::string p = absl::StrCat("h.", layer, ".mlp.");
  if (!has(p + "c_fc.weight")) p = absl::StrCat("transformer.h.", layer, ".mlp.");
  FfnTensorNames n;
  n.w1 = p + "c_fc.weight";
  n.b1 = p + "c_fc.bias";
  n.w2 = p + "c_proj.weight";
  n.b2 = p + "c_proj.bias";
  n.transposed = true;
  MakeDense(l, "gpt2", h, MakeFfnSpec(h, ff, act, false, true), n);
  return absl::OkStatus();
}

absl::Status WriteGpt2Config(const LayerSpec& s, json* out) {
  json& c = *out;
  const std::string act = HfActivationName(s.expert.activation);
  if (!s.dense || s.expert.gated || !s.expert.has_bias) {
    return UnsupportedSpec(s, "a dense plain MLP with biases is needed");
  }
  c["architectures"] = {"GPT2LMHeadModel"};
  c["n_layer"] = 1;
  c["n_embd"] = s.d_model;
  c["n_inner"] = s.expert.d_ff;
  c["activation_function"] = act;
  return absl::OkStatus();
}

}  // namespace moe
