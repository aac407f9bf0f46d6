#include "client/kserve_rest_client.h"

#include <httplib.h>

#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace moe {
namespace {

using nlohmann::json;

constexpr char kHeaderLength[] = "Inference-Header-Content-Length";

grpc::StatusCode CodeOfHttp(int status) {
  switch (status) {
    case 400:
      return grpc::StatusCode::INVALID_ARGUMENT;
    case 404:
      return grpc::StatusCode::NOT_FOUND;
    case 503:
      return grpc::StatusCode::UNAVAILABLE;
    case 504:
      return grpc::StatusCode::DEADLINE_EXCEEDED;
    case 501:
      return grpc::StatusCode::UNIMPLEMENTED;
    default:
      return grpc::StatusCode::INTERNAL;
  }
}

std::string ErrorText(const httplib::Result& res) {
  json body = json::parse(res->body, nullptr, false);
  if (body.is_object() && body.contains("error") && body["error"].is_string()) {
    return body["error"].get<std::string>();
  }
  return absl::StrCat("HTTP ", res->status);
}

}  // namespace

absl::StatusOr<std::unique_ptr<RestInferClient>> RestInferClient::Create(
    const ConnectionOptions& options) {
  std::unique_ptr<RestInferClient> c(new RestInferClient());
  std::string scheme = options.tls_ca.empty() ? "http://" : "https://";
  c->http_ = std::make_unique<httplib::Client>(scheme + options.address, options.tls_cert,
                                               options.tls_key);
  if (!c->http_->is_valid()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot make an HTTP client for ", options.address,
                     " (bad address, or unreadable --tls_cert/--tls_key)"));
  }
  if (!options.tls_ca.empty()) {
    c->http_->set_ca_cert_path(options.tls_ca.c_str());
    c->http_->enable_server_certificate_verification(true);
  }
  c->http_->set_keep_alive(true);
  c->http_->set_connection_timeout(10, 0);
  return c;
}

RestInferClient::~RestInferClient() = default;

absl::StatusOr<int64_t> RestInferClient::FetchDModel(const std::string& model) {
  auto res = http_->Get(absl::StrCat("/v2/models/", model).c_str());
  if (!res) {
    return absl::UnavailableError(absl::StrCat("no answer from GET /v2/models/", model, ": ",
                                               httplib::to_string(res.error())));
  }
  if (res->status != 200) {
    return absl::Status(static_cast<absl::StatusCode>(CodeOfHttp(res->status)), ErrorText(res));
  }
  json meta = json::parse(res->body, nullptr, false);
  if (!meta.is_object() || !meta.contains("inputs") || meta["inputs"].empty() ||
      meta["inputs"][0]["shape"].size() != 2 || !meta["inputs"][0]["shape"][1].is_number()) {
    return absl::DataLossError("model metadata has no input of shape [T, d_model]");
  }
  return meta["inputs"][0]["shape"][1].get<int64_t>();
}

grpc::Status RestInferClient::Infer(const inference::ModelInferRequest& request,
                                    absl::Duration deadline,
                                    inference::ModelInferResponse* response) {
  json header = json::object();
  if (!request.id().empty()) header["id"] = request.id();
  header["parameters"] = {{"binary_data_output", true}};
  if (deadline < absl::InfiniteDuration()) {
    header["parameters"]["timeout"] = absl::ToInt64Microseconds(deadline);
  }
  json inputs = json::array();
  std::string binary;
  for (int i = 0; i < request.inputs_size(); ++i) {
    const auto& in = request.inputs(i);
    const std::string& raw =
        i < request.raw_input_contents_size() ? request.raw_input_contents(i) : std::string();
    inputs.push_back({{"name", in.name()},
                      {"datatype", in.datatype()},
                      {"shape", std::vector<int64_t>(in.shape().begin(), in.shape().end())},
                      {"parameters", {{"binary_data_size", raw.size()}}}});
    binary += raw;
  }
  header["inputs"] = std::move(inputs);
  if (request.outputs_size() > 0) {
    json outputs = json::array();
    for (const auto& o : request.outputs()) outputs.push_back({{"name", o.name()}});
    header["outputs"] = std::move(outputs);
  }
  const std::string head = header.dump();
  const std::string path = request.model_version().empty()
                               ? absl::StrCat("/v2/models/", request.model_name(), "/infer")
                               : absl::StrCat("/v2/models/", request.model_name(), "/versions/",
                                              request.model_version(), "/infer");
  if (deadline < absl::InfiniteDuration()) {
    const int64_t us = absl::ToInt64Microseconds(deadline) + 1000000;  // + transfer slack
    http_->set_read_timeout(us / 1000000, us % 1000000);
  }
  httplib::Headers headers = {{kHeaderLength, std::to_string(head.size())}};
  auto res = http_->Post(path.c_str(), headers, head + binary, "application/octet-stream");
  if (!res) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        absl::StrCat("no answer over HTTP: ", httplib::to_string(res.error())));
  }
  if (res->status != 200) return grpc::Status(CodeOfHttp(res->status), ErrorText(res));
  size_t json_len = res->body.size();
  if (res->has_header(kHeaderLength)) {
    uint64_t n = 0;
    if (!absl::SimpleAtoi(res->get_header_value(kHeaderLength), &n) || n > res->body.size()) {
      return grpc::Status(grpc::StatusCode::DATA_LOSS, "bad Inference-Header-Content-Length");
    }
    json_len = static_cast<size_t>(n);
  }
  json doc = json::parse(res->body.substr(0, json_len), nullptr, false);
  if (!doc.is_object() || !doc.contains("outputs") || !doc["outputs"].is_array()) {
    return grpc::Status(grpc::StatusCode::DATA_LOSS, "response is not an inference response");
  }
  response->Clear();
  response->set_model_name(doc.value("model_name", ""));
  response->set_model_version(doc.value("model_version", ""));
  response->set_id(doc.value("id", ""));
  size_t at = json_len;
  for (const json& o : doc["outputs"]) {
    auto* t = response->add_outputs();
    t->set_name(o.value("name", ""));
    t->set_datatype(o.value("datatype", ""));
    for (const json& d : o.value("shape", json::array())) t->add_shape(d.get<int64_t>());
    const uint64_t size =
        o.contains("parameters") ? o["parameters"].value("binary_data_size", uint64_t{0}) : 0;
    if (at + size > res->body.size()) {
      return grpc::Status(grpc::StatusCode::DATA_LOSS, "binary output past the body's end");
    }
    response->add_raw_output_contents(res->body.substr(at, size));
    at += size;
  }
  return grpc::Status::OK;
}

}  // namespace moe
