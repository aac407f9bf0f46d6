// Every preset, written as a Hugging Face folder by the preset writer and
// loaded back, gives a layer whose outputs equal the preset's bitwise;
// gpt-oss-20b, whose packed MXFP4 layout the writer cannot produce, is
// refused with a message that says so.
#include <algorithm>
#include <cstring>

#include "gtest/gtest.h"
#include "model/checkpoint_loader.h"
#include "model/checkpoint_writer.h"
#include "model/moe_layer.h"
#include "model/presets.h"
#include "nlohmann/json.hpp"
#include "tests/naive_reference.h"
#include "tests/status_matchers.h"
#include "tests/test_files.h"

namespace moe {
namespace {

using ::moe::testing::RandomTokens;
using ::moe::testing::TempDir;

class RoundTripTest : public ::testing::TestWithParam<std::string> {};

TEST_P(RoundTripTest, WrittenFolderLoadsBackToTheSameLayer) {
  // Reduced sizes keep the files small; the demo preset also runs at full
  // size below.
  LayerSpec spec = *PresetSpec(GetParam());
  spec.d_model = spec.expert.d_model = 32;
  spec.expert.d_ff = 48;
  if (spec.has_shared()) {
    spec.shared.d_model = 32;
    spec.shared.d_ff = spec.family == "deepseek_v3" ? 96 : 80;  // n_shared * d_ff for DeepSeek
  }
  LayerWeights original = MakeSyntheticWeights(spec, 17);
  TempDir dir;
  ASSERT_OK(WriteHfLayer(original, dir.path()));
  ASSERT_OK_AND_ASSIGN(LayerWeights loaded, LoadHfLayer(dir.path(), 0));
  EXPECT_EQ(loaded.spec.Summary(), original.spec.Summary());
  EXPECT_EQ(loaded.spec.router.capacity_factor, original.spec.router.capacity_factor);
  EXPECT_EQ(loaded.spec.router.renorm_epsilon, original.spec.router.renorm_epsilon);

  for (DType compute : {DType::kF32, DType::kBF16}) {
    MoeLayerOptions options;
    options.compute = compute;
    ASSERT_OK_AND_ASSIGN(auto a, MoeLayer::Create(original, options));
    ASSERT_OK_AND_ASSIGN(auto b, MoeLayer::Create(loaded, options));
    const int64_t t = 50;
    auto x = RandomTokens(t * 32, 3);
    std::vector<float> ya(t * 32), yb(t * 32);
    ForwardOutputs oa, ob;
    oa.output = ya.data();
    ob.output = yb.data();
    ASSERT_OK(a->Forward(x.data(), t, oa));
    ASSERT_OK(b->Forward(x.data(), t, ob));
    EXPECT_EQ(0, std::memcmp(ya.data(), yb.data(), ya.size() * 4)) << DTypeName(compute);
  }
}

INSTANTIATE_TEST_SUITE_P(AllPresets, RoundTripTest,
                         ::testing::Values("demo", "mixtral-8x7b", "qwen2-moe-a2.7b",
                                           "deepseek-v3-small", "switch-8", "transformer-base",
                                           "bert-base", "gpt2", "llama-7b", "qwen3-30b-a3b",
                                           "olmoe-1b-7b"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string n = info.param;
                           std::replace_if(n.begin(), n.end(),
                                           [](char c) { return !std::isalnum(c); }, '_');
                           return n;
                         });

TEST(RoundTripRefusalTest, GptOssIsNotWritten) {
  LayerSpec spec = *PresetSpec("gpt-oss-20b");
  spec.d_model = spec.expert.d_model = 32;
  spec.expert.d_ff = 32;
  TempDir dir;
  const absl::Status st = WriteHfLayer(MakeSyntheticWeights(spec, 1), dir.path());
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("MXFP4"), std::string::npos) << st.message();
}

TEST(RoundTripFullSizeTest, DemoPreset) {
  ASSERT_OK_AND_ASSIGN(LayerWeights original, MakePreset("demo"));
  TempDir dir;
  ASSERT_OK(WriteHfLayer(original, dir.path()));
  ASSERT_OK_AND_ASSIGN(LayerWeights loaded, LoadHfLayer(dir.path(), 0));
  MoeLayerOptions options;
  ASSERT_OK_AND_ASSIGN(auto a, MoeLayer::Create(original, options));
  ASSERT_OK_AND_ASSIGN(auto b, MoeLayer::Create(loaded, options));
  auto x = RandomTokens(16 * 1024, 9);
  std::vector<float> ya(16 * 1024), yb(16 * 1024);
  ForwardOutputs oa, ob;
  oa.output = ya.data();
  ob.output = yb.data();
  ASSERT_OK(a->Forward(x.data(), 16, oa));
  ASSERT_OK(b->Forward(x.data(), 16, ob));
  EXPECT_EQ(0, std::memcmp(ya.data(), yb.data(), ya.size() * 4));
}

TEST(RoundTripTest, WrittenNamesAreTheFamiliesOwn) {
  // Spot checks of the public tensor names the writer uses.
  struct Want {
    std::string preset, name;
  };
  for (const Want& w : {Want{"demo", "model.layers.0.block_sparse_moe.experts.7.w3.weight"},
                        Want{"qwen2-moe-a2.7b", "model.layers.0.mlp.shared_expert_gate.weight"},
                        Want{"deepseek-v3-small", "model.layers.0.mlp.gate.e_score_correction_bias"},
                        Want{"deepseek-v3-small", "model.layers.0.mlp.shared_experts.down_proj.weight"},
                        Want{"switch-8", "encoder.block.0.layer.1.mlp.experts.expert_7.wo.weight"},
                        Want{"bert-base", "bert.encoder.layer.0.intermediate.dense.bias"},
                        Want{"gpt2", "h.0.mlp.c_fc.weight"},
                        Want{"llama-7b", "model.layers.0.mlp.up_proj.weight"}}) {
    LayerSpec spec = *PresetSpec(w.preset);
    spec.d_model = spec.expert.d_model = 16;
    spec.expert.d_ff = 16;
    if (spec.has_shared()) {
      spec.shared.d_model = 16;
      spec.shared.d_ff = 32;
    }
    TempDir dir;
    ASSERT_OK(WriteHfLayer(MakeSyntheticWeights(spec, 1), dir.path()));
    const std::string bytes = ::moe::testing::ReadFile(dir.File("model.safetensors"));
    EXPECT_NE(bytes.find("\"" + w.name + "\""), std::string::npos) << w.preset << ": " << w.name;
  }
}

}  // namespace
}  // namespace moe
