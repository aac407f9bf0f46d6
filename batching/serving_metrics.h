// ServingMetrics: what the front end reports, both as Prometheus text on
// /metrics and as KServe ModelStatistics.
//
// Prometheus series (all prefixed moe_, each with the label model="<name>"):
//   requests_total{outcome}             counter, one outcome per finished RPC
//                                       (ok, invalid_argument, not_found,
//                                       unavailable, deadline_exceeded,
//                                       cancelled, internal); requests that
//                                       named no served model have model=
//   tokens_in_total, tokens_out_total   counters
//   batch_tokens                        histogram of tokens per model call
//   request_queue_seconds               histogram, enqueue -> first rows run
//   batch_compute_seconds               histogram, one model call
//   request_duration_seconds            histogram, accepted -> answered
//   queue_tokens, queue_requests        gauges (sampled at scrape time)
//   expert_tokens_total{expert}         counter: the load-balance picture
//   model_info{...}                     gauge 1 with the model's description
//   build_info{version,commit}          gauge 1 (no model label)
// A server of several models renders them together (RenderPrometheus):
// each family's HELP and TYPE once, then the series of every model.
//
// Thread-safety: all methods may be called from any thread.
#ifndef MOE_BATCHING_SERVING_METRICS_H_
#define MOE_BATCHING_SERVING_METRICS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "serving/prometheus.h"

namespace moe {

struct ModelInfoLabels {
  std::string model, family, dtype, kernel, cpu_tier;
  size_t weight_bytes = 0;  // packed FFN weights held in this process
  int64_t d_model = 0, d_ff = 0;
  int experts = 0, top_k = 0;
};

// Outcomes of requests that named no served model (or were no request).
class UnroutedRequests {
 public:
  void Record(const absl::Status& status);
  std::map<std::string, double> Snapshot() const;

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, double> requests_ ABSL_GUARDED_BY(mu_);
};

class ServingMetrics {
 public:
  ServingMetrics(ModelInfoLabels info, int num_experts);

  // One finished RPC (ModelInfer, or one message of ModelStreamInfer).
  // `duration` counts from acceptance; `queue` is zero for requests that
  // never queued.
  void RecordRequest(const absl::Status& status, int64_t tokens_in, int64_t tokens_out,
                     absl::Duration duration, absl::Duration queue);
  // One model call.
  void RecordBatch(int64_t tokens, absl::Duration compute, bool ok);
  void AddExpertTokens(const std::vector<int64_t>& tokens_per_expert);

  // What waits in a model's queue, sampled by the caller at scrape time.
  struct QueueSample {
    int64_t tokens = 0, requests = 0;
  };
  // Prometheus text for `models` (queues[i] is models[i]'s) and the
  // unrouted requests.
  static std::string RenderPrometheus(const std::vector<const ServingMetrics*>& models,
                                      const std::vector<QueueSample>& queues,
                                      const UnroutedRequests& unrouted);

  // What KServe's ModelStatistics reports (frontend/model_descriptors.h
  // turns it into the message).
  struct Statistics {
    struct Duration {
      uint64_t count = 0, ns = 0;
    };
    uint64_t last_inference_ms = 0;  // Unix time of the last success
    uint64_t inference_count = 0;    // tokens computed
    uint64_t execution_count = 0;    // model calls
    Duration success, fail, queue, compute_infer;
    std::map<int64_t, Duration> batches;  // compute per batch size (tokens)
  };
  Statistics Snapshot() const;

  // Counters for tests.
  double RequestsTotal(const std::string& outcome) const;

 private:
  const ModelInfoLabels info_;
  std::vector<Counter> expert_tokens_;
  Counter tokens_in_, tokens_out_;
  Histogram batch_tokens_, queue_seconds_, compute_seconds_, duration_seconds_;

  mutable absl::Mutex mu_;
  std::map<std::string, double> requests_ ABSL_GUARDED_BY(mu_);
  // ModelStatistics.
  uint64_t success_count_ ABSL_GUARDED_BY(mu_) = 0, success_ns_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t fail_count_ ABSL_GUARDED_BY(mu_) = 0, fail_ns_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t queue_count_ ABSL_GUARDED_BY(mu_) = 0, queue_ns_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t infer_count_ ABSL_GUARDED_BY(mu_) = 0, infer_ns_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t inference_count_ ABSL_GUARDED_BY(mu_) = 0;  // tokens computed
  uint64_t execution_count_ ABSL_GUARDED_BY(mu_) = 0;  // model calls
  uint64_t last_inference_ms_ ABSL_GUARDED_BY(mu_) = 0;
  struct BatchStat {
    uint64_t count = 0, ns = 0;
  };
  std::map<int64_t, BatchStat> batch_stats_ ABSL_GUARDED_BY(mu_);
};

// The Prometheus outcome label for a status ("ok", "invalid_argument", ...).
std::string OutcomeLabel(const absl::Status& status);

}  // namespace moe

#endif  // MOE_BATCHING_SERVING_METRICS_H_
