#include "model/checkpoint_loader.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/checkpoint.h"
#include "model/fp8_weights.h"
#include "model/hf_layout.h"
#include "model/mxfp4_weights.h"

namespace moe {
namespace {

// Fetches `name`, checks it has `shape` (or its transpose when stored
// [in, out]) and returns it in [out, in] order. With `fp8_block` set, an
// F8_E4M3 weight is decoded with its "<name>_scale_inv" (fp8_weights.h).
absl::StatusOr<Tensor> Fetch(const Checkpoint& ckpt, const std::string& name,
                             const std::vector<int64_t>& shape, bool transposed,
                             const int64_t* fp8_block = nullptr) {
  Tensor t;
  MOE_ASSIGN_OR_RETURN(SafetensorsFile::Raw raw, ckpt.GetRaw(name));
  if (raw.entry->dtype == "F8_E4M3") {
    if (fp8_block == nullptr || fp8_block[0] == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(ckpt.FileOf(name), ": tensor '", name,
                       "': F8_E4M3, but config.json has no "
                       "quantization_config with quant_method fp8 and weight_block_size"));
    }
    const std::string scale_name = name + "_scale_inv";
    if (!ckpt.Has(scale_name)) {
      return absl::InvalidArgumentError(absl::StrCat(ckpt.FileOf(name), ": tensor '", name,
                                                     "': F8_E4M3 with no '", scale_name,
                                                     "' beside it (its per-block scales)"));
    }
    MOE_ASSIGN_OR_RETURN(SafetensorsFile::Raw scale, ckpt.GetRaw(scale_name));
    MOE_ASSIGN_OR_RETURN(t, DecodeFp8Blocks(raw, scale, fp8_block[0], fp8_block[1],
                                            ckpt.FileOf(name), name, scale_name));
  } else {
    MOE_ASSIGN_OR_RETURN(t, ckpt.Get(name));
  }
  std::vector<int64_t> stored = shape;
  if (transposed && shape.size() == 2) std::swap(stored[0], stored[1]);
  if (t.shape() != stored) {
    return absl::InvalidArgumentError(
        absl::StrCat(ckpt.FileOf(name), ": tensor '", name, "': shape ", t.ShapeString(),
                     " does not match config.json (expected ", ShapeToString(stored), ")"));
  }
  if (!transposed || shape.size() != 2) return t;
  return t.Transposed2D();  // stored [in, out] -> [out, in]
}

absl::StatusOr<FfnWeights> FetchFfn(const Checkpoint& ckpt, const FfnSpec& s,
                                    const FfnTensorNames& n, const int64_t* fp8_block) {
  FfnWeights w;
  MOE_ASSIGN_OR_RETURN(w.w1, Fetch(ckpt, n.w1, {s.d_ff, s.d_model}, n.transposed, fp8_block));
  if (s.gated) {
    MOE_ASSIGN_OR_RETURN(w.w3, Fetch(ckpt, n.w3, {s.d_ff, s.d_model}, n.transposed, fp8_block));
  }
  MOE_ASSIGN_OR_RETURN(w.w2, Fetch(ckpt, n.w2, {s.d_model, s.d_ff}, n.transposed, fp8_block));
  if (s.has_bias) {
    MOE_ASSIGN_OR_RETURN(w.b1, Fetch(ckpt, n.b1, {s.d_ff}, false));
    if (s.gated) {
      MOE_ASSIGN_OR_RETURN(w.b3, Fetch(ckpt, n.b3, {s.d_ff}, false));
    }
    MOE_ASSIGN_OR_RETURN(w.b2, Fetch(ckpt, n.b2, {s.d_model}, false));
  }
  return w;
}

// A [E, rows, cols] float array from gpt-oss's packed expert tensors:
// `<stem>_blocks` + `<stem>_scales` (MXFP4, decoded as stored) or `<stem>`
// (stored [E, cols, rows]: transposed here).
absl::StatusOr<std::vector<float>> FetchPackedMatrices(const Checkpoint& ckpt,
                                                       const std::string& stem, int64_t e,
                                                       int64_t rows, int64_t cols) {
  const std::vector<int64_t> want = {e, rows, cols};
  if (ckpt.Has(stem + "_blocks")) {
    if (!ckpt.Has(stem + "_scales")) {
      return absl::InvalidArgumentError(absl::StrCat(ckpt.FileOf(stem + "_blocks"), ": tensor '",
                                                     stem, "_blocks': MXFP4 blocks with no '", stem,
                                                     "_scales' beside them (their group scales)"));
    }
    MOE_ASSIGN_OR_RETURN(SafetensorsFile::Raw blocks, ckpt.GetRaw(stem + "_blocks"));
    MOE_ASSIGN_OR_RETURN(SafetensorsFile::Raw scales, ckpt.GetRaw(stem + "_scales"));
    MOE_ASSIGN_OR_RETURN(Mxfp4Decoded d, DecodeMxfp4(blocks, scales, ckpt.FileOf(stem + "_blocks"),
                                                     stem + "_blocks", stem + "_scales"));
    if (d.shape != want) {
      return absl::InvalidArgumentError(
          absl::StrCat(ckpt.FileOf(stem + "_blocks"), ": tensor '", stem, "_blocks': decodes to ",
                       ShapeToString(d.shape), ", config.json says ", ShapeToString(want)));
    }
    return std::move(d.values);
  }
  MOE_ASSIGN_OR_RETURN(Tensor t, Fetch(ckpt, stem, {e, cols, rows}, false));
  const std::vector<float> stored = t.ToFloats();
  std::vector<float> out(stored.size());
  for (int64_t x = 0; x < e; ++x) {
    for (int64_t c = 0; c < cols; ++c) {
      for (int64_t r = 0; r < rows; ++r) {
        out[static_cast<size_t>((x * rows + r) * cols + c)] =
            stored[static_cast<size_t>((x * cols + c) * rows + r)];
      }
    }
  }
  return out;
}

// gpt-oss's experts (HfLayerLayout::packed_experts), one FfnWeights each:
// W1 the even rows of the decoded gate_up, W3 the odd ones, their biases
// likewise. The values are kept in bf16: MXFP4 values are exact in it, and
// the BF16 checkpoints are bf16 already.
absl::StatusOr<std::vector<FfnWeights>> FetchPackedExperts(const Checkpoint& ckpt,
                                                           const LayerSpec& s,
                                                           const std::string& p) {
  const int64_t e = s.router.num_experts, d = s.d_model, ff = s.expert.d_ff;
  MOE_ASSIGN_OR_RETURN(std::vector<float> gate_up,
                       FetchPackedMatrices(ckpt, p + "gate_up_proj", e, 2 * ff, d));
  MOE_ASSIGN_OR_RETURN(std::vector<float> down,
                       FetchPackedMatrices(ckpt, p + "down_proj", e, d, ff));
  MOE_ASSIGN_OR_RETURN(Tensor gu_bias, Fetch(ckpt, p + "gate_up_proj_bias", {e, 2 * ff}, false));
  MOE_ASSIGN_OR_RETURN(Tensor down_bias, Fetch(ckpt, p + "down_proj_bias", {e, d}, false));
  const std::vector<float> gub = gu_bias.ToFloats(), db = down_bias.ToFloats();
  std::vector<FfnWeights> experts;
  for (int64_t x = 0; x < e; ++x) {
    std::vector<float> w1(static_cast<size_t>(ff * d)), w3(w1.size());
    std::vector<float> b1(static_cast<size_t>(ff)), b3(b1.size());
    for (int64_t f = 0; f < ff; ++f) {
      const float* gate = gate_up.data() + (x * 2 * ff + 2 * f) * d;
      std::copy(gate, gate + d, w1.begin() + f * d);
      std::copy(gate + d, gate + 2 * d, w3.begin() + f * d);
      b1[static_cast<size_t>(f)] = gub[static_cast<size_t>(x * 2 * ff + 2 * f)];
      b3[static_cast<size_t>(f)] = gub[static_cast<size_t>(x * 2 * ff + 2 * f + 1)];
    }
    FfnWeights w;
    w.w1 = Tensor::FromFloats(DType::kBF16, {ff, d}, w1);
    w.w3 = Tensor::FromFloats(DType::kBF16, {ff, d}, w3);
    w.w2 = Tensor::FromFloats(
        DType::kBF16, {d, ff},
        std::vector<float>(down.begin() + x * d * ff, down.begin() + (x + 1) * d * ff));
    w.b1 = Tensor::FromFloats(DType::kBF16, {ff}, b1);
    w.b3 = Tensor::FromFloats(DType::kBF16, {ff}, b3);
    w.b2 = Tensor::FromFloats(DType::kBF16, {d},
                              std::vector<float>(db.begin() + x * d, db.begin() + (x + 1) * d));
    experts.push_back(std::move(w));
  }
  return experts;
}

}  // namespace

