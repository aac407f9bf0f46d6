#include "tests/naive_reference.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>

namespace moe::testing {

std::vector<double> NaiveValues(const Tensor& t) {
  std::vector<double> out(static_cast<size_t>(t.num_elements()));
  for (size_t i = 0; i < out.size(); ++i) {
    if (t.dtype() == DType::kF32) {
      float f;
      std::memcpy(&f, static_cast<const char*>(t.data()) + 4 * i, 4);
      out[i] = f;
    } else if (t.dtype() == DType::kBF16) {
      uint16_t h;
      std::memcpy(&h, static_cast<const char*>(t.data()) + 2 * i, 2);
      uint32_t bits = static_cast<uint32_t>(h) << 16;
      float f;
      std::memcpy(&f, &bits, 4);
      out[i] = f;
    } else {
      uint16_t h;
      std::memcpy(&h, static_cast<const char*>(t.data()) + 2 * i, 2);
      const int exp = (h >> 10) & 31;
      const int man = h & 1023;
      double v = exp == 0 ? std::ldexp(man, -24) : std::ldexp(1024 + man, exp - 25);
      out[i] = (h & 0x8000) ? -v : v;
    }
  }
  return out;
}

float NaiveRoundBf16(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, 4);
  const uint32_t lower = bits & 0xffffu;
  uint32_t upper = bits >> 16;
  if (lower > 0x8000u || (lower == 0x8000u && (upper & 1u))) ++upper;
  const uint32_t out = upper << 16;
  float f;
  std::memcpy(&f, &out, 4);
  return f;
}

double NaiveActivation(Activation a, double x) {
  switch (a) {
    case Activation::kRelu:
      return x > 0 ? x : 0;
    case Activation::kGelu:
      return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
    case Activation::kGeluTanh: {
      const double c = std::sqrt(2.0 / M_PI);
      return 0.5 * x * (1.0 + std::tanh(c * (x + 0.044715 * x * x * x)));
    }
    case Activation::kSilu:
      return x / (1.0 + std::exp(-x));
  }
  return 0;
}

void NaiveFakeQuantizeQ8_0(double* v, int64_t n) {
  for (int64_t b = 0; b < n; b += 32) {
    const int64_t e = std::min(n, b + 32);
    double amax = 0;
    for (int64_t i = b; i < e; ++i) amax = std::max(amax, std::abs(v[i]));
    const double d = amax / 127.0;
    for (int64_t i = b; i < e; ++i) v[i] = d == 0 ? 0.0 : d * std::round(v[i] / d);
  }
}

void NaiveFakeQuantizeQ4_0(double* v, int64_t n) {
  for (int64_t b = 0; b < n; b += 32) {
    const int64_t e = std::min(n, b + 32);
    double m = 0;
    for (int64_t i = b; i < e; ++i) {
      if (std::abs(v[i]) > std::abs(m)) m = v[i];
    }
    const double d = m / -8.0;
    for (int64_t i = b; i < e; ++i) {
      v[i] = d == 0 ? 0.0 : d * std::min(7.0, std::floor(v[i] / d + 0.5));
    }
  }
}

