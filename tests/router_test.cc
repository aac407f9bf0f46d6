// Router: hand-computed cases for every option.
#include "router/router.h"

#include <cmath>
#include <limits>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/status_matchers.h"

namespace moe {
namespace {

using ::moe::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::FloatNear;
using ::testing::HasSubstr;

// A router over d_model = 1 whose gate row e is logits[e]: the token [1]
// then has exactly these logits.
std::unique_ptr<Router> MakeRouter(RouterOptions o, const std::vector<float>& logits,
                                   std::vector<float> correction = {}) {
  o.num_experts = static_cast<int>(logits.size());
  auto r = Router::Create(o, 1, logits, {}, std::move(correction));
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *std::move(r) : nullptr;
}

RoutingPlan RouteOne(const Router& r, float x = 1.0f) {
  RoutingPlan plan;
  r.Route(&x, 1, &plan);
  return plan;
}

TEST(RouterTest, SoftmaxTopKRenormalised) {
  RouterOptions o;
  o.top_k = 2;
  o.renormalize = true;
  // exp(logits) = 1, 2, 4, 1: softmax = .125, .25, .5, .125.
  auto r = MakeRouter(o, {0.0f, std::log(2.0f), std::log(4.0f), 0.0f});
  RoutingPlan p = RouteOne(*r);
  EXPECT_THAT(p.expert_ids, ElementsAre(2, 1));
  EXPECT_THAT(p.weights, ElementsAre(FloatNear(2.0f / 3, 1e-6), FloatNear(1.0f / 3, 1e-6)));
  EXPECT_THAT(p.scores, ElementsAre(FloatNear(.125f, 1e-6), FloatNear(.25f, 1e-6),
                                    FloatNear(.5f, 1e-6), FloatNear(.125f, 1e-6)));
}

TEST(RouterTest, SoftmaxWithoutRenormalisationKeepsProbabilities) {
  RouterOptions o;
  o.top_k = 2;
  auto r = MakeRouter(o, {0.0f, std::log(2.0f), std::log(4.0f), 0.0f});
  RoutingPlan p = RouteOne(*r);
  EXPECT_THAT(p.expert_ids, ElementsAre(2, 1));
  EXPECT_THAT(p.weights, ElementsAre(FloatNear(.5f, 1e-6), FloatNear(.25f, 1e-6)));
}

TEST(RouterTest, TiesGoToTheLowerExpertId) {
  RouterOptions o;
  o.top_k = 3;
  auto r = MakeRouter(o, {0.5f, 1.0f, 0.5f, 1.0f, 0.5f});
  RoutingPlan p = RouteOne(*r);
  EXPECT_THAT(p.expert_ids, ElementsAre(1, 3, 0));
}

TEST(RouterTest, AllEqualScoresPickTheFirstExperts) {
  RouterOptions o;
  o.top_k = 2;
  o.renormalize = true;
  auto r = MakeRouter(o, {0, 0, 0, 0, 0, 0, 0, 0});
  RoutingPlan p = RouteOne(*r);
  EXPECT_THAT(p.expert_ids, ElementsAre(0, 1));
  EXPECT_THAT(p.weights, ElementsAre(0.5f, 0.5f));
}

TEST(RouterTest, SigmoidScoring) {
  RouterOptions o;
  o.top_k = 2;
  o.scoring = ScoringFunc::kSigmoid;
  auto r = MakeRouter(o, {0.0f, 2.0f, -1.0f});
  RoutingPlan p = RouteOne(*r);
  EXPECT_THAT(p.expert_ids, ElementsAre(1, 0));
  EXPECT_THAT(p.weights,
              ElementsAre(FloatNear(1 / (1 + std::exp(-2.0f)), 1e-6), FloatNear(0.5f, 1e-6)));
}

TEST(RouterTest, CorrectionBiasChangesSelectionButNotWeights) {
  RouterOptions o;
  o.top_k = 2;
  o.scoring = ScoringFunc::kSigmoid;
  o.renormalize = true;
  o.routed_scaling_factor = 2.5f;
  // Unbiased scores: .5, sigmoid(.1), .5, .5; the bias promotes 3 and 2.
  auto r = MakeRouter(o, {0.0f, 0.1f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.2f, 0.3f});
  RoutingPlan p = RouteOne(*r);
  EXPECT_THAT(p.expert_ids, ElementsAre(3, 2));
  // Weights from the unbiased scores (.5 and .5), renormalised, scaled.
  EXPECT_THAT(p.weights, ElementsAre(FloatNear(1.25f, 1e-6), FloatNear(1.25f, 1e-6)));
}

TEST(RouterTest, RoutedScalingWithoutRenormalisation) {
  RouterOptions o;
  o.top_k = 1;
  o.scoring = ScoringFunc::kSigmoid;
  o.routed_scaling_factor = 2.0f;
  auto r = MakeRouter(o, {0.0f, -3.0f});
  EXPECT_THAT(RouteOne(*r).weights, ElementsAre(FloatNear(1.0f, 1e-6)));
}

TEST(RouterTest, RenormalisationEpsilonIsAdded) {
  RouterOptions o;
  o.top_k = 2;
  o.scoring = ScoringFunc::kSigmoid;
  o.renormalize = true;
  o.renorm_epsilon = 1.0f;  // exaggerated to be visible: weights / (sum + 1)
  auto r = MakeRouter(o, {0.0f, 0.0f});
  EXPECT_THAT(RouteOne(*r).weights, ElementsAre(FloatNear(0.25f, 1e-6), FloatNear(0.25f, 1e-6)));
}

// Groups of two: scores sigmoid(3)=.953, sigmoid(-3)=.047 | .731 .731 |
// .622 .622 | .269 .269. Sum-of-top-2 group scores 1.0, 1.46, 1.24, .54.
const std::vector<float> kGroupedLogits = {3, -3, 1, 1, 0.5, 0.5, -1, -1};

TEST(RouterTest, GroupedSelectionSumOfTop2) {
  RouterOptions o;
  o.top_k = 2;
  o.scoring = ScoringFunc::kSigmoid;
  o.n_group = 4;
  o.topk_group = 2;
  o.group_score = GroupScore::kSumTop2;
  auto r = MakeRouter(o, kGroupedLogits);
  // Groups 1 and 2 win; expert 0, the best single expert, is excluded.
  EXPECT_THAT(RouteOne(*r).expert_ids, ElementsAre(2, 3));
}

TEST(RouterTest, GroupedSelectionByGroupMax) {
  RouterOptions o;
  o.top_k = 2;
  o.scoring = ScoringFunc::kSigmoid;
  o.n_group = 4;
  o.topk_group = 2;
  o.group_score = GroupScore::kMax;
  auto r = MakeRouter(o, kGroupedLogits);
  // Group maxima .953, .731, .622, .269: groups 0 and 1.
  EXPECT_THAT(RouteOne(*r).expert_ids, ElementsAre(0, 2));
}

TEST(RouterTest, GroupScoresUseTheBiasedScores) {
  RouterOptions o;
  o.top_k = 1;
  o.scoring = ScoringFunc::kSigmoid;
  o.n_group = 2;
  o.topk_group = 1;
  // Unbiased: group 0 (.731 .731) beats group 1 (.5 .5); the bias flips it.
  auto r = MakeRouter(o, {1, 1, 0, 0}, {0, 0, 0.3f, 0.3f});
  RoutingPlan p = RouteOne(*r);
  EXPECT_THAT(p.expert_ids, ElementsAre(2));
  EXPECT_THAT(p.weights, ElementsAre(FloatNear(0.5f, 1e-6)));
}

TEST(RouterTest, CapacityDropsLaterTokensInOrder) {
  RouterOptions o;
  o.num_experts = 2;
  o.top_k = 1;
  o.capacity_factor = 1.0;  // ceil(1.0 * 4 * 1 / 2) = 2 per expert
  ASSERT_OK_AND_ASSIGN(auto r, Router::Create(o, 1, {1.0f, -1.0f}));
  const float tokens[4] = {1, 2, 3, -1};  // 0,1,2 prefer expert 0; 3 prefers 1
  RoutingPlan p;
  r->Route(tokens, 4, &p);
  EXPECT_EQ(r->CapacityFor(4), 2);
  EXPECT_THAT(p.expert_ids, ElementsAre(0, 0, kDroppedExpert, 1));
  EXPECT_EQ(p.weights[2], 0.0f);
  EXPECT_THAT(p.expert_rows[0], ElementsAre(0, 1));
  EXPECT_THAT(p.expert_rows[1], ElementsAre(3));
  EXPECT_EQ(p.num_dropped, 1);
}

TEST(RouterTest, CapacityAppliesPerSlotInTokenOrder) {
  RouterOptions o;
  o.num_experts = 3;
  o.top_k = 2;
  o.capacity_factor = 0.75;  // ceil(.75 * 3 * 2 / 3) = 2 per expert
  // Every token prefers expert 0 then expert 1.
  ASSERT_OK_AND_ASSIGN(auto r, Router::Create(o, 1, {2.0f, 1.0f, 0.0f}));
  const float tokens[3] = {1, 1, 1};
  RoutingPlan p;
  r->Route(tokens, 3, &p);
  EXPECT_THAT(p.expert_ids, ElementsAre(0, 1, 0, 1, kDroppedExpert, kDroppedExpert));
  EXPECT_EQ(p.num_dropped, 2);
  EXPECT_EQ(p.tokens_for_expert(2), 0);
}

TEST(RouterTest, DroplessByDefault) {
  RouterOptions o;
  o.num_experts = 2;
  o.top_k = 1;
  ASSERT_OK_AND_ASSIGN(auto r, Router::Create(o, 1, {1.0f, -1.0f}));
  std::vector<float> tokens(1000, 1.0f);
  RoutingPlan p;
  r->Route(tokens.data(), 1000, &p);
  EXPECT_EQ(p.tokens_for_expert(0), 1000);
  EXPECT_EQ(p.num_dropped, 0);
}

TEST(RouterTest, TopKEqualsNumExperts) {
  RouterOptions o;
  o.top_k = 3;
  o.renormalize = true;
  auto r = MakeRouter(o, {0.0f, 1.0f, 2.0f});
  RoutingPlan p = RouteOne(*r);
  EXPECT_THAT(p.expert_ids, ElementsAre(2, 1, 0));
  EXPECT_NEAR(p.weights[0] + p.weights[1] + p.weights[2], 1.0f, 1e-6);
  for (int e = 0; e < 3; ++e) EXPECT_EQ(p.tokens_for_expert(e), 1);
}

TEST(RouterTest, SingleExpert) {
  RouterOptions o;
  auto r = MakeRouter(o, {0.7f});
  RoutingPlan p = RouteOne(*r, 5.0f);
  EXPECT_THAT(p.expert_ids, ElementsAre(0));
  EXPECT_THAT(p.weights, ElementsAre(1.0f));  // softmax of one logit
}

TEST(RouterTest, DenseRouterGivesWeightExactlyOne) {
  auto r = Router::CreateDense(4);
  std::vector<float> tokens(12, 0.3f);
  RoutingPlan p;
  r->Route(tokens.data(), 3, &p);
  EXPECT_THAT(p.expert_ids, ElementsAre(0, 0, 0));
  EXPECT_THAT(p.weights, ElementsAre(1.0f, 1.0f, 1.0f));
  EXPECT_THAT(p.expert_rows[0], ElementsAre(0, 1, 2));
}

TEST(RouterTest, PlanViewsAgreeAndRowsAscend) {
  RouterOptions o;
  o.num_experts = 16;
  o.top_k = 4;
  o.renormalize = true;
  const int64_t d = 8, t = 300;
  std::vector<float> gate(16 * d), tokens(t * d);
  for (size_t i = 0; i < gate.size(); ++i) gate[i] = std::sin(0.37f * i);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = std::cos(1.3f * i);
  ASSERT_OK_AND_ASSIGN(auto r, Router::Create(o, d, gate));
  RoutingPlan p;
  r->Route(tokens.data(), t, &p);
  int64_t total = 0;
  for (int e = 0; e < 16; ++e) {
    const auto& rows = p.expert_rows[e];
    total += static_cast<int64_t>(rows.size());
    for (size_t i = 0; i < rows.size(); ++i) {
      if (i > 0) {
        EXPECT_LT(rows[i - 1], rows[i]);
      }
      // The per-token view must list e with the same weight.
      bool found = false;
      for (int j = 0; j < 4; ++j) {
        if (p.expert_ids[rows[i] * 4 + j] == e) {
          EXPECT_EQ(p.weights[rows[i] * 4 + j], p.expert_row_weights[e][i]);
          found = true;
        }
      }
      EXPECT_TRUE(found);
    }
  }
  EXPECT_EQ(total, t * 4);
  // Reusing the plan for a smaller batch resets it.
  r->Route(tokens.data(), 3, &p);
  total = 0;
  for (int e = 0; e < 16; ++e) total += p.tokens_for_expert(e);
  EXPECT_EQ(total, 12);
}

TEST(RouterTest, NonFiniteTokensDoNotCrash) {
  RouterOptions o;
  o.top_k = 2;
  auto r = MakeRouter(o, {1, 2, 3, 4});
  RoutingPlan p = RouteOne(*r, std::numeric_limits<float>::quiet_NaN());
  EXPECT_EQ(p.expert_ids.size(), 2u);
  p = RouteOne(*r, std::numeric_limits<float>::infinity());
  EXPECT_EQ(p.expert_ids.size(), 2u);
}

TEST(RouterTest, RejectsInconsistentOptions) {
  RouterOptions o;
  o.num_experts = 4;
  o.top_k = 5;
  EXPECT_THAT(Router::Create(o, 1, std::vector<float>(4)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("top_k")));
  o.top_k = 2;
  EXPECT_THAT(Router::Create(o, 1, std::vector<float>(3)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("gate weight")));
  o.n_group = 3;
  EXPECT_THAT(Router::Create(o, 1, std::vector<float>(4)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("n_group")));
  o.n_group = 4;
  o.topk_group = 1;
  EXPECT_THAT(Router::Create(o, 1, std::vector<float>(4)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("cannot hold")));
  o.n_group = 1;
  o.capacity_factor = -1;
  EXPECT_THAT(Router::Create(o, 1, std::vector<float>(4)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("capacity_factor")));
  o.capacity_factor = 0;
  EXPECT_THAT(Router::Create(o, 1, std::vector<float>(4), {}, {1.0f}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("correction")));
}

TEST(RouterTest, FixedOrderDotMatchesPlainSumOnExactValues) {
  std::vector<float> a(37), b(37);
  float want = 0;
  for (int i = 0; i < 37; ++i) {
    a[i] = static_cast<float>(i);
    b[i] = 0.5f;
    want += a[i] * b[i];
  }
  EXPECT_EQ(FixedOrderDot(a.data(), b.data(), 37), want);  // small integers: exact
  EXPECT_EQ(FixedOrderDot(a.data(), b.data(), 0), 0.0f);
}

}  // namespace
}  // namespace moe
