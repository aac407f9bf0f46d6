// One server, several layers: every layer of a checkpoint served as the
// model <name>.layer<L>, batched per layer on one compute. Each served
// layer answers bitwise what a single-layer server of it answers; the
// protocol (index, metadata, statistics, metrics, NOT_FOUND) covers every
// layer. Checked on a synthetic 8-layer sharded checkpoint and on the
// shared fixtures' two-layer checkpoints (a dense and an MoE layer).
#include <httplib.h>

#include <filesystem>
#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "batching/serving_core.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/checkpoint_loader.h"
#include "model/checkpoint_writer.h"
#include "model/presets.h"
#include "tests/naive_reference.h"
#include "tests/server_test_util.h"
#include "tests/status_matchers.h"
#include "tests/test_files.h"

namespace moe {
namespace {

using ::moe::testing::LocalOptions;
using ::moe::testing::MakeLayer;
using ::moe::testing::OutputFloats;
using ::moe::testing::RandomTokens;
using ::moe::testing::Reference;
using ::moe::testing::SetDeadline;
using ::moe::testing::Stub;
using ::moe::testing::TempDir;
using ::testing::HasSubstr;

constexpr int kLayers = 8;
constexpr int64_t kDModel = 64;

// Layer l of the synthetic checkpoint: the demo's routing, small, its own
// weights per layer.
LayerWeights SyntheticLayer(int l) {
  LayerSpec s = *PresetSpec("demo");
  s.d_model = s.expert.d_model = kDModel;
  s.expert.d_ff = 96;
  return MakeSyntheticWeights(s, 1000 + static_cast<uint64_t>(l));
}

// Serves `layers` of `dir` as <name>.layer<L>; `refs` gets each layer alone.
struct MultiLayerServer {
  std::unique_ptr<MoeServer> server;
  std::vector<std::unique_ptr<MoeLayer>> refs;
  std::vector<std::string> names;
};

MultiLayerServer ServeLayers(const std::string& dir, const std::vector<int>& layers,
                             DType compute = DType::kF32) {
  MultiLayerServer out;
  std::vector<std::unique_ptr<MoeLayer>> served;
  for (int l : layers) {
    auto w = LoadHfLayer(dir, l);
    EXPECT_TRUE(w.ok()) << w.status();
    served.push_back(MakeLayer(*w, compute));
    out.refs.push_back(MakeLayer(*w, compute));
    out.names.push_back(absl::StrCat("moe.layer", l));
  }
  auto server = MoeServer::Start(std::move(served), out.names, LocalOptions());
  EXPECT_TRUE(server.ok()) << server.status();
  if (server.ok()) out.server = *std::move(server);
  return out;
}

inference::ModelInferResponse Infer(inference::GRPCInferenceService::Stub* stub,
                                    const std::string& model, const std::vector<float>& tokens,
                                    int64_t d_model, grpc::Status* status) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx, absl::Seconds(60));
  inference::ModelInferResponse resp;
  *status = stub->ModelInfer(
      &ctx, BuildInferRequest(model, tokens, d_model, false, "", /*want_routing=*/false), &resp);
  return resp;
}

class MultiLayerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    ASSERT_OK(WriteHfLayers(
        kLayers, 3, [](int l) -> absl::StatusOr<LayerWeights> { return SyntheticLayer(l); },
        dir_->path()));
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    std::vector<int> all;
    for (int l = 0; l < kLayers; ++l) all.push_back(l);
    served_ = ServeLayers(dir_->path(), all);
    ASSERT_NE(served_.server, nullptr);
    stub_ = Stub(served_.server->local_grpc_address());
  }

  static TempDir* dir_;
  MultiLayerServer served_;
  std::unique_ptr<inference::GRPCInferenceService::Stub> stub_;
};

TempDir* MultiLayerTest::dir_ = nullptr;

TEST_F(MultiLayerTest, EveryLayerAnswersAsTheLayerAlone) {
  const auto tokens = RandomTokens(5 * kDModel, 3);
  for (int l = 0; l < kLayers; ++l) {
    grpc::Status st;
    auto resp = Infer(stub_.get(), served_.names[l], tokens, kDModel, &st);
    ASSERT_TRUE(st.ok()) << served_.names[l] << ": " << st.error_message();
    EXPECT_EQ(resp.model_name(), served_.names[l]);
    EXPECT_EQ(OutputFloats(resp, "output"), Reference(served_.refs[l].get(), tokens))
        << served_.names[l];
  }
  // Layers differ: the same tokens give different answers.
  grpc::Status st;
  EXPECT_NE(OutputFloats(Infer(stub_.get(), "moe.layer0", tokens, kDModel, &st), "output"),
            OutputFloats(Infer(stub_.get(), "moe.layer1", tokens, kDModel, &st), "output"));
}

