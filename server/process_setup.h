// Start-up steps shared by moe_server and moe_expert_worker.
#ifndef MOE_SERVER_PROCESS_SETUP_H_
#define MOE_SERVER_PROCESS_SETUP_H_

#include <pthread.h>

#include <csignal>
#include <string>

#include "absl/status/statusor.h"
#include "common/dtype.h"
#include "experts/dnnl_engine.h"
#include "model/moe_layer.h"

namespace moe {

// Blocks SIGTERM and SIGINT in the calling thread (and so in every thread
// started after it) and returns the set, for sigwait() in main().
inline sigset_t BlockShutdownSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

// The --dtype flag: empty means bf16 where the CPU has native bf16, else
// f32; the result is what the kernels will really use on this CPU.
inline absl::StatusOr<DType> ResolveComputeDType(const std::string& flag) {
  DType compute = CpuHasNativeBf16() ? DType::kBF16 : DType::kF32;
  if (!flag.empty()) {
    auto parsed = ParseComputeDType(flag);
    if (!parsed.ok()) return parsed.status();
    compute = *parsed;
  }
  return EffectiveComputeDType(compute);
}

}  // namespace moe

#endif  // MOE_SERVER_PROCESS_SETUP_H_
