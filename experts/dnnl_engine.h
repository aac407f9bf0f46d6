// The process-wide oneDNN CPU engine and what it can do on this machine.
// oneDNN types appear only inside experts/.
#ifndef MOE_EXPERTS_DNNL_ENGINE_H_
#define MOE_EXPERTS_DNNL_ENGINE_H_

#include <string>

#include <oneapi/dnnl/dnnl.hpp>

namespace moe {

// The CPU engine, created on first use. dnnl::engine is thread-safe.
const dnnl::engine& CpuEngine();

// True when oneDNN runs bf16 matmuls with native bf16 instructions here
// (avx512_bf16 or AMX); false when it would emulate them or use a reference
// kernel, in which case callers should compute in f32.
bool CpuHasNativeBf16();

// "oneDNN 2.6.3 (cpu runtime: OpenMP, isa: ...)".
std::string DnnlDescription();

}  // namespace moe

#endif  // MOE_EXPERTS_DNNL_ENGINE_H_
