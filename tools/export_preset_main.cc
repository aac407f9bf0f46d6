// moe_export_preset: writes a preset (or a reduced copy of it) as a Hugging
// Face model folder — config.json + model.safetensors with the family's real
// tensor names — for tests and for users who want a file to start from.
//
//   moe_export_preset --preset=qwen2-moe-a2.7b --out=/tmp/qwen
//   moe_export_preset --preset=demo --layers=16 --out=/tmp/demo16   # 16 layers, sharded
//   moe_export_preset --preset=qwen3-30b-a3b --fp8_block=128,128 --out=/tmp/q3fp8
//                                            # experts as FP8 with 128x128 block scales
//   moe_export_preset --list
//   moe_export_preset --list --list_format=json   # for scripts (deploy/check_manifests.py)
//
// gpt-oss-20b's experts are written in MXFP4, as gpt-oss ships them.
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/command_line.h"
#include "model/checkpoint_writer.h"
#include "model/presets.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::string, preset, "demo", "Preset to write (see --list).");
ABSL_FLAG(std::string, out, "", "Folder to write config.json and model.safetensors into.");
ABSL_FLAG(uint64_t, seed, moe::kDefaultPresetSeed, "Weight seed (the server's default too).");
ABSL_FLAG(bool, list, false, "List the presets and exit.");
ABSL_FLAG(std::string, list_format, "text",
          "--list's format: text, or json (one object per preset: name, family, d_model, "
          "experts (0: a dense FFN), top_k, d_ff, description).");
ABSL_FLAG(int, layers, 1,
          "Layers to write, each the preset's shape with its own weights (layer L: seed + L).");
ABSL_FLAG(int, layers_per_file, 4, "Layers per safetensors shard when --layers > 1.");
ABSL_FLAG(std::string, fp8_block, "",
          "ROWS,COLS: write the FFN weight matrices as F8_E4M3 with an F32 weight_scale_inv per "
          "ROWS x COLS block (DeepSeek-V3 and Qwen3 -FP8 use 128,128); empty: as generated "
          "(bf16).");

namespace {

// The presets as a JSON array of objects, one per preset.
absl::StatusOr<nlohmann::json> PresetsJson() {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& p : moe::Presets()) {
    auto spec = moe::PresetSpec(p.name);
    if (!spec.ok()) return spec.status();
    list.push_back({{"name", p.name},
                    {"family", spec->family},
                    {"d_model", spec->d_model},
                    {"experts", spec->dense ? 0 : spec->num_experts()},
                    {"top_k", spec->dense ? 0 : spec->top_k()},
                    {"d_ff", spec->expert.d_ff},
                    {"description", p.description}});
  }
  return list;
}

// Prints the presets as text or JSON; 2 for an unknown format.
int ListPresets(const std::string& format) {
  if (format == "text") {
    for (const auto& p : moe::Presets()) {
      std::printf("%-18s %s\n", p.name.c_str(), p.description.c_str());
    }
    return 0;
  }
  if (format != "json") {
    std::fprintf(stderr, "moe_export_preset: --list_format must be text or json, got '%s'\n",
                 format.c_str());
    return 2;
  }
  try {
    absl::StatusOr<nlohmann::json> list = PresetsJson();
    if (!list.ok()) {
      std::fprintf(stderr, "moe_export_preset: %s\n", list.status().ToString().c_str());
      return 1;
    }
    std::printf("%s\n", list->dump(2).c_str());
  } catch (const std::exception& e) {  // nlohmann::json reports errors by throwing
    std::fprintf(stderr, "moe_export_preset: %s\n", e.what());
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  moe::ParseCommandLineOrExit(argc, argv,
                              "Writes a synthetic preset layer as a Hugging Face model folder.\n"
                              "  moe_export_preset --preset=demo --out=DIR");
  if (absl::GetFlag(FLAGS_list)) return ListPresets(absl::GetFlag(FLAGS_list_format));
  const std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) {
    std::fprintf(stderr, "moe_export_preset: --out is required\n");
    return 2;
  }
  const std::string preset = absl::GetFlag(FLAGS_preset);
  const uint64_t seed = absl::GetFlag(FLAGS_seed);
  auto weights = moe::MakePreset(preset, seed);
  if (!weights.ok()) {
    std::fprintf(stderr, "moe_export_preset: %s\n", weights.status().ToString().c_str());
    return 2;
  }
  const int layers = absl::GetFlag(FLAGS_layers);
  if (layers < 1 || absl::GetFlag(FLAGS_layers_per_file) < 1) {
    std::fprintf(stderr, "moe_export_preset: --layers and --layers_per_file must be >= 1\n");
    return 2;
  }
  moe::HfWriteOptions options;
  if (const std::string block = absl::GetFlag(FLAGS_fp8_block); !block.empty()) {
    const std::vector<std::string> parts = absl::StrSplit(block, ',');
    if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &options.fp8_block[0]) ||
        !absl::SimpleAtoi(parts[1], &options.fp8_block[1]) || options.fp8_block[0] < 1 ||
        options.fp8_block[1] < 1) {
      std::fprintf(stderr,
                   "moe_export_preset: --fp8_block must be ROWS,COLS (e.g. 128,128), "
                   "got '%s'\n",
                   block.c_str());
      return 2;
    }
  }
  absl::Status st =
      layers == 1
          ? moe::WriteHfLayer(*weights, out, options)
          : moe::WriteHfLayers(
                layers, absl::GetFlag(FLAGS_layers_per_file),
                [&](int l) { return moe::MakePreset(preset, seed + static_cast<uint64_t>(l)); },
                out, options);
  if (!st.ok()) {
    std::fprintf(stderr, "moe_export_preset: %s\n", st.ToString().c_str());
    return 1;
  }
  std::printf("wrote %s (%s) x %d layers to %s\n", preset.c_str(), weights->spec.Summary().c_str(),
              layers, out.c_str());
  return 0;
}
