// The Prometheus text-format instruments: escaping, number formatting,
// headers, counters and histograms.
#include "serving/prometheus.h"

#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace moe {
namespace {

TEST(PrometheusTest, EscapesLabelValues) {
  EXPECT_EQ(EscapeLabelValue("plain"), "plain");
  EXPECT_EQ(EscapeLabelValue("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
}

TEST(PrometheusTest, AppendsHelpAndTypeLines) {
  std::string out = "x\n";
  AppendHeader(&out, "moe_requests_total", "Requests by outcome.", "counter");
  EXPECT_EQ(out,
            "x\n# HELP moe_requests_total Requests by outcome.\n"
            "# TYPE moe_requests_total counter\n");
}

TEST(PrometheusTest, FormatsNumbersAsTheTextFormatExpects) {
  EXPECT_EQ(FormatMetricValue(std::numeric_limits<double>::quiet_NaN()), "NaN");
  EXPECT_EQ(FormatMetricValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(FormatMetricValue(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(FormatMetricValue(0), "0");
  EXPECT_EQ(FormatMetricValue(42), "42");
  EXPECT_EQ(FormatMetricValue(-7), "-7");
  EXPECT_EQ(FormatMetricValue(0.1), "0.1");
  EXPECT_EQ(FormatMetricValue(2.5e-5), "2.5e-05");
  // Anything else: the shortest text that reads back as the same double.
  for (double v : {1.0 / 3.0, 123456.789, 6.02214076e23, -1e-300, 0.30000000000000004}) {
    const std::string text = FormatMetricValue(v);
    EXPECT_EQ(std::strtod(text.c_str(), nullptr), v) << text;
  }
}

TEST(PrometheusTest, CounterSumsAddsFromManyThreads) {
  Counter c;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&c] {
      for (int i = 0; i < 10000; ++i) c.Add();
    });
  }
  for (auto& t : threads) t.join();
  c.Add(0.5);
  EXPECT_EQ(c.Value(), 40000.5);
}

TEST(PrometheusTest, HistogramRendersCumulativeBucketsSumAndCount) {
  Histogram h({1, 2, 4});
  for (double v : {0.5, 1.0, 3.0, 10.0}) h.Observe(v);  // a bound is inclusive (le)
  std::string labelled;
  h.Render(&labelled, "moe_batch_tokens", "model=\"moe\"");
  EXPECT_EQ(labelled,
            "moe_batch_tokens_bucket{model=\"moe\",le=\"1\"} 2\n"
            "moe_batch_tokens_bucket{model=\"moe\",le=\"2\"} 2\n"
            "moe_batch_tokens_bucket{model=\"moe\",le=\"4\"} 3\n"
            "moe_batch_tokens_bucket{model=\"moe\",le=\"+Inf\"} 4\n"
            "moe_batch_tokens_sum{model=\"moe\"} 14.5\n"
            "moe_batch_tokens_count{model=\"moe\"} 4\n");
  std::string bare;
  Histogram({0.25}).Render(&bare, "x", "");
  EXPECT_EQ(bare, "x_bucket{le=\"0.25\"} 0\nx_bucket{le=\"+Inf\"} 0\nx_sum 0\nx_count 0\n");
}

TEST(PrometheusTest, ExponentialBounds) {
  EXPECT_THAT(Histogram::Exponential(1, 2, 4), ::testing::ElementsAre(1, 2, 4, 8));
  EXPECT_THAT(Histogram::Exponential(50e-6, 2, 0), ::testing::IsEmpty());
}

}  // namespace
}  // namespace moe
