// Writing safetensors files and one-layer Hugging Face model folders.
#ifndef MOE_MODEL_CHECKPOINT_WRITER_H_
#define MOE_MODEL_CHECKPOINT_WRITER_H_

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
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

// Writes a Hugging Face folder of `num_layers` layers: config.json from
// layer 0's spec with the layer count set (every layer must have layer 0's
// spec), and the tensors sharded `layers_per_file` layers to a file
// (model-0000i-of-0000n.safetensors plus model.safetensors.index.json; one
// model.safetensors when one file holds them all). `make(l)` gives layer
// l's weights; at most one file's layers are in memory at once.
absl::Status WriteHfLayers(int num_layers, int layers_per_file,
                           const std::function<absl::StatusOr<LayerWeights>(int)>& make,
                           const std::string& dir);

}  // namespace moe

#endif  // MOE_MODEL_CHECKPOINT_WRITER_H_
