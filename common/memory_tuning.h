// Process-wide allocator settings for serving. Call them once at start-up,
// before any large allocation and before other threads start.
#ifndef MOE_COMMON_MEMORY_TUNING_H_
#define MOE_COMMON_MEMORY_TUNING_H_

namespace moe {

// Keeps freed memory in the process: raises M_MMAP_THRESHOLD to its
// maximum and disables heap trimming, so per-batch buffers freed by one
// batch are reused by the next instead of being faulted in again.
void KeepFreedMemoryInProcess();

// Turns off abseil's lock-order cycle check on every absl::Mutex
// acquisition (on in Debian's abseil). The tests keep the check; serving
// binaries call this.
void SkipMutexDeadlockDetection();

}  // namespace moe

#endif  // MOE_COMMON_MEMORY_TUNING_H_
