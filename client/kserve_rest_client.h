// A KServe v2 REST client for moe_loadgen --protocol=http: the same
// ModelInferRequest / ModelInferResponse messages as the gRPC path, sent
// as the binary tensor data extension (JSON header, then each input's raw
// bytes; every output asked for as binary), so answers compare bitwise with
// gRPC's. HTTP errors come back as the gRPC code the status means (400
// INVALID_ARGUMENT, 404 NOT_FOUND, 503 UNAVAILABLE, 504 DEADLINE_EXCEEDED;
// no answer: UNAVAILABLE) with the server's {"error"} text.
//
// Thread-safety: one RestInferClient per thread (it keeps one connection).
#ifndef MOE_CLIENT_KSERVE_REST_CLIENT_H_
#define MOE_CLIENT_KSERVE_REST_CLIENT_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/kserve_client.h"
#include "grpcpp/support/status.h"
#include "proto/grpc_service.pb.h"

namespace httplib {
class Client;
}

namespace moe {

class RestInferClient {
 public:
  // `options.address` is host:port of the REST listener; with tls_ca set
  // it speaks HTTPS trusting that CA (and presents tls_cert/tls_key).
  static absl::StatusOr<std::unique_ptr<RestInferClient>> Create(const ConnectionOptions& options);
  ~RestInferClient();

  // POST /v2/models/{model}[/versions/{v}]/infer; `deadline` is sent as
  // the "timeout" parameter and bounds the HTTP read.
  grpc::Status Infer(const inference::ModelInferRequest& request, absl::Duration deadline,
                     inference::ModelInferResponse* response);

  // d_model from GET /v2/models/{model} (inputs[0].shape[1]).
  absl::StatusOr<int64_t> FetchDModel(const std::string& model);

 private:
  RestInferClient() = default;
  std::unique_ptr<httplib::Client> http_;
};

}  // namespace moe

#endif  // MOE_CLIENT_KSERVE_REST_CLIENT_H_
