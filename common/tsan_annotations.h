// Happens-before annotations for ThreadSanitizer builds; no-ops otherwise.
//
// Debian's abseil is not built with TSan, so TSan does not see that an
// absl::Mutex orders memory. The TSan test build wraps Lock/Unlock/Await
// (tests/tsan_absl_annotations.cc) with release/acquire on the mutex's
// address; the one place it cannot reach is an absl::Condition evaluated
// inside abseil (by the waiter, or by another thread in Unlock), always
// with the mutex held. Such a condition starts with
// MOE_TSAN_CONDITION_HOLDS(&mu_) so TSan knows it runs under the mutex.
#ifndef MOE_COMMON_TSAN_ANNOTATIONS_H_
#define MOE_COMMON_TSAN_ANNOTATIONS_H_

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MOE_TSAN_ENABLED 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define MOE_TSAN_ENABLED 1
#endif

#ifdef MOE_TSAN_ENABLED
#include <sanitizer/tsan_interface.h>

namespace moe::internal {
// Acquires the mutex's happens-before edge on entry and releases it on
// exit: the condition's reads are ordered after the last unlock and before
// the next lock.
class TsanConditionScope {
 public:
  explicit TsanConditionScope(const void* mu) : mu_(const_cast<void*>(mu)) { __tsan_acquire(mu_); }
  ~TsanConditionScope() { __tsan_release(mu_); }
  TsanConditionScope(const TsanConditionScope&) = delete;
  TsanConditionScope& operator=(const TsanConditionScope&) = delete;

 private:
  void* mu_;
};
}  // namespace moe::internal

#define MOE_TSAN_CONDITION_HOLDS(mutex_ptr) \
  ::moe::internal::TsanConditionScope moe_tsan_condition_scope(static_cast<const void*>(mutex_ptr))
#else
#define MOE_TSAN_CONDITION_HOLDS(mutex_ptr) static_cast<void>(0)
#endif

#endif  // MOE_COMMON_TSAN_ANNOTATIONS_H_
