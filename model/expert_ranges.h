// Parsing expert id lists such as "0-3", "0,2,5" or "0-3,8-11".
#ifndef MOE_MODEL_EXPERT_RANGES_H_
#define MOE_MODEL_EXPERT_RANGES_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace moe {

// Ascending, duplicate-free ids, each in [0, num_experts). Errors name the
// offending piece.
absl::StatusOr<std::vector<int>> ParseExpertList(absl::string_view text, int num_experts);

// "0-3,8" style text for a sorted id list.
std::string FormatExpertList(const std::vector<int>& ids);

}  // namespace moe

#endif  // MOE_MODEL_EXPERT_RANGES_H_
