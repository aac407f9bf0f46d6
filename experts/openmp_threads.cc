#include "experts/openmp_threads.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace moe {

int OpenMpMaxThreads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

int OpenMpThreadNum() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

}  // namespace moe
