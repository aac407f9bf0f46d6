// Request decoding: every validation case gets its code and a message
// naming the field, the expected and the received value.
#include "frontend/request_codec.h"

#include <cmath>
#include <cstring>
#include <functional>

#include "common/dtype.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/status_matchers.h"

namespace moe {
namespace {

using ::moe::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

ModelIo Io() {
  ModelIo io;
  io.model_name = "moe";
  io.d_model = 4;
  io.top_k = 2;
  io.limits.max_request_tokens = 16;
  return io;
}

inference::ModelInferRequest Good(int64_t t = 2) {
  inference::ModelInferRequest r;
  r.set_model_name("moe");
  r.set_id("req-1");
  auto* in = r.add_inputs();
  in->set_name("input");
  in->set_datatype("FP32");
  in->add_shape(t);
  in->add_shape(4);
  std::vector<float> v(static_cast<size_t>(t * 4));
  for (size_t i = 0; i < v.size(); ++i) v[i] = 0.25f * static_cast<float>(i);
  r.add_raw_input_contents(std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4));
  return r;
}

TEST(RequestCodecTest, DecodesRawFp32) {
  ASSERT_OK_AND_ASSIGN(DecodedRequest d, DecodeInferRequest(Good(), Io()));
  EXPECT_EQ(d.id, "req-1");
  EXPECT_EQ(d.num_tokens, 2);
  EXPECT_EQ(d.tokens.size(), 8u);
  EXPECT_EQ(d.tokens[5], 1.25f);
  // No outputs named: all of them, as the protocol says.
  EXPECT_EQ(d.outputs, (std::vector<std::string>{"output", "expert_ids", "expert_weights"}));
  EXPECT_TRUE(d.want_routing);
  EXPECT_FALSE(d.timeout.has_value());
}

TEST(RequestCodecTest, TimeoutParameterIsMicrosecondsAndZeroIsNone) {
  auto r = Good();
  (*r.mutable_parameters())["timeout"].set_int64_param(2500);
  ASSERT_OK_AND_ASSIGN(DecodedRequest d, DecodeInferRequest(r, Io()));
  ASSERT_TRUE(d.timeout.has_value());
  EXPECT_EQ(*d.timeout, absl::Microseconds(2500));
  const absl::Time t0 = absl::FromUnixSeconds(100);
  EXPECT_EQ(RequestDeadline(d, t0, absl::InfiniteFuture()), t0 + absl::Microseconds(2500));
  EXPECT_EQ(RequestDeadline(d, t0, t0 + absl::Microseconds(10)), t0 + absl::Microseconds(10));
  (*r.mutable_parameters())["timeout"].set_int64_param(0);
  ASSERT_OK_AND_ASSIGN(d, DecodeInferRequest(r, Io()));
  EXPECT_FALSE(d.timeout.has_value());
  (*r.mutable_parameters())["timeout"].set_string_param("soon");
  EXPECT_FALSE(DecodeInferRequest(r, Io()).ok());
}

TEST(RequestCodecTest, DecodesTypedFp32AndRawBf16) {
  auto r = Good();
  r.clear_raw_input_contents();
  for (int i = 0; i < 8; ++i) r.mutable_inputs(0)->mutable_contents()->add_fp32_contents(i);
  ASSERT_OK_AND_ASSIGN(DecodedRequest d, DecodeInferRequest(r, Io()));
  EXPECT_EQ(d.tokens[7], 7.0f);

  r = Good();
  r.mutable_inputs(0)->set_datatype("BF16");
  std::string raw(16, '\0');
  auto* bits = reinterpret_cast<uint16_t*>(raw.data());
  for (int i = 0; i < 8; ++i) bits[i] = FloatToBf16(static_cast<float>(i) + 0.5f);
  r.set_raw_input_contents(0, raw);
  ASSERT_OK_AND_ASSIGN(d, DecodeInferRequest(r, Io()));
  EXPECT_EQ(d.dtype, WireDType::kBf16);
  EXPECT_EQ(d.tokens[3], 3.5f);
}

TEST(RequestCodecTest, RequestedOutputsKeepTheirOrder) {
  auto r = Good();
  r.add_outputs()->set_name("expert_weights");
  r.add_outputs()->set_name("output");
  ASSERT_OK_AND_ASSIGN(DecodedRequest d, DecodeInferRequest(r, Io()));
  EXPECT_EQ(d.outputs, (std::vector<std::string>{"expert_weights", "output"}));
  EXPECT_TRUE(d.want_routing);
}

struct BadCase {
  const char* name;
  std::function<void(inference::ModelInferRequest*)> mutate;
  absl::StatusCode code;
  std::vector<std::string> parts;
};

class RequestCodecBadTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(RequestCodecBadTest, IsRejected) {
  auto r = Good();
  GetParam().mutate(&r);
  auto d = DecodeInferRequest(r, Io());
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), GetParam().code) << d.status();
  for (const auto& p : GetParam().parts) {
    EXPECT_THAT(std::string(d.status().message()), HasSubstr(p));
  }
}

