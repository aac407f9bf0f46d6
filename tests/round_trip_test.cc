// Every preset, written as a Hugging Face folder by the preset writer and
// loaded back, gives a layer whose outputs equal the preset's bitwise
// (gpt-oss-20b's experts through MXFP4, on whose grid the preset's lie);
// FP8-written folders load back as the decoded blocks.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/checkpoint_loader.h"
#include "model/checkpoint_writer.h"
#include "model/moe_layer.h"
#include "model/mxfp4_weights.h"
#include "model/presets.h"
#include "nlohmann/json.hpp"
#include "tests/naive_reference.h"
#include "tests/status_matchers.h"
#include "tests/test_files.h"

namespace moe {
namespace {

using ::moe::testing::RandomTokens;
using ::moe::testing::StatusIs;
using ::moe::testing::TempDir;
using ::testing::AllOf;
using ::testing::HasSubstr;

// The outputs of layers built from `a` and `b` with `options` for the
// same t random tokens.
std::pair<std::vector<float>, std::vector<float>> ForwardBoth(const LayerWeights& a,
                                                              const LayerWeights& b,
                                                              const MoeLayerOptions& options,
                                                              int64_t t) {
  const int64_t d = a.spec.d_model;
  auto la = MoeLayer::Create(a, options);
  auto lb = MoeLayer::Create(b, options);
  EXPECT_TRUE(la.ok() && lb.ok());
  if (!la.ok() || !lb.ok()) return {};
  const auto x = RandomTokens(t * d, 3);
  std::vector<float> ya(static_cast<size_t>(t * d)), yb(ya.size());
  ForwardOutputs oa, ob;
  oa.output = ya.data();
  ob.output = yb.data();
  EXPECT_OK((*la)->Forward(x.data(), t, oa));
  EXPECT_OK((*lb)->Forward(x.data(), t, ob));
  return {std::move(ya), std::move(yb)};
}

class RoundTripTest : public ::testing::TestWithParam<std::string> {};

TEST_P(RoundTripTest, WrittenFolderLoadsBackToTheSameLayer) {
  // Reduced sizes keep the files small; the demo preset also runs at full
  // size below.
  LayerSpec spec = *PresetSpec(GetParam());
  spec.d_model = spec.expert.d_model = 32;
  spec.expert.d_ff = spec.family == "gpt_oss" ? 64 : 48;  // MXFP4 groups of 32
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
    const auto [ya, yb] = ForwardBoth(original, loaded, options, 50);
    ASSERT_EQ(ya.size(), yb.size());
    EXPECT_EQ(0, std::memcmp(ya.data(), yb.data(), ya.size() * 4)) << DTypeName(compute);
  }
}

INSTANTIATE_TEST_SUITE_P(AllPresets, RoundTripTest,
                         ::testing::Values("demo", "mixtral-8x7b", "qwen2-moe-a2.7b",
                                           "deepseek-v3-small", "switch-8", "transformer-base",
                                           "bert-base", "gpt2", "llama-7b", "qwen3-30b-a3b",
                                           "olmoe-1b-7b", "gpt-oss-20b"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string n = info.param;
                           std::replace_if(
                               n.begin(), n.end(), [](char c) { return !std::isalnum(c); }, '_');
                           return n;
                         });

// The tensors of a written model.safetensors: name -> (dtype, shape).
std::map<std::string, std::pair<std::string, std::vector<int64_t>>> Header(const std::string& dir) {
  const std::string bytes = ::moe::testing::ReadFile(dir + "/model.safetensors");
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  const nlohmann::json h = nlohmann::json::parse(bytes.substr(8, n));
  std::map<std::string, std::pair<std::string, std::vector<int64_t>>> out;
  for (const auto& [name, e] : h.items()) {
    if (name == "__metadata__") continue;
    out[name] = {e["dtype"].get<std::string>(), e["shape"].get<std::vector<int64_t>>()};
  }
  return out;
}

nlohmann::json Config(const std::string& dir) {
  return nlohmann::json::parse(::moe::testing::ReadFile(dir + "/config.json"));
}

TEST(RoundTripGptOssTest, ExpertsAreWrittenAsMxfp4AsGptOssShipsThem) {
  LayerSpec spec = *PresetSpec("gpt-oss-20b");
  spec.d_model = spec.expert.d_model = 64;
  spec.expert.d_ff = 32;
  const LayerWeights w = MakeSyntheticWeights(spec, 1);
  TempDir dir;
  ASSERT_OK(WriteHfLayer(w, dir.path()));
  EXPECT_EQ(Config(dir.path())["quantization_config"]["quant_method"], "mxfp4");
  EXPECT_EQ(Config(dir.path())["num_local_experts"], 32);
  const auto h = Header(dir.path());
  const std::string p = "model.layers.0.mlp.";
  using Shape = std::vector<int64_t>;
  EXPECT_EQ(h.at(p + "router.weight"), std::make_pair(std::string("BF16"), Shape{32, 64}));
  EXPECT_EQ(h.at(p + "router.bias"), std::make_pair(std::string("BF16"), Shape{32}));
  EXPECT_EQ(h.at(p + "experts.gate_up_proj_blocks"),
            std::make_pair(std::string("U8"), Shape{32, 64, 2, 16}));
  EXPECT_EQ(h.at(p + "experts.gate_up_proj_scales"),
            std::make_pair(std::string("U8"), Shape{32, 64, 2}));
  EXPECT_EQ(h.at(p + "experts.gate_up_proj_bias"),
            std::make_pair(std::string("BF16"), Shape{32, 64}));
  EXPECT_EQ(h.at(p + "experts.down_proj_blocks"),
            std::make_pair(std::string("U8"), Shape{32, 64, 1, 16}));
  EXPECT_EQ(h.at(p + "experts.down_proj_scales"),
            std::make_pair(std::string("U8"), Shape{32, 64, 1}));
  EXPECT_EQ(h.at(p + "experts.down_proj_bias"), std::make_pair(std::string("BF16"), Shape{32, 64}));
  EXPECT_EQ(h.size(), 8u);
  // The loaded experts are the preset's, value for value: gate the even
  // rows of gate_up, up the odd ones.
  ASSERT_OK_AND_ASSIGN(LayerWeights loaded, LoadHfLayer(dir.path(), 0));
  for (size_t e : {size_t{0}, size_t{31}}) {
    EXPECT_EQ(loaded.experts[e].w1.ToFloats(), w.experts[e].w1.ToFloats()) << e;
    EXPECT_EQ(loaded.experts[e].w3.ToFloats(), w.experts[e].w3.ToFloats()) << e;
    EXPECT_EQ(loaded.experts[e].w2.ToFloats(), w.experts[e].w2.ToFloats()) << e;
    EXPECT_EQ(loaded.experts[e].b1.ToFloats(), w.experts[e].b1.ToFloats()) << e;
    EXPECT_EQ(loaded.experts[e].b3.ToFloats(), w.experts[e].b3.ToFloats()) << e;
    EXPECT_EQ(loaded.experts[e].b2.ToFloats(), w.experts[e].b2.ToFloats()) << e;
  }
}

TEST(RoundTripGptOssTest, OffGridWeightsAreRoundedToMxfp4) {
  LayerSpec spec = *PresetSpec("gpt-oss-20b");
  spec.d_model = spec.expert.d_model = 32;
  spec.expert.d_ff = 32;
  LayerWeights w = MakeSyntheticWeights(spec, 1);
  // Off the grid: 1.1 times every gate weight of expert 3.
  std::vector<float> w1 = w.experts[3].w1.ToFloats();
  for (float& v : w1) v *= 1.1f;
  w.experts[3].w1 = Tensor::FromFloats(DType::kBF16, {32, 32}, w1);
  TempDir dir;
  ASSERT_OK(WriteHfLayer(w, dir.path()));
  ASSERT_OK_AND_ASSIGN(LayerWeights loaded, LoadHfLayer(dir.path(), 0));
  ASSERT_OK_AND_ASSIGN(std::vector<float> want, RoundToMxfp4(w1, 32));
  EXPECT_EQ(loaded.experts[3].w1.ToFloats(), want);
  EXPECT_NE(want, w1);
}

TEST(RoundTripGptOssTest, SizesOutsideGroupsOf32AreRefused) {
  LayerSpec spec = *PresetSpec("gpt-oss-20b");
  spec.d_model = spec.expert.d_model = 32;
  spec.expert.d_ff = 48;
  TempDir dir;
  EXPECT_THAT(WriteHfLayer(MakeSyntheticWeights(spec, 1), dir.path()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("MXFP4"), HasSubstr("d_ff (48)"))));
}

