// StreamingMatmul and the streaming path of PackedMatmul: the kernel sums
// in the order it states (checked against plain loops), its epilogue is
// the plain f32 bias add and product, and for 1..kMaxRows (12) rows
// PackedMatmul's result is bitwise that of oneDNN's matmul primitives,
// post-ops and dst conversion included, on preset and ragged shapes.
#include "experts/streaming_matmul.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/cpu_tier.h"
#include "experts/aligned_buffer.h"
#include "experts/dnnl_engine.h"
#include "experts/packed_matmul.h"
#include "gtest/gtest.h"
#include "tests/naive_reference.h"
#include "tests/status_matchers.h"

namespace moe {
namespace {

using ::moe::testing::RandomTokens;

// The streaming kernel belongs to the AVX-512 tiers (f32 from avx512, bf16
// from avx512_bf16); below them these tests skip, saying so.
bool HasAvx512() { return ActiveCpuTier() >= CpuTier::kAvx512; }
bool HasAvx512Bf16() { return ActiveCpuTier() >= CpuTier::kAvx512Bf16; }

// Values in the compute dtype's bytes.
std::vector<uint8_t> AsDtype(const std::vector<float>& v, DType t) {
  std::vector<uint8_t> out(v.size() * DTypeSize(t));
  for (size_t i = 0; i < v.size(); ++i) {
    if (t == DType::kBF16) {
      const uint16_t b = FloatToBf16(v[i]);
      std::memcpy(out.data() + 2 * i, &b, 2);
    } else {
      std::memcpy(out.data() + 4 * i, &v[i], 4);
    }
  }
  return out;
}

// The packed weights of a [n, k] matrix, as PackedMatmul packs them.
struct Packed {
  dnnl::memory::desc desc;
  dnnl::memory mem;
};

Packed Pack(const std::vector<float>& w_nk, int64_t k, int64_t n, DType compute) {
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  const dt type = compute == DType::kBF16 ? dt::bf16 : dt::f32;
  const dnnl::engine& eng = CpuEngine();
  dnnl::stream s(eng);
  dnnl::memory::desc src({64, k}, type, tag::ab), dst({64, n}, dt::f32, tag::ab);
  dnnl::matmul::primitive_desc pd(
      dnnl::matmul::desc(src, dnnl::memory::desc({k, n}, type, tag::any), dst), eng);
  std::vector<uint8_t> bytes = AsDtype(w_nk, compute);
  dnnl::memory user({{k, n}, type, tag::ba}, eng, bytes.data());
  dnnl::memory packed(pd.weights_desc(), eng);
  dnnl::reorder(user, packed).execute(s, user, packed);
  s.wait();
  return {pd.weights_desc(), packed};
}

// The f32 kernel against plain loops in its stated order: for each output,
// one fused multiply-add per k from zero within each chunk, the chunks'
// sums added left to right.
TEST(StreamingMatmulTest, F32SumsInTheStatedOrder) {
  if (!HasAvx512())
    GTEST_SKIP() << "the streaming kernel needs the avx512 tier; active tier "
                 << CpuTierName(ActiveCpuTier());
  for (auto [k, n] : {std::pair<int64_t, int64_t>{1024, 2816}, {100, 72}, {33, 130}}) {
    auto w = RandomTokens(k * n, 5, 0.05f);
    Packed p = Pack(w, k, n, DType::kF32);
    auto kernel = StreamingMatmul::ForLayout(p.desc, DType::kF32, k, n);
    ASSERT_TRUE(kernel.has_value()) << k << "x" << n;
    auto x = RandomTokens(StreamingMatmul::kMaxRows * k, 6);
    auto bias = RandomTokens(n, 15);
    auto mul = RandomTokens(StreamingMatmul::kMaxRows * n, 16, 2.0f);
    for (int64_t chunk : {int64_t{16}, int64_t{64}, kernel->k_padded()}) {
      for (int64_t rows = 1; rows <= StreamingMatmul::kMaxRows; ++rows) {
        std::vector<uint8_t> pad(kernel->XPadBytes(rows));
        std::vector<float> got(static_cast<size_t>(rows * n));
        kernel->Run(p.mem.get_data_handle(), x.data(), rows, chunk, {}, pad.data(), got.data());
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t j = 0; j < n; ++j) {
            float total = 0.0f;
            for (int64_t c0 = 0; c0 < k; c0 += chunk) {
              float part = 0.0f;
              for (int64_t i = c0; i < std::min(k, c0 + chunk); ++i) {
                part = std::fma(x[r * k + i], w[j * k + i], part);
              }
              total = c0 == 0 ? part : total + part;
            }
            ASSERT_EQ(0, std::memcmp(&total, &got[r * n + j], 4))
                << k << "x" << n << " chunk " << chunk << " row " << r << " col " << j << ": "
                << total << " vs " << got[r * n + j];
          }
        }
        // The epilogue: (sum + bias) * multiplier, as two plain f32 steps.
        StreamingMatmul::Epilogue epilogue;
        epilogue.bias = bias.data();
        epilogue.multiplier = mul.data();
        std::vector<float> fused(static_cast<size_t>(rows * n));
        kernel->Run(p.mem.get_data_handle(), x.data(), rows, chunk, epilogue, pad.data(),
                    fused.data());
        for (int64_t i = 0; i < rows * n; ++i) {
          const float want = (got[i] + bias[i % n]) * mul[i];
          ASSERT_EQ(0, std::memcmp(&want, &fused[i], 4)) << k << "x" << n << " at " << i;
        }
      }
    }
  }
}

