#include "experts/dense_ffn.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/vector_kernels.h"
#include "experts/dnnl_engine.h"

namespace moe {

FfnWorkspace::FfnWorkspace() : stream(CpuEngine()) {}

namespace {

// The dtype of the hidden activations between the two projections: bf16
// in bf16 mode (as a bf16 PyTorch model keeps them), else f32 (int8 and int4
// modes quantize each matmul's input rows inside the matmul).
DType HiddenDType(DType compute) { return compute == DType::kBF16 ? DType::kBF16 : DType::kF32; }

// out[r, :] = silu(h[r, :d_ff]) ⊙ h[r, d_ff:] (or gpt-oss's clamped form
// when limit > 0) for each of `rows` rows of h ([rows, 2 d_ff]), all in
// `dtype` (the hidden dtype). Spread over the OpenMP team in GCC builds; every
// element is computed on its own, so the bits do not depend on the split.
void GatedProductRows(const void* h, int64_t rows, int64_t d_ff, DType dtype, float limit,
                      void* out) {
  constexpr int64_t kChunk = 2048;
  const int64_t per_row = (d_ff + kChunk - 1) / kChunk;
  const int64_t pieces = rows * per_row;
#pragma omp parallel for schedule(static) if (rows * d_ff >= 16384)
  for (int64_t i = 0; i < pieces; ++i) {
    const int64_t r = i / per_row;
    const int64_t c = (i % per_row) * kChunk;
    const int64_t len = std::min(kChunk, d_ff - c);
    const int64_t gate = r * 2 * d_ff + c;
    if (dtype == DType::kBF16) {
      const auto* hb = static_cast<const uint16_t*>(h);
      auto* o = static_cast<uint16_t*>(out) + r * d_ff + c;
      if (limit > 0) {
        ClampedSwigluProductBf16(hb + gate, hb + gate + d_ff, len, limit, o);
      } else {
        SiluProductBf16(hb + gate, hb + gate + d_ff, len, o);
      }
    } else {
      const auto* hf = static_cast<const float*>(h);
      auto* o = static_cast<float*>(out) + r * d_ff + c;
      if (limit > 0) {
        ClampedSwigluProduct(hf + gate, hf + gate + d_ff, len, limit, o);
      } else {
        SiluProduct(hf + gate, hf + gate + d_ff, len, o);
      }
    }
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<DenseFfn>> DenseFfn::Create(const FfnSpec& spec, const FfnWeights& w,
                                                           DType compute,
                                                           MatmulCacheRegistry* registry,
                                                           const std::string& what) {
  MOE_RETURN_IF_ERROR(ValidateFfnWeights(spec, w, what));
  if (compute != DType::kF32 && compute != DType::kBF16 && compute != DType::kI8 &&
      compute != DType::kI4) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": compute dtype must be f32, bf16, int8 or int4"));
  }
  if (spec.swiglu_limit > 0 && !(spec.gated && spec.activation == Activation::kSilu)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": a clamped SwiGLU (swiglu_limit) needs a gated SiLU block"));
  }
  std::unique_ptr<DenseFfn> ffn(new DenseFfn(spec, compute));

  MatmulShape up;
  up.k = spec.d_model;
  up.n = spec.d_ff;
  up.compute = compute;
  up.dst = HiddenDType(compute);
  up.post = MatmulPostOp::kActivation;
  up.activation = spec.activation;
  up.bias = spec.has_bias;
  if (spec.gated && spec.activation == Activation::kSilu) {
    // SwiGLU: W1 and W3 as one matrix, the product computed after it.
    MatmulShape gate_up = up;
    gate_up.n = 2 * spec.d_ff;
    gate_up.post = MatmulPostOp::kNone;
    MOE_ASSIGN_OR_RETURN(ffn->gate_up_,
                         PackedMatmul::CreateStacked(
                             w.w1, w.w3, spec.has_bias ? Tensor::StackRows(w.b1, w.b3) : Tensor(),
                             gate_up, registry, absl::StrCat(what, " w1|w3")));
  } else {
    MOE_ASSIGN_OR_RETURN(ffn->up_act_,
                         PackedMatmul::Create(w.w1, w.b1, up, registry, absl::StrCat(what, " w1")));
    if (spec.gated) {
      MatmulShape mul = up;
      mul.post = MatmulPostOp::kMultiply;
      MOE_ASSIGN_OR_RETURN(
          ffn->up_mul_, PackedMatmul::Create(w.w3, w.b3, mul, registry, absl::StrCat(what, " w3")));
    }
  }
  MatmulShape down;
  down.k = spec.d_ff;
  down.n = spec.d_model;
  down.compute = compute;
  down.dst = DType::kF32;
  down.post = MatmulPostOp::kNone;
  down.bias = spec.has_bias;
  MOE_ASSIGN_OR_RETURN(ffn->down_,
                       PackedMatmul::Create(w.w2, w.b2, down, registry, absl::StrCat(what, " w2")));
  return ffn;
}

size_t DenseFfn::weight_bytes() const {
  size_t bytes = 0;
  for (const auto* m : {gate_up_.get(), up_act_.get(), up_mul_.get(), down_.get()}) {
    if (m != nullptr) bytes += m->weight_bytes();
  }
  return bytes;
}

absl::Status DenseFfn::Run(const float* x, int64_t rows, float* y, FfnWorkspace* ws) const {
  if (rows == 0) return absl::OkStatus();
  const int64_t d_model = spec_.d_model;
  const int64_t d_ff = spec_.d_ff;
  const DType hidden_dtype = HiddenDType(compute_);
  const size_t elem = static_cast<size_t>(DTypeSize(hidden_dtype));
  const void* src = x;
  if (compute_ == DType::kBF16) {
    auto* lowp = ws->src_lowp.ReserveAs<uint16_t>(static_cast<size_t>(rows * d_model));
    FloatToBf16Array(x, rows * d_model, lowp);
    src = lowp;
  }
  const size_t hidden_bytes = static_cast<size_t>(rows * d_ff) * elem;
  if (gate_up_ != nullptr) {
    void* both = ws->hidden1.Reserve(2 * hidden_bytes);
    MOE_RETURN_IF_ERROR(gate_up_->Execute(src, rows, both, nullptr, &ws->scratchpad, &ws->stream));
    void* hidden = ws->hidden.Reserve(hidden_bytes);
    GatedProductRows(both, rows, d_ff, hidden_dtype, spec_.swiglu_limit, hidden);
    return down_->Execute(hidden, rows, y, nullptr, &ws->scratchpad, &ws->stream);
  }
  void* hidden1 = ws->hidden1.Reserve(hidden_bytes);
  MOE_RETURN_IF_ERROR(up_act_->Execute(src, rows, hidden1, nullptr, &ws->scratchpad, &ws->stream));
  const void* down_src = hidden1;
  if (spec_.gated) {
    void* hidden = ws->hidden.Reserve(hidden_bytes);
    MOE_RETURN_IF_ERROR(up_mul_->Execute(src, rows, hidden, hidden1, &ws->scratchpad, &ws->stream));
    down_src = hidden;
  }
  return down_->Execute(down_src, rows, y, nullptr, &ws->scratchpad, &ws->stream);
}

}  // namespace moe
