// QuantizedMatmul (--dtype=int8, --dtype=int4): its weight quantization
// and group sums are exactly what the header promises (checked bitwise
// against plain loops here), its results stay within the stated bound of
// a naive double f32 reference, and a row's bits never depend on the batch
// around it, on the thread count or on which kernel (AVX2, AVX-512 VNNI)
// ran. Every test runs for int8 and int4.
#include "experts/quantized_matmul.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <vector>

#include "common/cpu_tier.h"
#include "gtest/gtest.h"
#include "tests/naive_reference.h"
#include "tests/status_matchers.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace moe {
namespace {

using ::moe::testing::MaxRelativeError;
using ::moe::testing::NaiveActivation;
using ::moe::testing::RandomTokens;

constexpr int64_t kGroup = 32;

class QuantizedMatmulTest : public ::testing::TestWithParam<DType> {
 protected:
  void SetUp() override {
    if (!CpuMeetsBaseline()) GTEST_SKIP() << "this CPU lacks AVX2/FMA/F16C";
  }
  bool int4() const { return GetParam() == DType::kI4; }
};

struct Problem {
  MatmulShape shape;
  std::vector<float> w;     // [N, K]
  std::vector<float> bias;  // [N] or empty
  Tensor w_tensor, bias_tensor;
};

Problem MakeProblem(DType compute, int64_t k, int64_t n, MatmulPostOp post, Activation act,
                    bool bias, uint32_t seed) {
  Problem p;
  p.shape.k = k;
  p.shape.n = n;
  p.shape.compute = compute;
  p.shape.dst = DType::kF32;
  p.shape.post = post;
  p.shape.activation = act;
  p.shape.bias = bias;
  p.w = RandomTokens(n * k, seed, 0.5f);
  p.w_tensor = Tensor::FromFloats(DType::kF32, {n, k}, p.w);
  if (bias) {
    p.bias = RandomTokens(n, seed + 1, 0.5f);
    p.bias_tensor = Tensor::FromFloats(DType::kF32, {n}, p.bias);
  }
  return p;
}

std::vector<float> Multiply(const QuantizedMatmul& m, const std::vector<float>& x, int64_t rows,
                            const float* multiplier = nullptr) {
  std::vector<float> out(static_cast<size_t>(rows * m.shape().n));
  AlignedBuffer scratch;
  m.Execute(x.data(), rows, out.data(), multiplier, &scratch);
  return out;
}

// The header's symmetric quantization, written out: 127 / max |v|, nearest
// even, clamped to [-127, 127]; all zeros with scale 0 when 127 / max |v|
// is not finite. For activation groups and int8 weights.
struct Quantized {
  std::vector<int32_t> q;
  float scale = 0;
};

Quantized Quantize(const float* v, int64_t n) {
  float amax = 0;
  for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(v[i]));
  Quantized out;
  out.q.assign(static_cast<size_t>(n), 0);
  const float inv = 127.0f / amax;
  if (!std::isfinite(inv)) return out;
  out.scale = amax / 127.0f;
  for (int64_t i = 0; i < n; ++i) {
    out.q[static_cast<size_t>(i)] =
        static_cast<int32_t>(std::max(-127.0f, std::min(127.0f, std::nearbyint(v[i] * inv))));
  }
  return out;
}

// One column's weights as the matmul holds them, read back and checked
// against the header: int8 per channel; int4 per group of 32, the scale
// the bf16 nearest to m / -8 (m the first value of largest magnitude), q =
// clamp(nearest_even(w · (1 / scale)), -8, 7).
struct Column {
  std::vector<int32_t> q;
  std::vector<float> scale;  // per k
};

