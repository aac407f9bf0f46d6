// Bad-input battery: every malformed request shape we could think of, sent
// through a real channel to one in-process server on 127.0.0.1:0. Each case
// checks the status code and that the message names the problem; after each
// one a good request must still get its exact answer (the server is not
// left broken by what came before).
//
// Cases built from a good ModelInferRequest are in kCases; raw bytes that
// are not a valid request body (garbage, truncated, invalid UTF-8) go
// through a generic stub and must get INVALID_ARGUMENT from the service
// (which parses ModelInfer bodies itself); stream cases close the file.
#include <atomic>
#include <cmath>
#include <cstring>
#include <iterator>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "batching/serving_core.h"
#include "frontend/moe_server.h"
#include "gmock/gmock.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "proto/grpc_service.grpc.pb.h"
#include "tests/naive_reference.h"
#include "tests/server_test_util.h"

namespace moe {
namespace {

using ::moe::testing::InferRequest;
using ::moe::testing::OutputFloats;
using ::moe::testing::RandomTokens;
using ::moe::testing::Reference;
using ::moe::testing::SetDeadline;
using ::testing::HasSubstr;

constexpr int64_t kD = 64;
constexpr int64_t kMaxRequestTokens = 1024;
constexpr int kMaxMessageBytes = 4 << 20;

using Mutation = void (*)(inference::ModelInferRequest*);

struct Case {
  const char* name;
  Mutation mutate;
  grpc::StatusCode code;
  const char* message;  // a substring the error message must contain
};

inference::ModelInferRequest::InferInputTensor* In(inference::ModelInferRequest* r) {
  return r->mutable_inputs(0);
}
std::string* Raw(inference::ModelInferRequest* r) { return r->mutable_raw_input_contents(0); }

const Case kCases[] = {
    {"unknown model", [](inference::ModelInferRequest* r) { r->set_model_name("gpt-5"); },
     grpc::StatusCode::NOT_FOUND, "unknown model 'gpt-5'"},
    {"empty model name", [](inference::ModelInferRequest* r) { r->set_model_name(""); },
     grpc::StatusCode::NOT_FOUND, "unknown model ''"},
    {"unknown version", [](inference::ModelInferRequest* r) { r->set_model_version("7"); },
     grpc::StatusCode::NOT_FOUND, "no version '7'"},
    {"no inputs",
     [](inference::ModelInferRequest* r) {
       r->clear_inputs();
       r->clear_raw_input_contents();
     },
     grpc::StatusCode::INVALID_ARGUMENT, "expected exactly 1 input"},
    {"duplicated input",
     [](inference::ModelInferRequest* r) {
       *r->add_inputs() = r->inputs(0);
       r->add_raw_input_contents(r->raw_input_contents(0));
     },
     grpc::StatusCode::INVALID_ARGUMENT, "expected exactly 1 input"},
    {"wrong input name", [](inference::ModelInferRequest* r) { In(r)->set_name("hidden_states"); },
     grpc::StatusCode::INVALID_ARGUMENT, "expected 'input', got 'hidden_states'"},
    {"empty input name", [](inference::ModelInferRequest* r) { In(r)->set_name(""); },
     grpc::StatusCode::INVALID_ARGUMENT, "inputs[0].name"},
    {"datatype FP64", [](inference::ModelInferRequest* r) { In(r)->set_datatype("FP64"); },
     grpc::StatusCode::INVALID_ARGUMENT, "expected FP32 or BF16, got 'FP64'"},
    {"datatype lower case", [](inference::ModelInferRequest* r) { In(r)->set_datatype("fp32"); },
     grpc::StatusCode::INVALID_ARGUMENT, "got 'fp32'"},
    {"datatype empty", [](inference::ModelInferRequest* r) { In(r)->set_datatype(""); },
     grpc::StatusCode::INVALID_ARGUMENT, "inputs[0].datatype"},
    {"datatype BYTES", [](inference::ModelInferRequest* r) { In(r)->set_datatype("BYTES"); },
     grpc::StatusCode::INVALID_ARGUMENT, "got 'BYTES'"},
    {"datatype FP16", [](inference::ModelInferRequest* r) { In(r)->set_datatype("FP16"); },
     grpc::StatusCode::INVALID_ARGUMENT, "got 'FP16'"},
    {"rank 1 shape",
     [](inference::ModelInferRequest* r) {
       In(r)->clear_shape();
       In(r)->add_shape(2 * kD);
     },
     grpc::StatusCode::INVALID_ARGUMENT, "expected rank 2"},
    {"rank 3 shape",
     [](inference::ModelInferRequest* r) {
       In(r)->clear_shape();
       for (int64_t d : {int64_t{1}, int64_t{2}, kD}) In(r)->add_shape(d);
     },
     grpc::StatusCode::INVALID_ARGUMENT, "expected rank 2"},
    {"empty shape", [](inference::ModelInferRequest* r) { In(r)->clear_shape(); },
     grpc::StatusCode::INVALID_ARGUMENT, "expected rank 2"},
    {"zero tokens",
     [](inference::ModelInferRequest* r) {
       In(r)->set_shape(0, 0);
       Raw(r)->clear();
     },
     grpc::StatusCode::INVALID_ARGUMENT, "shape[0] (tokens)"},
    {"negative tokens", [](inference::ModelInferRequest* r) { In(r)->set_shape(0, -2); },
     grpc::StatusCode::INVALID_ARGUMENT, "shape[0] (tokens)"},
    {"negative d_model", [](inference::ModelInferRequest* r) { In(r)->set_shape(1, -kD); },
     grpc::StatusCode::INVALID_ARGUMENT, "shape[1] (d_model)"},
    {"zero d_model", [](inference::ModelInferRequest* r) { In(r)->set_shape(1, 0); },
     grpc::StatusCode::INVALID_ARGUMENT, "shape[1] (d_model)"},
    {"wrong d_model", [](inference::ModelInferRequest* r) { In(r)->set_shape(1, kD + 1); },
     grpc::StatusCode::INVALID_ARGUMENT, "shape[1] (d_model): expected 64, got 65"},
    {"huge declared tokens, tiny payload",
     [](inference::ModelInferRequest* r) { In(r)->set_shape(0, int64_t{1} << 40); },
     grpc::StatusCode::INVALID_ARGUMENT, "shape[0] (tokens)"},
    {"shape product overflows int64",
     [](inference::ModelInferRequest* r) {
       In(r)->set_shape(0, std::numeric_limits<int64_t>::max());
       In(r)->set_shape(1, std::numeric_limits<int64_t>::max());
     },
     grpc::StatusCode::INVALID_ARGUMENT, "shape[1] (d_model)"},
    {"tokens over the request limit, full payload",
     [](inference::ModelInferRequest* r) {
       In(r)->set_shape(0, kMaxRequestTokens + 1);
       Raw(r)->assign(static_cast<size_t>((kMaxRequestTokens + 1) * kD * 4), '\0');
     },
     grpc::StatusCode::INVALID_ARGUMENT, "expected 1..1024"},
    {"raw payload one byte short", [](inference::ModelInferRequest* r) { Raw(r)->pop_back(); },
     grpc::StatusCode::INVALID_ARGUMENT, "raw_input_contents[0]: expected 512 bytes"},
    {"raw payload one row long",
     [](inference::ModelInferRequest* r) { Raw(r)->append(kD * 4, '\0'); },
     grpc::StatusCode::INVALID_ARGUMENT, "raw_input_contents[0]: expected 512 bytes"},
    {"empty raw payload", [](inference::ModelInferRequest* r) { Raw(r)->clear(); },
     grpc::StatusCode::INVALID_ARGUMENT, "raw_input_contents[0]"},
    {"BF16 declared, FP32-sized payload",
     [](inference::ModelInferRequest* r) { In(r)->set_datatype("BF16"); },
     grpc::StatusCode::INVALID_ARGUMENT, "expected 256 bytes"},
    {"two raw payloads for one input",
     [](inference::ModelInferRequest* r) { r->add_raw_input_contents(r->raw_input_contents(0)); },
     grpc::StatusCode::INVALID_ARGUMENT, "expected at most 1 entry"},
    {"raw and typed data both",
     [](inference::ModelInferRequest* r) { In(r)->mutable_contents()->add_fp32_contents(1.0f); },
     grpc::StatusCode::INVALID_ARGUMENT, "both in raw_input_contents and in contents"},
    {"no data at all", [](inference::ModelInferRequest* r) { r->clear_raw_input_contents(); },
     grpc::StatusCode::INVALID_ARGUMENT, "no data"},
    {"typed data of the wrong type",
     [](inference::ModelInferRequest* r) {
       r->clear_raw_input_contents();
       for (int i = 0; i < 2 * kD; ++i) In(r)->mutable_contents()->add_int_contents(1);
     },
     grpc::StatusCode::INVALID_ARGUMENT, "only fp32_contents"},
    {"typed data count mismatch",
     [](inference::ModelInferRequest* r) {
       r->clear_raw_input_contents();
       for (int i = 0; i < 2 * kD - 1; ++i) In(r)->mutable_contents()->add_fp32_contents(0.5f);
     },
     grpc::StatusCode::INVALID_ARGUMENT, "fp32_contents: expected 128"},
    {"typed data for BF16",
     [](inference::ModelInferRequest* r) {
       r->clear_raw_input_contents();
       In(r)->set_datatype("BF16");
       for (int i = 0; i < 2 * kD; ++i) In(r)->mutable_contents()->add_fp32_contents(0.5f);
     },
     grpc::StatusCode::INVALID_ARGUMENT, "BF16 data has no typed field"},
    {"NaN in the tokens",
     [](inference::ModelInferRequest* r) {
       const float nan = std::numeric_limits<float>::quiet_NaN();
       std::memcpy(Raw(r)->data() + 4 * 17, &nan, 4);
     },
     grpc::StatusCode::INVALID_ARGUMENT, "non-finite"},
    {"Inf in the tokens",
     [](inference::ModelInferRequest* r) {
       const float inf = -std::numeric_limits<float>::infinity();
       std::memcpy(Raw(r)->data(), &inf, 4);
     },
     grpc::StatusCode::INVALID_ARGUMENT, "non-finite"},
    {"BF16 NaN bit pattern",
     [](inference::ModelInferRequest* r) {
       In(r)->set_datatype("BF16");
       Raw(r)->resize(static_cast<size_t>(2 * kD * 2));
       (*Raw(r))[7] = '\x7f';
       (*Raw(r))[6] = '\xc1';
     },
     grpc::StatusCode::INVALID_ARGUMENT, "non-finite"},
    {"unknown output",
     [](inference::ModelInferRequest* r) { r->add_outputs()->set_name("logits"); },
     grpc::StatusCode::INVALID_ARGUMENT, "unknown output 'logits'"},
    {"empty output name", [](inference::ModelInferRequest* r) { r->add_outputs()->set_name(""); },
     grpc::StatusCode::INVALID_ARGUMENT, "unknown output ''"},
    {"output requested twice",
     [](inference::ModelInferRequest* r) {
       r->add_outputs()->set_name("output");
       r->add_outputs()->set_name("output");
     },
     grpc::StatusCode::INVALID_ARGUMENT, "requested twice"},
};

class BadInputTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    weights_ = new LayerWeights(::moe::testing::SmallDemoWeights());
    reference_ = ::moe::testing::MakeLayer(*weights_).release();
    ServerOptions o = ::moe::testing::LocalOptions();
    o.limits.max_request_tokens = kMaxRequestTokens;
    o.max_message_bytes = kMaxMessageBytes;
    auto server = MoeServer::Start(::moe::testing::MakeLayer(*weights_), o);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = server->release();
  }
  static void TearDownTestSuite() {
    delete server_;
    delete reference_;
    delete weights_;
  }
  void SetUp() override {
    ASSERT_NE(server_, nullptr);
    channel_ =
        grpc::CreateChannel(server_->local_grpc_address(), grpc::InsecureChannelCredentials());
    stub_ = inference::GRPCInferenceService::NewStub(channel_);
  }

