// PanelMatmul (the project's own AVX2 kernels): its summation order is the
// sequential fma chain it promises (checked bitwise against std::fma
// loops here), its results match a naive double reference within stated
// bounds, and a row's bits never depend on the batch around it or on the
// thread count.
#include "experts/panel_matmul.h"

#include <cmath>
#include <cstring>
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
using ::moe::testing::NaiveRoundBf16;
using ::moe::testing::RandomTokens;

class PanelMatmulTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!CpuMeetsBaseline()) GTEST_SKIP() << "this CPU lacks AVX2/FMA/F16C";
  }
};

struct Problem {
  MatmulShape shape;
  std::vector<float> w;     // [N, K], values representable in the compute dtype
  std::vector<float> bias;  // [N] or empty
  Tensor w_tensor, bias_tensor;
};

Problem MakeProblem(int64_t k, int64_t n, DType compute, DType dst, MatmulPostOp post,
                    Activation act, bool bias, uint32_t seed) {
  Problem p;
  p.shape.k = k;
  p.shape.n = n;
  p.shape.compute = compute;
  p.shape.dst = dst;
  p.shape.post = post;
  p.shape.activation = act;
  p.shape.bias = bias;
  p.w = RandomTokens(n * k, seed, 0.5f);
  if (compute == DType::kBF16) {
    for (float& v : p.w) v = NaiveRoundBf16(v);
  }
  p.w_tensor = Tensor::FromFloats(compute, {n, k}, p.w);
  if (bias) {
    p.bias = RandomTokens(n, seed + 1, 0.5f);
    p.bias_tensor = Tensor::FromFloats(DType::kF32, {n}, p.bias);
  }
  return p;
}

// Rows in the compute dtype (bf16 values rounded) and as floats.
struct Rows {
  std::vector<float> f;
  std::vector<uint16_t> b;
  const void* data(DType compute) const {
    return compute == DType::kBF16 ? static_cast<const void*>(b.data()) : f.data();
  }
};

Rows MakeRows(int64_t rows, int64_t cols, DType compute, uint32_t seed, float scale = 1.0f) {
  Rows r;
  r.f = RandomTokens(rows * cols, seed, scale);
  r.b.resize(r.f.size());
  for (size_t i = 0; i < r.f.size(); ++i) {
    if (compute == DType::kBF16) r.f[i] = NaiveRoundBf16(r.f[i]);
    uint32_t bits;
    std::memcpy(&bits, &r.f[i], 4);
    r.b[i] = static_cast<uint16_t>(bits >> 16);
  }
  return r;
}

std::vector<float> OutputAsFloats(const std::vector<uint8_t>& out, DType dst) {
  std::vector<float> f(out.size() / static_cast<size_t>(DTypeSize(dst)));
  for (size_t i = 0; i < f.size(); ++i) {
    if (dst == DType::kBF16) {
      uint16_t h;
      std::memcpy(&h, out.data() + 2 * i, 2);
      const uint32_t bits = static_cast<uint32_t>(h) << 16;
      std::memcpy(&f[i], &bits, 4);
    } else {
      std::memcpy(&f[i], out.data() + 4 * i, 4);
    }
  }
  return f;
}

std::vector<uint8_t> RunMatmul(const PanelMatmul& m, const void* x, int64_t rows,
                               const void* multiplier = nullptr) {
  std::vector<uint8_t> out(static_cast<size_t>(rows * m.shape().n * DTypeSize(m.shape().dst)));
  AlignedBuffer scratch;
  m.Execute(x, rows, out.data(), multiplier, &scratch);
  return out;
}

