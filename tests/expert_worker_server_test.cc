// ExpertWorkerServer in process on loopback port 0: what a front end
// checks before it sends work (Info, health), the metrics it scrapes,
// bitwise equality of a RemoteExpertBackend on in-process workers with the
// in-process layer, and shutdown.
#include "workers/expert_worker_server.h"

#include <httplib.h>

#include <cstring>

#include "experts/packed_matmul.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/moe_layer.h"
#include "model/presets.h"
#include "proto/expert_service.grpc.pb.h"
#include "proto/health.grpc.pb.h"
#include "tests/naive_reference.h"
#include "tests/server_test_util.h"
#include "tests/status_matchers.h"
#include "workers/remote_expert_backend.h"

namespace moe {
namespace {

using ::moe::testing::RandomTokens;
using ::moe::testing::SetDeadline;
using ::moe::testing::StatusIs;
using ::testing::HasSubstr;

ExpertWorkerOptions LoopbackOptions() {
  ExpertWorkerOptions o;
  o.listen_host = "127.0.0.1";
  o.grpc_port = 0;
  o.metrics_port = 0;
  return o;
}

// A worker hosting `experts` of `w` at `compute`.
std::unique_ptr<ExpertWorkerServer> StartWorker(const LayerWeights& w, DType compute,
                                                const std::vector<int>& experts,
                                                ExpertWorkerOptions options = LoopbackOptions()) {
  auto hosted = MakeHostedLayer(w, compute, experts, /*layer=*/0);
  EXPECT_TRUE(hosted.ok()) << hosted.status();
  if (!hosted.ok()) return nullptr;
  std::vector<HostedLayer> layers;
  layers.push_back(*std::move(hosted));
  auto server = ExpertWorkerServer::Start(std::move(layers), options);
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? *std::move(server) : nullptr;
}

absl::StatusOr<moe::v1::InfoResponse> Info(const std::string& address, int layer) {
  auto stub = moe::v1::ExpertService::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  SetDeadline(&ctx, absl::Seconds(10));
  moe::v1::InfoRequest req;
  req.set_layer(layer);
  moe::v1::InfoResponse info;
  const grpc::Status st = stub->Info(&ctx, req, &info);
  if (!st.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(st.error_code()), st.error_message());
  }
  return info;
}

TEST(ExpertWorkerServerTest, AnswersInfoHealthAndMetricsOnFreePorts) {
  ASSERT_OK_AND_ASSIGN(LayerWeights w, MakePreset("demo"));
  auto server = StartWorker(w, DType::kF32, {0, 1, 2, 3});
  ASSERT_NE(server, nullptr);
  EXPECT_GT(server->grpc_port(), 0);
  EXPECT_GT(server->metrics_port(), 0);

  ASSERT_OK_AND_ASSIGN(auto info, Info(server->local_grpc_address(), 0));
  EXPECT_THAT(info.experts(), ::testing::ElementsAre(0, 1, 2, 3));
  EXPECT_EQ(info.d_model(), w.spec.d_model);
  EXPECT_EQ(info.d_ff(), w.spec.expert.d_ff);
  EXPECT_EQ(info.dtype(), "f32");
  EXPECT_EQ(info.weights_checksum(), ExpertWeightsChecksum(w, {0, 1, 2, 3}));
  EXPECT_FALSE(info.kernel().empty());
  EXPECT_THAT(Info(server->local_grpc_address(), 5),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("layer 5")));

  auto health = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel(server->local_grpc_address(), grpc::InsecureChannelCredentials()));
  for (const char* service : {"", "moe.v1.ExpertService"}) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx, absl::Seconds(10));
    grpc::health::v1::HealthCheckRequest req;
    req.set_service(service);
    grpc::health::v1::HealthCheckResponse resp;
    ASSERT_TRUE(health->Check(&ctx, req, &resp).ok()) << service;
    EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING) << service;
  }

  httplib::Client cli("127.0.0.1", server->metrics_port());
  auto res = cli.Get("/metrics");
  ASSERT_TRUE(res) << "no answer from /metrics";
  EXPECT_EQ(res->status, 200);
  EXPECT_THAT(res->body, HasSubstr("moe_worker_runs_total"));
}

