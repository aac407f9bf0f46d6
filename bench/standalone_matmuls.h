// StandaloneMatmuls: the kernel limit of an MoE layer. For a set of FFN
// blocks (the routed experts, plus a shared expert when the layer has one)
// it holds each block's matrices as separate oneDNN matmuls on their own
// prepacked weights, and times running exactly the matmuls a batch needs:
// for every block with m > 0 rows, W1 and (gated) W3 on [m, d_model] with
// a compute-dtype result, and W2 on [m, d_ff] with an f32 result, one
// oneDNN call each, as standalone calls. Nothing else: no routing, gather,
// activation, combine or bookkeeping.
//
// This code talks to oneDNN directly and shares nothing with experts/, so
// it measures what the library gives, not what our wrapper does.
//
// Not thread-safe. Weights are filled with small pseudo-random values (the
// time does not depend on them).
#ifndef MOE_BENCH_STANDALONE_MATMULS_H_
#define MOE_BENCH_STANDALONE_MATMULS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <oneapi/dnnl/dnnl.hpp>
#include <vector>

#include "absl/status/statusor.h"
#include "common/dtype.h"

namespace moe {

struct BlockShape {
  int64_t d_model = 0;
  int64_t d_ff = 0;
  bool gated = true;
};

class StandaloneMatmuls {
 public:
  // One block per entry of `blocks`; compute is f32 or bf16.
  static absl::StatusOr<std::unique_ptr<StandaloneMatmuls>> Create(
      const std::vector<BlockShape>& blocks, DType compute);

  // Runs the matmuls for rows[b] rows of block b (0 = skipped) and returns
  // the wall time in seconds. Primitives for new row counts are created
  // (untimed) first.
  absl::StatusOr<double> Run(const std::vector<int64_t>& rows);

  // The threading alternative: the blocks are split over `lanes` OpenMP
  // threads (greedy by row count, largest first) and each thread runs its
  // blocks' matmuls one after another on primitives created for a single
  // thread. Returns the wall time in seconds; the first call for new row
  // counts creates primitives and should be discarded.
  absl::StatusOr<double> RunBlocksInParallel(const std::vector<int64_t>& rows, int lanes);

  // WeightBytes() counts weights of `dtype` (the layer's), not of the
  // matmuls' compute dtype: for a bf16 layer timed against f32 primitives
  // where oneDNN has no bf16 (the avx2 tier).
  void CountWeightBytesAs(DType dtype) { bytes_dtype_ = dtype; }

  // Bytes of weights a call with these rows reads.
  int64_t WeightBytes(const std::vector<int64_t>& rows) const;
  // Multiply-add FLOPs (2 per MAC) of a call with these rows.
  double Flops(const std::vector<int64_t>& rows) const;

 private:
  struct Matrix {
    int64_t k = 0, n = 0;
    bool f32_dst = false;
    dnnl::memory::desc packed_desc;
    dnnl::memory weights;
    std::map<int64_t, dnnl::matmul> by_rows;
    // Single-thread primitives, one map per lane (each lane touches only
    // its own), for RunBlocksInParallel.
    std::vector<std::map<int64_t, dnnl::matmul>> lane_by_rows;
  };
  struct Block {
    std::vector<Matrix> matrices;  // W1, [W3], W2
  };

  StandaloneMatmuls(DType compute);
  absl::Status AddMatrix(Block* block, int64_t k, int64_t n, bool f32_dst);
  absl::StatusOr<dnnl::matmul*> Primitive(Matrix* m, int64_t rows);
  // Activation layouts and the primitive for `rows` rows of `m` (planned
  // for the calling thread's OpenMP setting). Plan() throws dnnl::error.
  dnnl::memory::desc SrcDesc(const Matrix& m, int64_t rows) const;
  dnnl::memory::desc DstDesc(const Matrix& m, int64_t rows) const;
  dnnl::matmul Plan(const Matrix& m, int64_t rows) const;

  DType compute_;
  DType bytes_dtype_;
  dnnl::engine engine_;
  dnnl::stream stream_;
  std::vector<Block> blocks_;
  std::vector<char> src_, dst_;  // shared activations, sized to the largest call
  struct Lane {
    std::unique_ptr<dnnl::stream> stream;
    std::vector<char> src, dst;
  };
  std::vector<Lane> lanes_;
};

}  // namespace moe

#endif  // MOE_BENCH_STANDALONE_MATMULS_H_
