// FakeClock: a Clock that stands still until the test advances it. A wait
// with a deadline returns when the test moves Now() to or past it (or its
// condition holds), never because real time passed.
//
// Contract: AdvanceBy() must not run while a mutex that is waiting on this
// clock is being destroyed (tests advance the clock between their own
// steps). Thread-safety: every method may be called from any thread.
#ifndef MOE_TESTS_FAKE_CLOCK_H_
#define MOE_TESTS_FAKE_CLOCK_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/tsan_annotations.h"

namespace moe::testing {

class FakeClock : public Clock {
 public:
  // Starts at an arbitrary fixed time.
  FakeClock() : now_ns_(absl::ToUnixNanos(absl::FromUnixSeconds(1'700'000'000))) {}

  absl::Time Now() const override { return absl::FromUnixNanos(now_ns_.load()); }

  bool AwaitWithDeadline(absl::Mutex* mu, const absl::Condition& cond,
                         absl::Time deadline) override {
    // Abseil may evaluate this on the thread that unlocks `mu`; the
    // annotation orders those reads of this frame before the waiter's
    // later writes to its stack (see common/tsan_annotations.h).
    struct Either {
      const absl::Mutex* mu;
      const absl::Condition* cond;
      const FakeClock* clock;
      absl::Time deadline;
      bool operator()() const {
        MOE_TSAN_CONDITION_HOLDS(mu);
        return cond->Eval() || clock->Now() >= deadline;
      }
    } either{mu, &cond, this, deadline};
    Register(mu, +1);
    mu->Await(absl::Condition(&either));
    Register(mu, -1);
    return cond.Eval();
  }

  // Moves Now() forward by `d` (>= 0) and wakes the waits it reaches: each
  // waiting mutex is locked and released, which has absl re-evaluate its
  // waiters' conditions.
  void AdvanceBy(absl::Duration d) {
    now_ns_.fetch_add(absl::ToInt64Nanoseconds(d));
    std::vector<absl::Mutex*> waiting;
    {
      absl::MutexLock lock(&mu_);
      for (const auto& [m, n] : waiters_) waiting.push_back(m);
    }
    for (absl::Mutex* m : waiting) {
      m->Lock();
      m->Unlock();
    }
  }

  // How many waits have started or ended since construction: unchanged
  // over an interval means no waiting thread woke or began to wait.
  int64_t wait_events() const {
    absl::MutexLock lock(&mu_);
    return wait_events_;
  }

  // How many waits are in progress (for tests that step once a thread
  // waits). A thread already woken but not yet run still counts.
  int waiters() const {
    absl::MutexLock lock(&mu_);
    int n = 0;
    for (const auto& [m, count] : waiters_) n += count;
    return n;
  }

 private:
  void Register(absl::Mutex* m, int delta) {
    absl::MutexLock lock(&mu_);
    ++wait_events_;
    if ((waiters_[m] += delta) == 0) waiters_.erase(m);
  }

  std::atomic<int64_t> now_ns_;
  mutable absl::Mutex mu_;
  std::map<absl::Mutex*, int> waiters_ ABSL_GUARDED_BY(mu_);
  int64_t wait_events_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace moe::testing

#endif  // MOE_TESTS_FAKE_CLOCK_H_
