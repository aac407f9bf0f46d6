// moe_expert_worker: hosts a shard of routed experts of one or several
// layers for a moe_server front end (moe.v1.ExpertService), on oneDNN.
//
//   moe_expert_worker --experts=0-3 --port=9001                 # demo preset
//   moe_expert_worker --experts=4-7 --model_dir=/models/mixtral --layer=3
//   moe_expert_worker --experts=0-3 --model_dir=/models/mixtral --layers=0-15
//
// It loads only its experts. SIGTERM / SIGINT: health NOT_SERVING, in-flight
// calls finish (up to --drain_timeout_s), exit 0.
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <csignal>
#include <memory>
#include <optional>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "common/compute_thread.h"
#include "experts/dnnl_engine.h"
#include "model/checkpoint_loader.h"
#include "model/expert_ranges.h"
#include "model/moe_layer.h"
#include "model/presets.h"
#include "workers/expert_worker_service.h"
#include "serving/metrics_http_server.h"
#include "serving/model_source.h"
#include "serving/process_setup.h"
#include "spdlog/spdlog.h"

ABSL_FLAG(std::string, experts, "", "Experts to host: N, A-B or a comma list (required).");
ABSL_FLAG(std::string, host, "0.0.0.0", "Address to listen on.");
ABSL_FLAG(int, port, 9001, "gRPC port (0: pick a free one and log it).");
ABSL_FLAG(int, metrics_port, 9002, "Prometheus /metrics port (0: pick a free one; -1: off).");
ABSL_FLAG(int, max_message_bytes, 256 << 20, "Largest gRPC message, bytes.");
ABSL_FLAG(int, drain_timeout_s, 30, "Longest graceful drain on SIGTERM/SIGINT, seconds.");

namespace {

int Fail(const std::string& what) {
  spdlog::critical("{}", what);
  return 1;
}

// Loads layer `layer` (the preset when no --model_dir) and packs the
// --experts of it; returns the hosted layer and its log line, or nullopt
// for a dense layer when `skip_dense` (else a dense layer is an error).
absl::StatusOr<std::optional<std::pair<moe::HostedLayer, std::string>>> BuildHostedLayer(
    moe::DType compute, int layer, bool skip_dense) {
  // A preset's spec first, to make only the hosted experts' weights; a
  // checkpoint's tensors are memory-mapped: only the hosted experts' pages
  // are read.
  absl::StatusOr<moe::LayerWeights> weights;
  absl::StatusOr<moe::LayerSpec> spec;
  if (moe::ModelDirGiven()) {
    weights = moe::LoadLayerFromFlags(layer);
    if (!weights.ok()) return weights.status();
    spec = weights->spec;
  } else {
    spec = moe::PresetSpecFromFlags();
    if (!spec.ok()) return spec.status();
  }
  if (spec->dense) {
    if (skip_dense) return std::nullopt;
    return absl::InvalidArgumentError("this layer is a dense FFN: it has no experts to shard");
  }
  auto ids = moe::ParseExpertList(absl::GetFlag(FLAGS_experts), spec->num_experts());
  if (!ids.ok()) return absl::InvalidArgumentError(absl::StrCat("--experts: ", ids.status().message()));
  const std::vector<int> hosted = *ids;
  if (!moe::ModelDirGiven()) {
    weights = moe::LoadLayerFromFlags(layer, hosted);
    if (!weights.ok()) return weights.status();
  }
  moe::MatmulCacheRegistry registry;
  // Packing runs OpenMP work: not on main()'s thread (common/compute_thread.h).
  auto backend = moe::RunOnTransientThread(
      [&] { return moe::CreateLocalBackend(*weights, compute, &registry, hosted); });
  if (!backend.ok()) {
    return absl::InternalError(absl::StrCat("cannot pack the experts: ", backend.status().message()));
  }
  moe::HostedLayer h;
  h.layer = layer;
  moe::v1::InfoResponse& info = h.info;
  for (int e : hosted) info.add_experts(e);
  info.set_d_model(weights->spec.d_model);
  info.set_d_ff(weights->spec.expert.d_ff);
  info.set_dtype(moe::DTypeName(compute));
  info.set_weights_checksum(moe::ExpertWeightsChecksum(*weights, hosted));
  info.set_family(weights->spec.family);
  info.set_kernel((*backend)->Describe());
  info.set_cpu_tier(moe::CpuTierName(moe::ActiveCpuTier()));
  std::string summary = absl::StrCat("layer ", layer, ": ", weights->spec.Summary(),
                                     "; hosting experts ", moe::FormatExpertList(hosted), "; ",
                                     (*backend)->Describe());
  h.backend = *std::move(backend);
  return std::make_optional(std::make_pair(std::move(h), std::move(summary)));
}

}  // namespace

