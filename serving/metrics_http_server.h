// MetricsHttpServer: serves GET /metrics (Prometheus text from a callback,
// followed by the process_* series of process_metrics.h) over cpp-httplib
// on its own thread. Used by moe_server and
// moe_expert_worker.
#ifndef MOE_SERVING_METRICS_HTTP_SERVER_H_
#define MOE_SERVING_METRICS_HTTP_SERVER_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace httplib {
class Server;
}

namespace moe {

class MetricsHttpServer {
 public:
  // Listens on host:port (port 0 picks a free one) and serves `render()`
  // at /metrics. UNAVAILABLE naming the address if it cannot bind.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const std::string& host, int port, const std::function<std::string()>& render);
  ~MetricsHttpServer();  // Stop()

  int port() const { return port_; }
  // Stops serving and joins the thread. Idempotent.
  void Stop();

 private:
  MetricsHttpServer() = default;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace moe

#endif  // MOE_SERVING_METRICS_HTTP_SERVER_H_
