#include "serving/process_metrics.h"

#include <fcntl.h>
#include <unistd.h>

#include <map>
#include <sstream>
#include <string>

#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace moe {
namespace {

// name -> value of every sample line; checks each has HELP and TYPE.
std::map<std::string, double> Samples(const std::string& text) {
  std::map<std::string, double> out;
  std::istringstream in(text);
  std::string typed;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("# TYPE ", 0) == 0) {
      typed = line.substr(7, line.find(' ', 7) - 7);
      continue;
    }
    if (line.empty() || line[0] == '#') continue;
    const std::string name = line.substr(0, line.find(' '));
    EXPECT_EQ(name, typed) << "sample without its own TYPE line: " << line;
    out[name] = std::stod(line.substr(line.find(' ') + 1));
  }
  return out;
}

TEST(ProcessMetricsTest, ReportsTheStandardSeriesWithPlausibleValues) {
  std::string text;
  AppendProcessMetrics(&text);
  const auto s = Samples(text);
  for (const char* name : {"process_cpu_seconds_total", "process_resident_memory_bytes",
                           "process_virtual_memory_bytes", "process_open_fds", "process_max_fds",
                           "process_start_time_seconds", "process_threads"}) {
    EXPECT_EQ(s.count(name), 1u) << name << " missing from:\n" << text;
  }
  EXPECT_GT(s.at("process_resident_memory_bytes"), 1 << 20);
  EXPECT_GE(s.at("process_virtual_memory_bytes"), s.at("process_resident_memory_bytes"));
  EXPECT_GE(s.at("process_threads"), 1);
  EXPECT_GE(s.at("process_open_fds"), 3);  // stdin, stdout, stderr
  EXPECT_GE(s.at("process_max_fds"), s.at("process_open_fds"));
  EXPECT_GE(s.at("process_cpu_seconds_total"), 0);
  // Started in the last day and not in the future (to the clock tick).
  const double now = absl::ToUnixSeconds(absl::Now());
  EXPECT_LE(s.at("process_start_time_seconds"), now + 1);
  EXPECT_GT(s.at("process_start_time_seconds"), now - 86400);
}

TEST(ProcessMetricsTest, OpenFileDescriptorsFollowTheProcess) {
  const auto open_fds = [] {
    std::string text;
    AppendProcessMetrics(&text);
    return Samples(text).at("process_open_fds");
  };
  const double before = open_fds();
  const int a = open("/dev/null", O_RDONLY);
  const int b = open("/dev/null", O_RDONLY);
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  EXPECT_EQ(open_fds(), before + 2);
  close(a);
  close(b);
  EXPECT_EQ(open_fds(), before);
}

}  // namespace
}  // namespace moe
