// <immintrin.h> for files with run-time-dispatched AVX-512/AVX2 code.
// GCC 12's AVX-512 intrinsics trip its own uninitialised-value warnings
// (_mm512_undefined_* as the pass-through operand); they are silenced for
// the rest of the including file, which is what including this header means.
#ifndef MOE_COMMON_X86_INTRINSICS_H_
#define MOE_COMMON_X86_INTRINSICS_H_

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#endif  // MOE_COMMON_X86_INTRINSICS_H_
