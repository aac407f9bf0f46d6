// The model a serving process loads, from the flags moe_server and
// moe_expert_worker share: --model_dir with --layer or --layers, or
// --preset with --seed, and --dtype. Defined once here, so both programs
// read a checkpoint the same way.
//
// Thread-safety: reads flags only; call after the command line is parsed.
#ifndef MOE_SERVING_MODEL_SOURCE_H_
#define MOE_SERVING_MODEL_SOURCE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/dtype.h"
#include "model/layer_spec.h"

namespace moe {

// --dtype: f32, bf16 or int8 (default bf16, on every CPU tier).
absl::StatusOr<DType> ComputeDTypeFromFlags();

// True when --model_dir names a checkpoint (else --preset is served).
bool ModelDirGiven();

// The layers to load: {0} for a preset, {--layer}, or --layers ("all" or a
// list) against the checkpoint's layer count. Errors name the flag.
absl::StatusOr<std::vector<int>> LayersFromFlags();

// True when several layers were asked for (--layers).
bool SeveralLayersRequested();

// Layer `layer` of --model_dir, or the preset (`layer` 0). For a preset,
// `preset_experts` non-empty makes only those experts' weights (the others
// stay empty). Errors start "cannot load the model: ".
absl::StatusOr<LayerWeights> LoadLayerFromFlags(int layer,
                                                const std::vector<int>& preset_experts = {});

// --preset's spec, before any weights are made.
absl::StatusOr<LayerSpec> PresetSpecFromFlags();

// "preset demo", "DIR layer 3" or "DIR layers 0-15", for log lines.
std::string ModelSourceDescription(const std::vector<int>& layers);

}  // namespace moe

#endif  // MOE_SERVING_MODEL_SOURCE_H_
