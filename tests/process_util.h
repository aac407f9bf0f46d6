// Starting and stopping the project's binaries from tests.
#ifndef MOE_TESTS_PROCESS_UTIL_H_
#define MOE_TESTS_PROCESS_UTIL_H_

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <regex>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "tests/test_files.h"

namespace moe::testing {

// Runs `binary` with `args`, stdout and stderr to `log`. Returns the pid.
inline pid_t Spawn(const std::string& binary, const std::vector<std::string>& args,
                   const std::string& log) {
  const pid_t pid = fork();
  if (pid == 0) {
    if (std::freopen(log.c_str(), "w", stdout) == nullptr) _exit(126);
    dup2(fileno(stdout), fileno(stderr));
    std::vector<std::string> copy = args;
    std::vector<char*> argv;
    std::string bin = binary;
    argv.push_back(bin.data());
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(bin.c_str(), argv.data());
    _exit(127);
  }
  return pid;
}

// Waits for `pid` up to `timeout`; its exit code, or -1 (then it is killed).
inline int WaitExit(pid_t pid, absl::Duration timeout) {
  const absl::Time end = absl::Now() + timeout;
  while (absl::Now() < end) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  return -1;
}

// Waits until `log` has a "ready" line and a "listening: gRPC HOST:PORT"
// line; returns the port (0 on timeout).
inline int WaitForReadyPort(const std::string& log, absl::Duration timeout) {
  static const std::regex kListening(R"(listening: gRPC [^:\s]+:(\d+))");
  const absl::Time end = absl::Now() + timeout;
  while (absl::Now() < end) {
    const std::string text = ReadFile(log);
    std::smatch m;
    if (text.find("ready:") != std::string::npos && std::regex_search(text, m, kListening)) {
      return std::stoi(m[1]);
    }
    absl::SleepFor(absl::Milliseconds(25));
  }
  return 0;
}

// A child process killed (SIGKILL) and reaped on destruction.
class ChildProcess {
 public:
  ChildProcess() = default;
  ChildProcess(pid_t pid) : pid_(pid) {}  // NOLINT: implicit by design
  ChildProcess(ChildProcess&& o) noexcept : pid_(o.pid_) { o.pid_ = -1; }
  ChildProcess& operator=(ChildProcess&& o) noexcept {
    Kill();
    pid_ = o.pid_;
    o.pid_ = -1;
    return *this;
  }
  ~ChildProcess() { Kill(); }
  void Kill() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
};

}  // namespace moe::testing

#endif  // MOE_TESTS_PROCESS_UTIL_H_
