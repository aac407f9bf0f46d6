// The process-wide oneDNN CPU engine and what it can do on this machine.
// Only experts/ headers include oneDNN (tests/header_dependencies_test.sh
// checks the other folders).
#ifndef MOE_EXPERTS_DNNL_ENGINE_H_
#define MOE_EXPERTS_DNNL_ENGINE_H_

#include <oneapi/dnnl/dnnl.hpp>
#include <string>

namespace moe {

// The CPU engine, created on first use, with oneDNN's JIT capped at
// ActiveCpuTier() (so that tier must be settled first; see cpu_tier.h).
// dnnl::engine is thread-safe.
const dnnl::engine& CpuEngine();

// True when oneDNN runs bf16 matmuls with native bf16 instructions at the
// active tier (avx512_bf16 or AMX). Where it does not, bf16 matrices run on
// the project's panel kernels instead (MatmulCacheRegistry::UsesPanels).
bool CpuHasNativeBf16();

// "oneDNN 2.6.3 (cpu runtime OpenMP, isa avx512_core_bf16)".
std::string DnnlDescription();

}  // namespace moe

#endif  // MOE_EXPERTS_DNNL_ENGINE_H_
