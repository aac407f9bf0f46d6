// Activation names: what config.json values map to which function.
#include "experts/activation.h"

#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/status_matchers.h"

namespace moe {
namespace {

using ::moe::testing::StatusIs;
using ::testing::HasSubstr;

TEST(ActivationTest, ParsesTheHuggingFaceNames) {
  const std::vector<std::pair<std::string, Activation>> names = {
      {"relu", Activation::kRelu},          {"gelu", Activation::kGelu},
      {"gelu_new", Activation::kGeluTanh},  {"gelu_pytorch_tanh", Activation::kGeluTanh},
      {"gelu_fast", Activation::kGeluTanh}, {"gelu_tanh", Activation::kGeluTanh},
      {"silu", Activation::kSilu},          {"swish", Activation::kSilu},
  };
  for (const auto& [name, want] : names) {
    ASSERT_OK_AND_ASSIGN(Activation got, ParseActivation(name));
    EXPECT_EQ(got, want) << name;
  }
}

TEST(ActivationTest, NamesRoundTrip) {
  for (Activation a :
       {Activation::kRelu, Activation::kGelu, Activation::kGeluTanh, Activation::kSilu}) {
    ASSERT_OK_AND_ASSIGN(Activation back, ParseActivation(ActivationName(a)));
    EXPECT_EQ(back, a) << ActivationName(a);
  }
}

TEST(ActivationTest, RejectsUnknownNamesNamingThem) {
  for (const char* bad : {"", "tanh", "quick_gelu", "GELU2"}) {
    EXPECT_THAT(ParseActivation(bad),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(std::string("'") + bad)))
        << bad;
  }
}

}  // namespace
}  // namespace moe
