// The Hugging Face model families moe-serve reads and writes, one file
// each in model/hf_families/, and the table that maps config.json's
// model_type to them. Adding a family: its file, and one row per
// model_type in HfFamilies() (hf_families.cc).
#ifndef MOE_MODEL_HF_FAMILIES_H_
#define MOE_MODEL_HF_FAMILIES_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "model/hf_config_reader.h"
#include "model/hf_layout.h"
#include "nlohmann/json.hpp"

namespace moe {

// Whether the checkpoint holds a tensor of this name.
using HasTensorFn = std::function<bool(const std::string&)>;

// Fills `l` (spec and tensor names) for layer `layer` of a config of
// model_type `family`.
using HfResolveFn = absl::Status (*)(const ConfigReader& r, int layer, const std::string& family,
                                     const HasTensorFn& has, HfLayerLayout* l);
// Adds the family's keys for a one-layer checkpoint of `spec` to `config`
// (model_type and torch_dtype are set), or UnsupportedSpec(spec, why).
using HfWriteConfigFn = absl::Status (*)(const LayerSpec& spec, nlohmann::json* config);

struct HfFamily {
  const char* model_type;
  HfResolveFn resolve;
  HfWriteConfigFn write_config;  // null: read only
};

// Every supported model_type, in the order messages list them.
const std::vector<HfFamily>& HfFamilies();
// The row for `model_type`, or null.
const HfFamily* FindHfFamily(const std::string& model_type);

// The families (model/hf_families/<file>.cc).
absl::Status ResolveMixtral(const ConfigReader& r, int layer, const std::string& family,
                            const HasTensorFn& has, HfLayerLayout* l);
absl::Status WriteMixtralConfig(const LayerSpec& s, nlohmann::json* out);
absl::Status ResolveQwenMoe(const ConfigReader& r, int layer, const std::string& family,
                            const HasTensorFn& has, HfLayerLayout* l);
absl::Status WriteQwen2MoeConfig(const LayerSpec& s, nlohmann::json* out);
absl::Status WriteQwen3MoeConfig(const LayerSpec& s, nlohmann::json* out);
absl::Status ResolveOlmoe(const ConfigReader& r, int layer, const std::string& family,
                          const HasTensorFn& has, HfLayerLayout* l);
absl::Status WriteOlmoeConfig(const LayerSpec& s, nlohmann::json* out);
absl::Status ResolveGptOss(const ConfigReader& r, int layer, const std::string& family,
                           const HasTensorFn& has, HfLayerLayout* l);
absl::Status WriteGptOssConfig(const LayerSpec& s, nlohmann::json* out);
absl::Status ResolveDeepseek(const ConfigReader& r, int layer, const std::string& family,
                             const HasTensorFn& has, HfLayerLayout* l);
absl::Status WriteDeepseekConfig(const LayerSpec& s, nlohmann::json* out);  // V3 only
absl::Status ResolveLlama(const ConfigReader& r, int layer, const std::string& family,
                          const HasTensorFn& has, HfLayerLayout* l);
absl::Status WriteLlamaConfig(const LayerSpec& s, nlohmann::json* out);
absl::Status ResolveBert(const ConfigReader& r, int layer, const std::string& family,
                         const HasTensorFn& has, HfLayerLayout* l);
absl::Status WriteBertConfig(const LayerSpec& s, nlohmann::json* out);
absl::Status ResolveGpt2(const ConfigReader& r, int layer, const std::string& family,
                         const HasTensorFn& has, HfLayerLayout* l);
absl::Status WriteGpt2Config(const LayerSpec& s, nlohmann::json* out);
absl::Status ResolveSwitch(const ConfigReader& r, int layer, const std::string& family,
                           const HasTensorFn& has, HfLayerLayout* l);
absl::Status WriteSwitchConfig(const LayerSpec& s, nlohmann::json* out);

}  // namespace moe

#endif  // MOE_MODEL_HF_FAMILIES_H_
