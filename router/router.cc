#include "router/router.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"

namespace moe {

absl::StatusOr<std::unique_ptr<Router>> Router::Create(const RouterOptions& o, int64_t d_model,
                                                       std::vector<float> gate_weight,
                                                       std::vector<float> gate_bias,
                                                       std::vector<float> correction_bias) {
  const int e = o.num_experts;
  if (e < 1) {
    return absl::InvalidArgumentError(absl::StrCat("router: num_experts must be >= 1, got ", e));
  }
  if (o.top_k < 1 || o.top_k > e) {
    return absl::InvalidArgumentError(
        absl::StrCat("router: top_k must be in [1, num_experts=", e, "], got ", o.top_k));
  }
  if (d_model < 1) {
    return absl::InvalidArgumentError("router: d_model must be >= 1");
  }
  if (static_cast<int64_t>(gate_weight.size()) != e * d_model) {
    return absl::InvalidArgumentError(absl::StrCat("router: gate weight has ", gate_weight.size(),
                                                   " values, expected ", e, " x ", d_model));
  }
  if (!gate_bias.empty() && static_cast<int>(gate_bias.size()) != e) {
    return absl::InvalidArgumentError(
        absl::StrCat("router: gate bias has ", gate_bias.size(), " values, expected ", e));
  }
  if (!correction_bias.empty() && static_cast<int>(correction_bias.size()) != e) {
    return absl::InvalidArgumentError(absl::StrCat(
        "router: score-correction bias has ", correction_bias.size(), " values, expected ", e));
  }
  if (o.n_group < 1 || e % o.n_group != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("router: n_group=", o.n_group, " must divide num_experts=", e));
  }
  if (o.topk_group < 1 || o.topk_group > o.n_group) {
    return absl::InvalidArgumentError(absl::StrCat("router: topk_group=", o.topk_group,
                                                   " must be in [1, n_group=", o.n_group, "]"));
  }
  if (o.n_group > 1 && o.topk_group * (e / o.n_group) < o.top_k) {
    return absl::InvalidArgumentError(absl::StrCat("router: topk_group=", o.topk_group,
                                                   " groups of ", e / o.n_group,
                                                   " experts cannot hold top_k=", o.top_k));
  }
  if (o.n_group > 1 && o.group_score == GroupScore::kSumTop2 && e / o.n_group < 2) {
    return absl::InvalidArgumentError(
        "router: sum-of-top-2 group scores need >= 2 experts per group");
  }
  if (!(o.capacity_factor >= 0.0) || !std::isfinite(o.capacity_factor)) {
    return absl::InvalidArgumentError(
        absl::StrCat("router: capacity_factor must be finite and >= 0, got ", o.capacity_factor));
  }
  if (!std::isfinite(o.routed_scaling_factor)) {
    return absl::InvalidArgumentError("router: routed_scaling_factor must be finite");
  }
  return std::unique_ptr<Router>(new Router(o, d_model, std::move(gate_weight),
                                            std::move(gate_bias), std::move(correction_bias)));
}

std::unique_ptr<Router> Router::CreateDense(int64_t d_model) {
  RouterOptions o;
  o.num_experts = 1;
  o.top_k = 1;
  return std::unique_ptr<Router>(new Router(o, d_model, {}, {}, {}));
}

Router::Router(const RouterOptions& options, int64_t d_model, std::vector<float> gate_weight,
               std::vector<float> gate_bias, std::vector<float> correction_bias)
    : options_(options),
      d_model_(d_model),
      dense_(gate_weight.empty()),
      gate_weight_(std::move(gate_weight)),
      gate_bias_(std::move(gate_bias)),
      correction_bias_(std::move(correction_bias)) {}

int64_t Router::CapacityFor(int64_t num_tokens) const {
  if (options_.capacity_factor <= 0.0) return std::numeric_limits<int64_t>::max();
  const double c = std::ceil(options_.capacity_factor * static_cast<double>(num_tokens) *
                             options_.top_k / options_.num_experts);
  return static_cast<int64_t>(c);
}

