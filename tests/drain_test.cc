// Graceful drain under load: every accepted request finishes OK, the rest
// get UNAVAILABLE, none is lost or left hanging, health turns NOT_SERVING.
#include <atomic>
#include <thread>
#include <vector>
#include <string>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "proto/health.grpc.pb.h"
#include "server/serving_core.h"
#include "tests/naive_reference.h"
#include "tests/server_test_util.h"

namespace moe {
namespace {

using ::moe::testing::InferRequest;
using ::moe::testing::OutputFloats;
using ::moe::testing::RandomTokens;
using ::moe::testing::Reference;
using ::moe::testing::SetDeadline;

TEST(DrainTest, ShutdownUnderLoadLosesNothing) {
  LayerWeights w = ::moe::testing::SmallDemoWeights();
  auto reference = ::moe::testing::MakeLayer(w);
  ServerOptions options = ::moe::testing::LocalOptions();
  auto server_or = MoeServer::Start(::moe::testing::MakeLayer(w), options);
  ASSERT_TRUE(server_or.ok()) << server_or.status();
  std::unique_ptr<MoeServer> server = *std::move(server_or);
  const std::string address = server->local_grpc_address();

  constexpr int kClients = 8;
  std::atomic<bool> stop{false};
  std::atomic<int64_t> ok{0}, unavailable{0}, wrong{0}, other{0};
  std::atomic<int64_t> ok_after_reject{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      auto stub = ::moe::testing::Stub(address);
      bool rejected = false;
      int local_rejections = 0;
      for (int i = 0; !stop.load(); ++i) {
        auto tokens = RandomTokens((1 + (c + i) % 5) * 64, static_cast<uint32_t>(c * 100000 + i));
        grpc::ClientContext ctx;
        SetDeadline(&ctx, absl::Seconds(60));
        inference::ModelInferResponse resp;
        grpc::Status st = stub->ModelInfer(&ctx, InferRequest(tokens, 64), &resp);
        if (st.ok()) {
          ++ok;
          if (rejected) ++ok_after_reject;
          if (OutputFloats(resp, "output") != Reference(reference.get(), tokens)) ++wrong;
        } else if (st.error_code() == grpc::StatusCode::UNAVAILABLE) {
          ++unavailable;
          rejected = true;
          // A client that sees UNAVAILABLE backs off and retries a few
          // times, as a failing-over client would, then gives up.
          if (++local_rejections > 3) return;
          absl::SleepFor(absl::Milliseconds(20));
        } else {
          ++other;
          ADD_FAILURE() << st.error_code() << ": " << st.error_message();
        }
      }
    });
  }
  // Let load build up, then drain while it runs.
  while (ok.load() < 200) absl::SleepFor(absl::Milliseconds(5));
  const int64_t cut = server->Shutdown(absl::Seconds(30));
  stop.store(true);
  for (auto& t : clients) t.join();

  EXPECT_EQ(cut, 0);
  EXPECT_GT(ok.load(), 0);
  EXPECT_GT(unavailable.load(), 0);  // requests after the drain began
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(other.load(), 0);
  // Once a client saw UNAVAILABLE, nothing it sent later was accepted.
  EXPECT_EQ(ok_after_reject.load(), 0);
  // Every accepted request was answered OK (the server counted them).
  EXPECT_EQ(server->core().metrics().RequestsTotal("ok"), static_cast<double>(ok.load()));
}

// Clients that resend the moment they are rejected, as an independent
// client without backoff does: through the drain they see only OK and
// UNAVAILABLE, never CANCELLED (gRPC 1.51 cancels calls that race its own
// shutdown; the drain's last step holds answers so that none does). Five
// drains in a row, each on a fresh server.
void DrainWithClientsThatNeverBackOff(int clients_n) {
  LayerWeights w = ::moe::testing::SmallDemoWeights();
  auto reference = ::moe::testing::MakeLayer(w);
  for (int round = 0; round < 5; ++round) {
    SCOPED_TRACE(absl::StrCat(clients_n, " clients, drain ", round + 1, " of 5"));
    auto server_or = MoeServer::Start(::moe::testing::MakeLayer(w), ::moe::testing::LocalOptions());
    ASSERT_TRUE(server_or.ok()) << server_or.status();
    std::unique_ptr<MoeServer> server = *std::move(server_or);
    const std::string address = server->local_grpc_address();
    std::atomic<bool> stop{false};
    std::atomic<int64_t> ok{0}, unavailable{0}, cancelled{0}, wrong{0}, other{0};
    std::atomic<int64_t> ok_after_reject{0};
    std::vector<std::thread> clients;
    for (int c = 0; c < clients_n; ++c) {
      clients.emplace_back([&, c] {
        auto stub = ::moe::testing::Stub(address);
        bool rejected = false;
        for (int i = 0; !stop.load(); ++i) {
          auto tokens = RandomTokens((1 + (c + i) % 16) * 64, static_cast<uint32_t>(c * 100000 + i));
          grpc::ClientContext ctx;
          SetDeadline(&ctx, absl::Seconds(60));
          inference::ModelInferResponse resp;
          grpc::Status st = stub->ModelInfer(&ctx, InferRequest(tokens, 64), &resp);
          if (st.ok()) {
            ++ok;
            if (rejected) ++ok_after_reject;
            if (OutputFloats(resp, "output") != Reference(reference.get(), tokens)) ++wrong;
          } else if (st.error_code() == grpc::StatusCode::UNAVAILABLE) {
            ++unavailable;
            rejected = true;  // and resend at once
          } else if (st.error_code() == grpc::StatusCode::CANCELLED) {
            ++cancelled;
          } else if (++other == 1) {
            ADD_FAILURE() << st.error_code() << ": " << st.error_message();
          }
        }
      });
    }
    while (ok.load() < 100) absl::SleepFor(absl::Milliseconds(2));
    const int64_t cut = server->Shutdown(absl::Seconds(30));
    stop.store(true);
    for (auto& t : clients) t.join();
    EXPECT_EQ(cut, 0);
    EXPECT_EQ(cancelled.load(), 0) << "of " << ok.load() + unavailable.load() << " calls";
    EXPECT_GT(unavailable.load(), 0);
    EXPECT_EQ(wrong.load(), 0);
    EXPECT_EQ(other.load(), 0);
    EXPECT_EQ(ok_after_reject.load(), 0);
    EXPECT_EQ(server->core().metrics().RequestsTotal("ok"), static_cast<double>(ok.load()));
  }
}

