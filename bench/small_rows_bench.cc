// Small row counts, one matrix at a time: PackedMatmul::Execute (what the
// layer runs at the active CPU tier: the streaming kernel where it is
// planned, the panel kernels, or for int8 and int4 QuantizedMatmul)
// against oneDNN's matmul primitives (f32 and bf16; on
// the same packed weights where oneDNN packed them, else on oneDNN's own
// packing of the same values), rows 1..16.
// Each iteration uses the next of a set of matrices (demo's W1 shape,
// 1024 × 2816, with the swish post-op, or W2, 2816 × 1024; as many as make
// at least 256 MB, at most 32), so the weights come cold from DRAM as they
// do in the layer. GB/s counts the
// weight bytes read per second. MOE_SMALL_ROWS_DIMS=DxF takes d_model D and
// d_ff F instead (e.g. 4096x14336, mixtral's).
//
//   build/bench/small_rows_bench --benchmark_repetitions=5
//       --benchmark_report_aggregates_only=true    (one line)
//   build/bench/small_rows_bench --benchmark_filter='dtype:1/w1'      (bf16 W1; dtype
//       0 f32, 1 bf16, 2 int8, 3 int4: these two on QuantizedMatmul only)
//   MOE_SMALL_ROWS_DIMS=4096x14336 build/bench/small_rows_bench
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/flags/parse.h"
#include "benchmark/benchmark.h"
#include "common/max_isa_flag.h"
#include "common/memory_tuning.h"
#include "common/seeded_random.h"
#include "experts/aligned_buffer.h"
#include "experts/dnnl_engine.h"
#include "experts/packed_matmul.h"

