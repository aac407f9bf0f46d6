// ThreadSanitizer builds only: makes abseil's Mutex and Notification visible
// to TSan.
//
// Debian's libabsl is not built with -fsanitize=thread, so TSan cannot see
// that absl::Mutex::Lock/Unlock or Notification::Notify/Wait synchronise:
// every access guarded by an absl::Mutex would be reported as a race. The
// test binaries are linked with -Wl,--wrap=<symbol> for the functions below,
// so our code's calls land here; each wrapper calls the real function and
// tells TSan what it did through TSan's public annotation interface
// (sanitizer/tsan_interface.h). Calls made inside other uninstrumented
// libraries (gRPC) are not wrapped: that is why only the batcher tests run
// under TSan (README, "Reliability").
//
// The symbols' mangled names come from tests/CMakeLists.txt, which finds
// them in the installed library by their demangled signatures, as
// MOE_TSAN_SYM_<KEY> string literals; the wrappers take them as assembler
// names ("__wrap_" and "__real_" prefixed, as --wrap expects).
#include <sanitizer/tsan_interface.h>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

using absl::Condition;
using absl::Duration;
using absl::Mutex;
using absl::Notification;
using absl::Time;

#define MOE_REAL(key) __asm__("__real_" MOE_TSAN_SYM_##key)
#define MOE_WRAP(key) __asm__("__wrap_" MOE_TSAN_SYM_##key)

extern "C" {
// The real functions (resolved by the linker's --wrap).
void RealLock(Mutex* mu) MOE_REAL(MUTEX_LOCK);
void RealUnlock(Mutex* mu) MOE_REAL(MUTEX_UNLOCK);
void RealMutexDtor(Mutex* mu) MOE_REAL(MUTEX_DTOR);
void RealAwait(Mutex* mu, const Condition& c) MOE_REAL(MUTEX_AWAIT);
bool RealAwaitWithTimeout(Mutex* mu, const Condition& c, Duration d) MOE_REAL(MUTEX_AWAIT_TIMEOUT);
bool RealAwaitWithDeadline(Mutex* mu, const Condition& c, Time t) MOE_REAL(MUTEX_AWAIT_DEADLINE);
void RealNotify(Notification* n) MOE_REAL(NOTIFY);
void RealWait(const Notification* n) MOE_REAL(WAIT);
bool RealWaitWithTimeout(const Notification* n, Duration d) MOE_REAL(WAIT_TIMEOUT);

// The wrappers our calls reach.
void WrapLock(Mutex* mu) MOE_WRAP(MUTEX_LOCK);
void WrapUnlock(Mutex* mu) MOE_WRAP(MUTEX_UNLOCK);
void WrapMutexDtor(Mutex* mu) MOE_WRAP(MUTEX_DTOR);
void WrapAwait(Mutex* mu, const Condition& c) MOE_WRAP(MUTEX_AWAIT);
bool WrapAwaitWithTimeout(Mutex* mu, const Condition& c, Duration d) MOE_WRAP(MUTEX_AWAIT_TIMEOUT);
bool WrapAwaitWithDeadline(Mutex* mu, const Condition& c, Time t) MOE_WRAP(MUTEX_AWAIT_DEADLINE);
void WrapNotify(Notification* n) MOE_WRAP(NOTIFY);
void WrapWait(const Notification* n) MOE_WRAP(WAIT);
bool WrapWaitWithTimeout(const Notification* n, Duration d) MOE_WRAP(WAIT_TIMEOUT);

// A mutex is modelled as a happens-before edge on its address: every
// Unlock (and Await, which unlocks while it waits) releases, every Lock
// (and the return from Await) acquires. Conditions that abseil evaluates
// inside Await/Unlock acquire themselves (common/tsan_annotations.h).
void WrapLock(Mutex* mu) {
  RealLock(mu);
  __tsan_acquire(mu);
}

void WrapUnlock(Mutex* mu) {
  __tsan_release(mu);
  RealUnlock(mu);
}

void WrapMutexDtor(Mutex* mu) { RealMutexDtor(mu); }

void WrapAwait(Mutex* mu, const Condition& c) {
  __tsan_release(mu);
  RealAwait(mu, c);
  __tsan_acquire(mu);
}

bool WrapAwaitWithTimeout(Mutex* mu, const Condition& c, Duration d) {
  __tsan_release(mu);
  const bool r = RealAwaitWithTimeout(mu, c, d);
  __tsan_acquire(mu);
  return r;
}

bool WrapAwaitWithDeadline(Mutex* mu, const Condition& c, Time t) {
  __tsan_release(mu);
  const bool r = RealAwaitWithDeadline(mu, c, t);
  __tsan_acquire(mu);
  return r;
}

// Notify happens before every wait that sees it.
void WrapNotify(Notification* n) {
  __tsan_release(n);
  RealNotify(n);
}

void WrapWait(const Notification* n) {
  RealWait(n);
  __tsan_acquire(const_cast<Notification*>(n));
}

bool WrapWaitWithTimeout(const Notification* n, Duration d) {
  const bool r = RealWaitWithTimeout(n, d);
  if (r) __tsan_acquire(const_cast<Notification*>(n));
  return r;
}
}  // extern "C"
