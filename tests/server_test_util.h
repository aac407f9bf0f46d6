// Helpers for service tests: an in-process MoeServer on 127.0.0.1:0 over a
// small layer, request builders and response decoders.
#ifndef MOE_TESTS_SERVER_TEST_UTIL_H_
#define MOE_TESTS_SERVER_TEST_UTIL_H_

#include <grpcpp/grpcpp.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "client/kserve_client.h"
#include "common/dtype.h"
#include "frontend/moe_server.h"
#include "gtest/gtest.h"
#include "model/moe_layer.h"
#include "model/presets.h"
#include "proto/grpc_service.grpc.pb.h"

namespace moe::testing {

// The demo preset's routing at a small size: d_model 64, 8 experts of 96.
inline LayerWeights SmallDemoWeights() {
  LayerSpec s = *PresetSpec("demo");
  s.d_model = s.expert.d_model = 64;
  s.expert.d_ff = 96;
  return MakeSyntheticWeights(s, 123);
}

inline std::unique_ptr<MoeLayer> MakeLayer(const LayerWeights& w, DType compute = DType::kF32) {
  MoeLayerOptions o;
  o.compute = compute;
  auto layer = MoeLayer::Create(w, o);
  EXPECT_TRUE(layer.ok()) << layer.status();
  return *std::move(layer);
}

inline ServerOptions LocalOptions() {
  ServerOptions o;
  o.listen_host = "127.0.0.1";
  o.grpc_port = 0;
  o.metrics_port = 0;
  o.http_port = 0;
  o.batching.max_batch_tokens = 64;
  o.batching.max_queue_delay = absl::Microseconds(500);
  o.limits.max_request_tokens = 1024;
  return o;
}

inline std::unique_ptr<inference::GRPCInferenceService::Stub> Stub(const std::string& address) {
  return inference::GRPCInferenceService::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
}

inline inference::ModelInferRequest InferRequest(const std::vector<float>& tokens, int64_t d_model,
                                                 bool bf16 = false, const std::string& id = "") {
  return BuildInferRequest("moe", tokens, d_model, bf16, id, /*want_routing=*/false);
}

// The named output of a response as floats (FP32 or BF16) or int32s.
inline std::vector<float> OutputFloats(const inference::ModelInferResponse& resp,
                                       const std::string& name) {
  for (int i = 0; i < resp.outputs_size(); ++i) {
    if (resp.outputs(i).name() != name) continue;
    const std::string& raw = resp.raw_output_contents(i);
    std::vector<float> out;
    if (resp.outputs(i).datatype() == "BF16") {
      out.resize(raw.size() / 2);
      ConvertToFloat(DType::kBF16, raw.data(), static_cast<int64_t>(out.size()), out.data());
    } else {
      out.resize(raw.size() / 4);
      std::memcpy(out.data(), raw.data(), raw.size());
    }
    return out;
  }
  ADD_FAILURE() << "no output " << name;
  return {};
}

inline std::vector<int32_t> OutputInts(const inference::ModelInferResponse& resp,
                                       const std::string& name) {
  for (int i = 0; i < resp.outputs_size(); ++i) {
    if (resp.outputs(i).name() != name) continue;
    std::vector<int32_t> out(resp.raw_output_contents(i).size() / 4);
    std::memcpy(out.data(), resp.raw_output_contents(i).data(), out.size() * 4);
    return out;
  }
  ADD_FAILURE() << "no output " << name;
  return {};
}

// The layer's own answer for `tokens`, computed alone.
inline std::vector<float> Reference(MoeLayer* layer, const std::vector<float>& tokens) {
  std::vector<float> y(tokens.size());
  ForwardOutputs out;
  out.output = y.data();
  EXPECT_TRUE(
      layer->Forward(tokens.data(), static_cast<int64_t>(tokens.size()) / layer->d_model(), out)
          .ok());
  return y;
}

inline void SetDeadline(grpc::ClientContext* ctx, absl::Duration d) {
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + d));
}

}  // namespace moe::testing

#endif  // MOE_TESTS_SERVER_TEST_UTIL_H_
