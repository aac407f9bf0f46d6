// moe_server: serves MoE (or dense FFN) layers over the KServe v2 gRPC
// and REST protocols, with dynamic batching, health, reflection and
// /metrics.
//
//   moe_server                                   # the built-in demo preset
//   moe_server --model_dir=/models/mixtral --layer=3 --dtype=bf16
//   moe_server --model_dir=/models/mixtral --layers=all   # moe.layer0 .. moe.layer31
//
// SIGTERM / SIGINT drain: health goes NOT_SERVING, new requests get
// UNAVAILABLE, accepted ones finish (up to --drain_timeout_s), exit 0.
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "batching/serving_core.h"
#include "common/compute_thread.h"
#include "experts/dnnl_engine.h"
#include "experts/packed_matmul.h"
#include "frontend/moe_server.h"
#include "model/expert_ranges.h"
#include "model/moe_layer.h"
#include "model/presets.h"
#include "serving/model_source.h"
#include "serving/process_setup.h"
#include "spdlog/spdlog.h"
#include "workers/remote_expert_backend.h"

ABSL_FLAG(std::string, model_name, "moe", "Model name clients use in requests.");
ABSL_FLAG(std::string, host, "0.0.0.0", "Address to listen on.");
ABSL_FLAG(int, grpc_port, 8001, "gRPC port (0: pick a free port and log it).");
ABSL_FLAG(int, http_port, 8000,
          "KServe v2 REST (HTTP/JSON) port (0: pick a free port and log it; -1: disable).");
ABSL_FLAG(int, metrics_port, 8002,
          "Prometheus /metrics HTTP port (0: pick a free port; -1: disable).");
ABSL_FLAG(int64_t, max_batch_tokens, 256, "Most token rows per model call.");
ABSL_FLAG(int64_t, max_queue_delay_us, 2000,
          "Longest the oldest queued request waits for a batch to fill, microseconds.");
ABSL_FLAG(bool, adaptive_batching, true,
          "Wait (up to the queue delay) only for the load the last batch's answers bring back, "
          "not for a full batch: a lone client is served at once.");
ABSL_FLAG(int64_t, max_queue_tokens, 65536,
          "Most tokens waiting in the queue; beyond it requests get UNAVAILABLE.");
ABSL_FLAG(int64_t, max_request_tokens, 8192, "Most tokens in one request.");
ABSL_FLAG(int, max_message_bytes, 64 << 20, "Largest gRPC message or REST body, bytes.");
ABSL_FLAG(int, drain_timeout_s, 30, "Longest graceful drain on SIGTERM/SIGINT, seconds.");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate chain: serve gRPC and REST over TLS.");
ABSL_FLAG(std::string, tls_key, "", "PEM private key for --tls_cert.");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA: require client certificates signed by it (mutual TLS).");
ABSL_FLAG(bool, allow_non_finite, false, "Accept NaN/Inf in inputs instead of rejecting them.");
ABSL_FLAG(std::string, expert_workers, "",
          "Run routed experts in moe_expert_worker processes: [LAYERS:]EXPERTS=HOST:PORT"
          "[,HOST:PORT...][;...], e.g. '0-3=hostA:9001,hostA2:9001;4-7=hostB:9001'. Several "
          "addresses are replicas. With --layers a shard may name its layers first "
          "('0-15:0-3=hostA:9001'); one that does not applies to every MoE layer. Experts no "
          "shard names run in this process.");
ABSL_FLAG(bool, allow_mixed_isa, false,
          "Accept expert workers whose CPU tier (--max_isa or CPU) differs from this "
          "process's. Their answers are then within tolerance of this process's, not bitwise "
          "equal.");
ABSL_FLAG(int64_t, expert_rpc_timeout_ms, 10000,
          "Longest one call to an expert worker may take before it is retried elsewhere.");