// The contract, literally: acc = fma(x[k], w[n, k], acc) for k in order
// from +0, then + bias. Bitwise.
TEST_F(PanelMatmulTest, SumsAreTheSequentialFmaChain) {
  for (DType compute : {DType::kF32, DType::kBF16}) {
    for (int64_t k : {1, 7, 256, 257, 1030}) {
      for (int64_t n : {1, 15, 16, 17, 100}) {
        SCOPED_TRACE(::testing::Message() << DTypeName(compute) << " K=" << k << " N=" << n);
        Problem p = MakeProblem(k, n, compute, DType::kF32, MatmulPostOp::kNone, Activation::kRelu,
                                true, static_cast<uint32_t>(k * 131 + n));
        ASSERT_OK_AND_ASSIGN(auto m,
                             PanelMatmul::Create(p.shape, p.w_tensor, nullptr, p.bias_tensor));
        const int64_t rows = 9;
        Rows x = MakeRows(rows, k, compute, 5);
        auto got = OutputAsFloats(RunMatmul(*m, x.data(compute), rows), DType::kF32);
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t c = 0; c < n; ++c) {
            float acc = 0.0f;
            for (int64_t i = 0; i < k; ++i) {
              acc = std::fma(x.f[static_cast<size_t>(r * k + i)],
                             p.w[static_cast<size_t>(c * k + i)], acc);
            }
            acc = acc + p.bias[static_cast<size_t>(c)];
            ASSERT_EQ(0, std::memcmp(&acc, &got[static_cast<size_t>(r * n + c)], 4))
                << "row " << r << " col " << c << ": " << acc << " vs "
                << got[static_cast<size_t>(r * n + c)];
          }
        }
      }
    }
  }
}

// Against the naive double reference, every post-op and dst dtype.
// Bounds, relative to the largest |output|: f32 1e-5; a bf16 output 2^-7
// (7.8e-3): the final rounding, plus one bf16 ulp where the f32 and double
// sums fall on opposite sides of the rounding before the post-op.
TEST_F(PanelMatmulTest, MatchesTheNaiveReference) {
  struct Case {
    MatmulPostOp post;
    Activation act;
  };
  const Case cases[] = {{MatmulPostOp::kNone, Activation::kRelu},
                        {MatmulPostOp::kActivation, Activation::kRelu},
                        {MatmulPostOp::kActivation, Activation::kGelu},
                        {MatmulPostOp::kActivation, Activation::kGeluTanh},
                        {MatmulPostOp::kActivation, Activation::kSilu},
                        {MatmulPostOp::kMultiply, Activation::kRelu}};
  for (DType compute : {DType::kF32, DType::kBF16}) {
    for (DType dst : {DType::kF32, DType::kBF16}) {
      for (const Case& c : cases) {
        for (bool bias : {false, true}) {
          const int64_t k = 300, n = 72, rows = 14;
          SCOPED_TRACE(::testing::Message() << DTypeName(compute) << "->" << DTypeName(dst)
                                            << " post " << static_cast<int>(c.post) << " "
                                            << ActivationName(c.act) << " bias " << bias);
          Problem p = MakeProblem(k, n, compute, dst, c.post, c.act, bias, 11);
          ASSERT_OK_AND_ASSIGN(auto m,
                               PanelMatmul::Create(p.shape, p.w_tensor, nullptr, p.bias_tensor));
          Rows x = MakeRows(rows, k, compute, 12, 0.3f);
          Rows mul = MakeRows(rows, n, compute, 13, 2.0f);
          auto got = OutputAsFloats(
              RunMatmul(*m, x.data(compute), rows,
                        c.post == MatmulPostOp::kMultiply ? mul.data(compute) : nullptr),
              dst);
          std::vector<double> want(static_cast<size_t>(rows * n));
          for (int64_t r = 0; r < rows; ++r) {
            for (int64_t j = 0; j < n; ++j) {
              double s = 0;
              for (int64_t i = 0; i < k; ++i) {
                s += static_cast<double>(x.f[static_cast<size_t>(r * k + i)]) *
                     p.w[static_cast<size_t>(j * k + i)];
              }
              if (bias) s += p.bias[static_cast<size_t>(j)];
              // A bf16 Linear's result is rounded before its post-op.
              if (dst == DType::kBF16 && c.post != MatmulPostOp::kNone) {
                s = NaiveRoundBf16(static_cast<float>(s));
              }
              if (c.post == MatmulPostOp::kActivation) s = NaiveActivation(c.act, s);
              if (c.post == MatmulPostOp::kMultiply) s *= mul.f[static_cast<size_t>(r * n + j)];
              want[static_cast<size_t>(r * n + j)] = s;
            }
          }
          const double bound = dst == DType::kBF16 ? 7.8e-3 : 1e-5;
          EXPECT_LE(MaxRelativeError(got, want), bound);
        }
      }
    }
  }
}

