#include "router/given_routing.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "router/routing_plan.h"

namespace moe {

absl::Status ValidateGivenRouting(const int32_t* ids, const float* weights, int64_t num_tokens,
                                  int k, int num_experts) {
  for (int64_t t = 0; t < num_tokens; ++t) {
    const int32_t* row = ids + t * k;
    for (int j = 0; j < k; ++j) {
      if (row[j] == kDroppedExpert) {
        // An empty slot (what the router reports for a slot a capacity
        // limit dropped): no expert, so its weight must be 0.
        if (weights[t * k + j] != 0.0f) {
          return absl::InvalidArgumentError(
              absl::StrCat("expert_weights[", t, "][", j, "]: ", weights[t * k + j],
                           " for an empty slot (expert_ids -1); an empty slot's weight must be 0"));
        }
        continue;
      }
      if (row[j] < 0 || row[j] >= num_experts) {
        return absl::InvalidArgumentError(absl::StrCat("expert_ids[", t, "][", j, "]: expert ",
                                                       row[j], " is out of range 0..",
                                                       num_experts - 1));
      }
      for (int i = 0; i < j; ++i) {
        if (row[i] == row[j]) {  // -1 never gets here
          return absl::InvalidArgumentError(
              absl::StrCat("expert_ids[", t, "]: expert ", row[j], " appears twice (positions ", i,
                           " and ", j, "); a token's experts must be distinct"));
        }
      }
      const float w = weights[t * k + j];
      if (!std::isfinite(w)) {
        return absl::InvalidArgumentError(
            absl::StrCat("expert_weights[", t, "][", j, "]: ", w, " is not finite"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace moe
