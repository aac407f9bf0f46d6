// libFuzzer target: the bytes of a gRPC ModelInfer request body, through
// protobuf parsing and DecodeInferRequest (names, datatypes, shapes, typed
// contents vs raw_input_contents, sizes, parameters, requested outputs).
//
// Contract under test: any input either fails to parse, is refused with
// INVALID_ARGUMENT (or NOT_FOUND for an unknown model/version), or decodes to a request whose token
// buffer holds exactly num_tokens * d_model finite floats with 1 <= num_tokens <= the limit and
// known outputs; nothing crashes or leaks. Violations abort.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "absl/status/status.h"
#include "frontend/request_codec.h"
#include "proto/grpc_service.pb.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  inference::ModelInferRequest request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
  moe::ModelIo io;
  io.model_name = "moe";
  io.d_model = 8;
  io.top_k = 2;
  io.limits.max_request_tokens = 64;
  auto decoded = moe::DecodeInferRequest(request, io);
  if (!decoded.ok()) {
    if (decoded.status().code() != absl::StatusCode::kInvalidArgument &&
        decoded.status().code() != absl::StatusCode::kNotFound) {
      std::abort();
    }
    return 0;
  }
  if (decoded->num_tokens < 1 || decoded->num_tokens > io.limits.max_request_tokens) std::abort();
  if (decoded->tokens.size() != static_cast<size_t>(decoded->num_tokens * io.d_model)) std::abort();
  for (float v : decoded->tokens) {
    if (!std::isfinite(v)) std::abort();
  }
  for (const auto& name : decoded->outputs) {
    if (name != moe::kOutputName && name != moe::kExpertIdsName &&
        name != moe::kExpertWeightsName) {
      std::abort();
    }
  }
  return 0;
}