void Router::ScoreToken(const float* x, float* scores) const {
  const int e = options_.num_experts;
  for (int i = 0; i < e; ++i) {
    scores[i] = FixedOrderDot(x, gate_weight_.data() + i * d_model_, d_model_);
    if (!gate_bias_.empty()) scores[i] += gate_bias_[static_cast<size_t>(i)];
  }
  if (options_.scoring == ScoringFunc::kSigmoid) {
    for (int i = 0; i < e; ++i) scores[i] = 1.0f / (1.0f + std::exp(-scores[i]));
    return;
  }
  float max_logit = -std::numeric_limits<float>::infinity();
  for (int i = 0; i < e; ++i) max_logit = std::max(max_logit, scores[i]);
  float sum = 0.0f;
  for (int i = 0; i < e; ++i) {
    scores[i] = std::exp(scores[i] - max_logit);
    sum += scores[i];
  }
  const float inv = 1.0f / sum;
  for (int i = 0; i < e; ++i) scores[i] *= inv;
}

namespace {

// Orders candidates best first: higher value, then lower index. NaN sorts
// last so that the order stays a strict weak ordering on any input.
struct BestFirst {
  const float* value;
  bool operator()(int a, int b) const {
    const float va = std::isnan(value[a]) ? -std::numeric_limits<float>::infinity() : value[a];
    const float vb = std::isnan(value[b]) ? -std::numeric_limits<float>::infinity() : value[b];
    if (va != vb) return va > vb;
    return a < b;
  }
};

}  // namespace

void Router::SelectToken(const float* scores, int32_t* ids, float* weights,
                         std::vector<float>* choice, std::vector<int>* order) const {
  const int e = options_.num_experts;
  const int k = options_.top_k;
  choice->assign(scores, scores + e);
  if (!correction_bias_.empty()) {
    for (int i = 0; i < e; ++i) (*choice)[i] += correction_bias_[static_cast<size_t>(i)];
  }
  order->clear();
  if (options_.n_group > 1) {
    const int group_size = e / options_.n_group;
    float group_scores[256];
    std::vector<float> group_scores_heap;
    float* gs = group_scores;
    if (options_.n_group > 256) {
      group_scores_heap.resize(static_cast<size_t>(options_.n_group));
      gs = group_scores_heap.data();
    }
    for (int g = 0; g < options_.n_group; ++g) {
      const float* c = choice->data() + static_cast<ptrdiff_t>(g) * group_size;
      if (options_.group_score == GroupScore::kMax) {
        float best = -std::numeric_limits<float>::infinity();
        for (int i = 0; i < group_size; ++i) best = std::max(best, c[i]);
        gs[g] = best;
      } else {
        float first = -std::numeric_limits<float>::infinity();
        float second = first;
        for (int i = 0; i < group_size; ++i) {
          if (c[i] > first) {
            second = first;
            first = c[i];
          } else if (c[i] > second) {
            second = c[i];
          }
        }
        gs[g] = first + second;
      }
    }
    std::vector<int>& groups = *order;
    for (int g = 0; g < options_.n_group; ++g) groups.push_back(g);
    std::partial_sort(groups.begin(), groups.begin() + options_.topk_group, groups.end(),
                      BestFirst{gs});
    // Keep the chosen groups' experts, in ascending expert order.
    std::vector<char> keep(static_cast<size_t>(options_.n_group), 0);
    for (int i = 0; i < options_.topk_group; ++i) keep[static_cast<size_t>(groups[i])] = 1;
    order->clear();
    for (int i = 0; i < e; ++i) {
      if (keep[static_cast<size_t>(i / group_size)]) order->push_back(i);
    }
  } else {
    for (int i = 0; i < e; ++i) order->push_back(i);
  }
  std::partial_sort(order->begin(), order->begin() + k, order->end(), BestFirst{choice->data()});
  float sum = 0.0f;
  for (int j = 0; j < k; ++j) {
    ids[j] = (*order)[static_cast<size_t>(j)];
    weights[j] = scores[ids[j]];
    sum += weights[j];
  }
  if (options_.renormalize) {
    const float denom = sum + options_.renorm_epsilon;
    for (int j = 0; j < k; ++j) weights[j] /= denom;
  }
  if (options_.routed_scaling_factor != 1.0f) {
    for (int j = 0; j < k; ++j) weights[j] *= options_.routed_scaling_factor;
  }
}

