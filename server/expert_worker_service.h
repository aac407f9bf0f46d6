// ExpertWorkerService: moe.v1.ExpertService over a LocalExpertBackend that
// hosts a shard of a layer's routed experts (the moe_expert_worker side).
//
// Thread-safety: gRPC's sync server calls the handlers from its thread
// pool; the expert runs all happen, one at a time, on the service's one
// ComputeThread, so the process keeps a single OpenMP team whose workers
// spin between parallel regions (common/compute_thread.h).
#ifndef MOE_SERVER_EXPERT_WORKER_SERVICE_H_
#define MOE_SERVER_EXPERT_WORKER_SERVICE_H_

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "common/compute_thread.h"
#include "common/dtype.h"
#include "experts/expert_backend.h"
#include "proto/expert_service.grpc.pb.h"
#include "server/prometheus.h"

namespace moe {

class ExpertWorkerService final : public moe::v1::ExpertService::Service {
 public:
  // `info` describes the shard (experts, d_model, d_ff, dtype, checksum).
  ExpertWorkerService(std::unique_ptr<ExpertBackend> backend, moe::v1::InfoResponse info);

  grpc::Status RunExperts(grpc::ServerContext* ctx, const moe::v1::RunExpertsRequest* req,
                          moe::v1::RunExpertsResponse* resp) override;
  grpc::Status Info(grpc::ServerContext* ctx, const moe::v1::InfoRequest* req,
                    moe::v1::InfoResponse* resp) override;

  // Prometheus text: moe_worker_runs_total{outcome}, moe_worker_rows_total,
  // moe_worker_run_seconds.
  std::string RenderMetrics() const;

 private:
  std::unique_ptr<ExpertBackend> backend_;
  const moe::v1::InfoResponse info_;
  std::vector<bool> hosted_;
  std::atomic<uint64_t> runs_ok_{0}, runs_failed_{0}, rows_{0};
  Histogram run_seconds_;
  ComputeThread compute_;  // runs backend_->Run; declared last, so it stops first
};

}  // namespace moe

#endif  // MOE_SERVER_EXPERT_WORKER_SERVICE_H_
