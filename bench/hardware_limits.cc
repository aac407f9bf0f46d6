#include "bench/hardware_limits.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <new>
#include <thread>
#include <vector>

#include "common/cpu_tier.h"
#include "common/x86_intrinsics.h"

namespace moe {
namespace {

using Clock = std::chrono::steady_clock;

// Runs body(thread_index) on `threads` threads that start together and
// returns the wall time of the slowest, in seconds.
double TimeOnThreads(int threads, const std::function<void(int)>& body) {
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> pool;
  pool.reserve(static_cast<size_t>(threads));
  Clock::time_point start;
  for (int i = 0; i < threads; ++i) {
    pool.emplace_back([&, i] {
      ready.fetch_add(1);
      while (!go.load(std::memory_order_acquire)) {
      }
      body(i);
    });
  }
  while (ready.load() < threads) {
  }
  start = Clock::now();
  go.store(true, std::memory_order_release);
  for (auto& t : pool) t.join();
  return std::chrono::duration<double>(Clock::now() - start).count();
}

__attribute__((target("avx512f"))) float SumAvx512(const float* p, size_t n) {
  __m512 a0 = _mm512_set1_ps(0.0f), a1 = _mm512_set1_ps(0.0f);
  __m512 a2 = _mm512_set1_ps(0.0f), a3 = _mm512_set1_ps(0.0f);
  for (size_t i = 0; i + 64 <= n; i += 64) {
    a0 = _mm512_add_ps(a0, _mm512_load_ps(p + i));
    a1 = _mm512_add_ps(a1, _mm512_load_ps(p + i + 16));
    a2 = _mm512_add_ps(a2, _mm512_load_ps(p + i + 32));
    a3 = _mm512_add_ps(a3, _mm512_load_ps(p + i + 48));
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

__attribute__((target("avx2"))) float SumAvx2(const float* p, size_t n) {
  __m256 a0 = _mm256_set1_ps(0.0f), a1 = _mm256_set1_ps(0.0f);
  __m256 a2 = _mm256_set1_ps(0.0f), a3 = _mm256_set1_ps(0.0f);
  for (size_t i = 0; i + 32 <= n; i += 32) {
    a0 = _mm256_add_ps(a0, _mm256_load_ps(p + i));
    a1 = _mm256_add_ps(a1, _mm256_load_ps(p + i + 8));
    a2 = _mm256_add_ps(a2, _mm256_load_ps(p + i + 16));
    a3 = _mm256_add_ps(a3, _mm256_load_ps(p + i + 24));
  }
  float out[8];
  _mm256_storeu_ps(out, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
  float s = 0;
  for (float v : out) s += v;
  return s;
}

// The probes measure what the active CPU tier multiplies and loads with.
bool HasAvx512() { return ActiveCpuTier() >= CpuTier::kAvx512; }

// 12 independent FMA chains per thread keep both FMA pipes busy through
// their latency; `iters` rounds of 12 FMAs on 16 lanes.
__attribute__((target("avx512f"))) float FmaLoopAvx512(int64_t iters) {
  __m512 acc[12];
  for (int j = 0; j < 12; ++j) acc[j] = _mm512_set1_ps(0.001f * static_cast<float>(j));
  const __m512 a = _mm512_set1_ps(0.9999f), b = _mm512_set1_ps(1e-6f);
  for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 12
    for (auto& j : acc) j = _mm512_fmadd_ps(j, a, b);
  }
  __m512 s = acc[0];
  for (int j = 1; j < 12; ++j) s = _mm512_add_ps(s, acc[j]);
  return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) float FmaLoopAvx2(int64_t iters) {
  __m256 acc[12];
  for (int j = 0; j < 12; ++j) acc[j] = _mm256_set1_ps(0.001f * static_cast<float>(j));
  const __m256 a = _mm256_set1_ps(0.9999f), b = _mm256_set1_ps(1e-6f);
  for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 12
    for (auto& j : acc) j = _mm256_fmadd_ps(j, a, b);
  }
  __m256 s = acc[0];
  for (int j = 1; j < 12; ++j) s = _mm256_add_ps(s, acc[j]);
  float out[8];
  _mm256_storeu_ps(out, s);
  return out[0];
}

__attribute__((target("avx512f,avx512bf16"))) float DpbfLoop(int64_t iters) {
  __m512 acc[12];
  for (int j = 0; j < 12; ++j) acc[j] = _mm512_set1_ps(0.001f * static_cast<float>(j));
  const __m512bh a = (__m512bh)_mm512_set1_epi16(0x3f80);  // bf16 1.0
  const __m512bh b = (__m512bh)_mm512_set1_epi16(0x3380);  // bf16 ~6e-8
  for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 12
    for (auto& j : acc) j = _mm512_dpbf16_ps(j, a, b);
  }
  __m512 s = acc[0];
  for (int j = 1; j < 12; ++j) s = _mm512_add_ps(s, acc[j]);
  return _mm512_reduce_add_ps(s);
}

// 12 independent chains of vpdpbusd: 64 u8 × s8 multiply-adds each.
__attribute__((target("avx512f,avx512vnni"))) float DpbusdLoop(int64_t iters) {
  __m512i acc[12];
  for (int j = 0; j < 12; ++j) acc[j] = _mm512_set1_epi32(j);
  const __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(-2);
  for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 12
    for (auto& j : acc) j = _mm512_dpbusd_epi32(j, a, b);
  }
  __m512i s = acc[0];
  for (int j = 1; j < 12; ++j) s = _mm512_add_epi32(s, acc[j]);
  return static_cast<float>(_mm512_reduce_add_epi32(s));
}

// 6 independent chains of AVX2's int8 accumulation: vpmaddubsw (32 u8 ×
// s8 products in 16 pair sums), vpmaddwd with ones, vpaddd. Each chain has
// its own operand and the shared one changes every round (an empty asm the
// compiler cannot see through), so no product is computed once for all.
__attribute__((target("avx2"))) float MaddubsLoop(int64_t iters) {
  constexpr int kChains = 6;
  __m256i acc[kChains], b[kChains];
  for (int j = 0; j < kChains; ++j) {
    acc[j] = _mm256_set1_epi32(j);
    b[j] = _mm256_set1_epi8(static_cast<char>(j - 3));
  }
  __m256i a = _mm256_set1_epi8(3);
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t i = 0; i < iters; ++i) {
    __asm__ volatile("" : "+x"(a));
#pragma GCC unroll 6
    for (int j = 0; j < kChains; ++j) {
      acc[j] = _mm256_add_epi32(acc[j], _mm256_madd_epi16(_mm256_maddubs_epi16(a, b[j]), ones));
    }
  }
  __m256i s = acc[0];
  for (int j = 1; j < kChains; ++j) s = _mm256_add_epi32(s, acc[j]);
  int32_t out[8];
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), s);
  return static_cast<float>(out[0]);
}

