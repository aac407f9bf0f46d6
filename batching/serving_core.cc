#include "batching/serving_core.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/cpu_tier.h"
#include "experts/expert_backend.h"
#include "model/expert_ranges.h"

namespace moe {

ModelIo MakeModelIo(std::string name, const MoeLayer& layer, const RequestLimits& limits) {
  ModelIo io;
  io.model_name = std::move(name);
  io.d_model = layer.d_model();
  io.top_k = layer.spec().top_k();
  io.num_experts = layer.spec().num_experts();
  io.limits = limits;
  return io;
}

namespace {

ModelInfoLabels InfoOf(const MoeLayer& layer, const ModelIo& io) {
  const LayerSpec& spec = layer.spec();
  ModelInfoLabels info;
  info.model = io.model_name;
  info.family = spec.family;
  info.dtype = DTypeName(layer.compute());
  info.kernel = layer.backend().Describe();
  info.weight_bytes = layer.weight_bytes();
  info.cpu_tier = CpuTierName(ActiveCpuTier());
  info.d_model = spec.d_model;
  info.d_ff = spec.expert.d_ff;
  info.experts = spec.num_experts();
  info.top_k = spec.top_k();
  return info;
}

std::vector<ModelToServe> OneModel(std::unique_ptr<MoeLayer> layer, const ModelIo& io) {
  std::vector<ModelToServe> models(1);
  models[0].layer = std::move(layer);
  models[0].io = io;
  return models;
}

}  // namespace

ServedModel::ServedModel(int index, std::unique_ptr<MoeLayer> layer, const ModelIo& io)
    : index_(index),
      layer_(std::move(layer)),
      io_(io),
      metrics_(
          std::make_unique<ServingMetrics>(InfoOf(*layer_, io), layer_->spec().num_experts())) {}

ServingCore::ServingCore(std::unique_ptr<MoeLayer> layer, const ModelIo& io,
                         const BatchQueueOptions& batching)
    : ServingCore(OneModel(std::move(layer), io), batching) {}

ServingCore::ServingCore(std::vector<ModelToServe> models, const BatchQueueOptions& batching)
    : batching_(batching) {
  int most_experts = 1;
  for (ModelToServe& m : models) {
    const int index = static_cast<int>(models_.size());
    by_name_.emplace(m.io.model_name, index);
    models_.push_back(std::make_unique<ServedModel>(index, std::move(m.layer), m.io));
    most_experts = std::max(most_experts, models_.back()->layer().spec().num_experts());
  }
  expert_counts_.assign(static_cast<size_t>(most_experts), 0);
  batcher_ = std::make_unique<DynamicBatcher>(
      batching, [this](const Batch& b) { return RunBatch(b); },
      [this](const Batch& b, absl::Duration compute, const absl::Status& st) {
        models_[static_cast<size_t>(b.queue)]->metrics().RecordBatch(b.num_tokens, compute,
                                                                     st.ok());
      },
      num_models());
}

ServingCore::~ServingCore() { batcher_.reset(); }

std::string ServingCore::ServedModelsDescription() const {
  if (models_.size() == 1) return absl::StrCat("'", models_[0]->name(), "'");
  // Layers of one model: "'moe.layer<L>' for L in 0-3,8 (5 models)".
  const std::string& first = models_[0]->name();
  const size_t at = first.rfind(".layer");
  if (at != std::string::npos) {
    const std::string prefix = first.substr(0, at + 6);
    std::vector<int> layers;
    for (const auto& m : models_) {
      int l = -1;
      if (m->name().rfind(prefix, 0) != 0 ||
          !absl::SimpleAtoi(m->name().substr(prefix.size()), &l) ||
          absl::StrCat(prefix, l) != m->name()) {
        layers.clear();
        break;
      }
      layers.push_back(l);
    }
    if (!layers.empty()) {
      std::sort(layers.begin(), layers.end());
      return absl::StrCat("'", prefix, "<L>' for L in ", FormatExpertList(layers), " (",
                          models_.size(), " models)");
    }
  }
  std::vector<std::string> names;
  for (const auto& m : models_) names.push_back(absl::StrCat("'", m->name(), "'"));
  return absl::StrJoin(names, ", ");
}

absl::StatusOr<const ServedModel*> ServingCore::FindModel(const std::string& name,
                                                          const std::string& version) const {
  auto it = by_name_.find(name);
  if (it == by_name_.end()) {
    return absl::NotFoundError(
        absl::StrCat("unknown model '", name, "': this server serves ", ServedModelsDescription()));
  }
  if (!version.empty() && version != kModelVersion) {
    return absl::NotFoundError(absl::StrCat("model '", name, "' has no version '", version,
                                            "' (versions: ", kModelVersion, ")"));
  }
  return models_[static_cast<size_t>(it->second)].get();
}

absl::Status ServingCore::Submit(const ServedModel& model, std::shared_ptr<InferTask> task) {
  if (draining_.load()) {
    return absl::UnavailableError("server is shutting down (draining); not accepting requests");
  }
  const int k = model.layer().spec().top_k();
  task->queue = model.index();
  task->output.resize(static_cast<size_t>(task->num_tokens * model.io().d_model));
  if (task->want_routing) {
    task->expert_ids.resize(static_cast<size_t>(task->num_tokens * k));
    task->expert_weights.resize(static_cast<size_t>(task->num_tokens * k));
  }
  return batcher_->Enqueue(std::move(task));
}

int64_t ServingCore::Drain(absl::Duration timeout) {
  draining_.store(true);
  return batcher_->Drain(timeout).cut;
}

int64_t ServingCore::QueuedTokens() const { return batcher_->queued_tokens(); }

int64_t ServingCore::QueuedTokens(const ServedModel& model) const {
  return batcher_->queued_tokens(model.index());
}

void ServingCore::RecordUnrouted(const absl::Status& status) { unrouted_.Record(status); }

double ServingCore::RequestsTotal(const std::string& outcome) const {
  double total = 0;
  for (const auto& m : models_) total += m->metrics().RequestsTotal(outcome);
  const auto unrouted = unrouted_.Snapshot();
  auto it = unrouted.find(outcome);
  if (it != unrouted.end()) total += it->second;
  return total;
}

std::string ServingCore::RenderMetrics() const {
  std::vector<const ServingMetrics*> metrics;
  std::vector<ServingMetrics::QueueSample> queues;
  for (const auto& m : models_) {
    metrics.push_back(&m->metrics());
    queues.push_back({batcher_->queued_tokens(m->index()),
                      static_cast<int64_t>(batcher_->queued_tasks(m->index()))});
  }
  return ServingMetrics::RenderPrometheus(metrics, queues, unrouted_);
}

absl::Status ServingCore::RunBatch(const Batch& batch) {
  ServedModel& model = *models_[static_cast<size_t>(batch.queue)];
  MoeLayer& layer = model.layer();
  const int64_t h = model.io().d_model;
  const int k = layer.spec().top_k();
  const int64_t t = batch.num_tokens;
  const size_t rows = static_cast<size_t>(t * h);
  if (batch_in_.size() < rows) {
    batch_in_.resize(rows);
    batch_out_.resize(rows);
  }
  if (batch_ids_.size() < static_cast<size_t>(t * k)) {
    batch_ids_.resize(static_cast<size_t>(t * k));
    batch_weights_.resize(static_cast<size_t>(t * k));
  }
  int64_t row = 0;
  bool any_given = false, any_skip = false;
  for (const BatchSlice& s : batch.slices) {
    std::memcpy(batch_in_.data() + row * h, s.task->tokens.data() + s.row_begin * h,
                static_cast<size_t>(s.rows * h) * sizeof(float));
    any_given |= !s.task->given_ids.empty();
    any_skip |= s.task->skip_shared;
    row += s.rows;
  }
  // Per-token choices, only for batches that hold some (the usual batch
  // passes none).
  TokenChoices choices;
  if (any_given || any_skip) {
    given_present_.assign(static_cast<size_t>(t), 0);
    skip_shared_.assign(static_cast<size_t>(t), 0);
    given_ids_.resize(static_cast<size_t>(t * k));
    given_weights_.resize(static_cast<size_t>(t * k));
    row = 0;
    for (const BatchSlice& s : batch.slices) {
      const InferTask& task = *s.task;
      if (!task.given_ids.empty()) {
        std::fill_n(given_present_.begin() + row, s.rows, 1);
        std::copy_n(task.given_ids.begin() + s.row_begin * k, s.rows * k,
                    given_ids_.begin() + row * k);
        std::copy_n(task.given_weights.begin() + s.row_begin * k, s.rows * k,
                    given_weights_.begin() + row * k);
      }
      if (task.skip_shared) std::fill_n(skip_shared_.begin() + row, s.rows, 1);
      row += s.rows;
    }
    if (any_given) {
      choices.routing = {given_present_.data(), given_ids_.data(), given_weights_.data()};
    }
    if (any_skip) choices.skip_shared = skip_shared_.data();
  }
  std::fill(expert_counts_.begin(), expert_counts_.end(), 0);
  ForwardOutputs out;
  out.output = batch_out_.data();
  out.expert_ids = batch_ids_.data();
  out.expert_weights = batch_weights_.data();
  out.tokens_per_expert = expert_counts_.data();
  absl::Status st = layer.Forward(batch_in_.data(), t, out, choices);
  if (!st.ok()) return st;
  model.metrics().AddExpertTokens(expert_counts_);
  row = 0;
  for (const BatchSlice& s : batch.slices) {
    InferTask& task = *s.task;
    std::memcpy(task.output.data() + s.row_begin * h, batch_out_.data() + row * h,
                static_cast<size_t>(s.rows * h) * sizeof(float));
    if (task.want_routing) {
      std::memcpy(task.expert_ids.data() + s.row_begin * k, batch_ids_.data() + row * k,
                  static_cast<size_t>(s.rows * k) * sizeof(int32_t));
      std::memcpy(task.expert_weights.data() + s.row_begin * k, batch_weights_.data() + row * k,
                  static_cast<size_t>(s.rows * k) * sizeof(float));
    }
    row += s.rows;
  }
  return absl::OkStatus();
}

}  // namespace moe