  static inference::ModelInferRequest Good() { return InferRequest(RandomTokens(2 * kD, 9), kD); }

  grpc::Status Infer(const inference::ModelInferRequest& req, inference::ModelInferResponse* resp) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx, absl::Seconds(30));
    return stub_->ModelInfer(&ctx, req, resp);
  }

  // The server still answers a good request, exactly.
  void ExpectStillServes(const std::string& after) {
    const auto tokens = RandomTokens(3 * kD, 77);
    inference::ModelInferResponse resp;
    grpc::Status st = Infer(InferRequest(tokens, kD), &resp);
    ASSERT_TRUE(st.ok()) << "after '" << after << "': " << st.error_message();
    EXPECT_EQ(OutputFloats(resp, "output"), Reference(reference_, tokens)) << "after " << after;
  }

  // Sends `body` as the raw bytes of a ModelInfer call.
  grpc::Status InferRawBytes(const std::string& body) {
    grpc::GenericStub generic(channel_);
    grpc::ClientContext ctx;
    SetDeadline(&ctx, absl::Seconds(30));
    grpc::Slice slice(body);
    grpc::ByteBuffer request(&slice, 1), response;
    grpc::CompletionQueue cq;
    auto call =
        generic.PrepareUnaryCall(&ctx, "/inference.GRPCInferenceService/ModelInfer", request, &cq);
    call->StartCall();
    grpc::Status status;
    call->Finish(&response, &status, reinterpret_cast<void*>(1));
    void* tag = nullptr;
    bool ok = false;
    EXPECT_TRUE(cq.Next(&tag, &ok));
    cq.Shutdown();
    while (cq.Next(&tag, &ok)) {
    }
    return status;
  }

  static LayerWeights* weights_;
  static MoeLayer* reference_;
  static MoeServer* server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<inference::GRPCInferenceService::Stub> stub_;
};

