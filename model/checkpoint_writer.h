// Writing safetensors files and one-layer Hugging Face model folders.
#ifndef MOE_MODEL_CHECKPOINT_WRITER_H_
#define MOE_MODEL_CHECKPOINT_WRITER_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/tensor.h"
#include "model/layer_spec.h"

namespace moe {

// One tensor as a safetensors file stores it: the dtype string ("F32",
// "BF16", "U8", "F8_E4M3", ...), the shape and `bytes` bytes at `data`
// (borrowed: they must outlive the WriteSafetensors call).
struct StoredTensor {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  size_t bytes = 0;
};

// Writes `tensors` to a .safetensors file at `path`: header JSON padded
// with spaces to a multiple of 8 bytes, data in the given order. The
// dtype, shape and byte count of each must agree (INVALID_ARGUMENT).
absl::Status WriteSafetensors(const std::string& path, const std::vector<StoredTensor>& tensors);
// The same for tensors of the project's dtypes (F32, BF16, F16, I8).
absl::Status WriteSafetensors(const std::string& path,
                              const std::vector<std::pair<std::string, Tensor>>& tensors);

// How the expert weights are stored.
struct HfWriteOptions {
  // {rows, columns} > 0: every FFN weight matrix (routed and shared
  // experts, dense MLPs; not the router) as F8_E4M3 with an F32
  // "<name>_scale_inv" per block, as DeepSeek-V3 and the Qwen3 -FP8
  // releases ship them (fp8_weights.h), and config.json's
  // quantization_config says so. Lossy: what loads back is the decoded
  // values. Families whose matrices are stored [in, out] (gpt2) and
  // gpt_oss (MXFP4 already) refuse it.
  int64_t fp8_block[2] = {0, 0};
};

// Writes `weights` as layer 0 of a Hugging Face folder `dir` (created if
// needed): config.json for spec.family and model.safetensors with the
// family's tensor names. LoadHfLayer(dir, 0) gives the same layer back,
// except where the family's format is lossy: gpt_oss's experts are
// written in MXFP4 (their d_model and d_ff multiples of 32), rounded to it
// (exact for weights on its grid, as MakeSyntheticWeights makes them), and
// HfWriteOptions::fp8_block rounds to FP8.
absl::Status WriteHfLayer(const LayerWeights& weights, const std::string& dir,
                          const HfWriteOptions& options = {});

// Writes a Hugging Face folder of `num_layers` layers: config.json from
// layer 0's spec with the layer count set (every layer must have layer 0's
// spec), and the tensors sharded `layers_per_file` layers to a file
// (model-0000i-of-0000n.safetensors plus model.safetensors.index.json; one
// model.safetensors when one file holds them all). `make(l)` gives layer
// l's weights; at most one file's layers are in memory at once.
absl::Status WriteHfLayers(int num_layers, int layers_per_file,
                           const std::function<absl::StatusOr<LayerWeights>(int)>& make,
                           const std::string& dir, const HfWriteOptions& options = {});

}  // namespace moe

#endif  // MOE_MODEL_CHECKPOINT_WRITER_H_