namespace {

// The layer to serve and what main() reports about it.
struct BuiltLayer {
  std::unique_ptr<moe::MoeLayer> layer;
  moe::RemoteExpertBackend* remote = nullptr;  // owned by the layer, if any
  std::string summary;
};

absl::Status FailedToStart(const std::string& what) { return absl::FailedPreconditionError(what); }

// Loads the weights, packs them into the layer and connects to the expert
// workers. Its OpenMP work (oneDNN reorders, the kernel checks) must not
// run on main()'s thread: see common/compute_thread.h.
// `layer_index` is the checkpoint's layer (0 for a preset); `model_name`
// labels the expert workers' metrics.
absl::StatusOr<BuiltLayer> BuildLayer(moe::DType compute, int layer_index,
                                      const std::string& model_name,
                                      const std::vector<int>& worker_layers) {
  absl::StatusOr<moe::LayerWeights> weights = moe::LoadLayerFromFlags(layer_index);
  if (!weights.ok()) return FailedToStart(std::string(weights.status().message()));
  moe::MoeLayerOptions layer_options;
  layer_options.compute = compute;
  std::unique_ptr<moe::ExpertBackend> backend;
  moe::RemoteExpertBackend* remote = nullptr;
  const std::string workers = absl::GetFlag(FLAGS_expert_workers);
  absl::StatusOr<std::vector<moe::ShardSpec>> shards;
  if (!workers.empty()) {
    const bool named_here =
        std::find(worker_layers.begin(), worker_layers.end(), layer_index) != worker_layers.end();
    if (weights->spec.dense) {
      // A shard for every layer skips a dense one; one naming it is wrong.
      if (named_here || !moe::SeveralLayersRequested()) {
        return FailedToStart(absl::StrCat("--expert_workers: layer ", layer_index,
                                          " is a dense FFN: it has no experts to shard"));
      }
    } else {
      shards = moe::ParseExpertWorkerSpec(workers, weights->spec.num_experts(), layer_index);
      if (!shards.ok()) return FailedToStart(std::string(shards.status().message()));
    }
  }
  if (shards.ok() && !shards->empty()) {
    std::vector<bool> covered(static_cast<size_t>(weights->spec.num_experts()), false);
    for (const auto& sh : *shards) {
      for (int e : sh.experts) covered[static_cast<size_t>(e)] = true;
    }
    std::vector<int> local_ids;
    for (int e = 0; e < weights->spec.num_experts(); ++e) {
      if (!covered[static_cast<size_t>(e)]) local_ids.push_back(e);
    }
    std::unique_ptr<moe::ExpertBackend> local;
    if (!local_ids.empty()) {
      moe::MatmulCacheRegistry registry;
      auto made = moe::CreateLocalBackend(*weights, compute, &registry, local_ids);
      if (!made.ok()) return FailedToStart(std::string(made.status().message()));
      local = *std::move(made);
    }
    moe::RemoteBackendOptions remote_options;
    remote_options.rpc_timeout = absl::Milliseconds(absl::GetFlag(FLAGS_expert_rpc_timeout_ms));
    remote_options.allow_mixed_isa = absl::GetFlag(FLAGS_allow_mixed_isa);
    remote_options.layer = layer_index;
    remote_options.model_name = model_name;
    spdlog::info("model '{}': connecting to expert workers {}", model_name, workers);
    auto created = moe::RemoteExpertBackend::Create(*std::move(shards), *weights, compute,
                                                    std::move(local), remote_options);
    if (!created.ok())
      return FailedToStart(absl::StrCat("refusing to start: ", created.status().message()));
    remote = created->get();
    backend = *std::move(created);
  }
  auto layer = moe::MoeLayer::Create(*weights, layer_options, std::move(backend));
  if (!layer.ok())
    return FailedToStart(absl::StrCat("cannot build the layer: ", layer.status().message()));
  BuiltLayer built;
  built.summary = (*layer)->Summary();
  built.layer = *std::move(layer);
  built.remote = remote;
  return built;  // the unpacked weights end with this call: packed copies live in the layer
}

// What main() serves: the layers, their model names, and the start-up log.
struct BuiltModels {
  std::vector<std::unique_ptr<moe::MoeLayer>> layers;
  std::vector<std::string> names;
  std::vector<const moe::RemoteExpertBackend*> remotes;  // owned by the layers
  std::string source;  // "preset demo", "DIR layer 3", "DIR layers 0-31"
};

double PackedMegabytes(const moe::MoeLayer& layer) {
  return static_cast<double>(layer.weight_bytes()) / 1e6;
}

// Builds every layer to serve, one after the other, so that at most one
// layer's unpacked weights exist beside the packed ones. Logs each layer
// and the total.
absl::StatusOr<BuiltModels> BuildModels(moe::DType compute) {
  const std::string model_name = absl::GetFlag(FLAGS_model_name);
  auto wanted = moe::LayersFromFlags();
  if (!wanted.ok()) return FailedToStart(std::string(wanted.status().message()));
  const bool several = moe::SeveralLayersRequested();
  std::vector<int> worker_layers;  // the layers --expert_workers names
  if (!absl::GetFlag(FLAGS_expert_workers).empty()) {
    auto named = moe::ExpertWorkerSpecLayers(absl::GetFlag(FLAGS_expert_workers));
    if (!named.ok()) return FailedToStart(std::string(named.status().message()));
    worker_layers = *std::move(named);
    for (int l : worker_layers) {
      if (std::find(wanted->begin(), wanted->end(), l) == wanted->end()) {
        return FailedToStart(absl::StrCat("--expert_workers names layer ", l,
                                          ", which is not served (",
                                          moe::ModelSourceDescription(*wanted), ")"));
      }
    }
  }
  BuiltModels out;
  double total_mb = 0;
  const absl::Time start = absl::Now();
  for (int l : *wanted) {
    const absl::Time layer_start = absl::Now();
    const std::string name = several ? absl::StrCat(model_name, ".layer", l) : model_name;
    auto built = BuildLayer(compute, l, name, worker_layers);
    if (!built.ok()) {
      if (!several) return built.status();
      return absl::Status(built.status().code(),
                          absl::StrCat("layer ", l, ": ", built.status().message()));
    }
    const double mb = PackedMegabytes(*built->layer);
    total_mb += mb;
    out.names.push_back(name);
    if (built->remote != nullptr) out.remotes.push_back(built->remote);
    spdlog::info("model '{}': {}; {:.1f} MB of packed FFN weights; loaded in {:.2f} s", name,
                 built->summary, mb, absl::ToDoubleSeconds(absl::Now() - layer_start));
    out.layers.push_back(std::move(built->layer));
  }
  if (several) {
    const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
    spdlog::info(
        "{} layers ({}): {:.1f} MB of packed FFN weights, loaded in {:.1f} s ({:.0f} MB/s)",
        out.layers.size(), moe::FormatExpertList(*wanted), total_mb, seconds,
        seconds > 0 ? total_mb / seconds : 0.0);
  }
  out.source = moe::ModelSourceDescription(*wanted);
  return out;
}

int Fail(const std::string& what) {
  spdlog::critical("{}", what);
  return 1;
}

moe::ServerOptions ServerOptionsFromFlags(
    const std::vector<const moe::RemoteExpertBackend*>& remotes) {
  moe::ServerOptions options;
  options.listen_host = absl::GetFlag(FLAGS_host);
  options.grpc_port = absl::GetFlag(FLAGS_grpc_port);
  options.metrics_port = absl::GetFlag(FLAGS_metrics_port);
  options.http_port = absl::GetFlag(FLAGS_http_port);
  options.model_name = absl::GetFlag(FLAGS_model_name);
  options.limits.max_request_tokens = absl::GetFlag(FLAGS_max_request_tokens);
  options.limits.allow_non_finite = absl::GetFlag(FLAGS_allow_non_finite);
  options.batching.max_batch_tokens = absl::GetFlag(FLAGS_max_batch_tokens);
  options.batching.max_queue_delay = absl::Microseconds(absl::GetFlag(FLAGS_max_queue_delay_us));
  options.batching.adaptive_fill = absl::GetFlag(FLAGS_adaptive_batching);
  options.batching.max_queue_tokens = absl::GetFlag(FLAGS_max_queue_tokens);
  options.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  options.tls.cert_file = absl::GetFlag(FLAGS_tls_cert);
  options.tls.key_file = absl::GetFlag(FLAGS_tls_key);
  options.tls.client_ca_file = absl::GetFlag(FLAGS_tls_client_ca);
  if (!remotes.empty()) {
    options.extra_metrics = [remotes] { return moe::RemoteExpertBackend::RenderMetrics(remotes); };
  }
  return options;
}

// The "listening" and "ready" lines operators and the tests read.
void LogReady(const moe::MoeServer& server, const moe::ServerOptions& options) {
  const std::string scheme = options.tls.cert_file.empty() ? "http" : "https";
  spdlog::info(
      "listening: gRPC {}:{}{}, REST {}, metrics {}", options.listen_host, server.grpc_port(),
      options.tls.cert_file.empty() ? "" : " (TLS)",
      server.http_port() > 0
          ? absl::StrCat(scheme, "://", options.listen_host, ":", server.http_port(), "/v2")
          : std::string("disabled"),
      server.metrics_port() > 0
          ? absl::StrCat("http://", options.listen_host, ":", server.metrics_port(), "/metrics")
          : std::string("disabled"));
  spdlog::info(
      "ready: batching up to {} tokens per call, {} us queue delay ({}), {} tokens "
      "queued; CPU tier {}; {}; {}",
      options.batching.max_batch_tokens, absl::GetFlag(FLAGS_max_queue_delay_us),
      options.batching.adaptive_fill ? "adaptive fill" : "waits for a full batch",
      options.batching.max_queue_tokens, moe::CpuTierDescription(), moe::DnnlDescription(),
      moe::OpenMpWaitDescription());
}

// Drains after signal `sig` and logs the totals, which let an operator
// (and the container test) match the server's answers against its
// clients' counts.
void DrainAndReport(moe::MoeServer& server, int sig) {
  const int drain_s = absl::GetFlag(FLAGS_drain_timeout_s);
  spdlog::info("received {}: draining (up to {} s)", sig == SIGTERM ? "SIGTERM" : "SIGINT",
               drain_s);
  const int64_t cut = server.Shutdown(absl::Seconds(drain_s));
  const moe::ServingCore& core = server.core();
  const auto total = [&core](const char* outcome) {
    return static_cast<int64_t>(core.RequestsTotal(outcome));
  };
  if (cut > 0) {
    spdlog::warn("drain timeout: {} accepted requests were cut with UNAVAILABLE", cut);
  } else {
    spdlog::info("drained: every accepted request was answered; exiting");
  }
  spdlog::info(
      "requests answered since start: ok {}, unavailable {}, invalid_argument {}, "
      "not_found {}, deadline_exceeded {}, cancelled {}, internal {}",
      total("ok"), total("unavailable"), total("invalid_argument"), total("not_found"),
      total("deadline_exceeded"), total("cancelled"), total("internal"));
}

}  // namespace

