// CpuTier: names, parsing, detection order, and that the cap holds.
#include "common/cpu_tier.h"

#include "gtest/gtest.h"
#include "tests/status_matchers.h"

namespace moe {
namespace {

TEST(CpuTierTest, NamesRoundTrip) {
  for (CpuTier t : kAllCpuTiers) {
    ASSERT_OK_AND_ASSIGN(CpuTier parsed, ParseCpuTier(CpuTierName(t)));
    EXPECT_EQ(parsed, t);
  }
  ASSERT_OK_AND_ASSIGN(CpuTier upper, ParseCpuTier("AVX512-BF16"));
  EXPECT_EQ(upper, CpuTier::kAvx512Bf16);
  auto bad = ParseCpuTier("sse4");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("'sse4'"), std::string::npos);
  EXPECT_NE(bad.status().message().find("avx2, avx512, avx512_bf16 or amx"), std::string::npos);
}

// A tier is supported only if every lower one is.
TEST(CpuTierTest, SupportIsMonotonic) {
  bool lower = true;
  for (CpuTier t : kAllCpuTiers) {
    if (!lower) {
      EXPECT_FALSE(CpuSupportsTier(t)) << CpuTierName(t);
    }
    lower = CpuSupportsTier(t);
  }
  EXPECT_EQ(CpuSupportsTier(CpuTier::kAvx2), CpuMeetsBaseline());
  EXPECT_TRUE(CpuSupportsTier(DetectedCpuTier()) || !CpuMeetsBaseline());
}

// The active tier never exceeds the CPU or the cap, and a later cap that
// differs is refused once it is fixed.
TEST(CpuTierTest, ActiveTierHonoursTheCap) {
  const CpuTier active = ActiveCpuTier();
  EXPECT_LE(active, DetectedCpuTier());
  ASSERT_OK_AND_ASSIGN(CpuTier env_cap, MaxCpuTierFromEnvironment());
  EXPECT_LE(active, env_cap);
  EXPECT_EQ(active, std::min(env_cap, DetectedCpuTier()));
  const CpuTier other = active == CpuTier::kAvx2 ? CpuTier::kAmx : CpuTier::kAvx2;
  auto late = SetMaxCpuTier(other);
  EXPECT_EQ(late.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ActiveCpuTier(), active);
  EXPECT_NE(CpuTierDescription().find(CpuTierName(active)), std::string::npos);
}

}  // namespace
}  // namespace moe
