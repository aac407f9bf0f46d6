// moe_export_preset: writes a preset (or a reduced copy of it) as a Hugging
// Face model folder — config.json + model.safetensors with the family's real
// tensor names — for tests and for users who want a file to start from.
//
//   moe_export_preset --preset=qwen2-moe-a2.7b --out=/tmp/qwen
//   moe_export_preset --preset=demo --layers=16 --out=/tmp/demo16   # 16 layers, sharded
//   moe_export_preset --list
#include <cstdio>
#include <string>

#include "common/command_line.h"
#include "absl/flags/flag.h"
#include "model/checkpoint_writer.h"
#include "model/presets.h"

ABSL_FLAG(std::string, preset, "demo", "Preset to write (see --list).");
ABSL_FLAG(std::string, out, "", "Folder to write config.json and model.safetensors into.");
ABSL_FLAG(uint64_t, seed, moe::kDefaultPresetSeed, "Weight seed (the server's default too).");
ABSL_FLAG(bool, list, false, "List the presets and exit.");
ABSL_FLAG(int, layers, 1,
          "Layers to write, each the preset's shape with its own weights (layer L: seed + L).");
ABSL_FLAG(int, layers_per_file, 4, "Layers per safetensors shard when --layers > 1.");

int main(int argc, char** argv) {
  moe::ParseCommandLineOrExit(argc, argv,
                              "Writes a synthetic preset layer as a Hugging Face model folder.\n"
                              "  moe_export_preset --preset=demo --out=DIR");
  if (absl::GetFlag(FLAGS_list)) {
    for (const auto& p : moe::Presets()) {
      std::printf("%-18s %s\n", p.name.c_str(), p.description.c_str());
    }
    return 0;
  }
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
  absl::Status st =
      layers == 1 ? moe::WriteHfLayer(*weights, out)
                  : moe::WriteHfLayers(
                        layers, absl::GetFlag(FLAGS_layers_per_file),
                        [&](int l) { return moe::MakePreset(preset, seed + static_cast<uint64_t>(l)); },
                        out);
  if (!st.ok()) {
    std::fprintf(stderr, "moe_export_preset: %s\n", st.ToString().c_str());
    return 1;
  }
  std::printf("wrote %s (%s) x %d layers to %s\n", preset.c_str(),
              weights->spec.Summary().c_str(), layers, out.c_str());
  return 0;
}
