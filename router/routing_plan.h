// RoutingPlan: the router's decision for one batch of tokens, in the two
// views the layer needs.
//
//   Per token t (slot j = 0..k-1, best first):
//     expert_ids[t * k + j]  the chosen expert, or kDroppedExpert when the
//                            expert was over capacity for this token;
//     weights[t * k + j]     its routing weight (0 when dropped).
//   Per expert e:
//     expert_rows[e]         the token rows routed to e, ascending;
//     expert_row_weights[e]  the matching routing weights.
//
// A plan is plain data, reused across batches: Router::Route() clears and
// refills it without giving memory back, so steady-state routing allocates
// nothing.
#ifndef MOE_ROUTER_ROUTING_PLAN_H_
#define MOE_ROUTER_ROUTING_PLAN_H_

#include <cstdint>
#include <vector>

namespace moe {

inline constexpr int32_t kDroppedExpert = -1;

struct RoutingPlan {
  int64_t num_tokens = 0;
  int top_k = 0;
  int num_experts = 0;

  std::vector<int32_t> expert_ids;  // [num_tokens * top_k]
  std::vector<float> weights;       // [num_tokens * top_k]

  std::vector<std::vector<int32_t>> expert_rows;       // [num_experts][...]
  std::vector<std::vector<float>> expert_row_weights;  // [num_experts][...]

  // Token-expert assignments removed by the capacity limit.
  int64_t num_dropped = 0;

  // Router scores (after softmax/sigmoid, before any bias), [T * E]. Kept
  // for callers that want them; also the router's scratch space.
  std::vector<float> scores;

  // The router's per-token scratch (selection scores and order), kept here
  // so that routing a batch allocates nothing once the plan has grown.
  std::vector<float> choice_scratch;
  std::vector<int> order_scratch;

  int64_t tokens_for_expert(int e) const {
    return static_cast<int64_t>(expert_rows[static_cast<size_t>(e)].size());
  }
};

}  // namespace moe

#endif  // MOE_ROUTER_ROUTING_PLAN_H_
