// PackedMatmul: y[M, N] = post(x[M, K] · Wᵀ + b) with W ([N, K], the Hugging
// Face [out, in] layout) reordered once into the blocked layout oneDNN's
// brgemm kernel prefers. Int8 and int4 shapes (kI8, kI4) run on QuantizedMatmul
// (quantized_matmul.h) instead, and f32/bf16 ones on the panel kernels where
// MatmulCacheRegistry::UsesPanels says so.
//
// Batch invariance. oneDNN 2.6's matmul with a runtime row count picks its
// algorithm by M, so a row's result would depend on how many rows share the
// call. Primitives created for a fixed M, all on the same packed weights,
// give every row bitwise the same result whatever M is (measured for
// M = 1..4096, f32 and bf16, and checked by the tests). So each
// MatmulPrimitiveCache holds one primitive per exact row count 1..kMaxRows,
// created on first use (~0.3 ms) and shared by every matrix of the same
// shape class (all experts of a layer share three classes); larger calls
// are cut into chunks of kMaxRows rows.
//
// Small row counts. Up to StreamingMatmul::kMaxRows rows, Execute() runs
// the weight-streaming kernel of streaming_matmul.h, then applies the bias,
// the post-op (the activation through a oneDNN eltwise primitive, the same
// JIT code the matmul's post-op uses) and the dst conversion as the matmul
// does.
//
// bf16 rounding points. With a bf16 dst, oneDNN's post-ops act on the f32
// sum before its one rounding; PyTorch rounds the Linear's result first.
// So such matrices run without oneDNN post-ops and ApplyBf16PostOp
// (panel_matmul.h) applies the activation or product to the rounded
// result (see PostOpAfterRounding). The
// first PackedMatmul of a shape class finds oneDNN's K chunking on its
// weights and compares the whole result for 1..kMaxRows rows with the
// matmul primitives' on random inputs; only if every bit matches is the
// streaming path used for that class (impl() says which).
//
// Thread-safety: caches are thread-safe. PackedMatmul is immutable after
// Create(); Execute() may run concurrently as long as each caller passes
// its own scratchpad memory (primitives use scratchpad_mode::user).
#ifndef MOE_EXPERTS_PACKED_MATMUL_H_
#define MOE_EXPERTS_PACKED_MATMUL_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <oneapi/dnnl/dnnl.hpp>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/cpu_tier.h"
#include "common/dtype.h"
#include "common/tensor.h"
#include "experts/activation.h"
#include "experts/matmul_shape.h"
#include "experts/panel_matmul.h"
#include "experts/quantized_matmul.h"
#include "experts/streaming_matmul.h"

namespace moe {

class AlignedBuffer;
class PackedMatmul;

class MatmulPrimitiveCache {
 public:
  static constexpr int64_t kMaxRows = 512;

  static absl::StatusOr<std::shared_ptr<MatmulPrimitiveCache>> Create(const MatmulShape& shape);

  struct Entry {
    dnnl::matmul primitive;
    dnnl::memory::desc scratchpad_desc;
  };

  // The primitive for exactly `rows` rows (1..kMaxRows), created on first
  // use. The returned entry lives as long as the cache.
  absl::StatusOr<const Entry*> Get(int64_t rows);

  const MatmulShape& shape() const { return shape_; }
  // True for a bf16 dst with a post-op: oneDNN would apply the post-op to
  // the f32 sum and round once, where PyTorch rounds the Linear's result
  // first. So the primitives (and the streaming path) write the rounded
  // result without the post-op, and ApplyBf16PostOp (panel_matmul.h) runs
  // it after them.
  bool PostOpAfterRounding() const {
    return shape_.dst == DType::kBF16 && shape_.post != MatmulPostOp::kNone;
  }
  const dnnl::memory::desc& packed_weights_desc() const { return packed_; }
  // The oneDNN implementation, e.g. "brg:avx512_core_bf16", and whether
  // small row counts stream (" + streaming kernel for <= 12 rows (K chunk
  // 512)") or why not.
  std::string impl() const;

  // The streaming path of this shape class, checked bitwise against the
  // primitives (see above). The first call does the work, on `matrix`'s
  // weights; later calls return at once (unless that matrix could not
  // show oneDNN's K order, e.g. constant weights: then the next one tries). Failing oneDNN calls
  // are an error; a mismatch just leaves the path off.
  absl::Status PlanStreaming(const PackedMatmul& matrix);

