// MoeLayer: one mixture-of-experts FFN layer (or a dense FFN), end to end:
//
//   plan   = Router(x)                      top-k experts and weights
//   out_e  = Backend: FFN_e(rows of e)      gathered per expert
//   y[t]   = Σ_e w[t,e] · out_e[t]          in ascending expert id order
//          + s[t] · Shared(x[t])            s = sigmoid(x · w_gate) or 1
//
// Batch invariance: every step computes a token from that token alone with
// a fixed operation order (see router.h and packed_matmul.h), so a token's
// output is bitwise the same whatever else is in the batch and wherever it
// sits — except under a router capacity limit, which by definition drops
// tokens by their position in the batch.
//
// Thread-safety: Forward() may be called from any thread; calls are
// serialised on an internal mutex (each already uses every core).
#ifndef MOE_MODEL_MOE_LAYER_H_
#define MOE_MODEL_MOE_LAYER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/dtype.h"
#include "experts/aligned_buffer.h"
#include "experts/expert_backend.h"
#include "model/layer_spec.h"
#include "router/router.h"

namespace moe {

// From experts/ (whose headers include oneDNN; this one does not).
class DenseFfn;
struct FfnWorkspace;
class MatmulCacheRegistry;

struct MoeLayerOptions {
  // Matmul dtype. kBF16 uses bf16 operands with f32 accumulation and falls
  // back to kF32 (with a log line) where the CPU has no native bf16.
  DType compute = DType::kF32;
};

// Wall-clock split of one Forward() call, in seconds (steady clock).
struct ForwardTimings {
  double route_s = 0;    // router: gate logits, scores, top-k, expert rows
  double gather_s = 0;   // copying each routed expert's rows into one block
  double experts_s = 0;  // the backend running the routed experts
  double shared_s = 0;   // shared expert(s), when the layer has them
  double combine_s = 0;  // routing-weighted sum into the output
};

// Where Forward() writes. `output` is required; the others are optional.
struct ForwardOutputs {
  float* output = nullptr;               // [T, d_model]
  int32_t* expert_ids = nullptr;         // [T, k]: kDroppedExpert (-1) if dropped
  float* expert_weights = nullptr;       // [T, k]
  int64_t* tokens_per_expert = nullptr;  // [E], incremented
  ForwardTimings* timings = nullptr;     // overwritten when set
};

// Per-token choices of one Forward() call, each optional (null: none).
struct TokenChoices {
  // Tokens whose experts and weights the caller chose (validated with
  // ValidateGivenRouting); the others are routed by the gate.
  GivenRouting routing;
  // [T]: non-zero leaves the shared experts out of that token's output (a
  // caller that runs them itself). No effect on layers without them.
  const uint8_t* skip_shared = nullptr;
};

class MoeLayer {
 public:
  // Builds the router, packs every expert. With `backend` null the routed
  // experts run in process (LocalExpertBackend); otherwise `backend` runs
  // them and the layer keeps only the router and the shared experts.
  static absl::StatusOr<std::unique_ptr<MoeLayer>> Create(
      const LayerWeights& weights, const MoeLayerOptions& options,
      std::unique_ptr<ExpertBackend> backend = nullptr);
  ~MoeLayer();

  // Computes `num_tokens` (>= 0) rows of `tokens` [T, d_model]. A token's
  // output depends only on its own row and choices (except under a router
  // capacity limit, see above); given the experts and weights the router
  // picked for it, it is bitwise the router's answer.
  absl::Status Forward(const float* tokens, int64_t num_tokens, const ForwardOutputs& out,
                       const TokenChoices& choices = {});

  const LayerSpec& spec() const { return spec_; }
  DType compute() const { return compute_; }
  int64_t d_model() const { return spec_.d_model; }
  const ExpertBackend& backend() const { return *backend_; }
  // Bytes of packed FFN weights (and scales) this process holds for the
  // layer: its in-process experts, shared experts or dense MLP.
  size_t weight_bytes() const;

  // Model summary plus dtype and kernel, for the start-up log line.
  std::string Summary() const;

 private:
  MoeLayer(LayerSpec spec, DType compute);

  // The steps of Forward, after routing into plan_.
  // Gathers each expert's rows into one block, experts in ascending order,
  // fills jobs_ and notes for every token where its routed rows land
  // (token-major, ascending expert order: the combine's summation order).
  // Returns the block the experts write their outputs to.
  const float* GatherExpertRows(const float* tokens, int64_t num_tokens)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The shared experts' output for every token ([num_tokens, d_model]), or
  // null when there are none or every token skips them.
  absl::StatusOr<const float*> RunShared(const float* tokens, int64_t num_tokens,
                                         const uint8_t* skip_shared)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // y[t] = sum of weight * expert output in ascending expert order, then
  // plus the (gated) shared output unless skipped. Each row written once.
  void Combine(const float* tokens, int64_t num_tokens, const float* expert_out,
               const float* shared_out, const uint8_t* skip_shared, float* y)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The routing outputs `out` asks for.
  void CopyRouting(int64_t num_tokens, const ForwardOutputs& out) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const LayerSpec spec_;
  const DType compute_;
  std::unique_ptr<Router> router_;
  std::unique_ptr<ExpertBackend> backend_;
  std::unique_ptr<DenseFfn> shared_;
  std::vector<float> shared_gate_;  // [d_model] when spec_.shared_gate
  std::unique_ptr<MatmulCacheRegistry> registry_;

  absl::Mutex mu_;
  // Per-batch memory, grown to the largest batch and reused.
  RoutingPlan plan_ ABSL_GUARDED_BY(mu_);
  std::vector<ExpertJob> jobs_ ABSL_GUARDED_BY(mu_);
  // Token-major view of the gathered rows: token t's routed outputs are
  // rows token_rows_[t * k + 0 .. token_row_count_[t]) of the expert
  // output block, in ascending expert order, weighted by token_weights_.
  std::vector<int64_t> token_rows_ ABSL_GUARDED_BY(mu_);
  std::vector<float> token_weights_ ABSL_GUARDED_BY(mu_);
  std::vector<int32_t> token_row_count_ ABSL_GUARDED_BY(mu_);
  std::vector<int32_t> gather_src_ ABSL_GUARDED_BY(mu_);  // token of each gathered row
  AlignedBuffer gathered_ ABSL_GUARDED_BY(mu_);
  AlignedBuffer expert_out_ ABSL_GUARDED_BY(mu_);
  AlignedBuffer shared_out_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<FfnWorkspace> shared_ws_ ABSL_GUARDED_BY(mu_);
};

// Packs one DenseFfn per expert in `hosted` (all when empty) into a
// LocalExpertBackend.
absl::StatusOr<std::unique_ptr<ExpertBackend>> CreateLocalBackend(
    const LayerWeights& weights, DType compute, MatmulCacheRegistry* registry,
    const std::vector<int>& hosted = {});

}  // namespace moe

#endif  // MOE_MODEL_MOE_LAYER_H_
