// The load points of a moe_loadgen sweep, from its command-line forms.
#ifndef MOE_CLIENT_SWEEP_POINTS_H_
#define MOE_CLIENT_SWEEP_POINTS_H_

#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace moe {

// "1,8,64": each value > 0, in the given order.
absl::StatusOr<std::vector<double>> ParseSweepList(absl::string_view list);

// perf_analyzer's range form "start[:end[:step]]": start, start + step, ...
// up to and including end (end defaults to start, step to 1). All > 0 and
// start <= end; at most 10,000 points. INVALID_ARGUMENT naming the part
// that is wrong.
absl::StatusOr<std::vector<double>> ParseSweepRange(absl::string_view range);

}  // namespace moe

#endif  // MOE_CLIENT_SWEEP_POINTS_H_
