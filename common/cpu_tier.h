// CPU tiers: the instruction-set levels whose kernels moe-serve carries,
// which one this CPU supports (CPUID), and the process-wide cap on it.
//
// Tiers, lowest first (each includes the ones before it):
//   avx2         AVX2 + FMA + F16C (x86-64-v3): the project's own kernels
//   avx512       AVX-512 F/BW/DQ/VL: oneDNN brgemm (f32)
//   avx512_bf16  + AVX512_BF16 and VNNI: oneDNN brgemm in bf16 too
//   amx          + AMX-TILE/BF16/INT8: what oneDNN runs there
//
// The active tier is the lower of what the CPU supports and the cap (the
// --max_isa flag through SetMaxCpuTier, else the MOE_MAX_ISA environment
// variable, else none). It is fixed by the first call to ActiveCpuTier()
// and never changes afterwards; within a tier the summation order of every
// output element depends only on the layer's shape and precision.
//
// Thread-safety: all functions may be called from any thread.
#ifndef MOE_COMMON_CPU_TIER_H_
#define MOE_COMMON_CPU_TIER_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace moe {

enum class CpuTier { kAvx2 = 0, kAvx512 = 1, kAvx512Bf16 = 2, kAmx = 3 };

inline constexpr CpuTier kAllCpuTiers[] = {CpuTier::kAvx2, CpuTier::kAvx512, CpuTier::kAvx512Bf16,
                                           CpuTier::kAmx};

// "avx2", "avx512", "avx512_bf16", "amx".
const char* CpuTierName(CpuTier tier);

// Parses a tier name (case-insensitive, '-' taken as '_'); the error lists
// the valid names.
absl::StatusOr<CpuTier> ParseCpuTier(absl::string_view name);

// True when this CPU has AVX2, FMA and F16C, the lowest tier moe-serve runs
// on.
bool CpuMeetsBaseline();

// True when this CPU has every instruction set of `tier`.
bool CpuSupportsTier(CpuTier tier);

// The highest tier this CPU supports (kAvx2 when it does not even meet the
// baseline; check CpuMeetsBaseline()).
CpuTier DetectedCpuTier();

// Caps the active tier at `cap`. Must be called before the first
// ActiveCpuTier() (so before any kernel is created); later calls fail with
// FAILED_PRECONDITION unless they name the cap already in force.
absl::Status SetMaxCpuTier(CpuTier cap);

// The cap MOE_MAX_ISA names; kAmx (no cap) when it is unset or empty. An
// unparsable value is INVALID_ARGUMENT naming the variable.
absl::StatusOr<CpuTier> MaxCpuTierFromEnvironment();

// min(DetectedCpuTier(), cap). Fixed on first call. If MOE_MAX_ISA is
// unparsable the cap is ignored here (binaries report it at start-up
// through ApplyMaxIsa()).
CpuTier ActiveCpuTier();

// For a binary's --max_isa flag: an empty flag defers to MOE_MAX_ISA; a
// non-empty one wins over it. Returns the active tier, or
// INVALID_ARGUMENT naming the bad value. Call once, early in main().
absl::StatusOr<CpuTier> ApplyMaxIsa(const std::string& flag);

// "avx512_bf16 (CPU: avx512_bf16)" or "avx2 (CPU: avx512_bf16, capped by
// MOE_MAX_ISA=avx2)": what runs and why, for logs and metadata.
std::string CpuTierDescription();

}  // namespace moe

#endif  // MOE_COMMON_CPU_TIER_H_