// bf16 products are exact in f32; vdpbf16ps's internal rounding is the
// CPU's, so the check is against double precision with a tolerance of
// 1e-5 of the sum of |products|.
TEST(StreamingMatmulTest, Bf16IsTheDotProductWithinF32Rounding) {
  if (!HasAvx512Bf16())
    GTEST_SKIP() << "bf16 streaming needs the avx512_bf16 tier; active tier "
                 << CpuTierName(ActiveCpuTier());
  const int64_t k = 300, n = 200;
  auto w = RandomTokens(k * n, 7, 0.05f);
  Packed p = Pack(w, k, n, DType::kBF16);
  auto kernel = StreamingMatmul::ForLayout(p.desc, DType::kBF16, k, n);
  ASSERT_TRUE(kernel.has_value());
  auto xf = RandomTokens(3 * k, 8);
  auto xb = AsDtype(xf, DType::kBF16);
  std::vector<uint8_t> pad(kernel->XPadBytes(3));
  std::vector<float> got(static_cast<size_t>(3 * n));
  kernel->Run(p.mem.get_data_handle(), xb.data(), 3, 64, {}, pad.data(), got.data());
  for (int64_t r = 0; r < 3; ++r) {
    for (int64_t j = 0; j < n; ++j) {
      double sum = 0, mag = 0;
      for (int64_t i = 0; i < k; ++i) {
        const double prod = static_cast<double>(RoundToBf16(xf[r * k + i])) *
                            static_cast<double>(RoundToBf16(w[j * k + i]));
        sum += prod;
        mag += std::fabs(prod);
      }
      EXPECT_NEAR(got[r * n + j], sum, 1e-5 * mag + 1e-30) << "row " << r << " col " << j;
    }
  }
}

TEST(StreamingMatmulTest, RefusesLayoutsItDoesNotRead) {
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  dnnl::memory::desc plain({64, 128}, dt::f32, tag::ab);
  EXPECT_FALSE(StreamingMatmul::ForLayout(plain, DType::kF32, 64, 128).has_value());
  dnnl::memory::desc wrong_dims({64, 128}, dt::f32, tag::ab);
  EXPECT_FALSE(StreamingMatmul::ForLayout(wrong_dims, DType::kF32, 32, 128).has_value());
}

struct Case {
  int64_t k, n;
  DType compute, dst;
  MatmulPostOp post;
  Activation activation;
  bool bias;
};

std::string Name(const Case& c) {
  return absl::StrCat(c.k, "x", c.n, " ", DTypeName(c.compute), "->", DTypeName(c.dst), " post",
                      static_cast<int>(c.post), " act", static_cast<int>(c.activation),
                      c.bias ? " bias" : "");
}

