#include "client/kserve_client.h"

#include <cstring>
#include <fstream>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "common/dtype.h"

namespace moe {
namespace {

absl::StatusOr<std::string> ReadFileText(const std::string& path, const char* what) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(what, " '", path, "' cannot be read"));
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const ConnectionOptions& o, int index) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(256 << 20);
  args.SetMaxSendMessageSize(256 << 20);
  // Distinct argument sets give distinct subchannels, i.e. connections.
  args.SetInt("moe.channel_index", index);
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (o.tls_ca.empty()) {
    if (!o.tls_cert.empty() || !o.tls_key.empty()) {
      return absl::InvalidArgumentError("--tls_cert/--tls_key need --tls_ca");
    }
    creds = grpc::InsecureChannelCredentials();
  } else {
    grpc::SslCredentialsOptions ssl;
    auto ca = ReadFileText(o.tls_ca, "TLS CA file");
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *ca;
    if (!o.tls_cert.empty() || !o.tls_key.empty()) {
      auto cert = ReadFileText(o.tls_cert, "TLS client certificate");
      if (!cert.ok()) return cert.status();
      auto key = ReadFileText(o.tls_key, "TLS client key");
      if (!key.ok()) return key.status();
      ssl.pem_cert_chain = *cert;
      ssl.pem_private_key = *key;
    }
    creds = grpc::SslCredentials(ssl);
  }
  return grpc::CreateCustomChannel(o.address, creds, args);
}

std::string DescribeGrpcError(const grpc::Status& s, const std::string& address) {
  const std::string msg = s.error_message();
  switch (s.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      return absl::StrCat("UNAVAILABLE: the server at ", address,
                          " cannot be reached or is not accepting requests (", msg, ")");
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return absl::StrCat("DEADLINE_EXCEEDED: no answer from ", address,
                          " within the deadline (raise --deadline_ms?)", msg.empty() ? "" : ": ",
                          msg);
    case grpc::StatusCode::INVALID_ARGUMENT:
      return absl::StrCat("INVALID_ARGUMENT: the server rejected the request: ", msg);
    case grpc::StatusCode::NOT_FOUND:
      return absl::StrCat("NOT_FOUND: ", msg, " (check --model)");
    case grpc::StatusCode::UNIMPLEMENTED:
      return absl::StrCat("UNIMPLEMENTED: the server at ", address,
                          " does not offer this call (is it a KServe v2 server?)");
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::PERMISSION_DENIED:
      return absl::StrCat("access refused by ", address, ": ", msg, " (check the TLS flags)");
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return absl::StrCat("RESOURCE_EXHAUSTED: ", msg,
                          " (message too large for the server's --max_message_bytes?)");
    case grpc::StatusCode::CANCELLED:
      return absl::StrCat("CANCELLED: ", msg);
    default:
      return absl::StrCat("gRPC error ", static_cast<int>(s.error_code()), ": ", msg);
  }
}

inference::ModelInferRequest BuildInferRequest(const std::string& model,
                                               const std::vector<float>& tokens, int64_t d_model,
                                               bool bf16, const std::string& id,
                                               bool want_routing) {
  inference::ModelInferRequest r;
  r.set_model_name(model);
  r.set_id(id);
  auto* in = r.add_inputs();
  in->set_name("input");
  in->set_datatype(bf16 ? "BF16" : "FP32");
  in->add_shape(static_cast<int64_t>(tokens.size()) / d_model);
  in->add_shape(d_model);
  std::string* raw = r.add_raw_input_contents();
  if (bf16) {
    raw->resize(tokens.size() * 2);
    auto* bits = reinterpret_cast<uint16_t*>(raw->data());
    for (size_t i = 0; i < tokens.size(); ++i) bits[i] = FloatToBf16(tokens[i]);
  } else {
    raw->assign(reinterpret_cast<const char*>(tokens.data()), tokens.size() * 4);
  }
  r.add_outputs()->set_name("output");
  if (want_routing) {
    r.add_outputs()->set_name("expert_ids");
    r.add_outputs()->set_name("expert_weights");
  }
  return r;
}

absl::StatusOr<InferResult> ParseInferResponse(const inference::ModelInferResponse& resp) {
  InferResult out;
  if (resp.raw_output_contents_size() != resp.outputs_size()) {
    return absl::DataLossError(absl::StrCat("response has ", resp.outputs_size(), " outputs but ",
                                            resp.raw_output_contents_size(),
                                            " raw_output_contents"));
  }
  for (int i = 0; i < resp.outputs_size(); ++i) {
    const auto& o = resp.outputs(i);
    const std::string& raw = resp.raw_output_contents(i);
    if (o.shape_size() != 2 || o.shape(0) < 0 || o.shape(1) < 0) {
      return absl::DataLossError(
          absl::StrCat("output '", o.name(), "' is not a rank-2 shape of sizes >= 0"));
    }
    const char* want = o.name() == "expert_ids"       ? "INT32"
                       : o.name() == "expert_weights" ? "FP32"
                       : o.datatype() == "BF16"       ? "BF16"
                                                      : "FP32";
    const bool known =
        o.name() == "output" || o.name() == "expert_ids" || o.name() == "expert_weights";
    if (known && o.datatype() != want) {
      return absl::DataLossError(
          absl::StrCat("output '", o.name(), "' is ", o.datatype(), ", expected ", want));
    }
    const int64_t n = o.shape(0) * o.shape(1);
    const int64_t elem = o.datatype() == "BF16" ? 2 : 4;
    if (static_cast<int64_t>(raw.size()) != n * elem) {
      return absl::DataLossError(absl::StrCat("output '", o.name(), "' has ", raw.size(),
                                              " bytes for shape [", o.shape(0), ", ", o.shape(1),
                                              "] ", o.datatype()));
    }
    if (o.name() == "output") {
      out.num_tokens = o.shape(0);
      out.d_model = o.shape(1);
      out.output.resize(static_cast<size_t>(n));
      if (o.datatype() == "BF16") {
        ConvertToFloat(DType::kBF16, raw.data(), n, out.output.data());
      } else {
        std::memcpy(out.output.data(), raw.data(), raw.size());
      }
    } else if (o.name() == "expert_ids") {
      out.top_k = static_cast<int>(o.shape(1));
      out.expert_ids.resize(static_cast<size_t>(n));
      std::memcpy(out.expert_ids.data(), raw.data(), raw.size());
    } else if (o.name() == "expert_weights") {
      out.expert_weights.resize(static_cast<size_t>(n));
      std::memcpy(out.expert_weights.data(), raw.data(), raw.size());
    }
  }
  return out;
}

absl::StatusOr<int64_t> FetchDModel(inference::GRPCInferenceService::Stub* stub,
                                    const std::string& model, int64_t deadline_ms) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(deadline_ms));
  inference::ModelMetadataRequest req;
  req.set_name(model);
  inference::ModelMetadataResponse resp;
  grpc::Status st = stub->ModelMetadata(&ctx, req, &resp);
  if (!st.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(st.error_code()), st.error_message());
  }
  if (resp.inputs_size() < 1 || resp.inputs(0).shape_size() != 2 || resp.inputs(0).shape(1) < 1) {
    return absl::FailedPreconditionError(
        absl::StrCat("model '", model, "' metadata has no [T, d_model] input"));
  }
  return resp.inputs(0).shape(1);
}

}  // namespace moe
