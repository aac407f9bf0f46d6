// The gRPC front end through a real channel to an in-process server on
// 127.0.0.1:0: results, concurrency, streaming, validation, queue limits,
// deadlines, health, reflection, metadata, statistics and /metrics.
#include <grpcpp/generic/generic_stub.h>
#include <httplib.h>

#include <atomic>
#include <map>
#include <random>
#include <regex>
#include <sstream>
#include <thread>

#include "absl/synchronization/notification.h"
#include "batching/serving_core.h"
#include "frontend/model_descriptors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/health.grpc.pb.h"
#include "tests/naive_reference.h"
#include "tests/server_test_util.h"
#include "tests/status_matchers.h"

namespace moe {
namespace {

using ::moe::testing::InferRequest;
using ::moe::testing::OutputFloats;
using ::moe::testing::OutputInts;
using ::moe::testing::RandomTokens;
using ::moe::testing::Reference;
using ::moe::testing::SetDeadline;
using ::testing::HasSubstr;

constexpr int64_t kD = 64;

class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override { StartServer(::moe::testing::LocalOptions()); }

  void StartServer(const ServerOptions& options) {
    server_.reset();
    weights_ = ::moe::testing::SmallDemoWeights();
    reference_ = ::moe::testing::MakeLayer(weights_);
    auto server = MoeServer::Start(::moe::testing::MakeLayer(weights_), options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    stub_ = ::moe::testing::Stub(server_->local_grpc_address());
  }

  grpc::Status Infer(const inference::ModelInferRequest& req, inference::ModelInferResponse* resp,
                     absl::Duration deadline = absl::Seconds(30)) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx, deadline);
    return stub_->ModelInfer(&ctx, req, resp);
  }

  std::string Metrics() {
    httplib::Client cli("127.0.0.1", server_->metrics_port());
    auto res = cli.Get("/metrics");
    EXPECT_TRUE(res) << "GET /metrics failed";
    return res ? res->body : "";
  }

  LayerWeights weights_;
  std::unique_ptr<MoeLayer> reference_;
  std::unique_ptr<MoeServer> server_;
  std::unique_ptr<inference::GRPCInferenceService::Stub> stub_;
};

TEST_F(ServiceTest, InferEqualsLayerForwardBitwiseFp32) {
  auto tokens = RandomTokens(5 * kD, 1);
  auto req = InferRequest(tokens, kD, false, "abc");
  req.clear_outputs();
  req.add_outputs()->set_name("output");
  req.add_outputs()->set_name("expert_ids");
  req.add_outputs()->set_name("expert_weights");
  inference::ModelInferResponse resp;
  ASSERT_TRUE(Infer(req, &resp).ok());
  EXPECT_EQ(resp.id(), "abc");
  EXPECT_EQ(resp.model_name(), "moe");
  ASSERT_EQ(resp.outputs_size(), 3);
  EXPECT_EQ(resp.outputs(0).datatype(), "FP32");
  EXPECT_THAT(resp.outputs(0).shape(), ::testing::ElementsAre(5, kD));
  EXPECT_EQ(OutputFloats(resp, "output"), Reference(reference_.get(), tokens));
  // Routing outputs agree with the layer's.
  std::vector<int32_t> ids(10);
  std::vector<float> w(10), y(5 * kD);
  ForwardOutputs out;
  out.output = y.data();
  out.expert_ids = ids.data();
  out.expert_weights = w.data();
  ASSERT_OK(reference_->Forward(tokens.data(), 5, out));
  EXPECT_EQ(OutputInts(resp, "expert_ids"), ids);
  EXPECT_EQ(OutputFloats(resp, "expert_weights"), w);
  EXPECT_THAT(resp.outputs(1).shape(), ::testing::ElementsAre(5, 2));
}

