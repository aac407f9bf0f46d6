// Hardware limits measured in-process, for the benchmark's roofline: DRAM
// read bandwidth and the peak multiply-add rate of the vector units.
//
// Both spread the work over `threads` std::threads (one per core is what
// the layer uses). Not for use while anything else in the process runs.
#ifndef MOE_BENCH_HARDWARE_LIMITS_H_
#define MOE_BENCH_HARDWARE_LIMITS_H_

#include <cstddef>

namespace moe {

// DRAM read bandwidth: reads a buffer much larger than the last-level
// cache with `threads` threads. The buffer is allocated and faulted in once
// (page faults are slow on these VMs), so measuring again is cheap.
class ReadBandwidthProbe {
 public:
  ReadBandwidthProbe(size_t bytes, int threads);
  ~ReadBandwidthProbe();
  ReadBandwidthProbe(const ReadBandwidthProbe&) = delete;
  ReadBandwidthProbe& operator=(const ReadBandwidthProbe&) = delete;

  // The best of `passes` passes, in GB/s (1e9 bytes per second).
  double MeasureGBps(int passes);

 private:
  float* data_ = nullptr;
  size_t chunk_ = 0;  // floats per thread
  int threads_ = 1;
};

// Peak f32 FMA rate in GFLOP/s (2 FLOP per lane per FMA), AVX-512 when the
// CPU has it, else AVX2+FMA. Best of `passes`.
double MeasurePeakF32Gflops(int threads, int passes);

// Peak bf16 dot-product rate in GFLOP/s (vdpbf16ps: 2 multiply-adds per
// f32 lane), or 0 when the CPU has no avx512_bf16.
// Below avx512_bf16 (bf16 weights widened to f32): the f32 FMA peak.
double MeasurePeakBf16Gflops(int threads, int passes);

// Peak int8 dot-product rate in GOP/s (2 ops per multiply-add), with the
// instructions the int8 kernels accumulate with at the active tier:
// vpdpbusd on 16 int32 lanes (avx512_bf16 tier and above, which include
// VNNI), else AVX2's vpmaddubsw + vpmaddwd + vpaddd (32 multiply-adds per
// three instructions; the int8 kernel's sign handling is not counted, and
// its int4 kernel needs one vpmaddwd per 8 vpmaddubsw).
double MeasurePeakInt8Gops(int threads, int passes);

}  // namespace moe

#endif  // MOE_BENCH_HARDWARE_LIMITS_H_