namespace {

absl::StatusOr<nlohmann::json> ReadConfig(const std::string& config_path) {
  std::ifstream in(config_path);
  if (!in) return absl::NotFoundError(absl::StrCat(config_path, ": cannot open"));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(config_path, ": invalid JSON: ", e.what()));
  }
}

std::string ConfigPath(const std::string& dir) {
  return (std::filesystem::path(dir) / "config.json").string();
}

}  // namespace

absl::StatusOr<int> HfLayerCount(const std::string& dir) {
  const std::string config_path = ConfigPath(dir);
  MOE_ASSIGN_OR_RETURN(nlohmann::json config, ReadConfig(config_path));
  return HfNumLayers(config, config_path);
}

absl::StatusOr<LayerWeights> LoadHfLayer(const std::string& dir, int layer) {
  const std::string config_path = ConfigPath(dir);
  MOE_ASSIGN_OR_RETURN(nlohmann::json config, ReadConfig(config_path));
  MOE_ASSIGN_OR_RETURN(std::unique_ptr<Checkpoint> ckpt, Checkpoint::Open(dir));
  MOE_ASSIGN_OR_RETURN(HfLayerLayout layout,
                       ResolveHfLayer(config, layer, config_path,
                                      [&](const std::string& name) { return ckpt->Has(name); }));
  LayerWeights w;
  w.spec = layout.spec;
  const LayerSpec& s = w.spec;
  const int64_t e = s.router.num_experts;
  if (!s.dense) {
    MOE_ASSIGN_OR_RETURN(w.gate_weight, Fetch(*ckpt, layout.gate_weight, {e, s.d_model}, false));
    if (s.gate_bias) {
      MOE_ASSIGN_OR_RETURN(w.gate_bias, Fetch(*ckpt, layout.gate_bias, {e}, false));
    }
    if (s.correction_bias) {
      MOE_ASSIGN_OR_RETURN(w.correction_bias, Fetch(*ckpt, layout.correction_bias, {e}, false));
    }
  }
  if (!layout.packed_experts.empty()) {
    MOE_ASSIGN_OR_RETURN(w.experts, FetchPackedExperts(*ckpt, s, layout.packed_experts));
  }
  for (const FfnTensorNames& names : layout.experts) {
    MOE_ASSIGN_OR_RETURN(FfnWeights fw, FetchFfn(*ckpt, s.expert, names, layout.fp8_block));
    w.experts.push_back(std::move(fw));
  }
  if (s.has_shared()) {
    MOE_ASSIGN_OR_RETURN(w.shared, FetchFfn(*ckpt, s.shared, layout.shared, layout.fp8_block));
    if (s.shared_gate) {
      MOE_ASSIGN_OR_RETURN(w.shared_gate, Fetch(*ckpt, layout.shared_gate, {1, s.d_model}, false));
    }
  }
  MOE_RETURN_IF_ERROR(ValidateLayerWeights(w));
  return w;
}

}  // namespace moe
