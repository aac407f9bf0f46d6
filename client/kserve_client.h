// Client-side helpers for the KServe v2 gRPC protocol, shared by moe_client
// and moe_loadgen: channels (plaintext or TLS), request building, response
// parsing and readable gRPC errors.
#ifndef MOE_CLIENT_KSERVE_CLIENT_H_
#define MOE_CLIENT_KSERVE_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "proto/grpc_service.grpc.pb.h"

namespace moe {

struct ConnectionOptions {
  std::string address = "localhost:8001";
  // TLS: when tls_ca is set the channel uses TLS and trusts that CA; with
  // tls_cert/tls_key it also presents a client certificate (mutual TLS).
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
};

// A channel to options.address. Fails naming a TLS file that cannot be read.
// `index` makes distinct channels (separate connections) for the same
// address.
absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const ConnectionOptions& options,
                                                           int index = 0);

// "UNAVAILABLE: cannot reach the server at ... (is it running? ...)" and
// similar one-line explanations for each gRPC status code.
std::string DescribeGrpcError(const grpc::Status& status, const std::string& address);

// A ModelInferRequest for `tokens` ([T, d_model] row-major), FP32 or BF16
// raw contents; requests expert_ids/expert_weights when `want_routing`.
inference::ModelInferRequest BuildInferRequest(const std::string& model,
                                               const std::vector<float>& tokens, int64_t d_model,
                                               bool bf16, const std::string& id, bool want_routing);

struct InferResult {
  int64_t num_tokens = 0;
  int64_t d_model = 0;
  int top_k = 0;
  std::vector<float> output;          // [T, d_model], widened to f32 if BF16
  std::vector<int32_t> expert_ids;    // [T, k] when returned
  std::vector<float> expert_weights;  // [T, k] when returned
};

// Checks and decodes a response (raw_output_contents).
absl::StatusOr<InferResult> ParseInferResponse(const inference::ModelInferResponse& response);

// d_model of `model` from ModelMetadata (inputs[0].shape[1]).
absl::StatusOr<int64_t> FetchDModel(inference::GRPCInferenceService::Stub* stub,
                                    const std::string& model, int64_t deadline_ms);

}  // namespace moe

#endif  // MOE_CLIENT_KSERVE_CLIENT_H_
