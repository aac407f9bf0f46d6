// Presets: the shapes the issue names, determinism, and expert subsets.
#include "model/presets.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/status_matchers.h"

namespace moe {
namespace {

using ::moe::testing::StatusIs;
using ::testing::HasSubstr;

TEST(PresetsTest, ShapesMatchTheirModels) {
  struct Want {
    const char* name;
    int64_t d_model, d_ff;
    int experts, top_k;
    Activation act;
    bool gated;
  };
  for (const Want& w : {Want{"demo", 1024, 2816, 8, 2, Activation::kSilu, true},
                        Want{"mixtral-8x7b", 4096, 14336, 8, 2, Activation::kSilu, true},
                        Want{"qwen2-moe-a2.7b", 2048, 1408, 60, 4, Activation::kSilu, true},
                        Want{"deepseek-v3-small", 1024, 512, 64, 8, Activation::kSilu, true},
                        Want{"switch-8", 768, 3072, 8, 1, Activation::kRelu, false},
                        Want{"transformer-base", 512, 2048, 1, 1, Activation::kRelu, false},
                        Want{"bert-base", 768, 3072, 1, 1, Activation::kGelu, false},
                        Want{"gpt2", 768, 3072, 1, 1, Activation::kGeluTanh, false},
                        Want{"llama-7b", 4096, 11008, 1, 1, Activation::kSilu, true},
                        Want{"qwen3-30b-a3b", 2048, 768, 128, 8, Activation::kSilu, true},
                        Want{"olmoe-1b-7b", 2048, 1024, 64, 8, Activation::kSilu, true},
                        Want{"gpt-oss-20b", 2880, 2880, 32, 4, Activation::kSilu, true}}) {
    ASSERT_OK_AND_ASSIGN(LayerSpec s, PresetSpec(w.name));
    EXPECT_EQ(s.d_model, w.d_model) << w.name;
    EXPECT_EQ(s.expert.d_ff, w.d_ff) << w.name;
    EXPECT_EQ(s.num_experts(), w.experts) << w.name;
    EXPECT_EQ(s.top_k(), w.top_k) << w.name;
    EXPECT_EQ(s.expert.activation, w.act) << w.name;
    EXPECT_EQ(s.expert.gated, w.gated) << w.name;
    EXPECT_EQ(s.dense, w.experts == 1) << w.name;
  }
  ASSERT_OK_AND_ASSIGN(LayerSpec q, PresetSpec("qwen2-moe-a2.7b"));
  EXPECT_EQ(q.shared.d_ff, 5632);
  EXPECT_TRUE(q.shared_gate);
  EXPECT_FALSE(q.router.renormalize);
  ASSERT_OK_AND_ASSIGN(LayerSpec d, PresetSpec("deepseek-v3-small"));
  EXPECT_EQ(d.router.scoring, ScoringFunc::kSigmoid);
  EXPECT_TRUE(d.correction_bias);
  EXPECT_EQ(d.router.n_group, 8);
  EXPECT_EQ(d.router.topk_group, 4);
  EXPECT_EQ(d.shared.d_ff, 2 * 512);  // two shared experts
  EXPECT_FLOAT_EQ(d.router.routed_scaling_factor, 2.5f);
  ASSERT_OK_AND_ASSIGN(LayerSpec q3, PresetSpec("qwen3-30b-a3b"));
  EXPECT_TRUE(q3.router.renormalize);
  EXPECT_FALSE(q3.has_shared());
  ASSERT_OK_AND_ASSIGN(LayerSpec ol, PresetSpec("olmoe-1b-7b"));
  EXPECT_FALSE(ol.router.renormalize);
  ASSERT_OK_AND_ASSIGN(LayerSpec go, PresetSpec("gpt-oss-20b"));
  EXPECT_FLOAT_EQ(go.expert.swiglu_limit, 7.0f);
  EXPECT_TRUE(go.expert.has_bias);
  EXPECT_TRUE(go.gate_bias);
  ASSERT_OK_AND_ASSIGN(LayerSpec sw, PresetSpec("switch-8"));
  EXPECT_DOUBLE_EQ(sw.router.capacity_factor, 1.25);
  for (const auto& p : Presets()) EXPECT_OK(PresetSpec(p.name));
}

TEST(PresetsTest, UnknownPresetListsTheValidOnes) {
  EXPECT_THAT(PresetSpec("gpt5"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("demo, mixtral-8x7b")));
}

TEST(PresetsTest, WeightsAreSeededAndSubsetsMatch) {
  LayerSpec s = *PresetSpec("demo");
  s.d_model = s.expert.d_model = 16;
  s.expert.d_ff = 8;
  LayerWeights a = MakeSyntheticWeights(s, 1);
  LayerWeights b = MakeSyntheticWeights(s, 1);
  LayerWeights c = MakeSyntheticWeights(s, 2);
  LayerWeights subset = MakeSyntheticWeights(s, 1, {2, 5});
  EXPECT_EQ(a.experts[3].w1.ToFloats(), b.experts[3].w1.ToFloats());
  EXPECT_NE(a.experts[3].w1.ToFloats(), c.experts[3].w1.ToFloats());
  EXPECT_NE(a.experts[3].w1.ToFloats(), a.experts[4].w1.ToFloats());
  EXPECT_EQ(subset.experts[5].w2.ToFloats(), a.experts[5].w2.ToFloats());
  EXPECT_TRUE(subset.experts[0].w1.empty());
  EXPECT_EQ(a.gate_weight.dtype(), DType::kBF16);
}

}  // namespace
}  // namespace moe
