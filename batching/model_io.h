// ModelIo: what a served model accepts (its name, width, routing shape and
// request limits), as the serving core and the protocol codecs see it;
// RequestLimits: the part a deployment sets.
#ifndef MOE_BATCHING_MODEL_IO_H_
#define MOE_BATCHING_MODEL_IO_H_

#include <cstdint>
#include <string>

namespace moe {

// Every served model has this one version.
inline constexpr char kModelVersion[] = "1";

// The request limits a deployment sets (the server's flags), the same for
// every model it serves.
struct RequestLimits {
  int64_t max_request_tokens = 8192;  // tokens in one request
  bool allow_non_finite = false;      // accept NaN and infinite inputs
};

// What one served model accepts: its name and the shape of its layer
// (MakeModelIo in serving_core.h derives them from the layer), and the
// deployment's limits.
struct ModelIo {
  std::string model_name = "moe";
  int64_t d_model = 0;
  int top_k = 1;
  int num_experts = 1;  // 1: a dense FFN, which takes no routing inputs
  RequestLimits limits;
};

}  // namespace moe

#endif  // MOE_BATCHING_MODEL_IO_H_