// Adds the caller-supplied routing inputs (raw data) to a request.
void AddRouting(inference::ModelInferRequest* req, const std::vector<int32_t>& ids,
                const std::vector<float>& weights, int k) {
  const int64_t t = static_cast<int64_t>(ids.size()) / k;
  auto* in_ids = req->add_inputs();
  in_ids->set_name("expert_ids");
  in_ids->set_datatype("INT32");
  in_ids->add_shape(t);
  in_ids->add_shape(k);
  req->add_raw_input_contents(
      std::string(reinterpret_cast<const char*>(ids.data()), ids.size() * 4));
  auto* in_w = req->add_inputs();
  in_w->set_name("expert_weights");
  in_w->set_datatype("FP32");
  in_w->add_shape(t);
  in_w->add_shape(k);
  req->add_raw_input_contents(
      std::string(reinterpret_cast<const char*>(weights.data()), weights.size() * 4));
}

// The layer alone, in process, with `ids`/`weights` given for every token.
std::vector<float> ReferenceWithRouting(MoeLayer* layer, const std::vector<float>& tokens,
                                        const std::vector<int32_t>& ids,
                                        const std::vector<float>& weights) {
  const int64_t t = static_cast<int64_t>(tokens.size()) / kD;
  std::vector<float> y(tokens.size());
  std::vector<uint8_t> present(static_cast<size_t>(t), 1);
  ForwardOutputs out;
  out.output = y.data();
  TokenChoices choices;
  choices.routing = {present.data(), ids.data(), weights.data()};
  EXPECT_OK(layer->Forward(tokens.data(), t, out, choices));
  return y;
}

TEST_F(ServiceTest, CallerRoutingGivenTheServersOwnIsBitwiseTheSame) {
  auto tokens = RandomTokens(6 * kD, 31);
  auto own = InferRequest(tokens, kD);
  own.clear_outputs();  // none named: all three
  inference::ModelInferResponse first;
  ASSERT_TRUE(Infer(own, &first).ok());
  const auto ids = OutputInts(first, "expert_ids");
  const auto weights = OutputFloats(first, "expert_weights");
  auto again = InferRequest(tokens, kD);
  again.clear_outputs();
  AddRouting(&again, ids, weights, 2);
  inference::ModelInferResponse second;
  ASSERT_TRUE(Infer(again, &second).ok());
  EXPECT_EQ(OutputFloats(second, "output"), OutputFloats(first, "output"));
  EXPECT_EQ(OutputInts(second, "expert_ids"), ids);  // echoed
  EXPECT_EQ(OutputFloats(second, "expert_weights"), weights);
}

// Arbitrary valid routings from concurrent clients, some requests with and
// some without: each answer is bitwise the layer's, computed alone.
TEST_F(ServiceTest, CallerRoutingFromConcurrentClientsIsExact) {
  constexpr int kClients = 4, kEach = 8;
  std::vector<std::thread> clients;
  std::atomic<int> wrong{0}, failed{0};
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      auto stub = ::moe::testing::Stub(server_->local_grpc_address());
      for (int i = 0; i < kEach; ++i) {
        const int64_t t = 1 + (c * kEach + i) % 7;
        auto tokens = RandomTokens(t * kD, static_cast<uint32_t>(100 * c + i));
        auto req = InferRequest(tokens, kD);
        std::vector<float> want;
        if ((c + i) % 2 == 0) {
          std::vector<int32_t> ids;
          std::vector<float> weights;
          for (int64_t j = 0; j < t; ++j) {
            ids.push_back(static_cast<int32_t>((j + c) % 8));
            ids.push_back(static_cast<int32_t>((j + c + 3) % 8));
            weights.push_back(0.25f * static_cast<float>(i + 1));
            weights.push_back(-0.5f);
          }
          AddRouting(&req, ids, weights, 2);
          want = ReferenceWithRouting(reference_.get(), tokens, ids, weights);
        } else {
          want = Reference(reference_.get(), tokens);
        }
        grpc::ClientContext ctx;
        SetDeadline(&ctx, absl::Seconds(30));
        inference::ModelInferResponse resp;
        if (!stub->ModelInfer(&ctx, req, &resp).ok()) {
          ++failed;
        } else if (OutputFloats(resp, "output") != want) {
          ++wrong;
        }
      }
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(wrong.load(), 0);
}

