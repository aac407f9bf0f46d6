#include "serving/process_setup.h"

#include <pthread.h>
#include <unistd.h>

#include <cstdlib>

#include "common/command_line.h"
#include "common/memory_tuning.h"

namespace moe {

sigset_t BlockShutdownSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

void UseServingOpenMpSpinCount(char** argv) {
  if (std::getenv("GOMP_SPINCOUNT") != nullptr || std::getenv("OMP_WAIT_POLICY") != nullptr) {
    return;
  }
  // The binary's real path, not /proc/self/exe: the process keeps its
  // name (ps, pgrep and perf show "moe_server", not "exe"); under a
  // wrapper /proc/self/exe is the wrapper, whose name differs from argv[0].
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

std::string OpenMpWaitDescription() {
  for (const char* name : {"GOMP_SPINCOUNT", "OMP_WAIT_POLICY"}) {
    if (const char* v = std::getenv(name))
      return std::string("OpenMP idle wait: ") + name + "=" + v;
  }
  return "OpenMP idle wait: libgomp's default";
}

sigset_t StartServingProcess(int argc, char** argv, const char* usage) {
  UseServingOpenMpSpinCount(argv);
  ParseCommandLineOrExit(argc, argv, usage);
  const sigset_t signals = BlockShutdownSignals();
  KeepFreedMemoryInProcess();
  SkipMutexDeadlockDetection();
  return signals;
}

}  // namespace moe