LayerWeights* BadInputTest::weights_ = nullptr;
MoeLayer* BadInputTest::reference_ = nullptr;
MoeServer* BadInputTest::server_ = nullptr;

TEST_F(BadInputTest, EveryMalformedRequestGetsItsCodeAndTheServerStillServes) {
  int tried = 0;
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.name);
    inference::ModelInferRequest req = Good();
    c.mutate(&req);
    inference::ModelInferResponse resp;
    grpc::Status st = Infer(req, &resp);
    EXPECT_EQ(st.error_code(), c.code) << c.name << ": " << st.error_message();
    EXPECT_THAT(st.error_message(), HasSubstr(c.message)) << c.name;
    EXPECT_EQ(resp.outputs_size(), 0) << c.name;
    ExpectStillServes(c.name);
    ++tried;
  }
  static_assert(std::size(kCases) >= 30, "the battery promises at least 30 cases");
  EXPECT_EQ(tried, static_cast<int>(std::size(kCases)));
  std::printf("bad-input battery: %d malformed ModelInfer requests, each refused as expected\n",
              tried);
}

TEST_F(BadInputTest, OversizedMessageIsRefusedByTheTransport) {
  inference::ModelInferRequest req = Good();
  Raw(&req)->append(static_cast<size_t>(kMaxMessageBytes), '\0');
  inference::ModelInferResponse resp;
  grpc::Status st = Infer(req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << st.error_message();
  ExpectStillServes("oversized message");
}

TEST_F(BadInputTest, BodiesThatAreNotARequestAreRefused) {
  const std::string good = Good().SerializeAsString();
  // A model name that is not UTF-8: proto3 string fields must be valid UTF-8,
  // so the server's protobuf parser refuses the body. The name is field 1
  // (length-delimited, tag 0x0a) of ModelInferRequest.
  std::string bad_utf8;
  bad_utf8 += '\x0a';
  bad_utf8 += '\x03';
  bad_utf8 += "\xff\xfe\xc0";
  bad_utf8 += good;
  const std::vector<std::pair<std::string, std::string>> bodies = {
      {"random bytes", std::string("\x07\xff\x13 not a protobuf \x9c\x9d", 22)},
      {"truncated request", good.substr(0, good.size() / 2)},
      {"invalid UTF-8 model name", bad_utf8},
      {"a varint that never ends", std::string(12, '\xff')},
  };
  for (const auto& [name, body] : bodies) {
    grpc::Status st = InferRawBytes(body);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << name << ": " << st.error_message();
    EXPECT_THAT(st.error_message(), HasSubstr("not a valid inference.ModelInferRequest")) << name;
    ExpectStillServes(name);
  }
  // An empty body parses as an empty request: the service names the problem.
  grpc::Status st = InferRawBytes("");
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND) << st.error_message();
  ExpectStillServes("empty body");
}

