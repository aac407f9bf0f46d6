// The vectorised hot-path loops against their definitions, written here as
// plain scalar loops. Whichever path the CPU takes (AVX-512 or portable),
// results must be bitwise equal, including NaN, infinities, subnormals,
// signed zeros and every tail length.
#include "common/vector_kernels.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <vector>

#include "common/dtype.h"
#include "common/seeded_random.h"
#include "gtest/gtest.h"

namespace moe {
namespace {

uint32_t Bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

std::vector<float> TrickyFloats(int64_t n, uint64_t seed) {
  SeededRandom rng(seed);
  std::vector<float> v = rng.UniformVector(n, 3.0f);
  const float specials[] = {0.0f,
                            -0.0f,
                            std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(),
                            std::numeric_limits<float>::quiet_NaN(),
                            std::numeric_limits<float>::denorm_min(),
                            -1e-40f,
                            std::numeric_limits<float>::max(),
                            -std::numeric_limits<float>::max(),
                            1.00390625f /* exactly halfway between two bf16 */,
                            1.01171875f /* halfway, rounds up to even */};
  for (int64_t i = 0; i < n; i += 7) v[static_cast<size_t>(i)] = specials[(i / 7) % 11];
  // A signalling NaN bit pattern, which must come out quiet.
  if (n > 3) {
    const uint32_t snan = 0xff800001u;
    std::memcpy(&v[3], &snan, 4);
  }
  return v;
}

TEST(VectorKernelsTest, FloatsToBf16MatchesScalarRoundingForEveryLength) {
  for (int64_t n = 0; n <= 70; ++n) {
    std::vector<float> x = TrickyFloats(n, static_cast<uint64_t>(n) + 1);
    std::vector<uint16_t> got(static_cast<size_t>(n) + 1, 0xabcd);
    FloatToBf16Array(x.data(), n, got.data());
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_EQ(got[static_cast<size_t>(i)], FloatToBf16(x[static_cast<size_t>(i)]))
          << "n=" << n << " i=" << i << " bits=" << Bits(x[static_cast<size_t>(i)]);
    }
    EXPECT_EQ(got[static_cast<size_t>(n)], 0xabcd) << "wrote past the end, n=" << n;
  }
}

TEST(VectorKernelsTest, AddScaledIsRoundedProductThenSum) {
  for (int64_t n : {0, 1, 15, 16, 17, 33, 1024, 1031}) {
    std::vector<float> x = TrickyFloats(n, 7);
    SeededRandom rng(9);
    std::vector<float> y = rng.UniformVector(n + 1, 2.0f);
    std::vector<float> want = y;
    const float w = 0.3f;
    for (int64_t i = 0; i < n; ++i) {
      volatile float p = w * x[static_cast<size_t>(i)];
      want[static_cast<size_t>(i)] = want[static_cast<size_t>(i)] + p;
    }
    AddScaled(w, x.data(), n, y.data());
    for (int64_t i = 0; i <= n; ++i) {
      const float a = y[static_cast<size_t>(i)], b = want[static_cast<size_t>(i)];
      ASSERT_TRUE(Bits(a) == Bits(b) || (std::isnan(a) && std::isnan(b)))
          << "n=" << n << " i=" << i << ": " << a << " vs " << b;
    }
  }
}

TEST(VectorKernelsTest, FixedOrderDotUsesSixteenLanesAndAHalvingTree) {
  for (int64_t n = 0; n <= 80; ++n) {
    SeededRandom rng(static_cast<uint64_t>(n) + 100);
    std::vector<float> a = rng.UniformVector(n, 1.0f), b = rng.UniformVector(n, 1.0f);
    volatile float lanes[16] = {};
    for (int64_t i = 0; i < n; ++i) {
      volatile float p = a[static_cast<size_t>(i)] * b[static_cast<size_t>(i)];
      lanes[i % 16] = lanes[i % 16] + p;
    }
    for (int width = 8; width > 0; width /= 2) {
      for (int l = 0; l < width; ++l) lanes[l] = lanes[l] + lanes[l + width];
    }
    const float got = FixedOrderDot(a.data(), b.data(), n);
    EXPECT_EQ(Bits(got), Bits(lanes[0])) << "n=" << n;
  }
}

// SiluProduct's definition (vector_kernels.h), one element at a time.
float DefinedExp(float x) {
  if (x > 88.0f) return std::numeric_limits<float>::infinity();
  if (x < -87.0f) x = -87.0f;
  const float n = std::nearbyint(x * 1.44269504089f);
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  const float c[8] = {1.0f, 1.0f, 0.5f, 1.0f / 6, 1.0f / 24, 1.0f / 120, 1.0f / 720, 1.0f / 5040};
  float p = c[7];
  for (int i = 6; i >= 0; --i) p = p * r + c[i];
  return std::ldexp(p, static_cast<int>(n));
}

float DefinedSilu(float g) {
  if (std::isnan(g)) return g + 0.0f;  // quiet
  return g / (1.0f + DefinedExp(-g));
}

std::vector<float> GateValues(int64_t n, uint64_t seed) {
  std::vector<float> v = TrickyFloats(n, seed);
  // Gates across the whole range SiLU sees, clamped arguments included.
  SeededRandom rng(seed + 1000);
  for (int64_t i = 1; i < n; i += 5) v[static_cast<size_t>(i)] = rng.Uniform(120.0f);
  return v;
}

bool SameFloat(float a, float b) { return Bits(a) == Bits(b) || (std::isnan(a) && std::isnan(b)); }

TEST(VectorKernelsTest, SiluProductMatchesItsDefinitionForEveryLength) {
  for (int64_t n = 0; n <= 70; ++n) {
    std::vector<float> g = GateValues(n, static_cast<uint64_t>(n) + 20);
    std::vector<float> u = TrickyFloats(n, static_cast<uint64_t>(n) + 40);
    std::vector<float> got(static_cast<size_t>(n) + 1, 7.0f);
    SiluProduct(g.data(), u.data(), n, got.data());
    for (int64_t i = 0; i < n; ++i) {
      const size_t k = static_cast<size_t>(i);
      const float want = DefinedSilu(g[k]) * u[k];
      ASSERT_TRUE(SameFloat(got[k], want)) << "n=" << n << " i=" << i << " gate=" << g[k]
                                           << " up=" << u[k] << ": " << got[k] << " vs " << want;
    }
    EXPECT_EQ(got[static_cast<size_t>(n)], 7.0f) << "wrote past the end, n=" << n;
  }
}

TEST(VectorKernelsTest, SiluProductBf16RoundsSiluThenProduct) {
  for (int64_t n = 0; n <= 70; ++n) {
    std::vector<float> gf = GateValues(n, static_cast<uint64_t>(n) + 60);
    std::vector<float> uf = TrickyFloats(n, static_cast<uint64_t>(n) + 80);
    std::vector<uint16_t> g(static_cast<size_t>(n)), u(static_cast<size_t>(n));
    FloatToBf16Array(gf.data(), n, g.data());
    FloatToBf16Array(uf.data(), n, u.data());
    std::vector<uint16_t> got(static_cast<size_t>(n) + 1, 0xabcd);
    SiluProductBf16(g.data(), u.data(), n, got.data());
    for (int64_t i = 0; i < n; ++i) {
      const size_t k = static_cast<size_t>(i);
      const float s = RoundToBf16(DefinedSilu(Bf16ToFloat(g[k])));
      const uint16_t want = FloatToBf16(s * Bf16ToFloat(u[k]));
      ASSERT_TRUE(got[k] == want ||
                  (std::isnan(Bf16ToFloat(got[k])) && std::isnan(Bf16ToFloat(want))))
          << "n=" << n << " i=" << i << " gate=" << Bf16ToFloat(g[k]) << " up=" << Bf16ToFloat(u[k])
          << ": " << got[k] << " vs " << want;
    }
    EXPECT_EQ(got[static_cast<size_t>(n)], 0xabcd) << "wrote past the end, n=" << n;
  }
}

// Accuracy against double precision: within 3 ulp of the exact product
// wherever silu is a normal float.
TEST(VectorKernelsTest, SiluProductIsWithinThreeUlpOfExact) {
  constexpr int64_t kCount = 200000;
  std::vector<float> g(kCount), u(kCount, 1.0f), got(kCount);
  for (int64_t i = 0; i < kCount; ++i) {
    g[static_cast<size_t>(i)] = -120.0f + 240.0f * static_cast<float>(i) / kCount;
  }
  SiluProduct(g.data(), u.data(), kCount, got.data());
  double worst = 0;
  for (int64_t i = 0; i < kCount; ++i) {
    const double x = g[static_cast<size_t>(i)];
    const double exact = x / (1.0 + std::exp(-x));
    if (std::fabs(exact) < 1e-30) continue;
    const double ulp = std::ldexp(1.0, std::ilogb(exact) - 23);
    worst = std::max(worst, std::fabs(got[static_cast<size_t>(i)] - exact) / ulp);
  }
  EXPECT_LE(worst, 3.0) << "worst error in ulp";
  std::printf("SiluProduct: worst error %.2f ulp\n", worst);
}

// Far out on the negative side silu goes to -0 (not to g / e^88), and at
// -inf it is NaN, as g / (1 + exp(-g)) is in PyTorch; +inf stays +inf.
TEST(VectorKernelsTest, SiluProductAtTheEnds) {
  const float inf = std::numeric_limits<float>::infinity();
  const float big = std::numeric_limits<float>::max();
  std::vector<float> g = {-1e30f, -big, -100.0f, -inf, inf, big, 100.0f};
  g.resize(32, -1e30f);  // the vector path as well as the tail
  std::vector<float> u(g.size(), 1.0f), got(g.size());
  SiluProduct(g.data(), u.data(), static_cast<int64_t>(g.size()), got.data());
  for (size_t i : {size_t{0}, size_t{1}, size_t{2}, size_t{20}, size_t{31}}) {
    EXPECT_EQ(Bits(got[i]), Bits(-0.0f)) << "gate " << g[i] << " gave " << got[i];
  }
  EXPECT_TRUE(std::isnan(got[3])) << got[3];
  EXPECT_EQ(got[4], inf);
  EXPECT_EQ(got[5], big);
  EXPECT_EQ(got[6], 100.0f);
}

// gpt-oss's clamped SwiGLU against its definition in double precision:
// (clamp(up) + 1) * g * sigmoid(1.702 g), g = min(gate, 7); the clamps are
// exact, so the result is within a few ulp of the exact one, clamped
// values included, and NaN stays NaN.
TEST(VectorKernelsTest, ClampedSwigluProductMatchesItsDefinition) {
  constexpr int64_t kCount = 20001;
  constexpr float kLimit = 7.0f;
  std::vector<float> g(kCount), u(kCount), got(kCount);
  for (int64_t i = 0; i < kCount; ++i) {
    g[static_cast<size_t>(i)] = -30.0f + 60.0f * static_cast<float>(i) / kCount;
    u[static_cast<size_t>(i)] = 20.0f - 40.0f * static_cast<float>((i * 7919) % kCount) / kCount;
  }
  ClampedSwigluProduct(g.data(), u.data(), kCount, kLimit, got.data());
  double worst = 0;
  for (int64_t i = 0; i < kCount; ++i) {
    const size_t k = static_cast<size_t>(i);
    const double gate = std::min<double>(g[k], kLimit);
    const double up = std::max<double>(std::min<double>(u[k], kLimit), -kLimit);
    // The argument as f32 computes it (its rounding, amplified by exp at
    // large |g|, is inherent to f32, as in PyTorch); the rest exact.
    const double arg = static_cast<float>(1.702f * static_cast<float>(gate));
    const double exact = (up + 1.0) * gate / (1.0 + std::exp(-arg));
    if (std::fabs(exact) < 1e-30) continue;
    const double ulp = std::ldexp(1.0, std::ilogb(exact) - 23);
    worst = std::max(worst, std::fabs(got[k] - exact) / ulp);
  }
  EXPECT_LE(worst, 8.0) << "worst error in ulp";
  std::printf("ClampedSwigluProduct: worst error %.2f ulp\n", worst);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float gates[] = {nan, 1.0f, 100.0f};
  const float ups[] = {1.0f, nan, -100.0f};
  float out[3];
  ClampedSwigluProduct(gates, ups, 3, kLimit, out);
  EXPECT_TRUE(std::isnan(out[0]));
  EXPECT_TRUE(std::isnan(out[1]));
  // gate clamped to 7, up to -7: (-7 + 1) * 7 * sigmoid(11.914).
  EXPECT_NEAR(out[2], -6.0 * 7.0 / (1.0 + std::exp(-1.702 * 7.0)), 1e-5);
}

// The bf16 version rounds after each of PyTorch's bf16 operations.
TEST(VectorKernelsTest, ClampedSwigluProductBf16RoundsEachStep) {
  for (int64_t n = 0; n <= 40; ++n) {
    std::vector<float> gf = GateValues(n, static_cast<uint64_t>(n) + 160);
    std::vector<float> uf = GateValues(n, static_cast<uint64_t>(n) + 180);
    std::vector<uint16_t> g(static_cast<size_t>(n)), u(static_cast<size_t>(n));
    FloatToBf16Array(gf.data(), n, g.data());
    FloatToBf16Array(uf.data(), n, u.data());
    std::vector<uint16_t> got(static_cast<size_t>(n) + 1, 0xabcd);
    ClampedSwigluProductBf16(g.data(), u.data(), n, 7.0f, got.data());
    for (int64_t i = 0; i < n; ++i) {
      const size_t k = static_cast<size_t>(i);
      const float gate = std::min(Bf16ToFloat(g[k]), 7.0f);
      const float up = std::max(std::min(Bf16ToFloat(u[k]), 7.0f), -7.0f);
      const float a = RoundToBf16(1.702f * gate);
      const float sig = RoundToBf16(1.0f / (1.0f + std::exp(-a)));
      const float glu = RoundToBf16(gate * sig);
      const uint16_t want = FloatToBf16(RoundToBf16(up + 1.0f) * glu);
      // std::exp's sigmoid is within an f32 ulp or two of the kernel's, so
      // the bf16 results agree except at a rounding boundary (a bf16 ulp).
      if (std::isnan(Bf16ToFloat(want))) {
        EXPECT_TRUE(std::isnan(Bf16ToFloat(got[k]))) << "n=" << n << " i=" << i;
        continue;
      }
      EXPECT_LE(std::fabs(Bf16ToFloat(got[k]) - Bf16ToFloat(want)),
                std::ldexp(std::fabs(Bf16ToFloat(want)), -7) + 1e-30)
          << "n=" << n << " i=" << i;
    }
    EXPECT_EQ(got[static_cast<size_t>(n)], 0xabcd) << "wrote past the end, n=" << n;
  }
}

}  // namespace
}  // namespace moe