using R = inference::ModelInferRequest;
const auto kInvalid = absl::StatusCode::kInvalidArgument;

INSTANTIATE_TEST_SUITE_P(
    Cases, RequestCodecBadTest,
    ::testing::Values(
        BadCase{"UnknownModel",
                [](R* r) { r->set_model_name("other"); },
                absl::StatusCode::kNotFound,
                {"unknown model 'other'", "serves 'moe'"}},
        BadCase{"UnknownVersion",
                [](R* r) { r->set_model_version("7"); },
                absl::StatusCode::kNotFound,
                {"no version '7'"}},
        BadCase{"NoInputs", [](R* r) { r->clear_inputs(); }, kInvalid, {"inputs", "got 0"}},
        BadCase{"TwoInputs",
                [](R* r) { *r->add_inputs() = r->inputs(0); },
                kInvalid,
                {"exactly 1", "got 2"}},
        BadCase{"WrongInputName",
                [](R* r) { r->mutable_inputs(0)->set_name("x"); },
                kInvalid,
                {"inputs[0].name", "'input'", "'x'"}},
        BadCase{"WrongDtype",
                [](R* r) { r->mutable_inputs(0)->set_datatype("FP16"); },
                kInvalid,
                {"datatype", "FP32 or BF16", "'FP16'"}},
        BadCase{"LowercaseDtype",
                [](R* r) { r->mutable_inputs(0)->set_datatype("fp32"); },
                kInvalid,
                {"'fp32'"}},
        BadCase{"Rank1",
                [](R* r) { r->mutable_inputs(0)->mutable_shape()->RemoveLast(); },
                kInvalid,
                {"rank 2", "got rank 1"}},
        BadCase{
            "Rank3", [](R* r) { r->mutable_inputs(0)->add_shape(1); }, kInvalid, {"got rank 3"}},
        BadCase{"WrongDModel",
                [](R* r) { r->mutable_inputs(0)->set_shape(1, 5); },
                kInvalid,
                {"shape[1] (d_model)", "expected 4", "got 5"}},
        BadCase{"ZeroTokens",
                [](R* r) { r->mutable_inputs(0)->set_shape(0, 0); },
                kInvalid,
                {"shape[0] (tokens)", "1..16", "got 0"}},
        BadCase{"NegativeTokens",
                [](R* r) { r->mutable_inputs(0)->set_shape(0, -3); },
                kInvalid,
                {"got -3"}},
        BadCase{"TooManyTokens",
                [](R* r) { r->mutable_inputs(0)->set_shape(0, 17); },
                kInvalid,
                {"1..16", "got 17"}},
        BadCase{"HugeShapeTinyPayload",
                [](R* r) { r->mutable_inputs(0)->set_shape(0, int64_t{1} << 62); },
                kInvalid,
                {"shape[0]"}},
        BadCase{"RawTooShort",
                [](R* r) { r->mutable_raw_input_contents(0)->resize(31); },
                kInvalid,
                {"raw_input_contents[0]", "expected 32 bytes", "got 31"}},
        BadCase{"RawTooLong",
                [](R* r) { r->mutable_raw_input_contents(0)->append("x"); },
                kInvalid,
                {"got 33"}},
        BadCase{"TwoRawEntries",
                [](R* r) { r->add_raw_input_contents("abcd"); },
                kInvalid,
                {"raw_input_contents", "got 2"}},
        BadCase{"RawAndTyped",
                [](R* r) { r->mutable_inputs(0)->mutable_contents()->add_fp32_contents(1); },
                kInvalid,
                {"both"}},
        BadCase{"NoData", [](R* r) { r->clear_raw_input_contents(); }, kInvalid, {"no data"}},
        BadCase{"TypedWrongCount",
                [](R* r) {
                  r->clear_raw_input_contents();
                  r->mutable_inputs(0)->mutable_contents()->add_fp32_contents(1);
                },
                kInvalid,
                {"fp32_contents", "expected 8", "got 1"}},
        BadCase{"TypedWrongField",
                [](R* r) {
                  r->clear_raw_input_contents();
                  for (int i = 0; i < 8; ++i) {
                    r->mutable_inputs(0)->mutable_contents()->add_fp32_contents(1);
                  }
                  r->mutable_inputs(0)->mutable_contents()->add_int_contents(1);
                },
                kInvalid,
                {"only fp32_contents"}},
        BadCase{"Bf16Typed",
                [](R* r) {
                  r->clear_raw_input_contents();
                  r->mutable_inputs(0)->set_datatype("BF16");
                  r->mutable_inputs(0)->mutable_contents()->add_fp32_contents(1);
                },
                kInvalid,
                {"BF16", "raw_input_contents"}},
        BadCase{"NaN",
                [](R* r) {
                  float nan = std::nanf("");
                  std::memcpy(r->mutable_raw_input_contents(0)->data() + 4 * 6, &nan, 4);
                },
                kInvalid,
                {"non-finite", "[1, 2]"}},
        BadCase{"Inf",
                [](R* r) {
                  float inf = INFINITY;
                  std::memcpy(r->mutable_raw_input_contents(0)->data(), &inf, 4);
                },
                kInvalid,
                {"non-finite", "[0, 0]"}},
        BadCase{"UnknownOutput",
                [](R* r) { r->add_outputs()->set_name("logits"); },
                kInvalid,
                {"unknown output 'logits'"}},
        BadCase{"DuplicateOutput",
                [](R* r) {
                  r->add_outputs()->set_name("output");
                  r->add_outputs()->set_name("output");
                },
                kInvalid,
                {"'output' requested twice"}},
        BadCase{"InvalidUtf8Name",
                [](R* r) { r->mutable_inputs(0)->set_name(std::string("\xff\xfe", 2)); },
                kInvalid,
                {"inputs[0].name"}}),
    [](const ::testing::TestParamInfo<BadCase>& info) { return info.param.name; });

