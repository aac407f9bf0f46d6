// Conformance: the loader and the layer against the independent fixtures in
// ../shared/fixtures (Hugging Face checkpoints written outside this project,
// with outputs from each family's PyTorch formulation). Skips, saying why,
// when the fixtures are not beside the checkout.
#include <filesystem>
#include <set>
#include <string>

#include "common/npy.h"
#include "gtest/gtest.h"
#include "model/checkpoint_loader.h"
#include "model/moe_layer.h"
#include "tests/status_matchers.h"

namespace moe {
namespace {

struct FixtureCase {
  std::string family;
  int layer;
  bool check_ids;
};

class FixturesTest : public ::testing::TestWithParam<FixtureCase> {};

std::string FixtureDir(const std::string& family) {
  return std::string(MOE_FIXTURES_DIR) + "/" + family;
}

TEST_P(FixturesTest, MatchesReferenceOutputs) {
  const FixtureCase& c = GetParam();
  const std::string dir = FixtureDir(c.family);
  if (!std::filesystem::exists(dir + "/config.json")) {
    GTEST_SKIP() << "conformance fixtures not found at " << dir;
  }
  ASSERT_OK_AND_ASSIGN(LayerWeights weights, LoadHfLayer(dir, c.layer));
  ASSERT_OK_AND_ASSIGN(NpyArray input, ReadNpy(dir + "/input.npy"));
  ASSERT_OK_AND_ASSIGN(NpyArray expected,
                       ReadNpy(dir + "/expected_layer" + std::to_string(c.layer) + ".npy"));
  ASSERT_EQ(input.shape.size(), 2u);
  const int64_t t = input.shape[0];
  ASSERT_EQ(input.shape[1], weights.spec.d_model);
  ASSERT_EQ(expected.shape, input.shape);

  MoeLayerOptions options;
  options.compute = DType::kF32;
  ASSERT_OK_AND_ASSIGN(auto layer, MoeLayer::Create(weights, options));
  const int k = weights.spec.top_k();
  std::vector<float> out(static_cast<size_t>(t * weights.spec.d_model));
  std::vector<int32_t> ids(static_cast<size_t>(t * k));
  ForwardOutputs fo;
  fo.output = out.data();
  fo.expert_ids = ids.data();
  ASSERT_OK(layer->Forward(input.f32.data(), t, fo));

  // Tolerance: the fixtures were computed in f32 from the bf16 weights;
  // an f32 implementation agrees to ~1e-5 of the largest output.
  double scale = 0, err = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    scale = std::max(scale, static_cast<double>(std::abs(expected.f32[i])));
    err = std::max(err, static_cast<double>(std::abs(out[i] - expected.f32[i])));
  }
  EXPECT_LE(err, 1e-5 * scale) << c.family << " layer " << c.layer << " max abs err " << err
                               << " (output scale " << scale << ")";

  if (c.check_ids) {
    ASSERT_OK_AND_ASSIGN(
        NpyArray want_ids,
        ReadNpy(dir + "/expected_expert_ids_layer" + std::to_string(c.layer) + ".npy"));
    ASSERT_EQ(want_ids.i32.size(), ids.size());
    for (int64_t i = 0; i < t; ++i) {
      std::set<int32_t> got(ids.begin() + i * k, ids.begin() + (i + 1) * k);
      std::set<int32_t> want(want_ids.i32.begin() + i * k, want_ids.i32.begin() + (i + 1) * k);
      EXPECT_EQ(got, want) << c.family << " token " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Families, FixturesTest,
    ::testing::Values(FixtureCase{"mixtral", 1, true}, FixtureCase{"qwen2_moe", 1, true},
                      FixtureCase{"deepseek_v3", 1, true}, FixtureCase{"deepseek_v3", 0, false},
                      FixtureCase{"llama", 0, false}, FixtureCase{"qwen3_moe", 1, true},
                      FixtureCase{"olmoe", 1, true}, FixtureCase{"deepseek_v3_fp8", 1, true},
                      FixtureCase{"deepseek_v3_fp8", 0, false},
                      FixtureCase{"gpt_oss_mxfp4", 1, true}),
    [](const ::testing::TestParamInfo<FixtureCase>& info) {
      return info.param.family + "_layer" + std::to_string(info.param.layer);
    });

}  // namespace
}  // namespace moe
