#include "workers/remote_expert_backend.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cstring>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/notification.h"
#include "common/dtype.h"
#include "common/status_macros.h"
#include "common/vector_kernels.h"
#include "model/expert_ranges.h"
#include "proto/health.grpc.pb.h"
#include "spdlog/spdlog.h"

namespace moe {

namespace {

// One ';'-separated part: its layers (empty: every layer), experts text
// and addresses.
struct SpecPart {
  std::vector<int> layers;
  std::string experts;
  std::vector<std::string> addresses;
};

absl::StatusOr<std::vector<SpecPart>> SplitWorkerSpec(const std::string& spec) {
  std::vector<SpecPart> parts;
  for (absl::string_view part : absl::StrSplit(spec, ';', absl::SkipWhitespace())) {
    const size_t eq = part.find('=');
    if (eq == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--expert_workers: '", part, "' is not [LAYERS:]EXPERTS=HOST:PORT[,HOST:PORT...]"));
    }
    SpecPart p;
    absl::string_view shard = part.substr(0, eq);
    const size_t colon = shard.find(':');
    if (colon != absl::string_view::npos) {
      auto layers = ParseIdList(shard.substr(0, colon), 1 << 20, "layer");
      if (!layers.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("--expert_workers: ", layers.status().message()));
      }
      p.layers = *layers;
      shard = shard.substr(colon + 1);
    }
    p.experts = std::string(shard);
    for (absl::string_view a : absl::StrSplit(part.substr(eq + 1), ',', absl::SkipWhitespace())) {
      if (a.find(':') == absl::string_view::npos) {
        return absl::InvalidArgumentError(
            absl::StrCat("--expert_workers: address '", a, "' needs host:port"));
      }
      p.addresses.emplace_back(a);
    }
    if (p.addresses.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--expert_workers: shard '", part.substr(0, eq), "' has no address"));
    }
    parts.push_back(std::move(p));
  }
  if (parts.empty()) return absl::InvalidArgumentError("--expert_workers: no shard given");
  return parts;
}

// The process-wide health flag of the worker at `address` (see Replica::up).
std::shared_ptr<std::atomic<bool>> SharedUpFlag(const std::string& address) {
  static absl::Mutex mu(absl::kConstInit);
  static auto* flags = new std::map<std::string, std::weak_ptr<std::atomic<bool>>>();
  absl::MutexLock lock(&mu);
  std::weak_ptr<std::atomic<bool>>& weak = (*flags)[address];
  std::shared_ptr<std::atomic<bool>> flag = weak.lock();
  if (flag == nullptr) {
    flag = std::make_shared<std::atomic<bool>>(true);
    weak = flag;
  }
  return flag;
}

}  // namespace

absl::StatusOr<std::vector<ShardSpec>> ParseExpertWorkerSpec(const std::string& spec,
                                                             int num_experts, int layer) {
  MOE_ASSIGN_OR_RETURN(std::vector<SpecPart> parts, SplitWorkerSpec(spec));
  std::vector<ShardSpec> shards;
  std::vector<bool> taken(static_cast<size_t>(num_experts), false);
  for (SpecPart& p : parts) {
    if (!p.layers.empty() && std::find(p.layers.begin(), p.layers.end(), layer) == p.layers.end()) {
      continue;
    }
    ShardSpec s;
    auto ids = ParseExpertList(p.experts, num_experts);
    if (!ids.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--expert_workers: ", ids.status().message()));
    }
    s.experts = *ids;
    for (int e : s.experts) {
      if (taken[static_cast<size_t>(e)]) {
        return absl::InvalidArgumentError(
            absl::StrCat("--expert_workers: expert ", e, " of layer ", layer, " is in two shards"));
      }
      taken[static_cast<size_t>(e)] = true;
    }
    s.addresses = std::move(p.addresses);
    shards.push_back(std::move(s));
  }
  return shards;
}

absl::StatusOr<std::vector<int>> ExpertWorkerSpecLayers(const std::string& spec) {
  MOE_ASSIGN_OR_RETURN(std::vector<SpecPart> parts, SplitWorkerSpec(spec));
  std::vector<int> layers;
  for (const SpecPart& p : parts) layers.insert(layers.end(), p.layers.begin(), p.layers.end());
  std::sort(layers.begin(), layers.end());
  layers.erase(std::unique(layers.begin(), layers.end()), layers.end());
  return layers;
}