  struct StreamPlan {
    explicit StreamPlan(const StreamingMatmul& k) : kernel(k) {}
    StreamingMatmul kernel;
    int64_t k_chunk = 0;
    // After the kernel, as the matmul does: + bias, then the activation
    // (a oneDNN eltwise primitive in place, rows - 1 -> primitive) or the
    // product with the multiplier, then the dst conversion.
    struct Activation {
      dnnl::eltwise_forward primitive;
      dnnl::memory::desc scratchpad_desc;
    };
    std::vector<Activation> activation;
  };
  // Null when the streaming path is off for this shape class.
  const StreamPlan* stream_plan() const;

 private:
  MatmulPrimitiveCache(const MatmulShape& shape, dnnl::memory::desc packed, std::string impl);
  dnnl::matmul::primitive_desc MakePd(int64_t rows, const dnnl::memory::desc& weights) const;

  // Builds the streaming plan and checks it; null (with `note` saying
  // why) when it does not reproduce the primitives bitwise.
  // `undecided`: the weights could not show oneDNN's K order; the next
  // matrix of the shape may try again.
  absl::StatusOr<std::unique_ptr<StreamPlan>> TryStreaming(const PackedMatmul& matrix,
                                                           std::string* note, bool* undecided);
  // TryStreaming's steps, each false (with `note`) when streaming is off.
  // Finds oneDNN's K chunk from one probe row `x` into plan->k_chunk.
  bool FindKChunk(const PackedMatmul& matrix, const std::vector<char>& x, StreamPlan* plan,
                  std::string* note, bool* undecided) const;
  // The eltwise primitives an activation post-op needs, one per row count.
  bool AddActivationPrimitives(StreamPlan* plan, std::string* note) const;
  // Whether `plan` gives the primitives' bytes for every row count.
  absl::StatusOr<bool> StreamingMatchesPrimitives(const PackedMatmul& matrix,
                                                  const StreamPlan& plan,
                                                  const std::vector<char>& x,
                                                  std::string* note) const;
  dnnl::post_ops PostOps(int64_t rows) const;

  const MatmulShape shape_;
  const dnnl::memory::desc packed_;
  const std::string impl_;
  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<Entry>> entries_ ABSL_GUARDED_BY(mu_);
  bool stream_planned_ ABSL_GUARDED_BY(mu_) = false;
  std::unique_ptr<StreamPlan> stream_ ABSL_GUARDED_BY(mu_);
  // stream_.get() once set (never reset while the cache lives), read
  // without the lock on every Execute().
  std::atomic<const StreamPlan*> stream_published_{nullptr};
  std::string stream_note_ ABSL_GUARDED_BY(mu_);
};

// Shares MatmulPrimitiveCaches between matrices of the same MatmulShape.
// Thread-safe.
class MatmulCacheRegistry {
 public:
  // Matrices created through this registry use the kernels of `tier`
  // (which must not exceed ActiveCpuTier(): oneDNN is capped there).
  // onednn_only: oneDNN's matmul for every matrix, whatever the tier
  // (benchmarks compare the two; it is not batch-invariant on avx2).
  explicit MatmulCacheRegistry(CpuTier tier = ActiveCpuTier(), bool onednn_only = false)
      : tier_(tier), onednn_only_(onednn_only) {}

  CpuTier tier() const { return tier_; }
  // True when matrices of `compute` run on the project's own panel kernels
  // (panel_matmul.h) at this tier: every dtype on avx2, bf16 on avx512
  // without AVX512_BF16. Otherwise they run on oneDNN's brgemm.
  bool UsesPanels(DType compute) const {
    if (onednn_only_) return false;
    return tier_ == CpuTier::kAvx2 || (tier_ == CpuTier::kAvx512 && compute == DType::kBF16);
  }

  absl::StatusOr<std::shared_ptr<MatmulPrimitiveCache>> Get(const MatmulShape& shape);

 private:
  const CpuTier tier_;
  const bool onednn_only_;
  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<MatmulPrimitiveCache>> caches_ ABSL_GUARDED_BY(mu_);
};

class PackedMatmul {
 public:
  // weight: [N, K]; bias: [N] or empty (as shape.bias says). `what` names
  // the matrix in error messages. Copies the data; `weight` may be freed
  // afterwards.
  static absl::StatusOr<std::unique_ptr<PackedMatmul>> Create(const Tensor& weight,
                                                              const Tensor& bias,
                                                              const MatmulShape& shape,
                                                              MatmulCacheRegistry* registry,
                                                              const std::string& what);

