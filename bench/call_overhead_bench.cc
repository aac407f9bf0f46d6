// Per-call overhead of the front end at one token: an in-process MoeServer
// on 127.0.0.1 serving a tiny layer (the demo's routing at d_model 64, 8
// experts of 96, f32: a few µs of compute), called by one client thread
// over a loopback gRPC channel, one call at a time.
//
//   BM_ServerLive      the gRPC round trip alone (the server answers at
//                      once): the transport's floor on this machine
//   BM_ModelInfer/L    one-token ModelInfer; with L > 1 the server serves
//                      L layers (moe.layer0 ..) and the calls walk them in
//                      order, as a pipeline does
// Counters: in_server_us (arrival to answer inside the server, from
// ModelStatistics), compute_us (the layer call) and queue_us, per call.
// Per-call overhead = time per call − compute_us; the transport's share is
// BM_ServerLive's time.
//
//   build/bench/call_overhead_bench --benchmark_repetitions=5
//       --benchmark_report_aggregates_only=true   (one line)
#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "batching/serving_core.h"
#include "benchmark/benchmark.h"
#include "client/kserve_client.h"
#include "common/seeded_random.h"
#include "frontend/model_descriptors.h"
#include "frontend/moe_server.h"
#include "model/presets.h"
#include "proto/grpc_service.grpc.pb.h"

namespace moe {
namespace {

constexpr int64_t kDModel = 64;

LayerWeights TinyLayer(int l) {
  LayerSpec s = *PresetSpec("demo");
  s.d_model = s.expert.d_model = kDModel;
  s.expert.d_ff = 96;
  return MakeSyntheticWeights(s, 40 + static_cast<uint64_t>(l));
}

// A server of `layers` tiny layers ("moe" alone when 1) and a stub to it.
struct Served {
  std::unique_ptr<MoeServer> server;
  std::unique_ptr<inference::GRPCInferenceService::Stub> stub;
  std::vector<std::string> names;
};

Served Serve(int layers) {
  Served s;
  std::vector<std::unique_ptr<MoeLayer>> built;
  for (int l = 0; l < layers; ++l) {
    MoeLayerOptions o;
    o.compute = DType::kF32;
    built.push_back(*MoeLayer::Create(TinyLayer(l), o));
    s.names.push_back(layers == 1 ? "moe" : absl::StrCat("moe.layer", l));
  }
  ServerOptions options;
  options.listen_host = "127.0.0.1";
  options.grpc_port = 0;
  options.http_port = -1;
  options.metrics_port = -1;
  auto server = MoeServer::Start(std::move(built), s.names, options);
  if (!server.ok()) return s;
  s.server = *std::move(server);
  s.stub = inference::GRPCInferenceService::NewStub(
      grpc::CreateChannel(s.server->local_grpc_address(), grpc::InsecureChannelCredentials()));
  return s;
}

void BM_ServerLive(benchmark::State& state) {
  Served s = Serve(1);
  if (s.server == nullptr) return state.SkipWithError("cannot start the server");
  for (auto _ : state) {
    grpc::ClientContext ctx;
    inference::ServerLiveResponse resp;
    if (!s.stub->ServerLive(&ctx, inference::ServerLiveRequest(), &resp).ok()) {
      return state.SkipWithError("ServerLive failed");
    }
  }
}
BENCHMARK(BM_ServerLive)->UseRealTime();

void BM_ModelInfer(benchmark::State& state) {
  const int layers = static_cast<int>(state.range(0));
  Served s = Serve(layers);
  if (s.server == nullptr) return state.SkipWithError("cannot start the server");
  SeededRandom random(7);
  const std::vector<float> token = random.UniformVector(kDModel, 1.0f);
  std::vector<inference::ModelInferRequest> requests;
  for (const std::string& name : s.names) {
    requests.push_back(BuildInferRequest(name, token, kDModel, false, "", false));
  }
  size_t i = 0;
  for (auto _ : state) {
    grpc::ClientContext ctx;
    inference::ModelInferResponse resp;
    if (!s.stub->ModelInfer(&ctx, requests[i++ % requests.size()], &resp).ok()) {
      return state.SkipWithError("ModelInfer failed");
    }
  }
  double in_server_ns = 0, compute_ns = 0, queue_ns = 0, calls = 0, batches = 0;
  for (int m = 0; m < s.server->core().num_models(); ++m) {
    inference::ModelStatistics stats;
    FillModelStatistics(s.server->core().model(m), &stats);
    in_server_ns += static_cast<double>(stats.inference_stats().success().ns());
    queue_ns += static_cast<double>(stats.inference_stats().queue().ns());
    calls += static_cast<double>(stats.inference_stats().success().count());
    compute_ns += static_cast<double>(stats.inference_stats().compute_infer().ns());
    batches += static_cast<double>(stats.inference_stats().compute_infer().count());
  }
  if (calls > 0 && batches > 0) {
    state.counters["in_server_us"] = in_server_ns / calls / 1e3;
    state.counters["queue_us"] = queue_ns / calls / 1e3;
    state.counters["compute_us"] = compute_ns / batches / 1e3;
  }
}
BENCHMARK(BM_ModelInfer)->Arg(1)->Arg(16)->UseRealTime();

}  // namespace
}  // namespace moe

BENCHMARK_MAIN();
