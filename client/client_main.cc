// moe_client: talk to a moe-serve (or any KServe v2) gRPC server.
//
//   moe_client health                       exit 0 only when SERVING
//   moe_client metadata                     server and model metadata
//   moe_client infer --random=4 --seed=1    or --input=tokens.npy [--output=out.npy]
//   moe_client infer --random=2 --show_routing
//   moe_client stats                        ModelStatistics
//   moe_client config                       ModelConfig (Triton's)
//   --json on metadata, stats and config prints the messages as protobuf
//   JSON (field names as in the proto, as tritonclient's as_json does).
#include <cmath>
#include <cstdio>
#include <map>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/kserve_client.h"
#include "common/command_line.h"
#include "common/npy.h"
#include "common/seeded_random.h"
#include "google/protobuf/util/json_util.h"
#include "proto/health.grpc.pb.h"

ABSL_FLAG(std::string, address, "localhost:8001", "Server address host:port.");
ABSL_FLAG(std::string, model, "moe", "Model name.");
ABSL_FLAG(int64_t, deadline_ms, 10000, "Deadline of each call, milliseconds.");
ABSL_FLAG(std::string, tls_ca, "", "PEM CA to trust: connect with TLS.");
ABSL_FLAG(std::string, tls_cert, "", "PEM client certificate (mutual TLS).");
ABSL_FLAG(std::string, tls_key, "", "PEM client key (mutual TLS).");
ABSL_FLAG(std::string, service, "", "health: the service to check (empty: the whole server).");
ABSL_FLAG(std::string, input, "", "infer: .npy file of float32 [T, d_model] tokens.");
ABSL_FLAG(int64_t, random, 0, "infer: send T random tokens (uniform in [-1, 1)) instead.");
ABSL_FLAG(uint64_t, seed, 1, "infer: seed of --random.");
ABSL_FLAG(bool, bf16, false, "infer: send (and receive) BF16 instead of FP32.");
ABSL_FLAG(std::string, output, "", "infer: write the output to this .npy file.");
ABSL_FLAG(bool, show_routing, false, "infer: print the experts and weights of each token.");
ABSL_FLAG(bool, json, false,
          "metadata, stats, config: print the responses as JSON (protobuf's mapping, proto "
          "field names) instead of text.");

namespace {

using moe::DescribeGrpcError;

int Usage() {
  std::fprintf(stderr,
               "usage: moe_client {health|metadata|infer|stats|config} [flags]; --help for "
               "flags\n");
  return 2;
}

// Prints `m` as one JSON object line.
void PrintJson(const google::protobuf::Message& m) {
  google::protobuf::util::JsonPrintOptions o;
  o.preserve_proto_field_names = true;
  o.always_print_primitive_fields = true;
  std::string text;
  if (!google::protobuf::util::MessageToJsonString(m, &text, o).ok()) text = "{}";
  std::printf("%s\n", text.c_str());
}

void SetDeadline(grpc::ClientContext* ctx) {
  ctx->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::milliseconds(absl::GetFlag(FLAGS_deadline_ms)));
}

// Calls one unary RPC of `stub` with the --deadline_ms deadline. On failure
// prints the error (naming --address) to stderr and returns false.
template <typename Stub, typename Request, typename Response>
bool CallUnary(Stub* stub,
               grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&, Response*),
               const Request& req, Response* resp) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  const grpc::Status st = (stub->*method)(&ctx, req, resp);
  if (!st.ok()) {
    std::fprintf(stderr, "%s\n", DescribeGrpcError(st, absl::GetFlag(FLAGS_address)).c_str());
  }
  return st.ok();
}

int Health(const std::shared_ptr<grpc::Channel>& channel) {
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::health::v1::HealthCheckRequest req;
  req.set_service(absl::GetFlag(FLAGS_service));
  grpc::health::v1::HealthCheckResponse resp;
  if (!CallUnary(stub.get(), &grpc::health::v1::Health::Stub::Check, req, &resp)) return 1;
  const char* names[] = {"UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"};
  const int s = static_cast<int>(resp.status());
  std::printf("%s\n", s >= 0 && s <= 3 ? names[s] : "UNKNOWN");
  return resp.status() == grpc::health::v1::HealthCheckResponse::SERVING ? 0 : 1;
}

