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
nlohmann::json ReportJson(const LoadReport& r);
std::string CsvHeader();
std::string CsvRow(const LoadReport& r);
// One line per report: the sweep table.
std::string SweepTable(const std::vector<LoadReport>& reports);
std::string SweepHtml(const std::vector<LoadReport>& reports, const std::string& title);

}  // namespace moe

#endif  // MOE_CLIENT_LOAD_REPORT_H_
