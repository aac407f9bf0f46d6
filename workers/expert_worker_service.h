// ExpertWorkerService: moe.v1.ExpertService over LocalExpertBackends that
// host a shard of routed experts of one or several layers (the
// moe_expert_worker side). A request names its layer; one the worker does
// not host is NOT_FOUND naming the hosted ones.
//
// Thread-safety: gRPC's sync server calls the handlers from its thread
// pool; the expert runs all happen, one at a time, on the service's one
// ComputeThread, so the process keeps a single OpenMP team whose workers
// spin between parallel regions (common/compute_thread.h).
#ifndef MOE_WORKERS_EXPERT_WORKER_SERVICE_H_
#define MOE_WORKERS_EXPERT_WORKER_SERVICE_H_

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/compute_thread.h"
#include "common/dtype.h"
#include "experts/expert_backend.h"
#include "proto/expert_service.grpc.pb.h"
#include "serving/prometheus.h"
#include "workers/hosted_layer.h"

namespace moe {

class ExpertWorkerService final : public moe::v1::ExpertService::Service {
 public:
  // At least one layer, each at most once.
  explicit ExpertWorkerService(std::vector<HostedLayer> layers);

  grpc::Status RunExperts(grpc::ServerContext* ctx, const moe::v1::RunExpertsRequest* req,
                          moe::v1::RunExpertsResponse* resp) override;
  grpc::Status Info(grpc::ServerContext* ctx, const moe::v1::InfoRequest* req,
                    moe::v1::InfoResponse* resp) override;

  // Prometheus text: moe_worker_runs_total{outcome}, moe_worker_rows_total,
  // moe_worker_run_seconds.
  std::string RenderMetrics() const;

 private:
  struct Layer {
    std::unique_ptr<ExpertBackend> backend;
    moe::v1::InfoResponse info;
    std::vector<bool> hosted;  // by expert id
  };
  // The layer `layer`, or NOT_FOUND naming the hosted ones.
  absl::StatusOr<const Layer*> Find(int layer) const;

  std::map<int, Layer> layers_;
  std::string layer_list_;  // "0-3" for messages
  std::atomic<uint64_t> runs_ok_{0}, runs_failed_{0}, rows_{0};
  Histogram run_seconds_;
  ComputeThread compute_;  // runs backend_->Run; declared last, so it stops first
};

}  // namespace moe

#endif  // MOE_WORKERS_EXPERT_WORKER_SERVICE_H_