TEST(RequestCodecTest, NonFiniteAllowedWhenConfigured) {
  auto r = Good();
  float nan = std::nanf("");
  std::memcpy(r.mutable_raw_input_contents(0)->data(), &nan, 4);
  ModelIo io = Io();
  io.limits.allow_non_finite = true;
  EXPECT_OK(DecodeInferRequest(r, io));
}

TEST(RequestCodecTest, EncodesOutputsInTheInputDtype) {
  auto r = Good();
  r.mutable_inputs(0)->set_datatype("BF16");
  r.set_raw_input_contents(0, std::string(16, '\0'));
  r.add_outputs()->set_name("output");
  r.add_outputs()->set_name("expert_ids");
  r.add_outputs()->set_name("expert_weights");
  ASSERT_OK_AND_ASSIGN(DecodedRequest d, DecodeInferRequest(r, Io()));
  InferTask task;
  task.num_tokens = 2;
  task.output = {1, 2, 3, 4, 5, 6, 7, 8.5f};
  task.expert_ids = {0, 1, 2, 3};
  task.expert_weights = {0.5f, 0.5f, 0.25f, 0.75f};
  inference::ModelInferResponse resp;
  EncodeInferResponse(d, task, Io(), &resp);
  EXPECT_EQ(resp.id(), "req-1");
  EXPECT_EQ(resp.model_name(), "moe");
  ASSERT_EQ(resp.outputs_size(), 3);
  ASSERT_EQ(resp.raw_output_contents_size(), 3);
  EXPECT_EQ(resp.outputs(0).datatype(), "BF16");
  EXPECT_EQ(resp.outputs(0).shape(0), 2);
  EXPECT_EQ(resp.outputs(0).shape(1), 4);
  EXPECT_EQ(resp.raw_output_contents(0).size(), 16u);
  uint16_t last;
  std::memcpy(&last, resp.raw_output_contents(0).data() + 14, 2);
  EXPECT_EQ(Bf16ToFloat(last), 8.5f);
  EXPECT_EQ(resp.outputs(1).datatype(), "INT32");
  EXPECT_EQ(resp.outputs(1).shape(1), 2);
  EXPECT_EQ(resp.raw_output_contents(1).size(), 16u);
  EXPECT_EQ(resp.outputs(2).datatype(), "FP32");
  float w;
  std::memcpy(&w, resp.raw_output_contents(2).data() + 12, 4);
  EXPECT_EQ(w, 0.75f);
}

