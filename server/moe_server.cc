#include "server/moe_server.h"

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <thread>

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include "absl/strings/str_cat.h"
#include "server/inference_service.h"
#include "server/http_service.h"
#include "server/metrics_http_server.h"
#include "server/serving_core.h"

namespace moe {
namespace {

absl::StatusOr<std::string> ReadPem(const std::string& path, const char* what) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(what, " file '", path, "' cannot be read"));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (text.empty()) return absl::InvalidArgumentError(absl::StrCat(what, " file '", path, "' is empty"));
  return text;
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeCredentials(const TlsOptions& tls) {
  if (tls.cert_file.empty() && tls.key_file.empty()) {
    if (!tls.client_ca_file.empty()) {
      return absl::InvalidArgumentError("--tls_client_ca needs --tls_cert and --tls_key");
    }
    return grpc::InsecureServerCredentials();
  }
  if (tls.cert_file.empty() || tls.key_file.empty()) {
    return absl::InvalidArgumentError("TLS needs both --tls_cert and --tls_key");
  }
  auto cert = ReadPem(tls.cert_file, "TLS certificate");
  if (!cert.ok()) return cert.status();
  auto key = ReadPem(tls.key_file, "TLS key");
  if (!key.ok()) return key.status();
  grpc::SslServerCredentialsOptions opts(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  if (!tls.client_ca_file.empty()) {
    auto ca = ReadPem(tls.client_ca_file, "TLS client CA");
    if (!ca.ok()) return ca.status();
    opts.pem_root_certs = *ca;
    opts.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  opts.pem_key_cert_pairs.push_back({*key, *cert});
  return grpc::SslServerCredentials(opts);
}

// True once nothing accepts TCP connections on host:port any more, polled
// until `timeout`. Server::Shutdown closes its listener just before it
// sends the GOAWAY on every connection.
bool WaitUntilRefused(std::string host, int port, absl::Duration timeout) {
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found) != 0) return false;
  const absl::Time end = absl::Now() + timeout;
  bool refused = false;
  while (!refused && absl::Now() < end) {
    const int fd = socket(found->ai_family, found->ai_socktype, found->ai_protocol);
    if (fd < 0) break;
    refused = connect(fd, found->ai_addr, found->ai_addrlen) != 0;
    close(fd);
    if (!refused) absl::SleepFor(absl::Milliseconds(2));
  }
  freeaddrinfo(found);
  return refused;
}

}  // namespace

absl::StatusOr<std::unique_ptr<MoeServer>> MoeServer::Start(std::unique_ptr<MoeLayer> layer,
                                                             const ServerOptions& options) {
  std::unique_ptr<MoeServer> s(new MoeServer());
  s->options_ = options;
  ModelIo io = options.io;
  io.d_model = layer->d_model();
  io.top_k = layer->spec().top_k();
  io.num_experts = layer->spec().num_experts();
  if (options.batching.max_batch_tokens < 1 || options.batching.max_queue_tokens < 1 ||
      io.max_request_tokens < 1) {
    return absl::InvalidArgumentError(
        "max_batch_tokens, max_queue_tokens and max_request_tokens must be >= 1");
  }
  if (io.max_request_tokens > options.batching.max_queue_tokens) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_request_tokens (", io.max_request_tokens, ") exceeds max_queue_tokens (",
        options.batching.max_queue_tokens, "): such requests could never be queued"));
  }
  auto creds = MakeCredentials(options.tls);
  if (!creds.ok()) return creds.status();

  s->core_ = std::make_unique<ServingCore>(std::move(layer), io, options.batching);
  s->service_ = std::make_unique<InferenceService>(s->core_.get());

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  const std::string address = absl::StrCat(options.listen_host, ":", options.grpc_port);
  builder.AddListeningPort(address, *creds, &s->grpc_port_);
  builder.RegisterService(s->service_.get());
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  s->grpc_server_ = builder.BuildAndStart();
  if (s->grpc_server_ == nullptr || s->grpc_port_ == 0) {
    s->core_->Drain(absl::ZeroDuration());
    return absl::UnavailableError(absl::StrCat("cannot listen for gRPC on ", address,
                                               " (port in use or address not available?)"));
  }
  auto* health = s->grpc_server_->GetHealthCheckService();
  health->SetServingStatus(true);
  health->SetServingStatus("inference.GRPCInferenceService", true);

  if (options.http_port >= 0) {
    auto http = HttpService::Start(options.listen_host, options.http_port, options.tls,
                                   static_cast<size_t>(options.max_message_bytes),
                                   s->core_.get());
    if (!http.ok()) {
      s->Shutdown(absl::ZeroDuration());
      return http.status();
    }
    s->http_service_ = *std::move(http);
    s->http_port_ = s->http_service_->port();
  }
  if (options.metrics_port >= 0) {
    ServingCore* core = s->core_.get();
    auto extra = options.extra_metrics;
    auto metrics = MetricsHttpServer::Start(options.listen_host, options.metrics_port,
                                            [core, extra] {
                                              std::string text = core->RenderMetrics();
                                              if (extra) text += extra();
                                              return text;
                                            });
    if (!metrics.ok()) {
      s->Shutdown(absl::ZeroDuration());
      return metrics.status();
    }
    s->metrics_server_ = *std::move(metrics);
    s->metrics_port_ = s->metrics_server_->port();
  }
  return s;
}

