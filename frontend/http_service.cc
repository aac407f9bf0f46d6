#include "frontend/http_service.h"

#include <httplib.h>

#include <future>
#include <nlohmann/json.hpp>
#include <optional>
#include <tuple>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "batching/serving_core.h"
#include "frontend/model_descriptors.h"
#include "frontend/proto_json.h"
#include "frontend/request_codec.h"
#include "frontend/rest_codec.h"
#include "serving/http_listener.h"

namespace moe {
namespace {

using nlohmann::json;

int HttpStatusOf(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
      return 400;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kCancelled:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    case absl::StatusCode::kUnimplemented:
      return 501;
    default:
      return 500;
  }
}

void SendJson(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

void SendError(httplib::Response& res, const absl::Status& st) {
  SendJson(res, HttpStatusOf(st.code()), json{{"error", std::string(st.message())}});
}

// The model and version of a /v2/models/{m}[/versions/{v}]/... match
// (groups 1 and 3 of kModelPath).
std::pair<std::string, std::string> ModelOf(const httplib::Request& req) {
  return {req.matches[1].str(), req.matches.size() > 3 ? req.matches[3].str() : ""};
}

constexpr char kModelPath[] = R"(/v2/models/([^/]+)(/versions/([^/]+))?)";

}  // namespace

absl::StatusOr<std::unique_ptr<HttpService>> HttpService::Start(const std::string& host, int port,
                                                                const TlsOptions& tls,
                                                                size_t max_body_bytes,
                                                                ServingCore* core) {
  std::unique_ptr<HttpService> s(new HttpService());
  s->core_ = core;
  if (!tls.cert_file.empty()) {
    auto ssl = std::make_unique<httplib::SSLServer>(
        tls.cert_file.c_str(), tls.key_file.c_str(),
        tls.client_ca_file.empty() ? nullptr : tls.client_ca_file.c_str());
    if (!ssl->is_valid()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "cannot serve REST over TLS with --tls_cert=", tls.cert_file, " --tls_key=", tls.key_file,
          tls.client_ca_file.empty() ? "" : " --tls_client_ca=", tls.client_ca_file,
          " (unreadable file or key not matching the certificate)"));
    }
    s->server_ = std::move(ssl);
  } else {
    s->server_ = std::make_unique<httplib::Server>();
  }
  s->server_->new_task_queue = [] { return new httplib::ThreadPool(kThreads); };
  s->server_->set_payload_max_length(max_body_bytes);
  // A connection holds one of the threads while it is kept alive: let
  // idle ones go after 2 s, so that probes and new clients get a thread.
  s->server_->set_keep_alive_max_count(1000);
  s->server_->set_keep_alive_timeout(2);
  s->Route();
  auto bound = ListenInBackground(s->server_.get(), host, port, "HTTP/REST", &s->thread_);
  if (!bound.ok()) return bound.status();
  s->port_ = *bound;
  return s;
}