absl::Status RemoteExpertBackend::CheckReplica(const Shard& shard, Replica& r, uint64_t checksum,
                                               absl::Duration timeout) const {
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  ctx.set_wait_for_ready(true);  // at start-up the worker may still be loading
  moe::v1::InfoResponse info;
  moe::v1::InfoRequest request;
  request.set_layer(options_.layer);
  grpc::Status st = r.stub->Info(&ctx, request, &info);
  const std::string who = absl::StrCat("expert worker ", r.address, " (shard ", shard.name, ")");
  if (!st.ok()) {
    if (st.error_code() == grpc::StatusCode::UNAVAILABLE ||
        st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
      return absl::UnavailableError(absl::StrCat(who, " does not answer: ", st.error_message()));
    }
    return absl::FailedPreconditionError(absl::StrCat(who, " refuses: ", st.error_message()));
  }
  if (info.d_model() != d_model_) {
    return absl::FailedPreconditionError(
        absl::StrCat(who, " serves d_model ", info.d_model(), ", the front end ", d_model_));
  }
  if (info.dtype() != DTypeName(compute_)) {
    return absl::FailedPreconditionError(absl::StrCat(who, " computes in ", info.dtype(),
                                                      ", the front end in ", DTypeName(compute_)));
  }
  if (info.cpu_tier() != options_.cpu_tier && !options_.allow_mixed_isa) {
    return absl::FailedPreconditionError(absl::StrCat(
        who, " runs at CPU tier ", info.cpu_tier().empty() ? "(unknown)" : info.cpu_tier(),
        ", the front end at ", options_.cpu_tier,
        ": answers would differ in their last bits; start both with the same --max_isa, or "
        "accept that with --allow_mixed_isa"));
  }
  std::vector<int> hosted(info.experts().begin(), info.experts().end());
  for (int e : shard.experts) {
    if (std::find(hosted.begin(), hosted.end(), e) == hosted.end()) {
      return absl::FailedPreconditionError(absl::StrCat(
          who, " does not host expert ", e, " (it hosts ", FormatExpertList(hosted), ")"));
    }
  }
  // The checksum covers exactly the hosted experts; compare on those.
  if (hosted != shard.experts) {
    return absl::FailedPreconditionError(absl::StrCat(
        who, " hosts experts ", FormatExpertList(hosted), ", the shard is ", shard.name));
  }
  if (info.weights_checksum() != checksum) {
    return absl::FailedPreconditionError(absl::StrCat(
        who, ": weights checksum ", absl::Hex(info.weights_checksum(), absl::kZeroPad16),
        " differs from the front end's ", absl::Hex(checksum, absl::kZeroPad16),
        " (another model, preset, seed or layer?)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<RemoteExpertBackend>> RemoteExpertBackend::Create(
    std::vector<ShardSpec> shards, const LayerWeights& weights, DType compute,
    std::unique_ptr<ExpertBackend> local, const RemoteBackendOptions& options) {
  std::unique_ptr<RemoteExpertBackend> b(
      new RemoteExpertBackend(options, compute, weights.spec.d_model));
  const int e = weights.spec.num_experts();
  b->shard_of_.assign(static_cast<size_t>(e), -1);
  for (size_t i = 0; i < shards.size(); ++i) {
    auto shard = std::make_unique<Shard>();
    shard->experts = shards[i].experts;
    shard->name = FormatExpertList(shard->experts);
    shard->rpc_seconds = std::make_unique<Histogram>(Histogram::Exponential(50e-6, 2.0, 20));
    for (int x : shard->experts) b->shard_of_[static_cast<size_t>(x)] = static_cast<int>(i);
    for (const std::string& address : shards[i].addresses) {
      auto r = std::make_unique<Replica>();
      r->address = address;
      r->up = SharedUpFlag(address);
      grpc::ChannelArguments args;
      args.SetMaxReceiveMessageSize(256 << 20);
      args.SetMaxSendMessageSize(256 << 20);
      // A replica that comes back must be seen by the prober within about a
      // second. gRPC's default reconnect backoff grows to 120 s, so a
      // worker restarted after a long outage could sit unused for minutes
      // (and the failover test, which restarts one under load, waited for
      // it in vain in a sanitizer build).
      args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
      args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
      args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
      r->channel = grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
      r->stub = moe::v1::ExpertService::NewStub(r->channel);
      shard->replicas.push_back(std::move(r));
    }
    b->shard_checksums_.push_back(ExpertWeightsChecksum(weights, shard->experts));
    b->shards_.push_back(std::move(shard));
  }
  bool uncovered = false;
  for (int x : b->shard_of_) uncovered |= x < 0;
  if (uncovered && local == nullptr) {
    return absl::InvalidArgumentError(
        "some experts are in no shard and no local backend was given");
  }
  b->local_ = std::move(local);
  for (size_t i = 0; i < b->shards_.size(); ++i) {
    for (auto& r : b->shards_[i]->replicas) {
      absl::Status st =
          b->CheckReplica(*b->shards_[i], *r, b->shard_checksums_[i], options.startup_timeout);
      if (!st.ok()) return st;
    }
  }
  b->prober_ = std::thread([raw = b.get()] { raw->ProbeLoop(); });
  return b;
}

RemoteExpertBackend::~RemoteExpertBackend() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (prober_.joinable()) prober_.join();
}

int RemoteExpertBackend::PickReplica(Shard& shard, int avoid) const {
  const int n = static_cast<int>(shard.replicas.size());
  const int start = static_cast<int>(shard.next.fetch_add(1) % static_cast<uint64_t>(n));
  for (int i = 0; i < n; ++i) {
    const int r = (start + i) % n;
    if (r != avoid && shard.replicas[static_cast<size_t>(r)]->up->load()) return r;
  }
  return -1;
}

struct RemoteExpertBackend::Call {
  int shard = 0;
  int replica = -1;  // of the last attempt
  moe::v1::RunExpertsRequest request;
  moe::v1::RunExpertsResponse response;
  std::unique_ptr<grpc::ClientContext> ctx;
  grpc::Status status;
  absl::Time start;
  bool done = false;    // answered, well formed
  std::string failure;  // the last attempt's problem, naming the replica
};

RemoteExpertBackend::Grouped RemoteExpertBackend::Group(absl::Span<const ExpertJob> jobs) const {
  Grouped g;
  g.per_shard.resize(shards_.size());
  for (const ExpertJob& j : jobs) {
    const int s = j.expert >= 0 && j.expert < static_cast<int>(shard_of_.size())
                      ? shard_of_[static_cast<size_t>(j.expert)]
                      : -1;
    if (s < 0) {
      g.local.push_back(j);
    } else {
      g.per_shard[static_cast<size_t>(s)].push_back(&j);
    }
  }
  return g;
}

moe::v1::RunExpertsRequest RemoteExpertBackend::EncodeRequest(
    const std::vector<const ExpertJob*>& jobs) const {
  moe::v1::RunExpertsRequest request;
  request.set_d_model(d_model_);
  request.set_layer(options_.layer);
  const bool bf16 = compute_ == DType::kBF16;
  request.set_dtype(bf16 ? moe::v1::ROW_DTYPE_BF16 : moe::v1::ROW_DTYPE_F32);
  for (const ExpertJob* j : jobs) {
    auto* block = request.add_blocks();
    block->set_expert(j->expert);
    block->set_rows(j->num_rows);
    const size_t n = static_cast<size_t>(j->num_rows * d_model_);
    if (bf16) {
      // The expert rounds its input to bf16 first: sending bf16 is exact.
      block->mutable_data()->resize(n * 2);
      auto* dst = reinterpret_cast<uint16_t*>(block->mutable_data()->data());
      FloatToBf16Array(j->rows, static_cast<int64_t>(n), dst);
    } else {
      block->set_data(reinterpret_cast<const char*>(j->rows), n * 4);
    }
  }
  return request;
}

std::vector<RemoteExpertBackend::Call*> RemoteExpertBackend::PickReplicas(std::vector<Call>& calls,
                                                                          int attempt) {
  std::vector<Call*> launch;
  for (Call& c : calls) {
    if (c.done) continue;
    Shard& shard = *shards_[static_cast<size_t>(c.shard)];
    const int r = PickReplica(shard, attempt == 0 ? -1 : c.replica);
    if (r < 0) continue;  // no healthy replica left
    if (attempt > 0) ++shard.retries;
    c.replica = r;
    launch.push_back(&c);
  }
  return launch;
}

void RemoteExpertBackend::StartCall(Call& c, absl::BlockingCounter* pending) {
  Shard& shard = *shards_[static_cast<size_t>(c.shard)];
  c.ctx = std::make_unique<grpc::ClientContext>();
  c.ctx->set_deadline(absl::ToChronoTime(absl::Now() + options_.rpc_timeout));
  c.response.Clear();
  c.start = absl::Now();
  shard.replicas[static_cast<size_t>(c.replica)]->stub->async()->RunExperts(
      c.ctx.get(), &c.request, &c.response, [&c, pending](grpc::Status st) {
        c.status = std::move(st);
        pending->DecrementCount();
      });
}

std::string RemoteExpertBackend::AnswerProblem(const Call& c, const Replica& replica) const {
  if (!c.status.ok()) return absl::StrCat(replica.address, ": ", c.status.error_message());
  if (c.response.blocks_size() != c.request.blocks_size()) {
    return absl::StrCat(replica.address, ": answered ", c.response.blocks_size(), " blocks for ",
                        c.request.blocks_size());
  }
  for (int b = 0; b < c.request.blocks_size(); ++b) {
    const auto& out = c.response.blocks(b);
    const auto& in = c.request.blocks(b);
    if (out.expert() != in.expert() || out.rows() != in.rows() ||
        static_cast<int64_t>(out.data().size()) != in.rows() * d_model_ * 4) {
      return absl::StrCat(replica.address, ": malformed answer for expert ", in.expert());
    }
  }
  return "";
}

void RemoteExpertBackend::FinishCall(Call& c) {
  Shard& shard = *shards_[static_cast<size_t>(c.shard)];
  Replica& replica = *shard.replicas[static_cast<size_t>(c.replica)];
  shard.rpc_seconds->Observe(absl::ToDoubleSeconds(absl::Now() - c.start));
  c.failure = AnswerProblem(c, replica);
  if (c.failure.empty()) {
    c.done = true;
    return;
  }
  ++shard.errors;
  if (replica.up->exchange(false)) {
    spdlog::warn("{}expert shard {}: replica {} marked down: {}", LogPrefix(), shard.name,
                 replica.address, c.failure);
  }
}

absl::Status RemoteExpertBackend::ShardUnavailable(const Call& c) const {
  const Shard& shard = *shards_[static_cast<size_t>(c.shard)];
  std::vector<std::string> addresses;
  for (const auto& r : shard.replicas) addresses.push_back(r->address);
  return absl::UnavailableError(absl::StrCat(
      LogPrefix(), "expert shard ", shard.name, " (", absl::StrJoin(addresses, ", "),
      ") is unavailable", c.failure.empty() ? ": no healthy replica" : ": " + c.failure));
}

absl::Status RemoteExpertBackend::Run(absl::Span<const ExpertJob> jobs) {
  const Grouped grouped = Group(jobs);
  std::vector<Call> calls;
  for (size_t s = 0; s < shards_.size(); ++s) {
    if (grouped.per_shard[s].empty()) continue;
    calls.emplace_back();
    calls.back().shard = static_cast<int>(s);
    calls.back().request = EncodeRequest(grouped.per_shard[s]);
  }
  // Attempt 1 on a healthy replica, attempt 2 on another one.
  for (int attempt = 0; attempt < 2; ++attempt) {
    const std::vector<Call*> launch = PickReplicas(calls, attempt);
    if (launch.empty()) break;
    absl::BlockingCounter pending(static_cast<int>(launch.size()));
    for (Call* c : launch) StartCall(*c, &pending);
    // In-process experts run while the shards compute.
    if (attempt == 0 && !grouped.local.empty()) {
      absl::Status st = local_->Run(grouped.local);
      if (!st.ok()) {
        pending.Wait();
        return st;
      }
    }
    pending.Wait();
    for (Call* c : launch) FinishCall(*c);
  }
  for (const Call& c : calls) {
    if (!c.done) return ShardUnavailable(c);
  }
  if (calls.empty() && !grouped.local.empty()) MOE_RETURN_IF_ERROR(local_->Run(grouped.local));
  // Every shard answered: copy the outputs back.
  for (const Call& c : calls) {
    const auto& jobs_of_shard = grouped.per_shard[static_cast<size_t>(c.shard)];
    for (size_t b = 0; b < jobs_of_shard.size(); ++b) {
      const std::string& data = c.response.blocks(static_cast<int>(b)).data();
      std::memcpy(jobs_of_shard[b]->out, data.data(), data.size());
    }
  }
  return absl::OkStatus();
}

void RemoteExpertBackend::ProbeLoop() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stop_), options_.probe_interval)) return;
    }
    for (size_t s = 0; s < shards_.size(); ++s) {
      for (auto& r : shards_[s]->replicas) {
        if (r->up->load()) continue;
        auto health = grpc::health::v1::Health::NewStub(r->channel);
        grpc::ClientContext ctx;
        ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
        grpc::health::v1::HealthCheckRequest req;
        grpc::health::v1::HealthCheckResponse resp;
        if (!health->Check(&ctx, req, &resp).ok() ||
            resp.status() != grpc::health::v1::HealthCheckResponse::SERVING) {
          continue;
        }
        // Back, but is it still the same shard of the same model?
        absl::Status st = CheckReplica(*shards_[s], *r, shard_checksums_[s], absl::Seconds(2));
        if (!st.ok()) {
          spdlog::warn("{}expert shard {}: replica {} answers but is refused: {}", LogPrefix(),
                       shards_[s]->name, r->address, std::string(st.message()));
          continue;
        }
        r->up->store(true);
        spdlog::info("{}expert shard {}: replica {} is back", LogPrefix(), shards_[s]->name,
                     r->address);
      }
    }
  }
}

