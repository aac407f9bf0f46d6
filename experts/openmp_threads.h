// The OpenMP team size the experts' kernels split their work over: the
// runtime's max threads in GCC builds (libgomp), 1 where OpenMP is off.
// Thread-safe.
#ifndef MOE_EXPERTS_OPENMP_THREADS_H_
#define MOE_EXPERTS_OPENMP_THREADS_H_

#ifdef _OPENMP
#include <omp.h>
#endif

namespace moe {

inline int OpenMpMaxThreads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

// The calling thread's number in its OpenMP team (0 outside a parallel
// region or where OpenMP is off).
inline int OpenMpThreadNum() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

}  // namespace moe

#endif  // MOE_EXPERTS_OPENMP_THREADS_H_