// ---- Caller-supplied routing: the optional inputs expert_ids (INT32) and
// expert_weights (FP32), [T, k], and the shared_experts parameter.

ModelIo MoeIo() {
  ModelIo io = Io();
  io.num_experts = 8;
  return io;
}

// Good() plus the routing inputs, as raw data (or typed with `typed`).
inference::ModelInferRequest WithRouting(bool typed = false) {
  inference::ModelInferRequest r = Good();  // T = 2, k = 2 in Io()
  const std::vector<int32_t> ids = {5, 1, 0, 7};
  const std::vector<float> w = {0.75f, 0.25f, 0.5f, 0.5f};
  auto* in_ids = r.add_inputs();
  in_ids->set_name("expert_ids");
  in_ids->set_datatype("INT32");
  in_ids->add_shape(2);
  in_ids->add_shape(2);
  auto* in_w = r.add_inputs();
  in_w->set_name("expert_weights");
  in_w->set_datatype("FP32");
  in_w->add_shape(2);
  in_w->add_shape(2);
  if (typed) {
    std::vector<float> tokens(8);
    std::memcpy(tokens.data(), r.raw_input_contents(0).data(), 32);
    r.clear_raw_input_contents();
    for (float v : tokens) r.mutable_inputs(0)->mutable_contents()->add_fp32_contents(v);
    for (int32_t v : ids) in_ids->mutable_contents()->add_int_contents(v);
    for (float v : w) in_w->mutable_contents()->add_fp32_contents(v);
  } else {
    r.add_raw_input_contents(std::string(reinterpret_cast<const char*>(ids.data()), 16));
    r.add_raw_input_contents(std::string(reinterpret_cast<const char*>(w.data()), 16));
  }
  return r;
}

TEST(RequestCodecRoutingTest, DecodesRawAndTypedRouting) {
  for (bool typed : {false, true}) {
    ASSERT_OK_AND_ASSIGN(DecodedRequest d, DecodeInferRequest(WithRouting(typed), MoeIo()));
    EXPECT_EQ(d.given_ids, (std::vector<int32_t>{5, 1, 0, 7}));
    EXPECT_EQ(d.given_weights, (std::vector<float>{0.75f, 0.25f, 0.5f, 0.5f}));
    EXPECT_EQ(d.tokens[5], 1.25f);
    EXPECT_FALSE(d.skip_shared);
  }
}

TEST(RequestCodecRoutingTest, InputsMayComeInAnyOrder) {
  auto r = WithRouting(/*typed=*/true);
  r.mutable_inputs()->SwapElements(0, 2);
  ASSERT_OK_AND_ASSIGN(DecodedRequest d, DecodeInferRequest(r, MoeIo()));
  EXPECT_EQ(d.given_ids, (std::vector<int32_t>{5, 1, 0, 7}));
  EXPECT_EQ(d.num_tokens, 2);
}

TEST(RequestCodecRoutingTest, SharedExpertsParameter) {
  auto r = Good();
  (*r.mutable_parameters())["shared_experts"].set_bool_param(false);
  ASSERT_OK_AND_ASSIGN(DecodedRequest d, DecodeInferRequest(r, MoeIo()));
  EXPECT_TRUE(d.skip_shared);
  (*r.mutable_parameters())["shared_experts"].set_bool_param(true);
  ASSERT_OK_AND_ASSIGN(DecodedRequest on, DecodeInferRequest(r, MoeIo()));
  EXPECT_FALSE(on.skip_shared);
  (*r.mutable_parameters())["shared_experts"].set_string_param("no");
  EXPECT_THAT(DecodeInferRequest(r, MoeIo()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("shared_experts")));
}

struct RoutingCase {
  const char* name;
  std::function<void(inference::ModelInferRequest*)> mutate;
  std::vector<std::string> parts;
};