std::string MoeServer::local_grpc_address() const {
  const std::string& h = options_.listen_host;
  const std::string host = (h == "0.0.0.0" || h == "[::]" || h == "::") ? "127.0.0.1" : h;
  return absl::StrCat(host, ":", grpc_port_);
}

int64_t MoeServer::Shutdown(absl::Duration drain_timeout) {
  if (shut_down_) return 0;
  shut_down_ = true;
  if (core_ == nullptr) return 0;  // Start() failed before anything ran
  if (grpc_server_ != nullptr) {
    auto* health = grpc_server_->GetHealthCheckService();
    health->SetServingStatus(false);
    health->SetServingStatus("inference.GRPCInferenceService", false);
  }
  // From here new requests get UNAVAILABLE from the core; accepted ones
  // finish.
  const int64_t cut = core_->Drain(drain_timeout);
  // Keep answering UNAVAILABLE until clients have gone quiet (they have
  // seen the rejections and NOT_SERVING), so that the listener does not
  // close under calls in flight: gRPC cancels calls that race its own
  // shutdown. Bounded by kMaxLinger.
  constexpr absl::Duration kQuiet = absl::Milliseconds(100);
  constexpr absl::Duration kMaxLinger = absl::Seconds(2);
  const absl::Time linger_end = absl::Now() + kMaxLinger;
  while (absl::Now() < linger_end && absl::Now() - core_->last_arrival() < kQuiet) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  // Every accepted request has its answer; wait until gRPC has sent them
  // all (a slow reader can hold one back), bounded by kMaxFlush.
  constexpr absl::Duration kMaxFlush = absl::Seconds(5);
  const absl::Time flush_end = absl::Now() + kMaxFlush;
  while (core_->unsent_answers() > 0 && absl::Now() < flush_end) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  if (grpc_server_ != nullptr) {
    // The last step (held_answers.h): hold every answer back until the
    // clients have gone quiet, each waiting on one held answer, so that no
    // call races gRPC's shutdown (grpc/grpc#41785 answers those CANCELLED).
    HeldAnswers& held = core_->held_answers();
    held.StartHolding();
    constexpr absl::Duration kMaxHold = absl::Seconds(1);
    const absl::Time hold_end = absl::Now() + kMaxHold;
    while (absl::Now() < hold_end && absl::Now() - core_->last_arrival() < kQuiet) {
      absl::SleepFor(absl::Milliseconds(5));
    }
    // Shutdown closes the listener, sends the GOAWAY and waits for the held
    // calls; they are released once the listener is closed (and the GOAWAY
    // queued ahead of their answers), so a client's next call fails over
    // with UNAVAILABLE. A short deadline: after it gRPC cancels whatever is
    // left and closes the connections.
    const std::string host = local_grpc_address().substr(0, local_grpc_address().rfind(':'));
    std::thread releaser([&held, host, port = grpc_port_] {
      WaitUntilRefused(host, port, absl::Seconds(1));
      absl::SleepFor(absl::Milliseconds(20));
      held.Release();
    });
    grpc_server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
    releaser.join();
    grpc_server_->Wait();
  } else {
    core_->held_answers().Release();
  }
  if (http_service_ != nullptr) http_service_->Stop();
  if (metrics_server_ != nullptr) metrics_server_->Stop();
  return cut;
}

MoeServer::~MoeServer() { Shutdown(absl::ZeroDuration()); }

}  // namespace moe
