// moe_bench: the MoE layer against the limits of this machine, in one
// process. For each model, dtype and batch size T it reports
//   - the layer's tokens/s and its time split (route, gather, experts,
//     shared, combine), from MoeLayer::Forward's own timings;
//   - the kernel limit: the same batches' matmuls run as standalone oneDNN
//     calls on prepacked weights (bench/standalone_matmuls.h), measured
//     right before the layer, and eff_kernel = kernel time / layer time;
//   - the roofline: max(weight bytes / DRAM read bandwidth, FLOPs / peak),
//     both measured at start-up in this process, and roofline = that time
//     / layer time.
// Batches are pools of random tokens (uniform in [-1, 1)), a new batch each
// iteration, so the experts' weights come cold from memory as in serving;
// at T = 1 the "repeat" routing also runs one token again and again (the
// pattern other engines often quote).
//
//   build/bench/moe_bench --models=demo --dtypes=bf16 --tokens=1,16,256
//   build/bench/moe_bench --model_root=DIR   # models from moe_export_preset folders
//   bench/run.sh                             # everything, with PyTorch and serving
//
// Google Benchmark flags work as usual (--benchmark_repetitions=5,
// --benchmark_out=F --benchmark_out_format=json, --benchmark_filter=...).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "bench/hardware_limits.h"
#include "bench/standalone_matmuls.h"
#include "benchmark/benchmark.h"
#include "common/max_isa_flag.h"
#include "common/memory_tuning.h"
#include "common/seeded_random.h"
#include "common/status_macros.h"
#include "experts/dnnl_engine.h"
#include "model/checkpoint_loader.h"
#include "model/moe_layer.h"
#include "model/presets.h"

ABSL_FLAG(std::string, models, "demo,moe-1024x4096",
          "Comma list of presets; NAME@bf16 (or @f32) restricts a model's dtypes, "
          "NAME:MAXT caps its batch sizes (e.g. mixtral-8x7b@bf16:1024).");
ABSL_FLAG(std::string, model_root, "",
          "Load each model from DIR/NAME (a moe_export_preset folder) instead of "
          "generating the preset in memory.");
ABSL_FLAG(std::string, dtypes, "f32,bf16", "Compute dtypes.");
ABSL_FLAG(std::string, tokens, "1,4,16,64,256,1024,4096", "Batch sizes T.");
ABSL_FLAG(bool, repeat_token, true, "Also run T = 1 with one token repeated.");
ABSL_FLAG(bool, threading_alternative, true,
          "Also time the batch's matmuls with experts in parallel on 2 single-threaded "
          "lanes (against one expert at a time on all threads, the layer's plan).");
ABSL_FLAG(int, threads, 2, "Threads of the hardware probes (the layer uses oneDNN's).");
ABSL_FLAG(bool, print_cpu_tier, false, "Print the CPU tier the kernels run at and exit.");
ABSL_FLAG(bool, probe_hardware, true, "Measure DRAM bandwidth and peak FLOP/s first.");
ABSL_FLAG(int, idle_us, 0,
          "Sleep this long before each timed layer call (outside the timing), as a "
          "server at low load idles between batches.");