int Metadata(inference::GRPCInferenceService::Stub* stub) {
  using Stub = inference::GRPCInferenceService::Stub;
  inference::ServerMetadataResponse sm;
  if (!CallUnary(stub, &Stub::ServerMetadata, inference::ServerMetadataRequest(), &sm)) return 1;
  const bool json = absl::GetFlag(FLAGS_json);
  if (json) PrintJson(sm);
  if (!json) std::printf("server   %s %s\n", sm.name().c_str(), sm.version().c_str());
  std::string ext;
  for (const auto& e : sm.extensions()) absl::StrAppend(&ext, ext.empty() ? "" : ", ", e);
  if (!json) std::printf("extensions %s\n", ext.c_str());
  inference::ModelMetadataRequest req;
  req.set_name(absl::GetFlag(FLAGS_model));
  inference::ModelMetadataResponse mm;
  if (!CallUnary(stub, &Stub::ModelMetadata, req, &mm)) return 1;
  if (json) {
    PrintJson(mm);
    return 0;
  }
  std::string versions;
  for (const auto& v : mm.versions()) absl::StrAppend(&versions, versions.empty() ? "" : ", ", v);
  std::printf("model    %s (versions %s, platform %s)\n", mm.name().c_str(), versions.c_str(),
              mm.platform().c_str());
  auto print = [](const char* kind, const auto& t) {
    std::string shape;
    for (auto d : t.shape()) absl::StrAppend(&shape, shape.empty() ? "" : ", ", d);
    std::printf("  %-6s %-15s %-5s [%s]\n", kind, t.name().c_str(), t.datatype().c_str(),
                shape.c_str());
  };
  for (const auto& t : mm.inputs()) print("input", t);
  for (const auto& t : mm.outputs()) print("output", t);
  return 0;
}

// The tokens to send, [T, d_model] row-major.
struct InputTokens {
  std::vector<float> values;
  int64_t d_model = 0;
};

// From --input (a float32 [T, d_model] .npy) or --random=T tokens of the
// model's width; on failure, the exit code (2: usage, 1: server) after
// saying why.
absl::StatusOr<InputTokens> ReadInputTokens(inference::GRPCInferenceService::Stub* stub,
                                            int* exit_code) {
  InputTokens in;
  *exit_code = 2;
  if (!absl::GetFlag(FLAGS_input).empty()) {
    auto npy = moe::ReadNpy(absl::GetFlag(FLAGS_input));
    if (!npy.ok()) return npy.status();
    if (npy->descr != "<f4" || npy->shape.size() != 2) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: need float32 [T, d_model], got %s of rank %zu",
                          absl::GetFlag(FLAGS_input), npy->descr, npy->shape.size()));
    }
    in.d_model = npy->shape[1];
    in.values = std::move(npy->f32);
    return in;
  }
  if (absl::GetFlag(FLAGS_random) <= 0) {
    return absl::InvalidArgumentError("infer needs --input=FILE.npy or --random=T");
  }
  auto d = moe::FetchDModel(stub, absl::GetFlag(FLAGS_model), absl::GetFlag(FLAGS_deadline_ms));
  if (!d.ok()) {
    *exit_code = 1;
    return absl::UnavailableError(absl::StrCat(
        "cannot read the model's d_model: ",
        DescribeGrpcError(grpc::Status(static_cast<grpc::StatusCode>(d.status().code()),
                                       std::string(d.status().message())),
                          absl::GetFlag(FLAGS_address))));
  }
  in.d_model = *d;
  moe::SeededRandom rng(absl::GetFlag(FLAGS_seed));
  in.values = rng.UniformVector(absl::GetFlag(FLAGS_random) * in.d_model, 1.0f);
  return in;
}

// The output's summary line and, with `routing`, each token's experts.
void PrintResult(const moe::InferResult& result, const std::string& datatype, bool routing) {
  double sum = 0, max_abs = 0;
  for (float v : result.output) {
    sum += v;
    max_abs = std::max(max_abs, static_cast<double>(std::fabs(v)));
  }
  std::printf("output [%lld, %lld] %s  mean %.6g  max|y| %.6g\n",
              static_cast<long long>(result.num_tokens), static_cast<long long>(result.d_model),
              datatype.c_str(),
              sum / static_cast<double>(std::max<size_t>(result.output.size(), 1)), max_abs);
  if (!routing) return;
  const int k = result.top_k;
  for (int64_t t = 0; t < result.num_tokens; ++t) {
    std::string line = absl::StrCat("token ", t, ":");
    for (int j = 0; j < k; ++j) {
      const size_t i = static_cast<size_t>(t * k + j);
      absl::StrAppend(&line, " expert ", result.expert_ids[i], " (",
                      absl::StrFormat("%.4f", result.expert_weights[i]), ")");
    }
    std::printf("%s\n", line.c_str());
  }
}

int Infer(inference::GRPCInferenceService::Stub* stub) {
  int exit_code = 0;
  absl::StatusOr<InputTokens> in = ReadInputTokens(stub, &exit_code);
  if (!in.ok()) {
    std::fprintf(stderr, "%s\n", std::string(in.status().message()).c_str());
    return exit_code;
  }
  const bool routing = absl::GetFlag(FLAGS_show_routing);
  auto req = moe::BuildInferRequest(absl::GetFlag(FLAGS_model), in->values, in->d_model,
                                    absl::GetFlag(FLAGS_bf16), "moe_client", routing);
  inference::ModelInferResponse resp;
  if (!CallUnary(stub, &inference::GRPCInferenceService::Stub::ModelInfer, req, &resp)) return 1;
  auto result = moe::ParseInferResponse(resp);
  if (!result.ok()) {
    std::fprintf(stderr, "bad response: %s\n", result.status().ToString().c_str());
    return 1;
  }
  PrintResult(*result, resp.outputs(0).datatype(), routing);
  if (!absl::GetFlag(FLAGS_output).empty()) {
    absl::Status w = moe::WriteNpyF32(absl::GetFlag(FLAGS_output),
                                      {result->num_tokens, result->d_model}, result->output);
    if (!w.ok()) {
      std::fprintf(stderr, "%s\n", w.ToString().c_str());
      return 1;
    }
    std::printf("wrote %s\n", absl::GetFlag(FLAGS_output).c_str());
  }
  return 0;
}

