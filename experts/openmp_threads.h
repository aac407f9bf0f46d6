// The OpenMP team the experts' kernels split their work over. Defined in
// openmp_threads.cc, which moe_experts compiles with OpenMP in GCC builds
// (libgomp), so every caller sees the same answer whatever its own flags.
// Thread-safety: thread-safe.
#ifndef MOE_EXPERTS_OPENMP_THREADS_H_
#define MOE_EXPERTS_OPENMP_THREADS_H_

namespace moe {

// The runtime's max threads (1 where OpenMP is off).
int OpenMpMaxThreads();

// The calling thread's number in its OpenMP team (0 outside a parallel
// region or where OpenMP is off).
int OpenMpThreadNum();

}  // namespace moe

#endif  // MOE_EXPERTS_OPENMP_THREADS_H_
