#include "client/load_generator.h"

#include <unistd.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "client/arrival_schedule.h"
#include "client/hdr_histogram.h"
#include "client/kserve_rest_client.h"
#include "common/seeded_random.h"
#include "common/status_macros.h"
#include "model/moe_layer.h"
#include "model/presets.h"

namespace moe {
namespace {

using inference::ModelInferRequest;
using inference::ModelInferResponse;
using inference::ModelStreamInferResponse;
using Stub = inference::GRPCInferenceService::Stub;

std::string CodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    default:
      return absl::StrCat("CODE_", static_cast<int>(code));
  }
}

struct PoolEntry {
  std::vector<float> tokens;
  int64_t num_tokens = 0;
  ModelInferRequest request;
};

// Decides, request by request, whether to send and whether to measure.
class Admission {
 public:
  Admission(absl::Time measure_start, absl::Time measure_end, int64_t requests)
      : measure_start_(measure_start), measure_end_(measure_end), requests_(requests) {}

  // False: stop sending. Otherwise *measured says whether it counts.
  bool Admit(absl::Time intended, bool* measured) {
    if (stopped_.load()) return false;
    if (intended < measure_start_) {
      *measured = false;
      return true;
    }
    if (requests_ > 0) {
      if (measured_.fetch_add(1) >= requests_) return Stop();
    } else if (intended >= measure_end_) {
      return Stop();
    }
    *measured = true;
    return true;
  }
  absl::Time stop_time() const {
    absl::MutexLock lock(&mu_);
    return stop_time_;
  }
  absl::Time measure_start() const { return measure_start_; }

 private:
  bool Stop() {
    absl::MutexLock lock(&mu_);
    if (!stopped_.exchange(true)) stop_time_ = absl::Now();
    return false;
  }
  const absl::Time measure_start_, measure_end_;
  const int64_t requests_;
  std::atomic<int64_t> measured_{0};
  std::atomic<bool> stopped_{false};
  mutable absl::Mutex mu_;
  absl::Time stop_time_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
};

// Collects results from any thread.
class Recorder {
 public:
  Recorder(const std::vector<PoolEntry>* pool, bool verify) : pool_(pool), verify_(verify) {
    first_outputs_.resize(pool->size());
  }

  void Record(int pool_index, absl::Time intended, bool measured, grpc::StatusCode code,
              const ModelInferResponse* resp) {
    const absl::Time now = absl::Now();
    const int64_t latency_ns = absl::ToInt64Nanoseconds(now - intended);
    std::vector<float> output;
    const bool ok = code == grpc::StatusCode::OK;
    if (ok && verify_ && resp != nullptr) {
      auto parsed = ParseInferResponse(*resp);
      if (parsed.ok()) output = std::move(parsed->output);
    }
    absl::MutexLock lock(&mu_);
    ++done_;
    if (ok) {
      ++total_ok_;
      if (verify_) {
        auto& first = first_outputs_[static_cast<size_t>(pool_index)];
        if (first.empty()) {
          first = std::move(output);
        } else if (first != output) {
          ++repeat_mismatches_;
        }
      }
    } else {
      ++errors_total_;
    }
    if (!measured) return;
    if (ok) {
      ++ok_;
      tokens_ok_ += (*pool_)[static_cast<size_t>(pool_index)].num_tokens;
      hist_.Record(latency_ns);
      last_ok_ = std::max(last_ok_, now);
    } else {
      ++failed_;
      ++errors_[CodeName(code)];
      failed_max_ns_ = std::max(failed_max_ns_, latency_ns);
    }
  }

  void CountSent(bool measured) {
    absl::MutexLock lock(&mu_);
    ++total_sent_;
    if (measured) ++sent_;
  }

  struct Snapshot {
    int64_t done, errors;
  };
  Snapshot Progress() const {
    absl::MutexLock lock(&mu_);
    return {done_, errors_total_};
  }

  void Fill(LoadReport* r) const {
    absl::MutexLock lock(&mu_);
    r->sent = sent_;
    r->ok = ok_;
    r->failed = failed_;
    r->errors = errors_;
    r->tokens_ok = tokens_ok_;
    r->total_sent = total_sent_;
    r->total_ok = total_ok_;
    r->p50_ms = hist_.ValueAtPercentile(50) / 1e6;
    r->p90_ms = hist_.ValueAtPercentile(90) / 1e6;
    r->p95_ms = hist_.ValueAtPercentile(95) / 1e6;
    r->p99_ms = hist_.ValueAtPercentile(99) / 1e6;
    r->p999_ms = hist_.ValueAtPercentile(99.9) / 1e6;
    r->max_ms = static_cast<double>(hist_.max()) / 1e6;
    r->mean_ms = hist_.mean() / 1e6;
    r->failed_max_ms = static_cast<double>(failed_max_ns_) / 1e6;
  }