TEST_F(BadInputTest, StreamWithBadMessagesKeepsGoingAndTruncatedStreamsAreHarmless) {
  {
    // Bad messages inside a stream get an error_message; the stream goes on.
    grpc::ClientContext ctx;
    SetDeadline(&ctx, absl::Seconds(30));
    auto rw = stub_->ModelStreamInfer(&ctx);
    int bad = 0;
    for (const Case& c : kCases) {
      inference::ModelInferRequest req = Good();
      c.mutate(&req);
      ASSERT_TRUE(rw->Write(req)) << c.name;
      inference::ModelStreamInferResponse resp;
      ASSERT_TRUE(rw->Read(&resp)) << c.name;
      EXPECT_THAT(resp.error_message(), HasSubstr(c.message)) << c.name;
      ++bad;
    }
    const auto tokens = RandomTokens(kD, 5);
    ASSERT_TRUE(rw->Write(InferRequest(tokens, kD)));
    inference::ModelStreamInferResponse resp;
    ASSERT_TRUE(rw->Read(&resp));
    EXPECT_EQ(resp.error_message(), "");
    EXPECT_EQ(OutputFloats(resp.infer_response(), "output"), Reference(reference_, tokens));
    rw->WritesDone();
    EXPECT_TRUE(rw->Finish().ok());
    EXPECT_EQ(bad, static_cast<int>(std::size(kCases)));
  }
  {
    // Truncated: requests written, the client vanishes before reading.
    auto ctx = std::make_unique<grpc::ClientContext>();
    auto rw = stub_->ModelStreamInfer(ctx.get());
    for (int i = 0; i < 8; ++i) rw->Write(InferRequest(RandomTokens(4 * kD, i), kD));
    ctx->TryCancel();
    rw->Finish();
  }
  {
    // Half-closed at once: no requests, a clean end.
    grpc::ClientContext ctx;
    auto rw = stub_->ModelStreamInfer(&ctx);
    rw->WritesDone();
    inference::ModelStreamInferResponse resp;
    EXPECT_FALSE(rw->Read(&resp));
    EXPECT_TRUE(rw->Finish().ok());
  }
  ExpectStillServes("truncated streams");
}

