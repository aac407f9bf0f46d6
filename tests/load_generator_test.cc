// moe_loadgen's engine: the open-loop scheduler keeps its rate, latencies
// are free of coordinated omission, and against the real server the counts
// match, answers verify and the JSON parses.
#include "client/load_generator.h"

#include <sys/wait.h>

#include <cstdio>
#include <string>
#include <utility>

#include "batching/serving_core.h"
#include "client/arrival_schedule.h"
#include "client/load_report.h"
#include "client/sweep_points.h"
#include "frontend/model_descriptors.h"
#include "gtest/gtest.h"
#include "tests/fake_kserve_server.h"
#include "tests/server_test_util.h"
#include "tests/status_matchers.h"

namespace moe {
namespace {

using ::moe::testing::FakeKserveServer;

TEST(ArrivalScheduleTest, ConstantAndPoissonRates) {
  const absl::Time start = absl::UnixEpoch();
  ArrivalSchedule constant(start, 100, false, 1);
  EXPECT_EQ(constant.Next(), start);
  EXPECT_EQ(constant.Next(), start + absl::Milliseconds(10));
  ArrivalSchedule poisson(start, 1000, true, 7);
  absl::Time last = start;
  for (int i = 0; i < 100000; ++i) last = poisson.Next();
  // 100000 exponential gaps of mean 1 ms: 100 s, within a few standard
  // deviations (sqrt(n) * 1 ms = 0.3 s).
  EXPECT_NEAR(absl::ToDoubleSeconds(last - start), 100.0, 1.5);
}

// The open loop's rate and its view of a server stall are timed: they are
// in timing_test.cc (ctest label perf).

class LoadGeneratorServerTest : public ::testing::Test {
 protected:
  // Runs the moe_loadgen binary against the server with `flags`; returns
  // its exit code (-1 if it did not exit) and its standard output (and
  // standard error, with " 2>&1" in `flags`).
  std::pair<int, std::string> RunBinary(const std::string& flags) {
    const std::string cmd = std::string(MOE_LOADGEN_BINARY) +
                            " --address=" + server_->local_grpc_address() + " " + flags;
    FILE* p = popen(cmd.c_str(), "r");
    if (p == nullptr) return {-1, "popen failed"};
    std::string out;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
    const int status = pclose(p);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
  }