  // The matrix [top; bottom] (top [n_top, K], bottom [N - n_top, K]; bias
  // [N] or empty). Each part is reordered straight into its columns of the
  // packed layout when oneDNN can cut the layout there (n_top on a column
  // block boundary), else through one stacked copy; the packed bytes are
  // the same (packed_in_parts() says which way it went).
  static absl::StatusOr<std::unique_ptr<PackedMatmul>> CreateStacked(
      const Tensor& top, const Tensor& bottom, const Tensor& bias, const MatmulShape& shape,
      MatmulCacheRegistry* registry, const std::string& what);

  // Runs on `rows` rows (any count >= 1). src: [rows, K] of the compute
  // dtype (f32 for kI8 and kI4); dst: [rows, N] of the dst dtype;
  // multiplier: [rows, N] of the compute dtype (f32 for kI8 and kI4) for
  // kMultiply, else null; dst must not overlap src or
  // multiplier. `scratch` provides scratchpad memory; `stream` must belong
  // to CpuEngine().
  absl::Status Execute(const void* src, int64_t rows, void* dst, const void* multiplier,
                       class AlignedBuffer* scratch, dnnl::stream* stream) const;

  // The same through the matmul primitives only (never streaming), for
  // the streaming path's check and its tests. FAILED_PRECONDITION for a
  // matrix on the panel kernels (uses_panels()).
  absl::Status ExecutePrimitives(const void* src, int64_t rows, void* dst, const void* multiplier,
                                 class AlignedBuffer* scratch, dnnl::stream* stream) const;

  const MatmulShape& shape() const { return shape_; }
  // CreateStacked: true when the parts went straight into their columns
  // (always, on the panel kernels).
  bool packed_in_parts() const { return packed_in_parts_; }
  // The kernel that runs, e.g. "brg:avx512_core_bf16 + streaming kernel
  // for <= 12 rows (K chunk 512)" or "own:avx2 panels (...)".
  std::string impl() const {
    return panels_ != nullptr      ? panels_->impl()
           : quantized_ != nullptr ? quantized_->impl()
                                   : cache_->impl();
  }
  // Bytes of packed weights (and scales) held.
  size_t weight_bytes() const;
  // True when the project's own panel kernels run this matrix (f32/bf16).
  bool uses_panels() const { return panels_ != nullptr; }

 private:
  // Create (bottom null) and CreateStacked.
  static absl::StatusOr<std::unique_ptr<PackedMatmul>> CreateFromParts(
      const Tensor& top, const Tensor* bottom, const Tensor& bias, const MatmulShape& shape,
      MatmulCacheRegistry* registry, const std::string& what);

  PackedMatmul(std::shared_ptr<MatmulPrimitiveCache> cache, dnnl::memory weights, dnnl::memory bias)
      : shape_(cache->shape()),
        cache_(std::move(cache)),
        weights_(std::move(weights)),
        bias_(std::move(bias)) {}
  explicit PackedMatmul(std::unique_ptr<PanelMatmul> panels)
      : shape_(panels->shape()), panels_(std::move(panels)), packed_in_parts_(true) {}
  explicit PackedMatmul(std::unique_ptr<QuantizedMatmul> int8)
      : shape_(int8->shape()), quantized_(std::move(int8)), packed_in_parts_(true) {}

  friend class MatmulPrimitiveCache;
  absl::Status ExecuteStreaming(const MatmulPrimitiveCache::StreamPlan& plan, const void* src,
                                int64_t rows, void* dst, const void* multiplier,
                                AlignedBuffer* scratch, dnnl::stream* stream) const;

  MatmulShape shape_;
  std::unique_ptr<PanelMatmul> panels_;          // set: the panel kernels run it
  std::unique_ptr<QuantizedMatmul> quantized_;   // set: kI8 or kI4, on the quantized kernels
  std::shared_ptr<MatmulPrimitiveCache> cache_;  // set: oneDNN runs it
  dnnl::memory weights_;
  dnnl::memory bias_;
  bool packed_in_parts_ = false;
};

}  // namespace moe

#endif  // MOE_EXPERTS_PACKED_MATMUL_H_