int Stats(inference::GRPCInferenceService::Stub* stub) {
  inference::ModelStatisticsRequest req;
  req.set_name(absl::GetFlag(FLAGS_model));
  inference::ModelStatisticsResponse resp;
  if (!CallUnary(stub, &inference::GRPCInferenceService::Stub::ModelStatistics, req, &resp))
    return 1;
  if (absl::GetFlag(FLAGS_json)) {
    PrintJson(resp);
    return 0;
  }
  for (const auto& m : resp.model_stats()) {
    const auto& s = m.inference_stats();
    auto avg_ms = [](const inference::StatisticDuration& d) {
      return d.count() ? static_cast<double>(d.ns()) / static_cast<double>(d.count()) / 1e6 : 0.0;
    };
    std::printf("model %s version %s\n", m.name().c_str(), m.version().c_str());
    std::printf("  requests ok %llu (avg %.3f ms), failed %llu\n",
                static_cast<unsigned long long>(s.success().count()), avg_ms(s.success()),
                static_cast<unsigned long long>(s.fail().count()));
    std::printf("  queue avg %.3f ms, compute avg %.3f ms per batch\n", avg_ms(s.queue()),
                avg_ms(s.compute_infer()));
    std::printf("  tokens computed %llu in %llu batches (avg %.1f tokens/batch)\n",
                static_cast<unsigned long long>(m.inference_count()),
                static_cast<unsigned long long>(m.execution_count()),
                m.execution_count() ? static_cast<double>(m.inference_count()) /
                                          static_cast<double>(m.execution_count())
                                    : 0.0);
  }
  return 0;
}

int Config(inference::GRPCInferenceService::Stub* stub) {
  inference::ModelConfigRequest req;
  req.set_name(absl::GetFlag(FLAGS_model));
  inference::ModelConfigResponse resp;
  if (!CallUnary(stub, &inference::GRPCInferenceService::Stub::ModelConfig, req, &resp)) return 1;
  if (absl::GetFlag(FLAGS_json)) {
    PrintJson(resp);
    return 0;
  }
  const inference::ModelConfig& c = resp.config();
  std::printf("model %s (platform %s, backend %s, max_batch_size %d)\n", c.name().c_str(),
              c.platform().c_str(), c.backend().c_str(), c.max_batch_size());
  auto dims = [](const auto& t) {
    std::string out;
    for (auto d : t.dims()) absl::StrAppend(&out, out.empty() ? "" : ", ", d);
    return out;
  };
  for (const auto& t : c.input()) {
    std::printf("  input  %-15s %-10s [%s]\n", t.name().c_str(),
                inference::DataType_Name(t.data_type()).c_str(), dims(t).c_str());
  }
  for (const auto& t : c.output()) {
    std::printf("  output %-15s %-10s [%s]\n", t.name().c_str(),
                inference::DataType_Name(t.data_type()).c_str(), dims(t).c_str());
  }
  if (c.has_dynamic_batching()) {
    std::printf(
        "  dynamic batching: preferred %d tokens, max queue delay %llu us\n",
        c.dynamic_batching().preferred_batch_size_size() > 0
            ? c.dynamic_batching().preferred_batch_size(0)
            : 0,
        static_cast<unsigned long long>(c.dynamic_batching().max_queue_delay_microseconds()));
  }
  std::map<std::string, std::string> params;
  for (const auto& [k, v] : c.parameters()) params[k] = v.string_value();
  for (const auto& [k, v] : params) std::printf("  %-18s %s\n", k.c_str(), v.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> args = moe::ParseCommandLineOrExit(
      argc, argv,
      "Command-line client of a KServe v2 gRPC server.\n"
      "  moe_client {health|metadata|infer|stats|config} [--address=host:port] [flags]");
  if (args.size() != 2) return Usage();
  const std::string command = args[1];
  moe::ConnectionOptions conn;
  conn.address = absl::GetFlag(FLAGS_address);
  conn.tls_ca = absl::GetFlag(FLAGS_tls_ca);
  conn.tls_cert = absl::GetFlag(FLAGS_tls_cert);
  conn.tls_key = absl::GetFlag(FLAGS_tls_key);
  auto channel = moe::MakeChannel(conn);
  if (!channel.ok()) {
    std::fprintf(stderr, "%s\n", channel.status().ToString().c_str());
    return 2;
  }
  if (command == "health") return Health(*channel);
  auto stub = inference::GRPCInferenceService::NewStub(*channel);
  if (command == "metadata") return Metadata(stub.get());
  if (command == "infer") return Infer(stub.get());
  if (command == "stats") return Stats(stub.get());
  if (command == "config") return Config(stub.get());
  return Usage();
}
