// Process-wide allocator settings for serving.
//
// On the VMs this runs on the first touch of each 4 KB page costs ~14 µs.
// glibc returns large freed blocks to the OS (mmap threshold, heap trim),
// so per-batch buffers would be faulted in again on every batch. Call this
// once at start-up, before any large allocation.
#ifndef MOE_COMMON_MEMORY_TUNING_H_
#define MOE_COMMON_MEMORY_TUNING_H_

namespace moe {

// Keeps freed memory in the process: raises M_MMAP_THRESHOLD to its
// maximum and disables heap trimming.
void KeepFreedMemoryInProcess();

// Debian's abseil checks every absl::Mutex acquisition for lock-order
// cycles (its debug-build default; 0.4 % of the server's CPU at one client
// in a profile). The tests keep the check; serving binaries call this.
void SkipMutexDeadlockDetection();

}  // namespace moe

#endif  // MOE_COMMON_MEMORY_TUNING_H_