TEST_F(MultiLayerTest, AServedLayerEqualsASingleLayerServerOfIt) {
  auto w = LoadHfLayer(dir_->path(), 5);
  ASSERT_OK(w);
  auto single = MoeServer::Start(MakeLayer(*w), LocalOptions());
  ASSERT_OK(single);
  auto single_stub = Stub((*single)->local_grpc_address());
  const auto tokens = RandomTokens(7 * kDModel, 11);
  grpc::Status a, b;
  auto from_multi = Infer(stub_.get(), "moe.layer5", tokens, kDModel, &a);
  auto from_single = Infer(single_stub.get(), "moe", tokens, kDModel, &b);
  ASSERT_TRUE(a.ok() && b.ok()) << a.error_message() << b.error_message();
  EXPECT_EQ(OutputFloats(from_multi, "output"), OutputFloats(from_single, "output"));
}

// 8 clients walk the layers in order, like a pipeline, each feeding a
// layer's output to the next: every step is the layer-alone answer.
TEST_F(MultiLayerTest, PipelineClientsWalkingTheLayersGetExactAnswers) {
  constexpr int kClients = 8;
  std::vector<std::thread> clients;
  std::vector<std::string> errors(kClients);
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      auto stub = Stub(served_.server->local_grpc_address());
      std::vector<float> x = RandomTokens((1 + c % 3) * kDModel, 100 + static_cast<uint32_t>(c));
      for (int l = 0; l < kLayers; ++l) {
        grpc::Status st;
        auto resp = Infer(stub.get(), served_.names[l], x, kDModel, &st);
        if (!st.ok()) {
          errors[c] = absl::StrCat(served_.names[l], ": ", st.error_message());
          return;
        }
        std::vector<float> y = OutputFloats(resp, "output");
        if (y != Reference(served_.refs[l].get(), x)) {
          errors[c] = absl::StrCat(served_.names[l], ": differs from the layer alone");
          return;
        }
        x = std::move(y);
      }
    });
  }
  for (auto& t : clients) t.join();
  for (int c = 0; c < kClients; ++c) EXPECT_EQ(errors[c], "") << "client " << c;
}