namespace moe {
namespace {

struct HardwareFigures {
  double read_gbps = 0;
  double peak_f32_gflops = 0;
  double peak_bf16_gflops = 0;
  double peak_int8_gops = 0;
};
HardwareFigures g_hw;
std::unique_ptr<ReadBandwidthProbe> g_bandwidth;

struct ModelCase {
  std::string name;
  std::vector<DType> dtypes;
  int64_t max_tokens = 0;  // 0: no cap
};

// The layer and its standalone matmuls for one model and dtype. Only one
// is kept at a time, so large models fit.
struct Loaded {
  std::string key;
  std::unique_ptr<MoeLayer> layer;
  std::unique_ptr<StandaloneMatmuls> limit;
  // The same weights in f32, for the accuracy of the other dtypes.
  std::unique_ptr<MoeLayer> f32_reference;
};
Loaded g_loaded;

absl::StatusOr<LayerWeights> LoadWeights(const std::string& name) {
  const std::string root = absl::GetFlag(FLAGS_model_root);
  if (root.empty()) return MakePreset(name);
  return LoadHfLayer(root + "/" + name, 0);
}

absl::Status Load(const std::string& name, DType dtype) {
  const std::string key = absl::StrCat(name, "/", DTypeName(dtype));
  if (g_loaded.key == key) return absl::OkStatus();
  g_loaded = Loaded();
  absl::StatusOr<LayerWeights> weights = LoadWeights(name);
  if (!weights.ok()) return weights.status();
  MoeLayerOptions options;
  options.compute = dtype;
  auto layer = MoeLayer::Create(*weights, options);
  if (!layer.ok()) return layer.status();
  const LayerSpec& spec = weights->spec;
  std::vector<BlockShape> blocks(static_cast<size_t>(spec.num_experts()),
                                 BlockShape{spec.d_model, spec.expert.d_ff, spec.expert.gated});
  if (spec.has_shared()) {
    blocks.push_back(BlockShape{spec.d_model, spec.shared.d_ff, spec.shared.gated});
  }
  auto limit = StandaloneMatmuls::Create(blocks, (*layer)->compute());
  if (!limit.ok() && (*layer)->compute() == DType::kBF16) {
    // oneDNN has no bf16 matmul at this tier (avx2): the kernel limit is
    // its f32 matmul on the same shapes, the roofline counts bf16 bytes.
    limit = StandaloneMatmuls::Create(blocks, DType::kF32);
    if (limit.ok()) (*limit)->CountWeightBytesAs(DType::kBF16);
  }
  if (!limit.ok()) return limit.status();
  if (dtype != DType::kF32) {
    MoeLayerOptions f32;
    auto reference = MoeLayer::Create(*weights, f32);
    if (!reference.ok()) return reference.status();
    g_loaded.f32_reference = *std::move(reference);
  }
  g_loaded.key = key;
  g_loaded.layer = *std::move(layer);
  g_loaded.limit = *std::move(limit);
  return absl::OkStatus();
}

// The batches a case cycles through, each a new draw of tokens (one batch
// when repeating), with their routing's rows per expert block and the means
// over the batches that the roofline needs.
struct CaseBatches {
  std::vector<std::vector<float>> tokens;        // per batch: [t, d_model]
  std::vector<std::vector<int64_t>> block_rows;  // per batch: rows per block
  double weight_bytes = 0, flops = 0, experts_hit = 0;
};

absl::StatusOr<CaseBatches> MakeCaseBatches(MoeLayer* layer, const StandaloneMatmuls& limit,
                                            int64_t t, bool repeat) {
  const LayerSpec& spec = layer->spec();
  const int64_t h = spec.d_model;
  const int e = spec.num_experts();
  const int pool_size = repeat ? 1 : static_cast<int>(std::clamp<int64_t>(4096 / t, 4, 32));
  CaseBatches c;
  std::vector<float> y(static_cast<size_t>(t * h));
  std::vector<int32_t> ids(static_cast<size_t>(t * spec.top_k()));
  for (int b = 0; b < pool_size; ++b) {
    SeededRandom rng(static_cast<uint64_t>(t * 1000 + b));
    c.tokens.push_back(rng.UniformVector(t * h, 1.0f));
    ForwardOutputs out;
    out.output = y.data();
    out.expert_ids = ids.data();
    // Also warms the primitives.
    MOE_RETURN_IF_ERROR(layer->Forward(c.tokens.back().data(), t, out));
    std::vector<int64_t> rows(static_cast<size_t>(e), 0);
    for (int32_t id : ids) {
      if (id >= 0) ++rows[static_cast<size_t>(id)];
    }
    if (spec.has_shared()) rows.push_back(t);
    for (int i = 0; i < e; ++i) c.experts_hit += rows[static_cast<size_t>(i)] > 0 ? 1 : 0;
    c.weight_bytes += static_cast<double>(limit.WeightBytes(rows));
    c.flops += limit.Flops(rows);
    c.block_rows.push_back(std::move(rows));
  }
  c.weight_bytes /= pool_size;
  c.flops /= pool_size;
  c.experts_hit /= pool_size;
  return c;
}

// The largest |y - y_f32| relative to the largest |y_f32| over `t` tokens.
absl::StatusOr<double> ErrorVsF32(MoeLayer* layer, MoeLayer* f32, const float* tokens, int64_t t) {
  std::vector<float> got(static_cast<size_t>(t * layer->spec().d_model)), want(got.size());
  ForwardOutputs o1, o2;
  o1.output = got.data();
  o2.output = want.data();
  MOE_RETURN_IF_ERROR(layer->Forward(tokens, t, o1));
  MOE_RETURN_IF_ERROR(f32->Forward(tokens, t, o2));
  double err = 0, scale = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    err = std::max(err, static_cast<double>(std::abs(got[i] - want[i])));
    scale = std::max(scale, static_cast<double>(std::abs(want[i])));
  }
  return scale > 0 ? err / scale : 0;
}

// What a case's timed loop adds up.
struct CaseTotals {
  int64_t iterations = 0, kernel_runs = 0, parallel_runs = 0;
  double layer_s = 0, kernel_s = 0, parallel_s = 0;  // sums
  ForwardTimings steps;                              // sums
};

void AddTimings(const ForwardTimings& one, ForwardTimings* sum) {
  sum->route_s += one.route_s;
  sum->gather_s += one.gather_s;
  sum->experts_s += one.experts_s;
  sum->shared_s += one.shared_s;
  sum->combine_s += one.combine_s;
}

void ReportCase(benchmark::State& state, const MoeLayer& layer, DType dtype, int64_t t,
                const CaseBatches& c, const CaseTotals& totals, double read_gbps) {
  const double n = static_cast<double>(std::max<int64_t>(totals.iterations, 1));
  const double layer_s = totals.layer_s / n;
  const double kernel_s =
      totals.kernel_s / static_cast<double>(std::max<int64_t>(totals.kernel_runs, 1));
  const double peak =
      layer.compute() == DType::kI8 || layer.compute() == DType::kI4 ? g_hw.peak_int8_gops
      : dtype == DType::kBF16 && layer.compute() == DType::kBF16     ? g_hw.peak_bf16_gflops
                                                                     : g_hw.peak_f32_gflops;
  const double mem_s = read_gbps > 0 ? c.weight_bytes / (read_gbps * 1e9) : 0;
  const double flop_s = peak > 0 ? c.flops / (peak * 1e9) : 0;

  state.SetItemsProcessed(totals.iterations * t);
  state.counters["T"] = static_cast<double>(t);
  state.counters["layer_ms"] = layer_s * 1e3;
  state.counters["route_ms"] = totals.steps.route_s / n * 1e3;
  state.counters["gather_ms"] = totals.steps.gather_s / n * 1e3;
  state.counters["experts_ms"] = totals.steps.experts_s / n * 1e3;
  state.counters["shared_ms"] = totals.steps.shared_s / n * 1e3;
  state.counters["combine_ms"] = totals.steps.combine_s / n * 1e3;
  state.counters["kernel_ms"] = kernel_s * 1e3;
  state.counters["eff_kernel"] = kernel_s / layer_s;
  if (totals.parallel_runs > 0) {
    const double parallel_s = totals.parallel_s / static_cast<double>(totals.parallel_runs);
    state.counters["experts_parallel_ms"] = parallel_s * 1e3;
    state.counters["parallel_gain"] = kernel_s / parallel_s;
  }
  state.counters["mem_limit_ms"] = mem_s * 1e3;
  state.counters["flop_limit_ms"] = flop_s * 1e3;
  state.counters["roofline"] = std::max(mem_s, flop_s) / layer_s;
  state.counters["dram_GBps"] = read_gbps;
  state.counters["weight_MB"] = c.weight_bytes / 1e6;
  state.counters["experts_hit"] = c.experts_hit;
  state.SetLabel(absl::StrCat(layer.spec().family, " ", DTypeName(layer.compute())));
}

// Runs the standalone matmuls once on every batch (and, when asked, in
// parallel blocks), so that both the limit and the layer start warm.
absl::Status WarmLimit(StandaloneMatmuls* limit, const CaseBatches& c, bool parallel) {
  for (const auto& rows : c.block_rows) {
    MOE_RETURN_IF_ERROR(limit->Run(rows).status());
    if (parallel) MOE_RETURN_IF_ERROR(limit->RunBlocksInParallel(rows, 2).status());
  }
  return absl::OkStatus();
}

void RunCase(benchmark::State& state, const std::string& model, DType dtype, int64_t t,
             bool repeat) {
  absl::Status st = Load(model, dtype);
  absl::StatusOr<CaseBatches> c;
  if (st.ok()) c = MakeCaseBatches(g_loaded.layer.get(), *g_loaded.limit, t, repeat);
  if (st.ok() && !c.ok()) st = c.status();
  if (!st.ok()) {
    state.SkipWithError(st.ToString().c_str());
    return;
  }
  MoeLayer* layer = g_loaded.layer.get();
  StandaloneMatmuls* limit = g_loaded.limit.get();
  // Accuracy against f32 on the first batch.
  absl::StatusOr<double> err_vs_f32 = 0.0;
  if (g_loaded.f32_reference != nullptr) {
    err_vs_f32 = ErrorVsF32(layer, g_loaded.f32_reference.get(), c->tokens[0].data(), t);
  }
  // Kernel limit: the same batches' matmuls, standalone. With random
  // routing each iteration runs the limit on its batch right before the
  // layer on the same batch, so both see the same machine (this VM is
  // shared and noisy); the reported time is the layer's alone. With a
  // repeated token, the limit runs first as a block, so that each side
  // finds its own weights in cache as it would on its own.
  const bool try_parallel = absl::GetFlag(FLAGS_threading_alternative) && !repeat;
  if (!err_vs_f32.ok() || !WarmLimit(limit, *c, try_parallel).ok()) {
    state.SkipWithError("accuracy forward or standalone matmuls failed");
    return;
  }
  CaseTotals totals;
  if (repeat) {
    const auto limit_start = std::chrono::steady_clock::now();
    while (totals.kernel_runs < 5 ||
           std::chrono::steady_clock::now() - limit_start < std::chrono::milliseconds(300)) {
      totals.kernel_s += *limit->Run(c->block_rows[0]);
      ++totals.kernel_runs;
    }
  }

  // DRAM bandwidth right before this case; the roofline takes the best of
  // this and the start-up figure (a busy neighbour only lowers a reading).
  double read_gbps = g_hw.read_gbps;
  if (g_bandwidth != nullptr) read_gbps = std::max(read_gbps, g_bandwidth->MeasureGBps(3));

  std::vector<float> y(static_cast<size_t>(t * layer->spec().d_model));
  ForwardTimings one;
  ForwardOutputs out;
  out.output = y.data();
  out.timings = &one;
  const int idle_us = absl::GetFlag(FLAGS_idle_us);
  for (auto _ : state) {
    const size_t b =
        static_cast<size_t>(totals.iterations % static_cast<int64_t>(c->tokens.size()));
    if (!repeat) {
      totals.kernel_s += *limit->Run(c->block_rows[b]);
      ++totals.kernel_runs;
    }
    if (try_parallel) {
      totals.parallel_s += *limit->RunBlocksInParallel(c->block_rows[b], 2);
      ++totals.parallel_runs;
    }
    if (idle_us > 0) std::this_thread::sleep_for(std::chrono::microseconds(idle_us));
    const auto start = std::chrono::steady_clock::now();
    if (!layer->Forward(c->tokens[b].data(), t, out).ok()) {
      state.SkipWithError("forward failed");
      return;
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    state.SetIterationTime(seconds);
    totals.layer_s += seconds;
    benchmark::DoNotOptimize(y.data());
    AddTimings(one, &totals.steps);
    ++totals.iterations;
  }
  ReportCase(state, *layer, dtype, t, *c, totals, read_gbps);
  if (g_loaded.f32_reference != nullptr) state.counters["err_vs_f32"] = *err_vs_f32;
}

std::vector<int64_t> ParseInts(const std::string& list) {
  std::vector<int64_t> out;
  for (absl::string_view part : absl::StrSplit(list, ',', absl::SkipEmpty())) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(part, &v) || v < 1) {
      std::fprintf(stderr, "moe_bench: bad number '%s'\n", std::string(part).c_str());
      std::exit(2);
    }
    out.push_back(v);
  }
  return out;
}