  const std::vector<std::vector<float>>& first_outputs() const { return first_outputs_; }
  int64_t repeat_mismatches() const {
    absl::MutexLock lock(&mu_);
    return repeat_mismatches_;
  }

 private:
  const std::vector<PoolEntry>* pool_;
  const bool verify_;
  mutable absl::Mutex mu_;
  HdrHistogram hist_ ABSL_GUARDED_BY(mu_);
  int64_t sent_ ABSL_GUARDED_BY(mu_) = 0, ok_ ABSL_GUARDED_BY(mu_) = 0,
                failed_ ABSL_GUARDED_BY(mu_) = 0, tokens_ok_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t total_sent_ ABSL_GUARDED_BY(mu_) = 0, total_ok_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t done_ ABSL_GUARDED_BY(mu_) = 0, errors_total_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t repeat_mismatches_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t failed_max_ns_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time last_ok_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::map<std::string, int64_t> errors_ ABSL_GUARDED_BY(mu_);
  std::vector<std::vector<float>> first_outputs_;  // written under mu_
};

std::vector<std::string> ModelsOf(const LoadOptions& o) {
  return o.models.empty() ? std::vector<std::string>{o.model} : o.models;
}

// pool_size token blocks, each sent to every model: entry b * M + m is
// block b for model m, so consecutive entries walk the models in order.
absl::StatusOr<std::vector<PoolEntry>> BuildPool(const LoadOptions& o, int64_t d_model) {
  const std::vector<std::string> models = ModelsOf(o);
  const size_t m_count = models.size();
  std::vector<PoolEntry> pool(static_cast<size_t>(std::max(1, o.pool_size)) * m_count);
  SeededRandom sizes(o.seed);
  for (size_t b = 0; b < pool.size() / m_count; ++b) {
    const int64_t span = o.tokens_max - o.tokens_min + 1;
    const int64_t tokens =
        o.tokens_min + static_cast<int64_t>(sizes.NextU64() % static_cast<uint64_t>(span));
    SeededRandom values(DeriveSeed(o.seed, absl::StrCat("pool.", b)));
    const std::vector<float> block = values.UniformVector(tokens * d_model, 1.0f);
    for (size_t m = 0; m < m_count; ++m) {
      PoolEntry& e = pool[b * m_count + m];
      e.num_tokens = tokens;
      e.tokens = block;
      e.request = BuildInferRequest(models[m], e.tokens, d_model, o.bf16, "", false);
    }
  }
  return pool;
}

// The pool entry of a closed-loop worker's i-th request: its own start in
// the pool, then the next entries (so the models in order).
int PoolIndex(const LoadOptions& o, int worker, int64_t i, size_t pool_size) {
  const int64_t m_count = static_cast<int64_t>(ModelsOf(o).size());
  return static_cast<int>((worker * 7919 * m_count + i) % static_cast<int64_t>(pool_size));
}

struct ServerCounters {
  bool ok = false;
  int64_t success = 0, executions = 0, tokens = 0;
};

// Summed over `models`; ok false if any cannot be read.
ServerCounters ReadServerCounters(Stub* stub, const std::vector<std::string>& models) {
  ServerCounters c;
  for (const std::string& model : models) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    inference::ModelStatisticsRequest req;
    req.set_name(model);
    inference::ModelStatisticsResponse resp;
    if (!stub->ModelStatistics(&ctx, req, &resp).ok() || resp.model_stats_size() < 1) {
      return ServerCounters();
    }
    const auto& s = resp.model_stats(0);
    c.success += static_cast<int64_t>(s.inference_stats().success().count());
    c.executions += static_cast<int64_t>(s.execution_count());
    c.tokens += static_cast<int64_t>(s.inference_count());
  }
  c.ok = true;
  return c;
}

void SetDeadline(grpc::ClientContext* ctx, absl::Duration d) {
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + d));
}

// ---- closed loop --------------------------------------------------------

