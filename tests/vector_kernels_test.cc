// The vectorised hot-path loops against their definitions, written here as
// plain scalar loops. Whichever path the CPU takes (AVX-512 or portable),
// results must be bitwise equal, including NaN, infinities, subnormals,
// signed zeros and every tail length.
#include "common/vector_kernels.h"

#include <cmath>
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
  const float specials[] = {0.0f, -0.0f, std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(),
                            std::numeric_limits<float>::quiet_NaN(),
                            std::numeric_limits<float>::denorm_min(), -1e-40f,
                            std::numeric_limits<float>::max(), -std::numeric_limits<float>::max(),
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
    FloatsToBf16(x.data(), n, got.data());
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

}  // namespace
}  // namespace moe
