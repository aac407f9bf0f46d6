// ModelIo: what a served model accepts (its name, width, routing shape and
// request limits), as the serving core and the protocol codecs see it.
#ifndef MOE_BATCHING_MODEL_IO_H_
#define MOE_BATCHING_MODEL_IO_H_

#include <cstdint>
#include <string>

namespace moe {

// Every served model has this one version.
inline constexpr char kModelVersion[] = "1";

// What the served model accepts.
struct ModelIo {
  std::string model_name = "moe";
  int64_t d_model = 0;
  int top_k = 1;
  int num_experts = 1;  // 1: a dense FFN, which takes no routing inputs
  int64_t max_request_tokens = 8192;
  bool allow_non_finite = false;
};

}  // namespace moe

#endif  // MOE_BATCHING_MODEL_IO_H_
