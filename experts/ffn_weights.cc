#include "experts/ffn_weights.h"

#include <vector>

#include "absl/strings/str_cat.h"

namespace moe {
namespace {

absl::Status Check(const Tensor& t, bool wanted, const std::vector<int64_t>& shape,
                   const std::string& what, const char* name) {
  if (!wanted) {
    if (!t.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": unexpected tensor ", name));
    }
    return absl::OkStatus();
  }
  if (t.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": missing ", name));
  }
  if (t.shape() != shape) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", name, " has shape ", t.ShapeString(),
                                                   ", expected ", ShapeToString(shape)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateFfnWeights(const FfnSpec& s, const FfnWeights& w, const std::string& what) {
  if (s.d_model < 1 || s.d_ff < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": d_model and d_ff must be >= 1 (got ", s.d_model, ", ", s.d_ff, ")"));
  }
  absl::Status st = Check(w.w1, true, {s.d_ff, s.d_model}, what, "w1");
  if (st.ok()) st = Check(w.w3, s.gated, {s.d_ff, s.d_model}, what, "w3");
  if (st.ok()) st = Check(w.w2, true, {s.d_model, s.d_ff}, what, "w2");
  if (st.ok()) st = Check(w.b1, s.has_bias, {s.d_ff}, what, "b1");
  if (st.ok()) st = Check(w.b3, s.has_bias && s.gated, {s.d_ff}, what, "b3");
  if (st.ok()) st = Check(w.b2, s.has_bias, {s.d_model}, what, "b2");
  return st;
}

}  // namespace moe
