#include "client/load_report.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace moe {
namespace {

std::string LoadLabel(const LoadReport& r) {
  if (r.mode == "closed") return absl::StrCat("closed loop, concurrency ", r.concurrency);
  return absl::StrFormat("open loop, %s arrivals at %.1f req/s", r.poisson ? "Poisson" : "constant",
                         r.target_rate);
}

std::string Tokens(const LoadReport& r) {
  return r.tokens_min == r.tokens_max ? absl::StrCat(r.tokens_min)
                                      : absl::StrCat(r.tokens_min, "-", r.tokens_max);
}

std::string HtmlEscape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '<')
      o += "&lt;";
    else if (c == '>')
      o += "&gt;";
    else if (c == '&')
      o += "&amp;";
    else
      o += c;
  }
  return o;
}

}  // namespace

std::string ReportText(const LoadReport& r) {
  std::string s;
  absl::StrAppendFormat(&s, "load      %s, %s, %d connection(s), %s tokens/request\n", LoadLabel(r),
                        r.stream ? "ModelStreamInfer" : "ModelInfer", r.connections, Tokens(r));
  absl::StrAppendFormat(&s, "window    %.2f s: %lld sent, %lld ok, %lld failed\n", r.window_s,
                        static_cast<long long>(r.sent), static_cast<long long>(r.ok),
                        static_cast<long long>(r.failed));
  if (r.mode == "open") {
    absl::StrAppendFormat(&s, "rate      achieved %.1f req/s of %.1f target (%.1f%%)\n",
                          r.achieved_rate, r.target_rate,
                          r.target_rate > 0 ? 100.0 * r.achieved_rate / r.target_rate : 0.0);
  }
  absl::StrAppendFormat(&s, "throughput %.1f req/s, %.1f tokens/s\n", r.throughput_rps,
                        r.tokens_per_s);
  absl::StrAppendFormat(
      &s,
      "latency   p50 %.3f ms  p90 %.3f ms  p95 %.3f ms  p99 %.3f ms  p99.9 %.3f ms  "
      "max %.3f ms  (mean %.3f ms%s)\n",
      r.p50_ms, r.p90_ms, r.p95_ms, r.p99_ms, r.p999_ms, r.max_ms, r.mean_ms,
      r.mode == "open" ? ", from intended send times" : "");
  if (!r.errors.empty()) {
    std::string e;
    for (const auto& [code, n] : r.errors) absl::StrAppend(&e, e.empty() ? "" : ", ", code, " ", n);
    absl::StrAppendFormat(&s, "errors    %s (slowest failure %.3f ms)\n", e, r.failed_max_ms);
  }
  if (r.server_stats) {
    absl::StrAppendFormat(
        &s, "server    %lld ok, %lld tokens in %lld batches (%.1f tokens/batch)\n",
        static_cast<long long>(r.server_ok), static_cast<long long>(r.server_tokens),
        static_cast<long long>(r.server_batches), r.server_avg_batch_tokens);
  }
  if (r.verified) {
    absl::StrAppendFormat(&s, "verify    %lld answers checked, %lld mismatches\n",
                          static_cast<long long>(r.verify_checked),
                          static_cast<long long>(r.verify_mismatches));
  }
  return s;
}

nlohmann::json ReportJson(const LoadReport& r) {
  nlohmann::json j;
  j["mode"] = r.mode;
  j["concurrency"] = r.concurrency;
  j["target_rate"] = r.target_rate;
  j["arrivals"] = r.poisson ? "poisson" : "constant";
  j["stream"] = r.stream;
  j["connections"] = r.connections;
  j["tokens_min"] = r.tokens_min;
  j["tokens_max"] = r.tokens_max;
  j["window_s"] = r.window_s;
  j["sent"] = r.sent;
  j["ok"] = r.ok;
  j["failed"] = r.failed;
  j["errors"] = r.errors;
  j["failed_max_ms"] = r.failed_max_ms;
  j["tokens_ok"] = r.tokens_ok;
  j["achieved_rate"] = r.achieved_rate;
  j["throughput_rps"] = r.throughput_rps;
  j["tokens_per_s"] = r.tokens_per_s;
  j["latency_ms"] = {{"p50", r.p50_ms},    {"p90", r.p90_ms}, {"p95", r.p95_ms},  {"p99", r.p99_ms},
                     {"p99.9", r.p999_ms}, {"max", r.max_ms}, {"mean", r.mean_ms}};
  j["total_sent"] = r.total_sent;
  j["total_ok"] = r.total_ok;
  if (r.server_stats) {
    j["server"] = {{"ok", r.server_ok},
                   {"batches", r.server_batches},
                   {"tokens", r.server_tokens},
                   {"avg_batch_tokens", r.server_avg_batch_tokens}};
  }
  if (r.verified) {
    j["verify"] = {{"checked", r.verify_checked}, {"mismatches", r.verify_mismatches}};
  }
  return j;
}