class RoundTripFp8Test : public ::testing::TestWithParam<std::string> {};

// FP8-written folders: the weights are F8_E4M3 with F32 block scales, the
// router stays BF16, and the layer loads back as the decoded blocks: each
// weight within FP8's rounding (2^-4 relative, plus bf16's 2^-9) of the
// original, and the layer's outputs within 8e-2 of the largest (these
// layers are narrow, d_model 48: few terms to average the weights' errors).
TEST_P(RoundTripFp8Test, WrittenFolderLoadsBackWithinFp8Rounding) {
  LayerSpec spec = *PresetSpec(GetParam());
  spec.d_model = spec.expert.d_model = 48;
  spec.expert.d_ff = 40;
  if (spec.has_shared()) {
    spec.shared.d_model = 48;
    spec.shared.d_ff = spec.family == "deepseek_v3" ? 80 : 64;
  }
  const LayerWeights original = MakeSyntheticWeights(spec, 23);
  TempDir dir;
  HfWriteOptions options;
  options.fp8_block[0] = 16;
  options.fp8_block[1] = 32;
  ASSERT_OK(WriteHfLayer(original, dir.path(), options));
  const nlohmann::json q = Config(dir.path())["quantization_config"];
  EXPECT_EQ(q["quant_method"], "fp8");
  EXPECT_EQ(q["weight_block_size"], nlohmann::json::array({16, 32}));
  int fp8 = 0;
  for (const auto& [name, e] : Header(dir.path())) {
    if (e.first == "F8_E4M3") {
      ++fp8;
      EXPECT_EQ(e.second.size(), 2u) << name;
      using Shape = std::vector<int64_t>;
      EXPECT_EQ(Header(dir.path()).at(name + "_scale_inv"),
                std::make_pair(std::string("F32"),
                               Shape{(e.second[0] + 15) / 16, (e.second[1] + 31) / 32}))
          << name;
    }
  }
  const int matrices = (spec.expert.gated ? 3 : 2) *
                       (spec.dense ? 1 : spec.router.num_experts + (spec.has_shared() ? 1 : 0));
  EXPECT_EQ(fp8, matrices);
  ASSERT_OK_AND_ASSIGN(LayerWeights loaded, LoadHfLayer(dir.path(), 0));
  ASSERT_EQ(loaded.spec.Summary(), original.spec.Summary());
  if (!spec.dense) {
    EXPECT_EQ(loaded.gate_weight.ToFloats(), original.gate_weight.ToFloats());
  }
  const std::vector<float> a = original.experts[0].w1.ToFloats(),
                           b = loaded.experts[0].w1.ToFloats();
  float amax = 0;
  for (float v : a) amax = std::max(amax, std::fabs(v));
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_NEAR(b[i], a[i], std::fabs(a[i]) * 0.0665f + amax / 448 * 0.001f) << i;
  }
  const auto [ya, yb] = ForwardBoth(original, loaded, {}, 20);
  ASSERT_FALSE(ya.empty());
  float ymax = 0, err = 0;
  for (size_t i = 0; i < ya.size(); ++i) {
    ymax = std::max(ymax, std::fabs(ya[i]));
    err = std::max(err, std::fabs(ya[i] - yb[i]));
  }
  EXPECT_LE(err, 8e-2f * ymax);
}

