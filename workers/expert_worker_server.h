// ExpertWorkerServer: the whole expert worker in one object — the
// moe.v1.ExpertService (expert_worker_service.h), grpc.health.v1, server
// reflection and Prometheus /metrics over HTTP — as MoeServer is the whole
// front end. moe_expert_worker's main() and the tests both use it.
//
// Thread-safety: Start() and Shutdown() from one controlling thread; the
// accessors from any thread.
#ifndef MOE_WORKERS_EXPERT_WORKER_SERVER_H_
#define MOE_WORKERS_EXPERT_WORKER_SERVER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "workers/expert_worker_service.h"

namespace grpc {
class Server;
}

namespace moe {

class MetricsHttpServer;

struct ExpertWorkerOptions {
  // Address to listen on for gRPC and metrics.
  std::string listen_host = "0.0.0.0";
  // gRPC port; 0 picks a free one (see grpc_port()).
  int grpc_port = 9001;
  // Metrics port; 0 picks a free one; -1 disables the metrics endpoint.
  int metrics_port = 9002;
  // Largest gRPC message accepted or sent, in bytes.
  int max_message_bytes = 256 << 20;
};

class ExpertWorkerServer {
 public:
  // Serves `layers` (at least one, each layer at most once). Health is
  // SERVING, overall and for "moe.v1.ExpertService", once this returns.
  // UNAVAILABLE naming the address when a port cannot be bound.
  static absl::StatusOr<std::unique_ptr<ExpertWorkerServer>> Start(
      std::vector<HostedLayer> layers, const ExpertWorkerOptions& options);
  ~ExpertWorkerServer();  // Shutdown(ZeroDuration())

  int grpc_port() const { return grpc_port_; }
  // -1 when the metrics endpoint is disabled.
  int metrics_port() const { return metrics_port_; }
  // "127.0.0.1:PORT", the address clients on this host can use.
  std::string local_grpc_address() const;
  // The Prometheus text /metrics serves.
  std::string RenderMetrics() const { return service_->RenderMetrics(); }

  // Graceful shutdown: health NOT_SERVING, then the calls in flight finish
  // (up to `drain_timeout`; gRPC cancels the rest) and the listeners
  // close. Idempotent.
  void Shutdown(absl::Duration drain_timeout);

 private:
  ExpertWorkerServer() = default;

  std::unique_ptr<ExpertWorkerService> service_;
  std::unique_ptr<grpc::Server> grpc_server_;
  std::unique_ptr<MetricsHttpServer> metrics_server_;
  int grpc_port_ = 0;
  int metrics_port_ = -1;
  bool shut_down_ = false;
};

}  // namespace moe

#endif  // MOE_WORKERS_EXPERT_WORKER_SERVER_H_
