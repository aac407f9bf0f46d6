#include "frontend/model_descriptors.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "batching/serving_core.h"
#include "common/command_line.h"
#include "common/cpu_tier.h"
#include "common/dtype.h"

namespace moe {

void FillServerMetadata(inference::ServerMetadataResponse* out) {
  out->set_name(kServerName);
  out->set_version(MoeVersion());
  for (const char* e : kServerExtensions) out->add_extensions(e);
}

absl::Status CheckModel(const ModelIo& io, const std::string& name, const std::string& version) {
  if (name != io.model_name) {
    return absl::NotFoundError(
        absl::StrCat("unknown model '", name, "': this server serves '", io.model_name, "'"));
  }
  if (!version.empty() && version != kModelVersion) {
    return absl::NotFoundError(absl::StrCat("model '", name, "' has no version '", version,
                                            "' (versions: ", kModelVersion, ")"));
  }
  return absl::OkStatus();
}

bool ModelIsReady(const ServingCore& core, const std::string& name, const std::string& version) {
  return core.FindModel(name, version).ok() && !core.draining();
}

void FillModelMetadata(const ServedModel& model, inference::ModelMetadataResponse* out) {
  const ModelIo& io = model.io();
  out->set_name(io.model_name);
  out->add_versions(kModelVersion);
  out->set_platform(kPlatform);
  auto add = [](auto* list, const char* name, const char* dtype, int64_t cols) {
    auto* t = list->Add();
    t->set_name(name);
    t->set_datatype(dtype);
    t->add_shape(-1);
    t->add_shape(cols);
  };
  add(out->mutable_inputs(), kInputName, "FP32", io.d_model);
  if (io.num_experts > 1) {
    // Optional (KServe metadata has no flag for it; ModelConfig marks them):
    // the caller's routing, both or neither.
    add(out->mutable_inputs(), kExpertIdsName, "INT32", io.top_k);
    add(out->mutable_inputs(), kExpertWeightsName, "FP32", io.top_k);
  }
  add(out->mutable_outputs(), kOutputName, "FP32", io.d_model);
  add(out->mutable_outputs(), kExpertIdsName, "INT32", io.top_k);
  add(out->mutable_outputs(), kExpertWeightsName, "FP32", io.top_k);
}

void FillModelConfig(const ServingCore& core, const ServedModel& model,
                     inference::ModelConfig* out) {
  const ModelIo& io = model.io();
  const LayerSpec& spec = model.layer().spec();
  out->set_name(io.model_name);
  out->set_platform(kPlatform);
  out->set_backend(kBackend);
  out->mutable_version_policy()->mutable_latest()->set_num_versions(1);
  out->set_max_batch_size(0);
  auto* in = out->add_input();
  in->set_name(kInputName);
  in->set_data_type(inference::TYPE_FP32);
  in->add_dims(-1);
  in->add_dims(io.d_model);
  if (io.num_experts > 1) {
    for (auto [name, type] : {std::pair{kExpertIdsName, inference::TYPE_INT32},
                              std::pair{kExpertWeightsName, inference::TYPE_FP32}}) {
      auto* routing = out->add_input();
      routing->set_name(name);
      routing->set_data_type(type);
      routing->add_dims(-1);
      routing->add_dims(io.top_k);
      routing->set_optional(true);
    }
  }
  auto add_output = [out](const char* name, inference::DataType type, int64_t cols) {
    auto* o = out->add_output();
    o->set_name(name);
    o->set_data_type(type);
    o->add_dims(-1);
    o->add_dims(cols);
  };
  add_output(kOutputName, inference::TYPE_FP32, io.d_model);
  add_output(kExpertIdsName, inference::TYPE_INT32, io.top_k);
  add_output(kExpertWeightsName, inference::TYPE_FP32, io.top_k);
  auto* batching = out->mutable_dynamic_batching();
  batching->set_max_queue_delay_microseconds(
      static_cast<uint64_t>(absl::ToInt64Microseconds(core.batching().max_queue_delay)));
  batching->set_preserve_ordering(false);
  auto* group = out->add_instance_group();
  group->set_name(absl::StrCat(io.model_name, "_0"));
  group->set_kind(inference::ModelInstanceGroup::KIND_CPU);
  group->set_count(1);
  auto& params = *out->mutable_parameters();
  params["top_k"].set_string_value(absl::StrCat(spec.top_k()));
  params["num_experts"].set_string_value(absl::StrCat(spec.num_experts()));
  params["d_model"].set_string_value(absl::StrCat(spec.d_model));
  params["d_ff"].set_string_value(absl::StrCat(spec.expert.d_ff));
  params["precision"].set_string_value(DTypeName(model.layer().compute()));
  params["weight_bytes"].set_string_value(absl::StrCat(model.layer().weight_bytes()));
  params["cpu_tier"].set_string_value(CpuTierName(ActiveCpuTier()));
  params["kernel"].set_string_value(model.layer().backend().Describe());
  params["family"].set_string_value(spec.family);
  params["max_request_tokens"].set_string_value(absl::StrCat(io.limits.max_request_tokens));
  // The batcher's size target, in tokens (Triton's preferred_batch_size
  // counts requests and must not exceed max_batch_size, 0 here).
  params["max_batch_tokens"].set_string_value(absl::StrCat(core.batching().max_batch_tokens));
}

void FillModelStatistics(const ServedModel& model, inference::ModelStatistics* s) {
  const ServingMetrics::Statistics stats = model.metrics().Snapshot();
  s->set_name(model.name());
  s->set_version(kModelVersion);
  s->set_last_inference(stats.last_inference_ms);
  s->set_inference_count(stats.inference_count);
  s->set_execution_count(stats.execution_count);
  auto set = [](inference::StatisticDuration* d, const ServingMetrics::Statistics::Duration& v) {
    d->set_count(v.count);
    d->set_ns(v.ns);
  };
  auto* st = s->mutable_inference_stats();
  set(st->mutable_success(), stats.success);
  set(st->mutable_fail(), stats.fail);
  set(st->mutable_queue(), stats.queue);
  set(st->mutable_compute_infer(), stats.compute_infer);
  // Every duration present, zeros included, as Triton reports them (and
  // perf_analyzer reads them): input and output conversion are part of
  // the request handling here, and there is no response cache.
  st->mutable_compute_input();
  st->mutable_compute_output();
  st->mutable_cache_hit();
  st->mutable_cache_miss();
  for (const auto& [size, b] : stats.batches) {
    auto* bs = s->add_batch_stats();
    bs->set_batch_size(static_cast<uint64_t>(size));
    bs->mutable_compute_input();
    set(bs->mutable_compute_infer(), b);
    bs->mutable_compute_output();
  }
}

absl::Status FillModelStatistics(const ServingCore& core, const std::string& name,
                                 const std::string& version,
                                 inference::ModelStatisticsResponse* out) {
  if (!name.empty()) {
    auto model = core.FindModel(name, version);
    if (!model.ok()) return model.status();
    FillModelStatistics(**model, out->add_model_stats());
    return absl::OkStatus();
  }
  for (int i = 0; i < core.num_models(); ++i) {
    FillModelStatistics(core.model(i), out->add_model_stats());
  }
  return absl::OkStatus();
}

void FillRepositoryIndex(const ServingCore& core, bool ready_only,
                         inference::RepositoryIndexResponse* out) {
  const bool ready = !core.draining();
  if (ready_only && !ready) return;
  for (int i = 0; i < core.num_models(); ++i) {
    auto* m = out->add_models();
    m->set_name(core.model(i).name());
    m->set_version(kModelVersion);
    m->set_state(ready ? "READY" : "UNAVAILABLE");
    if (!ready) m->set_reason("the server is shutting down");
  }
}

}  // namespace moe
