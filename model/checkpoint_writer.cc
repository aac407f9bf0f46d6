#include "model/checkpoint_writer.h"

#include <filesystem>
#include <algorithm>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "model/hf_layout.h"
#include "nlohmann/json.hpp"

namespace moe {
namespace {

const char* SafetensorsDType(DType t) {
  switch (t) {
    case DType::kF32:
      return "F32";
    case DType::kBF16:
      return "BF16";
    case DType::kF16:
      return "F16";
    case DType::kI8:
      return "I8";
    case DType::kI4:
      return "?";
  }
  return "?";
}

void AddFfn(const FfnWeights& w, const FfnTensorNames& n,
            std::vector<std::pair<std::string, Tensor>>* out) {
  auto add = [&](const std::string& name, const Tensor& t, bool matrix) {
    if (name.empty() || t.empty()) return;
    out->emplace_back(name, matrix && n.transposed ? t.Transposed2D() : t);
  };
  add(n.w1, w.w1, true);
  add(n.w3, w.w3, true);
  add(n.w2, w.w2, true);
  add(n.b1, w.b1, false);
  add(n.b3, w.b3, false);
  add(n.b2, w.b2, false);
}

}  // namespace

absl::Status WriteSafetensors(const std::string& path,
                              const std::vector<std::pair<std::string, Tensor>>& tensors) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    const uint64_t bytes = static_cast<uint64_t>(t.num_bytes());
    header[name] = {{"dtype", SafetensorsDType(t.dtype())},
                    {"shape", t.shape()},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  header["__metadata__"] = {{"format", "pt"}};
  std::string text = header.dump();
  while (text.size() % 8 != 0) text.push_back(' ');
  std::ofstream out(path, std::ios::binary);
  if (!out) return absl::PermissionDeniedError(absl::StrCat(path, ": cannot write"));
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(text.size() >> (8 * i));
  out.write(reinterpret_cast<const char*>(len), 8);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  for (const auto& [name, t] : tensors) {
    out.write(static_cast<const char*>(t.data()), static_cast<std::streamsize>(t.num_bytes()));
  }
  out.close();
  if (!out) return absl::DataLossError(absl::StrCat(path, ": write failed"));
  return absl::OkStatus();
}

namespace {

// Appends layer `layer`'s tensors of `w` under the names `config` gives.
absl::Status AddLayer(const LayerWeights& w, const nlohmann::json& config, int layer,
                      const std::string& config_path,
                      std::vector<std::pair<std::string, Tensor>>* out) {
  MOE_RETURN_IF_ERROR(ValidateLayerWeights(w));
  // Resolve our own config back to names (first-choice prefixes).
  MOE_ASSIGN_OR_RETURN(HfLayerLayout layout,
                       ResolveHfLayer(config, layer, config_path,
                                      [](const std::string&) { return true; }));
  if (layout.spec.dense != w.spec.dense || layout.experts.size() != w.experts.size() ||
      !layout.packed_experts.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        config_path, ": layer ", layer, " resolves to ", layout.spec.Summary(),
        ", not the layer written (", w.spec.Summary(), ")"));
  }
  std::vector<std::pair<std::string, Tensor>>& tensors = *out;
  if (!w.spec.dense) {
    tensors.emplace_back(layout.gate_weight, w.gate_weight);
    if (w.spec.gate_bias) tensors.emplace_back(layout.gate_bias, w.gate_bias);
    if (w.spec.correction_bias) tensors.emplace_back(layout.correction_bias, w.correction_bias);
  }
  for (size_t i = 0; i < w.experts.size(); ++i) AddFfn(w.experts[i], layout.experts[i], &tensors);
  if (w.spec.has_shared()) {
    AddFfn(w.shared, layout.shared, &tensors);
    if (w.spec.shared_gate) tensors.emplace_back(layout.shared_gate, w.shared_gate);
  }
  return absl::OkStatus();
}

absl::Status WriteText(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  out.close();
  if (!out) return absl::DataLossError(absl::StrCat(path, ": write failed"));
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteHfLayer(const LayerWeights& w, const std::string& dir) {
  return WriteHfLayers(1, 1, [&w](int) -> absl::StatusOr<LayerWeights> { return w; }, dir);
}

absl::Status WriteHfLayers(int num_layers, int layers_per_file,
                           const std::function<absl::StatusOr<LayerWeights>(int)>& make,
                           const std::string& dir) {
  if (num_layers < 1 || layers_per_file < 1) {
    return absl::InvalidArgumentError("need at least one layer and one layer per file");
  }
  const std::filesystem::path root(dir);
  const std::string config_path = (root / "config.json").string();
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat(dir, ": ", ec.message()));
  const int files = (num_layers + layers_per_file - 1) / layers_per_file;
  nlohmann::json config;
  LayerSpec first;
  nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
  for (int f = 0; f < files; ++f) {
    std::vector<std::pair<std::string, Tensor>> tensors;
    for (int l = f * layers_per_file; l < std::min(num_layers, (f + 1) * layers_per_file); ++l) {
      MOE_ASSIGN_OR_RETURN(LayerWeights w, make(l));
      if (l == 0) {
        first = w.spec;
        MOE_ASSIGN_OR_RETURN(config, MakeHfConfig(w.spec));
        // Every layer has layer 0's spec: a family that interleaves sparse
        // layers (switch_transformers) makes them all sparse.
        for (const char* key :
             {"num_hidden_layers", "n_layer", "num_layers", "num_sparse_encoder_layers"}) {
          if (config.contains(key)) config[key] = num_layers;
        }
      } else if (w.spec.Summary() != first.Summary() || w.spec.family != first.family) {
        return absl::InvalidArgumentError(
            absl::StrCat("layer ", l, " (", w.spec.Summary(), ") differs from layer 0 (",
                         first.Summary(), "): one config.json describes them all"));
      }
      MOE_RETURN_IF_ERROR(AddLayer(w, config, l, config_path, &tensors));
    }
    const std::string file =
        files == 1 ? std::string("model.safetensors")
                   : absl::StrFormat("model-%05d-of-%05d.safetensors", f + 1, files);
    for (const auto& [name, t] : tensors) weight_map[name] = file;
    MOE_RETURN_IF_ERROR(WriteSafetensors((root / file).string(), tensors));
  }
  if (files > 1) {
    nlohmann::ordered_json index = {{"metadata", nlohmann::ordered_json::object()},
                                    {"weight_map", weight_map}};
    MOE_RETURN_IF_ERROR(
        WriteText((root / "model.safetensors.index.json").string(), index.dump(1) + "\n"));
  }
  return WriteText(config_path, config.dump(1) + "\n");
}

}  // namespace moe
