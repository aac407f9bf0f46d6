#include "client/sweep_points.h"

#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace moe {

absl::StatusOr<std::vector<double>> ParseSweepList(absl::string_view list) {
  std::vector<double> points;
  for (absl::string_view p : absl::StrSplit(list, ',')) {
    double v;
    if (!absl::SimpleAtod(p, &v) || !(v > 0)) {
      return absl::InvalidArgumentError(absl::StrCat("bad value '", p, "' (want a number > 0)"));
    }
    points.push_back(v);
  }
  return points;
}

absl::StatusOr<std::vector<double>> ParseSweepRange(absl::string_view range) {
  const std::vector<absl::string_view> parts = absl::StrSplit(range, ':');
  if (parts.size() > 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", range, "' has more than three parts (want start[:end[:step]])"));
  }
  static constexpr const char* kNames[] = {"start", "end", "step"};
  double v[3] = {0, 0, 1};
  for (size_t i = 0; i < parts.size(); ++i) {
    if (!absl::SimpleAtod(parts[i], &v[i]) || !(v[i] > 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat(kNames[i], " '", parts[i], "' of '", range, "' is not a number > 0"));
    }
  }
  if (parts.size() < 2) v[1] = v[0];
  if (v[1] < v[0]) {
    return absl::InvalidArgumentError(
        absl::StrCat("end ", v[1], " is below start ", v[0], " in '", range, "'"));
  }
  if ((v[1] - v[0]) / v[2] > 10000) {
    return absl::InvalidArgumentError(absl::StrCat("'", range, "' has over 10,000 points"));
  }
  std::vector<double> points;
  // Integer steps: no accumulated rounding drops the end point.
  for (int64_t i = 0;; ++i) {
    const double p = v[0] + static_cast<double>(i) * v[2];
    if (p > v[1] * (1 + 1e-12)) break;
    points.push_back(p);
  }
  return points;
}

}  // namespace moe