TEST(DrainTest, EightClientsThatNeverBackOffSeeNoCancelled) { DrainWithClientsThatNeverBackOff(8); }

TEST(DrainTest, SixtyFourClientsThatNeverBackOffSeeNoCancelled) {
  DrainWithClientsThatNeverBackOff(64);
}

// Open ModelStreamInfer streams end with UNAVAILABLE through a drain (not
// the CANCELLED gRPC gives a stream still open at its shutdown deadline),
// after every accepted request on them was answered; a stream opened during
// the drain ends at once with UNAVAILABLE.
TEST(DrainTest, OpenStreamsEndWithUnavailable) {
  LayerWeights w = ::moe::testing::SmallDemoWeights();
  auto reference = ::moe::testing::MakeLayer(w);
  auto server_or = MoeServer::Start(::moe::testing::MakeLayer(w), ::moe::testing::LocalOptions());
  ASSERT_TRUE(server_or.ok()) << server_or.status();
  std::unique_ptr<MoeServer> server = *std::move(server_or);
  constexpr int kStreams = 4;
  std::atomic<int64_t> answered{0}, wrong{0};
  std::vector<grpc::Status> finals(kStreams);
  std::vector<std::thread> streams;
  for (int c = 0; c < kStreams; ++c) {
    streams.emplace_back([&, c] {
      auto stub = ::moe::testing::Stub(server->local_grpc_address());
      grpc::ClientContext ctx;
      auto stream = stub->ModelStreamInfer(&ctx);
      std::map<std::string, std::vector<float>> sent;
      absl::Mutex mu;
      std::thread reader([&] {
        inference::ModelStreamInferResponse resp;
        while (stream->Read(&resp)) {
          if (!resp.error_message().empty()) continue;  // "draining" answers
          std::vector<float> tokens;
          {
            absl::MutexLock lock(&mu);
            tokens = sent[resp.infer_response().id()];
          }
          ++answered;
          if (OutputFloats(resp.infer_response(), "output") != Reference(reference.get(), tokens)) {
            ++wrong;
          }
        }
      });
      for (int i = 0;; ++i) {
        auto tokens = RandomTokens((1 + i % 3) * 64, static_cast<uint32_t>(c * 1000 + i));
        const std::string id = absl::StrCat(c, "-", i);
        {
          absl::MutexLock lock(&mu);
          sent[id] = tokens;
        }
        if (!stream->Write(InferRequest(tokens, 64, false, id))) break;  // the server ended it
        absl::SleepFor(absl::Milliseconds(2));
      }
      reader.join();
      finals[static_cast<size_t>(c)] = stream->Finish();
    });
  }
  while (answered.load() < 100) absl::SleepFor(absl::Milliseconds(5));
  // A stream opened once the drain has begun ends at once.
  std::thread late([&] {
    absl::SleepFor(absl::Milliseconds(50));
    auto stub = ::moe::testing::Stub(server->local_grpc_address());
    grpc::ClientContext ctx;
    SetDeadline(&ctx, absl::Seconds(30));
    auto stream = stub->ModelStreamInfer(&ctx);
    inference::ModelStreamInferResponse resp;
    while (stream->Read(&resp)) {
    }
    const grpc::Status st = stream->Finish();
    EXPECT_TRUE(st.error_code() == grpc::StatusCode::UNAVAILABLE) << st.error_code() << " "
                                                                  << st.error_message();
  });
  EXPECT_EQ(server->Shutdown(absl::Seconds(30)), 0);
  for (auto& t : streams) t.join();
  late.join();
  for (const grpc::Status& st : finals) {
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();
    EXPECT_NE(st.error_message().find("shutting down"), std::string::npos) << st.error_message();
  }
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(server->core().metrics().RequestsTotal("ok"), static_cast<double>(answered.load()));
}

TEST(DrainTest, HealthTurnsNotServingAndNewRequestsAreRejected) {
  LayerWeights w = ::moe::testing::SmallDemoWeights();
  auto server_or = MoeServer::Start(::moe::testing::MakeLayer(w), ::moe::testing::LocalOptions());
  ASSERT_TRUE(server_or.ok());
  std::unique_ptr<MoeServer> server = *std::move(server_or);
  // Drain in the core only (the listeners stay up), as SIGTERM's first step.
  server->core().Drain(absl::Seconds(5));
  auto stub = ::moe::testing::Stub(server->local_grpc_address());
  grpc::ClientContext ctx;
  SetDeadline(&ctx, absl::Seconds(10));
  inference::ModelInferResponse resp;
  grpc::Status st = stub->ModelInfer(&ctx, InferRequest(RandomTokens(64, 1), 64), &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_NE(st.error_message().find("draining"), std::string::npos) << st.error_message();
  grpc::ClientContext rctx;
  inference::ServerReadyResponse ready;
  ASSERT_TRUE(stub->ServerReady(&rctx, inference::ServerReadyRequest(), &ready).ok());
  EXPECT_FALSE(ready.ready());
}

}  // namespace
}  // namespace moe