TEST_F(BadInputTest, StreamMessageThatIsNotARequestGetsAnErrorAndTheStreamGoesOn) {
  // Raw stream through the generic stub: a corrupt message, then a good one.
  grpc::GenericStub generic(channel_);
  grpc::ClientContext ctx;
  SetDeadline(&ctx, absl::Seconds(30));
  grpc::CompletionQueue cq;
  auto call = generic.PrepareCall(&ctx, "/inference.GRPCInferenceService/ModelStreamInfer", &cq);
  auto step = [&cq](auto&& op) {  // runs one operation and waits for it
    op(reinterpret_cast<void*>(1));
    void* tag = nullptr;
    bool ok = false;
    EXPECT_TRUE(cq.Next(&tag, &ok));
    return ok;
  };
  auto bytes = [](const std::string& body) {
    grpc::Slice slice(body);
    return grpc::ByteBuffer(&slice, 1);
  };
  auto read = [&](inference::ModelStreamInferResponse* resp) {
    grpc::ByteBuffer in;
    if (!step([&](void* t) { call->Read(&in, t); })) return false;
    std::vector<grpc::Slice> slices;
    EXPECT_TRUE(in.Dump(&slices).ok());
    std::string body;
    for (const auto& sl : slices) body.append(reinterpret_cast<const char*>(sl.begin()), sl.size());
    return resp->ParseFromString(body);
  };
  ASSERT_TRUE(step([&](void* t) { call->StartCall(t); }));
  const std::string good = Good().SerializeAsString();
  ASSERT_TRUE(step([&](void* t) { call->Write(bytes(good.substr(0, good.size() / 3)), t); }));
  inference::ModelStreamInferResponse resp;
  ASSERT_TRUE(read(&resp));
  EXPECT_THAT(resp.error_message(), HasSubstr("not a valid inference.ModelInferRequest"));
  const auto tokens = RandomTokens(kD, 21);
  ASSERT_TRUE(step([&](void* t) {
    call->Write(bytes(InferRequest(tokens, kD, false, "after").SerializeAsString()), t);
  }));
  ASSERT_TRUE(read(&resp));
  EXPECT_EQ(resp.error_message(), "");
  EXPECT_EQ(resp.infer_response().id(), "after");
  EXPECT_EQ(OutputFloats(resp.infer_response(), "output"), Reference(reference_, tokens));
  ASSERT_TRUE(step([&](void* t) { call->WritesDone(t); }));
  grpc::Status status;
  step([&](void* t) { call->Finish(&status, t); });
  EXPECT_TRUE(status.ok()) << status.error_message();
  cq.Shutdown();
  void* tag = nullptr;
  bool ok = false;
  while (cq.Next(&tag, &ok)) {
  }
}

