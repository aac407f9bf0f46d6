// Router: scores tokens against the gate, keeps the top-k experts per token
// and writes a RoutingPlan.
//
// Computation per token x (d_model floats), all in f32:
//   logits_e = dot(x, gate_e) (+ gate_bias_e)   fixed summation order
//   scores   = softmax(logits) or sigmoid(logits)
//   choice   = scores + correction_bias (selection only), restricted to the
//              best topk_group groups when grouped; top-k by descending
//              choice value, ties broken by the lower expert id
//   weights  = the unbiased scores of the chosen experts, renormalised if
//              asked, times routed_scaling_factor
// A token's plan entries depend only on that token (bitwise), except under a
// capacity limit, whose dropping is by token order within the batch.
//
// Thread-safety: a Router is immutable after Create(); Route() is const and
// may run concurrently on different plans.
#ifndef MOE_ROUTER_ROUTER_H_
#define MOE_ROUTER_ROUTER_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/vector_kernels.h"  // FixedOrderDot
#include "router/given_routing.h"
#include "router/router_options.h"
#include "router/routing_plan.h"

namespace moe {

class Router {
 public:
  // gate_weight: [E, d_model] row-major; gate_bias and correction_bias:
  // empty or [E]. Fails with INVALID_ARGUMENT on inconsistent options or
  // sizes.
  static absl::StatusOr<std::unique_ptr<Router>> Create(const RouterOptions& options,
                                                        int64_t d_model,
                                                        std::vector<float> gate_weight,
                                                        std::vector<float> gate_bias = {},
                                                        std::vector<float> correction_bias = {});

  // The router of a dense FFN (E = 1, k = 1): every token to expert 0 with
  // weight exactly 1.
  static std::unique_ptr<Router> CreateDense(int64_t d_model);

  // Routes `num_tokens` rows of `tokens` (row-major, d_model floats each)
  // into *plan, reusing its memory. Tokens that `given` marks present take
  // its experts and weights instead of the gate's (validated beforehand
  // with ValidateGivenRouting; their router scores are left 0). A capacity
  // limit never drops their experts (they still count toward it).
  void Route(const float* tokens, int64_t num_tokens, RoutingPlan* plan,
             const GivenRouting& given = {}) const;

  const RouterOptions& options() const { return options_; }
  int64_t d_model() const { return d_model_; }

  // Per-batch capacity for a batch of `num_tokens` (INT64_MAX if dropless).
  int64_t CapacityFor(int64_t num_tokens) const;

 private:
  Router(const RouterOptions& options, int64_t d_model, std::vector<float> gate_weight,
         std::vector<float> gate_bias, std::vector<float> correction_bias);

  void ScoreToken(const float* x, float* scores) const;
  void SelectToken(const float* scores, int32_t* ids, float* weights, std::vector<float>* choice,
                   std::vector<int>* order) const;

  const RouterOptions options_;
  const int64_t d_model_;
  const bool dense_;
  const std::vector<float> gate_weight_;      // [E, d_model]
  const std::vector<float> gate_bias_;        // empty or [E]
  const std::vector<float> correction_bias_;  // empty or [E]
};

}  // namespace moe

#endif  // MOE_ROUTER_ROUTER_H_