int main(int argc, char** argv) {
  // Re-executes first if it sets the OpenMP spin count; blocks the
  // shutdown signals before any thread starts; main() sigwait()s for them.
  sigset_t signals = moe::StartServingProcess(
      argc, argv,
      "Hosts a shard of a layer's routed experts for moe_server.\n"
      "  moe_expert_worker --experts=0-3 [--preset=demo | --model_dir=DIR --layer=N | "
      "--model_dir=DIR --layers=A-B] --port=9001");

  auto resolved = moe::ComputeDTypeFromFlags();
  if (!resolved.ok()) return Fail(std::string(resolved.status().message()));
  const moe::DType compute = *resolved;
  if (absl::GetFlag(FLAGS_experts).empty()) return Fail("--experts is required (e.g. 0-3)");

  auto wanted = moe::LayersFromFlags();
  if (!wanted.ok()) return Fail(std::string(wanted.status().message()));
  const std::vector<int> layer_ids = *wanted;
  std::vector<moe::HostedLayer> hosted_layers;
  std::vector<std::string> summaries;
  std::vector<int> served_ids;
  for (int l : layer_ids) {
    // With --layers a dense layer is skipped (the front end runs it), as
    // the front end's shards without layers skip it.
    auto hosted = BuildHostedLayer(compute, l, moe::SeveralLayersRequested());
    if (hosted.ok() && !hosted->has_value()) {
      spdlog::info("layer {}: a dense FFN, no experts to host; skipped", l);
      continue;
    }
    if (!hosted.ok()) {
      return Fail(layer_ids.size() > 1
                      ? absl::StrCat("layer ", l, ": ", hosted.status().message())
                      : std::string(hosted.status().message()));
    }
    summaries.push_back((*hosted)->second);
    hosted_layers.push_back(std::move((*hosted)->first));
    served_ids.push_back(l);
  }
  if (hosted_layers.empty()) {
    return Fail(absl::StrCat("--layers=", moe::FormatExpertList(layer_ids),
                             ": every layer is a dense FFN; no experts to host"));
  }
  const uint64_t first_checksum = hosted_layers.front().info.weights_checksum();
  auto service = std::make_unique<moe::ExpertWorkerService>(std::move(hosted_layers));
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  const std::string address =
      absl::StrCat(absl::GetFlag(FLAGS_host), ":", absl::GetFlag(FLAGS_port));
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(service.get());
  builder.SetMaxReceiveMessageSize(absl::GetFlag(FLAGS_max_message_bytes));
  builder.SetMaxSendMessageSize(absl::GetFlag(FLAGS_max_message_bytes));
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) return Fail(absl::StrCat("cannot listen on ", address));
  server->GetHealthCheckService()->SetServingStatus(true);

  std::unique_ptr<moe::MetricsHttpServer> metrics;
  if (absl::GetFlag(FLAGS_metrics_port) >= 0) {
    moe::ExpertWorkerService* svc = service.get();
    auto started =
        moe::MetricsHttpServer::Start(absl::GetFlag(FLAGS_host), absl::GetFlag(FLAGS_metrics_port),
                                      [svc] { return svc->RenderMetrics(); });
    if (!started.ok()) return Fail(std::string(started.status().message()));
    metrics = *std::move(started);
  }
  const int metrics_port = metrics != nullptr ? metrics->port() : -1;
  for (const std::string& summary : summaries) spdlog::info("expert worker: {}", summary);
  spdlog::info("CPU tier {}; {}", moe::CpuTierDescription(), moe::DnnlDescription());
  spdlog::info("listening: gRPC {}:{}, metrics {}", absl::GetFlag(FLAGS_host), port,
               metrics_port > 0 ? absl::StrCat("port ", metrics_port) : std::string("disabled"));
  spdlog::info("ready: {} layer(s), weights checksum {:016x} (layer {})", summaries.size(),
               first_checksum, served_ids.front());

  int sig = 0;
  sigwait(&signals, &sig);
  spdlog::info("received {}: draining", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  server->GetHealthCheckService()->SetServingStatus(false);
  server->Shutdown(std::chrono::system_clock::now() +
                   std::chrono::seconds(absl::GetFlag(FLAGS_drain_timeout_s)));
  server->Wait();
  if (metrics != nullptr) metrics->Stop();
  spdlog::info("drained; exiting");
  return 0;
}
