// The KServe v2 REST inference bodies, binary tensor data extension
// included, converted to and from the gRPC messages. DecodeInferRequest /
// EncodeInferResponse (request_codec.h) then validate and encode for both
// protocols, so a token gets the same bits, and a bad request the same
// error, over either.
//
// Request: a JSON object {"id", "parameters", "inputs": [{"name",
// "datatype", "shape", "parameters", "data"}], "outputs": [{"name",
// "parameters"}]}. "data" is row-major, flat or nested by the shape; FP32
// and BF16 take JSON numbers (BF16 rounded to nearest even). With the
// binary extension the body is `header_length` bytes of JSON followed by
// the inputs' bytes, in input order, for each input whose parameters give
// "binary_data_size" (and no "data"); the bytes are little-endian and
// row-major, as gRPC's raw_input_contents. Request parameters:
// "binary_data_output" (bool: every output as binary data); "timeout"
// (microseconds) and others are passed through to the request. Output
// parameter "binary_data" (bool) overrides "binary_data_output" for that
// output. "data" nested deeper than the shape's rank is rejected.
//
// Response: {"model_name", "model_version", "id", "outputs": [{"name",
// "datatype", "shape", "data"}]}, data flat and row-major (FP32 and BF16
// values as JSON numbers that parse back to the same bits; non-finite
// values are null); an output asked for as binary has "parameters":
// {"binary_data_size": n} instead of "data", and its bytes follow the JSON
// in output order.
//
// Thread-safety: pure functions.
#ifndef MOE_FRONTEND_REST_CODEC_H_
#define MOE_FRONTEND_REST_CODEC_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "proto/grpc_service.pb.h"

namespace moe {

inline constexpr char kHeaderLengthHeader[] = "Inference-Header-Content-Length";

struct RestInferRequest {
  inference::ModelInferRequest request;
  bool all_outputs_binary = false;            // "binary_data_output"
  std::map<std::string, bool> output_binary;  // per output "binary_data" (overrides)
  bool Binary(const std::string& output) const {
    auto it = output_binary.find(output);
    return it != output_binary.end() ? it->second : all_outputs_binary;
  }
};

// `body` is the whole HTTP body; `header_length` the value of
// Inference-Header-Content-Length (nullopt: the body is all JSON). The
// model name and version come from the URL. Malformed bodies are
// INVALID_ARGUMENT naming the field.
absl::StatusOr<RestInferRequest> ParseRestInferRequest(absl::string_view body,
                                                       std::optional<int64_t> header_length,
                                                       const std::string& model,
                                                       const std::string& version);

struct RestBody {
  std::string body;
  // JSON length when binary data follows it (Inference-Header-Content-
  // Length), else nullopt.
  std::optional<int64_t> header_length;
  std::string content_type;
};

RestBody EncodeRestInferResponse(const inference::ModelInferResponse& response,
                                 const RestInferRequest& request);

}  // namespace moe

#endif  // MOE_FRONTEND_REST_CODEC_H_
