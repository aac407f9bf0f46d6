// LoadGenerator: drives a KServe v2 server with ModelInfer traffic and
// measures it.
//
// Closed loop (concurrency N): N workers each send a request and wait for
// its answer before the next. Open loop (rate R): requests leave at
// intended times fixed in advance (constant or Poisson), whatever the
// server does, and each latency is measured from the request's *intended*
// send time — so a server stall shows in the percentiles instead of
// silently slowing the load (no coordinated omission).
//
// With several models (LoadOptions::models) each worker's consecutive
// requests go to the models in order (a pipeline across layers).
//
// Requests cycle through a pool of pre-built token blocks; with
// verification on, every OK answer for a pool entry must be bitwise equal
// to the first, and the first must equal the preset layer computed
// locally.
#ifndef MOE_CLIENT_LOAD_GENERATOR_H_
#define MOE_CLIENT_LOAD_GENERATOR_H_

#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/kserve_client.h"
#include "common/dtype.h"

namespace moe {

struct LoadOptions {
  ConnectionOptions connection;
  std::string model = "moe";
  // Several models (e.g. the layers moe.layer0, moe.layer1, ...): every
  // worker walks them in order, one request each, like a pipeline through
  // the layers, and the report covers them all. Empty: `model` alone.
  std::vector<std::string> models;
  // Exactly one of concurrency (closed loop) or rate (open loop) is > 0.
  int concurrency = 0;
  double rate = 0;                              // requests per second
  bool poisson = false;                         // open loop: Poisson instead of constant arrivals
  absl::Duration duration = absl::Seconds(10);  // measured window
  int64_t requests = 0;  // > 0: measure this many requests instead of a duration
  absl::Duration warmup = absl::ZeroDuration();  // sent first, not measured
  int64_t tokens_min = 1;                        // tokens per request, uniform in [min, max]
  int64_t tokens_max = 1;
  int connections = 1;  // gRPC channels (TCP connections)
  bool stream = false;  // ModelStreamInfer instead of ModelInfer
  // KServe v2 REST (binary tensor extension) on connection.address instead
  // of gRPC: the closed loop only, one connection per worker, no server
  // statistics in the report.
  bool http = false;
  absl::Duration deadline = absl::Seconds(10);
  // Closed loop: after an UNAVAILABLE answer the worker waits this long
  // before its next request, as a client honouring the server's "go away"
  // does (gRPC retry policies back off the same way). Zero: resend at once.
  absl::Duration unavailable_backoff = absl::ZeroDuration();
  bool bf16 = false;  // send BF16 tokens
  uint64_t seed = 1;
  int pool_size = 64;               // distinct pre-built requests
  int64_t max_outstanding = 50000;  // open loop: beyond this, requests count as client_overload
  // Verification against a local preset layer (empty: off).
  std::string verify_preset;
  uint64_t verify_seed = 20240601;
  DType verify_dtype = DType::kBF16;
  // Progress lines: none when null. On a terminal one line is rewritten.
  FILE* progress = nullptr;
};

struct LoadReport {
  std::string mode;  // "closed" or "open"
  int concurrency = 0;
  double target_rate = 0;
  bool poisson = false;
  bool stream = false;
  int connections = 1;
  int64_t tokens_min = 1, tokens_max = 1;

  double window_s = 0;  // measured window
  int64_t sent = 0, ok = 0, failed = 0;
  std::map<std::string, int64_t> errors;  // by gRPC status code name
  int64_t tokens_ok = 0;
  double achieved_rate = 0;   // requests sent per second
  double throughput_rps = 0;  // OK answers per second
  double tokens_per_s = 0;
  // Latency, milliseconds.
  double p50_ms = 0, p90_ms = 0, p95_ms = 0, p99_ms = 0, p999_ms = 0, max_ms = 0, mean_ms = 0;
  // Longest time a failed request took to fail (from its intended start):
  // shows that rejections come at once, not after a hang.
  double failed_max_ms = 0;

  // Everything sent, warmup included (for matching server counters).
  int64_t total_sent = 0, total_ok = 0;

  // Server-side, from ModelStatistics before and after.
  bool server_stats = false;
  int64_t server_ok = 0, server_batches = 0, server_tokens = 0;
  double server_avg_batch_tokens = 0;

  bool verified = false;
  int64_t verify_checked = 0, verify_mismatches = 0;
};

absl::StatusOr<LoadReport> RunLoad(const LoadOptions& options);

}  // namespace moe

#endif  // MOE_CLIENT_LOAD_GENERATOR_H_
