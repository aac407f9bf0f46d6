#include "experts/dnnl_engine.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/cpu_tier.h"

namespace moe {

namespace {

dnnl::cpu_isa DnnlIsaFor(CpuTier tier) {
  switch (tier) {
    case CpuTier::kAvx2:
      return dnnl::cpu_isa::avx2;
    case CpuTier::kAvx512:
      return dnnl::cpu_isa::avx512_core;
    case CpuTier::kAvx512Bf16:
      return dnnl::cpu_isa::avx512_core_bf16;
    case CpuTier::kAmx:
      return dnnl::cpu_isa::all;
  }
  return dnnl::cpu_isa::all;
}

// Empty, or why oneDNN could not be capped at the active tier.
std::string& IsaCapError() {
  static std::string* error = new std::string;
  return *error;
}

}  // namespace

const dnnl::engine& CpuEngine() {
  static const dnnl::engine* engine = [] {
    // Before the engine and any primitive: oneDNN fixes its ISA at the
    // first kernel it generates.
    try {
      dnnl::set_max_cpu_isa(DnnlIsaFor(ActiveCpuTier()));
    } catch (const dnnl::error& e) {
      IsaCapError() = e.what();
    }
    return new dnnl::engine(dnnl::engine::kind::cpu, 0);
  }();
  return *engine;
}

bool CpuHasNativeBf16() {
  static const bool native = [] {
    if (ActiveCpuTier() < CpuTier::kAvx512Bf16) return false;
    using dt = dnnl::memory::data_type;
    using tag = dnnl::memory::format_tag;
    try {
      dnnl::memory::desc src({16, 64}, dt::bf16, tag::ab);
      dnnl::memory::desc wei({64, 64}, dt::bf16, tag::any);
      dnnl::memory::desc dst({16, 64}, dt::f32, tag::ab);
      dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src, wei, dst), CpuEngine());
      const std::string impl = pd.impl_info_str();
      return absl::StrContains(impl, "bf16") || absl::StrContains(impl, "amx");
    } catch (const dnnl::error&) {
      return false;
    }
  }();
  return native;
}

std::string DnnlDescription() {
  const dnnl_version_t* v = dnnl_version();
  const char* runtime = v->cpu_runtime == DNNL_RUNTIME_OMP   ? "OpenMP"
                        : v->cpu_runtime == DNNL_RUNTIME_TBB ? "TBB"
                        : v->cpu_runtime == DNNL_RUNTIME_SEQ ? "sequential"
                                                             : "threadpool";
  CpuEngine();
  const dnnl::cpu_isa isa = dnnl::get_effective_cpu_isa();
  const char* isa_name = isa == dnnl::cpu_isa::avx2               ? "avx2"
                         : isa == dnnl::cpu_isa::avx512_core      ? "avx512_core"
                         : isa == dnnl::cpu_isa::avx512_core_vnni ? "avx512_core_vnni"
                         : isa == dnnl::cpu_isa::avx512_core_bf16 ? "avx512_core_bf16"
                         : isa == dnnl::cpu_isa::avx512_core_amx  ? "avx512_core_amx"
                                                                  : "other";
  std::string s = absl::StrCat("oneDNN ", v->major, ".", v->minor, ".", v->patch, " (cpu runtime ",
                               runtime, ", isa ", isa_name, ")");
  if (!IsaCapError().empty()) absl::StrAppend(&s, " [ISA cap failed: ", IsaCapError(), "]");
  return s;
}

}  // namespace moe
