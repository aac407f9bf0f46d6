// moe_loadgen: load-tests a KServe v2 server (moe-serve or any other).
//
//   moe_loadgen --concurrency=8 --duration_s=10 --tokens=16         closed loop
//   moe_loadgen --rate=200 --arrival=poisson --duration_s=30        open loop
//   moe_loadgen --concurrency=1 --sweep=1,8,64 --html=report.html   a sweep
//   moe_loadgen --concurrency_range=1:64:8 --csv=perf.csv           perf_analyzer's form
//   moe_loadgen --rate=50 --verify=demo                             check answers
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/load_generator.h"
#include "client/load_report.h"
#include "client/sweep_points.h"
#include "common/command_line.h"
#include "common/memory_tuning.h"
#include "common/status_macros.h"
#include "experts/dnnl_engine.h"
#include "model/expert_ranges.h"

ABSL_FLAG(std::string, address, "localhost:8001", "Server address host:port.");
ABSL_FLAG(std::string, model, "moe", "Model name.");
ABSL_FLAG(std::string, models, "",
          "Several models, comma-separated (e.g. moe.layer0,moe.layer1): each client walks "
          "them in order, one request each, like a pipeline. Overrides --model.");
ABSL_FLAG(std::string, layers, "",
          "Walk the layers of a --layers server in order: 'A-B' or a list such as '0-3,8' "
          "names the models <model>.layer<L>.");
ABSL_FLAG(std::string, tls_ca, "", "PEM CA to trust: connect with TLS.");
ABSL_FLAG(std::string, tls_cert, "", "PEM client certificate (mutual TLS).");
ABSL_FLAG(std::string, tls_key, "", "PEM client key (mutual TLS).");
ABSL_FLAG(int, concurrency, 0, "Closed loop: requests in flight.");
ABSL_FLAG(double, rate, 0, "Open loop: requests per second.");
ABSL_FLAG(std::string, arrival, "constant", "Open loop arrivals: constant or poisson.");
ABSL_FLAG(double, duration_s, 10, "Measured window, seconds (ignored with --requests).");
ABSL_FLAG(int64_t, requests, 0, "Measure this many requests instead of a duration.");
ABSL_FLAG(double, warmup_s, 1, "Warm-up before the measured window, seconds.");
ABSL_FLAG(std::string, tokens, "1", "Tokens per request: N or MIN-MAX (uniform).");
ABSL_FLAG(int, connections, 1, "gRPC connections to spread requests over.");
ABSL_FLAG(bool, stream, false, "Use ModelStreamInfer instead of ModelInfer.");
ABSL_FLAG(std::string, protocol, "grpc",
          "grpc, or http: KServe v2 REST with binary tensors on --address (e.g. "
          "localhost:8000; closed loop, one connection per request in flight).");
ABSL_FLAG(int64_t, deadline_ms, 10000, "Deadline of each request, milliseconds.");
ABSL_FLAG(int64_t, unavailable_backoff_ms, 0,
          "Closed loop: pause after an UNAVAILABLE answer before the next request, ms "
          "(a client that backs off from a draining or overloaded server).");
ABSL_FLAG(bool, bf16, false, "Send BF16 tokens.");
ABSL_FLAG(uint64_t, seed, 1, "Seed of the token values and Poisson arrivals.");
ABSL_FLAG(std::string, sweep, "",
          "Comma-separated concurrencies (with --concurrency) or rates (with --rate) to run in "
          "turn; one table and, with --html, one chart.");
ABSL_FLAG(std::string, concurrency_range, "",
          "Closed-loop sweep in perf_analyzer's form start[:end[:step]] (e.g. 1:64:8); "
          "replaces --concurrency and --sweep.");
ABSL_FLAG(std::string, request_rate_range, "",
          "Open-loop sweep in perf_analyzer's form start[:end[:step]] requests/s; replaces "
          "--rate and --sweep.");
ABSL_FLAG(std::string, json, "",
          "Write the runs as JSON to this file ('-': stdout): {\"schema\": \"moe_loadgen/1\", "
          "\"address\", \"model\", \"protocol\", \"runs\": [...]}, the same for one run and for a "
          "sweep.");
