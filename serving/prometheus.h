// Minimal Prometheus text-format (version 0.0.4) instruments: counters and
// histograms with fixed label sets, rendered on demand into the text that
// /metrics serves. Debian 12 does package prometheus-cpp (1.0.1); it is not
// used because its registry/family model would wrap the same few atomics,
// its pull module brings a second HTTP server (civetweb) beside the
// cpp-httplib one that already serves REST and /metrics with TLS, and it
// has no process collector either (process_metrics.h).
//
// Thread-safety: every instrument is safe to update from any thread;
// Render() takes a consistent snapshot of each instrument.
#ifndef MOE_SERVING_PROMETHEUS_H_
#define MOE_SERVING_PROMETHEUS_H_

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace moe {

// Escapes a label value (backslash, double quote, newline).
std::string EscapeLabelValue(const std::string& v);

// Appends "# HELP name help\n# TYPE name type\n".
void AppendHeader(std::string* out, const std::string& name, const std::string& help,
                  const char* type);

class Counter {
 public:
  void Add(double v = 1.0) {
    double cur = value_.load(std::memory_order_relaxed);
    while (!value_.compare_exchange_weak(cur, cur + v, std::memory_order_relaxed)) {
    }
  }
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

class Histogram {
 public:
  // `bounds`: ascending upper bounds; +Inf is implicit.
  explicit Histogram(std::vector<double> bounds);
  void Observe(double v);
  // Appends the _bucket/_sum/_count lines for `name` with `labels`
  // ("a=\"x\"" form, may be empty).
  void Render(std::string* out, const std::string& name, const std::string& labels) const;

  // Bounds helpers: start, start*factor, ... (count values).
  static std::vector<double> Exponential(double start, double factor, int count);

 private:
  const std::vector<double> bounds_;
  mutable absl::Mutex mu_;
  std::vector<uint64_t> counts_ ABSL_GUARDED_BY(mu_);  // per bucket, not cumulative
  double sum_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t count_ ABSL_GUARDED_BY(mu_) = 0;
};

// A number formatted as Prometheus expects (+Inf, -Inf, NaN, shortest
// round-trip decimal otherwise).
std::string FormatMetricValue(double v);

}  // namespace moe

#endif  // MOE_SERVING_PROMETHEUS_H_