Column CheckedColumn(const QuantizedMatmul& m, const std::vector<float>& w, int64_t c, bool int4) {
  const int64_t k = m.shape().k;
  const float* v = w.data() + c * k;
  Column col;
  col.q.resize(static_cast<size_t>(k));
  col.scale.resize(static_cast<size_t>(k));
  if (!int4) {
    const Quantized want = Quantize(v, k);
    EXPECT_EQ(want.scale, m.weight_scale(c, 0)) << "column " << c;
    for (int64_t i = 0; i < k; ++i) {
      EXPECT_EQ(want.q[static_cast<size_t>(i)], m.quantized_weight(c, i))
          << "col " << c << " k " << i;
      col.q[static_cast<size_t>(i)] = want.q[static_cast<size_t>(i)];
      col.scale[static_cast<size_t>(i)] = want.scale;
    }
    return col;
  }
  for (int64_t g0 = 0; g0 < k; g0 += kGroup) {
    const int64_t len = std::min(kGroup, k - g0);
    float mv = 0;
    for (int64_t i = 0; i < len; ++i) {
      if (std::fabs(v[g0 + i]) > std::fabs(mv)) mv = v[g0 + i];
    }
    const float d = m.weight_scale(c, g0);
    const double exact = static_cast<double>(mv) / -8.0;
    // bf16 nearest: within half a bf16 ulp (2^-8 relative).
    EXPECT_LE(std::fabs(d - exact), std::fabs(exact) * std::ldexp(1.0, -8))
        << "col " << c << " group " << g0 / kGroup;
    const float inv = d != 0 ? 1.0f / d : 0.0f;
    for (int64_t i = 0; i < len; ++i) {
      const int32_t want = d != 0 ? static_cast<int32_t>(std::max(
                                        -8.0f, std::min(7.0f, std::nearbyint(v[g0 + i] * inv))))
                                  : 0;
      EXPECT_EQ(want, m.quantized_weight(c, g0 + i)) << "col " << c << " k " << g0 + i;
      col.q[static_cast<size_t>(g0 + i)] = want;
      col.scale[static_cast<size_t>(g0 + i)] = d;
    }
  }
  return col;
}

TEST_P(QuantizedMatmulTest, WeightsAreQuantizedAsTheHeaderSays) {
  for (int64_t k : {1, 5, 64, 1030}) {
    Problem p = MakeProblem(GetParam(), k, 37, MatmulPostOp::kNone, Activation::kRelu, false, 3);
    // One all-zero channel: scale 0, every weight 0.
    std::fill(p.w.begin() + 5 * k, p.w.begin() + 6 * k, 0.0f);
    p.w_tensor = Tensor::FromFloats(DType::kF32, {37, k}, p.w);
    ASSERT_OK_AND_ASSIGN(
        auto m, QuantizedMatmul::Create(p.shape, p.w_tensor, nullptr, Tensor(), ActiveCpuTier()));
    for (int64_t c = 0; c < 37; ++c) CheckedColumn(*m, p.w, c, int4());
    EXPECT_EQ(m->weight_scale(5, 0), 0.0f);
  }
}

// The header's formula, bitwise: per 32-input group the exact integer dot
// product, fma'd in order with the group's scale (int8: s_x; int4: s_x ·
// s_w), then (int8) · s_w, + b; for K and N with tails and every row count
// a tile or a pass can take.
TEST_P(QuantizedMatmulTest, ResultIsTheExactGroupSumsScaled) {
  for (int64_t k : {1, 3, 4, 7, 32, 64, 257, 1030}) {
    for (int64_t n : {1, 15, 16, 17, 100}) {
      SCOPED_TRACE(::testing::Message() << DTypeName(GetParam()) << " K=" << k << " N=" << n);
      Problem p = MakeProblem(GetParam(), k, n, MatmulPostOp::kNone, Activation::kRelu, true,
                              static_cast<uint32_t>(k * 131 + n));
      ASSERT_OK_AND_ASSIGN(auto m, QuantizedMatmul::Create(p.shape, p.w_tensor, nullptr,
                                                           p.bias_tensor, ActiveCpuTier()));
      std::vector<Column> cols;
      for (int64_t c = 0; c < n; ++c) cols.push_back(CheckedColumn(*m, p.w, c, int4()));
      for (int64_t rows : {1, 2, 3, 4, 5, 9, 300}) {
        auto x = RandomTokens(rows * k, static_cast<uint32_t>(rows + k), 2.0f);
        // Some inputs far larger than the rest: each group scales alone.
        for (int64_t i = 0; i < rows * k; i += 97) x[static_cast<size_t>(i)] *= 50.0f;
        auto got = Multiply(*m, x, rows);
        for (int64_t r = 0; r < rows; ++r) {
          std::vector<Quantized> qx;
          for (int64_t g0 = 0; g0 < k; g0 += kGroup) {
            qx.push_back(Quantize(x.data() + r * k + g0, std::min(kGroup, k - g0)));
          }
          for (int64_t c = 0; c < n; ++c) {
            const Column& w = cols[static_cast<size_t>(c)];
            float acc = 0.0f;
            for (size_t g = 0; g < qx.size(); ++g) {
              int64_t dot = 0;
              for (size_t i = 0; i < qx[g].q.size(); ++i) {
                dot += int64_t{qx[g].q[i]} * w.q[g * kGroup + i];
              }
              const float scale = int4() ? qx[g].scale * w.scale[g * kGroup] : qx[g].scale;
              acc = std::fma(static_cast<float>(dot), scale, acc);
            }
            const float want = (int4() ? acc : acc * w.scale[0]) + p.bias[static_cast<size_t>(c)];
            const float have = got[static_cast<size_t>(r * n + c)];
            ASSERT_EQ(0, std::memcmp(&want, &have, 4)) << "rows " << rows << " row " << r << " col "
                                                       << c << ": " << have << " vs " << want;
          }
        }
      }
    }
  }
}