// Each row of a batch is bitwise the row computed alone, at the first,
// an interior and the last position, for row counts across the tile
// sizes, the 256-row passes and the thread splits.
TEST_F(PanelMatmulTest, RowsAreBatchInvariant) {
  for (DType compute : {DType::kF32, DType::kBF16}) {
    const int64_t k = 520, n = 200;
    Problem p =
        MakeProblem(k, n, compute, compute, MatmulPostOp::kActivation, Activation::kSilu, true, 21);
    ASSERT_OK_AND_ASSIGN(auto m, PanelMatmul::Create(p.shape, p.w_tensor, nullptr, p.bias_tensor));
    const size_t out_row = static_cast<size_t>(n * DTypeSize(compute));
    const size_t in_row = static_cast<size_t>(k * DTypeSize(compute));
    Rows probe = MakeRows(1, k, compute, 22);
    const auto alone = RunMatmul(*m, probe.data(compute), 1);
    for (int64_t rows : {2, 3, 5, 6, 7, 12, 13, 40, 255, 256, 257, 600}) {
      Rows batch = MakeRows(rows, k, compute, static_cast<uint32_t>(rows));
      for (int64_t at : {int64_t{0}, rows / 2, rows - 1}) {
        std::vector<uint8_t> in(static_cast<size_t>(rows) * in_row);
        std::memcpy(in.data(), batch.data(compute), in.size());
        std::memcpy(in.data() + at * in_row, probe.data(compute), in_row);
        const auto out = RunMatmul(*m, in.data(), rows);
        ASSERT_EQ(0, std::memcmp(alone.data(), out.data() + at * out_row, out_row))
            << DTypeName(compute) << " rows=" << rows << " at " << at;
      }
    }
#ifdef _OPENMP
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    Rows batch = MakeRows(37, k, compute, 23);
    const auto one_thread = RunMatmul(*m, batch.data(compute), 37);
    omp_set_num_threads(threads > 1 ? threads : 2);
    const auto many = RunMatmul(*m, batch.data(compute), 37);
    omp_set_num_threads(threads);
    EXPECT_EQ(one_thread, many) << DTypeName(compute) << ": thread count changed the bits";
#endif
  }
}

// [top; bottom] packs as the stacked matrix, whatever the split.
TEST_F(PanelMatmulTest, StackedPartsAreTheStackedMatrix) {
  for (int64_t n_top : {16, 20, 64}) {
    const int64_t k = 33, n = n_top + 40;
    Problem p = MakeProblem(k, n, DType::kBF16, DType::kBF16, MatmulPostOp::kNone,
                            Activation::kRelu, false, 31);
    std::vector<float> top(p.w.begin(), p.w.begin() + n_top * k);
    std::vector<float> bottom(p.w.begin() + n_top * k, p.w.end());
    ASSERT_OK_AND_ASSIGN(auto whole, PanelMatmul::Create(p.shape, p.w_tensor, nullptr, Tensor()));
    Tensor t = Tensor::FromFloats(DType::kF32, {n_top, k}, top);
    Tensor b = Tensor::FromFloats(DType::kBF16, {n - n_top, k}, bottom);
    ASSERT_OK_AND_ASSIGN(auto parts, PanelMatmul::Create(p.shape, t, &b, Tensor()));
    Rows x = MakeRows(5, k, DType::kBF16, 32);
    EXPECT_EQ(RunMatmul(*whole, x.data(DType::kBF16), 5),
              RunMatmul(*parts, x.data(DType::kBF16), 5))
        << "n_top=" << n_top;
  }
}

TEST_F(PanelMatmulTest, RejectsAnEmptyDimension) {
  MatmulShape s;
  s.k = 0;
  s.n = 16;
  Tensor w = Tensor::FromFloats(DType::kF32, {16, 0}, {});
  auto m = PanelMatmul::Create(s, w, nullptr, Tensor());
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(m.status().message().find("empty dimension"), std::string::npos);
}

