// Decoding and validating KServe v2 ModelInferRequests, and encoding the
// responses. Pure functions of the messages: no RPC state, no threads.
//
// The model's tensors:
//   input  "input"           FP32 or BF16 [T, d_model], raw_input_contents
//                            (little-endian, row-major) or contents.fp32_contents
//          "expert_ids"      optional, INT32 [T, k], with "expert_weights":
//          "expert_weights"  optional, FP32 [T, k]: the caller's routing,
//                            used instead of the router's (ids distinct per
//                            token and in range, weights finite)
//   output "output"          the input's datatype, [T, d_model], raw_output_contents
//          "expert_ids"      INT32 [T, k]  (only when requested by name)
//          "expert_weights"  FP32  [T, k]  (only when requested by name)
// With no outputs requested, the response holds all three (the spec's
// rule: every output the model produces). The request parameter "timeout"
// (int64 microseconds, Triton's; 0: none) bounds the request's deadline
// on top of the transport's; "shared_experts" (bool, default true) false
// leaves the shared experts out. Every
// malformed request is INVALID_ARGUMENT (NOT_FOUND for an unknown model or
// version) with a message naming the field, the expected and the received
// value.
#ifndef MOE_FRONTEND_REQUEST_CODEC_H_
#define MOE_FRONTEND_REQUEST_CODEC_H_

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "batching/infer_task.h"
#include "batching/model_io.h"
#include "proto/grpc_service.pb.h"

namespace moe {

inline constexpr char kInputName[] = "input";
inline constexpr char kOutputName[] = "output";
inline constexpr char kExpertIdsName[] = "expert_ids";
inline constexpr char kExpertWeightsName[] = "expert_weights";

enum class WireDType { kFp32, kBf16 };

struct DecodedRequest {
  std::string id;
  WireDType dtype = WireDType::kFp32;
  int64_t num_tokens = 0;
  std::vector<float> tokens;  // [num_tokens, d_model]
  // Outputs to return, in response order.
  std::vector<std::string> outputs;
  bool want_routing = false;
  std::optional<absl::Duration> timeout;  // the "timeout" parameter
  // The caller's routing, [num_tokens, k] each; empty when not given.
  std::vector<int32_t> given_ids;
  std::vector<float> given_weights;
  bool skip_shared = false;  // parameter shared_experts: false
};

// The earlier of the transport's deadline and `arrival` + the request's
// timeout parameter.
inline absl::Time RequestDeadline(const DecodedRequest& r, absl::Time arrival,
                                  absl::Time transport_deadline) {
  if (!r.timeout.has_value()) return transport_deadline;
  return std::min(transport_deadline, arrival + *r.timeout);
}

absl::StatusOr<DecodedRequest> DecodeInferRequest(const inference::ModelInferRequest& request,
                                                  const ModelIo& io);

// The batcher's task for a decoded request (its tokens moved out of
// `decoded`); the caller sets `done`.
std::shared_ptr<InferTask> MakeInferTask(DecodedRequest& decoded, absl::Time deadline);

// Fills `response` from a finished task.
void EncodeInferResponse(const DecodedRequest& request, const InferTask& task, const ModelIo& io,
                         inference::ModelInferResponse* response);

}  // namespace moe

#endif  // MOE_FRONTEND_REQUEST_CODEC_H_
