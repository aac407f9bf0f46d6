// Layer throughput: MoeLayer::Forward tokens/s on a preset, for a sweep of
// batch sizes, f32 and bf16. Prints Google Benchmark's table; tokens/s is
// the "items_per_second" counter.
//
//   build/bench/layer_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
//   MOE_BENCH_PRESET=qwen2-moe-a2.7b build/bench/layer_bench
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/parse.h"
#include "benchmark/benchmark.h"
#include "common/max_isa_flag.h"
#include "common/memory_tuning.h"
#include "common/seeded_random.h"
#include "experts/dnnl_engine.h"
#include "model/moe_layer.h"
#include "model/presets.h"

namespace moe {
namespace {

std::string BenchPreset() {
  const char* p = std::getenv("MOE_BENCH_PRESET");
  return p != nullptr ? p : "demo";
}

// Layers are built once per dtype and kept for the whole run.
MoeLayer* GetLayer(DType compute) {
  static std::map<DType, std::unique_ptr<MoeLayer>> layers;
  auto& layer = layers[compute];
  if (layer == nullptr) {
    auto weights = MakePreset(BenchPreset());
    if (!weights.ok()) std::abort();
    MoeLayerOptions options;
    options.compute = compute;
    auto created = MoeLayer::Create(*weights, options);
    if (!created.ok()) std::abort();
    layer = *std::move(created);
  }
  return layer.get();
}

void BM_LayerForward(benchmark::State& state, DType compute) {
  MoeLayer* layer = GetLayer(compute);
  const int64_t t = state.range(0);
  const int64_t h = layer->d_model();
  SeededRandom rng(static_cast<uint64_t>(t));
  std::vector<float> x = rng.UniformVector(t * h, 1.0f);
  std::vector<float> y(static_cast<size_t>(t * h));
  ForwardOutputs out;
  out.output = y.data();
  // Warm-up: creates the primitives for this batch's row counts.
  if (!layer->Forward(x.data(), t, out).ok()) std::abort();
  for (auto _ : state) {
    if (!layer->Forward(x.data(), t, out).ok()) std::abort();
    benchmark::DoNotOptimize(y.data());
  }
  state.SetItemsProcessed(state.iterations() * t);
  state.SetLabel(layer->spec().family + " " + DTypeName(layer->compute()));
}

BENCHMARK_CAPTURE(BM_LayerForward, f32, DType::kF32)
    ->Arg(1)
    ->Arg(16)
    ->Arg(128)
    ->Arg(1024)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_LayerForward, bf16, DType::kBF16)
    ->Arg(1)
    ->Arg(16)
    ->Arg(128)
    ->Arg(1024)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace moe

int main(int argc, char** argv) {
  moe::KeepFreedMemoryInProcess();
  benchmark::Initialize(&argc, argv);
  absl::ParseCommandLine(argc, argv);  // --max_isa; benchmark's flags are gone
  moe::ApplyMaxIsaFlagOrExit(argv[0]);
  benchmark::AddCustomContext("preset", moe::BenchPreset());
  benchmark::AddCustomContext("onednn", moe::DnnlDescription());
  benchmark::AddCustomContext("cpu_tier", moe::CpuTierDescription());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