TEST_F(ServiceTest, MalformedCallerRoutingIsInvalidArgumentNamingTheToken) {
  auto tokens = RandomTokens(2 * kD, 5);
  auto req = InferRequest(tokens, kD);
  AddRouting(&req, {1, 2, 3, 3}, {0.5f, 0.5f, 0.5f, 0.5f}, 2);
  inference::ModelInferResponse resp;
  grpc::Status st = Infer(req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("expert_ids[1]: expert 3 appears twice"));
  // The server goes on: the next request is answered.
  ASSERT_TRUE(Infer(InferRequest(tokens, kD), &resp).ok());
}

TEST_F(ServiceTest, InferEqualsLayerForwardBitwiseBf16Input) {
  auto tokens = RandomTokens(3 * kD, 2);
  inference::ModelInferResponse resp;
  ASSERT_TRUE(Infer(InferRequest(tokens, kD, /*bf16=*/true), &resp).ok());
  EXPECT_EQ(resp.outputs(0).datatype(), "BF16");
  // The server sees the bf16 values and answers in bf16.
  std::vector<float> rounded(tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) rounded[i] = RoundToBf16(tokens[i]);
  auto want = Reference(reference_.get(), rounded);
  for (float& v : want) v = RoundToBf16(v);
  EXPECT_EQ(OutputFloats(resp, "output"), want);
}

TEST_F(ServiceTest, TypedFp32ContentsWork) {
  auto tokens = RandomTokens(2 * kD, 3);
  auto req = InferRequest(tokens, kD);
  req.clear_raw_input_contents();
  for (float v : tokens) req.mutable_inputs(0)->mutable_contents()->add_fp32_contents(v);
  inference::ModelInferResponse resp;
  ASSERT_TRUE(Infer(req, &resp).ok());
  EXPECT_EQ(OutputFloats(resp, "output"), Reference(reference_.get(), tokens));
}

