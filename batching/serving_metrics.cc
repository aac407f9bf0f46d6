#include "batching/serving_metrics.h"

#include <map>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/command_line.h"

namespace moe {
namespace {

std::vector<double> SecondsBuckets() {
  // 50 µs .. ~26 s, doubling.
  return Histogram::Exponential(50e-6, 2.0, 20);
}

}  // namespace

std::string OutcomeLabel(const absl::Status& status) {
  if (status.ok()) return "ok";
  return absl::AsciiStrToLower(absl::StatusCodeToString(status.code()));
}

ServingMetrics::ServingMetrics(ModelInfoLabels info, int num_experts)
    : info_(std::move(info)),
      expert_tokens_(static_cast<size_t>(num_experts)),
      batch_tokens_(Histogram::Exponential(1, 2, 14)),
      queue_seconds_(SecondsBuckets()),
      compute_seconds_(SecondsBuckets()),
      duration_seconds_(SecondsBuckets()) {}

void ServingMetrics::RecordRequest(const absl::Status& status, int64_t tokens_in,
                                   int64_t tokens_out, absl::Duration duration,
                                   absl::Duration queue) {
  tokens_in_.Add(static_cast<double>(tokens_in));
  tokens_out_.Add(static_cast<double>(tokens_out));
  // Successful requests only: instant rejections (INVALID_ARGUMENT,
  // UNAVAILABLE, ...) would drag the percentiles down under overload.
  if (status.ok()) duration_seconds_.Observe(absl::ToDoubleSeconds(duration));
  if (queue > absl::ZeroDuration()) queue_seconds_.Observe(absl::ToDoubleSeconds(queue));
  const uint64_t ns = static_cast<uint64_t>(absl::ToInt64Nanoseconds(duration));
  absl::MutexLock lock(&mu_);
  requests_[OutcomeLabel(status)] += 1;
  if (status.ok()) {
    ++success_count_;
    success_ns_ += ns;
    ++queue_count_;
    queue_ns_ += static_cast<uint64_t>(absl::ToInt64Nanoseconds(queue));
    last_inference_ms_ = static_cast<uint64_t>(absl::ToUnixMillis(absl::Now()));
  } else {
    ++fail_count_;
    fail_ns_ += ns;
  }
}

void ServingMetrics::RecordBatch(int64_t tokens, absl::Duration compute, bool ok) {
  batch_tokens_.Observe(static_cast<double>(tokens));
  compute_seconds_.Observe(absl::ToDoubleSeconds(compute));
  if (!ok) return;
  const uint64_t ns = static_cast<uint64_t>(absl::ToInt64Nanoseconds(compute));
  absl::MutexLock lock(&mu_);
  ++execution_count_;
  inference_count_ += static_cast<uint64_t>(tokens);
  ++infer_count_;
  infer_ns_ += ns;
  BatchStat& b = batch_stats_[tokens];
  ++b.count;
  b.ns += ns;
}

void ServingMetrics::AddExpertTokens(const std::vector<int64_t>& tokens_per_expert) {
  for (size_t i = 0; i < tokens_per_expert.size() && i < expert_tokens_.size(); ++i) {
    if (tokens_per_expert[i] != 0) expert_tokens_[i].Add(static_cast<double>(tokens_per_expert[i]));
  }
}

double ServingMetrics::RequestsTotal(const std::string& outcome) const {
  absl::MutexLock lock(&mu_);
  auto it = requests_.find(outcome);
  return it == requests_.end() ? 0 : it->second;
}

void UnroutedRequests::Record(const absl::Status& status) {
  absl::MutexLock lock(&mu_);
  requests_[OutcomeLabel(status)] += 1;
}

std::map<std::string, double> UnroutedRequests::Snapshot() const {
  absl::MutexLock lock(&mu_);
  return requests_;
}

namespace {

std::string ModelLabel(const std::string& name) {
  return absl::StrCat("model=\"", EscapeLabelValue(name), "\"");
}

void AppendOutcomes(std::string* out, const std::string& model,
                    std::map<std::string, double> outcomes, bool with_zeros) {
  if (with_zeros) {
    for (const char* outcome : {"ok", "invalid_argument", "not_found", "unavailable",
                                "deadline_exceeded", "cancelled", "internal"}) {
      outcomes.emplace(outcome, 0.0);
    }
  }
  for (const auto& [outcome, v] : outcomes) {
    absl::StrAppend(out, "moe_requests_total{", model, ",outcome=\"", EscapeLabelValue(outcome),
                    "\"} ", FormatMetricValue(v), "\n");
  }
}

}  // namespace

std::string ServingMetrics::RenderPrometheus(const std::vector<const ServingMetrics*>& models,
                                             const std::vector<QueueSample>& queues,
                                             const UnroutedRequests& unrouted) {
  std::string out;
  // One family: its header, then `series(metrics, model label)` per model.
  auto family = [&](const char* name, const char* help, const char* type, auto&& series) {
    AppendHeader(&out, name, help, type);
    for (size_t i = 0; i < models.size(); ++i)
      series(i, *models[i], ModelLabel(models[i]->info_.model));
  };
  family("moe_requests_total", "Finished inference requests by outcome.", "counter",
         [&](size_t, const ServingMetrics& m, const std::string& model) {
           std::map<std::string, double> outcomes;
           {
             absl::MutexLock lock(&m.mu_);
             outcomes = m.requests_;
           }
           AppendOutcomes(&out, model, std::move(outcomes), true);
         });
  // Requests that named no served model: only the outcomes seen.
  AppendOutcomes(&out, ModelLabel(""), unrouted.Snapshot(), false);
  family("moe_tokens_in_total", "Tokens received in accepted requests.", "counter",
         [&](size_t, const ServingMetrics& m, const std::string& model) {
           absl::StrAppend(&out, "moe_tokens_in_total{", model, "} ",
                           FormatMetricValue(m.tokens_in_.Value()), "\n");
         });
  family("moe_tokens_out_total", "Tokens returned in successful responses.", "counter",
         [&](size_t, const ServingMetrics& m, const std::string& model) {
           absl::StrAppend(&out, "moe_tokens_out_total{", model, "} ",
                           FormatMetricValue(m.tokens_out_.Value()), "\n");
         });
  family("moe_batch_tokens", "Tokens per model call.", "histogram",
         [&](size_t, const ServingMetrics& m, const std::string& model) {
           m.batch_tokens_.Render(&out, "moe_batch_tokens", model);
         });
  family("moe_request_queue_seconds", "Time from acceptance to the first rows being computed.",
         "histogram", [&](size_t, const ServingMetrics& m, const std::string& model) {
           m.queue_seconds_.Render(&out, "moe_request_queue_seconds", model);
         });
  family("moe_batch_compute_seconds", "Duration of one model call.", "histogram",
         [&](size_t, const ServingMetrics& m, const std::string& model) {
           m.compute_seconds_.Render(&out, "moe_batch_compute_seconds", model);
         });
  family("moe_request_duration_seconds",
         "Time from arrival to the answer of successful requests (end to end inside the "
         "server; rejections are counted in moe_requests_total only).",
         "histogram", [&](size_t, const ServingMetrics& m, const std::string& model) {
           m.duration_seconds_.Render(&out, "moe_request_duration_seconds", model);
         });
  family("moe_queue_tokens", "Tokens waiting in the batch queue.", "gauge",
         [&](size_t i, const ServingMetrics&, const std::string& model) {
           absl::StrAppend(&out, "moe_queue_tokens{", model, "} ", queues.at(i).tokens, "\n");
         });
  family("moe_queue_requests", "Requests waiting in the batch queue.", "gauge",
         [&](size_t i, const ServingMetrics&, const std::string& model) {
           absl::StrAppend(&out, "moe_queue_requests{", model, "} ", queues.at(i).requests, "\n");
         });
  family("moe_expert_tokens_total", "Tokens routed to each expert.", "counter",
         [&](size_t, const ServingMetrics& m, const std::string& model) {
           for (size_t e = 0; e < m.expert_tokens_.size(); ++e) {
             absl::StrAppend(&out, "moe_expert_tokens_total{", model, ",expert=\"", e, "\"} ",
                             FormatMetricValue(m.expert_tokens_[e].Value()), "\n");
           }
         });
  family("moe_model_info", "The served model (value is always 1).", "gauge",
         [&](size_t, const ServingMetrics& m, const std::string& model) {
           const ModelInfoLabels& info = m.info_;
           absl::StrAppend(
               &out, "moe_model_info{", model, ",family=\"", EscapeLabelValue(info.family),
               "\",d_model=\"", info.d_model, "\",d_ff=\"", info.d_ff, "\",experts=\"",
               info.experts, "\",top_k=\"", info.top_k, "\",dtype=\"", EscapeLabelValue(info.dtype),
               "\",kernel=\"", EscapeLabelValue(info.kernel), "\",cpu_tier=\"",
               EscapeLabelValue(info.cpu_tier), "\",weight_bytes=\"", info.weight_bytes, "\"} 1\n");
         });
  AppendHeader(&out, "moe_build_info", "The server's build (value is always 1).", "gauge");
  absl::StrAppend(&out, "moe_build_info{version=\"", EscapeLabelValue(MoeVersion()), "\",commit=\"",
                  EscapeLabelValue(MoeGitCommit()), "\"} 1\n");
  return out;
}

ServingMetrics::Statistics ServingMetrics::Snapshot() const {
  absl::MutexLock lock(&mu_);
  Statistics s;
  s.last_inference_ms = last_inference_ms_;
  s.inference_count = inference_count_;
  s.execution_count = execution_count_;
  s.success = {success_count_, success_ns_};
  s.fail = {fail_count_, fail_ns_};
  s.queue = {queue_count_, queue_ns_};
  s.compute_infer = {infer_count_, infer_ns_};
  for (const auto& [size, b] : batch_stats_) s.batches[size] = {b.count, b.ns};
  return s;
}

}  // namespace moe