ABSL_FLAG(std::string, csv, "",
          "Write the runs as CSV to this file ('-': stdout); the leading columns carry "
          "perf_analyzer's names and units (Concurrency, Inferences/Second, p50 latency ... in "
          "us).");
ABSL_FLAG(std::string, html, "", "Write a self-contained HTML report with a latency chart.");
ABSL_FLAG(std::string, verify, "",
          "Preset the server runs (e.g. demo): recompute answers locally and count mismatches.");
ABSL_FLAG(std::string, verify_dtype, "",
          "Compute dtype the server runs (f32|bf16|int8); default: bf16, the server's default. "
          "Run with the server's --max_isa: answers are bitwise only within one CPU tier.");
ABSL_FLAG(uint64_t, verify_seed, 20240601, "Weight seed of the server's preset.");
ABSL_FLAG(bool, progress, true, "Print progress to stderr while running.");
ABSL_FLAG(double, max_error_rate, -1,
          "Exit 4 if the failed fraction of the measured requests exceeds this (e.g. 0.01) in "
          "any run; negative: no check.");
ABSL_FLAG(double, max_p99_ms, 0,
          "Exit 4 if any run's p99 latency exceeds this many milliseconds; 0: no check.");

namespace {

bool WriteText(const std::string& path, const std::string& text) {
  if (path == "-") {
    std::fputs(text.c_str(), stdout);
    return true;
  }
  std::ofstream out(path);
  out << text;
  return static_cast<bool>(out);
}

absl::Status Usage(const std::string& message) { return absl::InvalidArgumentError(message); }

// The models to walk: --models, or --layers as <model>.layer<L>.
absl::Status ModelsFromFlags(moe::LoadOptions* o) {
  if (!absl::GetFlag(FLAGS_models).empty() && !absl::GetFlag(FLAGS_layers).empty()) {
    return Usage("set --models or --layers, not both");
  }
  if (!absl::GetFlag(FLAGS_models).empty()) {
    o->models = absl::StrSplit(absl::GetFlag(FLAGS_models), ',', absl::SkipWhitespace());
  }
  if (!absl::GetFlag(FLAGS_layers).empty()) {
    auto layers = moe::ParseIdList(absl::GetFlag(FLAGS_layers), 1 << 20, "layer");
    if (!layers.ok()) return Usage(absl::StrCat("--layers: ", layers.status().message()));
    for (int l : *layers) o->models.push_back(absl::StrCat(o->model, ".layer", l));
  }
  return absl::OkStatus();
}

// Everything but the sweep; INVALID_ARGUMENT with the usage message.
absl::StatusOr<moe::LoadOptions> OptionsFromFlags() {
  moe::LoadOptions o;
  o.connection.address = absl::GetFlag(FLAGS_address);
  o.connection.tls_ca = absl::GetFlag(FLAGS_tls_ca);
  o.connection.tls_cert = absl::GetFlag(FLAGS_tls_cert);
  o.connection.tls_key = absl::GetFlag(FLAGS_tls_key);
  o.model = absl::GetFlag(FLAGS_model);
  MOE_RETURN_IF_ERROR(ModelsFromFlags(&o));
  o.concurrency = absl::GetFlag(FLAGS_concurrency);
  o.rate = absl::GetFlag(FLAGS_rate);
  const std::string arrival = absl::GetFlag(FLAGS_arrival);
  if (arrival != "constant" && arrival != "poisson") {
    return Usage("--arrival must be constant or poisson");
  }
  o.poisson = arrival == "poisson";
  o.duration = absl::Seconds(absl::GetFlag(FLAGS_duration_s));
  o.requests = absl::GetFlag(FLAGS_requests);
  o.warmup = absl::Seconds(absl::GetFlag(FLAGS_warmup_s));
  const std::string tokens = absl::GetFlag(FLAGS_tokens);
  std::vector<std::string> range = absl::StrSplit(tokens, '-');
  if (range.size() > 2 || !absl::SimpleAtoi(range[0], &o.tokens_min) ||
      !absl::SimpleAtoi(range.back(), &o.tokens_max)) {
    return Usage(absl::StrCat("--tokens must be N or MIN-MAX, got '", tokens, "'"));
  }
  o.connections = absl::GetFlag(FLAGS_connections);
  o.stream = absl::GetFlag(FLAGS_stream);
  const std::string protocol = absl::GetFlag(FLAGS_protocol);
  if (protocol != "grpc" && protocol != "http") {
    return Usage(absl::StrCat("--protocol must be grpc or http, got '", protocol, "'"));
  }
  o.http = protocol == "http";
  o.deadline = absl::Milliseconds(absl::GetFlag(FLAGS_deadline_ms));
  o.unavailable_backoff = absl::Milliseconds(absl::GetFlag(FLAGS_unavailable_backoff_ms));
  o.bf16 = absl::GetFlag(FLAGS_bf16);
  o.seed = absl::GetFlag(FLAGS_seed);
  o.verify_preset = absl::GetFlag(FLAGS_verify);
  o.verify_seed = absl::GetFlag(FLAGS_verify_seed);
  o.verify_dtype = moe::DType::kBF16;  // the server's default on every tier
  if (!absl::GetFlag(FLAGS_verify_dtype).empty()) {
    auto d = moe::ParseComputeDType(absl::GetFlag(FLAGS_verify_dtype));
    if (!d.ok()) return Usage(absl::StrCat("--verify_dtype: ", d.status().message()));
    o.verify_dtype = *d;
  }
  if (absl::GetFlag(FLAGS_progress)) o.progress = stderr;
  return o;
}

// The sweep's points (concurrencies or rates; one point without a sweep).
// A range form picks the loop in `o`.
absl::StatusOr<std::vector<double>> SweepPointsFromFlags(moe::LoadOptions* o) {
  const std::string concurrency_range = absl::GetFlag(FLAGS_concurrency_range);
  const std::string rate_range = absl::GetFlag(FLAGS_request_rate_range);
  const int sweep_forms = (absl::GetFlag(FLAGS_sweep).empty() ? 0 : 1) +
                          (concurrency_range.empty() ? 0 : 1) + (rate_range.empty() ? 0 : 1);
  if (sweep_forms > 1) {
    return Usage("give at most one of --sweep, --concurrency_range and --request_rate_range");
  }
  absl::StatusOr<std::vector<double>> parsed = std::vector<double>();
  const char* form = "--sweep";
  if (!absl::GetFlag(FLAGS_sweep).empty()) {
    parsed = moe::ParseSweepList(absl::GetFlag(FLAGS_sweep));
  } else if (!concurrency_range.empty()) {
    form = "--concurrency_range";
    parsed = moe::ParseSweepRange(concurrency_range);
    o->concurrency = 1;  // closed loop; the points set it
    o->rate = 0;
  } else if (!rate_range.empty()) {
    form = "--request_rate_range";
    parsed = moe::ParseSweepRange(rate_range);
    o->rate = 1;  // open loop; the points set it
    o->concurrency = 0;
  }
  if (!parsed.ok()) return Usage(absl::StrCat(form, ": ", parsed.status().message()));
  std::vector<double> points = *std::move(parsed);
  if (o->concurrency > 0) {
    for (double p : points) {
      if (p != static_cast<double>(static_cast<int>(p))) {
        return Usage(absl::StrCat(form, ": concurrency ", p, " is not a whole number"));
      }
    }
  }
  if (points.empty()) points.push_back(o->concurrency > 0 ? o->concurrency : o->rate);
  return points;
}

// The --json, --csv and --html files; false when one cannot be written.
bool WriteReports(const std::vector<moe::LoadReport>& reports, const moe::LoadOptions& o) {
  if (!absl::GetFlag(FLAGS_json).empty()) {
    const moe::LoadTarget target{o.connection.address,
                                 o.models.empty() ? o.model : absl::StrJoin(o.models, ","),
                                 absl::GetFlag(FLAGS_protocol)};
    const std::string text = moe::ReportsJson(reports, target).dump(2) + "\n";
    if (!WriteText(absl::GetFlag(FLAGS_json), text)) return false;
  }
  if (!absl::GetFlag(FLAGS_csv).empty()) {
    if (!WriteText(absl::GetFlag(FLAGS_csv), moe::ReportsCsv(reports))) return false;
  }
  if (!absl::GetFlag(FLAGS_html).empty()) {
    if (!WriteText(absl::GetFlag(FLAGS_html),
                   moe::SweepHtml(reports, "moe_loadgen: " + o.connection.address))) {
      return false;
    }
  }
  return true;
}

// The service-level checks, for CI jobs: says which run broke which bound;
// true when one did.
bool ExceedsBounds(const std::vector<moe::LoadReport>& reports) {
  bool exceeded = false;
  const double max_error_rate = absl::GetFlag(FLAGS_max_error_rate);
  const double max_p99_ms = absl::GetFlag(FLAGS_max_p99_ms);
  for (const auto& r : reports) {
    const int64_t measured = r.ok + r.failed;
    const double error_rate =
        measured > 0 ? static_cast<double>(r.failed) / static_cast<double>(measured) : 0.0;
    const std::string load = r.mode == "closed" ? absl::StrCat("concurrency ", r.concurrency)
                                                : absl::StrCat("rate ", r.target_rate);
    if (max_error_rate >= 0 && error_rate > max_error_rate) {
      std::fprintf(stderr, "moe_loadgen: %s: error rate %.4f exceeds --max_error_rate=%g\n",
                   load.c_str(), error_rate, max_error_rate);
      exceeded = true;
    }
    if (max_p99_ms > 0 && r.p99_ms > max_p99_ms) {
      std::fprintf(stderr, "moe_loadgen: %s: p99 %.3f ms exceeds --max_p99_ms=%g\n", load.c_str(),
                   r.p99_ms, max_p99_ms);
      exceeded = true;
    }
  }
  return exceeded;
}

}  // namespace

