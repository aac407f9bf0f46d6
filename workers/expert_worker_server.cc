#include "workers/expert_worker_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "serving/metrics_http_server.h"

namespace moe {
namespace {

constexpr char kServiceName[] = "moe.v1.ExpertService";

std::chrono::system_clock::time_point DeadlineIn(absl::Duration d) {
  return std::chrono::system_clock::now() + std::chrono::microseconds(absl::ToInt64Microseconds(d));
}

}  // namespace

absl::StatusOr<std::unique_ptr<ExpertWorkerServer>> ExpertWorkerServer::Start(
    std::vector<HostedLayer> layers, const ExpertWorkerOptions& options) {
  if (layers.empty())
    return absl::InvalidArgumentError("an expert worker hosts at least one layer");
  std::unique_ptr<ExpertWorkerServer> s(new ExpertWorkerServer());
  s->service_ = std::make_unique<ExpertWorkerService>(std::move(layers));

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  const std::string address = absl::StrCat(options.listen_host, ":", options.grpc_port);
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &s->grpc_port_);
  builder.RegisterService(s->service_.get());
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  s->grpc_server_ = builder.BuildAndStart();
  if (s->grpc_server_ == nullptr || s->grpc_port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen for gRPC on ", address,
                                               " (port in use or address not available?)"));
  }
  if (options.metrics_port >= 0) {
    ExpertWorkerService* service = s->service_.get();
    auto metrics = MetricsHttpServer::Start(options.listen_host, options.metrics_port,
                                            [service] { return service->RenderMetrics(); });
    if (!metrics.ok()) {
      s->Shutdown(absl::ZeroDuration());
      return metrics.status();
    }
    s->metrics_server_ = *std::move(metrics);
    s->metrics_port_ = s->metrics_server_->port();
  }
  auto* health = s->grpc_server_->GetHealthCheckService();
  health->SetServingStatus(true);
  health->SetServingStatus(kServiceName, true);
  return s;
}

ExpertWorkerServer::~ExpertWorkerServer() { Shutdown(absl::ZeroDuration()); }

std::string ExpertWorkerServer::local_grpc_address() const {
  return absl::StrCat("127.0.0.1:", grpc_port_);
}

void ExpertWorkerServer::Shutdown(absl::Duration drain_timeout) {
  if (shut_down_) return;
  shut_down_ = true;
  if (grpc_server_ != nullptr) {
    auto* health = grpc_server_->GetHealthCheckService();
    health->SetServingStatus(false);
    health->SetServingStatus(kServiceName, false);
    grpc_server_->Shutdown(DeadlineIn(drain_timeout));
    grpc_server_->Wait();
  }
  if (metrics_server_ != nullptr) metrics_server_->Stop();
}

}  // namespace moe
