// ComputeThread and RunOnTransientThread: where functions run, what they
// return, and that concurrent callers are served one at a time.
#include "common/compute_thread.h"

#include <atomic>
#include <new>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace moe {
namespace {

TEST(RunOnTransientThreadTest, RunsElsewhereAndReturnsTheResult) {
  const std::thread::id caller = std::this_thread::get_id();
  std::thread::id ran_on;
  absl::StatusOr<int> r = RunOnTransientThread([&]() -> absl::StatusOr<int> {
    ran_on = std::this_thread::get_id();
    return 42;
  });
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, 42);
  EXPECT_NE(ran_on, caller);

  absl::Status failed =
      RunOnTransientThread([] { return absl::InvalidArgumentError("bad weights"); });
  EXPECT_EQ(failed.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(failed.message(), "bad weights");
}

TEST(ComputeThreadTest, RunsEveryFunctionOnItsOneThread) {
  ComputeThread compute;
  std::thread::id seen;
  ASSERT_TRUE(compute
                  .Run([&] {
                    seen = std::this_thread::get_id();
                    return absl::OkStatus();
                  })
                  .ok());
  EXPECT_EQ(seen, compute.id());
  EXPECT_NE(seen, std::this_thread::get_id());

  absl::Status st = compute.Run([] { return absl::InternalError("kernel failed"); });
  EXPECT_EQ(st.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(st.message(), "kernel failed");
  // A failure does not stop the thread.
  EXPECT_TRUE(compute.Run([] { return absl::OkStatus(); }).ok());
}

TEST(ComputeThreadTest, ConcurrentCallersRunOneAtATimeAndEachGetsItsOwnResult) {
  ComputeThread compute;
  constexpr int kCallers = 8;
  constexpr int kCallsEach = 200;
  std::atomic<int> running{0};
  std::atomic<int> overlaps{0};
  absl::Mutex mu;
  std::set<std::thread::id> threads;  // guarded by mu
  std::vector<int> wrong(kCallers, 0);
  std::vector<std::thread> callers;
  for (int c = 0; c < kCallers; ++c) {
    callers.emplace_back([&, c] {
      for (int i = 0; i < kCallsEach; ++i) {
        int value = -1;
        absl::Status st = compute.Run([&] {
          if (running.fetch_add(1) != 0) overlaps.fetch_add(1);
          {
            absl::MutexLock lock(&mu);
            threads.insert(std::this_thread::get_id());
          }
          value = c * 1000 + i;
          running.fetch_sub(1);
          return i % 2 == 0 ? absl::OkStatus() : absl::OutOfRangeError("odd");
        });
        if (value != c * 1000 + i || st.ok() != (i % 2 == 0)) ++wrong[static_cast<size_t>(c)];
      }
    });
  }
  for (auto& t : callers) t.join();
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_THAT(wrong, ::testing::Each(0));
  absl::MutexLock lock(&mu);
  EXPECT_THAT(threads, ::testing::ElementsAre(compute.id()));
}

TEST(RunOnTransientThreadTest, RethrowsInTheCaller) {
  EXPECT_THROW(
      RunOnTransientThread([]() -> absl::Status { throw std::runtime_error("oom"); }).IgnoreError(),
      std::runtime_error);
}

TEST(ComputeThreadTest, AnExceptionBecomesAnInternalErrorAndTheThreadGoesOn) {
  ComputeThread compute;
  absl::Status st = compute.Run([]() -> absl::Status { throw std::bad_alloc(); });
  EXPECT_EQ(st.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(std::string(st.message()), ::testing::HasSubstr("uncaught exception"));
  st = compute.Run([]() -> absl::Status { throw 7; });
  EXPECT_EQ(st.code(), absl::StatusCode::kInternal);
  EXPECT_TRUE(compute.Run([] { return absl::OkStatus(); }).ok());
}

TEST(ComputeThreadTest, DestroysCleanlyWhetherUsedOrNot) {
  { ComputeThread unused; }
  ComputeThread used;
  EXPECT_TRUE(used.Run([] { return absl::OkStatus(); }).ok());
}

}  // namespace
}  // namespace moe
