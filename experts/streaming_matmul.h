// StreamingMatmul: acc[m, N] = x[m, K] · W for a handful of rows, read
// straight from the blocked layout oneDNN packed W into. Each weight block
// is read once, in memory order, on every OpenMP thread (GCC builds), and
// all m rows' accumulators stay in registers.
//
// Bitwise contract. A row's result must not depend on which kernel ran it
// (batch invariance), so the kernel sums the same products in the same
// order as oneDNN 2.6's brgemm kernels: for each output, sequentially over
// K (f32: one FMA per k; bf16: one vdpbf16ps per pair of k) within chunks
// of `k_chunk` elements starting from zero, the chunks' sums added left to
// right. oneDNN's chunk size is internal (512 for K = 1024, 1024 for K =
// 2816 and 4096), so MatmulPrimitiveCache finds it by probing and checks
// the whole result, post-ops included, against the primitives before using
// this kernel (packed_matmul.cc).
//
// Layouts read: 2-D weights [K, N] packed as BA16a64b (f32) or BA16a64b2a
// (bf16), i.e. 64-column blocks of 16 (f32) or 16 pairs (bf16) of K rows,
// the K blocks of a column block one after another. Anything else:
// ForLayout() returns nullopt.
//
// Thread-safety: immutable; Run() may be called concurrently.
#ifndef MOE_EXPERTS_STREAMING_MATMUL_H_
#define MOE_EXPERTS_STREAMING_MATMUL_H_

#include <cstdint>
#include <oneapi/dnnl/dnnl.hpp>
#include <optional>

#include "common/dtype.h"

namespace moe {

class StreamingMatmul {
 public:
  // Most rows one call computes. Up to 6 rows keep their 24 vectors of sums
  // in the 32 AVX-512 registers, next to the 4 weight vectors and the
  // broadcast input, for a whole K chunk. 7-12 rows are split into two
  // groups that take turns on each 4 KB K block, the second re-reading it
  // from L1, their sums parked in L1 between turns.
  static constexpr int64_t kMaxRows = 12;

  // The kernel for weights packed as `packed` (a [k, n] matrix of the
  // compute dtype), or nullopt if the layout is not one it reads or the
  // active CPU tier is below avx512 (avx512_bf16 for bf16).
  static std::optional<StreamingMatmul> ForLayout(const dnnl::memory::desc& packed, DType compute,
                                                  int64_t k, int64_t n);

  // Applied to each column block's finished sums by the thread that
  // computed them, in this order: + bias[n]; × multiplier (a [rows, n]
  // matrix of the compute dtype, row stride n); then the rows are written
  // to acc, or, with bf16_out set (bf16 kernels only), rounded as
  // RoundToBf16AsOneDnn does into bf16_out (row stride n) and acc is left
  // untouched. Null members are skipped.
  struct Epilogue {
    const float* bias = nullptr;
    const void* multiplier = nullptr;
    uint16_t* bf16_out = nullptr;
  };

  // acc[rows, n] (f32, row stride n) = x[rows, k] (compute dtype, row
  // stride k) · W, then the epilogue, over the column blocks
  // [block_begin, block_end) of 64 (the last may be partial; Run() computes
  // all of them). `x_pad` is scratch of XPadBytes(rows). rows in
  // 1..kMaxRows; k_chunk a positive multiple of k_block().
  void RunBlocks(const void* weights, const void* x, int64_t rows, int64_t k_chunk,
                 int64_t block_begin, int64_t block_end, const Epilogue& epilogue, void* x_pad,
                 float* acc) const;
  void Run(const void* weights, const void* x, int64_t rows, int64_t k_chunk,
           const Epilogue& epilogue, void* x_pad, float* acc) const {
    RunBlocks(weights, x, rows, k_chunk, 0, num_blocks(), epilogue, x_pad, acc);
  }

  // dst[i] = src[i] rounded to bf16 the way oneDNN's kernels store a bf16
  // result on this CPU (vcvtneps2bf16, which flushes subnormal inputs to
  // zero where FloatToBf16 in common/dtype.h keeps them). Only for a bf16
  // kernel.
  void RoundToBf16AsOneDnn(const float* src, int64_t n, uint16_t* dst) const;

  size_t XPadBytes(int64_t rows) const;
  int64_t k_block() const { return k_block_; }  // K rows per packed block
  int64_t k_padded() const { return k_padded_; }
  int64_t num_blocks() const { return (n_ + kNBlock - 1) / kNBlock; }
  DType compute() const { return compute_; }

 private:
  static constexpr int64_t kNBlock = 64;
  StreamingMatmul() = default;

  DType compute_ = DType::kF32;
  int64_t k_ = 0, n_ = 0;
  int64_t k_block_ = 0;        // 16 (f32) or 32 (bf16: 16 pairs)
  int64_t k_padded_ = 0;       // K rounded up to k_block_
  int64_t kblock_stride_ = 0;  // elements between consecutive K blocks
  int64_t nblock_stride_ = 0;  // elements between consecutive column blocks
};

}  // namespace moe

#endif  // MOE_EXPERTS_STREAMING_MATMUL_H_