void ClosedUnaryWorker(Stub* stub, const std::vector<PoolEntry>& pool, const LoadOptions& o,
                       int worker, Admission* admission, Recorder* rec) {
  for (int64_t i = 0;; ++i) {
    const absl::Time intended = absl::Now();
    bool measured = false;
    if (!admission->Admit(intended, &measured)) return;
    const int p = PoolIndex(o, worker, i, pool.size());
    grpc::ClientContext ctx;
    SetDeadline(&ctx, o.deadline);
    ModelInferResponse resp;
    rec->CountSent(measured);
    grpc::Status st = stub->ModelInfer(&ctx, pool[static_cast<size_t>(p)].request, &resp);
    rec->Record(p, intended, measured, st.error_code(), &resp);
    if (st.error_code() == grpc::StatusCode::UNAVAILABLE &&
        o.unavailable_backoff > absl::ZeroDuration()) {
      absl::SleepFor(o.unavailable_backoff);
    }
  }
}

void ClosedHttpWorker(RestInferClient* http, const std::vector<PoolEntry>& pool,
                      const LoadOptions& o, int worker, Admission* admission, Recorder* rec) {
  for (int64_t i = 0;; ++i) {
    const absl::Time intended = absl::Now();
    bool measured = false;
    if (!admission->Admit(intended, &measured)) return;
    const int p = PoolIndex(o, worker, i, pool.size());
    ModelInferResponse resp;
    rec->CountSent(measured);
    grpc::Status st = http->Infer(pool[static_cast<size_t>(p)].request, o.deadline, &resp);
    rec->Record(p, intended, measured, st.error_code(), &resp);
    if (st.error_code() == grpc::StatusCode::UNAVAILABLE &&
        o.unavailable_backoff > absl::ZeroDuration()) {
      absl::SleepFor(o.unavailable_backoff);
    }
  }
}

void ClosedStreamWorker(Stub* stub, const std::vector<PoolEntry>& pool, const LoadOptions& o,
                        int worker, Admission* admission, Recorder* rec) {
  grpc::ClientContext ctx;
  auto rw = stub->ModelStreamInfer(&ctx);
  ModelStreamInferResponse resp;
  for (int64_t i = 0;; ++i) {
    const absl::Time intended = absl::Now();
    bool measured = false;
    if (!admission->Admit(intended, &measured)) break;
    const int p = PoolIndex(o, worker, i, pool.size());
    ModelInferRequest req = pool[static_cast<size_t>(p)].request;
    req.set_id(absl::StrCat(worker, ".", i));
    rec->CountSent(measured);
    if (!rw->Write(req) || !rw->Read(&resp)) {
      rec->Record(p, intended, measured, grpc::StatusCode::UNAVAILABLE, nullptr);
      break;
    }
    rec->Record(p, intended, measured,
                resp.error_message().empty() ? grpc::StatusCode::OK : grpc::StatusCode::UNKNOWN,
                &resp.infer_response());
  }
  rw->WritesDone();
  rw->Finish();
}

// ---- open loop ----------------------------------------------------------

struct UnaryCall {
  grpc::ClientContext ctx;
  ModelInferResponse resp;
  absl::Time intended;
  int pool_index = 0;
  bool measured = false;
};

// One ModelStreamInfer per connection: the scheduler writes, a reader
// thread matches answers to their intended times by request id.
class OpenStream {
 public:
  OpenStream(Stub* stub, Recorder* rec) : rec_(rec) {
    rw_ = stub->ModelStreamInfer(&ctx_);
    reader_ = std::thread([this] { ReadLoop(); });
  }
  // Writes `req`; if the stream is broken, records it as UNAVAILABLE instead.
  void Send(const ModelInferRequest& req, int pool_index, absl::Time intended, bool measured) {
    const std::string& id = req.id();
    {
      absl::MutexLock lock(&mu_);
      pending_[id] = Pending{intended, pool_index, measured};
    }
    absl::MutexLock lock(&write_mu_);
    if (broken_ || !rw_->Write(req)) {
      broken_ = true;
      absl::MutexLock plock(&mu_);
      if (pending_.erase(id) > 0) {
        rec_->Record(pool_index, intended, measured, grpc::StatusCode::UNAVAILABLE, nullptr);
      }
    }
  }
  void Close() {
    {
      absl::MutexLock lock(&write_mu_);
      rw_->WritesDone();
    }
    reader_.join();
    grpc::Status st = rw_->Finish();
    absl::MutexLock lock(&mu_);
    for (const auto& [id, p] : pending_) {
      rec_->Record(p.pool_index, p.intended, p.measured,
                   st.ok() ? grpc::StatusCode::UNKNOWN : st.error_code(), nullptr);
    }
    pending_.clear();
  }

