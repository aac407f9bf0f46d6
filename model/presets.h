// Named synthetic layers, so that everything runs without a checkpoint.
//
// A preset is a LayerSpec (shapes and routing of a public model family)
// plus weights drawn from a seeded, platform-independent generator and
// stored in bf16, like real checkpoints. Each tensor has its own stream
// derived from (seed, tensor name), so any subset of experts can be
// generated on its own and is identical to the same experts of the full
// layer.
//
//   demo              mixtral family, d_model 1024, 8 experts SwiGLU d_ff 2816, top-2
//   mixtral-8x7b      mixtral, 4096, 8 x 14336, top-2
//   qwen2-moe-a2.7b   qwen2_moe, 2048, 60 x 1408, top-4, no renormalisation,
//                     one shared expert of 5632 with a sigmoid gate
//   deepseek-v3-small deepseek_v3 routing at a size that fits: 1024, 64 x 512,
//                     top-8, sigmoid + correction bias, 8 groups / top-4,
//                     2 shared experts, renormalised, routed scaling 2.5
//   switch-8          switch_transformers, 768, 8 x 3072 ReLU, top-1,
//                     capacity factor 1.25
//   transformer-base  dense 512/2048 ReLU with biases (Vaswani et al.)
//   bert-base         dense 768/3072 GELU (erf) with biases
//   gpt2              dense 768/3072 gelu_tanh with biases
//   llama-7b          dense 4096/11008 SwiGLU
//   qwen3-30b-a3b     qwen3_moe, 2048, 128 x 768, top-8, renormalised
//   olmoe-1b-7b       olmoe, 2048, 64 x 1024, top-8, not renormalised
//   gpt-oss-20b       gpt_oss, 2880, 32 x 2880 clamped SwiGLU with biases,
//                     top-4; expert matrices on the MXFP4 grid, as shipped
#ifndef MOE_MODEL_PRESETS_H_
#define MOE_MODEL_PRESETS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/layer_spec.h"

namespace moe {

inline constexpr uint64_t kDefaultPresetSeed = 20240601;

struct PresetInfo {
  std::string name;
  std::string description;
};

const std::vector<PresetInfo>& Presets();

// The presets' names, comma-separated, in Presets() order (for help texts
// and error messages).
std::string PresetNameList();

// The spec of preset `name`; NOT_FOUND listing the valid names otherwise.
absl::StatusOr<LayerSpec> PresetSpec(const std::string& name);

// Seeded bf16 weights for any spec. With `hosted` non-empty only those
// routed experts get weights (the others stay empty); router and shared
// weights are always made.
LayerWeights MakeSyntheticWeights(const LayerSpec& spec, uint64_t seed,
                                  const std::vector<int>& hosted = {});

// PresetSpec + MakeSyntheticWeights.
absl::StatusOr<LayerWeights> MakePreset(const std::string& name,
                                        uint64_t seed = kDefaultPresetSeed);

}  // namespace moe

#endif  // MOE_MODEL_PRESETS_H_
