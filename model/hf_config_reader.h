// ConfigReader and the helpers every Hugging Face family reader and writer
// (model/hf_families/) shares: typed config.json keys with errors that
// name the file and the key, LLaMA-style tensor names, dense layouts.
#ifndef MOE_MODEL_HF_CONFIG_READER_H_
#define MOE_MODEL_HF_CONFIG_READER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/hf_layout.h"
#include "nlohmann/json.hpp"

namespace moe {

// Reads typed config keys, with errors that name the file and the key.
class ConfigReader {
 public:
  ConfigReader(const nlohmann::json& config, const std::string& path) : c_(config), path_(path) {}

  bool Has(const std::string& key) const { return c_.contains(key) && !c_.at(key).is_null(); }

  absl::StatusOr<int64_t> Int(const std::string& key) const {
    if (!Has(key)) return Missing(key);
    const nlohmann::json& v = c_.at(key);
    if (!v.is_number_integer()) return Bad(key, "an integer");
    return v.get<int64_t>();
  }
  absl::StatusOr<int64_t> Int(const std::string& key, int64_t def) const {
    return Has(key) ? Int(key) : absl::StatusOr<int64_t>(def);
  }
  absl::StatusOr<int64_t> PositiveInt(const std::string& key) const {
    MOE_ASSIGN_OR_RETURN(int64_t v, Int(key));
    if (v < 1) return Bad(key, "a positive integer");
    return v;
  }
  absl::StatusOr<double> Number(const std::string& key, double def) const {
    if (!Has(key)) return def;
    const nlohmann::json& v = c_.at(key);
    if (!v.is_number()) return Bad(key, "a number");
    return v.get<double>();
  }
  absl::StatusOr<bool> Bool(const std::string& key, bool def) const {
    if (!Has(key)) return def;
    const nlohmann::json& v = c_.at(key);
    if (!v.is_boolean()) return Bad(key, "true or false");
    return v.get<bool>();
  }
  absl::StatusOr<std::string> String(const std::string& key, const std::string& def) const {
    if (!Has(key)) return def;
    const nlohmann::json& v = c_.at(key);
    if (!v.is_string()) return Bad(key, "a string");
    return v.get<std::string>();
  }
  absl::StatusOr<std::vector<int64_t>> IntList(const std::string& key) const {
    std::vector<int64_t> out;
    if (!Has(key)) return out;
    const nlohmann::json& v = c_.at(key);
    if (!v.is_array()) return Bad(key, "a list of integers");
    for (const auto& x : v) {
      if (!x.is_number_integer()) return Bad(key, "a list of integers");
      out.push_back(x.get<int64_t>());
    }
    return out;
  }
  absl::Status Missing(const std::string& key) const {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": missing config key '", key, "'"));
  }
  absl::Status Bad(const std::string& key, const char* want) const {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": config key '", key, "' must be ", want,
                                                   ", got ", c_.at(key).dump()));
  }
  const std::string& path() const { return path_; }

 private:
  const nlohmann::json& c_;
  const std::string& path_;
};

// OUT_OF_RANGE naming `key` (the layer count) when `layer` is not below it.
absl::Status CheckLayer(const ConfigReader& r, int layer, const char* key);

// LLaMA-style gate_proj/up_proj/down_proj under `prefix`.
FfnTensorNames ProjNames(const std::string& prefix, bool bias);

// Makes `l` the dense FFN `ffn` of `family` stored under `names`.
void MakeDense(HfLayerLayout* l, const std::string& family, int64_t d_model, FfnSpec ffn,
               FfnTensorNames names);

// The activation named by config key `key` (`def` when absent).
absl::StatusOr<Activation> ReadActivation(const ConfigReader& r, const std::string& key,
                                          const std::string& def);

// The name config.json uses for `a` (gelu_new for the tanh GELU).
std::string HfActivationName(Activation a);

// The keys the OLMoE and Qwen3-MoE configs share for a gated softmax top-k
// layer without a shared expert (num_hidden_layers, hidden_size,
// num_experts, num_experts_per_tok, norm_topk_prob, hidden_act), or
// UnsupportedSpec for another layer.
absl::Status WriteSoftmaxMoeKeys(const LayerSpec& spec, nlohmann::json* config);

// INVALID_ARGUMENT: "cannot write a <family> checkpoint for this layer: <why>".
absl::Status UnsupportedSpec(const LayerSpec& spec, const std::string& why);

}  // namespace moe

#endif  // MOE_MODEL_HF_CONFIG_READER_H_