TEST_F(MultiLayerTest, UnknownLayerIsNotFoundNamingTheServedRange) {
  grpc::Status st;
  Infer(stub_.get(), "moe.layer9", RandomTokens(kDModel, 1), kDModel, &st);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(st.error_message(), HasSubstr("unknown model 'moe.layer9'"));
  EXPECT_THAT(st.error_message(), HasSubstr("'moe.layer<L>' for L in 0-7 (8 models)"));
  grpc::ClientContext ctx;
  inference::ModelMetadataRequest req;
  req.set_name("moe");
  inference::ModelMetadataResponse meta;
  EXPECT_EQ(stub_->ModelMetadata(&ctx, req, &meta).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(served_.server->core().RequestsTotal("not_found"), 1);
}

TEST_F(MultiLayerTest, IndexMetadataReadinessAndStatisticsCoverEveryLayer) {
  {
    grpc::ClientContext ctx;
    inference::RepositoryIndexRequest req;
    inference::RepositoryIndexResponse index;
    ASSERT_TRUE(stub_->RepositoryIndex(&ctx, req, &index).ok());
    ASSERT_EQ(index.models_size(), kLayers);
    for (int l = 0; l < kLayers; ++l) {
      EXPECT_EQ(index.models(l).name(), absl::StrCat("moe.layer", l));
      EXPECT_EQ(index.models(l).state(), "READY");
    }
  }
  for (int l : {0, 7}) {
    grpc::ClientContext ctx;
    inference::ModelMetadataRequest req;
    req.set_name(absl::StrCat("moe.layer", l));
    inference::ModelMetadataResponse meta;
    ASSERT_TRUE(stub_->ModelMetadata(&ctx, req, &meta).ok());
    EXPECT_EQ(meta.name(), req.name());
    EXPECT_EQ(meta.inputs(0).shape(1), kDModel);
    grpc::ClientContext rctx;
    inference::ModelReadyRequest ready_req;
    ready_req.set_name(req.name());
    inference::ModelReadyResponse ready;
    ASSERT_TRUE(stub_->ModelReady(&rctx, ready_req, &ready).ok());
    EXPECT_TRUE(ready.ready());
  }
  grpc::Status st;
  Infer(stub_.get(), "moe.layer2", RandomTokens(3 * kDModel, 1), kDModel, &st);
  ASSERT_TRUE(st.ok());
  {
    grpc::ClientContext ctx;
    inference::ModelStatisticsRequest req;  // no name: every model
    inference::ModelStatisticsResponse stats;
    ASSERT_TRUE(stub_->ModelStatistics(&ctx, req, &stats).ok());
    ASSERT_EQ(stats.model_stats_size(), kLayers);
    for (int l = 0; l < kLayers; ++l) {
      EXPECT_EQ(stats.model_stats(l).name(), absl::StrCat("moe.layer", l));
      EXPECT_EQ(stats.model_stats(l).inference_count(), l == 2 ? 3u : 0u) << l;
    }
  }
  {
    grpc::ClientContext ctx;
    inference::ModelStatisticsRequest req;
    req.set_name("moe.layer2");
    inference::ModelStatisticsResponse stats;
    ASSERT_TRUE(stub_->ModelStatistics(&ctx, req, &stats).ok());
    ASSERT_EQ(stats.model_stats_size(), 1);
    EXPECT_EQ(stats.model_stats(0).inference_stats().success().count(), 1u);
  }
}

// One exposition: each family's HELP/TYPE once, a series per layer, the
// expert counter by model and expert; REST serves the layers too.
TEST_F(MultiLayerTest, OneMetricsExpositionAndRestCoverEveryLayer) {
  grpc::Status st;
  Infer(stub_.get(), "moe.layer3", RandomTokens(4 * kDModel, 1), kDModel, &st);
  ASSERT_TRUE(st.ok());
  Infer(stub_.get(), "nope", RandomTokens(kDModel, 1), kDModel, &st);
  httplib::Client cli("127.0.0.1", served_.server->metrics_port());
  auto res = cli.Get("/metrics");
  ASSERT_TRUE(res);
  const std::string& text = res->body;
  std::map<std::string, int> types;
  for (size_t at = text.find("# TYPE "); at != std::string::npos;
       at = text.find("# TYPE ", at + 1)) {
    const size_t name_end = text.find(' ', at + 7);
    ++types[text.substr(at + 7, name_end - at - 7)];
  }
  for (const auto& [family, count] : types) EXPECT_EQ(count, 1) << family;
  EXPECT_THAT(text, HasSubstr("moe_tokens_in_total{model=\"moe.layer3\"} 4\n"));
  EXPECT_THAT(text, HasSubstr("moe_tokens_in_total{model=\"moe.layer0\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("moe_requests_total{model=\"moe.layer3\",outcome=\"ok\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("moe_requests_total{model=\"\",outcome=\"not_found\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("moe_expert_tokens_total{model=\"moe.layer7\",expert=\"0\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("moe_model_info{model=\"moe.layer5\""));

  httplib::Client rest("127.0.0.1", served_.server->http_port());
  auto meta = rest.Get("/v2/models/moe.layer6");
  ASSERT_TRUE(meta);
  EXPECT_EQ(meta->status, 200);
  EXPECT_THAT(meta->body, HasSubstr("\"name\":\"moe.layer6\""));
  auto missing = rest.Get("/v2/models/moe.layer8/ready");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 400);
  auto index = rest.Post("/v2/repository/index", "{}", "application/json");
  ASSERT_TRUE(index);
  EXPECT_THAT(index->body, HasSubstr("\"moe.layer7\""));
}

// The shared fixtures' two-layer checkpoints of every family, served
// whole: DeepSeek-V3's dense layer 0 and MoE layer 1, Mixtral's and OLMoE's
// sharded files, FP8 and MXFP4 experts, a dense LLaMA.
TEST(MultiLayerFixturesTest, DenseAndMoeLayersOfAFixtureAnswerAsEachAlone) {
  for (const char* family : {"deepseek_v3", "deepseek_v3_fp8", "gpt_oss_mxfp4", "llama", "mixtral",
                             "olmoe", "qwen2_moe", "qwen3_moe"}) {
    const std::string dir = std::string(MOE_FIXTURES_DIR) + "/" + family;
    if (!std::filesystem::exists(dir + "/config.json")) {
      GTEST_SKIP() << "conformance fixtures not found at " << dir;
    }
    SCOPED_TRACE(family);
    auto count = HfLayerCount(dir);
    ASSERT_OK(count);
    std::vector<int> all;
    for (int l = 0; l < *count; ++l) all.push_back(l);
    MultiLayerServer served = ServeLayers(dir, all);
    ASSERT_NE(served.server, nullptr);
    if (std::string(family) == "deepseek_v3") {
      EXPECT_TRUE(served.refs[0]->spec().dense);
      EXPECT_FALSE(served.refs[1]->spec().dense);
    }
    auto stub = Stub(served.server->local_grpc_address());
    const int64_t d = served.refs[0]->d_model();
    const auto tokens = RandomTokens(6 * d, 21);
    for (size_t l = 0; l < all.size(); ++l) {
      grpc::Status st;
      auto resp = Infer(stub.get(), served.names[l], tokens, d, &st);
      ASSERT_TRUE(st.ok()) << served.names[l] << ": " << st.error_message();
      EXPECT_EQ(OutputFloats(resp, "output"), Reference(served.refs[l].get(), tokens))
          << served.names[l];
    }
  }
}

}  // namespace
}  // namespace moe
