#include "serving/metrics_http_server.h"

#include <httplib.h>

#include "serving/http_listener.h"
#include "serving/process_metrics.h"

namespace moe {

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& host, int port, const std::function<std::string()>& render) {
  std::unique_ptr<MetricsHttpServer> s(new MetricsHttpServer());
  s->server_ = std::make_unique<httplib::Server>();
  s->server_->Get("/metrics", [render](const httplib::Request&, httplib::Response& res) {
    std::string text = render();
    AppendProcessMetrics(&text);
    res.set_content(text, "text/plain; version=0.0.4; charset=utf-8");
  });
  auto bound = ListenInBackground(s->server_.get(), host, port, "metrics", &s->thread_);
  if (!bound.ok()) return bound.status();
  s->port_ = *bound;
  return s;
}

void MetricsHttpServer::Stop() {
  if (server_ != nullptr) server_->stop();
  if (thread_.joinable()) thread_.join();
}

MetricsHttpServer::~MetricsHttpServer() { Stop(); }

}  // namespace moe