namespace {

// Every row (of `cols` values) of a weight matrix fake-quantized as Q8_0
// (weight_bits 8) or Q4_0 (4); unchanged for 0.
std::vector<double> FakeQuantizedRows(std::vector<double> m, int64_t cols, int weight_bits) {
  if (weight_bits == 0) return m;
  for (size_t r = 0; r < m.size(); r += static_cast<size_t>(cols)) {
    if (weight_bits == 8) {
      NaiveFakeQuantizeQ8_0(m.data() + r, cols);
    } else {
      NaiveFakeQuantizeQ4_0(m.data() + r, cols);
    }
  }
  return m;
}

// NaiveFfn; weight_bits 8 or 4: weights fake-quantized as Q8_0 or Q4_0 and
// each matmul's inputs as Q8_0.
std::vector<double> FfnImpl(const FfnSpec& s, const FfnWeights& w, const std::vector<float>& x,
                            int64_t rows, bool bf16, int weight_bits) {
  const bool q8_0 = weight_bits != 0;
  auto weights = [&](const Tensor& t, int64_t cols) {
    return FakeQuantizedRows(NaiveValues(t), cols, weight_bits);
  };
  const auto w1 = weights(w.w1, s.d_model);
  const auto w2 = weights(w.w2, s.d_ff);
  const auto w3 = s.gated ? weights(w.w3, s.d_model) : std::vector<double>();
  const auto b1 = s.has_bias ? NaiveValues(w.b1) : std::vector<double>();
  const auto b3 = s.has_bias && s.gated ? NaiveValues(w.b3) : std::vector<double>();
  const auto b2 = s.has_bias ? NaiveValues(w.b2) : std::vector<double>();
  const int64_t h = s.d_model, f = s.d_ff;
  auto round = [&](double v) { return bf16 ? NaiveRoundBf16(static_cast<float>(v)) : v; };
  std::vector<double> y(static_cast<size_t>(rows * h));
  std::vector<double> xin(static_cast<size_t>(h)), hid(static_cast<size_t>(f));
  for (int64_t t = 0; t < rows; ++t) {
    for (int64_t c = 0; c < h; ++c) xin[c] = round(x[t * h + c]);
    if (q8_0) NaiveFakeQuantizeQ8_0(xin.data(), h);
    for (int64_t j = 0; j < f; ++j) {
      double a = s.has_bias ? b1[j] : 0.0;
      for (int64_t c = 0; c < h; ++c) a += w1[j * h + c] * xin[c];
      // bf16: every Linear's result is rounded, then the activation's,
      // then the product's, as PyTorch computes act_fn(w1(x)) * w3(x).
      double v = round(NaiveActivation(s.activation, round(a)));
      if (s.gated) {
        double u = s.has_bias ? b3[j] : 0.0;
        for (int64_t c = 0; c < h; ++c) u += w3[j * h + c] * xin[c];
        if (s.swiglu_limit > 0) {
          // gpt-oss: (clamp(up) + 1) * g * sigmoid(1.702 g), g = min(gate,
          // limit), each bf16 operation rounded.
          const double limit = s.swiglu_limit;
          const double g = std::min(static_cast<double>(round(a)), limit);
          const double up = std::max(std::min(static_cast<double>(round(u)), limit), -limit);
          const double sig = round(1.0 / (1.0 + std::exp(-round(1.702 * g))));
          v = round(round(up + 1.0) * round(g * sig));
        } else {
          v = round(v * round(u));
        }
      }
      hid[j] = v;
    }
    if (q8_0) NaiveFakeQuantizeQ8_0(hid.data(), f);
    for (int64_t c = 0; c < h; ++c) {
      double a = s.has_bias ? b2[c] : 0.0;
      for (int64_t j = 0; j < f; ++j) a += w2[c * f + j] * hid[j];
      y[t * h + c] = a;
    }
  }
  return y;
}

}  // namespace

std::vector<double> NaiveFfn(const FfnSpec& spec, const FfnWeights& w, const std::vector<float>& x,
                             int64_t rows, bool bf16) {
  return FfnImpl(spec, w, x, rows, bf16, 0);
}

std::vector<double> NaiveFfnLlamaQuantized(const FfnSpec& spec, const FfnWeights& w,
                                           const std::vector<float>& x, int64_t rows,
                                           int weight_bits) {
  return FfnImpl(spec, w, x, rows, false, weight_bits);
}