class RequestCodecRoutingBadTest : public ::testing::TestWithParam<RoutingCase> {};

TEST_P(RequestCodecRoutingBadTest, IsRejectedNamingTheProblem) {
  auto r = WithRouting();
  GetParam().mutate(&r);
  auto d = DecodeInferRequest(r, MoeIo());
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument) << d.status();
  for (const auto& p : GetParam().parts) {
    EXPECT_THAT(std::string(d.status().message()), HasSubstr(p));
  }
}

void SetRaw(R* r, int index, const std::vector<int32_t>& v) {
  r->set_raw_input_contents(index,
                            std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, RequestCodecRoutingBadTest,
    ::testing::Values(
        RoutingCase{"IdsWithoutWeights",
                    [](R* r) {
                      r->mutable_inputs()->RemoveLast();
                      r->mutable_raw_input_contents()->RemoveLast();
                    },
                    {"exactly 1 input", "or 3", "got 2"}},
        RoutingCase{"IdOutOfRange",
                    [](R* r) {
                      SetRaw(r, 1, {5, 1, 0, 8});
                    },
                    {"expert_ids[1][1]", "expert 8", "0..7"}},
        RoutingCase{"NegativeId",
                    [](R* r) {
                      SetRaw(r, 1, {-3, 1, 0, 7});
                    },
                    {"expert_ids[0][0]", "expert -3"}},
        RoutingCase{"RepeatedId",
                    [](R* r) {
                      SetRaw(r, 1, {5, 1, 7, 7});
                    },
                    {"expert_ids[1]", "expert 7 appears twice"}},
        RoutingCase{"NanWeight",
                    [](R* r) {
                      const std::vector<float> w = {0.75f, std::nanf(""), 0.5f, 0.5f};
                      r->set_raw_input_contents(
                          2, std::string(reinterpret_cast<const char*>(w.data()), 16));
                    },
                    {"expert_weights[0][1]", "not finite"}},
        RoutingCase{"IdsAsFp32",
                    [](R* r) { r->mutable_inputs(1)->set_datatype("FP32"); },
                    {"inputs[1] (expert_ids).datatype", "expected INT32", "'FP32'"}},
        RoutingCase{"WeightsAsFp16",
                    [](R* r) { r->mutable_inputs(2)->set_datatype("FP16"); },
                    {"inputs[2] (expert_weights).datatype", "expected FP32"}},
        RoutingCase{"WrongK",
                    [](R* r) { r->mutable_inputs(1)->set_shape(1, 3); },
                    {"inputs[1] (expert_ids).shape", "expected [2, 2]", "got [2, 3]"}},
        RoutingCase{"WrongTokenCount",
                    [](R* r) { r->mutable_inputs(2)->set_shape(0, 1); },
                    {"inputs[2] (expert_weights).shape", "expected [2, 2]", "got [1, 2]"}},
        RoutingCase{"ShortRawIds",
                    [](R* r) { r->mutable_raw_input_contents(1)->resize(12); },
                    {"raw_input_contents[1] (expert_ids)", "expected 16 bytes", "got 12"}},
        RoutingCase{"RawForSomeInputsOnly",
                    [](R* r) { r->mutable_raw_input_contents()->RemoveLast(); },
                    {"raw_input_contents", "one per input", "got 2"}},
        RoutingCase{"UnknownThirdInput",
                    [](R* r) { r->mutable_inputs(2)->set_name("gate"); },
                    {"inputs[2].name", "'gate'"}},
        RoutingCase{"RoutingGivenTwice",
                    [](R* r) { r->mutable_inputs(2)->set_name("expert_ids"); },
                    {"inputs[2].name", "'expert_ids' given twice"}},
        RoutingCase{"NoTokens",
                    [](R* r) { r->mutable_inputs(0)->set_name("expert_gates"); },
                    {"inputs[0].name", "'expert_gates'"}}),
    [](const ::testing::TestParamInfo<RoutingCase>& i) { return i.param.name; });

TEST(RequestCodecRoutingTest, ADenseModelTakesNoRouting) {
  auto d = DecodeInferRequest(WithRouting(), Io());  // num_experts 1
  ASSERT_FALSE(d.ok());
  EXPECT_THAT(std::string(d.status().message()), HasSubstr("dense FFN"));
}

}  // namespace
}  // namespace moe
