// Writes the seed corpora of the fuzz targets (checked in under
// fuzz/corpus/; rerun after a format change):
//   build/fuzz/make_seed_corpus fuzz/corpus
// checkpoint/: every preset at a tiny size as a one-layer folder archive
//   (gpt-oss's experts in MXFP4), two in FP8 with block scales, plus a
//   sharded variant with an index; safetensors/: their
//   model.safetensors files; request_decoder/: ModelInfer requests of every
//   accepted form (FP32/BF16 raw, typed contents, routing outputs, params).
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "client/kserve_client.h"
#include "fuzz/checkpoint_archive.h"
#include "model/checkpoint_writer.h"
#include "model/presets.h"

namespace fs = std::filesystem;

namespace {

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void WriteFile(const fs::path& p, const std::string& bytes) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << bytes;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_seed_corpus OUT_DIR\n");
    return 2;
  }
  const fs::path out = argv[1];
  const fs::path tmp = fs::temp_directory_path() / "moe-seed-corpus";
  int written = 0;
  for (const auto& preset : moe::Presets()) {
    moe::LayerSpec spec = *moe::PresetSpec(preset.name);
    // gpt-oss is written in MXFP4: rows in groups of 32.
    const bool mxfp4 = spec.family == "gpt_oss";
    spec.d_model = spec.expert.d_model = mxfp4 ? 32 : 8;
    spec.expert.d_ff = mxfp4 ? 32 : 4;
    if (mxfp4) {
      spec.router.num_experts = 4;
      spec.router.top_k = 2;
    }
    if (spec.has_shared()) {
      spec.shared.d_model = 8;
      spec.shared.d_ff = spec.family == "deepseek_v3" ? 8 : 12;
    }
    if (spec.router.num_experts > 16) {  // keep seeds small; same layout
      spec.router.num_experts = 16;
      if (spec.router.n_group > 1) spec.router.n_group = 4;
      if (spec.router.topk_group > 2) spec.router.topk_group = 2;
    }
    const moe::LayerWeights w = moe::MakeSyntheticWeights(spec, 5);
    fs::remove_all(tmp);
    if (auto s = moe::WriteHfLayer(w, tmp.string()); !s.ok()) {
      std::fprintf(stderr, "%s: %s\n", preset.name.c_str(), s.ToString().c_str());
      return 1;
    }
    const std::string config = ReadFile(tmp / "config.json");
    const std::string tensors = ReadFile(tmp / "model.safetensors");
    WriteFile(out / "safetensors" / preset.name, tensors);
    WriteFile(out / "checkpoint" / preset.name, moe::fuzz::JoinArchive({config, "", tensors}));
    written += 2;
    if (preset.name == "deepseek-v3-small" || preset.name == "qwen3-30b-a3b") {
      // The FP8 releases' layout: F8_E4M3 weights with F32 block scales.
      moe::HfWriteOptions fp8;
      fp8.fp8_block[0] = 4;
      fp8.fp8_block[1] = 4;
      fs::remove_all(tmp);
      if (auto s = moe::WriteHfLayer(w, tmp.string(), fp8); !s.ok()) {
        std::fprintf(stderr, "%s fp8: %s\n", preset.name.c_str(), s.ToString().c_str());
        return 1;
      }
      const std::string name = preset.name + "-fp8";
      const std::string fp8_tensors = ReadFile(tmp / "model.safetensors");
      WriteFile(out / "safetensors" / name, fp8_tensors);
      WriteFile(out / "checkpoint" / name,
                moe::fuzz::JoinArchive({ReadFile(tmp / "config.json"), "", fp8_tensors}));
      written += 2;
    }
    if (preset.name == "mixtral-8x7b") {
      // The same layer through an index that maps every tensor to a shard.
      std::string index = "{\"metadata\": {}, \"weight_map\": {";
      bool first = true;
      // Names come from the written file's header, so they stay in sync.
      const uint64_t n = *reinterpret_cast<const uint64_t*>(tensors.data());
      const std::string header = tensors.substr(8, n);
      size_t at = 0;
      while ((at = header.find("\"model.", at)) != std::string::npos) {
        const size_t end = header.find('"', at + 1);
        index += std::string(first ? "" : ", ") + header.substr(at, end - at + 1) +
                 ": \"model-00001-of-00002.safetensors\"";
        first = false;
        at = end + 1;
      }
      index += "}}";
      WriteFile(out / "checkpoint" / "mixtral-sharded",
                moe::fuzz::JoinArchive({config, index, "", tensors}));
      ++written;
    }
  }
  // Requests: d_model 8 (the fuzzer's model), 1..3 tokens.
  std::vector<float> tokens(24);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = 0.25f * static_cast<float>(i) - 2.5f;
  const auto one = std::vector<float>(tokens.begin(), tokens.begin() + 8);
  struct Seed {
    std::string name;
    inference::ModelInferRequest request;
  };
  std::vector<Seed> seeds;
  seeds.push_back({"fp32_raw", moe::BuildInferRequest("moe", tokens, 8, false, "a", false)});
  seeds.push_back({"bf16_raw", moe::BuildInferRequest("moe", tokens, 8, true, "b", false)});
  seeds.push_back({"fp32_routing", moe::BuildInferRequest("moe", one, 8, false, "c", true)});
  {
    inference::ModelInferRequest r = moe::BuildInferRequest("moe", one, 8, false, "d", false);
    // Typed contents instead of raw bytes.
    r.clear_raw_input_contents();
    for (float v : one) r.mutable_inputs(0)->mutable_contents()->add_fp32_contents(v);
    seeds.push_back({"fp32_typed", r});
  }
  {
    inference::ModelInferRequest r = moe::BuildInferRequest("moe", tokens, 8, false, "e", true);
    r.set_model_version("1");
    (*r.mutable_parameters())["priority"].set_int64_param(1);
    (*r.mutable_inputs(0)->mutable_parameters())["binary_data_size"].set_int64_param(96);
    r.add_outputs()->set_name("output");
    seeds.push_back({"params_outputs", r});
  }
  for (const auto& s : seeds) {
    WriteFile(out / "request_decoder" / s.name, s.request.SerializeAsString());
    ++written;
  }
  fs::remove_all(tmp);
  std::printf("wrote %d seeds under %s\n", written, out.c_str());
  return 0;
}