NaiveRouting NaiveRoute(const LayerWeights& w, const std::vector<float>& x, int64_t rows) {
  const LayerSpec& s = w.spec;
  const int e = s.router.num_experts, k = s.router.top_k;
  const int64_t h = s.d_model;
  NaiveRouting r;
  r.ids.resize(static_cast<size_t>(rows * k));
  r.weights.resize(static_cast<size_t>(rows * k));
  if (s.dense) {
    std::fill(r.ids.begin(), r.ids.end(), 0);
    std::fill(r.weights.begin(), r.weights.end(), 1.0);
    return r;
  }
  const auto gate = NaiveValues(w.gate_weight);
  const auto gbias = s.gate_bias ? NaiveValues(w.gate_bias) : std::vector<double>(e, 0.0);
  const auto cbias =
      s.correction_bias ? NaiveValues(w.correction_bias) : std::vector<double>(e, 0.0);
  std::vector<int64_t> per_expert(static_cast<size_t>(e), 0);
  int64_t capacity = INT64_MAX;
  if (s.router.capacity_factor > 0) {
    capacity = static_cast<int64_t>(
        std::ceil(s.router.capacity_factor * static_cast<double>(rows) * k / e));
  }
  for (int64_t t = 0; t < rows; ++t) {
    std::vector<double> score(static_cast<size_t>(e));
    for (int i = 0; i < e; ++i) {
      double a = gbias[i];
      for (int64_t c = 0; c < h; ++c) a += gate[i * h + c] * x[t * h + c];
      score[i] = a;
    }
    if (s.router.scoring == ScoringFunc::kSigmoid) {
      for (auto& v : score) v = 1.0 / (1.0 + std::exp(-v));
    } else {
      const double m = *std::max_element(score.begin(), score.end());
      double sum = 0;
      for (auto& v : score) sum += (v = std::exp(v - m));
      for (auto& v : score) v /= sum;
    }
    std::vector<double> choice(static_cast<size_t>(e));
    for (int i = 0; i < e; ++i) choice[i] = score[i] + cbias[i];
    std::vector<bool> allowed(static_cast<size_t>(e), true);
    if (s.router.n_group > 1) {
      const int gsize = e / s.router.n_group;
      std::vector<std::pair<double, int>> groups;
      for (int g = 0; g < s.router.n_group; ++g) {
        std::vector<double> members(choice.begin() + g * gsize, choice.begin() + (g + 1) * gsize);
        std::sort(members.rbegin(), members.rend());
        const double gs =
            s.router.group_score == GroupScore::kMax ? members[0] : members[0] + members[1];
        groups.emplace_back(-gs, g);
      }
      std::sort(groups.begin(), groups.end());
      std::fill(allowed.begin(), allowed.end(), false);
      for (int i = 0; i < s.router.topk_group; ++i) {
        for (int j = 0; j < gsize; ++j) allowed[groups[i].second * gsize + j] = true;
      }
    }
    std::vector<std::pair<double, int>> order;
    for (int i = 0; i < e; ++i) {
      if (allowed[i]) order.emplace_back(-choice[i], i);
    }
    std::sort(order.begin(), order.end());
    double sum = 0;
    for (int j = 0; j < k; ++j) {
      r.ids[t * k + j] = order[j].second;
      r.weights[t * k + j] = score[order[j].second];
      sum += r.weights[t * k + j];
    }
    for (int j = 0; j < k; ++j) {
      double& wt = r.weights[t * k + j];
      if (s.router.renormalize) wt /= (sum + s.router.renorm_epsilon);
      wt *= s.router.routed_scaling_factor;
    }
  }
  // Capacity: first come, first served in (token, slot) order.
  for (int64_t t = 0; t < rows; ++t) {
    for (int j = 0; j < k; ++j) {
      int32_t& id = r.ids[t * k + j];
      if (per_expert[id] >= capacity) {
        id = -1;
        r.weights[t * k + j] = 0;
      } else {
        ++per_expert[id];
      }
    }
  }
  return r;
}

std::vector<double> NaiveLayer(const LayerWeights& w, const std::vector<float>& x, int64_t rows,
                               bool bf16, NaiveRouting* routing) {
  const LayerSpec& s = w.spec;
  const int k = s.router.top_k;
  const int64_t h = s.d_model;
  NaiveRouting r = NaiveRoute(w, x, rows);
  std::vector<double> y(static_cast<size_t>(rows * h), 0.0);
  for (int64_t t = 0; t < rows; ++t) {
    std::vector<float> token(x.begin() + t * h, x.begin() + (t + 1) * h);
    for (int j = 0; j < k; ++j) {
      const int id = r.ids[t * k + j];
      if (id < 0) continue;
      auto out = NaiveFfn(s.expert, w.experts[id], token, 1, bf16);
      for (int64_t c = 0; c < h; ++c) y[t * h + c] += r.weights[t * k + j] * out[c];
    }
    if (s.has_shared()) {
      auto out = NaiveFfn(s.shared, w.shared, token, 1, bf16);
      double scale = 1.0;
      if (s.shared_gate) {
        const auto g = NaiveValues(w.shared_gate);
        double a = 0;
        for (int64_t c = 0; c < h; ++c) a += g[c] * token[c];
        scale = 1.0 / (1.0 + std::exp(-a));
      }
      for (int64_t c = 0; c < h; ++c) y[t * h + c] += scale * out[c];
    }
  }
  if (routing != nullptr) *routing = std::move(r);
  return y;
}

double MaxRelativeError(const std::vector<float>& got, const std::vector<double>& want) {
  double scale = 1e-6, err = 0;
  for (double v : want) scale = std::max(scale, std::abs(v));
  for (size_t i = 0; i < got.size() && i < want.size(); ++i) {
    err = std::max(err, std::abs(static_cast<double>(got[i]) - want[i]));
  }
  if (got.size() != want.size()) return INFINITY;
  return err / scale;
}

std::vector<float> RandomTokens(int64_t n, uint32_t seed, float scale) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-scale, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = u(rng);
  return v;
}

}  // namespace moe::testing
