#include "model/checkpoint_writer.h"

#include <algorithm>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "model/fp8_weights.h"
#include "model/hf_layout.h"
#include "model/mxfp4_weights.h"
#include "model/safetensors_file.h"
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

// `t`'s bytes as stored (borrowed from t).
StoredTensor ViewOf(const std::string& name, const Tensor& t) {
  return {name, SafetensorsDType(t.dtype()), t.shape(), t.data(),
          static_cast<size_t>(t.num_bytes())};
}

// The tensors of one file: owned, in write order.
class TensorList {
 public:
  void Add(const std::string& name, const Tensor& t) {
    Item& it = items_.emplace_back();
    it.tensor = t;
    it.view = ViewOf(name, it.tensor);
  }
  void AddBytes(const std::string& name, const std::string& dtype, std::vector<int64_t> shape,
                std::vector<uint8_t> bytes) {
    Item& it = items_.emplace_back();
    it.bytes = std::move(bytes);
    it.view = {name, dtype, std::move(shape), it.bytes.data(), it.bytes.size()};
  }
  std::vector<StoredTensor> Views() const {
    std::vector<StoredTensor> out;
    for (const Item& it : items_) out.push_back(it.view);
    return out;
  }

 private:
  struct Item {
    Tensor tensor;
    std::vector<uint8_t> bytes;
    StoredTensor view;
  };
  std::deque<Item> items_;  // stable addresses for the views
};

// A weight matrix, as the options say: as is, or FP8 with its scales.
absl::Status AddMatrix(const std::string& name, const Tensor& t, bool transposed,
                       const HfWriteOptions& o, TensorList* out) {
  const Tensor stored = transposed ? t.Transposed2D() : t;
  if (o.fp8_block[0] <= 0) {
    out->Add(name, stored);
    return absl::OkStatus();
  }
  MOE_ASSIGN_OR_RETURN(Fp8Encoded enc, EncodeFp8Blocks(stored, o.fp8_block[0], o.fp8_block[1]));
  std::vector<uint8_t> scale_bytes(enc.scale_inv.size() * sizeof(float));
  std::memcpy(scale_bytes.data(), enc.scale_inv.data(), scale_bytes.size());
  out->AddBytes(name, "F8_E4M3", stored.shape(), std::move(enc.codes));
  out->AddBytes(name + "_scale_inv", "F32", enc.scale_shape, std::move(scale_bytes));
  return absl::OkStatus();
}

absl::Status AddFfn(const FfnWeights& w, const FfnTensorNames& n, const HfWriteOptions& o,
                    TensorList* out) {
  for (const auto& [name, t] : {std::pair{n.w1, &w.w1}, {n.w3, &w.w3}, {n.w2, &w.w2}}) {
    if (name.empty() || t->empty()) continue;
    MOE_RETURN_IF_ERROR(AddMatrix(name, *t, n.transposed, o, out));
  }
  for (const auto& [name, t] : {std::pair{n.b1, &w.b1}, {n.b3, &w.b3}, {n.b2, &w.b2}}) {
    if (!name.empty() && !t->empty()) out->Add(name, *t);
  }
  return absl::OkStatus();
}