// Against f32 math in double: the quantization error only, inputs and
// weights uniform, every post-op. Bounds, relative to the largest output:
// int8 1.5e-2 (seen 5.8e-3), int4 1.2e-1 (seen 9.8e-2), on the avx2 and
// avx512_bf16 tiers (the same bits on both).
TEST_P(QuantizedMatmulTest, MatchesNaiveF32ReferenceWithinQuantizationError) {
  const double tolerance = int4() ? 1.2e-1 : 1.5e-2;
  double worst = 0;
  struct Variant {
    MatmulPostOp post;
    Activation act;
  };
  for (const Variant v : {Variant{MatmulPostOp::kNone, Activation::kRelu},
                          Variant{MatmulPostOp::kActivation, Activation::kGelu},
                          Variant{MatmulPostOp::kActivation, Activation::kSilu},
                          Variant{MatmulPostOp::kMultiply, Activation::kRelu}}) {
    for (int64_t k : {100, 1024}) {
      const int64_t n = 200, rows = 13;
      Problem p = MakeProblem(GetParam(), k, n, v.post, v.act, true, static_cast<uint32_t>(k + 17));
      ASSERT_OK_AND_ASSIGN(auto m, QuantizedMatmul::Create(p.shape, p.w_tensor, nullptr,
                                                           p.bias_tensor, ActiveCpuTier()));
      auto x = RandomTokens(rows * k, 99, 1.0f);
      auto mul = RandomTokens(rows * n, 98, 1.0f);
      auto got = Multiply(*m, x, rows, v.post == MatmulPostOp::kMultiply ? mul.data() : nullptr);
      std::vector<double> want(static_cast<size_t>(rows * n));
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < n; ++c) {
          double acc = p.bias[static_cast<size_t>(c)];
          for (int64_t i = 0; i < k; ++i) {
            acc += double{x[static_cast<size_t>(r * k + i)]} * p.w[static_cast<size_t>(c * k + i)];
          }
          if (v.post == MatmulPostOp::kActivation) acc = NaiveActivation(v.act, acc);
          if (v.post == MatmulPostOp::kMultiply) acc *= mul[static_cast<size_t>(r * n + c)];
          want[static_cast<size_t>(r * n + c)] = acc;
        }
      }
      const double err = MaxRelativeError(got, want);
      EXPECT_LE(err, tolerance) << "K " << k << " post " << static_cast<int>(v.post);
      worst = std::max(worst, err);
    }
  }
  std::printf("%s worst relative error %.3g\n", DTypeName(GetParam()), worst);
}

