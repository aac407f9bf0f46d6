// deploy/grafana/moe-serve.json and deploy/prometheus/alerts.yml against a
// live server: every metric an expression names is one the server exports
// on /metrics (histogram series by their _bucket/_sum/_count names).
#include <httplib.h>

#include <fstream>
#include <iterator>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/naive_reference.h"
#include "tests/server_test_util.h"

namespace moe {
namespace {

std::string ReadSource(const std::string& relative) {
  std::ifstream in(std::string(MOE_SOURCE_DIR) + "/" + relative);
  EXPECT_TRUE(in.good()) << relative;
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Every metric name /metrics declares with a TYPE line; a histogram adds
// its _bucket, _sum and _count series.
std::set<std::string> ExportedMetrics(const std::string& text) {
  std::set<std::string> names;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("# TYPE ", 0) != 0) continue;
    std::istringstream fields(line.substr(7));
    std::string name, type;
    fields >> name >> type;
    names.insert(name);
    if (type == "histogram") {
      for (const char* suffix : {"_bucket", "_sum", "_count"}) names.insert(name + suffix);
    }
  }
  return names;
}

// The metric names a PromQL expression reads: identifiers left once label
// matchers, ranges, grouping clauses, strings, Grafana variables and
// numbers are removed, that are neither function calls nor keywords.
std::set<std::string> MetricsIn(std::string expr) {
  for (const char* pattern :
       {R"("[^"]*")", R"(\{[^}]*\})", R"(\[[^\]]*\])",
        R"(\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\))", R"(\$\w+)"}) {
    expr = std::regex_replace(expr, std::regex(pattern), " ");
  }
  static const std::set<std::string> kKeywords = {
      "by", "without", "on",   "ignoring", "group_left", "group_right", "and",
      "or", "unless",  "bool", "offset",   "inf",        "nan"};
  std::set<std::string> names;
  const std::regex ident(R"(([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?)");
  for (std::sregex_iterator it(expr.begin(), expr.end(), ident), end; it != end; ++it) {
    const std::string name = (*it)[1];
    const bool call = (*it)[2].matched;
    const size_t at = static_cast<size_t>(it->position(0));
    const bool in_number =
        at > 0 && (std::isdigit(static_cast<unsigned char>(expr[at - 1])) || expr[at - 1] == '.');
    if (call || in_number || kKeywords.count(name) > 0) continue;
    names.insert(name);
  }
  return names;
}

class DashboardTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = MoeServer::Start(::moe::testing::MakeLayer(::moe::testing::SmallDemoWeights()),
                                   ::moe::testing::LocalOptions());
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    // One answered request, so that every labelled series has a sample.
    auto stub = ::moe::testing::Stub(server_->local_grpc_address());
    grpc::ClientContext ctx;
    inference::ModelInferResponse resp;
    ASSERT_TRUE(
        stub->ModelInfer(&ctx,
                         ::moe::testing::InferRequest(::moe::testing::RandomTokens(3 * 64, 7), 64),
                         &resp)
            .ok());
    httplib::Client cli("127.0.0.1", server_->metrics_port());
    auto res = cli.Get("/metrics");
    ASSERT_TRUE(res);
    exported_ = ExportedMetrics(res->body);
    ASSERT_GT(exported_.size(), 20u);
  }

  void ExpectExported(const std::string& where, const std::string& expr) {
    const std::set<std::string> names = MetricsIn(expr);
    EXPECT_FALSE(names.empty()) << where << " reads no metric: " << expr;
    for (const std::string& n : names) {
      EXPECT_EQ(exported_.count(n), 1u)
          << where << " reads '" << n << "', which the server does not export: " << expr;
    }
  }

  std::unique_ptr<MoeServer> server_;
  std::set<std::string> exported_;
};

TEST(PromqlMetricsTest, FindsTheMetricsAndNothingElse) {
  EXPECT_EQ(
      MetricsIn(R"(histogram_quantile(0.99, sum by (model, le) )"
                R"((rate(moe_request_duration_seconds_bucket{model=~"$model"}[5m]))) > 1e-3)"),
      (std::set<std::string>{"moe_request_duration_seconds_bucket"}));
  EXPECT_EQ(MetricsIn(R"(sum(rate(a_total[$__rate_interval])) / ignoring(outcome) group_left )"
                      R"(sum(b_total) and on (x) c)"),
            (std::set<std::string>{"a_total", "b_total", "c"}));
  EXPECT_EQ(MetricsIn("absent(moe_build_info)"), (std::set<std::string>{"moe_build_info"}));
}

TEST_F(DashboardTest, EveryPanelQueryReadsExportedMetrics) {
  const auto dash = nlohmann::json::parse(ReadSource("deploy/grafana/moe-serve.json"));
  EXPECT_EQ(dash.at("uid"), "moe-serve");
  int queries = 0;
  std::set<std::string> types;
  for (const auto& panel : dash.at("panels")) {
    types.insert(panel.at("type").get<std::string>());
    ASSERT_FALSE(panel.at("targets").empty()) << panel.at("title");
    for (const auto& target : panel.at("targets")) {
      ExpectExported("panel '" + panel.at("title").get<std::string>() + "'",
                     target.at("expr").get<std::string>());
      ++queries;
    }
  }
  for (const auto& var : dash.at("templating").at("list")) {
    if (var.at("type") != "query") continue;
    // label_values(metric, label): the metric must exist.
    std::smatch m;
    const std::string query = var.at("query").get<std::string>();
    ASSERT_TRUE(std::regex_match(query, m, std::regex(R"(label_values\((\w+),\s*\w+\))"))) << query;
    ExpectExported("variable '" + var.at("name").get<std::string>() + "'", m[1]);
  }
  EXPECT_GE(queries, 10);
  EXPECT_EQ(types.count("heatmap"), 1u) << "the per-expert load heat map";
}

TEST_F(DashboardTest, EveryAlertRuleReadsExportedMetrics) {
  std::istringstream rules(ReadSource("deploy/prometheus/alerts.yml"));
  int alerts = 0, exprs = 0;
  const std::regex expr_line(R"(^\s*expr:\s*(.+)$)");
  for (std::string line; std::getline(rules, line);) {
    if (line.find("- alert:") != std::string::npos) ++alerts;
    std::smatch m;
    if (std::regex_match(line, m, expr_line)) {
      ExpectExported("alert rule " + std::to_string(alerts), m[1]);
      ++exprs;
    }
  }
  EXPECT_GE(alerts, 6);
  EXPECT_EQ(exprs, alerts) << "every rule has one single-line expr";
}

}  // namespace
}  // namespace moe
