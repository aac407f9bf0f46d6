#include "frontend/moe_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "batching/serving_core.h"
#include "common/status_macros.h"
#include "frontend/http_service.h"
#include "frontend/inference_service.h"
#include "serving/metrics_http_server.h"

namespace moe {
namespace {

absl::StatusOr<std::string> ReadPem(const std::string& path, const char* what) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(what, " file '", path, "' cannot be read"));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (text.empty())
    return absl::InvalidArgumentError(absl::StrCat(what, " file '", path, "' is empty"));
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

// Where this host reaches a server listening on `listen_host`: loopback
// for the wildcard addresses, the address itself (brackets dropped)
// otherwise.
std::vector<std::string> ProbeHosts(const std::string& listen_host) {
  if (listen_host == "0.0.0.0") return {"127.0.0.1"};
  if (listen_host == "::" || listen_host == "[::]") return {"::1", "127.0.0.1"};
  std::string h = listen_host;
  if (h.size() > 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  return {h};
}

// Outcome of one TCP connect to host:port: 0 connected, else the errno
// (ECONNREFUSED: nothing listens any more), or -1 if the name does not
// resolve.
int ConnectOnce(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found) != 0) return -1;
  int result = -1;
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    const int fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (fd < 0) continue;
    result = connect(fd, a->ai_addr, a->ai_addrlen) == 0 ? 0 : errno;
    close(fd);
    if (result == 0) break;
  }
  freeaddrinfo(found);
  return result;
}

// The first of `hosts` on which the listener accepts now, or "" if none
// does (then its closing cannot be observed).
std::string ReachableHost(const std::vector<std::string>& hosts, int port) {
  for (const std::string& h : hosts) {
    if (ConnectOnce(h, port) == 0) return h;
  }
  return "";
}

// True once connecting to host:port is refused (the listener closed),
// polled until `timeout`.
bool WaitUntilRefused(const std::string& host, int port, absl::Duration timeout) {
  const absl::Time end = absl::Now() + timeout;
  while (absl::Now() < end) {
    if (ConnectOnce(host, port) == ECONNREFUSED) return true;
    absl::SleepFor(absl::Milliseconds(2));
  }
  return false;
}

}  // namespace

absl::StatusOr<std::unique_ptr<MoeServer>> MoeServer::Start(std::unique_ptr<MoeLayer> layer,
                                                            const ServerOptions& options) {
  std::vector<std::unique_ptr<MoeLayer>> layers;
  layers.push_back(std::move(layer));
  return Start(std::move(layers), {options.model_name}, options);
}

namespace {

absl::Status CheckLimits(const ServerOptions& options) {
  if (options.batching.max_batch_tokens < 1 || options.batching.max_queue_tokens < 1 ||
      options.limits.max_request_tokens < 1) {
    return absl::InvalidArgumentError(
        "max_batch_tokens, max_queue_tokens and max_request_tokens must be >= 1");
  }
  if (options.limits.max_request_tokens > options.batching.max_queue_tokens) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_request_tokens (", options.limits.max_request_tokens, ") exceeds max_queue_tokens (",
        options.batching.max_queue_tokens, "): such requests could never be queued"));
  }
  return absl::OkStatus();
}

// layers[i] as model names[i] (distinct, not empty), with options.limits
// and the layer's own sizes.
absl::StatusOr<std::vector<ModelToServe>> ModelsToServe(
    std::vector<std::unique_ptr<MoeLayer>> layers, const std::vector<std::string>& names,
    const ServerOptions& options) {
  if (layers.empty() || layers.size() != names.size()) {
    return absl::InvalidArgumentError(absl::StrCat("a server needs one name per layer (",
                                                   layers.size(), " layers, ", names.size(),
                                                   " names)"));
  }
  std::vector<ModelToServe> models;
  std::set<std::string> seen;
  for (size_t i = 0; i < layers.size(); ++i) {
    if (names[i].empty() || !seen.insert(names[i]).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("model name '", names[i], "' is empty or given twice"));
    }
    ModelToServe m;
    m.io = MakeModelIo(names[i], *layers[i], options.limits);
    m.layer = std::move(layers[i]);
    models.push_back(std::move(m));
  }
  return models;
}

}  // namespace

