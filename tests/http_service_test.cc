// The KServe v2 REST API against an in-process server on 127.0.0.1:0
// (cpp-httplib's client on loopback): every endpoint, JSON and binary
// tensors, every error code, and the same bits as gRPC for the same tokens.
#include <httplib.h>

#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "batching/serving_core.h"
#include "common/cpu_tier.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/naive_reference.h"
#include "tests/server_test_util.h"

namespace moe {
namespace {

using ::moe::testing::InferRequest;
using ::moe::testing::OutputFloats;
using ::moe::testing::OutputInts;
using ::moe::testing::RandomTokens;
using ::testing::HasSubstr;
using json = nlohmann::json;

constexpr int64_t kD = 64;

class HttpServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = MoeServer::Start(::moe::testing::MakeLayer(::moe::testing::SmallDemoWeights()),
                                   ::moe::testing::LocalOptions());
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    ASSERT_GT(server_->http_port(), 0);
    http_ = std::make_unique<httplib::Client>("127.0.0.1", server_->http_port());
    http_->set_read_timeout(30, 0);
    stub_ = ::moe::testing::Stub(server_->local_grpc_address());
  }

  // GET or POST; the status and the body parsed as JSON (null if not JSON).
  std::pair<int, json> Get(const std::string& path) {
    auto res = http_->Get(path.c_str());
    EXPECT_TRUE(res) << "GET " << path << " failed";
    if (!res) return {0, nullptr};
    return {res->status, json::parse(res->body, nullptr, false)};
  }
  std::pair<int, json> Post(const std::string& path, const std::string& body) {
    auto res = http_->Post(path.c_str(), body, "application/json");
    EXPECT_TRUE(res) << "POST " << path << " failed";
    if (!res) return {0, nullptr};
    return {res->status, json::parse(res->body, nullptr, false)};
  }