 private:
  struct Pending {
    absl::Time intended;
    int pool_index;
    bool measured;
  };
  void ReadLoop() {
    ModelStreamInferResponse resp;
    while (rw_->Read(&resp)) {
      Pending p;
      {
        absl::MutexLock lock(&mu_);
        auto it = pending_.find(resp.infer_response().id());
        if (it == pending_.end()) continue;
        p = it->second;
        pending_.erase(it);
      }
      rec_->Record(p.pool_index, p.intended, p.measured,
                   resp.error_message().empty() ? grpc::StatusCode::OK : grpc::StatusCode::UNKNOWN,
                   &resp.infer_response());
    }
  }

  Recorder* rec_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<ModelInferRequest, ModelStreamInferResponse>> rw_;
  std::thread reader_;
  absl::Mutex write_mu_;
  bool broken_ ABSL_GUARDED_BY(write_mu_) = false;
  absl::Mutex mu_;
  std::map<std::string, Pending> pending_ ABSL_GUARDED_BY(mu_);
};

void SleepUntil(absl::Time t) {
  const absl::Duration d = t - absl::Now();
  if (d > absl::ZeroDuration()) absl::SleepFor(d);
}

void RunOpenLoop(const std::vector<std::unique_ptr<Stub>>& stubs,
                 const std::vector<PoolEntry>& pool, const LoadOptions& o, absl::Time start,
                 Admission* admission, Recorder* rec) {
  ArrivalSchedule schedule(start, o.rate, o.poisson, o.seed ^ 0x5eed);
  std::atomic<int64_t> outstanding{0};
  std::vector<std::unique_ptr<OpenStream>> streams;
  if (o.stream) {
    for (const auto& s : stubs) streams.push_back(std::make_unique<OpenStream>(s.get(), rec));
  }
  for (int64_t i = 0;; ++i) {
    const absl::Time intended = schedule.Next();
    bool measured = false;
    if (!admission->Admit(intended, &measured)) break;
    SleepUntil(intended);
    const int p = static_cast<int>(i % static_cast<int64_t>(pool.size()));
    const size_t conn = static_cast<size_t>(i % static_cast<int64_t>(stubs.size()));
    rec->CountSent(measured);
    if (o.stream) {
      ModelInferRequest req = pool[static_cast<size_t>(p)].request;
      req.set_id(absl::StrCat(i));
      streams[conn]->Send(req, p, intended, measured);
      continue;
    }
    if (outstanding.load() >= o.max_outstanding) {
      rec->Record(p, intended, measured, grpc::StatusCode::RESOURCE_EXHAUSTED, nullptr);
      continue;
    }
    auto* call = new UnaryCall;
    call->intended = intended;
    call->pool_index = p;
    call->measured = measured;
    SetDeadline(&call->ctx, o.deadline);
    ++outstanding;
    stubs[conn]->async()->ModelInfer(&call->ctx, &pool[static_cast<size_t>(p)].request, &call->resp,
                                     [call, rec, &outstanding](const grpc::Status& st) {
                                       rec->Record(call->pool_index, call->intended, call->measured,
                                                   st.error_code(), &call->resp);
                                       delete call;
                                       --outstanding;
                                     });
  }
  for (auto& s : streams) s->Close();
  // Every call has a deadline, so this ends.
  while (outstanding.load() > 0) absl::SleepFor(absl::Milliseconds(2));
}

absl::Status CheckOptions(const LoadOptions& o) {
  if ((o.concurrency > 0) == (o.rate > 0)) {
    return absl::InvalidArgumentError(
        "set exactly one of --concurrency (closed loop) or --rate "
        "(open loop)");
  }
  if (o.tokens_min < 1 || o.tokens_max < o.tokens_min) {
    return absl::InvalidArgumentError("tokens per request must satisfy 1 <= min <= max");
  }
  if (o.connections < 1) return absl::InvalidArgumentError("--connections must be >= 1");
  if (o.http && (o.stream || o.concurrency < 1)) {
    return absl::InvalidArgumentError(
        "--protocol=http runs the closed loop (--concurrency) without --stream");
  }
  return absl::OkStatus();
}

// The gRPC stubs (one per connection) or the REST clients (one per
// closed-loop worker) a run sends on.
struct Connections {
  std::vector<std::unique_ptr<Stub>> stubs;
  std::vector<std::unique_ptr<RestInferClient>> http;
};

