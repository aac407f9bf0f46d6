#include "model/layer_spec.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace moe {
namespace {

std::string FfnSummary(const FfnSpec& f) {
  std::string kind;
  if (f.gated) {
    kind = f.activation != Activation::kSilu ? absl::StrCat(ActivationName(f.activation), "-glu")
           : f.swiglu_limit > 0 ? absl::StrCat("clamped swiglu (limit ", f.swiglu_limit, ")")
                                : "swiglu";
  } else {
    kind = ActivationName(f.activation);
  }
  return absl::StrCat(kind, " d_ff ", f.d_ff, f.has_bias ? " +bias" : "");
}

absl::Status CheckVector(const Tensor& t, bool wanted, const std::vector<int64_t>& shape,
                         const char* name) {
  if (!wanted) {
    return t.empty() ? absl::OkStatus()
                     : absl::InvalidArgumentError(absl::StrCat("unexpected ", name));
  }
  if (t.empty()) return absl::InvalidArgumentError(absl::StrCat("missing ", name));
  if (t.shape() != shape) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " has shape ", t.ShapeString(), ", expected ", ShapeToString(shape)));
  }
  return absl::OkStatus();
}

}  // namespace

int64_t LayerSpec::FfnMatrixElements() const {
  auto ffn = [this](const FfnSpec& f) { return (f.gated ? 3 : 2) * d_model * f.d_ff; };
  return num_experts() * ffn(expert) + (has_shared() ? ffn(shared) : 0);
}

std::string LayerSpec::Summary() const {
  std::string s = absl::StrCat(family, ": d_model ", d_model);
  if (dense) {
    absl::StrAppend(&s, ", dense FFN (", FfnSummary(expert), ")");
  } else {
    absl::StrAppend(&s, ", ", router.num_experts, " experts (", FfnSummary(expert), ") top-",
                    router.top_k, ", ",
                    router.scoring == ScoringFunc::kSoftmax ? "softmax" : "sigmoid");
    if (router.n_group > 1) {
      absl::StrAppend(&s, ", groups ", router.topk_group, "/", router.n_group);
    }
    if (correction_bias) absl::StrAppend(&s, ", score-correction bias");
    if (router.renormalize) absl::StrAppend(&s, ", renormalised");
    if (router.routed_scaling_factor != 1.0f) {
      absl::StrAppend(&s, ", scale ", router.routed_scaling_factor);
    }
    if (router.capacity_factor > 0) {
      absl::StrAppend(&s, ", capacity factor ", router.capacity_factor);
    }
  }
  if (has_shared()) {
    absl::StrAppend(&s, ", shared expert (", FfnSummary(shared), ")",
                    shared_gate ? " with sigmoid gate" : "");
  }
  return s;
}

namespace {

void HashBytes(uint64_t* h, const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) {
    *h ^= p[i];
    *h *= 0x100000001b3ULL;
  }
}

void HashTensor(uint64_t* h, const Tensor& t) {
  const int64_t rank = t.empty() ? -1 : t.rank();
  HashBytes(h, &rank, sizeof(rank));
  if (t.empty()) return;
  const int dtype = static_cast<int>(t.dtype());
  HashBytes(h, &dtype, sizeof(dtype));
  for (int64_t d : t.shape()) HashBytes(h, &d, sizeof(d));
  HashBytes(h, t.data(), static_cast<size_t>(t.num_bytes()));
}

}  // namespace

uint64_t ExpertWeightsChecksum(const LayerWeights& w, const std::vector<int>& experts) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (int e : experts) {
    HashBytes(&h, &e, sizeof(e));
    if (e < 0 || e >= static_cast<int>(w.experts.size())) continue;
    const FfnWeights& f = w.experts[static_cast<size_t>(e)];
    for (const Tensor* t : {&f.w1, &f.w3, &f.w2, &f.b1, &f.b3, &f.b2}) HashTensor(&h, *t);
  }
  return h;
}

absl::Status ValidateLayerWeights(const LayerWeights& w) {
  const LayerSpec& s = w.spec;
  if (s.d_model < 1) return absl::InvalidArgumentError("d_model must be >= 1");
  if (s.expert.d_model != s.d_model) {
    return absl::InvalidArgumentError("expert d_model differs from layer d_model");
  }
  const int e = s.router.num_experts;
  if (s.dense && (e != 1 || s.router.top_k != 1)) {
    return absl::InvalidArgumentError("a dense layer has exactly one expert, top-1");
  }
  if (static_cast<int>(w.experts.size()) != e) {
    return absl::InvalidArgumentError(
        absl::StrCat("layer has ", w.experts.size(), " experts, spec says ", e));
  }
  MOE_RETURN_IF_ERROR(CheckVector(w.gate_weight, !s.dense, {e, s.d_model}, "gate weight"));
  MOE_RETURN_IF_ERROR(CheckVector(w.gate_bias, s.gate_bias, {e}, "gate bias"));
  MOE_RETURN_IF_ERROR(
      CheckVector(w.correction_bias, s.correction_bias, {e}, "score-correction bias"));
  for (int i = 0; i < e; ++i) {
    MOE_RETURN_IF_ERROR(ValidateFfnWeights(s.expert, w.experts[static_cast<size_t>(i)],
                                           absl::StrCat("expert ", i)));
  }
  if (s.has_shared()) {
    if (s.shared.d_model != s.d_model) {
      return absl::InvalidArgumentError("shared expert d_model differs from layer d_model");
    }
    MOE_RETURN_IF_ERROR(ValidateFfnWeights(s.shared, w.shared, "shared expert"));
  }
  return CheckVector(w.shared_gate, s.has_shared() && s.shared_gate, {1, s.d_model},
                     "shared expert gate");
}

}  // namespace moe
