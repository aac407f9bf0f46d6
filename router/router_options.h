// RouterOptions: how a layer's gate turns token scores into a choice of
// experts. Every field has the default that gives plain Mixtral routing;
// the checkpoint loader and presets fill them from a model's config.json.
#ifndef MOE_ROUTER_ROUTER_OPTIONS_H_
#define MOE_ROUTER_ROUTER_OPTIONS_H_

#include <cstdint>

namespace moe {

enum class ScoringFunc {
  kSoftmax,  // softmax over all experts, in f32 (Mixtral, Qwen2-MoE, V2).
  kSigmoid,  // independent sigmoid per expert (DeepSeek-V3).
};

enum class GroupScore {
  kMax,      // a group scores its best expert (DeepSeek-V2 group_limited).
  kSumTop2,  // a group scores the sum of its top-2 experts (DeepSeek-V3).
};

struct RouterOptions {
  // Number of routed experts E (>= 1) and experts kept per token (1..E).
  int num_experts = 1;
  int top_k = 1;

  ScoringFunc scoring = ScoringFunc::kSoftmax;

  // Grouped selection: experts [g*E/n_group, (g+1)*E/n_group) form group g;
  // only the best `topk_group` groups are eligible. n_group = 1 disables it.
  int n_group = 1;
  int topk_group = 1;
  GroupScore group_score = GroupScore::kSumTop2;

  // Divide the k kept weights by their sum (+ renorm_epsilon). Mixtral
  // always; others when config.json says norm_topk_prob.
  bool renormalize = false;
  float renorm_epsilon = 0.0f;  // DeepSeek adds 1e-20.

  // Multiplies the final weights (DeepSeek routed_scaling_factor).
  float routed_scaling_factor = 1.0f;

  // Switch-style capacity: expert e keeps at most
  // ceil(capacity_factor * T * k / E) tokens per batch, the first ones in
  // token order; the rest are dropped for e. 0 means dropless (default).
  // Note: with a capacity limit a token's routing depends, by definition,
  // on the other tokens of its batch.
  double capacity_factor = 0.0;
};

}  // namespace moe

#endif  // MOE_ROUTER_ROUTER_OPTIONS_H_
