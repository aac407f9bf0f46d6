// The served model as the KServe v2 / Triton messages describe it: the
// name/version check, ModelMetadata, ModelConfig, ModelReady and the
// repository index. The gRPC service and the REST endpoint both answer
// from here, so the two protocols state the same facts.
//
// Thread-safety: pure functions of the ServingCore's immutable settings
// (and its draining flag).
#ifndef MOE_FRONTEND_MODEL_DESCRIPTORS_H_
#define MOE_FRONTEND_MODEL_DESCRIPTORS_H_

#include <string>

#include "absl/status/status.h"
#include "frontend/request_codec.h"
#include "proto/grpc_service.pb.h"

namespace moe {

class ServingCore;
class ServedModel;

inline constexpr char kServerName[] = "moe-serve";
// The protocol extensions both front ends (gRPC and REST) implement.
inline constexpr const char* kServerExtensions[] = {"statistics", "model_stream_infer",
                                                    "model_configuration", "model_repository",
                                                    "binary_tensor_data"};
// The one model repository's name in RepositoryIndex.
inline constexpr char kRepositoryName[] = "moe-serve";
inline constexpr char kPlatform[] = "moe-serve_onednn";
inline constexpr char kBackend[] = "moe-serve";

// Name, version and kServerExtensions.
void FillServerMetadata(inference::ServerMetadataResponse* out);

// OK when `name` is the model `io` describes and `version` is empty or its
// version; NOT_FOUND naming the model (and the served one) or the version
// (and the served ones) otherwise. (ServingCore::FindModel looks a name up
// among every served model.)
absl::Status CheckModel(const ModelIo& io, const std::string& name, const std::string& version);

// True when `name` / `version` is served and ready for inference (not
// draining). Never an error: an unknown model is simply not ready.
bool ModelIsReady(const ServingCore& core, const std::string& name, const std::string& version);

// Inputs "input" FP32 [-1, d_model]; outputs "output" FP32 [-1, d_model],
// "expert_ids" INT32 [-1, k], "expert_weights" FP32 [-1, k]. (BF16 inputs
// are accepted as well and answered in BF16; metadata lists one datatype.)
void FillModelMetadata(const ServedModel& model, inference::ModelMetadataResponse* out);

// Triton's model configuration: max_batch_size 0 (the token dimension is
// part of the shape), the tensors above, dynamic_batching with the
// batcher's queue delay, one CPU instance group, and string parameters:
// top_k, num_experts, d_model, d_ff, precision, cpu_tier, kernel, family,
// max_request_tokens, max_batch_tokens (the batcher's size target).
void FillModelConfig(const ServingCore& core, const ServedModel& model,
                     inference::ModelConfig* out);

// One model's ModelStatistics message.
void FillModelStatistics(const ServedModel& model, inference::ModelStatistics* out);

// ModelStatistics of `name` at `version`, or of every served model when
// `name` is empty (as Triton answers); NOT_FOUND for an unknown model.
absl::Status FillModelStatistics(const ServingCore& core, const std::string& name,
                                 const std::string& version,
                                 inference::ModelStatisticsResponse* out);

// One entry per served model, in serving order: state "READY", or
// "UNAVAILABLE" with the reason while the server drains. ready_only drops the models not ready.
void FillRepositoryIndex(const ServingCore& core, bool ready_only,
                         inference::RepositoryIndexResponse* out);

}  // namespace moe

#endif  // MOE_FRONTEND_MODEL_DESCRIPTORS_H_
