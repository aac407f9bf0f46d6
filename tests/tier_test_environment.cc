// Linked into every test binary. Prints the CPU tier the tests run at. In
// a per-tier ctest run (MOE_TIER_RUN=<tier>; see tests/CMakeLists.txt) it
// caps the process at that tier (MOE_MAX_ISA, set before main() and so
// before any kernel, and inherited by worker processes the tests start),
// and skips every test when this CPU does not have the tier, or when the
// tier is the CPU's own (the uncapped run already covers it), saying which.
#include <cstdio>
#include <cstdlib>

#include "common/cpu_tier.h"
#include "gtest/gtest.h"

namespace moe {
namespace {

class TierEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    const char* run = std::getenv("MOE_TIER_RUN");
    if (run != nullptr && *run != '\0') {
      auto tier = ParseCpuTier(run);
      ASSERT_TRUE(tier.ok()) << "MOE_TIER_RUN: " << tier.status().message();
      if (!CpuSupportsTier(*tier)) {
        GTEST_SKIP() << "tier " << CpuTierName(*tier) << " is above this CPU's ("
                     << CpuTierName(DetectedCpuTier()) << "): not tested here";
      }
      if (*tier == DetectedCpuTier()) {
        GTEST_SKIP() << "tier " << CpuTierName(*tier)
                     << " is this CPU's own: the uncapped run tests it";
      }
    }
    std::printf("[ CPU tier ] tests run at %s\n", CpuTierDescription().c_str());
  }
};

::testing::Environment* Register() {
  const char* run = std::getenv("MOE_TIER_RUN");
  if (run != nullptr && *run != '\0') setenv("MOE_MAX_ISA", run, 1);
  return ::testing::AddGlobalTestEnvironment(new TierEnvironment);
}

::testing::Environment* const kTierEnvironment = Register();

}  // namespace
}  // namespace moe
