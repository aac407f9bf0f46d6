#include "workers/expert_worker_service.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "model/expert_ranges.h"

namespace moe {

ExpertWorkerService::ExpertWorkerService(std::vector<HostedLayer> layers)
    : run_seconds_(Histogram::Exponential(50e-6, 2.0, 20)) {
  std::vector<int> ids;
  ids.reserve(layers.size());
  for (const HostedLayer& h : layers) ids.push_back(h.layer);
  std::sort(ids.begin(), ids.end());
  layer_list_ = FormatExpertList(ids);
  for (HostedLayer& h : layers) {
    Layer l;
    l.backend = std::move(h.backend);
    l.info = std::move(h.info);
    l.info.clear_layers();
    for (int id : ids) l.info.add_layers(id);
    int max_id = -1;
    for (int e : l.info.experts()) max_id = std::max(max_id, e);
    l.hosted.assign(max_id < 0 ? 0 : static_cast<size_t>(max_id) + 1, false);
    for (int e : l.info.experts()) l.hosted[static_cast<size_t>(e)] = true;
    layers_.emplace(h.layer, std::move(l));
  }
}

absl::StatusOr<const ExpertWorkerService::Layer*> ExpertWorkerService::Find(int layer) const {
  auto it = layers_.find(layer);
  if (it == layers_.end()) {
    return absl::NotFoundError(absl::StrCat(
        "layer ", layer, " is not hosted by this worker (it hosts layers ", layer_list_, ")"));
  }
  return &it->second;
}

grpc::Status ExpertWorkerService::RunExperts(grpc::ServerContext*,
                                             const moe::v1::RunExpertsRequest* req,
                                             moe::v1::RunExpertsResponse* resp) {
  const absl::Time start = absl::Now();
  auto fail = [this](grpc::StatusCode code, const std::string& msg) {
    ++runs_failed_;
    return grpc::Status(code, msg);
  };
  auto found = Find(req->layer());
  if (!found.ok()) return fail(grpc::StatusCode::NOT_FOUND, std::string(found.status().message()));
  const Layer& layer = **found;
  const int64_t d = layer.info.d_model();
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
    if (b.expert() < 0 || b.expert() >= static_cast<int>(layer.hosted.size()) ||
        !layer.hosted[static_cast<size_t>(b.expert())]) {
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
  absl::Status st = compute_.Run([&] { return layer.backend->Run(jobs); });
  if (!st.ok()) return fail(grpc::StatusCode::INTERNAL, std::string(st.message()));
  uint64_t rows = 0;
  for (const auto& j : jobs) rows += static_cast<uint64_t>(j.num_rows);
  rows_ += rows;
  ++runs_ok_;
  run_seconds_.Observe(absl::ToDoubleSeconds(absl::Now() - start));
  return grpc::Status::OK;
}

grpc::Status ExpertWorkerService::Info(grpc::ServerContext*, const moe::v1::InfoRequest* req,
                                       moe::v1::InfoResponse* resp) {
  auto found = Find(req->layer());
  if (!found.ok()) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, std::string(found.status().message()));
  }
  *resp = (*found)->info;
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
