// Caller-supplied routing (router/given_routing.h, TokenChoices of
// MoeLayer::Forward): validation messages; the router's own ids and weights
// given back reproduce its answer bit for bit; arbitrary valid routings
// match the naive reference; shared experts can be left out per token; a
// token's answer does not depend on the choices of the others in its batch.
#include "router/given_routing.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/moe_layer.h"
#include "model/presets.h"
#include "tests/naive_reference.h"
#include "tests/status_matchers.h"

namespace moe {
namespace {

using ::moe::testing::MaxRelativeError;
using ::moe::testing::NaiveFfn;
using ::moe::testing::RandomTokens;
using ::testing::HasSubstr;

constexpr int64_t kD = 64;

LayerSpec Small(const std::string& preset) {
  LayerSpec s = *PresetSpec(preset);
  s.d_model = s.expert.d_model = kD;
  s.expert.d_ff = 96;
  if (s.has_shared()) {
    s.shared.d_model = kD;
    s.shared.d_ff = 160;
  }
  return s;
}

std::unique_ptr<MoeLayer> Layer(const LayerWeights& w, DType compute = DType::kF32) {
  MoeLayerOptions o;
  o.compute = compute;
  auto layer = MoeLayer::Create(w, o);
  EXPECT_TRUE(layer.ok()) << layer.status();
  return *std::move(layer);
}

struct LayerRun {
  std::vector<float> y, weights;
  std::vector<int32_t> ids;
};

LayerRun Forward(MoeLayer* layer, const std::vector<float>& x, const TokenChoices& choices = {}) {
  const int64_t t = static_cast<int64_t>(x.size()) / kD;
  const int k = layer->spec().top_k();
  LayerRun r;
  r.y.resize(x.size());
  r.ids.resize(static_cast<size_t>(t * k));
  r.weights.resize(static_cast<size_t>(t * k));
  ForwardOutputs out;
  out.output = r.y.data();
  out.expert_ids = r.ids.data();
  out.expert_weights = r.weights.data();
  EXPECT_OK(layer->Forward(x.data(), t, out, choices));
  return r;
}

TEST(ValidateGivenRoutingTest, AcceptsDistinctIdsInRangeWithFiniteWeights) {
  const std::vector<int32_t> ids = {3, 0, 7, 1};
  const std::vector<float> w = {0.6f, 0.4f, -2.0f, 0.0f};  // any finite weight
  EXPECT_OK(ValidateGivenRouting(ids.data(), w.data(), 2, 2, 8));
  // Empty slots (-1, weight 0), as the router reports dropped ones.
  const std::vector<int32_t> empty = {-1, -1, 4, -1};
  const std::vector<float> zero = {0.0f, 0.0f, 1.0f, 0.0f};
  EXPECT_OK(ValidateGivenRouting(empty.data(), zero.data(), 2, 2, 8));
}

TEST(ValidateGivenRoutingTest, NamesTheTokenThePositionAndTheValue) {
  const std::vector<float> w = {0.5f, 0.5f, 0.5f, 0.5f};
  struct Case {
    std::vector<int32_t> ids;
    std::vector<float> weights;
    std::vector<std::string> parts;
  } cases[] = {
      {{0, 1, 2, 8}, w, {"expert_ids[1][1]", "expert 8", "out of range 0..7"}},
      {{0, 1, -2, 2}, w, {"expert_ids[1][0]", "expert -2", "out of range"}},
      {{0, 1, -1, 2}, w, {"expert_weights[1][0]", "empty slot", "must be 0"}},
      {{4, 4, 0, 1}, w, {"expert_ids[0]", "expert 4 appears twice", "positions 0 and 1"}},
      {{0, 1, 2, 3},
       {0.5f, 0.5f, std::nanf(""), 0.5f},
       {"expert_weights[1][0]", "nan", "not finite"}},
      {{0, 1, 2, 3},
       {0.5f, std::numeric_limits<float>::infinity(), 0.5f, 0.5f},
       {"expert_weights[0][1]", "inf"}},
  };
  for (const auto& c : cases) {
    absl::Status st = ValidateGivenRouting(c.ids.data(), c.weights.data(), 2, 2, 8);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
    for (const auto& p : c.parts) EXPECT_THAT(std::string(st.message()), HasSubstr(p)) << st;
  }
}

// Given the router's own choice (in any order within a token), the layer
// answers bit for bit as with its own routing, in f32 and bf16, for
// softmax, sigmoid/grouped and shared-expert families.
TEST(GivenRoutingLayerTest, TheRoutersOwnChoiceGivenBackIsBitwiseTheSame) {
  for (const char* preset : {"demo", "qwen2-moe-a2.7b", "deepseek-v3-small"}) {
    for (DType compute : {DType::kF32, DType::kBF16}) {
      SCOPED_TRACE(std::string(preset) + (compute == DType::kF32 ? " f32" : " bf16"));
      LayerWeights w = MakeSyntheticWeights(Small(preset), 7);
      auto layer = Layer(w, compute);
      const int k = w.spec.top_k();
      const int64_t t = 37;
      auto x = RandomTokens(t * kD, 11);
      LayerRun own = Forward(layer.get(), x);
      // Reverse each token's list: order within a token must not matter.
      std::vector<int32_t> ids = own.ids;
      std::vector<float> weights = own.weights;
      for (int64_t i = 0; i < t; ++i) {
        std::reverse(ids.begin() + i * k, ids.begin() + (i + 1) * k);
        std::reverse(weights.begin() + i * k, weights.begin() + (i + 1) * k);
      }
      std::vector<uint8_t> present(static_cast<size_t>(t), 1);
      TokenChoices choices;
      choices.routing = {present.data(), ids.data(), weights.data()};
      LayerRun given = Forward(layer.get(), x, choices);
      EXPECT_EQ(given.y, own.y);
      EXPECT_EQ(given.ids, ids);  // the routing outputs echo the caller's
      EXPECT_EQ(given.weights, weights);
    }
  }
}

// Under a capacity limit (switch-8: top-1, factor 1.25) the router drops
// slots (id -1, weight 0); its routing given back, dropped slots included,
// is still bitwise its answer: given experts are never dropped again.
TEST(GivenRoutingLayerTest, ARoutingWithDroppedSlotsGivenBackIsBitwiseTheSame) {
  LayerWeights w = MakeSyntheticWeights(Small("switch-8"), 3);
  ASSERT_GT(w.spec.router.capacity_factor, 0);
  auto layer = Layer(w);
  const int64_t t = 96;
  auto x = RandomTokens(t * kD, 8);
  LayerRun own = Forward(layer.get(), x);
  ASSERT_GT(std::count(own.ids.begin(), own.ids.end(), -1), 0) << "no slot was dropped";
  std::vector<uint8_t> present(static_cast<size_t>(t), 1);
  TokenChoices choices;
  choices.routing = {present.data(), own.ids.data(), own.weights.data()};
  LayerRun given = Forward(layer.get(), x, choices);
  EXPECT_EQ(given.y, own.y);
  EXPECT_EQ(given.ids, own.ids);
}

// Arbitrary valid routings (any k distinct experts, any finite weights,
// including negative and zero) against y = sum_j w_j FFN_{e_j}(x) computed
// naively; f32 to 1e-5 of the largest output, as the layer's own test.
TEST(GivenRoutingLayerTest, ArbitraryRoutingsMatchTheNaiveReference) {
  for (const char* preset : {"demo", "switch-8"}) {
    SCOPED_TRACE(preset);
    LayerWeights w = MakeSyntheticWeights(Small(preset), 5);
    ASSERT_FALSE(w.spec.has_shared());
    auto layer = Layer(w);
    const int k = w.spec.top_k();
    const int e = w.spec.num_experts();
    const int64_t t = 23;
    auto x = RandomTokens(t * kD, 3);
    std::mt19937 rng(42);
    std::vector<int32_t> ids(static_cast<size_t>(t * k));
    std::vector<float> weights(static_cast<size_t>(t * k));
    std::uniform_real_distribution<float> wd(-1.0f, 2.0f);
    for (int64_t i = 0; i < t; ++i) {
      std::vector<int32_t> all(static_cast<size_t>(e));
      std::iota(all.begin(), all.end(), 0);
      std::shuffle(all.begin(), all.end(), rng);
      for (int j = 0; j < k; ++j) {
        ids[static_cast<size_t>(i * k + j)] = all[static_cast<size_t>(j)];
        weights[static_cast<size_t>(i * k + j)] = i == 3 ? 0.0f : wd(rng);
      }
    }
    std::vector<uint8_t> present(static_cast<size_t>(t), 1);
    TokenChoices choices;
    choices.routing = {present.data(), ids.data(), weights.data()};
    LayerRun got = Forward(layer.get(), x, choices);
    std::vector<double> want(x.size(), 0.0);
    for (int64_t i = 0; i < t; ++i) {
      std::vector<float> row(x.begin() + i * kD, x.begin() + (i + 1) * kD);
      for (int j = 0; j < k; ++j) {
        const int32_t id = ids[static_cast<size_t>(i * k + j)];
        auto y = NaiveFfn(w.spec.expert, w.experts[static_cast<size_t>(id)], row, 1, false);
        for (int64_t c = 0; c < kD; ++c) {
          want[static_cast<size_t>(i * kD + c)] +=
              static_cast<double>(weights[static_cast<size_t>(i * k + j)]) *
              y[static_cast<size_t>(c)];
        }
      }
    }
    EXPECT_LT(MaxRelativeError(got.y, want), 1e-5);
  }
}

// shared_experts off for a token: its output is the routed part alone, bit
// for bit what the same layer without shared experts computes.
TEST(GivenRoutingLayerTest, SkippingSharedExpertsLeavesTheRoutedPartExactly) {
  LayerWeights w = MakeSyntheticWeights(Small("qwen2-moe-a2.7b"), 9);
  ASSERT_TRUE(w.spec.has_shared());
  LayerWeights routed_only = w;
  routed_only.spec.shared = FfnSpec();
  routed_only.spec.shared_gate = false;
  routed_only.shared = FfnWeights();
  routed_only.shared_gate = Tensor();
  auto layer = Layer(w);
  auto plain = Layer(routed_only);
  const int64_t t = 9;
  auto x = RandomTokens(t * kD, 21);
  std::vector<uint8_t> skip(static_cast<size_t>(t), 0);
  for (int64_t i = 0; i < t; i += 2) skip[static_cast<size_t>(i)] = 1;
  TokenChoices choices;
  choices.skip_shared = skip.data();
  LayerRun mixed = Forward(layer.get(), x, choices);
  LayerRun with_shared = Forward(layer.get(), x);
  LayerRun without = Forward(plain.get(), x);
  for (int64_t i = 0; i < t; ++i) {
    const auto row = [&](const LayerRun& r) {
      return std::vector<float>(r.y.begin() + i * kD, r.y.begin() + (i + 1) * kD);
    };
    EXPECT_EQ(row(mixed), skip[static_cast<size_t>(i)] ? row(without) : row(with_shared))
        << "token " << i;
  }
  EXPECT_NE(with_shared.y, without.y);  // the shared experts do contribute
}

// Batch invariance with mixed choices: a token's answer is the same alone
// and in a batch where others bring their own routing or drop the shared
// experts.
TEST(GivenRoutingLayerTest, ATokensAnswerIgnoresTheOthersChoices) {
  LayerWeights w = MakeSyntheticWeights(Small("qwen2-moe-a2.7b"), 13);
  auto layer = Layer(w);
  const int k = w.spec.top_k();
  const int64_t t = 40;
  auto x = RandomTokens(t * kD, 17);
  std::vector<uint8_t> present(static_cast<size_t>(t), 0), skip(static_cast<size_t>(t), 0);
  std::vector<int32_t> ids(static_cast<size_t>(t * k));
  std::vector<float> weights(static_cast<size_t>(t * k));
  for (int64_t i = 0; i < t; ++i) {
    present[static_cast<size_t>(i)] = i % 3 == 0;
    skip[static_cast<size_t>(i)] = i % 5 == 0;
    for (int j = 0; j < k; ++j) {
      ids[static_cast<size_t>(i * k + j)] = static_cast<int32_t>((i + j) % w.spec.num_experts());
      weights[static_cast<size_t>(i * k + j)] = 1.0f / static_cast<float>(j + 1);
    }
  }
  TokenChoices batch;
  batch.routing = {present.data(), ids.data(), weights.data()};
  batch.skip_shared = skip.data();
  LayerRun all = Forward(layer.get(), x, batch);
  for (int64_t i : {0, 1, 5, 9, 15, 39}) {
    std::vector<float> one(x.begin() + i * kD, x.begin() + (i + 1) * kD);
    TokenChoices alone;
    alone.routing = {present.data() + i, ids.data() + i * k, weights.data() + i * k};
    alone.skip_shared = skip.data() + i;
    LayerRun r = Forward(layer.get(), one, alone);
    EXPECT_EQ(r.y, std::vector<float>(all.y.begin() + i * kD, all.y.begin() + (i + 1) * kD))
        << "token " << i;
  }
}

}  // namespace
}  // namespace moe
