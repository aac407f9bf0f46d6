#include "model/expert_ranges.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace moe {

absl::StatusOr<std::vector<int>> ParseIdList(absl::string_view text, int count,
                                             absl::string_view noun) {
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
          absl::StrCat(noun, " list '", text, "': bad piece '", piece, "' (use N or A-B)"));
    }
    if (lo < 0 || hi >= count) {
      return absl::InvalidArgumentError(
          absl::StrCat(noun, " list '", text, "': '", piece, "' is outside 0..", count - 1));
    }
    for (int e = lo; e <= hi; ++e) ids.push_back(e);
  }
  if (ids.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(noun, " list '", text, "' is empty"));
  }
  std::sort(ids.begin(), ids.end());
  if (std::adjacent_find(ids.begin(), ids.end()) != ids.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat(noun, " list '", text, "' names the same ", noun, " twice"));
  }
  return ids;
}

absl::StatusOr<std::vector<int>> ParseLayerList(absl::string_view text, int num_layers) {
  if (absl::StripAsciiWhitespace(text) == "all") {
    std::vector<int> all(static_cast<size_t>(std::max(num_layers, 0)));
    for (int l = 0; l < num_layers; ++l) all[static_cast<size_t>(l)] = l;
    if (all.empty()) return absl::InvalidArgumentError("the model has no layers");
    return all;
  }
  return ParseIdList(text, num_layers, "layer");
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