// A row's bits do not depend on the batch around it, its position or the
// thread count.
TEST_P(QuantizedMatmulTest, RowsAreBatchInvariant) {
  const int64_t k = 520, n = 300;
  Problem p = MakeProblem(GetParam(), k, n, MatmulPostOp::kActivation, Activation::kSilu, true, 8);
  ASSERT_OK_AND_ASSIGN(auto m, QuantizedMatmul::Create(p.shape, p.w_tensor, nullptr, p.bias_tensor,
                                                       ActiveCpuTier()));
  const int64_t big = 530;  // crosses the 256-row pass
  auto x = RandomTokens(big * k, 21, 3.0f);
  auto all = Multiply(*m, x, big);
  for (int64_t rows : {1, 2, 3, 4, 5, 7, 8, 64, 257}) {
    for (int64_t start : {int64_t{0}, big - rows, (big - rows) / 2}) {
      std::vector<float> part(x.begin() + start * k, x.begin() + (start + rows) * k);
      auto got = Multiply(*m, part, rows);
      ASSERT_EQ(0, std::memcmp(got.data(), all.data() + start * n,
                               static_cast<size_t>(rows * n) * sizeof(float)))
          << rows << " rows from row " << start;
    }
  }
#ifdef _OPENMP
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  auto single = Multiply(*m, x, big);
  omp_set_num_threads(threads);
  EXPECT_EQ(0, std::memcmp(single.data(), all.data(), all.size() * sizeof(float)));
#endif
}

// The VNNI and AVX2 kernels give the same bits (where the CPU has both).
TEST_P(QuantizedMatmulTest, KernelsAgreeBitwise) {
  if (ActiveCpuTier() < CpuTier::kAvx512Bf16) {
    GTEST_SKIP() << "one kernel at this tier (" << CpuTierName(ActiveCpuTier()) << ")";
  }
  for (int64_t k : {3, 256, 1030}) {
    Problem p = MakeProblem(GetParam(), k, 70, MatmulPostOp::kMultiply, Activation::kRelu, true,
                            static_cast<uint32_t>(k));
    ASSERT_OK_AND_ASSIGN(auto vnni, QuantizedMatmul::Create(p.shape, p.w_tensor, nullptr,
                                                            p.bias_tensor, CpuTier::kAvx512Bf16));
    ASSERT_OK_AND_ASSIGN(auto avx2, QuantizedMatmul::Create(p.shape, p.w_tensor, nullptr,
                                                            p.bias_tensor, CpuTier::kAvx2));
    EXPECT_NE(vnni->impl(), avx2->impl());
    for (int64_t rows : {1, 3, 6, 40}) {
      auto x = RandomTokens(rows * k, 5, 4.0f);
      auto mul = RandomTokens(rows * 70, 6, 1.0f);
      auto a = Multiply(*vnni, x, rows, mul.data());
      auto b = Multiply(*avx2, x, rows, mul.data());
      ASSERT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)))
          << "K " << k << " rows " << rows;
    }
  }
}

// [top; bottom] packs as the stacked matrix.
TEST_P(QuantizedMatmulTest, StackedPartsPackAsTheStackedMatrix) {
  const int64_t k = 96;
  Problem top = MakeProblem(GetParam(), k, 24, MatmulPostOp::kNone, Activation::kRelu, false, 1);
  Problem bottom = MakeProblem(GetParam(), k, 40, MatmulPostOp::kNone, Activation::kRelu, false, 2);
  MatmulShape shape = top.shape;
  shape.n = 64;
  ASSERT_OK_AND_ASSIGN(auto parts, QuantizedMatmul::Create(shape, top.w_tensor, &bottom.w_tensor,
                                                           Tensor(), ActiveCpuTier()));
  ASSERT_OK_AND_ASSIGN(
      auto whole, QuantizedMatmul::Create(shape, Tensor::StackRows(top.w_tensor, bottom.w_tensor),
                                          nullptr, Tensor(), ActiveCpuTier()));
  auto x = RandomTokens(5 * k, 4);
  auto a = Multiply(*parts, x, 5), b = Multiply(*whole, x, 5);
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)));
}