nlohmann::json ReportsJson(const std::vector<LoadReport>& reports, const LoadTarget& target) {
  nlohmann::json j;
  j["schema"] = "moe_loadgen/1";
  j["address"] = target.address;
  j["model"] = target.model;
  j["protocol"] = target.protocol;
  j["runs"] = nlohmann::json::array();
  for (const auto& r : reports) j["runs"].push_back(ReportJson(r));
  return j;
}

std::string ReportsCsv(const std::vector<LoadReport>& reports) {
  const bool closed = reports.empty() || reports.front().mode == "closed";
  std::string s = absl::StrCat(
      closed ? "Concurrency" : "Request Rate",
      ",Inferences/Second,p50 latency,p90 latency,p95 latency,p99 latency,Avg latency,"
      "p99.9 latency,Max latency,mode,stream,connections,tokens_min,tokens_max,window_s,sent,ok,"
      "failed,achieved_rate,tokens_per_s,server_batches,server_avg_batch_tokens,"
      "verify_mismatches\n");
  const auto us = [](double ms) { return absl::StrFormat("%.1f", ms * 1000.0); };
  for (const auto& r : reports) {
    absl::StrAppend(&s,
                    closed ? absl::StrCat(r.concurrency) : absl::StrFormat("%.3f", r.target_rate),
                    ",", absl::StrFormat("%.3f", r.throughput_rps), ",", us(r.p50_ms), ",",
                    us(r.p90_ms), ",", us(r.p95_ms), ",", us(r.p99_ms), ",", us(r.mean_ms), ",",
                    us(r.p999_ms), ",", us(r.max_ms), ",");
    absl::StrAppendFormat(
        &s, "%s,%d,%d,%lld,%lld,%.3f,%lld,%lld,%lld,%.3f,%.3f,%lld,%.2f,%lld\n", r.mode,
        r.stream ? 1 : 0, r.connections, static_cast<long long>(r.tokens_min),
        static_cast<long long>(r.tokens_max), r.window_s, static_cast<long long>(r.sent),
        static_cast<long long>(r.ok), static_cast<long long>(r.failed), r.achieved_rate,
        r.tokens_per_s, static_cast<long long>(r.server_batches), r.server_avg_batch_tokens,
        static_cast<long long>(r.verify_mismatches));
  }
  return s;
}

std::string SweepTable(const std::vector<LoadReport>& reports) {
  std::string s =
      absl::StrFormat("%-12s %10s %12s %12s %10s %10s %10s %10s %8s\n", "load", "req/s", "tokens/s",
                      "batch tok", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "errors");
  for (const auto& r : reports) {
    const std::string load = r.mode == "closed" ? absl::StrCat("c=", r.concurrency)
                                                : absl::StrFormat("r=%.0f", r.target_rate);
    absl::StrAppendFormat(&s, "%-12s %10.1f %12.1f %12.1f %10.3f %10.3f %10.3f %10.3f %8lld\n",
                          load, r.throughput_rps, r.tokens_per_s, r.server_avg_batch_tokens,
                          r.p50_ms, r.p90_ms, r.p99_ms, r.p999_ms,
                          static_cast<long long>(r.failed));
  }
  return s;
}