absl::StatusOr<Connections> Connect(const LoadOptions& o) {
  Connections c;
  if (o.http) {
    for (int w = 0; w < o.concurrency; ++w) {
      MOE_ASSIGN_OR_RETURN(auto client, RestInferClient::Create(o.connection));
      c.http.push_back(std::move(client));
    }
    return c;
  }
  for (int i = 0; i < o.connections; ++i) {
    MOE_ASSIGN_OR_RETURN(auto channel, MakeChannel(o.connection, i));
    c.stubs.push_back(inference::GRPCInferenceService::NewStub(channel));
  }
  return c;
}

// The d_model every model in `models` shares (from their metadata).
absl::StatusOr<int64_t> CommonDModel(const LoadOptions& o, const Connections& c,
                                     const std::vector<std::string>& models) {
  std::optional<int64_t> d_model;
  for (const std::string& model : models) {
    auto d = o.http ? c.http[0]->FetchDModel(model)
                    : FetchDModel(c.stubs[0].get(), model, absl::ToInt64Milliseconds(o.deadline));
    if (!d.ok()) {
      return absl::UnavailableError(absl::StrCat(
          "cannot read model metadata: ",
          DescribeGrpcError(grpc::Status(static_cast<grpc::StatusCode>(d.status().code()),
                                         std::string(d.status().message())),
                            o.connection.address)));
    }
    if (d_model.has_value() && *d != *d_model) {
      return absl::InvalidArgumentError(absl::StrCat("model '", model, "' has d_model ", *d,
                                                     " but '", models[0], "' has ", *d_model,
                                                     ": a pipeline needs one width"));
    }
    d_model = *d;
  }
  return *d_model;
}

// Prints progress to o.progress (when set) every second, or every 250 ms
// rewriting one line on a terminal, from construction to destruction.
class ProgressReporter {
 public:
  ProgressReporter(const LoadOptions& o, Recorder* rec, absl::Time start) {
    if (o.progress == nullptr) return;
    thread_ = std::thread([this, out = o.progress, rec, start] { Loop(out, rec, start); });
  }
  ~ProgressReporter() {
    running_.store(false);
    if (thread_.joinable()) thread_.join();
  }

 private:
  void Loop(FILE* out, Recorder* rec, absl::Time start) {
    const bool tty = isatty(fileno(out));
    int64_t last_done = 0;
    absl::Time last = absl::Now();
    while (running_.load()) {
      absl::SleepFor(tty ? absl::Milliseconds(250) : absl::Seconds(1));
      const auto snap = rec->Progress();
      const absl::Time now = absl::Now();
      const double rate = static_cast<double>(snap.done - last_done) /
                          std::max(1e-9, absl::ToDoubleSeconds(now - last));
      last_done = snap.done;
      last = now;
      const std::string line = absl::StrFormat(
          "[%6.1fs] %lld done, %.1f req/s now, %lld errors", absl::ToDoubleSeconds(now - start),
          static_cast<long long>(snap.done), rate, static_cast<long long>(snap.errors));
      std::fprintf(out, tty ? "\r%-70s" : "%s\n", line.c_str());
      std::fflush(out);
    }
    if (tty) std::fprintf(out, "\n");
  }

  std::atomic<bool> running_{true};
  std::thread thread_;
};

// The closed loop (o.concurrency workers) or the open loop, until
// `admission` stops admitting.
void SendLoad(const LoadOptions& o, const Connections& c, const std::vector<PoolEntry>& pool,
              absl::Time start, Admission* admission, Recorder* rec) {
  SleepUntil(start);
  if (o.concurrency <= 0) {
    RunOpenLoop(c.stubs, pool, o, start, admission, rec);
    return;
  }
  std::vector<std::thread> workers;
  for (int w = 0; w < o.concurrency; ++w) {
    if (o.http) {
      RestInferClient* http = c.http[static_cast<size_t>(w)].get();
      workers.emplace_back([&, http, w] { ClosedHttpWorker(http, pool, o, w, admission, rec); });
      continue;
    }
    Stub* stub = c.stubs[static_cast<size_t>(w % o.connections)].get();
    workers.emplace_back([&, stub, w] {
      if (o.stream) {
        ClosedStreamWorker(stub, pool, o, w, admission, rec);
      } else {
        ClosedUnaryWorker(stub, pool, o, w, admission, rec);
      }
    });
  }
  for (auto& t : workers) t.join();
}

