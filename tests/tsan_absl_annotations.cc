// ThreadSanitizer builds only: makes abseil's Mutex and Notification visible
// to TSan.
//
// Debian's libabsl is not built with -fsanitize=thread, so TSan cannot see
// that absl::Mutex::Lock/Unlock or Notification::Notify/Wait synchronise:
// every access guarded by an absl::Mutex would be reported as a race. The
// test binaries are linked with -Wl,--wrap=<symbol> for the functions below
// (tests/CMakeLists.txt), so our code's calls land here; each wrapper calls
// the real function and tells TSan what it did through TSan's public
// annotation interface (sanitizer/tsan_interface.h). Calls made inside
// other uninstrumented libraries (gRPC) are not wrapped: that is why only
// the batcher tests run under TSan (README, "Reliability").
#include <sanitizer/tsan_interface.h>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

using absl::Condition;
using absl::Duration;
using absl::Mutex;
using absl::Notification;
using absl::Time;

extern "C" {
// The real functions (resolved by the linker's --wrap).
void __real__ZN4absl7debian35Mutex4LockEv(Mutex* mu);
void __real__ZN4absl7debian35Mutex6UnlockEv(Mutex* mu);
void __real__ZN4absl7debian35MutexD1Ev(Mutex* mu);
void __real__ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE(Mutex* mu, const Condition& c);
bool __real__ZN4absl7debian35Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE(
    Mutex* mu, const Condition& c, Duration d);
bool __real__ZN4absl7debian35Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE(
    Mutex* mu, const Condition& c, Time t);
void __real__ZN4absl7debian312Notification6NotifyEv(Notification* n);
void __real__ZNK4absl7debian312Notification19WaitForNotificationEv(const Notification* n);
bool __real__ZNK4absl7debian312Notification30WaitForNotificationWithTimeoutENS0_8DurationE(
    const Notification* n, Duration d);

// A mutex is modelled as a happens-before edge on its address: every
// Unlock (and Await, which unlocks while it waits) releases, every Lock
// (and the return from Await) acquires. Conditions that abseil evaluates
// inside Await/Unlock acquire themselves (common/tsan_annotations.h).
void __wrap__ZN4absl7debian35Mutex4LockEv(Mutex* mu) {
  __real__ZN4absl7debian35Mutex4LockEv(mu);
  __tsan_acquire(mu);
}

void __wrap__ZN4absl7debian35Mutex6UnlockEv(Mutex* mu) {
  __tsan_release(mu);
  __real__ZN4absl7debian35Mutex6UnlockEv(mu);
}

void __wrap__ZN4absl7debian35MutexD1Ev(Mutex* mu) { __real__ZN4absl7debian35MutexD1Ev(mu); }

void __wrap__ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE(Mutex* mu, const Condition& c) {
  __tsan_release(mu);
  __real__ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE(mu, c);
  __tsan_acquire(mu);
}

bool __wrap__ZN4absl7debian35Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE(
    Mutex* mu, const Condition& c, Duration d) {
  __tsan_release(mu);
  const bool r = __real__ZN4absl7debian35Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE(
      mu, c, d);
  __tsan_acquire(mu);
  return r;
}

bool __wrap__ZN4absl7debian35Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE(
    Mutex* mu, const Condition& c, Time t) {
  __tsan_release(mu);
  const bool r =
      __real__ZN4absl7debian35Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE(mu, c, t);
  __tsan_acquire(mu);
  return r;
}

// Notify happens before every wait that sees it.
void __wrap__ZN4absl7debian312Notification6NotifyEv(Notification* n) {
  __tsan_release(n);
  __real__ZN4absl7debian312Notification6NotifyEv(n);
}

void __wrap__ZNK4absl7debian312Notification19WaitForNotificationEv(const Notification* n) {
  __real__ZNK4absl7debian312Notification19WaitForNotificationEv(n);
  __tsan_acquire(const_cast<Notification*>(n));
}

bool __wrap__ZNK4absl7debian312Notification30WaitForNotificationWithTimeoutENS0_8DurationE(
    const Notification* n, Duration d) {
  const bool r =
      __real__ZNK4absl7debian312Notification30WaitForNotificationWithTimeoutENS0_8DurationE(n, d);
  if (r) __tsan_acquire(const_cast<Notification*>(n));
  return r;
}
}  // extern "C"