TEST_F(ServiceTest, ConcurrentClientsEachGetTheirOwnRows) {
  constexpr int kClients = 64;
  std::vector<std::vector<float>> inputs(kClients), outputs(kClients);
  std::vector<grpc::Status> statuses(kClients);
  std::vector<std::thread> threads;
  for (int c = 0; c < kClients; ++c) {
    inputs[c] = RandomTokens((1 + c % 9) * kD, 100 + c);
    threads.emplace_back([&, c] {
      auto stub = ::moe::testing::Stub(server_->local_grpc_address());
      grpc::ClientContext ctx;
      SetDeadline(&ctx, absl::Seconds(60));
      inference::ModelInferResponse resp;
      statuses[c] =
          stub->ModelInfer(&ctx, InferRequest(inputs[c], kD, false, std::to_string(c)), &resp);
      if (statuses[c].ok()) {
        EXPECT_EQ(resp.id(), std::to_string(c));
        outputs[c] = OutputFloats(resp, "output");
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int c = 0; c < kClients; ++c) {
    ASSERT_TRUE(statuses[c].ok()) << c << ": " << statuses[c].error_message();
    // Batched with others, yet bitwise what the token rows give alone.
    EXPECT_EQ(outputs[c], Reference(reference_.get(), inputs[c])) << "client " << c;
  }
}

TEST_F(ServiceTest, BatchCompositionNeverChangesAResult) {
  auto probe = RandomTokens(kD, 7);
  inference::ModelInferResponse alone;
  ASSERT_TRUE(Infer(InferRequest(probe, kD), &alone).ok());
  const auto want = OutputFloats(alone, "output");
  // The probe at different positions inside concurrent multi-token requests.
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0}, failures{0};
  for (int c = 0; c < 16; ++c) {
    threads.emplace_back([&, c] {
      auto tokens = RandomTokens(8 * kD, 500 + c);
      const int pos = c % 8;
      std::copy(probe.begin(), probe.end(), tokens.begin() + pos * kD);
      auto stub = ::moe::testing::Stub(server_->local_grpc_address());
      grpc::ClientContext ctx;
      SetDeadline(&ctx, absl::Seconds(60));
      inference::ModelInferResponse resp;
      if (!stub->ModelInfer(&ctx, InferRequest(tokens, kD), &resp).ok()) {
        ++failures;
        return;
      }
      auto y = OutputFloats(resp, "output");
      if (!std::equal(want.begin(), want.end(), y.begin() + pos * kD)) ++mismatches;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(mismatches.load(), 0);
}

TEST_F(ServiceTest, LargeRequestIsSplitAcrossBatchesAndReassembled) {
  auto tokens = RandomTokens(300 * kD, 9);  // max_batch_tokens is 64
  inference::ModelInferResponse resp;
  ASSERT_TRUE(Infer(InferRequest(tokens, kD), &resp).ok());
  EXPECT_EQ(OutputFloats(resp, "output"), Reference(reference_.get(), tokens));
}

TEST_F(ServiceTest, StreamAnswersInterleavedGoodAndBadRequests) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx, absl::Seconds(60));
  auto stream = stub_->ModelStreamInfer(&ctx);
  std::map<std::string, std::vector<float>> sent;
  for (int i = 0; i < 12; ++i) {
    const std::string id = "s" + std::to_string(i);
    auto tokens = RandomTokens((1 + i % 3) * kD, 40 + i);
    auto req = InferRequest(tokens, kD, false, id);
    if (i % 2 == 1) req.mutable_inputs(0)->set_shape(1, kD + 1);  // bad
    if (i % 2 == 0) sent[id] = tokens;
    ASSERT_TRUE(stream->Write(req));
  }
  stream->WritesDone();
  inference::ModelStreamInferResponse resp;
  int good = 0, bad = 0;
  while (stream->Read(&resp)) {
    const std::string& id = resp.infer_response().id();
    if (resp.error_message().empty()) {
      ++good;
      ASSERT_TRUE(sent.count(id)) << id;
      EXPECT_EQ(OutputFloats(resp.infer_response(), "output"),
                Reference(reference_.get(), sent[id]))
          << id;
    } else {
      ++bad;
      EXPECT_THAT(resp.error_message(), HasSubstr("shape[1] (d_model)")) << id;
      EXPECT_EQ(sent.count(id), 0u) << id;
    }
  }
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_EQ(good, 6);
  EXPECT_EQ(bad, 6);
}

TEST_F(ServiceTest, StreamCancelledMidFlightLeavesTheServerHealthy) {
  for (int round = 0; round < 5; ++round) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx, absl::Seconds(60));
    auto stream = stub_->ModelStreamInfer(&ctx);
    for (int i = 0; i < 20; ++i) {
      if (!stream->Write(
              InferRequest(RandomTokens(200 * kD, 900 + i), kD, false, std::to_string(i)))) {
        break;
      }
    }
    if (round % 2 == 0) absl::SleepFor(absl::Milliseconds(5 * round));
    ctx.TryCancel();
    grpc::Status st = stream->Finish();
    EXPECT_EQ(st.error_code(), grpc::StatusCode::CANCELLED) << st.error_message();
  }
  // Abandoned streams (the client object destroyed with requests in flight).
  for (int round = 0; round < 3; ++round) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    auto stream = stub_->ModelStreamInfer(ctx.get());
    stream->Write(InferRequest(RandomTokens(100 * kD, 950), kD));
    ctx->TryCancel();
    stream->Finish();
  }
  inference::ModelInferResponse resp;
  auto tokens = RandomTokens(2 * kD, 999);
  ASSERT_TRUE(Infer(InferRequest(tokens, kD), &resp).ok());
  EXPECT_EQ(OutputFloats(resp, "output"), Reference(reference_.get(), tokens));
}