// Values so small that 127 / max (or 1 / the int4 scale) overflows are
// taken as zeros, for weights and for inputs: bias only, nothing undefined.
TEST_P(QuantizedMatmulTest, TinyGroupsAreZeros) {
  const int64_t k = 64, n = 16;
  Problem p = MakeProblem(GetParam(), k, n, MatmulPostOp::kNone, Activation::kRelu, true, 31);
  for (int64_t i = 0; i < k; ++i) {
    p.w[static_cast<size_t>(3 * k + i)] = (i % 2 ? 1e-38f : -2e-39f);  // column 3: tiny
  }
  p.w_tensor = Tensor::FromFloats(DType::kF32, {n, k}, p.w);
  ASSERT_OK_AND_ASSIGN(auto m, QuantizedMatmul::Create(p.shape, p.w_tensor, nullptr, p.bias_tensor,
                                                       ActiveCpuTier()));
  for (int64_t i = 0; i < k; ++i) {
    EXPECT_EQ(m->quantized_weight(3, i), 0) << i;
    EXPECT_EQ(m->weight_scale(3, i), 0.0f) << i;
  }
  auto x = RandomTokens(2 * k, 32);
  for (int64_t i = 0; i < k; ++i) x[static_cast<size_t>(i)] = i % 3 ? 3e-38f : -1e-40f;  // row 0
  auto got = Multiply(*m, x, 2);
  for (int64_t c = 0; c < n; ++c) {
    EXPECT_EQ(got[static_cast<size_t>(c)], p.bias[static_cast<size_t>(c)]) << "col " << c;
  }
  EXPECT_EQ(got[static_cast<size_t>(n + 3)], p.bias[3]);
}

// A zero row gives bias only; a row holding an infinity gives NaN and
// leaves the other rows alone.
TEST_P(QuantizedMatmulTest, ZeroAndNonFiniteRows) {
  const int64_t k = 40, n = 20;
  Problem p = MakeProblem(GetParam(), k, n, MatmulPostOp::kNone, Activation::kRelu, true, 12);
  ASSERT_OK_AND_ASSIGN(auto m, QuantizedMatmul::Create(p.shape, p.w_tensor, nullptr, p.bias_tensor,
                                                       ActiveCpuTier()));
  auto x = RandomTokens(3 * k, 13);
  auto clean = Multiply(*m, x, 3);
  std::fill(x.begin(), x.begin() + k, 0.0f);
  x[static_cast<size_t>(k + 7)] = std::numeric_limits<float>::infinity();
  auto got = Multiply(*m, x, 3);
  for (int64_t c = 0; c < n; ++c) {
    EXPECT_EQ(p.bias[static_cast<size_t>(c)], got[static_cast<size_t>(c)]);
    EXPECT_TRUE(std::isnan(got[static_cast<size_t>(n + c)]));
  }
  EXPECT_EQ(0, std::memcmp(got.data() + 2 * n, clean.data() + 2 * n, n * sizeof(float)));
}

TEST_P(QuantizedMatmulTest, RejectsNonFiniteWeightsAndOverlongK) {
  Problem p = MakeProblem(GetParam(), 8, 20, MatmulPostOp::kNone, Activation::kRelu, false, 1);
  p.w[13 * 8 + 2] = std::nanf("");
  p.w_tensor = Tensor::FromFloats(DType::kF32, {20, 8}, p.w);
  auto bad = QuantizedMatmul::Create(p.shape, p.w_tensor, nullptr, Tensor(), ActiveCpuTier());
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("output channel 13"), std::string::npos)
      << bad.status().message();
  MatmulShape longk = p.shape;
  longk.k = QuantizedMatmul::kMaxK + 1;
  auto overlong = QuantizedMatmul::Create(
      longk, Tensor::FromFloats(DType::kF32, {1, longk.k}, std::vector<float>(longk.k)), nullptr,
      Tensor(), ActiveCpuTier());
  ASSERT_FALSE(overlong.ok());
  EXPECT_NE(overlong.status().message().find("limit"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Formats, QuantizedMatmulTest, ::testing::Values(DType::kI8, DType::kI4),
                         [](const ::testing::TestParamInfo<DType>& info) {
                           return std::string(DTypeName(info.param));
                         });

}  // namespace
}  // namespace moe
