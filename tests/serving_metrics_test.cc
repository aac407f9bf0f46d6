// ServingMetrics: outcome labels, the ModelStatistics snapshot and the
// Prometheus text of one and of several models.
#include "batching/serving_metrics.h"

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace moe {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

ModelInfoLabels Info(const std::string& model) {
  ModelInfoLabels i;
  i.model = model;
  i.family = "mixtral";
  i.dtype = "bf16";
  i.kernel = "test";
  i.cpu_tier = "avx2";
  i.d_model = 64;
  i.d_ff = 96;
  i.experts = 4;
  i.top_k = 2;
  return i;
}

int CountLines(const std::string& text, const std::string& prefix) {
  int n = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) n += absl::StartsWith(line, prefix);
  return n;
}

TEST(ServingMetricsTest, OutcomeLabelsAreLowerCaseStatusCodes) {
  EXPECT_EQ(OutcomeLabel(absl::OkStatus()), "ok");
  EXPECT_EQ(OutcomeLabel(absl::InvalidArgumentError("x")), "invalid_argument");
  EXPECT_EQ(OutcomeLabel(absl::DeadlineExceededError("x")), "deadline_exceeded");
  EXPECT_EQ(OutcomeLabel(absl::UnavailableError("x")), "unavailable");
}

TEST(ServingMetricsTest, SnapshotCountsRequestsBatchesAndTokens) {
  ServingMetrics m(Info("moe"), 4);
  m.RecordRequest(absl::OkStatus(), 3, 3, absl::Milliseconds(2), absl::Microseconds(100));
  m.RecordRequest(absl::OkStatus(), 5, 5, absl::Milliseconds(4), absl::Microseconds(300));
  m.RecordRequest(absl::InvalidArgumentError("bad"), 0, 0, absl::Microseconds(10),
                  absl::ZeroDuration());
  m.RecordBatch(8, absl::Milliseconds(1), true);
  m.RecordBatch(8, absl::Milliseconds(3), true);
  m.RecordBatch(2, absl::Milliseconds(1), false);
  const ServingMetrics::Statistics s = m.Snapshot();
  EXPECT_EQ(s.success.count, 2u);
  EXPECT_EQ(s.success.ns, 6'000'000u);
  EXPECT_EQ(s.fail.count, 1u);
  EXPECT_EQ(s.fail.ns, 10'000u);
  EXPECT_EQ(s.queue.count, 2u);
  EXPECT_EQ(s.queue.ns, 400'000u);
  EXPECT_EQ(s.execution_count, 2u);  // successful model calls
  EXPECT_EQ(s.inference_count, 16u);
  ASSERT_EQ(s.batches.count(8), 1u);
  EXPECT_EQ(s.batches.at(8).count, 2u);
  EXPECT_EQ(s.batches.at(8).ns, 4'000'000u);
  EXPECT_GT(s.last_inference_ms, 0u);
  EXPECT_EQ(m.RequestsTotal("ok"), 2);
  EXPECT_EQ(m.RequestsTotal("invalid_argument"), 1);
  EXPECT_EQ(m.RequestsTotal("not_found"), 0);
}

TEST(ServingMetricsTest, RendersEachFamilyOnceWithASeriesPerModel) {
  ServingMetrics a(Info("moe.layer0"), 4), b(Info("moe.layer1"), 4);
  a.RecordRequest(absl::OkStatus(), 3, 3, absl::Milliseconds(2), absl::Microseconds(100));
  a.AddExpertTokens({1, 0, 2, 0});
  b.RecordBatch(7, absl::Milliseconds(1), true);
  UnroutedRequests unrouted;
  unrouted.Record(absl::NotFoundError("no such model"));
  const std::string text = ServingMetrics::RenderPrometheus({&a, &b}, {{5, 1}, {0, 0}}, unrouted);
  for (const char* family : {"moe_requests_total", "moe_batch_tokens", "moe_queue_tokens",
                             "moe_expert_tokens_total", "moe_model_info"}) {
    EXPECT_EQ(CountLines(text, std::string("# TYPE ") + family + " "), 1) << family;
  }
  EXPECT_THAT(text, HasSubstr("moe_requests_total{model=\"moe.layer0\",outcome=\"ok\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("moe_requests_total{model=\"\",outcome=\"not_found\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("moe_queue_tokens{model=\"moe.layer0\"} 5\n"));
  EXPECT_THAT(text, HasSubstr("moe_queue_requests{model=\"moe.layer0\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("moe_expert_tokens_total{model=\"moe.layer0\",expert=\"2\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("moe_batch_tokens_count{model=\"moe.layer1\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("moe_tokens_in_total{model=\"moe.layer0\"} 3\n"));
  EXPECT_THAT(text, Not(HasSubstr("NaN")));
  // Every sample line is "name{labels} value" or "name value".
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    if (absl::StartsWith(line, "#")) continue;
    const std::vector<absl::string_view> parts = absl::StrSplit(line, absl::MaxSplits(' ', 1));
    ASSERT_EQ(parts.size(), 2u) << line;
  }
}

}  // namespace
}  // namespace moe
