// The --max_isa flag every moe-serve binary takes (linked from the
// moe_max_isa_flag library, which defines it once).
//
//   --max_isa=avx2|avx512|avx512_bf16|amx   caps the CPU tier the kernels
//   use (cpu_tier.h); empty defers to MOE_MAX_ISA. The flag wins.
#ifndef MOE_COMMON_MAX_ISA_FLAG_H_
#define MOE_COMMON_MAX_ISA_FLAG_H_

#include "common/cpu_tier.h"

namespace moe {

// Call after absl::ParseCommandLine and before any kernel is created.
// Applies --max_isa / MOE_MAX_ISA and returns the active tier; on a bad
// value, or a CPU below the AVX2/FMA/F16C baseline, prints why to stderr
// (naming `program`) and exits with status 2.
CpuTier ApplyMaxIsaFlagOrExit(const char* program);

}  // namespace moe

#endif  // MOE_COMMON_MAX_ISA_FLAG_H_
