#include "model/moe_layer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/vector_kernels.h"
#include "experts/dense_ffn.h"
#include "experts/dnnl_engine.h"
#include "experts/local_expert_backend.h"
#include "experts/packed_matmul.h"
#include "spdlog/spdlog.h"

namespace moe {

absl::StatusOr<std::unique_ptr<ExpertBackend>> CreateLocalBackend(const LayerWeights& weights,
                                                                  DType compute,
                                                                  MatmulCacheRegistry* registry,
                                                                  const std::vector<int>& hosted) {
  const int e = weights.spec.num_experts();
  std::vector<char> host(static_cast<size_t>(e), hosted.empty() ? 1 : 0);
  for (int id : hosted) {
    if (id < 0 || id >= e) {
      return absl::InvalidArgumentError(absl::StrCat("expert ", id, " out of range [0, ", e, ")"));
    }
    host[static_cast<size_t>(id)] = 1;
  }
  std::vector<std::unique_ptr<DenseFfn>> experts(static_cast<size_t>(e));
  for (int i = 0; i < e; ++i) {
    if (!host[static_cast<size_t>(i)]) continue;
    MOE_ASSIGN_OR_RETURN(
        experts[static_cast<size_t>(i)],
        DenseFfn::Create(weights.spec.expert, weights.experts[static_cast<size_t>(i)], compute,
                         registry, absl::StrCat("expert ", i)));
  }
  return std::unique_ptr<ExpertBackend>(new LocalExpertBackend(std::move(experts)));
}

MoeLayer::MoeLayer(LayerSpec spec, DType compute)
    : spec_(std::move(spec)),
      compute_(compute),
      registry_(std::make_unique<MatmulCacheRegistry>()),
      shared_ws_(std::make_unique<FfnWorkspace>()) {}

MoeLayer::~MoeLayer() = default;

absl::StatusOr<std::unique_ptr<MoeLayer>> MoeLayer::Create(const LayerWeights& weights,
                                                           const MoeLayerOptions& options,
                                                           std::unique_ptr<ExpertBackend> backend) {
  MOE_RETURN_IF_ERROR(ValidateLayerWeights(weights));
  const LayerSpec& spec = weights.spec;
  std::unique_ptr<MoeLayer> layer(new MoeLayer(spec, options.compute));
  if (spec.dense) {
    layer->router_ = Router::CreateDense(spec.d_model);
  } else {
    MOE_ASSIGN_OR_RETURN(
        layer->router_,
        Router::Create(
            spec.router, spec.d_model, weights.gate_weight.ToFloats(),
            weights.gate_bias.empty() ? std::vector<float>{} : weights.gate_bias.ToFloats(),
            weights.correction_bias.empty() ? std::vector<float>{}
                                            : weights.correction_bias.ToFloats()));
  }
  if (backend == nullptr) {
    MOE_ASSIGN_OR_RETURN(backend,
                         CreateLocalBackend(weights, layer->compute_, layer->registry_.get()));
  }
  layer->backend_ = std::move(backend);
  if (spec.has_shared()) {
    MOE_ASSIGN_OR_RETURN(layer->shared_,
                         DenseFfn::Create(spec.shared, weights.shared, layer->compute_,
                                          layer->registry_.get(), "shared expert"));
    if (spec.shared_gate) layer->shared_gate_ = weights.shared_gate.ToFloats();
  }
  return layer;
}

size_t MoeLayer::weight_bytes() const {
  return backend_->WeightBytes() + (shared_ != nullptr ? shared_->weight_bytes() : 0);
}

std::string MoeLayer::Summary() const {
  return absl::StrCat(spec_.Summary(), "; compute ", DTypeName(compute_),
                      "; experts: ", backend_->Describe());
}

namespace {

using SteadyClock = std::chrono::steady_clock;

double SecondsSince(SteadyClock::time_point* mark) {
  const SteadyClock::time_point now = SteadyClock::now();
  const double s = std::chrono::duration<double>(now - *mark).count();
  *mark = now;
  return s;
}

}  // namespace

const float* MoeLayer::GatherExpertRows(const float* tokens, int64_t num_tokens) {
  const int64_t h = spec_.d_model;
  const int e = spec_.num_experts();
  const int k = spec_.top_k();
  int64_t total_rows = 0;
  for (int i = 0; i < e; ++i) total_rows += plan_.tokens_for_expert(i);
  const size_t block = static_cast<size_t>(std::max<int64_t>(total_rows, 1) * h);
  float* gathered = gathered_.ReserveAs<float>(block);
  float* expert_out = expert_out_.ReserveAs<float>(block);
  token_rows_.resize(static_cast<size_t>(num_tokens * k));
  token_weights_.resize(static_cast<size_t>(num_tokens * k));
  token_row_count_.assign(static_cast<size_t>(num_tokens), 0);
  gather_src_.resize(static_cast<size_t>(total_rows));
  jobs_.clear();
  int64_t offset = 0;
  for (int i = 0; i < e; ++i) {
    const auto& rows = plan_.expert_rows[static_cast<size_t>(i)];
    if (rows.empty()) continue;
    const auto& w = plan_.expert_row_weights[static_cast<size_t>(i)];
    for (size_t r = 0; r < rows.size(); ++r) {
      const int64_t t = rows[r];
      gather_src_[static_cast<size_t>(offset) + r] = rows[r];
      const size_t slot = static_cast<size_t>(t * k + token_row_count_[static_cast<size_t>(t)]++);
      token_rows_[slot] = offset + static_cast<int64_t>(r);
      token_weights_[slot] = w[r];
    }
    jobs_.push_back(ExpertJob{i, gathered + offset * h, static_cast<int64_t>(rows.size()),
                              expert_out + offset * h});
    offset += static_cast<int64_t>(rows.size());
  }
  // The copies themselves, spread over the OpenMP team in GCC builds.
#pragma omp parallel for schedule(static) if (total_rows >= 128)
  for (int64_t r = 0; r < total_rows; ++r) {
    std::memcpy(gathered + r * h,
                tokens + static_cast<int64_t>(gather_src_[static_cast<size_t>(r)]) * h,
                static_cast<size_t>(h) * sizeof(float));
  }
  return expert_out;
}

absl::StatusOr<const float*> MoeLayer::RunShared(const float* tokens, int64_t num_tokens,
                                                 const uint8_t* skip_shared) {
  if (shared_ == nullptr) return nullptr;
  if (skip_shared != nullptr &&
      std::all_of(skip_shared, skip_shared + num_tokens, [](uint8_t skip) { return skip != 0; })) {
    return nullptr;
  }
  float* shared_out = shared_out_.ReserveAs<float>(static_cast<size_t>(num_tokens * spec_.d_model));
  MOE_RETURN_IF_ERROR(shared_->Run(tokens, num_tokens, shared_out, shared_ws_.get()));
  return shared_out;
}

void MoeLayer::Combine(const float* tokens, int64_t num_tokens, const float* expert_out,
                       const float* shared_out, const uint8_t* skip_shared, float* y) {
  const int64_t h = spec_.d_model;
  const int k = spec_.top_k();
#pragma omp parallel for schedule(static) if (num_tokens >= 64)
  for (int64_t t = 0; t < num_tokens; ++t) {
    float* dst = y + t * h;
    std::fill(dst, dst + h, 0.0f);
    const size_t first = static_cast<size_t>(t * k);
    const int32_t count = token_row_count_[static_cast<size_t>(t)];
    for (int32_t j = 0; j < count; ++j) {
      const float* src = expert_out + token_rows_[first + static_cast<size_t>(j)] * h;
      AddScaled(token_weights_[first + static_cast<size_t>(j)], src, h, dst);
    }
    if (shared_out != nullptr && (skip_shared == nullptr || skip_shared[t] == 0)) {
      const float* src = shared_out + t * h;
      if (!shared_gate_.empty()) {
        const float logit = FixedOrderDot(tokens + t * h, shared_gate_.data(), h);
        AddScaled(1.0f / (1.0f + std::exp(-logit)), src, h, dst);
      } else {
        AddScaled(1.0f, src, h, dst);  // 1 * x is x: a plain sum
      }
    }
  }
}

void MoeLayer::CopyRouting(int64_t num_tokens, const ForwardOutputs& out) const {
  const int e = spec_.num_experts();
  const int64_t n = num_tokens * spec_.top_k();
  if (out.expert_ids != nullptr) {
    std::copy(plan_.expert_ids.begin(), plan_.expert_ids.begin() + n, out.expert_ids);
  }
  if (out.expert_weights != nullptr) {
    std::copy(plan_.weights.begin(), plan_.weights.begin() + n, out.expert_weights);
  }
  if (out.tokens_per_expert != nullptr) {
    for (int i = 0; i < e; ++i) out.tokens_per_expert[i] += plan_.tokens_for_expert(i);
  }
}

absl::Status MoeLayer::Forward(const float* tokens, int64_t num_tokens, const ForwardOutputs& out,
                               const TokenChoices& choices) {
  if (num_tokens < 0) return absl::InvalidArgumentError("negative token count");
  if (out.output == nullptr) return absl::InvalidArgumentError("no output buffer");
  if (num_tokens == 0) return absl::OkStatus();
  absl::MutexLock lock(&mu_);
  ForwardTimings timings;
  SteadyClock::time_point mark = SteadyClock::now();

  router_->Route(tokens, num_tokens, &plan_, choices.routing);
  timings.route_s = SecondsSince(&mark);

  const float* expert_out = GatherExpertRows(tokens, num_tokens);
  timings.gather_s = SecondsSince(&mark);

  MOE_RETURN_IF_ERROR(backend_->Run(jobs_));
  timings.experts_s = SecondsSince(&mark);

  absl::StatusOr<const float*> shared_out = RunShared(tokens, num_tokens, choices.skip_shared);
  if (!shared_out.ok()) return shared_out.status();
  timings.shared_s = SecondsSince(&mark);

  Combine(tokens, num_tokens, expert_out, *shared_out, choices.skip_shared, out.output);
  timings.combine_s = SecondsSince(&mark);

  CopyRouting(num_tokens, out);
  if (out.timings != nullptr) *out.timings = timings;
  return absl::OkStatus();
}

}  // namespace moe
