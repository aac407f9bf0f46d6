// Clock: the time source of components that wait on deadlines (the dynamic
// batcher), so that tests can drive time instead of sleeping.
//
// Thread-safety: every method may be called from any thread.
#ifndef MOE_COMMON_CLOCK_H_
#define MOE_COMMON_CLOCK_H_

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace moe {

class Clock {
 public:
  virtual ~Clock() = default;

  virtual absl::Time Now() const = 0;

  // With `mu` held by the caller: blocks until `cond` holds or Now()
  // reaches `deadline` (absl::InfiniteFuture(): no deadline), releasing
  // `mu` while it waits, as absl::Mutex::AwaitWithDeadline does. Returns
  // whether `cond` holds. `mu` must outlive the wait.
  virtual bool AwaitWithDeadline(absl::Mutex* mu, const absl::Condition& cond,
                                 absl::Time deadline) = 0;

  // The process's real clock (absl::Now()); never destroyed.
  static Clock* Real();
};

}  // namespace moe

#endif  // MOE_COMMON_CLOCK_H_