absl::StatusOr<std::unique_ptr<MoeServer>> MoeServer::Start(
    std::vector<std::unique_ptr<MoeLayer>> layers, const std::vector<std::string>& names,
    const ServerOptions& options) {
  MOE_ASSIGN_OR_RETURN(std::vector<ModelToServe> models,
                       ModelsToServe(std::move(layers), names, options));
  MOE_RETURN_IF_ERROR(CheckLimits(options));
  auto creds = MakeCredentials(options.tls);
  if (!creds.ok()) return creds.status();

  std::unique_ptr<MoeServer> s(new MoeServer());
  s->options_ = options;
  s->core_ = std::make_unique<ServingCore>(std::move(models), options.batching);
  s->service_ = std::make_unique<InferenceService>(s->core_.get());
  absl::Status st = s->StartGrpc(*creds);
  if (!st.ok()) {
    s->core_->Drain(absl::ZeroDuration());
    return st;
  }
  st = s->StartRestAndMetrics();
  if (!st.ok()) {
    s->Shutdown(absl::ZeroDuration());
    return st;
  }
  return s;
}

absl::Status MoeServer::StartGrpc(const std::shared_ptr<grpc::ServerCredentials>& creds) {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  const std::string address = absl::StrCat(options_.listen_host, ":", options_.grpc_port);
  builder.AddListeningPort(address, creds, &grpc_port_);
  builder.RegisterService(service_.get());
  builder.SetMaxReceiveMessageSize(options_.max_message_bytes);
  builder.SetMaxSendMessageSize(options_.max_message_bytes);
  grpc_server_ = builder.BuildAndStart();
  if (grpc_server_ == nullptr || grpc_port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen for gRPC on ", address,
                                               " (port in use or address not available?)"));
  }
  auto* health = grpc_server_->GetHealthCheckService();
  health->SetServingStatus(true);
  health->SetServingStatus("inference.GRPCInferenceService", true);
  return absl::OkStatus();
}

absl::Status MoeServer::StartRestAndMetrics() {
  if (options_.http_port >= 0) {
    MOE_ASSIGN_OR_RETURN(
        http_service_,
        HttpService::Start(options_.listen_host, options_.http_port, options_.tls,
                           static_cast<size_t>(options_.max_message_bytes), core_.get()));
    http_port_ = http_service_->port();
  }
  if (options_.metrics_port >= 0) {
    ServingCore* core = core_.get();
    auto extra = options_.extra_metrics;
    MOE_ASSIGN_OR_RETURN(
        metrics_server_,
        MetricsHttpServer::Start(options_.listen_host, options_.metrics_port, [core, extra] {
          std::string text = core->RenderMetrics();
          if (extra) text += extra();
          return text;
        }));
    metrics_port_ = metrics_server_->port();
  }
  return absl::OkStatus();
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
  // Every accepted stream answer is computed: end the open streams with
  // UNAVAILABLE once written.
  if (service_ != nullptr) service_->CloseStreams();
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
    // The whole hold stays within HeldAnswers::kMaxHold: at most 1 s of
    // waiting for quiet plus at most 270 ms until the release.
    const std::string probe_host = ReachableHost(ProbeHosts(options_.listen_host), grpc_port_);
    HeldAnswers& held = core_->held_answers();
    held.StartHolding();
    constexpr absl::Duration kMaxQuietWait = absl::Seconds(1);
    const absl::Time hold_end = absl::Now() + kMaxQuietWait;
    while (absl::Now() < hold_end && absl::Now() - held.last_activity() < kQuiet) {
      absl::SleepFor(absl::Milliseconds(5));
    }
    // Shutdown closes the listener, then queues the GOAWAY on every
    // connection, then waits for the held calls. They are released once the
    // listener refuses connections (and 20 ms more for the GOAWAY to be
    // queued ahead of their answers), so a client's next call sees the
    // GOAWAY and fails over with UNAVAILABLE. If the listener cannot be
    // probed, they are released 100 ms after Shutdown began. Shutdown's
    // deadline leaves the released answers 230 ms to go out and is kept
    // short on purpose: past it gRPC closes the connections. Until then an
    // idle connection stays open after its GOAWAY, and a client that comes
    // back on it (after a backoff, say) has its call cancelled (CANCELLED)
    // rather than refused (UNAVAILABLE).
    std::thread releaser([&held, probe_host, port = grpc_port_] {
      const bool closed =
          !probe_host.empty() && WaitUntilRefused(probe_host, port, absl::Milliseconds(250));
      absl::SleepFor(closed ? absl::Milliseconds(20) : absl::Milliseconds(100));
      held.Release();
    });
    // With nothing held (every client is away, backing off, say) there is
    // nothing to wait for: close the connections after 100 ms.
    const auto linger =
        held.held() > 0 ? std::chrono::milliseconds(500) : std::chrono::milliseconds(100);
    grpc_server_->Shutdown(std::chrono::system_clock::now() + linger);
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
