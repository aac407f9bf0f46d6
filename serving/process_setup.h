// Start-up steps shared by moe_server and moe_expert_worker.
#ifndef MOE_SERVING_PROCESS_SETUP_H_
#define MOE_SERVING_PROCESS_SETUP_H_

#include <pthread.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <string>

#include "absl/status/statusor.h"
#include "common/dtype.h"
#include "common/command_line.h"
#include "common/memory_tuning.h"
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

// How long an idle OpenMP worker spins before it sleeps, in libgomp's
// spin-loop iterations: ~30 µs here (libgomp's default, 300,000, is ~3 ms).
// Long enough to bridge the serial steps between the parallel regions of
// one layer call (a sleeping worker costs ~20 µs to wake per region; a test
// program with 15 µs serial gaps ran 38 / 27 / 18.5 / 18.2 µs per region
// at 100 / 300 / 1,000 / 3,000 iterations), short enough that a worker
// waiting at a barrier, or idle between batches, soon gives its core back
// to gRPC. Overload test (bench/README.md), accepted p99 against its 2.5 s
// bound: 2.9-3.2 s in 2 of 3 runs with the default, 1.7 s and 3.2 s with
// 10,000, 0.96 s with 1,000.
inline constexpr const char* kOpenMpSpinCount = "1000";

// libgomp reads GOMP_SPINCOUNT once, when it is loaded, before main(). If
// neither GOMP_SPINCOUNT nor OMP_WAIT_POLICY is set, re-executes the
// program (same pid, same argv) with GOMP_SPINCOUNT=kOpenMpSpinCount;
// otherwise, or if the exec fails, returns and libgomp keeps what it read.
// Call first in main(), before any thread starts.
inline void UseServingOpenMpSpinCount(char** argv) {
  if (std::getenv("GOMP_SPINCOUNT") != nullptr || std::getenv("OMP_WAIT_POLICY") != nullptr) {
    return;
  }
  // The binary's real path, not /proc/self/exe: the process keeps its
  // name (ps, pgrep and perf show "moe_server", not "exe").
  // Not when started through a loader or another wrapper (ld.so, valgrind
  // without --trace-children): /proc/self/exe is then the wrapper. Set
  // GOMP_SPINCOUNT yourself to run without the re-exec.
  char path[4096];
  const ssize_t n = ::readlink("/proc/self/exe", path, sizeof(path) - 1);
  if (n <= 0 || n >= static_cast<ssize_t>(sizeof(path)) - 1) return;  // none, or cut short
  path[n] = '\0';
  const std::string exe_name = std::string(path).substr(std::string(path).rfind('/') + 1);
  const std::string arg0 = argv[0] != nullptr ? argv[0] : "";
  if (arg0.substr(arg0.rfind('/') + 1) != exe_name) return;
  if (::setenv("GOMP_SPINCOUNT", kOpenMpSpinCount, 1) != 0) return;
  ::execv(path, argv);
  ::unsetenv("GOMP_SPINCOUNT");  // exec failed: carry on as loaded
}

// "OpenMP idle wait: GOMP_SPINCOUNT=1000" (or OMP_WAIT_POLICY=..., or
// libgomp's default), for the start-up log.
inline std::string OpenMpWaitDescription() {
  for (const char* name : {"GOMP_SPINCOUNT", "OMP_WAIT_POLICY"}) {
    if (const char* v = std::getenv(name))
      return std::string("OpenMP idle wait: ") + name + "=" + v;
  }
  return "OpenMP idle wait: libgomp's default";
}

// The first steps of a serving binary's main(), in order: the OpenMP spin
// count (may re-execute), the usage text and the flags, the CPU tier cap
// (--max_isa; exits on a bad value), SIGTERM/SIGINT
// blocked before any thread starts (returned, for sigwait()), freed memory
// kept in the process, abseil's mutex deadlock check off.
inline sigset_t StartServingProcess(int argc, char** argv, const char* usage) {
  UseServingOpenMpSpinCount(argv);
  ParseCommandLineOrExit(argc, argv, usage);
  const sigset_t signals = BlockShutdownSignals();
  KeepFreedMemoryInProcess();
  SkipMutexDeadlockDetection();
  return signals;
}

}  // namespace moe

#endif  // MOE_SERVING_PROCESS_SETUP_H_