INSTANTIATE_TEST_SUITE_P(Families, RoundTripFp8Test,
                         ::testing::Values("deepseek-v3-small", "qwen3-30b-a3b", "demo",
                                           "olmoe-1b-7b", "llama-7b"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string n = info.param;
                           std::replace_if(
                               n.begin(), n.end(), [](char c) { return !std::isalnum(c); }, '_');
                           return n;
                         });

TEST(RoundTripFp8RefusalTest, ABlockThatIsNotPositiveIsRefused) {
  LayerSpec spec = *PresetSpec("demo");
  spec.d_model = spec.expert.d_model = 32;
  spec.expert.d_ff = 32;
  TempDir dir;
  HfWriteOptions options;
  options.fp8_block[0] = options.fp8_block[1] = -1;
  EXPECT_THAT(WriteHfLayer(MakeSyntheticWeights(spec, 1), dir.path(), options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("-1 x -1")));
}

TEST(RoundTripFp8RefusalTest, Gpt2AndGptOssRefuseFp8) {
  for (const char* preset : {"gpt2", "gpt-oss-20b"}) {
    LayerSpec spec = *PresetSpec(preset);
    spec.d_model = spec.expert.d_model = 32;
    spec.expert.d_ff = 32;
    TempDir dir;
    HfWriteOptions options;
    options.fp8_block[0] = options.fp8_block[1] = 16;
    EXPECT_THAT(WriteHfLayer(MakeSyntheticWeights(spec, 1), dir.path(), options),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("FP8")))
        << preset;
  }
}

TEST(RoundTripFullSizeTest, DemoPreset) {
  ASSERT_OK_AND_ASSIGN(LayerWeights original, MakePreset("demo"));
  TempDir dir;
  ASSERT_OK(WriteHfLayer(original, dir.path()));
  ASSERT_OK_AND_ASSIGN(LayerWeights loaded, LoadHfLayer(dir.path(), 0));
  const auto [ya, yb] = ForwardBoth(original, loaded, {}, 16);
  ASSERT_EQ(ya.size(), 16u * 1024);
  EXPECT_EQ(0, std::memcmp(ya.data(), yb.data(), ya.size() * 4));
}

TEST(RoundTripTest, WrittenNamesAreTheFamiliesOwn) {
  // Spot checks of the public tensor names the writer uses.
  struct Want {
    std::string preset, name;
  };
  for (const Want& w :
       {Want{"demo", "model.layers.0.block_sparse_moe.experts.7.w3.weight"},
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
