// GivenRouting: expert choices a caller made for some tokens of a batch
// (for example a gate computed next to attention, on another device), to be
// used instead of the router's own.
//
// The router takes, for token t with present[t] != 0, the k experts
// ids[t*k .. t*k+k) with the weights weights[t*k .. t*k+k) exactly as given
// (the order within a token does not matter: the layer combines a token's
// experts in ascending id order either way). An id of kDroppedExpert (-1)
// with weight 0 is an empty slot, as the router itself reports slots a
// capacity limit dropped, so its own routing can be given back. Given
// experts are never dropped by a capacity limit. Other tokens are routed by
// the gate as usual. The pointers are borrowed for one Route() call.
#ifndef MOE_ROUTER_GIVEN_ROUTING_H_
#define MOE_ROUTER_GIVEN_ROUTING_H_

#include <cstdint>

#include "absl/status/status.h"

namespace moe {

struct GivenRouting {
  const uint8_t* present = nullptr;  // [T]; null: no token has given routing
  const int32_t* ids = nullptr;      // [T, k]
  const float* weights = nullptr;    // [T, k]
};

// Checks `num_tokens` tokens' given routing: each token's k ids lie in
// [0, num_experts) and are distinct, or are -1 (an empty slot) with weight
// 0, and every weight is finite.
// INVALID_ARGUMENT naming the token, the position and the value otherwise
// ("expert_ids[3][1]: expert 9 is out of range 0..7").
absl::Status ValidateGivenRouting(const int32_t* ids, const float* weights, int64_t num_tokens,
                                  int k, int num_experts);

}  // namespace moe

#endif  // MOE_ROUTER_GIVEN_ROUTING_H_
