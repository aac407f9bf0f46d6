// MoeServer: the whole front end in one object — the KServe v2 gRPC
// service, grpc.health.v1, server reflection, the KServe v2 REST API
// (http_service.h), and Prometheus /metrics over HTTP — around a
// ServingCore. moe_server's main() and the service tests
// both use it, so tests exercise exactly what ships.
//
// Thread-safety: Start() and Shutdown() from one controlling thread; the
// accessors from any thread.
#ifndef MOE_FRONTEND_MOE_SERVER_H_
#define MOE_FRONTEND_MOE_SERVER_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "batching/batch_queue.h"
#include "frontend/request_codec.h"
#include "frontend/tls_options.h"
#include "model/moe_layer.h"

namespace grpc {
class Server;
class ServerCredentials;
}  // namespace grpc

namespace moe {

class ServingCore;
class InferenceService;
class MetricsHttpServer;
class HttpService;

struct ServerOptions {
  // Address to listen on for gRPC and HTTP.
  std::string listen_host = "0.0.0.0";
  // gRPC port; 0 picks a free one (see grpc_port()).
  int grpc_port = 8001;
  // KServe v2 REST port; 0 picks a free one; -1 disables REST.
  int http_port = 8000;
  // Metrics port; 0 picks a free one; -1 disables the metrics endpoint.
  int metrics_port = 8002;
  // The model name of a server started on one layer.
  std::string model_name = "moe";
  // Request limits and validation, for every served model.
  RequestLimits limits;
  BatchQueueOptions batching;
  // Largest gRPC message accepted or sent, in bytes.
  int max_message_bytes = 64 << 20;
  TlsOptions tls;
  // Extra Prometheus text appended to /metrics (e.g. the expert workers').
  std::function<std::string()> extra_metrics;
};

class MoeServer {
 public:
  // Starts serving `layer` as the model options.model_name. Fails
  // (naming the address or file) when a port cannot be bound or a TLS file
  // cannot be read.
  static absl::StatusOr<std::unique_ptr<MoeServer>> Start(std::unique_ptr<MoeLayer> layer,
                                                          const ServerOptions& options);
  // Serves layers[i] as the model names[i] (distinct), each with
  // options.limits, batched per model with one compute for all.
  static absl::StatusOr<std::unique_ptr<MoeServer>> Start(
      std::vector<std::unique_ptr<MoeLayer>> layers, const std::vector<std::string>& names,
      const ServerOptions& options);
  ~MoeServer();

  int grpc_port() const { return grpc_port_; }
  int metrics_port() const { return metrics_port_; }
  // -1 when REST is disabled.
  int http_port() const { return http_port_; }
  // "127.0.0.1:PORT" style address clients on this host can use.
  std::string local_grpc_address() const;

  ServingCore& core() { return *core_; }

  // Graceful shutdown: health NOT_SERVING, new requests UNAVAILABLE, every
  // accepted request finished (up to `drain_timeout`, after which the rest
  // get UNAVAILABLE), then the listeners close. Clients see only OK and
  // UNAVAILABLE, never CANCELLED, even when they resend at once (the last
  // step holds answers back; see held_answers.h). Returns the number of
  // requests cut by the timeout. Idempotent.
  int64_t Shutdown(absl::Duration drain_timeout);

 private:
  MoeServer() = default;
  // Start()'s steps: the gRPC listener (health SERVING once it listens),
  // then REST and /metrics where enabled.
  absl::Status StartGrpc(const std::shared_ptr<grpc::ServerCredentials>& creds);
  absl::Status StartRestAndMetrics();

  ServerOptions options_;
  std::unique_ptr<ServingCore> core_;
  std::unique_ptr<InferenceService> service_;
  std::unique_ptr<grpc::Server> grpc_server_;
  std::unique_ptr<HttpService> http_service_;
  std::unique_ptr<MetricsHttpServer> metrics_server_;
  int grpc_port_ = 0;
  int metrics_port_ = -1;
  int http_port_ = -1;
  bool shut_down_ = false;
};

}  // namespace moe

#endif  // MOE_FRONTEND_MOE_SERVER_H_
