// HfLayout: how one layer's FFN is described in a Hugging Face model folder:
// the LayerSpec that config.json implies for layer L, and the names of the
// tensors that hold it, per model family.
//
// Families (config.json model_type):
//   mixtral                       model.layers.L.block_sparse_moe.{gate,experts.E.{w1,w3,w2}}
//   qwen2_moe                     model.layers.L.mlp.{gate,experts.E.*_proj,shared_expert.*,
//                                 shared_expert_gate}; dense where mlp_only_layers /
//                                 decoder_sparse_step say so
//   deepseek_v2, deepseek_v3      model.layers.L.mlp.{gate(.e_score_correction_bias),
//                                 experts.E.*_proj,shared_experts.*}; dense before
//                                 first_k_dense_replace and off moe_layer_freq
//   llama, mistral, qwen2         model.layers.L.mlp.{gate,up,down}_proj (dense SwiGLU)
//   bert                          [bert.]encoder.layer.L.{intermediate,output}.dense
//   gpt2                          [transformer.]h.L.mlp.{c_fc,c_proj} (Conv1D: [in, out])
//   switch_transformers           encoder.block.L.layer.1.mlp.{router.classifier,
//                                 experts.expert_E.{wi,wo}} (or mlp.{wi,wo} when dense)
// Routing semantics follow each family's public modelling code (Hugging
// Face transformers' modeling_<family>.py); the capacity factor of
// switch_transformers is read from the `capacity_factor` key when present
// (HF's own `expert_capacity` is a per-sequence token count, which has no
// meaning for a serving batch).
#ifndef MOE_MODEL_HF_LAYOUT_H_
#define MOE_MODEL_HF_LAYOUT_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/layer_spec.h"
#include "nlohmann/json.hpp"

namespace moe {

struct FfnTensorNames {
  std::string w1, w3, w2, b1, b3, b2;  // empty when the spec has none
  bool transposed = false;             // stored [in, out] (GPT-2 Conv1D)
};

struct HfLayerLayout {
  LayerSpec spec;
  std::string gate_weight, gate_bias, correction_bias, shared_gate;
  std::vector<FfnTensorNames> experts;
  FfnTensorNames shared;
  // quantization_config with quant_method "fp8" (DeepSeek-V3, Qwen3 -FP8):
  // weights stored F8_E4M3 come with "<name>_scale_inv" (f32) per block of
  // fp8_block[0] output rows x fp8_block[1] input columns. {0, 0}: none.
  int64_t fp8_block[2] = {0, 0};
  // gpt-oss: every expert in tensors under this prefix ("...mlp.experts."),
  // and `experts` is empty: gate_up_proj_{blocks,scales} (MXFP4, decoded
  // [E, 2 d_ff, d_model]) or gate_up_proj [E, d_model, 2 d_ff]; gate the
  // even and up the odd columns of the latter; gate_up_proj_bias
  // [E, 2 d_ff]; down_proj_{blocks,scales} (decoded [E, d_model, d_ff]) or
  // down_proj [E, d_ff, d_model]; down_proj_bias [E, d_model].
  std::string packed_experts;
};

// The layout of layer `layer` of the model that `config` (config.json,
// read from `config_path` — used in messages) describes. `has_tensor`
// answers whether a name exists, to pick between optional name prefixes.
absl::StatusOr<HfLayerLayout> ResolveHfLayer(
    const nlohmann::json& config, int layer, const std::string& config_path,
    const std::function<bool(const std::string&)>& has_tensor);

// How many layers the model has (num_hidden_layers; n_layer for gpt2,
// num_layers for switch_transformers).
absl::StatusOr<int> HfNumLayers(const nlohmann::json& config, const std::string& config_path);

// The inverse, for writing a one-layer checkpoint of `spec`: a config.json
// whose layer 0 resolves back to `spec`. Fails for specs the family cannot
// express.
absl::StatusOr<nlohmann::json> MakeHfConfig(const LayerSpec& spec);

}  // namespace moe

#endif  // MOE_MODEL_HF_LAYOUT_H_