DType ParseDtype(absl::string_view s) {
  auto parsed = ParseComputeDType(s);
  if (!parsed.ok()) {
    std::fprintf(stderr, "moe_bench: %s\n", std::string(parsed.status().message()).c_str());
    std::exit(2);
  }
  return *parsed;
}

std::vector<ModelCase> ParseModels(const std::string& list, const std::vector<DType>& dtypes) {
  std::vector<ModelCase> out;
  for (absl::string_view part : absl::StrSplit(list, ',', absl::SkipEmpty())) {
    ModelCase m;
    std::pair<std::string, std::string> name_cap = absl::StrSplit(part, absl::MaxSplits(':', 1));
    if (!name_cap.second.empty()) m.max_tokens = ParseInts(name_cap.second)[0];
    std::pair<std::string, std::string> name_dt =
        absl::StrSplit(name_cap.first, absl::MaxSplits('@', 1));
    m.name = name_dt.first;
    if (name_dt.second.empty()) {
      m.dtypes = dtypes;
    } else {
      for (absl::string_view d : absl::StrSplit(name_dt.second, '+')) {
        m.dtypes.push_back(ParseDtype(d));
      }
    }
    out.push_back(m);
  }
  return out;
}

}  // namespace
}  // namespace moe

int main(int argc, char** argv) {
  moe::KeepFreedMemoryInProcess();
  benchmark::Initialize(&argc, argv);
  absl::ParseCommandLine(argc, argv);
  moe::ApplyMaxIsaFlagOrExit(argv[0]);
  if (absl::GetFlag(FLAGS_print_cpu_tier)) {
    std::printf("%s\n", moe::CpuTierDescription().c_str());
    return 0;
  }
  using moe::DType;

  std::vector<DType> dtypes;
  for (absl::string_view d : absl::StrSplit(absl::GetFlag(FLAGS_dtypes), ',', absl::SkipEmpty())) {
    dtypes.push_back(moe::ParseDtype(d));
  }
  const std::vector<int64_t> tokens = moe::ParseInts(absl::GetFlag(FLAGS_tokens));
  for (const moe::ModelCase& m : moe::ParseModels(absl::GetFlag(FLAGS_models), dtypes)) {
    for (DType dtype : m.dtypes) {
      const std::string dt = moe::DTypeName(dtype);
      if (absl::GetFlag(FLAGS_repeat_token)) {
        benchmark::RegisterBenchmark(
            absl::StrCat("layer/", m.name, "/", dt, "/repeat/T:1").c_str(),
            [=](benchmark::State& s) { moe::RunCase(s, m.name, dtype, 1, true); })
            ->Unit(benchmark::kMillisecond)
            ->UseManualTime();
      }
      for (int64_t t : tokens) {
        if (m.max_tokens > 0 && t > m.max_tokens) continue;
        benchmark::RegisterBenchmark(
            absl::StrCat("layer/", m.name, "/", dt, "/random/T:", t).c_str(),
            [=](benchmark::State& s) { moe::RunCase(s, m.name, dtype, t, false); })
            ->Unit(benchmark::kMillisecond)
            ->UseManualTime();
      }
    }
  }
  const int threads = absl::GetFlag(FLAGS_threads);
  if (absl::GetFlag(FLAGS_probe_hardware)) {
    moe::g_bandwidth = std::make_unique<moe::ReadBandwidthProbe>(size_t{512} << 20, threads);
    moe::g_hw.read_gbps = moe::g_bandwidth->MeasureGBps(10);
    moe::g_hw.peak_f32_gflops = moe::MeasurePeakF32Gflops(threads, 5);
    moe::g_hw.peak_bf16_gflops = moe::MeasurePeakBf16Gflops(threads, 5);
    moe::g_hw.peak_int8_gops = moe::MeasurePeakInt8Gops(threads, 5);
  }
  benchmark::AddCustomContext("onednn", moe::DnnlDescription());
  benchmark::AddCustomContext("cpu_tier", moe::CpuTierDescription());
  benchmark::AddCustomContext("dram_read_GBps", absl::StrCat(moe::g_hw.read_gbps));
  benchmark::AddCustomContext("peak_f32_GFLOPs", absl::StrCat(moe::g_hw.peak_f32_gflops));
  benchmark::AddCustomContext("peak_bf16_GFLOPs", absl::StrCat(moe::g_hw.peak_bf16_gflops));
  benchmark::AddCustomContext("peak_int8_GOPs", absl::StrCat(moe::g_hw.peak_int8_gops));
  std::fprintf(stderr,
               "moe_bench: DRAM read %.1f GB/s, peak f32 %.0f GFLOP/s, bf16 %.0f GFLOP/s, "
               "int8 %.0f GOP/s\n",
               moe::g_hw.read_gbps, moe::g_hw.peak_f32_gflops, moe::g_hw.peak_bf16_gflops,
               moe::g_hw.peak_int8_gops);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
