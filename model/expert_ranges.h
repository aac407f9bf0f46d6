// Parsing id lists such as "0-3", "0,2,5" or "0-3,8-11": experts of a
// layer, layers of a model.
#ifndef MOE_MODEL_EXPERT_RANGES_H_
#define MOE_MODEL_EXPERT_RANGES_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace moe {

// Ascending, duplicate-free ids, each in [0, count). Errors name the list
// (`noun`, e.g. "expert") and the offending piece.
absl::StatusOr<std::vector<int>> ParseIdList(absl::string_view text, int count,
                                             absl::string_view noun);

inline absl::StatusOr<std::vector<int>> ParseExpertList(absl::string_view text, int num_experts) {
  return ParseIdList(text, num_experts, "expert");
}

// A model's layers: "all", or a list as above, of `num_layers`.
absl::StatusOr<std::vector<int>> ParseLayerList(absl::string_view text, int num_layers);

// "0-3,8" style text for a sorted id list.
std::string FormatExpertList(const std::vector<int>& ids);

}  // namespace moe

#endif  // MOE_MODEL_EXPERT_RANGES_H_
