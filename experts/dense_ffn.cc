#include "experts/dense_ffn.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/vector_kernels.h"
#include "experts/dnnl_engine.h"

namespace moe {

FfnWorkspace::FfnWorkspace() : stream(CpuEngine()) {}

absl::StatusOr<std::unique_ptr<DenseFfn>> DenseFfn::Create(
    const FfnSpec& spec, const FfnWeights& w, DType compute,
    MatmulCacheRegistry* registry, const std::string& what) {
  MOE_RETURN_IF_ERROR(ValidateFfnWeights(spec, w, what));
  if (compute != DType::kF32 && compute != DType::kBF16) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": compute dtype must be f32 or bf16"));
  }
  std::unique_ptr<DenseFfn> ffn(new DenseFfn(spec, compute));

  MatmulShape up;
  up.k = spec.d_model;
  up.n = spec.d_ff;
  up.compute = compute;
  up.dst = compute;
  up.post = MatmulPostOp::kActivation;
  up.activation = spec.activation;
  up.bias = spec.has_bias;
  MOE_ASSIGN_OR_RETURN(ffn->up_act_,
                       PackedMatmul::Create(w.w1, w.b1, up, registry,
                                            absl::StrCat(what, " w1")));
  if (spec.gated) {
    MatmulShape mul = up;
    mul.post = MatmulPostOp::kMultiply;
    MOE_ASSIGN_OR_RETURN(ffn->up_mul_,
                         PackedMatmul::Create(w.w3, w.b3, mul, registry,
                                              absl::StrCat(what, " w3")));
  }
  MatmulShape down;
  down.k = spec.d_ff;
  down.n = spec.d_model;
  down.compute = compute;
  down.dst = DType::kF32;
  down.post = MatmulPostOp::kNone;
  down.bias = spec.has_bias;
  MOE_ASSIGN_OR_RETURN(ffn->down_,
                       PackedMatmul::Create(w.w2, w.b2, down, registry,
                                            absl::StrCat(what, " w2")));
  return ffn;
}

absl::Status DenseFfn::Run(const float* x, int64_t rows, float* y,
                           FfnWorkspace* ws) const {
  if (rows == 0) return absl::OkStatus();
  const int64_t d_model = spec_.d_model;
  const int64_t d_ff = spec_.d_ff;
  const size_t elem = static_cast<size_t>(DTypeSize(compute_));
  const void* src = x;
  if (compute_ == DType::kBF16) {
    auto* lowp = ws->src_lowp.ReserveAs<uint16_t>(static_cast<size_t>(rows * d_model));
    FloatsToBf16(x, rows * d_model, lowp);
    src = lowp;
  }
  const size_t hidden_bytes = static_cast<size_t>(rows * d_ff) * elem;
  void* hidden1 = ws->hidden1.Reserve(hidden_bytes);
  MOE_RETURN_IF_ERROR(up_act_->Execute(src, rows, hidden1, nullptr,
                                       &ws->scratchpad, &ws->stream));
  const void* down_src = hidden1;
  if (spec_.gated) {
    void* hidden = ws->hidden.Reserve(hidden_bytes);
    MOE_RETURN_IF_ERROR(up_mul_->Execute(src, rows, hidden, hidden1,
                                         &ws->scratchpad, &ws->stream));
    down_src = hidden;
  }
  return down_->Execute(down_src, rows, y, nullptr, &ws->scratchpad, &ws->stream);
}

}  // namespace moe
