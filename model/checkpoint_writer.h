// Writing safetensors files and one-layer Hugging Face model folders.
#ifndef MOE_MODEL_CHECKPOINT_WRITER_H_
#define MOE_MODEL_CHECKPOINT_WRITER_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "common/tensor.h"
#include "model/layer_spec.h"

namespace moe {

// Writes `tensors` (name, tensor) to a .safetensors file at `path`: header
// JSON padded with spaces to a multiple of 8 bytes, data in the given order.
absl::Status WriteSafetensors(const std::string& path,
                              const std::vector<std::pair<std::string, Tensor>>& tensors);

// Writes `weights` as layer 0 of a Hugging Face folder `dir` (created if
// needed): config.json for spec.family and model.safetensors with the
// family's tensor names. LoadHfLayer(dir, 0) gives the same layer back.
absl::Status WriteHfLayer(const LayerWeights& weights, const std::string& dir);

}  // namespace moe

#endif  // MOE_MODEL_CHECKPOINT_WRITER_H_