bool RemoteExpertBackend::ReplicaUp(int shard, int replica) const {
  return shards_[static_cast<size_t>(shard)]->replicas[static_cast<size_t>(replica)]->up->load();
}

std::string RemoteExpertBackend::Describe() const {
  std::vector<std::string> parts;
  for (const auto& s : shards_) {
    std::vector<std::string> a;
    for (const auto& r : s->replicas) a.push_back(r->address);
    parts.push_back(absl::StrCat(s->name, "=", absl::StrJoin(a, ",")));
  }
  return absl::StrCat("expert workers ", absl::StrJoin(parts, ";"),
                      local_ != nullptr ? absl::StrCat("; in process: ", local_->Describe()) : "");
}

size_t RemoteExpertBackend::WeightBytes() const {
  return local_ != nullptr ? local_->WeightBytes() : 0;
}

std::string RemoteExpertBackend::RenderMetrics() const { return RenderMetrics({this}); }

std::string RemoteExpertBackend::RenderMetrics(
    const std::vector<const RemoteExpertBackend*>& backends) {
  std::string out;
  // The shard's labels: model="..." (when set), shard="0-3".
  auto labels = [](const RemoteExpertBackend& b, const Shard& s) {
    return absl::StrCat(
        b.options_.model_name.empty()
            ? ""
            : absl::StrCat("model=\"", EscapeLabelValue(b.options_.model_name), "\","),
        "shard=\"", s.name, "\"");
  };
  auto each_shard = [&](auto&& fn) {
    for (const RemoteExpertBackend* b : backends) {
      for (const auto& s : b->shards_) fn(*b, *s);
    }
  };
  AppendHeader(&out, "moe_expert_shard_rpc_seconds", "RunExperts call duration per shard.",
               "histogram");
  each_shard([&](const RemoteExpertBackend& b, const Shard& s) {
    s.rpc_seconds->Render(&out, "moe_expert_shard_rpc_seconds", labels(b, s));
  });
  AppendHeader(&out, "moe_expert_shard_errors_total", "Failed RunExperts calls per shard.",
               "counter");
  each_shard([&](const RemoteExpertBackend& b, const Shard& s) {
    absl::StrAppend(&out, "moe_expert_shard_errors_total{", labels(b, s), "} ", s.errors.load(),
                    "\n");
  });
  AppendHeader(&out, "moe_expert_shard_retries_total", "Calls retried on another replica.",
               "counter");
  each_shard([&](const RemoteExpertBackend& b, const Shard& s) {
    absl::StrAppend(&out, "moe_expert_shard_retries_total{", labels(b, s), "} ", s.retries.load(),
                    "\n");
  });
  AppendHeader(&out, "moe_expert_replica_up", "1 when the replica is considered healthy.", "gauge");
  each_shard([&](const RemoteExpertBackend& b, const Shard& s) {
    for (const auto& r : s.replicas) {
      absl::StrAppend(&out, "moe_expert_replica_up{", labels(b, s), ",address=\"",
                      EscapeLabelValue(r->address), "\"} ", r->up->load() ? 1 : 0, "\n");
    }
  });
  return out;
}

}  // namespace moe