// 1..kMaxRows rows through the streaming path are bitwise the matmul
// primitives'.
TEST(PackedMatmulStreamingTest, SmallRowCountsAreBitwiseThePrimitives) {
  if (!HasAvx512())
    GTEST_SKIP() << "the streaming kernel needs the avx512 tier; active tier "
                 << CpuTierName(ActiveCpuTier());
  std::vector<Case> cases;
  for (DType compute : {DType::kF32, DType::kBF16}) {
    if (compute == DType::kBF16 && !CpuHasNativeBf16()) continue;
    // The demo preset's three matrices, as DenseFfn configures them.
    cases.push_back(
        {1024, 2816, compute, compute, MatmulPostOp::kActivation, Activation::kSilu, false});
    cases.push_back(
        {1024, 2816, compute, compute, MatmulPostOp::kMultiply, Activation::kRelu, false});
    cases.push_back(
        {2816, 1024, compute, DType::kF32, MatmulPostOp::kNone, Activation::kRelu, false});
    // Ragged shapes, biases, the other activations.
    cases.push_back(
        {100, 72, compute, compute, MatmulPostOp::kActivation, Activation::kGelu, true});
    cases.push_back(
        {33, 130, compute, compute, MatmulPostOp::kActivation, Activation::kGeluTanh, false});
    cases.push_back(
        {200, 64, compute, compute, MatmulPostOp::kActivation, Activation::kRelu, true});
    cases.push_back({96, 200, compute, DType::kF32, MatmulPostOp::kNone, Activation::kRelu, true});
    cases.push_back({72, 100, compute, compute, MatmulPostOp::kMultiply, Activation::kRelu, true});
  }
  int streamed = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(Name(c));
    MatmulShape shape;
    shape.k = c.k;
    shape.n = c.n;
    shape.compute = c.compute;
    shape.dst = c.dst;
    shape.post = c.post;
    shape.activation = c.activation;
    shape.bias = c.bias;
    MatmulCacheRegistry registry;
    Tensor w = Tensor::FromFloats(c.compute, {c.n, c.k}, RandomTokens(c.k * c.n, 9, 0.05f));
    Tensor b = c.bias ? Tensor::FromFloats(DType::kF32, {c.n}, RandomTokens(c.n, 10)) : Tensor();
    ASSERT_OK_AND_ASSIGN(auto mm, PackedMatmul::Create(w, b, shape, &registry, "w"));
    if (absl::StrContains(mm->impl(), "streaming kernel")) ++streamed;
    // The presets must stream on a CPU with the instructions.
    // The presets must stream where oneDNN runs its AVX-512 brgemm (not
    // AMX, whose order differs) and the path is not switched off.
    const char* off = std::getenv("MOE_STREAMING_KERNEL");
    const bool expect_streaming = c.k >= 1024 && (off == nullptr || std::string(off) != "0") &&
                                  absl::StartsWith(mm->impl(), "brg:avx512_core") &&
                                  !absl::StrContains(mm->impl(), "amx");
    if (expect_streaming) {
      EXPECT_TRUE(absl::StrContains(mm->impl(), "streaming kernel")) << mm->impl();
    }
    std::printf("%s: %s\n", Name(c).c_str(), mm->impl().c_str());
    AlignedBuffer scratch;
    dnnl::stream stream(CpuEngine());
    const int64_t max_rows = StreamingMatmul::kMaxRows;
    auto x = AsDtype(RandomTokens(max_rows * c.k, 11, 3.0f), c.compute);
    auto mul = AsDtype(RandomTokens(max_rows * c.n, 12, 2.0f), c.compute);
    const void* m = c.post == MatmulPostOp::kMultiply ? mul.data() : nullptr;
    const size_t out_bytes = static_cast<size_t>(max_rows * c.n) * DTypeSize(c.dst);
    for (int64_t rows = 1; rows <= StreamingMatmul::kMaxRows; ++rows) {
      std::vector<uint8_t> got(out_bytes, 0xAB), want(out_bytes, 0xCD);
      ASSERT_OK(mm->Execute(x.data(), rows, got.data(), m, &scratch, &stream));
      ASSERT_OK(mm->ExecutePrimitives(x.data(), rows, want.data(), m, &scratch, &stream));
      const size_t bytes = static_cast<size_t>(rows * c.n) * DTypeSize(c.dst);
      EXPECT_EQ(0, std::memcmp(got.data(), want.data(), bytes)) << rows << " rows";
    }
  }
  EXPECT_GT(streamed, 0);
}

// Weights that give every K order the same sums cannot show which order
// oneDNN uses: the path stays off for them, results are still the
// primitives', and the next matrix of the shape decides.
TEST(PackedMatmulStreamingTest, UninformativeWeightsKeepThePrimitives) {
  MatmulShape shape;
  shape.k = 256;
  shape.n = 128;
  MatmulCacheRegistry registry;
  Tensor w = Tensor::FromFloats(DType::kF32, {128, 256}, std::vector<float>(256 * 128, 0.0f));
  ASSERT_OK_AND_ASSIGN(auto mm, PackedMatmul::Create(w, Tensor(), shape, &registry, "w"));
  EXPECT_FALSE(absl::StrContains(mm->impl(), "streaming kernel")) << mm->impl();
  AlignedBuffer scratch;
  dnnl::stream stream(CpuEngine());
  auto x = RandomTokens(256, 13);
  std::vector<float> y(128, 1.0f);
  ASSERT_OK(mm->Execute(x.data(), 1, y.data(), nullptr, &scratch, &stream));
  for (float v : y) EXPECT_EQ(v, 0.0f);
  // The next matrix of the shape decides.
  if (HasAvx512()) {
    Tensor w2 = Tensor::FromFloats(DType::kF32, {128, 256}, RandomTokens(256 * 128, 14, 0.05f));
    ASSERT_OK_AND_ASSIGN(auto mm2, PackedMatmul::Create(w2, Tensor(), shape, &registry, "w2"));
    EXPECT_TRUE(absl::StrContains(mm2->impl(), "streaming kernel")) << mm2->impl();
    std::vector<float> want(128);
    ASSERT_OK(mm2->Execute(x.data(), 1, y.data(), nullptr, &scratch, &stream));
    ASSERT_OK(mm2->ExecutePrimitives(x.data(), 1, want.data(), nullptr, &scratch, &stream));
    EXPECT_EQ(0, std::memcmp(y.data(), want.data(), 128 * sizeof(float)));
  }
}

}  // namespace
}  // namespace moe