void Router::Route(const float* tokens, int64_t num_tokens, RoutingPlan* plan,
                   const GivenRouting& given) const {
  const int e = options_.num_experts;
  const int k = options_.top_k;
  plan->num_tokens = num_tokens;
  plan->top_k = k;
  plan->num_experts = e;
  plan->num_dropped = 0;
  plan->expert_ids.resize(static_cast<size_t>(num_tokens * k));
  plan->weights.resize(static_cast<size_t>(num_tokens * k));
  plan->expert_rows.resize(static_cast<size_t>(e));
  plan->expert_row_weights.resize(static_cast<size_t>(e));
  for (int i = 0; i < e; ++i) {
    plan->expert_rows[static_cast<size_t>(i)].clear();
    plan->expert_row_weights[static_cast<size_t>(i)].clear();
  }

  const auto is_given = [&given](int64_t t) {
    return given.present != nullptr && given.present[t] != 0;
  };
  if (dense_) {
    plan->scores.assign(static_cast<size_t>(num_tokens), 1.0f);
    auto& rows = plan->expert_rows[0];
    auto& w = plan->expert_row_weights[0];
    for (int64_t t = 0; t < num_tokens; ++t) {
      const float weight = is_given(t) ? given.weights[t] : 1.0f;  // a given id is 0
      plan->expert_ids[static_cast<size_t>(t)] = 0;
      plan->weights[static_cast<size_t>(t)] = weight;
      rows.push_back(static_cast<int32_t>(t));
      w.push_back(weight);
    }
    return;
  }

  plan->scores.resize(static_cast<size_t>(num_tokens * e));
  // Scoring is per token and independent: spread over the OpenMP team in
  // GCC builds (the same team oneDNN uses). Selection shares scratch and
  // stays on this thread.
#pragma omp parallel for schedule(static) if (num_tokens >= 64)
  for (int64_t t = 0; t < num_tokens; ++t) {
    float* scores = plan->scores.data() + t * e;
    if (is_given(t)) {
      std::fill(scores, scores + e, 0.0f);
    } else {
      ScoreToken(tokens + t * d_model_, scores);
    }
  }
  for (int64_t t = 0; t < num_tokens; ++t) {
    if (is_given(t)) {
      std::copy(given.ids + t * k, given.ids + (t + 1) * k, plan->expert_ids.data() + t * k);
      std::copy(given.weights + t * k, given.weights + (t + 1) * k, plan->weights.data() + t * k);
      continue;
    }
    SelectToken(plan->scores.data() + t * e, plan->expert_ids.data() + t * k,
                plan->weights.data() + t * k, &plan->choice_scratch, &plan->order_scratch);
  }

  const int64_t capacity = CapacityFor(num_tokens);
  for (int64_t t = 0; t < num_tokens; ++t) {
    const bool exempt = is_given(t);  // the caller's experts are never dropped
    for (int j = 0; j < k; ++j) {
      const size_t slot = static_cast<size_t>(t * k + j);
      const int32_t id = plan->expert_ids[slot];
      if (id == kDroppedExpert) continue;  // a given empty slot
      auto& rows = plan->expert_rows[static_cast<size_t>(id)];
      if (!exempt && static_cast<int64_t>(rows.size()) >= capacity) {
        plan->expert_ids[slot] = kDroppedExpert;
        plan->weights[slot] = 0.0f;
        ++plan->num_dropped;
        continue;
      }
      rows.push_back(static_cast<int32_t>(t));
      plan->expert_row_weights[static_cast<size_t>(id)].push_back(plan->weights[slot]);
    }
  }
}

}  // namespace moe
