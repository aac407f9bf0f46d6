#include "model/checkpoint_writer.h"

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
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

absl::Status WriteHfLayer(const LayerWeights& w, const std::string& dir) {
  MOE_RETURN_IF_ERROR(ValidateLayerWeights(w));
  MOE_ASSIGN_OR_RETURN(nlohmann::json config, MakeHfConfig(w.spec));
  const std::string config_path = (std::filesystem::path(dir) / "config.json").string();
  // Resolve our own config back to names (first-choice prefixes).
  MOE_ASSIGN_OR_RETURN(HfLayerLayout layout,
                       ResolveHfLayer(config, 0, config_path,
                                      [](const std::string&) { return true; }));
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat(dir, ": ", ec.message()));
  std::vector<std::pair<std::string, Tensor>> tensors;
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
  std::ofstream out(config_path);
  out << config.dump(1) << "\n";
  out.close();
  if (!out) return absl::DataLossError(absl::StrCat(config_path, ": write failed"));
  return WriteSafetensors((std::filesystem::path(dir) / "model.safetensors").string(), tensors);
}

}  // namespace moe
