// moe_expert_worker: hosts a shard of routed experts of one or several
// layers for a moe_server front end (moe.v1.ExpertService), on oneDNN.
//
//   moe_expert_worker --experts=0-3 --grpc_port=9001                 # demo preset
//   moe_expert_worker --experts=4-7 --model_dir=/models/mixtral --layer=3
//   moe_expert_worker --experts=0-3 --model_dir=/models/mixtral --layers=0-15
//
// It loads only its experts. SIGTERM / SIGINT: health NOT_SERVING, in-flight
// calls finish (up to --drain_timeout_s), exit 0.
#include <csignal>
#include <memory>
#include <optional>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "common/compute_thread.h"
#include "common/cpu_tier.h"
#include "experts/dnnl_engine.h"
#include "model/checkpoint_loader.h"
#include "model/expert_ranges.h"
#include "model/moe_layer.h"
#include "model/presets.h"
#include "serving/model_source.h"
#include "serving/process_setup.h"
#include "spdlog/spdlog.h"
#include "workers/expert_worker_server.h"

ABSL_FLAG(std::string, experts, "", "Experts to host: N, A-B or a comma list (required).");
ABSL_FLAG(std::string, host, "0.0.0.0", "Address to listen on.");
ABSL_FLAG(int, grpc_port, 9001, "gRPC port (0: pick a free one and log it).");
ABSL_FLAG(int, port, -1, "Deprecated: the former name of --grpc_port; used when >= 0.");
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
  if (!ids.ok())
    return absl::InvalidArgumentError(absl::StrCat("--experts: ", ids.status().message()));
  const std::vector<int> hosted = *ids;
  if (!moe::ModelDirGiven()) {
    weights = moe::LoadLayerFromFlags(layer, hosted);
    if (!weights.ok()) return weights.status();
  }
  // Packing runs OpenMP work: not on main()'s thread (common/compute_thread.h).
  auto h = moe::RunOnTransientThread(
      [&] { return moe::MakeHostedLayer(*weights, compute, hosted, layer); });
  if (!h.ok()) return h.status();
  std::string summary =
      absl::StrCat("layer ", layer, ": ", weights->spec.Summary(), "; hosting experts ",
                   moe::FormatExpertList(hosted), "; ", h->info.kernel());
  return std::make_optional(std::make_pair(*std::move(h), std::move(summary)));
}

// Builds every layer of --layer/--layers (a dense one skipped with
// --layers: the front end runs it) and logs what each hosts.
absl::StatusOr<std::vector<moe::HostedLayer>> BuildHostedLayers(moe::DType compute) {
  auto wanted = moe::LayersFromFlags();
  if (!wanted.ok()) return wanted.status();
  std::vector<moe::HostedLayer> hosted_layers;
  for (int l : *wanted) {
    auto hosted = BuildHostedLayer(compute, l, moe::SeveralLayersRequested());
    if (!hosted.ok()) {
      if (wanted->size() == 1) return hosted.status();
      return absl::Status(hosted.status().code(),
                          absl::StrCat("layer ", l, ": ", hosted.status().message()));
    }
    if (!hosted->has_value()) {
      spdlog::info("layer {}: a dense FFN, no experts to host; skipped", l);
      continue;
    }
    spdlog::info("expert worker: {}", (*hosted)->second);
    hosted_layers.push_back(std::move((*hosted)->first));
  }
  if (hosted_layers.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--layers=", moe::FormatExpertList(*wanted),
                     ": every layer is a dense FFN; no experts to host"));
  }
  return hosted_layers;
}

}  // namespace

int main(int argc, char** argv) {
  // Re-executes first if it sets the OpenMP spin count; blocks the
  // shutdown signals before any thread starts; main() sigwait()s for them.
  sigset_t signals = moe::StartServingProcess(
      argc, argv,
      "Hosts a shard of a layer's routed experts for moe_server.\n"
      "  moe_expert_worker --experts=0-3 [--preset=demo | --model_dir=DIR --layer=N | "
      "--model_dir=DIR --layers=A-B] --grpc_port=9001");

  auto resolved = moe::ComputeDTypeFromFlags();
  if (!resolved.ok()) return Fail(std::string(resolved.status().message()));
  if (absl::GetFlag(FLAGS_experts).empty()) return Fail("--experts is required (e.g. 0-3)");
  auto hosted_layers = BuildHostedLayers(*resolved);
  if (!hosted_layers.ok()) return Fail(std::string(hosted_layers.status().message()));
  const int first_layer = hosted_layers->front().layer;
  const uint64_t first_checksum = hosted_layers->front().info.weights_checksum();
  const size_t num_layers = hosted_layers->size();

  moe::ExpertWorkerOptions options;
  options.listen_host = absl::GetFlag(FLAGS_host);
  options.grpc_port = absl::GetFlag(FLAGS_grpc_port);
  if (const int old_port = absl::GetFlag(FLAGS_port); old_port >= 0) {
    spdlog::warn("--port is deprecated; use --grpc_port");
    options.grpc_port = old_port;
  }
  options.metrics_port = absl::GetFlag(FLAGS_metrics_port);
  options.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  auto server = moe::ExpertWorkerServer::Start(*std::move(hosted_layers), options);
  if (!server.ok()) return Fail(std::string(server.status().message()));
  const int metrics_port = (*server)->metrics_port();
  spdlog::info("CPU tier {}; {}", moe::CpuTierDescription(), moe::DnnlDescription());
  spdlog::info("listening: gRPC {}:{}, metrics {}", options.listen_host, (*server)->grpc_port(),
               metrics_port > 0 ? absl::StrCat("port ", metrics_port) : std::string("disabled"));
  spdlog::info("ready: {} layer(s), weights checksum {:016x} (layer {})", num_layers,
               first_checksum, first_layer);

  int sig = 0;
  sigwait(&signals, &sig);
  spdlog::info("received {}: draining", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  (*server)->Shutdown(absl::Seconds(absl::GetFlag(FLAGS_drain_timeout_s)));
  spdlog::info("drained; exiting");
  return 0;
}