int main(int argc, char** argv) {
  moe::ParseCommandLineOrExit(
      argc, argv,
      "Load generator for a KServe v2 gRPC server (closed or open loop, sweeps, answer checks).\n"
      "  moe_loadgen (--concurrency=N | --rate=R) [--duration_s=S] [--tokens=N|MIN-MAX] ...");
  // Response buffers are allocated and freed per call; without this glibc
  // hands them back to the OS and every call faults its pages in again.
  moe::KeepFreedMemoryInProcess();
  moe::SkipMutexDeadlockDetection();
  absl::StatusOr<moe::LoadOptions> o = OptionsFromFlags();
  absl::StatusOr<std::vector<double>> points =
      o.ok() ? SweepPointsFromFlags(&*o) : absl::StatusOr<std::vector<double>>(o.status());
  if (!points.ok()) {
    std::fprintf(stderr, "%s\n", std::string(points.status().message()).c_str());
    return 2;
  }
  const bool print_text = absl::GetFlag(FLAGS_json) != "-" && absl::GetFlag(FLAGS_csv) != "-";
  std::vector<moe::LoadReport> reports;
  for (double p : *points) {
    moe::LoadOptions run = *o;
    if (o->concurrency > 0) {
      run.concurrency = static_cast<int>(p);
    } else {
      run.rate = p;
    }
    auto report = moe::RunLoad(run);
    if (!report.ok()) {
      std::fprintf(stderr, "moe_loadgen: %s\n", std::string(report.status().message()).c_str());
      return 1;
    }
    if (print_text) std::printf("%s\n", moe::ReportText(*report).c_str());
    reports.push_back(*std::move(report));
  }
  if (reports.size() > 1 && print_text) std::printf("%s", moe::SweepTable(reports).c_str());
  if (!WriteReports(reports, *o)) return 1;
  int64_t mismatches = 0;
  for (const auto& r : reports) mismatches += r.verify_mismatches;
  if (mismatches > 0) return 3;
  return ExceedsBounds(reports) ? 4 : 0;
}
