// The KServe v2 client helpers: request building, response parsing and its
// checks, channel options and error descriptions. (Calls against a live
// server are in service_test.cc and load_generator_test.cc.)
#include "client/kserve_client.h"

#include <cstring>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/status_matchers.h"

namespace moe {
namespace {

using ::moe::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

template <typename T>
std::string Raw(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

void AddOutput(inference::ModelInferResponse* r, const std::string& name,
               const std::string& datatype, std::vector<int64_t> shape, std::string raw) {
  auto* o = r->add_outputs();
  o->set_name(name);
  o->set_datatype(datatype);
  for (int64_t d : shape) o->add_shape(d);
  r->add_raw_output_contents(std::move(raw));
}

TEST(KserveClientTest, BuildsFp32AndBf16Requests) {
  const std::vector<float> tokens = {1.0f, -2.0f, 3.14159f, 0.5f, 0.25f, 8.0f};
  const auto f32 = BuildInferRequest("moe.layer3", tokens, 3, false, "r1", false);
  EXPECT_EQ(f32.model_name(), "moe.layer3");
  EXPECT_EQ(f32.id(), "r1");
  ASSERT_EQ(f32.inputs_size(), 1);
  EXPECT_EQ(f32.inputs(0).name(), "input");
  EXPECT_EQ(f32.inputs(0).datatype(), "FP32");
  EXPECT_THAT(f32.inputs(0).shape(), ElementsAre(2, 3));
  EXPECT_EQ(f32.raw_input_contents(0), Raw(tokens));
  ASSERT_EQ(f32.outputs_size(), 1);
  EXPECT_EQ(f32.outputs(0).name(), "output");

  const auto bf16 = BuildInferRequest("moe", tokens, 3, true, "", true);
  EXPECT_EQ(bf16.inputs(0).datatype(), "BF16");
  std::vector<uint16_t> bits;
  for (float v : tokens) bits.push_back(FloatToBf16(v));
  EXPECT_EQ(bf16.raw_input_contents(0), Raw(bits));
  ASSERT_EQ(bf16.outputs_size(), 3);
  EXPECT_EQ(bf16.outputs(1).name(), "expert_ids");
  EXPECT_EQ(bf16.outputs(2).name(), "expert_weights");
}

TEST(KserveClientTest, ParsesOutputsAndRouting) {
  inference::ModelInferResponse r;
  AddOutput(&r, "output", "FP32", {2, 2}, Raw(std::vector<float>{1, 2, 3, 4}));
  AddOutput(&r, "expert_ids", "INT32", {2, 1}, Raw(std::vector<int32_t>{5, 7}));
  AddOutput(&r, "expert_weights", "FP32", {2, 1}, Raw(std::vector<float>{1, 1}));
  ASSERT_OK_AND_ASSIGN(InferResult got, ParseInferResponse(r));
  EXPECT_EQ(got.num_tokens, 2);
  EXPECT_EQ(got.d_model, 2);
  EXPECT_EQ(got.top_k, 1);
  EXPECT_THAT(got.output, ElementsAre(1, 2, 3, 4));
  EXPECT_THAT(got.expert_ids, ElementsAre(5, 7));
  EXPECT_THAT(got.expert_weights, ElementsAre(1, 1));

  inference::ModelInferResponse b;
  AddOutput(&b, "output", "BF16", {1, 2},
            Raw(std::vector<uint16_t>{FloatToBf16(1.5f), FloatToBf16(-3.0f)}));
  ASSERT_OK_AND_ASSIGN(got, ParseInferResponse(b));
  EXPECT_THAT(got.output, ElementsAre(1.5f, -3.0f));
  EXPECT_TRUE(got.expert_ids.empty());
}

TEST(KserveClientTest, RejectsMalformedResponsesNamingTheOutput) {
  struct Case {
    inference::ModelInferResponse response;
    std::string message;
  };
  std::vector<Case> cases(5);
  AddOutput(&cases[0].response, "output", "FP32", {2}, Raw(std::vector<float>{1, 2}));
  cases[0].message = "output 'output' is not a rank-2 shape";
  AddOutput(&cases[1].response, "output", "FP32", {1, 3}, Raw(std::vector<float>{1, 2}));
  cases[1].message = "output 'output' has 8 bytes for shape [1, 3] FP32";
  AddOutput(&cases[2].response, "expert_ids", "FP32", {1, 1}, Raw(std::vector<float>{1}));
  cases[2].message = "output 'expert_ids' is FP32, expected INT32";
  AddOutput(&cases[3].response, "output", "FP32", {-1, -4}, Raw(std::vector<float>{1, 2, 3, 4}));
  cases[3].message = "sizes >= 0";
  AddOutput(&cases[4].response, "output", "FP32", {1, 1}, Raw(std::vector<float>{1}));
  cases[4].response.add_raw_output_contents("extra");
  cases[4].message = "response has 1 outputs but 2 raw_output_contents";
  for (const Case& c : cases) {
    EXPECT_THAT(ParseInferResponse(c.response),
                StatusIs(absl::StatusCode::kDataLoss, HasSubstr(c.message)));
  }
}

TEST(KserveClientTest, ChannelOptionsAndErrorDescriptions) {
  ConnectionOptions o;
  o.tls_cert = "/no/such/cert.pem";
  EXPECT_THAT(MakeChannel(o), StatusIs(absl::StatusCode::kInvalidArgument,
                                       HasSubstr("--tls_cert/--tls_key need --tls_ca")));
  o.tls_ca = "/no/such/ca.pem";
  EXPECT_THAT(MakeChannel(o), StatusIs(absl::StatusCode::kNotFound,
                                       HasSubstr("TLS CA file '/no/such/ca.pem' cannot be read")));
  EXPECT_OK(MakeChannel(ConnectionOptions()).status());

  EXPECT_THAT(DescribeGrpcError(grpc::Status(grpc::StatusCode::UNAVAILABLE, "x"), "h:1"),
              HasSubstr("UNAVAILABLE: the server at h:1"));
  EXPECT_THAT(
      DescribeGrpcError(grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown model 'm'"), "h:1"),
      HasSubstr("NOT_FOUND: unknown model 'm' (check --model)"));
  EXPECT_THAT(
      DescribeGrpcError(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "bad shape"), "h:1"),
      HasSubstr("INVALID_ARGUMENT: the server rejected the request: bad shape"));
}

}  // namespace
}  // namespace moe
