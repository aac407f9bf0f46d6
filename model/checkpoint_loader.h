// Loading one layer of a Hugging Face model folder (config.json +
// safetensors) into LayerWeights.
//
// Every header, offset, dtype and shape is checked before any tensor data
// is used; errors name the file, the tensor and the problem. Tensor data
// stays memory-mapped until the layer packs it.
#ifndef MOE_MODEL_CHECKPOINT_LOADER_H_
#define MOE_MODEL_CHECKPOINT_LOADER_H_

#include <string>

#include "absl/status/statusor.h"
#include "model/layer_spec.h"

namespace moe {

absl::StatusOr<LayerWeights> LoadHfLayer(const std::string& dir, int layer);

// The number of layers config.json gives the model in `dir`.
absl::StatusOr<int> HfLayerCount(const std::string& dir);

}  // namespace moe

#endif  // MOE_MODEL_CHECKPOINT_LOADER_H_