double BestRate(int threads, int passes, double work_per_thread,
                const std::function<float()>& loop) {
  std::vector<float> sink(static_cast<size_t>(threads));
  double best = 0;
  for (int p = 0; p < passes; ++p) {
    const double s = TimeOnThreads(threads, [&](int i) { sink[static_cast<size_t>(i)] = loop(); });
    best = std::max(best, work_per_thread * threads / s / 1e9);
  }
  volatile float keep = sink[0];
  (void)keep;
  return best;
}

}  // namespace

ReadBandwidthProbe::ReadBandwidthProbe(size_t bytes, int threads) : threads_(threads) {
  const size_t n = bytes / sizeof(float) / 64 * 64;
  data_ = static_cast<float*>(std::aligned_alloc(64, n * sizeof(float)));
  if (data_ == nullptr) throw std::bad_alloc();
  chunk_ = (n / static_cast<size_t>(threads)) / 64 * 64;
  // Fault the pages in on the threads that will read them.
  TimeOnThreads(threads, [&](int i) {
    std::memset(data_ + chunk_ * static_cast<size_t>(i), 0, chunk_ * sizeof(float));
  });
}

ReadBandwidthProbe::~ReadBandwidthProbe() { std::free(data_); }

double ReadBandwidthProbe::MeasureGBps(int passes) {
  const bool avx512 = HasAvx512();
  std::vector<float> sink(static_cast<size_t>(threads_));
  double best = 0;
  for (int p = 0; p < passes; ++p) {
    const double s = TimeOnThreads(threads_, [&](int i) {
      const float* start = data_ + chunk_ * static_cast<size_t>(i);
      sink[static_cast<size_t>(i)] = avx512 ? SumAvx512(start, chunk_) : SumAvx2(start, chunk_);
    });
    best = std::max(best, static_cast<double>(chunk_ * sizeof(float)) * threads_ / s / 1e9);
  }
  volatile float keep = sink[0];
  (void)keep;
  return best;
}

double MeasurePeakF32Gflops(int threads, int passes) {
  constexpr int64_t kIters = 20'000'000;
  if (HasAvx512()) {
    return BestRate(threads, passes, kIters * 12.0 * 16 * 2, [] { return FmaLoopAvx512(kIters); });
  }
  return BestRate(threads, passes, kIters * 12.0 * 8 * 2, [] { return FmaLoopAvx2(kIters); });
}

double MeasurePeakBf16Gflops(int threads, int passes) {
  // Below avx512_bf16, bf16 weights are widened and multiplied with the
  // f32 FMA: that is the peak bf16 runs at.
  if (ActiveCpuTier() < CpuTier::kAvx512Bf16) return MeasurePeakF32Gflops(threads, passes);
  constexpr int64_t kIters = 20'000'000;
  // Each vdpbf16ps does 2 multiply-adds per f32 lane: 16 lanes x 2 x 2 FLOP.
  return BestRate(threads, passes, kIters * 12.0 * 16 * 4, [] { return DpbfLoop(kIters); });
}

double MeasurePeakInt8Gops(int threads, int passes) {
  constexpr int64_t kIters = 20'000'000;
  if (ActiveCpuTier() >= CpuTier::kAvx512Bf16) {
    return BestRate(threads, passes, kIters * 12.0 * 64 * 2, [] { return DpbusdLoop(kIters); });
  }
  return BestRate(threads, passes, kIters * 6.0 * 32 * 2, [] { return MaddubsLoop(kIters); });
}

}  // namespace moe
