#include "experts/dnnl_engine.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace moe {

const dnnl::engine& CpuEngine() {
  static const dnnl::engine* engine = new dnnl::engine(dnnl::engine::kind::cpu, 0);
  return *engine;
}

bool CpuHasNativeBf16() {
  static const bool native = [] {
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
  const char* runtime = v->cpu_runtime == DNNL_RUNTIME_OMP    ? "OpenMP"
                        : v->cpu_runtime == DNNL_RUNTIME_TBB  ? "TBB"
                        : v->cpu_runtime == DNNL_RUNTIME_SEQ  ? "sequential"
                                                              : "threadpool";
  return absl::StrCat("oneDNN ", v->major, ".", v->minor, ".", v->patch,
                      " (cpu runtime ", runtime, ")");
}

}  // namespace moe
