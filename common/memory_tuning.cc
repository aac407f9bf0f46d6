#include "common/memory_tuning.h"

#include <malloc.h>

#include "absl/synchronization/mutex.h"

namespace moe {

void KeepFreedMemoryInProcess() {
  // 32 MiB is glibc's ceiling for the mmap threshold on 64-bit (larger
  // values are refused); blocks above it are still mmapped, but the
  // layer's buffers are grow-only and never freed.
  mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
  mallopt(M_TRIM_THRESHOLD, -1);
}

void SkipMutexDeadlockDetection() {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
}

}  // namespace moe
