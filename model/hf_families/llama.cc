// LLaMA, Mistral and Qwen2: model.layers.L.mlp.{gate,up,down}_proj (dense SwiGLU).
// Reads config.json into a layer layout, and writes one back.
#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/hf_config_reader.h"
#include "model/hf_families.h"

namespace moe {

using json = nlohmann::json;

absl::Status ResolveLlama(const ConfigReader& r, int layer, const std::string& family,
                          const HasTensorFn& /*has*/, HfLayerLayout* l) {
  MOE_RETURN_IF_ERROR(CheckLayer(r, layer, "num_hidden_layers"));
  MOE_ASSIGN_OR_RETURN(int64_t h, r.PositiveInt("hidden_size"));
  MOE_ASSIGN_OR_RETURN(int64_t ff, r.PositiveInt("intermediate_size"));
  MOE_ASSIGN_OR_RETURN(Activation act, ReadActivation(r, "hidden_act", "silu"));
  MOE_ASSIGN_OR_RETURN(bool bias, r.Bool("mlp_bias", false));
  MakeDense(l, family, h, MakeFfnSpec(h, ff, act, true, bias),
            ProjNames(absl::StrCat("model.layers.", layer, ".mlp."), bias));
  return absl::OkStatus();
}

absl::Status WriteLlamaConfig(const LayerSpec& s, json* out) {
  json& c = *out;
  const std::string& f = s.family;
  const std::string act = HfActivationName(s.expert.activation);
  if (!s.dense || !s.expert.gated) return UnsupportedSpec(s, "a dense gated MLP is needed");
  c["architectures"] = {f == "llama"     ? "LlamaForCausalLM"
                        : f == "mistral" ? "MistralForCausalLM"
                                         : "Qwen2ForCausalLM"};
  c["num_hidden_layers"] = 1;
  c["hidden_size"] = s.d_model;
  c["intermediate_size"] = s.expert.d_ff;
  c["hidden_act"] = act;
  if (s.expert.has_bias) c["mlp_bias"] = true;
  return absl::OkStatus();
}

}  // namespace moe
