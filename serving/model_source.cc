#include "serving/model_source.h"

#include <cstdint>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "model/checkpoint_loader.h"
#include "model/expert_ranges.h"
#include "model/presets.h"

ABSL_FLAG(std::string, model_dir, "",
          "Hugging Face model folder (config.json + safetensors). Empty: use --preset.");
ABSL_FLAG(int, layer, 0, "Layer of --model_dir (moe_server serves it as the model --model_name).");
ABSL_FLAG(std::string, layers, "",
          "Layers of --model_dir: 'all' or a list such as '0-3,8'. moe_server serves each as "
          "the model <model_name>.layer<L>, batched per layer with one compute for all; "
          "moe_expert_worker hosts its --experts of each. Overrides --layer.");
ABSL_FLAG(std::string, preset, "demo",
          absl::StrCat("Synthetic preset when no --model_dir: ", moe::PresetNameList(), "."));
ABSL_FLAG(uint64_t, seed, moe::kDefaultPresetSeed, "Weight seed of --preset.");
ABSL_FLAG(std::string, dtype, "",
          "Compute dtype: f32, bf16, int8 (int8 weights with one scale per output channel) or "
          "int4 (4-bit weights with a bf16 scale per 32 inputs, as llama.cpp's Q4_0); both "
          "quantize activations to int8 per 32-input group. Default: bf16 (bf16 weights on "
          "every CPU tier).");

namespace moe {

absl::StatusOr<DType> ComputeDTypeFromFlags() {
  const std::string flag = absl::GetFlag(FLAGS_dtype);
  if (flag.empty()) return DType::kBF16;
  auto parsed = ParseComputeDType(flag);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--dtype: ", parsed.status().message()));
  }
  return *parsed;
}

bool ModelDirGiven() { return !absl::GetFlag(FLAGS_model_dir).empty(); }

bool SeveralLayersRequested() { return !absl::GetFlag(FLAGS_layers).empty(); }

absl::StatusOr<std::vector<int>> LayersFromFlags() {
  if (!SeveralLayersRequested()) {
    return std::vector<int>{ModelDirGiven() ? absl::GetFlag(FLAGS_layer) : 0};
  }
  if (!ModelDirGiven()) {
    return absl::InvalidArgumentError("--layers needs --model_dir (the presets have one layer)");
  }
  auto count = HfLayerCount(absl::GetFlag(FLAGS_model_dir));
  if (!count.ok()) {
    return absl::Status(count.status().code(),
                        absl::StrCat("cannot load the model: ", count.status().message()));
  }
  auto ids = ParseLayerList(absl::GetFlag(FLAGS_layers), *count);
  if (!ids.ok())
    return absl::InvalidArgumentError(absl::StrCat("--layers: ", ids.status().message()));
  return *ids;
}

absl::StatusOr<LayerWeights> LoadLayerFromFlags(int layer, const std::vector<int>& preset_experts) {
  absl::StatusOr<LayerWeights> weights;
  if (ModelDirGiven()) {
    weights = LoadHfLayer(absl::GetFlag(FLAGS_model_dir), layer);
  } else if (preset_experts.empty()) {
    weights = MakePreset(absl::GetFlag(FLAGS_preset), absl::GetFlag(FLAGS_seed));
  } else {
    auto spec = PresetSpec(absl::GetFlag(FLAGS_preset));
    if (!spec.ok()) {
      weights = spec.status();
    } else {
      weights = MakeSyntheticWeights(*spec, absl::GetFlag(FLAGS_seed), preset_experts);
    }
  }
  if (!weights.ok()) {
    return absl::Status(weights.status().code(),
                        absl::StrCat("cannot load the model: ", weights.status().message()));
  }
  return weights;
}

absl::StatusOr<LayerSpec> PresetSpecFromFlags() {
  auto spec = PresetSpec(absl::GetFlag(FLAGS_preset));
  if (!spec.ok()) {
    return absl::Status(spec.status().code(),
                        absl::StrCat("cannot load the model: ", spec.status().message()));
  }
  return *spec;
}

std::string ModelSourceDescription(const std::vector<int>& layers) {
  if (!ModelDirGiven()) return "preset " + absl::GetFlag(FLAGS_preset);
  return absl::StrCat(absl::GetFlag(FLAGS_model_dir), layers.size() == 1 ? " layer " : " layers ",
                      FormatExpertList(layers));
}

}  // namespace moe
