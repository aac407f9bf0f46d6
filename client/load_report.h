// Rendering LoadReports: a text summary, JSON, CSV, and a self-contained
// HTML page with an inline SVG chart of latency percentiles against
// throughput for a sweep.
#ifndef MOE_CLIENT_LOAD_REPORT_H_
#define MOE_CLIENT_LOAD_REPORT_H_

#include <string>
#include <vector>

#include "client/load_generator.h"
#include "nlohmann/json.hpp"

namespace moe {

std::string ReportText(const LoadReport& r);
// One run as JSON (an element of "runs" below).
nlohmann::json ReportJson(const LoadReport& r);

// Where the runs were sent; the JSON document's header.
struct LoadTarget {
  std::string address, model, protocol;
};
// The JSON document moe_loadgen writes, the same shape for one run and for
// a sweep: {"schema": "moe_loadgen/1", "address", "model", "protocol",
// "runs": [ReportJson, ...]}.
nlohmann::json ReportsJson(const std::vector<LoadReport>& reports, const LoadTarget& target);

// CSV, header line and one row per report, in run order. The leading
// columns carry perf_analyzer's names and units (its `-f` file), so tools
// that read perf_analyzer CSVs read these: "Concurrency" (closed loop) or
// "Request Rate" (open loop), "Inferences/Second" (answered requests per
// second), "p50 latency", "p90 latency", "p95 latency", "p99 latency" and
// "Avg latency" in microseconds. perf_analyzer's client/server split
// columns ("Client Send", "Server Queue", ...) are not measured and are
// left out. moe_loadgen's own columns follow in snake_case. Mixed closed
// and open loop reports are not allowed (the first column differs).
std::string ReportsCsv(const std::vector<LoadReport>& reports);
// One line per report: the sweep table.
std::string SweepTable(const std::vector<LoadReport>& reports);
std::string SweepHtml(const std::vector<LoadReport>& reports, const std::string& title);

}  // namespace moe

#endif  // MOE_CLIENT_LOAD_REPORT_H_
