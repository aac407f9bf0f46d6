#include "common/max_isa_flag.h"

#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/flags/flag.h"

ABSL_FLAG(std::string, max_isa, "",
          "Highest CPU tier the kernels may use: avx2, avx512, avx512_bf16 or amx (oneDNN's "
          "too, through dnnl::set_max_cpu_isa). Empty: MOE_MAX_ISA, else the CPU's own. "
          "Lower tiers give results within tolerance, not bitwise equal, to higher ones.");

namespace moe {

CpuTier ApplyMaxIsaFlagOrExit(const char* program) {
  if (!CpuMeetsBaseline()) {
    std::fprintf(stderr,
                 "%s: this CPU lacks AVX2, FMA or F16C (x86-64-v3), the lowest tier "
                 "moe-serve runs on\n",
                 program);
    std::exit(2);
  }
  auto tier = ApplyMaxIsa(absl::GetFlag(FLAGS_max_isa));
  if (!tier.ok()) {
    std::fprintf(stderr, "%s: %s\n", program, std::string(tier.status().message()).c_str());
    std::exit(2);
  }
  return *tier;
}

}  // namespace moe
