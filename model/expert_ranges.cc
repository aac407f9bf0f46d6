#include "model/expert_ranges.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace moe {

absl::StatusOr<std::vector<int>> ParseExpertList(absl::string_view text, int num_experts) {
  std::vector<int> ids;
  for (absl::string_view piece : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    piece = absl::StripAsciiWhitespace(piece);
    int lo = 0, hi = 0;
    const size_t dash = piece.find('-');
    const bool ok = dash == absl::string_view::npos
                        ? absl::SimpleAtoi(piece, &lo) && (hi = lo, true)
                        : absl::SimpleAtoi(piece.substr(0, dash), &lo) &&
                              absl::SimpleAtoi(piece.substr(dash + 1), &hi);
    if (!ok || lo > hi) {
      return absl::InvalidArgumentError(
          absl::StrCat("expert list '", text, "': bad piece '", piece, "' (use N or A-B)"));
    }
    if (lo < 0 || hi >= num_experts) {
      return absl::InvalidArgumentError(absl::StrCat("expert list '", text, "': '", piece,
                                                     "' is outside 0..", num_experts - 1));
    }
    for (int e = lo; e <= hi; ++e) ids.push_back(e);
  }
  if (ids.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("expert list '", text, "' is empty"));
  }
  std::sort(ids.begin(), ids.end());
  if (std::adjacent_find(ids.begin(), ids.end()) != ids.end()) {
    return absl::InvalidArgumentError(absl::StrCat("expert list '", text, "' repeats an expert"));
  }
  return ids;
}

std::string FormatExpertList(const std::vector<int>& ids) {
  std::string out;
  for (size_t i = 0; i < ids.size();) {
    size_t j = i;
    while (j + 1 < ids.size() && ids[j + 1] == ids[j] + 1) ++j;
    absl::StrAppend(&out, out.empty() ? "" : ",", ids[i]);
    if (j > i) absl::StrAppend(&out, "-", ids[j]);
    i = j + 1;
  }
  return out;
}

}  // namespace moe