// Special values go through as PyTorch's would: NaN stays NaN, silu(-inf)
// is NaN, silu(+inf) = +inf, relu keeps NaN.
TEST_F(PanelMatmulTest, SpecialValues) {
  const float inf = INFINITY;
  for (Activation act :
       {Activation::kRelu, Activation::kSilu, Activation::kGelu, Activation::kGeluTanh}) {
    MatmulShape s;
    s.k = 1;
    s.n = 1;
    s.post = MatmulPostOp::kActivation;
    s.activation = act;
    Tensor w = Tensor::FromFloats(DType::kF32, {1, 1}, {1.0f});
    ASSERT_OK_AND_ASSIGN(auto m, PanelMatmul::Create(s, w, nullptr, Tensor()));
    const std::vector<float> x = {NAN, inf, -inf, 0.0f, 100.0f, -100.0f};
    auto y = OutputAsFloats(RunMatmul(*m, x.data(), static_cast<int64_t>(x.size())), DType::kF32);
    SCOPED_TRACE(ActivationName(act));
    EXPECT_TRUE(std::isnan(y[0]));
    EXPECT_EQ(y[1], inf);
    if (act == Activation::kRelu) {
      EXPECT_EQ(y[2], 0.0f);
    } else if (act == Activation::kSilu || act == Activation::kGeluTanh) {
      EXPECT_TRUE(std::isnan(y[2]));
    }
    EXPECT_EQ(y[3], 0.0f);
    EXPECT_NEAR(y[4], 100.0f, 1e-4f);
    EXPECT_NEAR(y[5], 0.0f, 1e-30f);
  }
}

// ApplyBf16PostOp (the bf16 post-op after oneDNN's rounded result): each
// value is bf16(act(v)) or bf16(v × m) of the bf16 inputs, against
// double-precision activations rounded by the reference: equal, or one
// bf16 ulp apart where the exact result lies within the f32 activation's
// error of a rounding boundary. The bits do not depend on how the values
// are split between calls.
TEST_F(PanelMatmulTest, Bf16PostOpRoundsEachStep) {
  constexpr int64_t kRows = 7, kCols = 1100;
  const Rows in = MakeRows(kRows, kCols, DType::kBF16, 31, 6.0f);
  const Rows mul = MakeRows(kRows, kCols, DType::kBF16, 32, 3.0f);
  for (MatmulPostOp post : {MatmulPostOp::kActivation, MatmulPostOp::kMultiply}) {
    for (Activation act :
         {Activation::kRelu, Activation::kGelu, Activation::kGeluTanh, Activation::kSilu}) {
      if (post == MatmulPostOp::kMultiply && act != Activation::kRelu) continue;
      MatmulShape s;
      s.k = 16;
      s.n = kCols;
      s.compute = DType::kBF16;
      s.dst = DType::kBF16;
      s.post = post;
      s.activation = act;
      SCOPED_TRACE(post == MatmulPostOp::kMultiply ? "multiply" : ActivationName(act));
      std::vector<uint16_t> whole = in.b;
      ApplyBf16PostOp(s, kRows, mul.b.data(), whole.data());
      int64_t off_by_one = 0;
      for (size_t i = 0; i < whole.size(); ++i) {
        const double v = in.f[i];
        const double exact =
            post == MatmulPostOp::kMultiply ? v * mul.f[i] : testing::NaiveActivation(act, v);
        const float want = NaiveRoundBf16(static_cast<float>(exact));
        const uint32_t got_bits = static_cast<uint32_t>(whole[i]) << 16;
        float got;
        std::memcpy(&got, &got_bits, 4);
        if (got == want) continue;
        ++off_by_one;
        // One bf16 ulp at most, and only next to a rounding boundary.
        EXPECT_LE(std::fabs(got - want), std::ldexp(std::fabs(want), -7) + 1e-38) << "at " << i;
      }
      EXPECT_LE(off_by_one, 3);
      // Row by row, in odd pieces: the same bits.
      std::vector<uint16_t> pieces = in.b;
      MatmulShape one_row = s;
      for (int64_t r = 0; r < kRows; ++r) {
        ApplyBf16PostOp(one_row, 1, mul.b.data() + r * kCols, pieces.data() + r * kCols);
      }
      EXPECT_EQ(pieces, whole);
    }
  }
}

}  // namespace
}  // namespace moe