// gpt-oss's packed experts (HfLayerLayout::packed_experts), in MXFP4:
// gate_up_proj decoded [E, 2 d_ff, d_model] (gate the even rows, up the
// odd ones), down_proj decoded [E, d_model, d_ff]; the biases BF16 beside
// them. Encoded one expert at a time (only its rows in f32 at once).
absl::Status AddPackedExperts(const LayerWeights& w, const std::string& p, TensorList* out) {
  const int64_t e = static_cast<int64_t>(w.experts.size());
  const int64_t d = w.spec.d_model, ff = w.spec.expert.d_ff;
  if (d % 32 != 0 || ff % 32 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("gpt_oss experts are written in MXFP4, in groups of 32: d_model (", d,
                     ") and d_ff (", ff, ") must be multiples of 32"));
  }
  std::vector<uint8_t> gu_blocks, gu_scales, down_blocks, down_scales;
  std::vector<float> gate_up_bias(static_cast<size_t>(e * 2 * ff)), down_bias;
  down_bias.reserve(static_cast<size_t>(e * d));
  // Appends `values` (rows of k) encoded to `blocks` and `scales`.
  auto encode = [](const std::vector<float>& values, int64_t k, const std::string& name,
                   std::vector<uint8_t>* blocks, std::vector<uint8_t>* scales) {
    std::vector<uint8_t> b, s;
    absl::Status st = EncodeMxfp4(values, k, &b, &s);
    if (!st.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "': ", st.message()));
    }
    blocks->insert(blocks->end(), b.begin(), b.end());
    scales->insert(scales->end(), s.begin(), s.end());
    return absl::OkStatus();
  };
  std::vector<float> gate_up(static_cast<size_t>(2 * ff * d));
  for (int64_t x = 0; x < e; ++x) {
    const FfnWeights& f = w.experts[static_cast<size_t>(x)];
    const std::vector<float> w1 = f.w1.ToFloats(), w3 = f.w3.ToFloats();
    const std::vector<float> b1 = f.b1.ToFloats(), b3 = f.b3.ToFloats(), b2 = f.b2.ToFloats();
    for (int64_t r = 0; r < ff; ++r) {
      std::copy(w1.begin() + r * d, w1.begin() + (r + 1) * d, gate_up.begin() + 2 * r * d);
      std::copy(w3.begin() + r * d, w3.begin() + (r + 1) * d, gate_up.begin() + (2 * r + 1) * d);
      gate_up_bias[static_cast<size_t>(x * 2 * ff + 2 * r)] = b1[static_cast<size_t>(r)];
      gate_up_bias[static_cast<size_t>(x * 2 * ff + 2 * r + 1)] = b3[static_cast<size_t>(r)];
    }
    MOE_RETURN_IF_ERROR(encode(gate_up, d, p + "gate_up_proj_blocks", &gu_blocks, &gu_scales));
    MOE_RETURN_IF_ERROR(
        encode(f.w2.ToFloats(), ff, p + "down_proj_blocks", &down_blocks, &down_scales));
    down_bias.insert(down_bias.end(), b2.begin(), b2.end());
  }
  out->AddBytes(p + "gate_up_proj_blocks", "U8", {e, 2 * ff, d / 32, 16}, std::move(gu_blocks));
  out->AddBytes(p + "gate_up_proj_scales", "U8", {e, 2 * ff, d / 32}, std::move(gu_scales));
  out->Add(p + "gate_up_proj_bias", Tensor::FromFloats(DType::kBF16, {e, 2 * ff}, gate_up_bias));
  out->AddBytes(p + "down_proj_blocks", "U8", {e, d, ff / 32, 16}, std::move(down_blocks));
  out->AddBytes(p + "down_proj_scales", "U8", {e, d, ff / 32}, std::move(down_scales));
  out->Add(p + "down_proj_bias", Tensor::FromFloats(DType::kBF16, {e, d}, down_bias));
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteSafetensors(const std::string& path, const std::vector<StoredTensor>& tensors) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  uint64_t offset = 0;
  for (const StoredTensor& t : tensors) {
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    const int size = SafetensorsDTypeSize(t.dtype);
    if (size == 0 || static_cast<uint64_t>(n) * static_cast<uint64_t>(size) != t.bytes) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": tensor '", t.name, "': ", t.bytes,
                                                     " bytes do not hold ", t.dtype, " ",
                                                     ShapeToString(t.shape)));
    }
    header[t.name] = {
        {"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.bytes}}};
    offset += t.bytes;
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
  for (const StoredTensor& t : tensors) {
    out.write(static_cast<const char*>(t.data), static_cast<std::streamsize>(t.bytes));
  }
  out.close();
  if (!out) return absl::DataLossError(absl::StrCat(path, ": write failed"));
  return absl::OkStatus();
}

absl::Status WriteSafetensors(const std::string& path,
                              const std::vector<std::pair<std::string, Tensor>>& tensors) {
  std::vector<StoredTensor> views;
  views.reserve(tensors.size());
  for (const auto& [name, t] : tensors) {
    views.push_back(ViewOf(name, t));
  }
  return WriteSafetensors(path, views);
}

namespace {

// Appends layer `layer`'s tensors of `w` under the names `config` gives.
absl::Status AddLayer(const LayerWeights& w, const nlohmann::json& config, int layer,
                      const std::string& config_path, const HfWriteOptions& options,
                      TensorList* out) {
  MOE_RETURN_IF_ERROR(ValidateLayerWeights(w));
  // Resolve our own config back to names (first-choice prefixes).
  MOE_ASSIGN_OR_RETURN(
      HfLayerLayout layout,
      ResolveHfLayer(config, layer, config_path, [](const std::string&) { return true; }));
  const bool packed = !layout.packed_experts.empty();
  if (layout.spec.dense != w.spec.dense || (!packed && layout.experts.size() != w.experts.size())) {
    return absl::InvalidArgumentError(
        absl::StrCat(config_path, ": layer ", layer, " resolves to ", layout.spec.Summary(),
                     ", not the layer written (", w.spec.Summary(), ")"));
  }
  if (!w.spec.dense) {
    out->Add(layout.gate_weight, w.gate_weight);
    if (w.spec.gate_bias) out->Add(layout.gate_bias, w.gate_bias);
    if (w.spec.correction_bias) out->Add(layout.correction_bias, w.correction_bias);
  }
  if (packed) {
    MOE_RETURN_IF_ERROR(AddPackedExperts(w, layout.packed_experts, out));
  }
  for (size_t i = 0; i < layout.experts.size(); ++i) {
    MOE_RETURN_IF_ERROR(AddFfn(w.experts[i], layout.experts[i], options, out));
  }
  if (w.spec.has_shared()) {
    MOE_RETURN_IF_ERROR(AddFfn(w.shared, layout.shared, options, out));
    if (w.spec.shared_gate) out->Add(layout.shared_gate, w.shared_gate);
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

absl::Status WriteHfLayer(const LayerWeights& w, const std::string& dir,
                          const HfWriteOptions& options) {
  return WriteHfLayers(
      1, 1, [&w](int) -> absl::StatusOr<LayerWeights> { return w; }, dir, options);
}

absl::Status WriteHfLayers(int num_layers, int layers_per_file,
                           const std::function<absl::StatusOr<LayerWeights>(int)>& make,
                           const std::string& dir, const HfWriteOptions& options) {
  if (num_layers < 1 || layers_per_file < 1) {
    return absl::InvalidArgumentError("need at least one layer and one layer per file");
  }
  const bool fp8 = options.fp8_block[0] != 0 || options.fp8_block[1] != 0;
  if (fp8 && (options.fp8_block[0] <= 0 || options.fp8_block[1] <= 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("an FP8 block needs positive rows and columns, got ", options.fp8_block[0],
                     " x ", options.fp8_block[1]));
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
    TensorList tensors;
    for (int l = f * layers_per_file; l < std::min(num_layers, (f + 1) * layers_per_file); ++l) {
      MOE_ASSIGN_OR_RETURN(LayerWeights w, make(l));
      if (l == 0) {
        first = w.spec;
        MOE_ASSIGN_OR_RETURN(config, MakeHfConfig(w.spec));
        if (fp8) {
          if (w.spec.family == "gpt_oss" || w.spec.family == "gpt2") {
            return absl::InvalidArgumentError(
                absl::StrCat("FP8 block-scaled weights are not written for family ", w.spec.family,
                             w.spec.family == "gpt_oss" ? " (its experts are MXFP4)"
                                                        : " (its matrices are stored [in, out])"));
          }
          config["quantization_config"] = {
              {"quant_method", "fp8"},
              {"fmt", "e4m3"},
              {"activation_scheme", "dynamic"},
              {"weight_block_size", {options.fp8_block[0], options.fp8_block[1]}}};
        }
        // Every layer has layer 0's spec: a family that interleaves sparse
        // layers (switch_transformers) makes them all sparse.
        for (const char* key :
             {"num_hidden_layers", "n_layer", "num_layers", "num_sparse_encoder_layers"}) {
          if (config.contains(key)) config[key] = num_layers;
        }
      } else if (w.spec.Summary() != first.Summary() || w.spec.family != first.family) {
        return absl::InvalidArgumentError(absl::StrCat("layer ", l, " (", w.spec.Summary(),
                                                       ") differs from layer 0 (", first.Summary(),
                                                       "): one config.json describes them all"));
      }
      MOE_RETURN_IF_ERROR(AddLayer(w, config, l, config_path, options, &tensors));
    }
    const std::string file = files == 1
                                 ? std::string("model.safetensors")
                                 : absl::StrFormat("model-%05d-of-%05d.safetensors", f + 1, files);
    const std::vector<StoredTensor> views = tensors.Views();
    for (const StoredTensor& t : views) weight_map[t.name] = file;
    MOE_RETURN_IF_ERROR(WriteSafetensors((root / file).string(), views));
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
