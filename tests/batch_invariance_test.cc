// Batch invariance: a token's output (and routing) is bitwise identical
// whether it is computed alone or inside batches of 2..4096 other random
// tokens, at any position, in f32, bf16, int8 and int4.
#include <algorithm>
#include <cstring>

#include "experts/dnnl_engine.h"
#include "gtest/gtest.h"
#include "model/moe_layer.h"
#include "model/presets.h"
#include "tests/naive_reference.h"
#include "tests/status_matchers.h"

namespace moe {
namespace {

using ::moe::testing::RandomTokens;

struct Case {
  std::string preset;
  int64_t d_model;  // 0: the preset's own size
  DType compute;
};

class BatchInvarianceTest : public ::testing::TestWithParam<Case> {};

TEST_P(BatchInvarianceTest, TokenOutputDoesNotDependOnItsBatch) {
  const Case& c = GetParam();
  LayerSpec spec = *PresetSpec(c.preset);
  if (c.d_model > 0) {
    spec.d_model = spec.expert.d_model = c.d_model;
    spec.expert.d_ff = 3 * c.d_model;
    if (spec.has_shared()) {
      spec.shared.d_model = c.d_model;
      spec.shared.d_ff = 5 * c.d_model;
    }
  }
  const int64_t h = spec.d_model;
  const int k = spec.top_k();
  MoeLayerOptions options;
  options.compute = c.compute;
  ASSERT_OK_AND_ASSIGN(auto layer, MoeLayer::Create(MakeSyntheticWeights(spec, 11), options));

  const int kProbes = 4;
  auto probes = RandomTokens(kProbes * h, 1);
  std::vector<float> alone(static_cast<size_t>(kProbes * h));
  std::vector<float> alone_w(static_cast<size_t>(kProbes * k));
  for (int p = 0; p < kProbes; ++p) {
    ForwardOutputs out;
    out.output = alone.data() + p * h;
    out.expert_weights = alone_w.data() + p * k;
    ASSERT_OK(layer->Forward(probes.data() + p * h, 1, out));
  }

  for (int64_t t : {2, 3, 4, 17, 64, 255, 256, 511, 513, 1000, 1025, 4096}) {
    auto batch = RandomTokens(t * h, static_cast<uint32_t>(t));
    // Probes at the first, last and two interior positions.
    // In tiny batches a position already taken goes to -1 (probe unused).
    std::vector<int64_t> positions = {0, t - 1, t / 2, (t * 3) / 4};
    for (int p = 0; p < kProbes; ++p) {
      if (std::find(positions.begin(), positions.begin() + p, positions[p]) !=
          positions.begin() + p) {
        positions[p] = -1;
        continue;
      }
      std::memcpy(batch.data() + positions[p] * h, probes.data() + p * h, h * sizeof(float));
    }
    std::vector<float> y(static_cast<size_t>(t * h)), w(static_cast<size_t>(t * k));
    ForwardOutputs out;
    out.output = y.data();
    out.expert_weights = w.data();
    ASSERT_OK(layer->Forward(batch.data(), t, out));
    for (int p = 0; p < kProbes; ++p) {
      const int64_t pos = positions[p];
      if (pos < 0) continue;
      ASSERT_EQ(0, std::memcmp(y.data() + pos * h, alone.data() + p * h, h * sizeof(float)))
          << c.preset << " " << DTypeName(c.compute) << ": probe " << p << " at row " << pos
          << " of " << t << " differs from the token computed alone";
      ASSERT_EQ(0, std::memcmp(w.data() + pos * k, alone_w.data() + p * k, k * sizeof(float)));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Layers, BatchInvarianceTest,
    ::testing::Values(Case{"demo", 0, DType::kF32}, Case{"demo", 0, DType::kBF16},
                      Case{"qwen2-moe-a2.7b", 128, DType::kF32},
                      Case{"qwen2-moe-a2.7b", 128, DType::kBF16}, Case{"gpt2", 0, DType::kF32},
                      Case{"gpt2", 0, DType::kBF16}, Case{"demo", 0, DType::kI8},
                      Case{"qwen2-moe-a2.7b", 128, DType::kI8}, Case{"gpt2", 0, DType::kI8},
                      Case{"demo", 0, DType::kI4}, Case{"qwen2-moe-a2.7b", 128, DType::kI4},
                      Case{"gpt2", 0, DType::kI4}),
    [](const ::testing::TestParamInfo<Case>& info) {
      std::string name = info.param.preset + "_" + DTypeName(info.param.compute);
      std::replace_if(
          name.begin(), name.end(), [](char ch) { return !std::isalnum(ch); }, '_');
      return name;
    });

}  // namespace
}  // namespace moe