  void SetUp() override {
    auto weights = MakePreset("transformer-base");
    ASSERT_OK(weights);
    ServerOptions options = ::moe::testing::LocalOptions();
    auto server = MoeServer::Start(::moe::testing::MakeLayer(*weights, DType::kF32), options);
    ASSERT_OK(server);
    server_ = *std::move(server);
  }
  std::unique_ptr<MoeServer> server_;
};

TEST_F(LoadGeneratorServerTest, CountsMatchTheServerAndAnswersVerify) {
  for (bool stream : {false, true}) {
    const double ok_before = server_->core().RequestsTotal("ok");
    LoadOptions o;
    o.connection.address = server_->local_grpc_address();
    o.concurrency = 4;
    o.duration = absl::Seconds(2);
    o.warmup = absl::Milliseconds(300);
    o.tokens_min = 1;
    o.tokens_max = 8;
    o.connections = 2;
    o.stream = stream;
    o.verify_preset = "transformer-base";
    o.verify_dtype = DType::kF32;
    ASSERT_OK_AND_ASSIGN(LoadReport r, RunLoad(o));
    EXPECT_GT(r.ok, 0);
    EXPECT_EQ(r.failed, 0);
    // Every request the loadgen saw answered OK is one the server counted,
    // in its ModelStatistics and in its Prometheus counter.
    EXPECT_TRUE(r.server_stats);
    EXPECT_EQ(r.server_ok, r.total_ok) << ReportText(r);
    EXPECT_EQ(server_->core().RequestsTotal("ok") - ok_before, static_cast<double>(r.total_ok));
    EXPECT_EQ(r.total_sent, r.total_ok);
    EXPECT_TRUE(r.verified);
    EXPECT_EQ(r.verify_checked, r.total_ok);
    EXPECT_EQ(r.verify_mismatches, 0) << ReportText(r);
    EXPECT_GT(r.server_avg_batch_tokens, 0);
  }
}

// --protocol=http: the same load over KServe v2 REST (binary tensors);
// every answer verifies bitwise against the in-process layer, and the
// server counted each one.
TEST_F(LoadGeneratorServerTest, HttpProtocolDrivesTheRestEndpoint) {
  const double ok_before = server_->core().RequestsTotal("ok");
  LoadOptions o;
  o.connection.address = "127.0.0.1:" + std::to_string(server_->http_port());
  o.http = true;
  o.concurrency = 3;
  o.requests = 60;
  o.warmup = absl::ZeroDuration();
  o.tokens_min = 1;
  o.tokens_max = 8;
  o.verify_preset = "transformer-base";
  o.verify_dtype = DType::kF32;
  ASSERT_OK_AND_ASSIGN(LoadReport r, RunLoad(o));
  EXPECT_EQ(r.ok, 60) << ReportText(r);
  EXPECT_EQ(r.failed, 0) << ReportText(r);
  EXPECT_EQ(r.verify_mismatches, 0) << ReportText(r);
  EXPECT_EQ(server_->core().RequestsTotal("ok") - ok_before, static_cast<double>(r.total_ok));
  // The open loop and streams are gRPC only.
  o.stream = true;
  EXPECT_FALSE(RunLoad(o).ok());
}

TEST_F(LoadGeneratorServerTest, VerifyCatchesAWrongModel) {
  LoadOptions o;
  o.connection.address = server_->local_grpc_address();
  o.concurrency = 2;
  o.requests = 20;
  o.verify_preset = "transformer-base";
  o.verify_seed = 999;  // different weights than the server's
  o.verify_dtype = DType::kF32;
  ASSERT_OK_AND_ASSIGN(LoadReport r, RunLoad(o));
  EXPECT_GT(r.verify_mismatches, 0);
}

TEST_F(LoadGeneratorServerTest, BinaryWritesParsableJson) {
  auto [code, out] = RunBinary(
      "--concurrency=2 --requests=50 --warmup_s=0 --tokens=2-4 --verify=transformer-base "
      "--verify_dtype=f32 --progress=false --json=-");
  EXPECT_EQ(code, 0) << out;
  nlohmann::json doc = nlohmann::json::parse(out);  // throws (fails) if not JSON
  EXPECT_EQ(doc["schema"], "moe_loadgen/1");
  EXPECT_EQ(doc["protocol"], "grpc");
  EXPECT_EQ(doc["model"], "moe");
  ASSERT_EQ(doc["runs"].size(), 1u);  // one run: the same document shape as a sweep
  const nlohmann::json& j = doc["runs"][0];
  EXPECT_EQ(j["mode"], "closed");
  EXPECT_EQ(j["sent"], 50);
  EXPECT_EQ(j["ok"], 50);
  EXPECT_EQ(j["verify"]["mismatches"], 0);
  EXPECT_GT(j["latency_ms"]["p50"].get<double>(), 0.0);
  EXPECT_GE(j["latency_ms"]["p95"].get<double>(), j["latency_ms"]["p90"].get<double>());
  EXPECT_GE(j["latency_ms"]["p99"].get<double>(), j["latency_ms"]["p95"].get<double>());
  EXPECT_EQ(j["server"]["ok"], 50);
}

TEST_F(LoadGeneratorServerTest, ConcurrencyRangeRunsEachPointInOneDocument) {
  auto [code, out] = RunBinary(
      "--concurrency_range=1:3:2 --requests=10 --warmup_s=0 --tokens=2 --progress=false --json=-");
  ASSERT_EQ(code, 0) << out;
  const nlohmann::json doc = nlohmann::json::parse(out);
  ASSERT_EQ(doc["runs"].size(), 2u) << out;
  EXPECT_EQ(doc["runs"][0]["concurrency"], 1);
  EXPECT_EQ(doc["runs"][1]["concurrency"], 3);
  for (const auto& run : doc["runs"]) {
    EXPECT_EQ(run["mode"], "closed");
    EXPECT_EQ(run["ok"], 10);
  }
}

// --max_p99_ms and --max_error_rate fail a CI job (exit 4) when a run
// breaks them, and pass it otherwise.
TEST_F(LoadGeneratorServerTest, ServiceLevelBoundsSetTheExitCode) {
  auto run = [&](const std::string& flags) {
    return RunBinary(
        "--concurrency=2 --requests=20 --warmup_s=0 --tokens=2 --progress=false "
        "--json=/dev/null " +
        flags + " 2>&1");
  };
  EXPECT_EQ(run("--max_p99_ms=60000 --max_error_rate=0").first, 0);
  auto [code, out] = run("--max_p99_ms=0.000001");
  EXPECT_EQ(code, 4) << out;
  EXPECT_NE(out.find("exceeds --max_p99_ms"), std::string::npos) << out;
  // Requests over the server's max_request_tokens (1024) all fail: the
  // error rate is 1.
  auto [code2, out2] = run("--tokens=2000 --max_error_rate=0.5");
  EXPECT_EQ(code2, 4) << out2;
  EXPECT_NE(out2.find("exceeds --max_error_rate"), std::string::npos) << out2;
}

TEST(LoadReportTest, SweepHtmlIsSelfContainedWithAChart) {
  LoadReport a, b;
  a.mode = b.mode = "closed";
  a.concurrency = 1;
  b.concurrency = 8;
  a.throughput_rps = 100;
  b.throughput_rps = 400;
  a.p50_ms = 1;
  a.p90_ms = 2;
  a.p99_ms = 3;
  a.p999_ms = 4;
  b.p50_ms = 5;
  b.p90_ms = 8;
  b.p99_ms = 12;
  b.p999_ms = 20;
  const std::string html = SweepHtml({a, b}, "test <sweep>");
  EXPECT_NE(html.find("<svg"), std::string::npos);
  EXPECT_NE(html.find("<polyline"), std::string::npos);
  EXPECT_NE(html.find("test &lt;sweep&gt;"), std::string::npos);
  // Self-contained: nothing loaded from elsewhere.
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("src="), std::string::npos);
  EXPECT_EQ(html.find("<link"), std::string::npos);
  EXPECT_NE(SweepTable({a, b}).find("c=8"), std::string::npos);
}

TEST(LoadReportTest, CsvLeadsWithPerfAnalyzersColumnsInMicroseconds) {
  LoadReport a;
  a.mode = "closed";
  a.concurrency = 4;
  a.throughput_rps = 250.5;
  a.p50_ms = 1.5;
  a.p90_ms = 2;
  a.p95_ms = 2.5;
  a.p99_ms = 3;
  a.mean_ms = 1.75;
  a.server_avg_batch_tokens = 12.5;
  const std::string csv = ReportsCsv({a});
  EXPECT_EQ(csv.find("Concurrency,Inferences/Second,p50 latency,p90 latency,p95 latency,"
                     "p99 latency,Avg latency,"),
            0u)
      << csv;
  const std::string row = csv.substr(csv.find('\n') + 1);
  EXPECT_EQ(row.find("4,250.500,1500.0,2000.0,2500.0,3000.0,1750.0,"), 0u) << row;
  // server_avg_batch_tokens is column 22 (bench/run.sh reads it by position).
  std::vector<std::string> cells;
  size_t from = 0;
  for (size_t comma; (comma = row.find(',', from)) != std::string::npos; from = comma + 1) {
    cells.push_back(row.substr(from, comma - from));
  }
  ASSERT_GE(cells.size(), 22u);
  EXPECT_EQ(cells[21], "12.50");
  LoadReport open_loop = a;
  open_loop.mode = "open";
  open_loop.target_rate = 100;
  EXPECT_EQ(ReportsCsv({open_loop}).find("Request Rate,Inferences/Second,"), 0u);
}

TEST(LoadReportTest, JsonHasOneShapeForOneRunAndForASweep) {
  LoadReport a, b;
  a.mode = b.mode = "closed";
  a.concurrency = 1;
  b.concurrency = 2;
  const LoadTarget target{"h:1", "moe", "grpc"};
  const nlohmann::json one = ReportsJson({a}, target);
  const nlohmann::json two = ReportsJson({a, b}, target);
  EXPECT_EQ(one["schema"], "moe_loadgen/1");
  EXPECT_EQ(two["schema"], "moe_loadgen/1");
  ASSERT_EQ(one["runs"].size(), 1u);
  ASSERT_EQ(two["runs"].size(), 2u);
  EXPECT_EQ(two["runs"][1]["concurrency"], 2);
  for (auto it = one.begin(); it != one.end(); ++it) EXPECT_TRUE(two.contains(it.key()));
}

TEST(SweepPointsTest, RangeFollowsPerfAnalyzersForm) {
  EXPECT_EQ(*ParseSweepRange("1:64:8"), (std::vector<double>{1, 9, 17, 25, 33, 41, 49, 57}));
  EXPECT_EQ(*ParseSweepRange("2:6:2"), (std::vector<double>{2, 4, 6}));   // end included
  EXPECT_EQ(*ParseSweepRange("1:4"), (std::vector<double>{1, 2, 3, 4}));  // step 1
  EXPECT_EQ(*ParseSweepRange("8"), (std::vector<double>{8}));
  EXPECT_EQ(*ParseSweepRange("0.5:1.5:0.5"), (std::vector<double>{0.5, 1.0, 1.5}));
  for (const char* bad : {"", "0:4", "4:2", "1:4:0", "1:4:-1", "a:4", "1:2:3:4", "1:1e9:1e-3"}) {
    auto r = ParseSweepRange(bad);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_NE(ParseSweepRange("4:2").status().message().find("below start"), std::string::npos);
  EXPECT_NE(ParseSweepRange("1:x").status().message().find("end 'x'"), std::string::npos);
}

TEST(SweepPointsTest, ListKeepsItsOrder) {
  EXPECT_EQ(*ParseSweepList("8,1,64"), (std::vector<double>{8, 1, 64}));
  EXPECT_EQ(ParseSweepList("1,,2").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseSweepList("1,-2").status().code(), absl::StatusCode::kInvalidArgument);
}

// --models / --layers: each client walks the layers in order; every
// layer gets its share and the server's counts match the answers.
TEST(LoadGeneratorLayersTest, ClientsWalkTheLayersInOrder) {
  std::vector<std::unique_ptr<MoeLayer>> layers;
  std::vector<std::string> names;
  for (int l = 0; l < 3; ++l) {
    LayerWeights w = ::moe::testing::SmallDemoWeights();
    w = MakeSyntheticWeights(w.spec, 50 + static_cast<uint64_t>(l));
    layers.push_back(::moe::testing::MakeLayer(w));
    names.push_back("moe.layer" + std::to_string(l));
  }
  auto server = MoeServer::Start(std::move(layers), names, ::moe::testing::LocalOptions());
  ASSERT_OK(server);
  LoadOptions o;
  o.connection.address = (*server)->local_grpc_address();
  o.models = names;
  o.concurrency = 3;
  o.requests = 60;
  o.warmup = absl::ZeroDuration();
  o.tokens_min = 1;
  o.tokens_max = 4;
  ASSERT_OK_AND_ASSIGN(LoadReport r, RunLoad(o));
  EXPECT_EQ(r.failed, 0) << ReportText(r);
  EXPECT_TRUE(r.server_stats);
  EXPECT_EQ(r.server_ok, r.total_ok) << ReportText(r);
  // Each worker's requests cycle through the three layers in order: the
  // layers' counts differ by at most one request per worker.
  for (int l = 0; l < 3; ++l) {
    inference::ModelStatistics stats;
    FillModelStatistics((*server)->core().model(l), &stats);
    const double share = static_cast<double>(r.total_ok) / 3;
    EXPECT_NEAR(static_cast<double>(stats.inference_stats().success().count()), share, 3.0)
        << names[l];
  }
  // A pipeline needs one width, and --verify checks one model.
  o.verify_preset = "demo";
  EXPECT_EQ(RunLoad(o).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace moe
