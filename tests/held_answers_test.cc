#include "batching/held_answers.h"

#include <vector>

#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace moe {
namespace {

TEST(HeldAnswersTest, RunsAtOnceUntilHoldingStarts) {
  HeldAnswers held;
  int sent = 0;
  held.HoldOrRun([&] { ++sent; });
  EXPECT_EQ(sent, 1);
  EXPECT_EQ(held.held(), 0);
}

TEST(HeldAnswersTest, KeepsAnswersUntilReleasedThenRunsThemInOrder) {
  HeldAnswers held;
  held.StartHolding();
  std::vector<int> order;
  held.HoldOrRun([&] { order.push_back(1); });
  held.HoldOrRun([&] { order.push_back(2); });
  EXPECT_TRUE(order.empty());
  EXPECT_EQ(held.held(), 2);
  held.Release();
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
  EXPECT_EQ(held.held(), 0);
}

TEST(HeldAnswersTest, AfterReleaseNothingIsHeldAgain) {
  HeldAnswers held;
  held.StartHolding();
  held.Release();
  held.StartHolding();  // too late: the drain's last step has passed
  int sent = 0;
  held.HoldOrRun([&] { ++sent; });
  EXPECT_EQ(sent, 1);
}

TEST(HeldAnswersTest, AnAnswerMayBeGivenFromInsideARelease) {
  HeldAnswers held;
  held.StartHolding();
  int sent = 0;
  held.HoldOrRun([&] { held.HoldOrRun([&] { ++sent; }); });
  held.Release();  // runs without the lock: the nested call must not deadlock
  EXPECT_EQ(sent, 1);
}

TEST(HeldAnswersTest, ACallWhoseDeadlineIsNearIsAnsweredAtOnce) {
  HeldAnswers held;
  held.StartHolding();
  int sent = 0;
  held.HoldOrRun([&] { ++sent; }, absl::Now() + HeldAnswers::kMaxHold / 2);
  EXPECT_EQ(sent, 1);  // holding it would turn UNAVAILABLE into DEADLINE_EXCEEDED
  held.HoldOrRun([&] { ++sent; }, absl::Now() + 10 * HeldAnswers::kMaxHold);
  EXPECT_EQ(sent, 1);
  EXPECT_EQ(held.held(), 1);
  held.Release();
  EXPECT_EQ(sent, 2);
}

TEST(HeldAnswersTest, ActivityIsNotedOnlyWhileHolding) {
  HeldAnswers held;
  held.HoldOrRun([] {});
  EXPECT_EQ(held.last_activity(), absl::InfinitePast());
  const absl::Time start = absl::Now();
  held.StartHolding();
  EXPECT_GE(held.last_activity(), start);  // quiet is measured from the start
  const absl::Time before = absl::Now();
  held.HoldOrRun([] {});
  EXPECT_GE(held.last_activity(), before);
  held.Release();
}

}  // namespace
}  // namespace moe
