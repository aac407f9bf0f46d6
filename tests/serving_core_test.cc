// ServingCore: the served models and their lookup, submitting tasks through
// the batcher to the layers, the drain, and the request accounting.
#include "batching/serving_core.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/notification.h"
#include "common/seeded_random.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/moe_layer.h"
#include "model/presets.h"
#include "tests/status_matchers.h"

namespace moe {
namespace {

using ::moe::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

// The demo preset's routing at a small size: d_model 32, 8 experts of 48.
std::unique_ptr<MoeLayer> SmallLayer(uint64_t seed) {
  LayerSpec s = *PresetSpec("demo");
  s.d_model = s.expert.d_model = 32;
  s.expert.d_ff = 48;
  auto layer = MoeLayer::Create(MakeSyntheticWeights(s, seed), MoeLayerOptions());
  EXPECT_TRUE(layer.ok()) << layer.status();
  return *std::move(layer);
}

BatchQueueOptions Batching() {
  BatchQueueOptions b;
  b.max_batch_tokens = 16;
  b.max_queue_delay = absl::Microseconds(200);
  return b;
}

// Layers 0-3 and 8 of one model, as a multi-layer server names them.
std::vector<ModelToServe> Layers(const std::vector<int>& ids, RequestLimits limits = {}) {
  std::vector<ModelToServe> models;
  for (int l : ids) {
    ModelToServe m;
    m.layer = SmallLayer(100 + static_cast<uint64_t>(l));
    m.io = MakeModelIo("moe.layer" + std::to_string(l), *m.layer, limits);
    models.push_back(std::move(m));
  }
  return models;
}

// Submits `tokens` to `model` and waits for the answer.
absl::StatusOr<std::vector<float>> Infer(ServingCore& core, const ServedModel& model,
                                         std::vector<float> tokens) {
  auto task = std::make_shared<InferTask>();
  task->num_tokens = static_cast<int64_t>(tokens.size()) / model.io().d_model;
  task->tokens = std::move(tokens);
  absl::Notification done;
  absl::Status status;
  task->done = [&](const absl::Status& st, InferTask&) {
    status = st;
    done.Notify();
  };
  const absl::Status submitted = core.Submit(model, task);
  if (!submitted.ok()) return submitted;
  done.WaitForNotification();
  if (!status.ok()) return status;
  return task->output;
}

TEST(ServingCoreTest, MakeModelIoTakesTheLayersShapeAndTheLimits) {
  const auto layer = SmallLayer(1);
  RequestLimits limits;
  limits.max_request_tokens = 77;
  limits.allow_non_finite = true;
  const ModelIo io = MakeModelIo("m", *layer, limits);
  EXPECT_EQ(io.model_name, "m");
  EXPECT_EQ(io.d_model, 32);
  EXPECT_EQ(io.top_k, 2);
  EXPECT_EQ(io.num_experts, 8);
  EXPECT_EQ(io.limits.max_request_tokens, 77);
  EXPECT_TRUE(io.limits.allow_non_finite);
}

TEST(ServingCoreTest, FindsModelsByNameAndVersionAndNamesWhatIsServed) {
  ServingCore core(Layers({0, 1, 2, 3, 8}), Batching());
  ASSERT_EQ(core.num_models(), 5);
  EXPECT_EQ(core.ServedModelsDescription(), "'moe.layer<L>' for L in 0-3,8 (5 models)");
  ASSERT_OK_AND_ASSIGN(const ServedModel* m, core.FindModel("moe.layer8", ""));
  EXPECT_EQ(m->name(), "moe.layer8");
  EXPECT_EQ(m->index(), 4);
  ASSERT_OK_AND_ASSIGN(m, core.FindModel("moe.layer2", kModelVersion));
  EXPECT_EQ(m->index(), 2);
  EXPECT_THAT(
      core.FindModel("moe.layer4", ""),
      StatusIs(absl::StatusCode::kNotFound, AllOf(HasSubstr("unknown model 'moe.layer4'"),
                                                  HasSubstr("'moe.layer<L>' for L in 0-3,8"))));
  EXPECT_THAT(core.FindModel("moe.layer0", "2"),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("model 'moe.layer0' has no version '2' (versions: 1)")));

  ServingCore single(SmallLayer(1), MakeModelIo("moe", *SmallLayer(1), {}), Batching());
  EXPECT_EQ(single.ServedModelsDescription(), "'moe'");
  std::vector<ModelToServe> named = Layers({0});
  named.push_back(std::move(Layers({1})[0]));
  named[1].io.model_name = "other";
  ServingCore two(std::move(named), Batching());
  EXPECT_EQ(two.ServedModelsDescription(), "'moe.layer0', 'other'");
}

TEST(ServingCoreTest, EachModelAnswersWithItsOwnLayerBitwise) {
  ServingCore core(Layers({0, 1}), Batching());
  SeededRandom rng(7);
  const std::vector<float> tokens = rng.UniformVector(3 * 32, 1.0f);
  for (int l = 0; l < 2; ++l) {
    ASSERT_OK_AND_ASSIGN(const ServedModel* m, core.FindModel("moe.layer" + std::to_string(l), ""));
    ASSERT_OK_AND_ASSIGN(std::vector<float> got, Infer(core, *m, tokens));
    std::vector<float> want(tokens.size());
    ForwardOutputs out;
    out.output = want.data();
    auto alone = SmallLayer(100 + static_cast<uint64_t>(l));
    ASSERT_OK(alone->Forward(tokens.data(), 3, out));
    EXPECT_EQ(got, want) << "layer " << l;
  }
  EXPECT_EQ(core.QueuedTokens(), 0);
}

TEST(ServingCoreTest, DrainRefusesNewTasksAndCountsOutcomes) {
  ServingCore core(Layers({0}), Batching());
  const ServedModel& m = core.model(0);
  ASSERT_OK(Infer(core, m, std::vector<float>(32, 0.5f)).status());
  core.RecordUnrouted(absl::NotFoundError("no such model"));
  core.RecordUnrouted(absl::NotFoundError("no such model"));
  EXPECT_EQ(core.RequestsTotal("not_found"), 2);
  EXPECT_FALSE(core.draining());
  EXPECT_EQ(core.Drain(absl::Seconds(5)), 0);
  EXPECT_TRUE(core.draining());
  EXPECT_THAT(Infer(core, m, std::vector<float>(32, 0.5f)),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("draining")));
  const std::string metrics = core.RenderMetrics();
  EXPECT_THAT(metrics, HasSubstr("model=\"moe.layer0\""));
  EXPECT_THAT(metrics, HasSubstr("model=\"\""));
}

}  // namespace
}  // namespace moe
