// InferenceService: the KServe v2 GRPCInferenceService on gRPC's callback
// API. Handlers validate, hand the tokens to the ServingCore and return at
// once; the batcher's completion finishes the RPC.
//
// ModelInfer answers one request; ModelStreamInfer answers each request of
// a stream with one ModelStreamInferResponse (the request's id echoed in
// infer_response, or error_message set), in completion order.
//
// Thread-safety: gRPC calls the handlers from its own threads.
#ifndef MOE_FRONTEND_INFERENCE_SERVICE_H_
#define MOE_FRONTEND_INFERENCE_SERVICE_H_

#include <memory>
#include <string>

#include "batching/serving_core.h"
#include "proto/grpc_service.grpc.pb.h"

namespace moe {

// ModelInfer and ModelStreamInfer are registered raw (ByteBuffer in and out)
// so that the service, not gRPC, answers a body it cannot parse:
// INVALID_ARGUMENT with a message (unary), or an error_message answer on a
// stream that goes on.
// (The typed and raw stream handlers have the same signature, so the base
// is composed method by method instead of from CallbackService.)
namespace internal {
using Grpc = inference::GRPCInferenceService;
using InferenceServiceBase = Grpc::WithCallbackMethod_ServerLive<
    Grpc::WithCallbackMethod_ServerReady<Grpc::WithCallbackMethod_ModelReady<
        Grpc::WithCallbackMethod_ServerMetadata<Grpc::WithCallbackMethod_ModelMetadata<
            Grpc::WithRawCallbackMethod_ModelInfer<Grpc::WithRawCallbackMethod_ModelStreamInfer<
                Grpc::WithCallbackMethod_ModelStatistics<Grpc::WithCallbackMethod_ModelConfig<
                    Grpc::WithCallbackMethod_RepositoryIndex<Grpc::Service>>>>>>>>>>;
}  // namespace internal

class StreamRegistry;

class InferenceService final : public internal::InferenceServiceBase {
 public:
  // `core` must outlive the service.
  explicit InferenceService(ServingCore* core);
  ~InferenceService() override;

  // For the drain: every open ModelStreamInfer stream ends with UNAVAILABLE
  // ("server is shutting down") once its answers in flight are written, it
  // reads no further requests, and streams opened from now on end at once.
  // A client sees UNAVAILABLE, never the CANCELLED gRPC would give a stream
  // still open at Server::Shutdown's deadline.
  void CloseStreams();

  grpc::ServerUnaryReactor* ServerLive(grpc::CallbackServerContext* ctx,
                                       const inference::ServerLiveRequest* req,
                                       inference::ServerLiveResponse* resp) override;
  grpc::ServerUnaryReactor* ServerReady(grpc::CallbackServerContext* ctx,
                                        const inference::ServerReadyRequest* req,
                                        inference::ServerReadyResponse* resp) override;
  grpc::ServerUnaryReactor* ModelReady(grpc::CallbackServerContext* ctx,
                                       const inference::ModelReadyRequest* req,
                                       inference::ModelReadyResponse* resp) override;
  grpc::ServerUnaryReactor* ServerMetadata(grpc::CallbackServerContext* ctx,
                                           const inference::ServerMetadataRequest* req,
                                           inference::ServerMetadataResponse* resp) override;
  grpc::ServerUnaryReactor* ModelMetadata(grpc::CallbackServerContext* ctx,
                                          const inference::ModelMetadataRequest* req,
                                          inference::ModelMetadataResponse* resp) override;
  grpc::ServerUnaryReactor* ModelInfer(grpc::CallbackServerContext* ctx,
                                       const grpc::ByteBuffer* req,
                                       grpc::ByteBuffer* resp) override;
  grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* ModelStreamInfer(
      grpc::CallbackServerContext* ctx) override;
  grpc::ServerUnaryReactor* ModelStatistics(grpc::CallbackServerContext* ctx,
                                            const inference::ModelStatisticsRequest* req,
                                            inference::ModelStatisticsResponse* resp) override;
  grpc::ServerUnaryReactor* ModelConfig(grpc::CallbackServerContext* ctx,
                                        const inference::ModelConfigRequest* req,
                                        inference::ModelConfigResponse* resp) override;
  grpc::ServerUnaryReactor* RepositoryIndex(grpc::CallbackServerContext* ctx,
                                            const inference::RepositoryIndexRequest* req,
                                            inference::RepositoryIndexResponse* resp) override;

 private:
  ServingCore* const core_;
  std::unique_ptr<StreamRegistry> streams_;
};

// absl::Status -> grpc::Status (the codes map one to one).
grpc::Status ToGrpcStatus(const absl::Status& s);

}  // namespace moe

#endif  // MOE_FRONTEND_INFERENCE_SERVICE_H_
