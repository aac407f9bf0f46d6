#include "serving/process_metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "serving/prometheus.h"

namespace moe {
namespace {

std::string ReadFile(const char* path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Fields of /proc/self/stat after the command name (which may hold spaces
// and parentheses, so parsing starts after the last ')'). fields[0] is the
// state (field 3 of proc(5)), so field N of proc(5) is fields[N - 3].
std::vector<std::string> StatFields() {
  const std::string stat = ReadFile("/proc/self/stat");
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return {};
  std::istringstream rest(stat.substr(close + 1));
  std::vector<std::string> fields;
  for (std::string f; rest >> f;) fields.push_back(f);
  return fields;
}

// Seconds since the epoch at boot, from /proc/stat's btime; -1 if absent.
double BootTimeSeconds() {
  std::istringstream in(ReadFile("/proc/stat"));
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("btime ", 0) == 0) return std::stod(line.substr(6));
  }
  return -1;
}

int64_t OpenFds() {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  int64_t n = 0;
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(dir);
  return n - 1;  // not the descriptor opendir itself holds
}

void AppendSample(std::string* out, const char* name, const char* help, const char* type,
                  double value) {
  AppendHeader(out, name, help, type);
  absl::StrAppend(out, name, " ", FormatMetricValue(value), "\n");
}

}  // namespace

void AppendProcessMetrics(std::string* out) {
  const std::vector<std::string> f = StatFields();
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  // proc(5): 14 utime, 15 stime, 20 num_threads, 22 starttime, 23 vsize,
  // 24 rss (pages).
  if (f.size() > 21 && ticks > 0) {
    AppendSample(out, "process_cpu_seconds_total", "Total user and system CPU time in seconds.",
                 "counter", (std::stod(f[11]) + std::stod(f[12])) / ticks);
    AppendSample(out, "process_resident_memory_bytes", "Resident memory size in bytes.", "gauge",
                 std::stod(f[21]) * page);
    AppendSample(out, "process_virtual_memory_bytes", "Virtual memory size in bytes.", "gauge",
                 std::stod(f[20]));
    AppendSample(out, "process_threads", "Number of OS threads in the process.", "gauge",
                 std::stod(f[17]));
    const double boot = BootTimeSeconds();
    if (boot >= 0) {
      AppendSample(out, "process_start_time_seconds",
                   "Start time of the process since unix epoch in seconds.", "gauge",
                   boot + std::stod(f[19]) / ticks);
    }
  }
  const int64_t fds = OpenFds();
  if (fds >= 0) {
    AppendSample(out, "process_open_fds", "Number of open file descriptors.", "gauge",
                 static_cast<double>(fds));
  }
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY) {
    AppendSample(out, "process_max_fds", "Maximum number of open file descriptors.", "gauge",
                 static_cast<double>(limit.rlim_cur));
  }
}

}  // namespace moe