TEST_F(ServiceTest, UnaryCancelledWhileQueuedIsDropped) {
  ServerOptions o = ::moe::testing::LocalOptions();
  o.batching.max_batch_tokens = 512;
  o.batching.max_queue_delay = absl::Seconds(2);
  StartServer(o);
  grpc::ClientContext ctx;
  inference::ModelInferResponse resp;
  absl::Notification done;
  grpc::Status status;
  const inference::ModelInferRequest req = InferRequest(RandomTokens(kD, 3), kD);
  stub_->async()->ModelInfer(&ctx, &req, &resp, [&](grpc::Status s) {
    status = s;
    done.Notify();
  });
  absl::SleepFor(absl::Milliseconds(100));
  ctx.TryCancel();
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED);
  for (int i = 0; i < 1000 && server_->core().RequestsTotal("cancelled") == 0; ++i) {
    absl::SleepFor(absl::Milliseconds(2));
  }
  EXPECT_EQ(server_->core().RequestsTotal("cancelled"), 1);
  inference::ModelStatistics stats;
  FillModelStatistics(server_->core().model(0), &stats);
  EXPECT_EQ(stats.execution_count(), 0u);  // never computed
}

TEST_F(ServiceTest, ValidationErrorsCarryTheirCodeAndMessage) {
  auto tokens = RandomTokens(2 * kD, 11);
  struct Case {
    std::function<void(inference::ModelInferRequest*)> mutate;
    grpc::StatusCode code;
    std::string message;
  };
  const std::vector<Case> cases = {
      {[](auto* r) { r->set_model_name("nope"); }, grpc::StatusCode::NOT_FOUND,
       "unknown model 'nope'"},
      {[](auto* r) { r->mutable_inputs(0)->set_name("x"); }, grpc::StatusCode::INVALID_ARGUMENT,
       "inputs[0].name"},
      {[](auto* r) { r->mutable_inputs(0)->set_datatype("INT8"); },
       grpc::StatusCode::INVALID_ARGUMENT, "'INT8'"},
      {[](auto* r) { r->mutable_inputs(0)->add_shape(1); }, grpc::StatusCode::INVALID_ARGUMENT,
       "rank 3"},
      {[](auto* r) { r->mutable_inputs(0)->set_shape(1, 63); }, grpc::StatusCode::INVALID_ARGUMENT,
       "expected 64, got 63"},
      {[](auto* r) { r->mutable_inputs(0)->set_shape(0, 0); }, grpc::StatusCode::INVALID_ARGUMENT,
       "got 0"},
      {[](auto* r) { r->mutable_inputs(0)->set_shape(0, 5000); },
       grpc::StatusCode::INVALID_ARGUMENT, "1..1024, got 5000"},
      {[](auto* r) { r->mutable_raw_input_contents(0)->pop_back(); },
       grpc::StatusCode::INVALID_ARGUMENT, "raw_input_contents[0]"},
      {[](auto* r) { r->mutable_inputs(0)->mutable_contents()->add_fp32_contents(1); },
       grpc::StatusCode::INVALID_ARGUMENT, "both"},
      {[](auto* r) {
         float nan = std::nanf("");
         std::memcpy(r->mutable_raw_input_contents(0)->data(), &nan, 4);
       },
       grpc::StatusCode::INVALID_ARGUMENT, "non-finite"},
  };
  for (const Case& c : cases) {
    auto req = InferRequest(tokens, kD);
    c.mutate(&req);
    inference::ModelInferResponse resp;
    grpc::Status st = Infer(req, &resp);
    EXPECT_EQ(st.error_code(), c.code) << c.message << ": " << st.error_message();
    EXPECT_THAT(st.error_message(), HasSubstr(c.message));
    // The server keeps serving.
    inference::ModelInferResponse ok;
    ASSERT_TRUE(Infer(InferRequest(tokens, kD), &ok).ok());
  }
}