  inference::ModelInferResponse GrpcInfer(const inference::ModelInferRequest& req) {
    grpc::ClientContext ctx;
    ::moe::testing::SetDeadline(&ctx, absl::Seconds(30));
    inference::ModelInferResponse resp;
    grpc::Status st = stub_->ModelInfer(&ctx, req, &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return resp;
  }

  // The JSON body of an FP32 request for `tokens` ([T, kD], nested rows).
  static json JsonRequest(const std::vector<float>& tokens, const std::string& id = "") {
    json rows = json::array();
    for (size_t t = 0; t < tokens.size() / kD; ++t) {
      rows.push_back(std::vector<float>(tokens.begin() + static_cast<long>(t * kD),
                                        tokens.begin() + static_cast<long>((t + 1) * kD)));
    }
    json req = {{"inputs",
                 {{{"name", "input"},
                   {"datatype", "FP32"},
                   {"shape", {tokens.size() / kD, kD}},
                   {"data", rows}}}}};
    if (!id.empty()) req["id"] = id;
    return req;
  }

  std::unique_ptr<MoeServer> server_;
  std::unique_ptr<httplib::Client> http_;
  std::unique_ptr<inference::GRPCInferenceService::Stub> stub_;
};

std::vector<uint32_t> Bits(const std::vector<float>& v) {
  std::vector<uint32_t> b(v.size());
  std::memcpy(b.data(), v.data(), v.size() * 4);
  return b;
}

std::vector<float> JsonFloats(const json& data) {
  std::vector<float> out;
  for (const json& v : data) out.push_back(static_cast<float>(v.get<double>()));
  return out;
}

TEST_F(HttpServiceTest, HealthAndServerMetadata) {
  auto [live_code, live] = Get("/v2/health/live");
  EXPECT_EQ(live_code, 200);
  EXPECT_EQ(live, json({{"live", true}}));
  auto [ready_code, ready] = Get("/v2/health/ready");
  EXPECT_EQ(ready_code, 200);
  EXPECT_EQ(ready, json({{"ready", true}}));
  auto [code, meta] = Get("/v2");
  EXPECT_EQ(code, 200);
  EXPECT_EQ(meta["name"], "moe-serve");
  EXPECT_TRUE(meta["version"].is_string());
  EXPECT_THAT(meta["extensions"].get<std::vector<std::string>>(),
              ::testing::IsSupersetOf(
                  {"statistics", "model_configuration", "model_repository", "binary_tensor_data"}));
}

TEST_F(HttpServiceTest, ModelMetadataReadyConfigAndStatistics) {
  for (const std::string base : {"/v2/models/moe", "/v2/models/moe/versions/1"}) {
    SCOPED_TRACE(base);
    auto [code, meta] = Get(base);
    ASSERT_EQ(code, 200);
    EXPECT_EQ(meta["name"], "moe");
    EXPECT_EQ(meta["versions"], json({"1"}));
    EXPECT_EQ(meta["inputs"][0],
              json({{"name", "input"}, {"datatype", "FP32"}, {"shape", {-1, kD}}}));
    EXPECT_EQ(meta["outputs"][1]["name"], "expert_ids");
    EXPECT_EQ(meta["outputs"][1]["shape"], json({-1, 2}));

    auto [ready_code, ready] = Get(base + "/ready");
    EXPECT_EQ(ready_code, 200);
    EXPECT_EQ(ready["ready"], true);

    auto [config_code, config] = Get(base + "/config");
    ASSERT_EQ(config_code, 200);
    EXPECT_EQ(config["name"], "moe");
    EXPECT_EQ(config["max_batch_size"], 0);
    EXPECT_EQ(config["input"][0]["data_type"], "TYPE_FP32");
    EXPECT_EQ(config["input"][0]["dims"], json({-1, kD}));
    EXPECT_EQ(config["output"][1]["data_type"], "TYPE_INT32");
    EXPECT_EQ(config["dynamic_batching"]["max_queue_delay_microseconds"], 500);
    EXPECT_EQ(config["dynamic_batching"]["preferred_batch_size"], json::array());
    EXPECT_EQ(config["parameters"]["max_batch_tokens"]["string_value"], "64");
    EXPECT_EQ(config["instance_group"][0]["kind"], "KIND_CPU");
    EXPECT_EQ(config["parameters"]["top_k"]["string_value"], "2");
    EXPECT_EQ(config["parameters"]["num_experts"]["string_value"], "8");
    EXPECT_EQ(config["parameters"]["precision"]["string_value"], "f32");
    // The packed f32 weights: 8 experts of 3 matrices [96, 64], 4 bytes
    // each (oneDNN's blocked layouts may pad a little).
    const double weight_bytes =
        std::stod(config["parameters"]["weight_bytes"]["string_value"].get<std::string>());
    EXPECT_GE(weight_bytes, 8 * 3 * 96 * 64 * 4);
    EXPECT_LE(weight_bytes, 1.25 * 8 * 3 * 96 * 64 * 4);
    EXPECT_EQ(config["parameters"]["cpu_tier"]["string_value"], CpuTierName(ActiveCpuTier()));

    auto [stats_code, stats] = Get(base + "/stats");
    ASSERT_EQ(stats_code, 200);
    EXPECT_EQ(stats["model_stats"][0]["name"], "moe");
    EXPECT_TRUE(stats["model_stats"][0]["inference_count"].is_number());
    for (const char* d : {"success", "fail", "queue", "compute_input", "compute_infer",
                          "compute_output", "cache_hit", "cache_miss"}) {
      EXPECT_TRUE(stats["model_stats"][0]["inference_stats"][d]["count"].is_number()) << d;
    }
  }
  auto [all_code, all] = Get("/v2/models/stats");
  EXPECT_EQ(all_code, 200);
  EXPECT_EQ(all["model_stats"].size(), 1u);
}

// The same facts over both protocols: the gRPC config, as JSON, is the REST
// one.
TEST_F(HttpServiceTest, ConfigAndIndexMatchGrpc) {
  grpc::ClientContext ctx;
  inference::ModelConfigRequest req;
  req.set_name("moe");
  inference::ModelConfigResponse resp;
  ASSERT_TRUE(stub_->ModelConfig(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.config().name(), "moe");
  EXPECT_EQ(resp.config().max_batch_size(), 0);
  ASSERT_EQ(resp.config().input_size(), 3);
  EXPECT_EQ(resp.config().input(0).data_type(), inference::TYPE_FP32);
  EXPECT_FALSE(resp.config().input(0).optional());
  EXPECT_EQ(resp.config().input(1).name(), "expert_ids");
  EXPECT_EQ(resp.config().input(1).data_type(), inference::TYPE_INT32);
  EXPECT_TRUE(resp.config().input(1).optional());
  EXPECT_EQ(resp.config().input(2).name(), "expert_weights");
  EXPECT_TRUE(resp.config().input(2).optional());
  EXPECT_EQ(resp.config().dynamic_batching().max_queue_delay_microseconds(), 500u);
  auto [code, config] = Get("/v2/models/moe/config");
  ASSERT_EQ(code, 200);
  EXPECT_EQ(config["parameters"]["kernel"]["string_value"],
            resp.config().parameters().at("kernel").string_value());

  grpc::ClientContext ictx;
  inference::RepositoryIndexRequest ireq;
  inference::RepositoryIndexResponse iresp;
  ASSERT_TRUE(stub_->RepositoryIndex(&ictx, ireq, &iresp).ok());
  ASSERT_EQ(iresp.models_size(), 1);
  EXPECT_EQ(iresp.models(0).name(), "moe");
  EXPECT_EQ(iresp.models(0).version(), "1");
  EXPECT_EQ(iresp.models(0).state(), "READY");
  auto [icode, index] = Post("/v2/repository/index", "");
  EXPECT_EQ(icode, 200);
  EXPECT_EQ(index,
            json::array({{{"name", "moe"}, {"version", "1"}, {"state", "READY"}, {"reason", ""}}}));
  auto [rcode, ready_only] = Post("/v2/repository/index", R"({"ready": true})");
  EXPECT_EQ(rcode, 200);
  EXPECT_EQ(ready_only.size(), 1u);
}

TEST_F(HttpServiceTest, JsonInferIsBitwiseTheGrpcAnswer) {
  for (int64_t t : {1, 5, 33}) {
    SCOPED_TRACE(t);
    const auto tokens = RandomTokens(t * kD, static_cast<uint32_t>(t) + 3);
    json req = JsonRequest(tokens, "rest-" + std::to_string(t));
    req["outputs"] = {{{"name", "output"}}, {{"name", "expert_ids"}}, {{"name", "expert_weights"}}};
    auto [code, resp] = Post("/v2/models/moe/infer", req.dump());
    ASSERT_EQ(code, 200) << resp.dump();
    EXPECT_EQ(resp["model_name"], "moe");
    EXPECT_EQ(resp["model_version"], "1");
    EXPECT_EQ(resp["id"], "rest-" + std::to_string(t));
    ASSERT_EQ(resp["outputs"].size(), 3u);
    EXPECT_EQ(resp["outputs"][0]["shape"], json({t, kD}));
    EXPECT_EQ(resp["outputs"][0]["datatype"], "FP32");

    auto greq = InferRequest(tokens, kD);
    greq.clear_outputs();
    greq.add_outputs()->set_name("output");
    greq.add_outputs()->set_name("expert_ids");
    greq.add_outputs()->set_name("expert_weights");
    const auto gresp = GrpcInfer(greq);
    EXPECT_EQ(Bits(JsonFloats(resp["outputs"][0]["data"])), Bits(OutputFloats(gresp, "output")));
    EXPECT_EQ(resp["outputs"][1]["data"].get<std::vector<int32_t>>(),
              OutputInts(gresp, "expert_ids"));
    EXPECT_EQ(Bits(JsonFloats(resp["outputs"][2]["data"])),
              Bits(OutputFloats(gresp, "expert_weights")));
  }
}

// Caller-supplied routing over REST (INT32 ids and FP32 weights as JSON
// data, and shared_experts as a request parameter): bitwise the gRPC answer
// to the same routing, and the server's own routing given back reproduces
// its answer.
TEST_F(HttpServiceTest, CallerRoutingAsJsonIsBitwiseTheGrpcAnswer) {
  const int64_t t = 4;
  const auto tokens = RandomTokens(t * kD, 404);
  auto [code0, own] = Post("/v2/models/moe/infer", JsonRequest(tokens).dump());
  ASSERT_EQ(code0, 200) << own.dump();
  json own_ids = own["outputs"][1]["data"], own_w = own["outputs"][2]["data"];
  json req = JsonRequest(tokens);
  req["inputs"].push_back(
      {{"name", "expert_ids"}, {"datatype", "INT32"}, {"shape", {t, 2}}, {"data", own_ids}});
  req["inputs"].push_back(
      {{"name", "expert_weights"}, {"datatype", "FP32"}, {"shape", {t, 2}}, {"data", own_w}});
  req["parameters"] = {{"shared_experts", true}};
  auto [code1, again] = Post("/v2/models/moe/infer", req.dump());
  ASSERT_EQ(code1, 200) << again.dump();
  EXPECT_EQ(Bits(JsonFloats(again["outputs"][0]["data"])),
            Bits(JsonFloats(own["outputs"][0]["data"])));

  // Another routing: the same bits as over gRPC.
  const std::vector<int32_t> ids = {0, 7, 1, 6, 2, 5, 3, 4};
  const std::vector<float> w = {1.0f, 0.5f, -0.25f, 2.0f, 0.0f, 1.0f, 0.125f, 0.75f};
  req["inputs"][1]["data"] = ids;
  req["inputs"][2]["data"] = w;
  auto [code2, rest] = Post("/v2/models/moe/infer", req.dump());
  ASSERT_EQ(code2, 200) << rest.dump();
  auto greq = InferRequest(tokens, kD);
  for (auto [name, type] :
       {std::pair{"expert_ids", "INT32"}, std::pair{"expert_weights", "FP32"}}) {
    auto* in = greq.add_inputs();
    in->set_name(name);
    in->set_datatype(type);
    in->add_shape(t);
    in->add_shape(2);
  }
  greq.add_raw_input_contents(std::string(reinterpret_cast<const char*>(ids.data()), 32));
  greq.add_raw_input_contents(std::string(reinterpret_cast<const char*>(w.data()), 32));
  const auto gresp = GrpcInfer(greq);
  EXPECT_EQ(Bits(JsonFloats(rest["outputs"][0]["data"])), Bits(OutputFloats(gresp, "output")));
  EXPECT_EQ(rest["outputs"][1]["data"].get<std::vector<int32_t>>(), ids);

  // A fractional id is refused, naming it.
  req["inputs"][1]["data"][3] = 6.5;
  auto [code3, bad] = Post("/v2/models/moe/infer", req.dump());
  EXPECT_EQ(code3, 400);
  EXPECT_NE(bad["error"].get<std::string>().find("inputs[1].data[3]: expected an INT32"),
            std::string::npos)
      << bad.dump();
}

// The binary tensor data extension, both ways, FP32 and BF16: the bytes
// are gRPC's raw contents.
TEST_F(HttpServiceTest, BinaryDataInBothDirections) {
  const int64_t t = 7;
  const auto tokens = RandomTokens(t * kD, 77);
  for (bool bf16 : {false, true}) {
    SCOPED_TRACE(bf16 ? "BF16" : "FP32");
    const auto greq = InferRequest(tokens, kD, bf16);
    const std::string& raw = greq.raw_input_contents(0);
    json header = {{"inputs",
                    {{{"name", "input"},
                      {"datatype", bf16 ? "BF16" : "FP32"},
                      {"shape", {t, kD}},
                      {"parameters", {{"binary_data_size", raw.size()}}}}}},
                   {"outputs",
                    {{{"name", "output"}, {"parameters", {{"binary_data", true}}}},
                     {{"name", "expert_ids"}}}}};
    const std::string head = header.dump();
    httplib::Headers headers = {{"Inference-Header-Content-Length", std::to_string(head.size())}};
    auto res = http_->Post("/v2/models/moe/infer", headers, head + raw, "application/octet-stream");
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 200) << res->body;
    ASSERT_TRUE(res->has_header("Inference-Header-Content-Length"));
    const size_t json_len = std::stoul(res->get_header_value("Inference-Header-Content-Length"));
    json resp = json::parse(res->body.substr(0, json_len));
    const std::string binary = res->body.substr(json_len);
    EXPECT_EQ(resp["outputs"][0]["parameters"]["binary_data_size"], binary.size());
    EXPECT_FALSE(resp["outputs"][0].contains("data"));
    EXPECT_EQ(resp["outputs"][0]["datatype"], bf16 ? "BF16" : "FP32");
    EXPECT_TRUE(resp["outputs"][1].contains("data"));

    const auto gresp = GrpcInfer(greq);
    EXPECT_EQ(binary, gresp.raw_output_contents(0));
  }
  // binary_data_output: every output binary.
  json header = {{"parameters", {{"binary_data_output", true}}},
                 {"inputs",
                  {{{"name", "input"},
                    {"datatype", "FP32"},
                    {"shape", {1, kD}},
                    {"data", std::vector<float>(tokens.begin(), tokens.begin() + kD)}}}},
                 {"outputs", {{{"name", "output"}}, {{"name", "expert_weights"}}}}};
  auto res = http_->Post("/v2/models/moe/infer", header.dump(), "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  const size_t json_len = std::stoul(res->get_header_value("Inference-Header-Content-Length"));
  EXPECT_EQ(res->body.size() - json_len, static_cast<size_t>(kD * 4 + 2 * 4));
  // "binary_data": false on an output overrides "binary_data_output".
  header["outputs"][1]["parameters"] = {{"binary_data", false}};
  res = http_->Post("/v2/models/moe/infer", header.dump(), "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  const size_t len2 = std::stoul(res->get_header_value("Inference-Header-Content-Length"));
  EXPECT_EQ(res->body.size() - len2, static_cast<size_t>(kD * 4));
  json resp2 = json::parse(res->body.substr(0, len2));
  EXPECT_EQ(resp2["outputs"][1]["data"].size(), 2u);
  // No outputs named: all three come back, "output" first.
  json all = JsonRequest(std::vector<float>(tokens.begin(), tokens.begin() + kD));
  auto [code, body] = Post("/v2/models/moe/infer", all.dump());
  ASSERT_EQ(code, 200);
  ASSERT_EQ(body["outputs"].size(), 3u);
  EXPECT_EQ(body["outputs"][0]["name"], "output");
  EXPECT_EQ(body["outputs"][1]["name"], "expert_ids");
}

TEST_F(HttpServiceTest, ErrorsUseTheSpecsCodesAndName) {
  struct Case {
    std::string name, path, body;
    int code;
    std::string message;
  };
  const auto tokens = RandomTokens(2 * kD, 5);
  json wrong_width = JsonRequest(tokens);
  wrong_width["inputs"][0]["shape"] = {4, kD / 2};
  json short_data = JsonRequest(tokens);
  short_data["inputs"][0]["shape"] = {3, kD};
  json text_data = JsonRequest(tokens);
  text_data["inputs"][0]["data"][0][3] = "x";
  json int_type = JsonRequest(tokens);
  int_type["inputs"][0]["datatype"] = "INT8";
  json bad_output = JsonRequest(tokens);
  bad_output["outputs"] = {{{"name", "logits"}}};
  json expired = JsonRequest(tokens);
  expired["parameters"] = {{"timeout", 1}};  // 1 us: gone before it is queued
  const std::vector<Case> cases = {
      {"not json", "/v2/models/moe/infer", "{\"inputs\": [", 400, "not valid JSON"},
      {"nested too deep", "/v2/models/moe/infer",
       R"({"inputs":[{"name":"input","datatype":"FP32","shape":[1,64],"data":[[[1]]]}]})", 400,
       "nested deeper than the shape's rank"},
      {"classification", "/v2/models/moe/infer",
       R"({"inputs":[{"name":"input","datatype":"FP32","shape":[1,1],"data":[1]}],)"
       R"("outputs":[{"name":"output","parameters":{"classification":2}}]})",
       400, "classification: not supported"},
      {"load", "/v2/repository/models/moe/load", "{}", 400, "is not allowed"},
      {"no inputs", "/v2/models/moe/infer", "{}", 400, "inputs: expected an array"},
      {"wrong width", "/v2/models/moe/infer", wrong_width.dump(), 400, "inputs[0].shape[1]"},
      {"data count", "/v2/models/moe/infer", short_data.dump(), 400, "expected 192 values"},
      {"text data", "/v2/models/moe/infer", text_data.dump(), 400, "element 3 is string"},
      {"datatype", "/v2/models/moe/infer", int_type.dump(), 400, "expected FP32 or BF16"},
      {"unknown output", "/v2/models/moe/infer", bad_output.dump(), 400, "unknown output 'logits'"},
      {"unknown model", "/v2/models/gpt/infer", JsonRequest(tokens).dump(), 404,
       "unknown model 'gpt'"},
      {"unknown version", "/v2/models/moe/versions/9/infer", JsonRequest(tokens).dump(), 404,
       "no version '9'"},
      {"deadline", "/v2/models/moe/infer", expired.dump(), 504, ""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    auto [code, body] = Post(c.path, c.body);
    EXPECT_EQ(code, c.code) << body.dump();
    ASSERT_TRUE(body.is_object() && body.contains("error")) << body.dump();
    EXPECT_THAT(body["error"].get<std::string>(), HasSubstr(c.message));
  }
  // Binary sizes that do not add up.
  const std::string head = json({{"inputs",
                                  {{{"name", "input"},
                                    {"datatype", "FP32"},
                                    {"shape", {1, kD}},
                                    {"parameters", {{"binary_data_size", kD * 4}}}}}}})
                               .dump();
  for (const auto& [extra, message] : std::vector<std::pair<int, std::string>>{
           {-4, "only 252 binary bytes remain"}, {8, "8 binary bytes after the JSON header"}}) {
    httplib::Headers headers = {{"Inference-Header-Content-Length", std::to_string(head.size())}};
    auto res = http_->Post("/v2/models/moe/infer", headers,
                           head + std::string(static_cast<size_t>(kD * 4 + extra), '\0'),
                           "application/octet-stream");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 400);
    EXPECT_THAT(res->body, HasSubstr(message));
  }
  // Unknown models: metadata and config 404, readiness false.
  EXPECT_EQ(Get("/v2/models/gpt").first, 404);
  EXPECT_EQ(Get("/v2/models/gpt/config").first, 404);
  EXPECT_EQ(Get("/v2/models/gpt/stats").first, 404);
  auto [rcode, ready] = Get("/v2/models/gpt/ready");
  EXPECT_EQ(rcode, 400);
  EXPECT_EQ(ready["ready"], false);
  auto [ncode, none] = Get("/v2/no/such/endpoint");
  EXPECT_EQ(ncode, 404);
  EXPECT_THAT(none["error"].get<std::string>(), HasSubstr("/v2/no/such/endpoint"));
  // Nothing above broke the server.
  auto [ok_code, ok] = Post("/v2/models/moe/infer", JsonRequest(tokens).dump());
  EXPECT_EQ(ok_code, 200) << ok.dump();
}

// While the server drains: not ready, and new inferences get 503.
TEST_F(HttpServiceTest, DrainingIsNotReadyAndRefusesWork) {
  server_->core().Drain(absl::ZeroDuration());
  EXPECT_EQ(Get("/v2/health/ready").first, 400);
  EXPECT_EQ(Get("/v2/models/moe/ready").first, 400);
  auto [code, body] = Post("/v2/models/moe/infer", JsonRequest(RandomTokens(kD, 9)).dump());
  EXPECT_EQ(code, 503);
  EXPECT_TRUE(body.contains("error"));
  auto [icode, index] = Post("/v2/repository/index", "");
  EXPECT_EQ(index[0]["state"], "UNAVAILABLE");
  EXPECT_EQ(Post("/v2/repository/index", R"({"ready": true})").second, json::array());
  EXPECT_EQ(Get("/v2/health/live").first, 200);
}

}  // namespace
}  // namespace moe