int main(int argc, char** argv) {
  // Re-executes first if it sets the OpenMP spin count; blocks the
  // shutdown signals before any thread starts; main() sigwait()s for them.
  sigset_t signals = moe::StartServingProcess(
      argc, argv,
      "Serves mixture-of-experts FFN layers over the KServe v2 gRPC and REST protocols.\n"
      "  moe_server [--preset=demo | --model_dir=DIR [--layer=N | --layers=all|A-B,C]] "
      "[--grpc_port=8001]");

  auto resolved = moe::ComputeDTypeFromFlags();
  if (!resolved.ok()) return Fail(std::string(resolved.status().message()));
  const moe::DType compute = *resolved;

  const absl::Time load_start = absl::Now();
  auto built = moe::RunOnTransientThread([compute] { return BuildModels(compute); });
  if (!built.ok()) return Fail(std::string(built.status().message()));
  const moe::ServerOptions options = ServerOptionsFromFlags(built->remotes);
  auto server = moe::MoeServer::Start(std::move(built->layers), built->names, options);
  if (!server.ok()) return Fail(absl::StrCat("cannot start: ", server.status().message()));
  spdlog::info("serving {} from {} (loaded in {:.1f} s)",
               (*server)->core().ServedModelsDescription(), built->source,
               absl::ToDoubleSeconds(absl::Now() - load_start));
  LogReady(**server, options);

  int sig = 0;
  sigwait(&signals, &sig);
  DrainAndReport(**server, sig);
  server->reset();
  return 0;
}
