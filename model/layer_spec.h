// LayerSpec and LayerWeights: everything that defines one MoE (or dense)
// FFN layer, independent of where it came from (a Hugging Face checkpoint
// or a synthetic preset).
#ifndef MOE_MODEL_LAYER_SPEC_H_
#define MOE_MODEL_LAYER_SPEC_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/tensor.h"
#include "experts/ffn_weights.h"
#include "router/router_options.h"

namespace moe {

struct LayerSpec {
  // config.json model_type of the source ("mixtral", "qwen2_moe",
  // "deepseek_v3", "llama", ...).
  std::string family;
  int64_t d_model = 0;

  // A dense FFN: one expert, no router, every token weight 1.
  bool dense = false;

  // Routed experts (or the dense MLP when `dense`).
  FfnSpec expert;
  RouterOptions router;          // router.num_experts = E (1 when dense)
  bool gate_bias = false;        // the gate has a bias [E]
  bool correction_bias = false;  // selection-only bias [E] (DeepSeek-V3)

  // Shared experts, applied to every token (shared.d_ff == 0: none). Several
  // shared experts of one checkpoint are one FFN of their summed width, as
  // the families' own code builds them.
  FfnSpec shared;
  bool shared_gate = false;  // scale by sigmoid(x · w_shared_gate)

  int num_experts() const { return router.num_experts; }
  int top_k() const { return router.top_k; }
  bool has_shared() const { return shared.d_ff > 0; }

  // Elements of the FFN matrices (routed experts and shared), the bulk of
  // the weights: times DTypeSize of the compute dtype, what the layer packs.
  int64_t FfnMatrixElements() const;

  // "mixtral: d_model 4096, 8 experts (swiglu d_ff 14336) top-2, ..."
  std::string Summary() const;
};

struct LayerWeights {
  LayerSpec spec;
  Tensor gate_weight;               // [E, d_model]; empty when dense
  Tensor gate_bias;                 // [E] when spec.gate_bias
  Tensor correction_bias;           // [E] when spec.correction_bias
  std::vector<FfnWeights> experts;  // E entries (1 when dense)
  FfnWeights shared;                // when spec.has_shared()
  Tensor shared_gate;               // [1, d_model] when spec.shared_gate
};

// A 64-bit FNV-1a checksum of the routed experts `experts` (ascending ids):
// their ids, tensor shapes, dtypes and bytes. Front end and expert workers
// compare it to make sure they serve the same weights.
uint64_t ExpertWeightsChecksum(const LayerWeights& w, const std::vector<int>& experts);

// Checks every tensor's presence and shape against the spec. Messages name
// the tensor ("expert 3: w2 has shape [64, 96], expected [64, 128]").
absl::Status ValidateLayerWeights(const LayerWeights& w);

}  // namespace moe

#endif  // MOE_MODEL_LAYER_SPEC_H_
