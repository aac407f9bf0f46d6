// HttpService: the KServe v2 REST API (Triton's extensions included) over
// cpp-httplib, in front of the same ServingCore as the gRPC service:
//
//   GET  /v2/health/live                      200 {"live": true}
//   GET  /v2/health/ready                     200 {"ready": true}, 400 while draining
//   GET  /v2                                  server metadata
//   GET  /v2/models/{m}[/versions/{v}]        model metadata
//   GET  /v2/models/{m}[/versions/{v}]/ready  200 ready, 400 not ready (unknown, draining)
//   GET  /v2/models/{m}[/versions/{v}]/config Triton's model configuration
//   GET  /v2/models[/{m}[/versions/{v}]]/stats  statistics
//   POST /v2/repository/index                 [{"name", "version", "state", "reason"}]
//   POST /v2/repository/models/{m}/load|unload  400: the model is fixed
//   POST /v2/models/{m}[/versions/{v}]/infer  inference (rest_codec.h)
//
// The answers are those of model_descriptors.h and request_codec.h, so
// both protocols state the same facts and compute the same bits. Errors
// are {"error": "..."} with 400 (INVALID_ARGUMENT), 404 (NOT_FOUND), 503
// (UNAVAILABLE: draining or a full queue), 504 (DEADLINE_EXCEEDED: the
// "timeout" parameter, in microseconds, 0 for none), 500 otherwise.
//
// cpp-httplib is synchronous: each connection holds one of kThreads
// threads while it is kept alive (idle ones are let go after 2 s), and a
// request holds it until answered. kThreads bounds the concurrent
// connections; more wait in the accept queue.
//
// Thread-safety: Start() and Stop() from one controlling thread.
#ifndef MOE_FRONTEND_HTTP_SERVICE_H_
#define MOE_FRONTEND_HTTP_SERVICE_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "frontend/tls_options.h"

namespace httplib {
class Server;
}

namespace moe {

class ServingCore;

class HttpService {
 public:
  static constexpr int kThreads = 128;

  // Listens on host:port (0 picks a free port) with TLS when tls.cert_file
  // is set. `core` must outlive the service. UNAVAILABLE naming the
  // address when it cannot bind; INVALID_ARGUMENT naming the file when a
  // TLS file cannot be used.
  static absl::StatusOr<std::unique_ptr<HttpService>> Start(const std::string& host, int port,
                                                            const TlsOptions& tls,
                                                            size_t max_body_bytes,
                                                            ServingCore* core);
  ~HttpService();  // Stop()

  int port() const { return port_; }
  // Stops listening, lets the requests in flight finish and joins the
  // threads. Idempotent.
  void Stop();

 private:
  HttpService() = default;
  void Route();

  ServingCore* core_ = nullptr;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace moe

#endif  // MOE_FRONTEND_HTTP_SERVICE_H_