TEST(ExpertWorkerServerTest, RemoteBackendOnInProcessWorkersMatchesTheLayerBitwise) {
  for (DType compute : {DType::kF32, DType::kI8}) {
    ASSERT_OK_AND_ASSIGN(LayerWeights w, MakePreset("demo"));
    ASSERT_EQ(w.spec.num_experts(), 8);
    auto a = StartWorker(w, compute, {0, 1, 2, 3});
    auto b = StartWorker(w, compute, {4, 5, 6});
    ASSERT_NE(a, nullptr);
    ASSERT_NE(b, nullptr);
    ASSERT_OK_AND_ASSIGN(
        auto shards, ParseExpertWorkerSpec(
                         "0-3=" + a->local_grpc_address() + ";4-6=" + b->local_grpc_address(), 8));
    MatmulCacheRegistry registry;
    ASSERT_OK_AND_ASSIGN(auto local_expert, CreateLocalBackend(w, compute, &registry, {7}));
    RemoteBackendOptions remote_options;
    remote_options.startup_timeout = absl::Seconds(30);
    ASSERT_OK_AND_ASSIGN(
        auto remote,
        RemoteExpertBackend::Create(shards, w, compute, std::move(local_expert), remote_options));
    MoeLayerOptions options;
    options.compute = compute;
    ASSERT_OK_AND_ASSIGN(auto distributed, MoeLayer::Create(w, options, std::move(remote)));
    ASSERT_OK_AND_ASSIGN(auto in_process, MoeLayer::Create(w, options));
    for (int64_t t : {1, 37}) {
      auto x = RandomTokens(t * w.spec.d_model, static_cast<uint32_t>(t));
      std::vector<float> y1(x.size()), y2(x.size());
      ForwardOutputs o1, o2;
      o1.output = y1.data();
      o2.output = y2.data();
      ASSERT_OK(distributed->Forward(x.data(), t, o1));
      ASSERT_OK(in_process->Forward(x.data(), t, o2));
      EXPECT_EQ(0, std::memcmp(y1.data(), y2.data(), y1.size() * sizeof(float)))
          << DTypeName(compute) << " T=" << t;
    }
    EXPECT_THAT(a->RenderMetrics(), HasSubstr("moe_worker_rows_total"));
  }
}

TEST(ExpertWorkerServerTest, ShutdownClosesThePortAndIsIdempotent) {
  ASSERT_OK_AND_ASSIGN(LayerWeights w, MakePreset("demo"));
  auto server = StartWorker(w, DType::kF32, {0, 1});
  ASSERT_NE(server, nullptr);
  const std::string address = server->local_grpc_address();
  ASSERT_OK(Info(address, 0).status());
  server->Shutdown(absl::Seconds(5));
  server->Shutdown(absl::Seconds(5));
  EXPECT_THAT(Info(address, 0), StatusIs(absl::StatusCode::kUnavailable, ::testing::_));
}

TEST(ExpertWorkerServerTest, RefusesNoLayersAndAnAddressItCannotBind) {
  EXPECT_THAT(ExpertWorkerServer::Start({}, LoopbackOptions()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("at least one layer")));
  ASSERT_OK_AND_ASSIGN(LayerWeights w, MakePreset("demo"));
  ExpertWorkerOptions bad = LoopbackOptions();
  bad.listen_host = "192.0.2.1";  // TEST-NET-1: never an address of this host
  ASSERT_OK_AND_ASSIGN(auto hosted, MakeHostedLayer(w, DType::kF32, {0}, 0));
  std::vector<HostedLayer> layers;
  layers.push_back(std::move(hosted));
  EXPECT_THAT(ExpertWorkerServer::Start(std::move(layers), bad),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("192.0.2.1:0")));
}

}  // namespace
}  // namespace moe