namespace {

void HandleModelConfig(ServingCore* core, const httplib::Request& req, httplib::Response& res) {
  const auto [model, version] = ModelOf(req);
  auto served = core->FindModel(model, version);
  if (!served.ok()) return SendError(res, served.status());
  inference::ModelConfig config;
  FillModelConfig(*core, **served, &config);
  SendJson(res, 200, ProtoToJson(config));
}

// Every model's statistics (/v2/models/stats) or one model's.
void HandleStatistics(ServingCore* core, const httplib::Request& req, httplib::Response& res) {
  std::string model, version;
  if (req.matches.size() > 1 && req.matches[1].matched) std::tie(model, version) = ModelOf(req);
  inference::ModelStatisticsResponse out;
  absl::Status st = FillModelStatistics(*core, model, version, &out);
  if (!st.ok()) return SendError(res, st);
  SendJson(res, 200, ProtoToJson(out));
}

void HandleModelMetadata(ServingCore* core, const httplib::Request& req, httplib::Response& res) {
  const auto [model, version] = ModelOf(req);
  auto served = core->FindModel(model, version);
  if (!served.ok()) return SendError(res, served.status());
  inference::ModelMetadataResponse m;
  FillModelMetadata(**served, &m);
  SendJson(res, 200, ProtoToJson(m));
}

void HandleRepositoryIndex(ServingCore* core, const httplib::Request& req, httplib::Response& res) {
  bool ready_only = false;
  if (!req.body.empty()) {
    json doc = json::parse(req.body, nullptr, false);
    if (doc.is_discarded() || !doc.is_object()) {
      return SendError(res, absl::InvalidArgumentError("request body: expected a JSON object"));
    }
    if (doc.contains("ready")) {
      if (!doc["ready"].is_boolean()) {
        return SendError(res, absl::InvalidArgumentError("ready: expected a bool"));
      }
      ready_only = doc["ready"].get<bool>();
    }
  }
  inference::RepositoryIndexResponse index;
  FillRepositoryIndex(*core, ready_only, &index);
  SendJson(res, 200, ProtoToJson(index)["models"]);
}

// The Inference-Header-Content-Length header, when sent.
absl::StatusOr<std::optional<int64_t>> HeaderLength(const httplib::Request& req) {
  if (!req.has_header(kHeaderLengthHeader)) return std::nullopt;
  int64_t n = 0;
  if (!absl::SimpleAtoi(req.get_header_value(kHeaderLengthHeader), &n)) {
    return absl::InvalidArgumentError(absl::StrCat(kHeaderLengthHeader,
                                                   ": expected a byte count, got '",
                                                   req.get_header_value(kHeaderLengthHeader), "'"));
  }
  return n;
}

void HandleInfer(ServingCore* core, const httplib::Request& req, httplib::Response& res) {
  const absl::Time start = absl::Now();
  core->NoteArrival();
  const auto [model, version] = ModelOf(req);
  auto found = core->FindModel(model, version);
  const ServedModel* served = found.ok() ? *found : nullptr;
  // Counted on the model named, or as unrouted when none is served.
  auto fail = [&](const absl::Status& st) {
    if (served == nullptr) {
      core->RecordUnrouted(st);
    } else {
      served->metrics().RecordRequest(st, 0, 0, absl::Now() - start, absl::ZeroDuration());
    }
    SendError(res, st);
  };
  if (served == nullptr) return fail(found.status());
  auto header_length = HeaderLength(req);
  if (!header_length.ok()) return fail(header_length.status());
  auto rest = ParseRestInferRequest(req.body, *header_length, model, version);
  if (!rest.ok()) return fail(rest.status());
  auto decoded = DecodeInferRequest(rest->request, served->io());
  if (!decoded.ok()) return fail(decoded.status());
  auto task = MakeInferTask(*decoded, RequestDeadline(*decoded, start, absl::InfiniteFuture()));
  // Shared with the batcher's `done`, which may still be returning from
  // set_value when this thread wakes.
  auto finished = std::make_shared<std::promise<absl::Status>>();
  std::future<absl::Status> answer = finished->get_future();
  task->done = [finished](const absl::Status& st, InferTask&) { finished->set_value(st); };
  core->AnswersPending(1);
  absl::Status st = core->Submit(*served, task);
  const bool submitted = st.ok();
  if (submitted) st = answer.get();
  const int64_t tokens = task->num_tokens;
  if (st.ok()) {
    inference::ModelInferResponse response;
    EncodeInferResponse(*decoded, *task, served->io(), &response);
    RestBody body = EncodeRestInferResponse(response, *rest);
    if (body.header_length.has_value()) {
      res.set_header(kHeaderLengthHeader, absl::StrCat(*body.header_length));
    }
    res.status = 200;
    res.set_content(body.body, body.content_type.c_str());
  } else {
    SendError(res, st);
  }
  served->metrics().RecordRequest(st, submitted ? tokens : 0, st.ok() ? tokens : 0,
                                  absl::Now() - start, task->queue_time);
  core->AnswersSent(1);
}

// Unmatched paths and methods: the spec's error body.
void HandleError(const httplib::Request& req, httplib::Response& res) {
  if (!res.body.empty()) return;
  const std::string what = res.status == 404
                               ? absl::StrCat("no endpoint ", req.method, " ", req.path)
                           : res.status == 413 ? "request body too large"
                                               : absl::StrCat("HTTP ", res.status);
  res.set_content(json{{"error", what}}.dump(-1, ' ', false, json::error_handler_t::replace),
                  "application/json");
}

}  // namespace

void HttpService::Route() {
  httplib::Server& http = *server_;
  ServingCore* core = core_;
  // A handler of `core`.
  auto with_core =
      [core](void (*handler)(ServingCore*, const httplib::Request&, httplib::Response&)) {
        return [core, handler](const httplib::Request& req, httplib::Response& res) {
          handler(core, req, res);
        };
      };
  http.Get("/v2/health/live", [](const httplib::Request&, httplib::Response& res) {
    SendJson(res, 200, json{{"live", true}});
  });
  http.Get("/v2/health/ready", [core](const httplib::Request&, httplib::Response& res) {
    const bool ready = !core->draining();
    SendJson(res, ready ? 200 : 400, json{{"ready", ready}});
  });
  http.Get("/v2", [](const httplib::Request&, httplib::Response& res) {
    inference::ServerMetadataResponse m;
    FillServerMetadata(&m);
    SendJson(res, 200, ProtoToJson(m));
  });
  http.Get(absl::StrCat(kModelPath, "/ready"),
           [core](const httplib::Request& req, httplib::Response& res) {
             const auto [model, version] = ModelOf(req);
             const bool ready = ModelIsReady(*core, model, version);
             SendJson(res, ready ? 200 : 400, json{{"name", model}, {"ready", ready}});
           });
  http.Get(absl::StrCat(kModelPath, "/config"), with_core(HandleModelConfig));
  http.Get("/v2/models/stats", with_core(HandleStatistics));
  http.Get(absl::StrCat(kModelPath, "/stats"), with_core(HandleStatistics));
  http.Get(kModelPath, with_core(HandleModelMetadata));
  http.Post("/v2/repository/index", with_core(HandleRepositoryIndex));
  http.Post(absl::StrCat(kModelPath, "/infer"), with_core(HandleInfer));
  // The model repository extension's load and unload: this server's model
  // is fixed at start-up (as Triton without explicit model control).
  http.Post(R"(/v2/repository/models/([^/]+)/(load|unload))",
            [](const httplib::Request& req, httplib::Response& res) {
              SendJson(res, 400,
                       json{{"error", absl::StrCat("explicit model ", req.matches[2].str(),
                                                   " is not allowed: the model is fixed at "
                                                   "start-up")}});
            });
  http.set_error_handler(HandleError);
}

void HttpService::Stop() {
  if (server_ != nullptr) server_->stop();
  if (thread_.joinable()) thread_.join();
}

HttpService::~HttpService() { Stop(); }

}  // namespace moe