namespace {

// The latency chart's frame: x = throughput (req/s), y = latency (ms, log
// scale), in SVG pixels.
struct Chart {
  double w = 720, h = 420, left = 70, right = 20, top = 30, bottom = 50;
  double max_x = 1;         // req/s
  double ly0 = 0, ly1 = 0;  // log10 ms at the bottom and the top
  double X(double v) const { return left + (w - left - right) * v / (max_x * 1.05); }
  double Y(double v) const {
    const double lv = std::log10(std::max(v, 1e-6));
    return top + (h - top - bottom) * (1 - (lv - ly0) / std::max(1e-9, ly1 - ly0));
  }
};

Chart ChartFor(const std::vector<LoadReport>& reports) {
  Chart c;
  double min_y = 1e9, max_y = 1e-3;
  for (const auto& r : reports) {
    c.max_x = std::max(c.max_x, r.throughput_rps);
    for (double v : {r.p50_ms, r.p90_ms, r.p99_ms, r.p999_ms}) {
      if (v > 0) {
        min_y = std::min(min_y, v);
        max_y = std::max(max_y, v);
      }
    }
  }
  if (min_y > max_y) min_y = max_y / 10;
  c.ly0 = std::floor(std::log10(min_y));
  c.ly1 = std::ceil(std::log10(max_y)) + 1e-9;
  return c;
}

// The background, the axes, their ticks and the x label.
std::string ChartAxes(const Chart& c) {
  std::string svg = absl::StrFormat(
      "<svg xmlns='http://www.w3.org/2000/svg' width='%.0f' height='%.0f' "
      "font-family='sans-serif' font-size='12'>\n<rect width='100%%' height='100%%' "
      "fill='white'/>\n",
      c.w, c.h);
  absl::StrAppendFormat(&svg,
                        "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='black'/>\n"
                        "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='black'/>\n",
                        c.left, c.h - c.bottom, c.w - c.right, c.h - c.bottom, c.left, c.top,
                        c.left, c.h - c.bottom);
  for (int e = static_cast<int>(c.ly0); e <= static_cast<int>(std::floor(c.ly1)); ++e) {
    const double v = std::pow(10.0, e);
    absl::StrAppendFormat(&svg,
                          "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#ddd'/>"
                          "<text x='%.1f' y='%.1f' text-anchor='end'>%g ms</text>\n",
                          c.left, c.Y(v), c.w - c.right, c.Y(v), c.left - 5, c.Y(v) + 4, v);
  }
  for (int i = 0; i <= 5; ++i) {
    const double v = c.max_x * 1.05 * i / 5;
    absl::StrAppendFormat(&svg, "<text x='%.1f' y='%.1f' text-anchor='middle'>%.0f</text>\n",
                          c.X(v), c.h - c.bottom + 18, v);
  }
  absl::StrAppendFormat(&svg,
                        "<text x='%.1f' y='%.1f' text-anchor='middle'>throughput (requests/s)"
                        "</text>\n",
                        (c.left + c.w - c.right) / 2, c.h - 10);
  return svg;
}

// One line, its points and its legend entry per percentile.
std::string ChartSeries(const Chart& c, const std::vector<LoadReport>& reports) {
  struct Series {
    const char* name;
    const char* color;
    double LoadReport::*field;
  };
  const Series series[] = {{"p50", "#1f77b4", &LoadReport::p50_ms},
                           {"p90", "#2ca02c", &LoadReport::p90_ms},
                           {"p99", "#ff7f0e", &LoadReport::p99_ms},
                           {"p99.9", "#d62728", &LoadReport::p999_ms}};
  std::string svg;
  int legend = 0;
  for (const Series& s : series) {
    std::string points;
    for (const auto& r : reports) {
      absl::StrAppendFormat(&points, "%.1f,%.1f ", c.X(r.throughput_rps), c.Y(r.*(s.field)));
    }
    absl::StrAppendFormat(&svg,
                          "<polyline fill='none' stroke='%s' stroke-width='2' points='%s'/>\n",
                          s.color, points);
    for (const auto& r : reports) {
      absl::StrAppendFormat(&svg, "<circle cx='%.1f' cy='%.1f' r='3' fill='%s'/>\n",
                            c.X(r.throughput_rps), c.Y(r.*(s.field)), s.color);
    }
    absl::StrAppendFormat(&svg,
                          "<rect x='%.1f' y='%.1f' width='12' height='3' fill='%s'/>"
                          "<text x='%.1f' y='%.1f'>%s</text>\n",
                          c.left + 10 + legend * 70, c.top - 16, s.color, c.left + 26 + legend * 70,
                          c.top - 11, s.name);
    ++legend;
  }
  return svg;
}

std::string LatencyTable(const std::vector<LoadReport>& reports) {
  std::string html =
      "<table>\n<tr><th>load</th><th>req/s</th>"
      "<th>tokens/s</th><th>tokens/batch</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th>"
      "<th>p99.9 ms</th><th>max ms</th><th>errors</th></tr>\n";
  for (const auto& r : reports) {
    const std::string load = r.mode == "closed" ? absl::StrCat("concurrency ", r.concurrency)
                                                : absl::StrFormat("rate %.1f", r.target_rate);
    absl::StrAppendFormat(
        &html,
        "<tr><td>%s</td><td>%.1f</td><td>%.1f</td><td>%.1f</td><td>%.3f</td>"
        "<td>%.3f</td><td>%.3f</td><td>%.3f</td><td>%.3f</td><td>%lld</td></tr>\n",
        load, r.throughput_rps, r.tokens_per_s, r.server_avg_batch_tokens, r.p50_ms, r.p90_ms,
        r.p99_ms, r.p999_ms, r.max_ms, static_cast<long long>(r.failed));
  }
  return html + "</table>\n";
}

}  // namespace

std::string SweepHtml(const std::vector<LoadReport>& reports, const std::string& title) {
  const Chart chart = ChartFor(reports);
  const std::string svg = ChartAxes(chart) + ChartSeries(chart, reports) + "</svg>\n";
  return absl::StrCat(
      "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>", HtmlEscape(title),
      "</title>\n<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
      "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}</style></head><body>\n<h1>",
      HtmlEscape(title), "</h1>\n", svg, LatencyTable(reports), "</body></html>\n");
}

}  // namespace moe
