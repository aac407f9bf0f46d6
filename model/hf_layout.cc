#include "model/hf_layout.h"

#include <algorithm>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "model/hf_config_reader.h"
#include "model/hf_families.h"

namespace moe {
namespace {

using json = nlohmann::json;

// quantization_config: fp8 (with weight_block_size into l->fp8_block), or
// mxfp4 for gpt_oss; anything else is refused.
absl::Status ReadQuantizationConfig(const json& config, const std::string& type,
                                    const std::string& config_path, HfLayerLayout* l) {
  if (!config.contains("quantization_config")) return absl::OkStatus();
  const json& q = config["quantization_config"];
  const std::string method =
      q.is_object() && q.contains("quant_method") && q["quant_method"].is_string()
          ? q["quant_method"].get<std::string>()
          : "";
  if (method == "mxfp4" && type == "gpt_oss") {
    return absl::OkStatus();  // the experts' MXFP4 tensors say so themselves (ResolveGptOss)
  }
  if (method != "fp8") {
    return absl::InvalidArgumentError(absl::StrCat(
        config_path, ": quantization_config.quant_method '", method,
        "' is not supported (supported: fp8 with weight_block_size; mxfp4 for gpt_oss)"));
  }
  if (q.contains("fmt") && q["fmt"] != "e4m3") {
    return absl::InvalidArgumentError(absl::StrCat(config_path, ": quantization_config.fmt ",
                                                   q["fmt"].dump(), " is not supported (e4m3)"));
  }
  const json& b = q.contains("weight_block_size") ? q["weight_block_size"] : json();
  if (!b.is_array() || b.size() != 2 || !b[0].is_number_integer() || !b[1].is_number_integer() ||
      b[0].get<int64_t>() < 1 || b[1].get<int64_t>() < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(config_path,
                     ": quantization_config.weight_block_size must be two positive "
                     "integers [rows, columns], got ",
                     b.dump()));
  }
  l->fp8_block[0] = b[0].get<int64_t>();
  l->fp8_block[1] = b[1].get<int64_t>();
  return absl::OkStatus();
}

std::string SupportedModelTypes() {
  std::vector<std::string> types;
  for (const HfFamily& f : HfFamilies()) types.emplace_back(f.model_type);
  return absl::StrJoin(types, ", ");
}

}  // namespace

absl::StatusOr<int> HfNumLayers(const json& config, const std::string& config_path) {
  if (!config.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(config_path, ": not a JSON object"));
  }
  ConfigReader r(config, config_path);
  for (const char* key : {"num_hidden_layers", "n_layer", "num_layers"}) {
    if (!r.Has(key)) continue;
    MOE_ASSIGN_OR_RETURN(int64_t n, r.PositiveInt(key));
    if (n > 100000) return r.Bad(key, "a layer count below 100000");
    return static_cast<int>(n);
  }
  return r.Missing("num_hidden_layers");
}

absl::StatusOr<HfLayerLayout> ResolveHfLayer(
    const json& config, int layer, const std::string& config_path,
    const std::function<bool(const std::string&)>& has_tensor) {
  if (!config.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(config_path, ": not a JSON object"));
  }
  ConfigReader r(config, config_path);
  if (!r.Has("model_type")) return r.Missing("model_type");
  MOE_ASSIGN_OR_RETURN(std::string type, r.String("model_type", ""));
  HfLayerLayout l;
  MOE_RETURN_IF_ERROR(ReadQuantizationConfig(config, type, config_path, &l));
  const HfFamily* family = FindHfFamily(type);
  if (family == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        config_path, ": model_type '", type, "' is not supported (", SupportedModelTypes(), ")"));
  }
  MOE_RETURN_IF_ERROR(family->resolve(r, layer, type, has_tensor, &l));
  const RouterOptions& o = l.spec.router;
  if (!l.spec.dense && (o.top_k > o.num_experts)) {
    return absl::InvalidArgumentError(absl::StrCat(config_path, ": num_experts_per_tok = ", o.top_k,
                                                   " exceeds the ", o.num_experts, " experts"));
  }
  return l;
}

absl::StatusOr<json> MakeHfConfig(const LayerSpec& s) {
  const HfFamily* family = FindHfFamily(s.family);
  if (family == nullptr || family->write_config == nullptr) {
    return UnsupportedSpec(s, "moe-serve does not write this family");
  }
  json c;
  c["torch_dtype"] = "bfloat16";
  c["model_type"] = s.family;
  MOE_RETURN_IF_ERROR(family->write_config(s, &c));
  return c;
}

}  // namespace moe