namespace moe {
namespace {

constexpr int kMaxMatrices = 32;

// d_model and d_ff: demo's, or MOE_SMALL_ROWS_DIMS ("DxF").
std::pair<int64_t, int64_t> Dims() {
  const char* env = std::getenv("MOE_SMALL_ROWS_DIMS");
  long long d = 1024, f = 2816;
  if (env != nullptr && (std::sscanf(env, "%lldx%lld", &d, &f) != 2 || d < 1 || f < 1)) {
    std::fprintf(stderr, "MOE_SMALL_ROWS_DIMS=%s: expected DxF, e.g. 4096x14336\n", env);
    std::exit(2);
  }
  return {d, f};
}

constexpr int64_t kRowsMax = 16;

struct Set {
  explicit Set(bool onednn) : registry(ActiveCpuTier(), onednn) {}
  MatmulCacheRegistry registry;
  std::vector<std::unique_ptr<PackedMatmul>> matrices;
  Tensor x;  // [kMaxRows, k] inputs
  int64_t k = 0, n = 0;
  DType compute = DType::kF32;
  DType dst = DType::kF32;
};

// W1 (1024 -> 2816, swish post-op) or W2 (2816 -> 1024, f32 out), built
// once per dtype and kept for the run; `onednn`: packed for oneDNN's
// matmul whatever the tier. Null (and *error set) if it cannot be built.
Set* GetSet(DType compute, bool w1, bool onednn, std::string* error) {
  static std::map<std::tuple<DType, bool, bool>, std::unique_ptr<Set>> sets;
  auto& set = sets[{compute, w1, onednn}];
  if (set != nullptr) return set.get();
  set = std::make_unique<Set>(onednn);
  const auto [d_model, d_ff] = Dims();
  set->k = w1 ? d_model : d_ff;
  set->n = w1 ? d_ff : d_model;
  set->compute = compute;
  MatmulShape shape;
  shape.k = set->k;
  shape.n = set->n;
  shape.compute = compute;
  const bool quantized = compute == DType::kI8 || compute == DType::kI4;
  // int8 and int4 quantize bf16 weights at load; their inputs and outputs are f32.
  const DType storage = quantized ? DType::kBF16 : compute;
  const DType io = quantized ? DType::kF32 : compute;
  shape.dst = w1 ? io : DType::kF32;
  shape.post = w1 ? MatmulPostOp::kActivation : MatmulPostOp::kNone;
  shape.activation = Activation::kSilu;
  set->dst = shape.dst;
  SeededRandom rng(7);
  const double matrix_bytes =
      static_cast<double>(set->k * set->n) * (compute == DType::kI4 ? 0.5625 : DTypeSize(storage));
  const int count = static_cast<int>(
      std::clamp(std::ceil(256e6 / matrix_bytes), 2.0, static_cast<double>(kMaxMatrices)));
  for (int i = 0; i < count; ++i) {
    Tensor w =
        Tensor::FromFloats(storage, {set->n, set->k}, rng.UniformVector(set->n * set->k, 0.05f));
    auto mm = PackedMatmul::Create(w, Tensor(), shape, &set->registry, "w");
    if (!mm.ok()) {
      *error = std::string(mm.status().message());
      set.reset();
      return nullptr;
    }
    set->matrices.push_back(*std::move(mm));
  }
  set->x = Tensor::FromFloats(io, {kRowsMax, set->k}, rng.UniformVector(kRowsMax * set->k, 1.0f));
  return set.get();
}

constexpr DType kDTypes[] = {DType::kF32, DType::kBF16, DType::kI8, DType::kI4};

// state.range(0): rows; (1): the dtype, an index into kDTypes; (2): 1 =
// W1; (3): 1 = what the layer runs, 0 = oneDNN's matmul primitives (f32
// and bf16 only).
void BM_SmallRows(benchmark::State& state) {
  const int64_t rows = state.range(0);
  const DType compute = kDTypes[state.range(1)];
  const bool streaming = state.range(3) != 0;
  std::string error;
  Set* set = GetSet(compute, state.range(2) != 0, !streaming, &error);
  if (set == nullptr) {
    state.SkipWithError(error.c_str());
    return;
  }
  state.SetLabel(set->matrices[0]->impl());
  std::vector<char> out(static_cast<size_t>(rows * set->n) * DTypeSize(set->dst));
  AlignedBuffer scratch;
  dnnl::stream stream(CpuEngine());
  int i = 0;
  for (auto _ : state) {
    const PackedMatmul& mm = *set->matrices[static_cast<size_t>(i)];
    i = (i + 1) % static_cast<int>(set->matrices.size());
    absl::Status st =
        streaming
            ? mm.Execute(set->x.data(), rows, out.data(), nullptr, &scratch, &stream)
            : mm.ExecutePrimitives(set->x.data(), rows, out.data(), nullptr, &scratch, &stream);
    if (!st.ok()) {
      state.SkipWithError(std::string(st.message()).c_str());
      return;
    }
    benchmark::DoNotOptimize(out.data());
  }
  // The bytes the kernel reads: int8 and int4 with their scales.
  const double bytes = static_cast<double>(set->matrices[0]->weight_bytes());
  state.counters["GB/s"] = benchmark::Counter(
      bytes * 1e-9 * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

void Args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"rows", "dtype", "w1", "streaming"});
  for (int dtype : {1, 0, 2, 3}) {  // bf16, f32, int8, int4
    for (int w1 : {1, 0}) {
      for (int64_t rows = 1; rows <= kRowsMax; ++rows) {
        for (int streaming : {1, 0}) {
          if (dtype < 2 || streaming == 1) b->Args({rows, dtype, w1, streaming});
        }
      }
    }
  }
  b->Unit(benchmark::kMicrosecond);
}
BENCHMARK(BM_SmallRows)->Apply(Args);

}  // namespace
}  // namespace moe

int main(int argc, char** argv) {
  moe::KeepFreedMemoryInProcess();
  benchmark::Initialize(&argc, argv);
  absl::ParseCommandLine(argc, argv);  // --max_isa; benchmark's flags are gone
  moe::ApplyMaxIsaFlagOrExit(argv[0]);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