TEST_F(BadInputTest, CancelStormLeavesTheServerHealthy) {
  // 16 clients for 1.5 s: each call is cancelled by its client right after
  // it is sent, or given a deadline shorter than a model call, or a stream
  // is opened, written to and cancelled. Every outcome must be one of the
  // codes a cancelled call can end with, and afterwards the server answers
  // exactly and its queue is empty.
  std::atomic<int64_t> calls{0}, unexpected{0};
  const absl::Time end = absl::Now() + absl::Milliseconds(1500);
  std::vector<std::thread> clients;
  for (int c = 0; c < 16; ++c) {
    clients.emplace_back([&, c] {
      auto stub = inference::GRPCInferenceService::NewStub(channel_);
      const auto req = InferRequest(RandomTokens(8 * kD, static_cast<uint32_t>(c)), kD);
      for (int i = 0; absl::Now() < end; ++i) {
        grpc::Status st;
        if (i % 3 == 2) {
          grpc::ClientContext ctx;
          auto rw = stub->ModelStreamInfer(&ctx);
          rw->Write(req);
          rw->Write(req);
          ctx.TryCancel();
          st = rw->Finish();
        } else {
          grpc::ClientContext ctx;
          ctx.set_deadline(std::chrono::system_clock::now() +
                           std::chrono::microseconds(i % 3 == 0 ? 1 : 300));
          inference::ModelInferResponse resp;
          st = stub->ModelInfer(&ctx, req, &resp);
        }
        ++calls;
        const auto code = st.error_code();
        if (code != grpc::StatusCode::OK && code != grpc::StatusCode::CANCELLED &&
            code != grpc::StatusCode::DEADLINE_EXCEEDED) {
          ++unexpected;
          ADD_FAILURE() << "code " << code << ": " << st.error_message();
        }
      }
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(unexpected.load(), 0);
  EXPECT_GT(calls.load(), 100);
  std::printf("cancel storm: %lld cancelled or expiring calls from 16 clients\n",
              static_cast<long long>(calls.load()));
  ExpectStillServes("cancel storm");
  // Nothing is left queued once the storm is over.
  const absl::Time limit = absl::Now() + absl::Seconds(10);
  while (server_->core().QueuedTokens() > 0 && absl::Now() < limit) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(server_->core().QueuedTokens(), 0);
}

// Metadata and config of an unknown model: NOT_FOUND. Readiness: OK with
// ready false (Triton's contract, which tritonclient's is_model_ready
// relies on).
TEST_F(BadInputTest, UnknownModelsAreNotFoundAndNotReady) {
  {
    grpc::ClientContext ctx;
    inference::ModelMetadataRequest req;
    req.set_name("nope");
    inference::ModelMetadataResponse resp;
    EXPECT_EQ(stub_->ModelMetadata(&ctx, req, &resp).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  {
    grpc::ClientContext ctx;
    inference::ModelReadyRequest req;
    req.set_name("nope");
    inference::ModelReadyResponse resp;
    grpc::Status st = stub_->ModelReady(&ctx, req, &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
    EXPECT_FALSE(resp.ready());
  }
  {
    grpc::ClientContext ctx;
    inference::ModelConfigRequest req;
    req.set_name("nope");
    inference::ModelConfigResponse resp;
    grpc::Status st = stub_->ModelConfig(&ctx, req, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_THAT(st.error_message(), ::testing::HasSubstr("unknown model 'nope'"));
  }
  {
    grpc::ClientContext ctx;
    inference::ModelReadyRequest req;
    req.set_name("moe");
    req.set_version("2");
    inference::ModelReadyResponse resp;
    ASSERT_TRUE(stub_->ModelReady(&ctx, req, &resp).ok());
    EXPECT_FALSE(resp.ready());
  }
  ExpectStillServes("metadata of unknown models");
}

}  // namespace
}  // namespace moe
