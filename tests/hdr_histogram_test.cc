// HdrHistogram percentiles against a sorted-array reference.
#include "client/hdr_histogram.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "gtest/gtest.h"

namespace moe {
namespace {

// The reference: the value at rank ceil(p/100 * n) of the sorted values.
int64_t SortedPercentile(std::vector<int64_t> v, double p) {
  std::sort(v.begin(), v.end());
  const int64_t rank = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(p / 100.0 * v.size())));
  return v[static_cast<size_t>(rank - 1)];
}

TEST(HdrHistogramTest, PercentilesMatchASortedArrayWithinThePrecision) {
  std::mt19937_64 rng(42);
  // Latency-like data: lognormal around 2 ms with a heavy tail, in ns.
  std::lognormal_distribution<double> dist(std::log(2e6), 1.0);
  for (int trial = 0; trial < 5; ++trial) {
    HdrHistogram h;
    std::vector<int64_t> values;
    const int n = 1000 + trial * 20000;
    for (int i = 0; i < n; ++i) {
      const int64_t v = static_cast<int64_t>(dist(rng));
      values.push_back(v);
      h.Record(v);
    }
    for (double p : {0.0, 1.0, 10.0, 50.0, 90.0, 99.0, 99.9, 99.99, 100.0}) {
      const int64_t want = SortedPercentile(values, p);
      const int64_t got = h.ValueAtPercentile(p);
      // Reported as the bucket's upper bound: never below, at most one
      // bucket width (2^-9 relative) above.
      EXPECT_GE(got, want) << "p" << p;
      EXPECT_LE(static_cast<double>(got - want), std::ldexp(static_cast<double>(want), -9) + 1)
          << "p" << p << " n=" << n;
    }
    EXPECT_EQ(h.count(), n);
    EXPECT_EQ(h.max(), *std::max_element(values.begin(), values.end()));
    EXPECT_EQ(h.min(), *std::min_element(values.begin(), values.end()));
  }
}

TEST(HdrHistogramTest, SmallValuesAreExactAndMergeAdds) {
  HdrHistogram a, b;
  for (int v = 0; v < 1000; ++v) a.Record(v);
  for (int v = 1000; v < 2000; ++v) b.Record(v);
  EXPECT_EQ(a.ValueAtPercentile(50), 499);
  EXPECT_EQ(a.ValueAtPercentile(100), 999);
  a.Merge(b);
  EXPECT_EQ(a.count(), 2000);
  EXPECT_EQ(a.max(), 1999);
  EXPECT_NEAR(a.mean(), 999.5, 1e-9);
  a.Reset();
  EXPECT_EQ(a.count(), 0);
  EXPECT_EQ(a.ValueAtPercentile(50), 0);
}

TEST(HdrHistogramTest, HugeAndNegativeValues) {
  HdrHistogram h;
  h.Record(-5);
  h.Record(int64_t{1} << 50);
  EXPECT_EQ(h.min(), 0);
  EXPECT_EQ(h.ValueAtPercentile(100), int64_t{1} << 50);
  EXPECT_EQ(h.ValueAtPercentile(50), 0);
}

}  // namespace
}  // namespace moe