TEST_F(ServiceTest, FullQueueReturnsUnavailable) {
  ServerOptions o = ::moe::testing::LocalOptions();
  o.batching.max_batch_tokens = 64;
  o.batching.max_queue_tokens = 8;
  o.limits.max_request_tokens = 8;
  o.batching.max_queue_delay = absl::Seconds(1);  // the first request waits in the queue
  StartServer(o);
  auto tokens = RandomTokens(6 * kD, 12);
  grpc::ClientContext first_ctx;
  SetDeadline(&first_ctx, absl::Seconds(30));
  inference::ModelInferResponse first_resp;
  grpc::Status first_status;
  absl::Notification first_done;
  const inference::ModelInferRequest first_req = InferRequest(tokens, kD);
  stub_->async()->ModelInfer(&first_ctx, &first_req, &first_resp, [&](grpc::Status s) {
    first_status = s;
    first_done.Notify();
  });
  // Wait until the first request is queued.
  for (int i = 0; i < 1000 && server_->core().RenderMetrics().find(
                                  "moe_queue_tokens{model=\"moe\"} 6") == std::string::npos;
       ++i) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  inference::ModelInferResponse resp;
  grpc::Status st = Infer(InferRequest(tokens, kD), &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();
  EXPECT_THAT(st.error_message(), HasSubstr("queue full"));
  ASSERT_TRUE(first_done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_TRUE(first_status.ok()) << first_status.error_message();
}

TEST_F(ServiceTest, DeadlineShorterThanTheQueueDelayIsExceededAndNotComputed) {
  ServerOptions o = ::moe::testing::LocalOptions();
  o.batching.max_batch_tokens = 512;
  o.batching.max_queue_delay = absl::Seconds(3);
  StartServer(o);
  {
    // Connect first, so the 200 ms below are the request's alone.
    grpc::ClientContext ctx;
    inference::ServerLiveResponse live;
    ASSERT_TRUE(stub_->ServerLive(&ctx, inference::ServerLiveRequest(), &live).ok());
  }
  auto tokens = RandomTokens(kD, 13);
  inference::ModelInferResponse resp;
  grpc::Status st = Infer(InferRequest(tokens, kD), &resp, absl::Milliseconds(200));
  EXPECT_EQ(st.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  // The server answered it as expired, and never ran it. (How soon it
  // answers is timed in timing_test.cc, label perf.)
  for (int i = 0; i < 2000 && server_->core().RequestsTotal("deadline_exceeded") == 0; ++i) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  EXPECT_EQ(server_->core().RequestsTotal("deadline_exceeded"), 1)
      << server_->core().RenderMetrics().substr(0, 600);
  inference::ModelStatistics stats;
  FillModelStatistics(server_->core().model(0), &stats);
  EXPECT_EQ(stats.execution_count(), 0u);
}

TEST_F(ServiceTest, HealthAndReflectionAnswer) {
  auto channel =
      grpc::CreateChannel(server_->local_grpc_address(), grpc::InsecureChannelCredentials());
  auto health = grpc::health::v1::Health::NewStub(channel);
  for (const char* service : {"", "inference.GRPCInferenceService"}) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx, absl::Seconds(10));
    grpc::health::v1::HealthCheckRequest req;
    req.set_service(service);
    grpc::health::v1::HealthCheckResponse resp;
    ASSERT_TRUE(health->Check(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING) << service;
  }
  // Reflection: list_services (field 7 of ServerReflectionRequest) through a
  // generic call, so no reflection stubs are needed here.
  grpc::GenericStub generic(channel);
  grpc::CompletionQueue cq;
  grpc::ClientContext ctx;
  SetDeadline(&ctx, absl::Seconds(10));
  auto call = generic.PrepareCall(
      &ctx, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  auto wait = [&cq](intptr_t want) {
    void* tag;
    bool ok = false;
    EXPECT_TRUE(cq.Next(&tag, &ok));
    EXPECT_EQ(reinterpret_cast<intptr_t>(tag), want);
    return ok;
  };
  call->StartCall(reinterpret_cast<void*>(1));
  ASSERT_TRUE(wait(1));
  grpc::Slice slice(std::string("\x3a\x00", 2));
  grpc::ByteBuffer request(&slice, 1);
  call->Write(request, reinterpret_cast<void*>(2));
  ASSERT_TRUE(wait(2));
  call->WritesDone(reinterpret_cast<void*>(3));
  ASSERT_TRUE(wait(3));
  grpc::ByteBuffer response;
  call->Read(&response, reinterpret_cast<void*>(4));
  ASSERT_TRUE(wait(4));
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(response.Dump(&slices).ok());
  std::string bytes;
  for (const auto& s : slices)
    bytes += std::string(reinterpret_cast<const char*>(s.begin()), s.size());
  EXPECT_THAT(bytes, HasSubstr("inference.GRPCInferenceService"));
  EXPECT_THAT(bytes, HasSubstr("grpc.health.v1.Health"));
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(5));
  wait(5);
  EXPECT_TRUE(status.ok()) << status.error_message();
}

TEST_F(ServiceTest, MetadataReadinessAndStatistics) {
  grpc::ClientContext c1, c2, c3, c4, c5;
  inference::ServerMetadataResponse sm;
  ASSERT_TRUE(stub_->ServerMetadata(&c1, inference::ServerMetadataRequest(), &sm).ok());
  EXPECT_EQ(sm.name(), "moe-serve");
  EXPECT_THAT(sm.extensions(), ::testing::Contains("statistics"));
  inference::ModelMetadataRequest mreq;
  mreq.set_name("moe");
  inference::ModelMetadataResponse mm;
  ASSERT_TRUE(stub_->ModelMetadata(&c2, mreq, &mm).ok());
  // The tokens, then the optional caller-supplied routing.
  ASSERT_EQ(mm.inputs_size(), 3);
  EXPECT_EQ(mm.inputs(0).name(), "input");
  EXPECT_THAT(mm.inputs(0).shape(), ::testing::ElementsAre(-1, kD));
  EXPECT_EQ(mm.inputs(1).name(), "expert_ids");
  EXPECT_EQ(mm.inputs(1).datatype(), "INT32");
  EXPECT_THAT(mm.inputs(1).shape(), ::testing::ElementsAre(-1, 2));
  EXPECT_EQ(mm.inputs(2).name(), "expert_weights");
  EXPECT_EQ(mm.inputs(2).datatype(), "FP32");
  ASSERT_EQ(mm.outputs_size(), 3);
  EXPECT_EQ(mm.outputs(1).name(), "expert_ids");
  EXPECT_THAT(mm.outputs(1).shape(), ::testing::ElementsAre(-1, 2));
  mreq.set_name("other");
  EXPECT_EQ(stub_->ModelMetadata(&c3, mreq, &mm).error_code(), grpc::StatusCode::NOT_FOUND);
  inference::ModelReadyRequest rreq;
  rreq.set_name("moe");
  inference::ModelReadyResponse ready;
  ASSERT_TRUE(stub_->ModelReady(&c4, rreq, &ready).ok());
  EXPECT_TRUE(ready.ready());

  for (int i = 0; i < 3; ++i) {
    inference::ModelInferResponse resp;
    ASSERT_TRUE(Infer(InferRequest(RandomTokens(4 * kD, 60 + i), kD), &resp).ok());
  }
  inference::ModelStatisticsRequest sreq;
  sreq.set_name("moe");
  inference::ModelStatisticsResponse stats;
  ASSERT_TRUE(stub_->ModelStatistics(&c5, sreq, &stats).ok());
  ASSERT_EQ(stats.model_stats_size(), 1);
  const auto& s = stats.model_stats(0);
  EXPECT_EQ(s.inference_stats().success().count(), 3u);
  EXPECT_EQ(s.inference_count(), 12u);  // tokens
  EXPECT_GE(s.execution_count(), 1u);
  uint64_t batched = 0;
  for (const auto& b : s.batch_stats()) batched += b.batch_size() * b.compute_infer().count();
  EXPECT_EQ(batched, 12u);
}

TEST_F(ServiceTest, MetricsParseAsPrometheusTextAndCountRequests) {
  for (int i = 0; i < 5; ++i) {
    inference::ModelInferResponse resp;
    ASSERT_TRUE(Infer(InferRequest(RandomTokens(3 * kD, 70 + i), kD), &resp).ok());
  }
  for (int i = 0; i < 2; ++i) {
    auto bad = InferRequest(RandomTokens(3 * kD, 80), kD);
    bad.mutable_inputs(0)->set_datatype("FP64");
    inference::ModelInferResponse resp;
    ASSERT_FALSE(Infer(bad, &resp).ok());
  }
  const std::string text = Metrics();
  const std::regex sample(
      R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? (-?[0-9.eE+-]+|\+Inf|-Inf|NaN)$)");
  const std::regex comment(R"(^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+$)");
  std::map<std::string, double> values;
  std::istringstream lines(text);
  std::string line;
  int samples = 0;
  while (std::getline(lines, line)) {
    if (line.empty()) continue;
    if (line[0] == '#') {
      EXPECT_TRUE(std::regex_match(line, comment)) << line;
      continue;
    }
    std::smatch m;
    ASSERT_TRUE(std::regex_match(line, m, sample)) << line;
    const size_t space = line.rfind(' ');
    values[line.substr(0, space)] = std::stod(line.substr(space + 1));
    ++samples;
  }
  EXPECT_GT(samples, 50);
  EXPECT_EQ(values["moe_requests_total{model=\"moe\",outcome=\"ok\"}"], 5);
  EXPECT_EQ(values["moe_requests_total{model=\"moe\",outcome=\"invalid_argument\"}"], 2);
  EXPECT_EQ(values["moe_tokens_in_total{model=\"moe\"}"], 15);
  EXPECT_EQ(values["moe_tokens_out_total{model=\"moe\"}"], 15);
  // Successful requests only: the two rejections are not in the histogram.
  EXPECT_EQ(values["moe_request_duration_seconds_count{model=\"moe\"}"], 5);
  double routed = 0;
  for (int e = 0; e < 8; ++e) {
    routed += values["moe_expert_tokens_total{model=\"moe\",expert=\"" + std::to_string(e) + "\"}"];
  }
  EXPECT_EQ(routed, 15 * 2);  // top-2
  EXPECT_EQ(values["moe_batch_tokens_sum{model=\"moe\"}"], 15);
  EXPECT_EQ(values["moe_queue_tokens{model=\"moe\"}"], 0);
  EXPECT_THAT(text, HasSubstr("moe_model_info{model=\"moe\",family=\"mixtral\",d_model=\"64\""));
  EXPECT_THAT(text,
              ::testing::ContainsRegex("moe_model_info\\{[^}]*,weight_bytes=\"[1-9][0-9]*\"\\} 1"));
  EXPECT_THAT(text, ::testing::ContainsRegex(
                        "moe_build_info\\{version=\"[0-9.]+\",commit=\"[0-9a-z-]+\"\\} 1"));
  // The process collector's series ride along on every scrape.
  EXPECT_GT(values["process_resident_memory_bytes"], 0);
  EXPECT_GT(values["process_open_fds"], 0);
}

}  // namespace
}  // namespace moe
