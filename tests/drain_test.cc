// Graceful drain under load: every accepted request finishes OK, the rest
// get UNAVAILABLE, none is lost or left hanging, health turns NOT_SERVING.
#include <atomic>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "batching/serving_core.h"
#include "gtest/gtest.h"
#include "proto/health.grpc.pb.h"
#include "tests/naive_reference.h"
#include "tests/server_test_util.h"

namespace moe {
namespace {

using ::moe::testing::InferRequest;
using ::moe::testing::OutputFloats;
using ::moe::testing::RandomTokens;
using ::moe::testing::Reference;
using ::moe::testing::SetDeadline;

// What the clients and the server saw through one drain under load.
struct DrainOutcome {
  int64_t ok = 0, unavailable = 0, cancelled = 0, wrong = 0, other = 0;
  int64_t ok_after_reject = 0;  // accepted after that client saw UNAVAILABLE
  int64_t cut = 0;              // cut by the drain timeout
  double server_ok = 0;         // the server's count of OK answers
};

// Starts a server on `w`, runs `clients` closed-loop clients (requests of 1
// to `max_rows` rows of 64) until `min_ok` answers are in, then drains it
// (30 s timeout). A client that sees UNAVAILABLE either waits `backoff` and
// gives up after 3 rejections, as a failing-over client would, or (backoff
// zero) resends at once until the test stops.
DrainOutcome DrainUnderLoad(const LayerWeights& w, MoeLayer* reference, int clients,
                            absl::Duration backoff, int max_rows, int64_t min_ok) {
  auto server_or = MoeServer::Start(::moe::testing::MakeLayer(w), ::moe::testing::LocalOptions());
  EXPECT_TRUE(server_or.ok()) << server_or.status();
  if (!server_or.ok()) return {};
  std::unique_ptr<MoeServer> server = *std::move(server_or);
  const std::string address = server->local_grpc_address();
  std::atomic<bool> stop{false};
  std::atomic<int64_t> ok{0}, unavailable{0}, cancelled{0}, wrong{0}, other{0};
  std::atomic<int64_t> ok_after_reject{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      auto stub = ::moe::testing::Stub(address);
      bool rejected = false;
      int local_rejections = 0;
      for (int i = 0; !stop.load(); ++i) {
        auto tokens =
            RandomTokens((1 + (c + i) % max_rows) * 64, static_cast<uint32_t>(c * 100000 + i));
        grpc::ClientContext ctx;
        SetDeadline(&ctx, absl::Seconds(60));
        inference::ModelInferResponse resp;
        grpc::Status st = stub->ModelInfer(&ctx, InferRequest(tokens, 64), &resp);
        if (st.ok()) {
          ++ok;
          if (rejected) ++ok_after_reject;
          if (OutputFloats(resp, "output") != Reference(reference, tokens)) ++wrong;
        } else if (st.error_code() == grpc::StatusCode::UNAVAILABLE) {
          ++unavailable;
          rejected = true;
          if (backoff > absl::ZeroDuration()) {
            if (++local_rejections > 3) return;
            absl::SleepFor(backoff);
          }
        } else if (st.error_code() == grpc::StatusCode::CANCELLED) {
          ++cancelled;
        } else if (++other == 1) {
          ADD_FAILURE() << st.error_code() << ": " << st.error_message();
        }
      }
    });
  }
  while (ok.load() < min_ok) absl::SleepFor(absl::Milliseconds(2));
  DrainOutcome out;
  out.cut = server->Shutdown(absl::Seconds(30));
  // Clients that back off come back (to a closing or closed server) until
  // they give up; the others are stopped.
  if (backoff == absl::ZeroDuration()) stop.store(true);
  for (auto& t : threads) t.join();
  out.ok = ok.load();
  out.unavailable = unavailable.load();
  out.cancelled = cancelled.load();
  out.wrong = wrong.load();
  out.other = other.load();
  out.ok_after_reject = ok_after_reject.load();
  out.server_ok = server->core().RequestsTotal("ok");
  return out;
}

TEST(DrainTest, ShutdownUnderLoadLosesNothing) {
  LayerWeights w = ::moe::testing::SmallDemoWeights();
  auto reference = ::moe::testing::MakeLayer(w);
  const DrainOutcome r = DrainUnderLoad(w, reference.get(), 8, absl::Milliseconds(20), 5, 200);
  EXPECT_EQ(r.cut, 0);
  EXPECT_GT(r.ok, 0);
  EXPECT_GT(r.unavailable, 0);  // requests after the drain began
  EXPECT_EQ(r.wrong, 0);
  EXPECT_EQ(r.other + r.cancelled, 0);
  // Once a client saw UNAVAILABLE, nothing it sent later was accepted.
  EXPECT_EQ(r.ok_after_reject, 0);
  // Every accepted request was answered OK (the server counted them).
  EXPECT_EQ(r.server_ok, static_cast<double>(r.ok));
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
    const DrainOutcome r =
        DrainUnderLoad(w, reference.get(), clients_n, absl::ZeroDuration(), 16, 100);
    EXPECT_EQ(r.cut, 0);
    EXPECT_EQ(r.cancelled, 0) << "of " << r.ok + r.unavailable << " calls";
    EXPECT_GT(r.unavailable, 0);
    EXPECT_EQ(r.wrong, 0);
    EXPECT_EQ(r.other, 0);
    EXPECT_EQ(r.ok_after_reject, 0);
    EXPECT_EQ(r.server_ok, static_cast<double>(r.ok));
  }
}

// Clients that back off for a while (here 0.3 s and 1 s, as a load tester's
// --unavailable_backoff_ms does) come back while the server closes or after
// it is gone: they too see only UNAVAILABLE, never CANCELLED.
TEST(DrainTest, ClientsThatBackOffAndComeBackSeeNoCancelled) {
  LayerWeights w = ::moe::testing::SmallDemoWeights();
  auto reference = ::moe::testing::MakeLayer(w);
  for (absl::Duration backoff : {absl::Milliseconds(300), absl::Seconds(1)}) {
    SCOPED_TRACE(absl::FormatDuration(backoff));
    const DrainOutcome r = DrainUnderLoad(w, reference.get(), 8, backoff, 16, 100);
    EXPECT_EQ(r.cancelled, 0);
    EXPECT_EQ(r.other, 0);
    EXPECT_EQ(r.wrong, 0);
    EXPECT_EQ(r.ok_after_reject, 0);
    EXPECT_EQ(r.server_ok, static_cast<double>(r.ok));
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
    EXPECT_TRUE(st.error_code() == grpc::StatusCode::UNAVAILABLE)
        << st.error_code() << " " << st.error_message();
  });
  EXPECT_EQ(server->Shutdown(absl::Seconds(30)), 0);
  for (auto& t : streams) t.join();
  late.join();
  for (const grpc::Status& st : finals) {
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();
    EXPECT_NE(st.error_message().find("shutting down"), std::string::npos) << st.error_message();
  }
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(server->core().RequestsTotal("ok"), static_cast<double>(answered.load()));
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
