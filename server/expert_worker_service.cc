#include "server/expert_worker_service.h"

#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace moe {

ExpertWorkerService::ExpertWorkerService(std::unique_ptr<ExpertBackend> backend,
                                         moe::v1::InfoResponse info)
    : backend_(std::move(backend)),
      info_(std::move(info)),
      run_seconds_(Histogram::Exponential(50e-6, 2.0, 20)) {
  int max_id = -1;
  for (int e : info_.experts()) max_id = std::max(max_id, e);
  hosted_.assign(static_cast<size_t>(max_id + 1), false);
  for (int e : info_.experts()) hosted_[static_cast<size_t>(e)] = true;
}

grpc::Status ExpertWorkerService::RunExperts(grpc::ServerContext*,
                                             const moe::v1::RunExpertsRequest* req,
                                             moe::v1::RunExpertsResponse* resp) {
  const absl::Time start = absl::Now();
  auto fail = [this](grpc::StatusCode code, const std::string& msg) {
    ++runs_failed_;
    return grpc::Status(code, msg);
  };
  const int64_t d = info_.d_model();
  if (req->d_model() != d) {
    return fail(grpc::StatusCode::INVALID_ARGUMENT,
                absl::StrCat("d_model ", req->d_model(), " but this worker serves ", d));
  }
  const bool bf16 = req->dtype() == moe::v1::ROW_DTYPE_BF16;
  const int64_t elem = bf16 ? 2 : 4;
  // Inputs as f32 (bf16 widened exactly), outputs f32.
  std::vector<std::vector<float>> inputs(static_cast<size_t>(req->blocks_size()));
  std::vector<ExpertJob> jobs;
  jobs.reserve(inputs.size());
  for (int i = 0; i < req->blocks_size(); ++i) {
    const auto& b = req->blocks(i);
    if (b.expert() < 0 || b.expert() >= static_cast<int>(hosted_.size()) ||
        !hosted_[static_cast<size_t>(b.expert())]) {
      return fail(grpc::StatusCode::FAILED_PRECONDITION,
                  absl::StrCat("expert ", b.expert(), " is not hosted by this worker"));
    }
    if (b.rows() < 1 || static_cast<int64_t>(b.data().size()) != b.rows() * d * elem) {
      return fail(grpc::StatusCode::INVALID_ARGUMENT,
                  absl::StrCat("expert ", b.expert(), ": ", b.data().size(), " bytes for ",
                               b.rows(), " rows of d_model ", d));
    }
    auto& in = inputs[static_cast<size_t>(i)];
    in.resize(static_cast<size_t>(b.rows() * d));
    if (bf16) {
      ConvertToFloat(DType::kBF16, b.data().data(), b.rows() * d, in.data());
    } else {
      std::memcpy(in.data(), b.data().data(), b.data().size());
    }
    auto* out = resp->add_blocks();
    out->set_expert(b.expert());
    out->set_rows(b.rows());
    out->mutable_data()->resize(static_cast<size_t>(b.rows() * d * 4));
    jobs.push_back(ExpertJob{b.expert(), in.data(), b.rows(),
                             reinterpret_cast<float*>(out->mutable_data()->data())});
  }
  absl::Status st = compute_.Run([&] { return backend_->Run(jobs); });
  if (!st.ok()) return fail(grpc::StatusCode::INTERNAL, std::string(st.message()));
  uint64_t rows = 0;
  for (const auto& j : jobs) rows += static_cast<uint64_t>(j.num_rows);
  rows_ += rows;
  ++runs_ok_;
  run_seconds_.Observe(absl::ToDoubleSeconds(absl::Now() - start));
  return grpc::Status::OK;
}

grpc::Status ExpertWorkerService::Info(grpc::ServerContext*, const moe::v1::InfoRequest*,
                                       moe::v1::InfoResponse* resp) {
  *resp = info_;
  resp->set_runs_served(runs_ok_.load());
  return grpc::Status::OK;
}

std::string ExpertWorkerService::RenderMetrics() const {
  std::string out;
  AppendHeader(&out, "moe_worker_runs_total", "RunExperts calls by outcome.", "counter");
  absl::StrAppend(&out, "moe_worker_runs_total{outcome=\"ok\"} ", runs_ok_.load(), "\n",
                  "moe_worker_runs_total{outcome=\"error\"} ", runs_failed_.load(), "\n");
  AppendHeader(&out, "moe_worker_rows_total", "Token rows computed.", "counter");
  absl::StrAppend(&out, "moe_worker_rows_total ", rows_.load(), "\n");
  AppendHeader(&out, "moe_worker_run_seconds", "Duration of one RunExperts call.", "histogram");
  run_seconds_.Render(&out, "moe_worker_run_seconds", "");
  return out;
}

}  // namespace moe