// Compares every OK answer: the first per pool entry against a local
// layer of o.verify_preset, the others bitwise against that first one.
absl::Status Verify(const LoadOptions& o, const std::vector<PoolEntry>& pool, int64_t d_model,
                    const Recorder& rec, LoadReport* r) {
  r->verified = true;
  MOE_ASSIGN_OR_RETURN(LayerWeights weights, MakePreset(o.verify_preset, o.verify_seed));
  MoeLayerOptions lo;
  lo.compute = o.verify_dtype;
  MOE_ASSIGN_OR_RETURN(std::unique_ptr<MoeLayer> layer, MoeLayer::Create(weights, lo));
  if (layer->d_model() != d_model) {
    return absl::FailedPreconditionError(absl::StrCat("--verify preset '", o.verify_preset,
                                                      "' has d_model ", layer->d_model(),
                                                      " but the server's model has ", d_model));
  }
  r->verify_mismatches = rec.repeat_mismatches();
  const auto& firsts = rec.first_outputs();
  for (size_t i = 0; i < pool.size(); ++i) {
    if (firsts[i].empty()) continue;
    std::vector<float> x = pool[i].tokens;
    if (o.bf16) {
      for (float& v : x) v = RoundToBf16(v);
    }
    std::vector<float> y(x.size());
    ForwardOutputs fo;
    fo.output = y.data();
    if (!layer->Forward(x.data(), pool[i].num_tokens, fo).ok()) {
      return absl::InternalError("local verification layer failed");
    }
    if (o.bf16) {
      for (float& v : y) v = RoundToBf16(v);
    }
    if (y != firsts[i]) ++r->verify_mismatches;
  }
  r->verify_checked = r->total_ok;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<LoadReport> RunLoad(const LoadOptions& o) {
  MOE_RETURN_IF_ERROR(CheckOptions(o));
  MOE_ASSIGN_OR_RETURN(const Connections conns, Connect(o));
  const std::vector<std::string> models = ModelsOf(o);
  if (models.size() > 1 && !o.verify_preset.empty()) {
    return absl::InvalidArgumentError("--verify checks one model against a preset, not several");
  }
  MOE_ASSIGN_OR_RETURN(const int64_t d_model, CommonDModel(o, conns, models));
  MOE_ASSIGN_OR_RETURN(const std::vector<PoolEntry> pool, BuildPool(o, d_model));
  const ServerCounters before =
      o.http ? ServerCounters() : ReadServerCounters(conns.stubs[0].get(), models);

  Recorder rec(&pool, !o.verify_preset.empty());
  const absl::Time start = absl::Now() + absl::Milliseconds(20);
  const absl::Time measure_start = start + o.warmup;
  Admission admission(measure_start, measure_start + o.duration, o.requests);
  {
    ProgressReporter progress(o, &rec, start);
    SendLoad(o, conns, pool, start, &admission, &rec);
  }

  LoadReport r;
  r.mode = o.concurrency > 0 ? "closed" : "open";
  r.concurrency = o.concurrency;
  r.target_rate = o.rate;
  r.poisson = o.poisson;
  r.stream = o.stream;
  r.connections = o.connections;
  r.tokens_min = o.tokens_min;
  r.tokens_max = o.tokens_max;
  rec.Fill(&r);
  absl::Time stop = admission.stop_time();
  if (stop == absl::InfiniteFuture()) stop = absl::Now();
  r.window_s = std::max(1e-9, absl::ToDoubleSeconds(stop - measure_start));
  r.achieved_rate = static_cast<double>(r.sent) / r.window_s;
  r.throughput_rps = static_cast<double>(r.ok) / r.window_s;
  r.tokens_per_s = static_cast<double>(r.tokens_ok) / r.window_s;

  const ServerCounters after =
      o.http ? ServerCounters() : ReadServerCounters(conns.stubs[0].get(), models);
  if (before.ok && after.ok) {
    r.server_stats = true;
    r.server_ok = after.success - before.success;
    r.server_batches = after.executions - before.executions;
    r.server_tokens = after.tokens - before.tokens;
    r.server_avg_batch_tokens =
        r.server_batches > 0 ? static_cast<double>(r.server_tokens) / r.server_batches : 0;
  }
  if (!o.verify_preset.empty()) MOE_RETURN_IF_ERROR(Verify(o, pool, d_model, rec, &r));
  return r;
}

}  // namespace moe
