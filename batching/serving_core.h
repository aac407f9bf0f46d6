// ServingCore: the served models behind the batcher, independent of the
// RPC layer. Each ServedModel is one layer (an MoeLayer) with its name,
// request limits and metrics; a server of one layer has one. The core owns
// them and one DynamicBatcher with a queue per model and one compute
// thread for all, runs each batch (gather rows, MoeLayer::Forward, scatter
// rows back) and keeps the draining flag.
//
// Thread-safety: all methods may be called from any thread.
#ifndef MOE_BATCHING_SERVING_CORE_H_
#define MOE_BATCHING_SERVING_CORE_H_

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "batching/dynamic_batcher.h"
#include "batching/held_answers.h"
#include "batching/model_io.h"
#include "batching/serving_metrics.h"
#include "model/moe_layer.h"

namespace moe {

// One served model. Immutable after construction except its metrics.
class ServedModel {
 public:
  ServedModel(int index, std::unique_ptr<MoeLayer> layer, const ModelIo& io);

  int index() const { return index_; }  // its place in the core (and batcher queue)
  const ModelIo& io() const { return io_; }
  const std::string& name() const { return io_.model_name; }
  const MoeLayer& layer() const { return *layer_; }
  MoeLayer& layer() { return *layer_; }
  ServingMetrics& metrics() const { return *metrics_; }

 private:
  const int index_;
  std::unique_ptr<MoeLayer> layer_;
  const ModelIo io_;
  std::unique_ptr<ServingMetrics> metrics_;
};

// What `layer` served as `name` accepts: its width and routing shape, and
// `limits`.
ModelIo MakeModelIo(std::string name, const MoeLayer& layer, const RequestLimits& limits);

// A layer to serve and what it accepts (io from MakeModelIo on the layer).
struct ModelToServe {
  std::unique_ptr<MoeLayer> layer;
  ModelIo io;
};

class ServingCore {
 public:
  // At least one model; names must be distinct (MoeServer::Start checks).
  ServingCore(std::vector<ModelToServe> models, const BatchQueueOptions& batching);
  ServingCore(std::unique_ptr<MoeLayer> layer, const ModelIo& io,
              const BatchQueueOptions& batching);
  ~ServingCore();

  int num_models() const { return static_cast<int>(models_.size()); }
  const ServedModel& model(int i) const { return *models_.at(static_cast<size_t>(i)); }
  // The model `name` at `version` (empty: any): NOT_FOUND naming the model
  // (or the version) and what is served, when it is not.
  absl::StatusOr<const ServedModel*> FindModel(const std::string& name,
                                               const std::string& version) const;
  // "'moe'", "'moe.layer<L>' for L in 0-3,8 (5 models)", or the names
  // listed: for messages.
  std::string ServedModelsDescription() const;

  // Queues a task for `model` (see DynamicBatcher::Enqueue for the contract).
  absl::Status Submit(const ServedModel& model, std::shared_ptr<InferTask> task);
  void NotifyCancelled() { batcher_->NotifyCancelled(); }

  // Stops accepting (Submit -> UNAVAILABLE), finishes accepted work, and
  // after `timeout` fails the rest. Returns the number cut.
  int64_t Drain(absl::Duration timeout);
  bool draining() const { return draining_.load(); }

  // Records that a request arrived (any outcome); last_arrival() is when
  // the latest one did. Used to end the drain's linger once clients are
  // quiet.
  void NoteArrival() { last_arrival_ns_.store(absl::GetCurrentTimeNanos()); }
  absl::Time last_arrival() const { return absl::FromUnixNanos(last_arrival_ns_.load()); }

  // What waits in the batch queues now, in all or one model's (for tests
  // and metrics).
  int64_t QueuedTokens() const;
  int64_t QueuedTokens(const ServedModel& model) const;

  // A finished request that named no served model (or could not be
  // parsed): counted as moe_requests_total{model=""}.
  void RecordUnrouted(const absl::Status& status);
  // Finished requests with `outcome` ("ok", "not_found", ...), over every
  // model and the unrouted ones.
  double RequestsTotal(const std::string& outcome) const;

  // Answers handed to gRPC whose sending has not completed yet (a unary
  // call until its OnDone, a stream message until its write is done). The
  // drain waits for zero before gRPC may cancel what is left.
  void AnswersPending(int64_t n) { unsent_answers_.fetch_add(n); }
  void AnswersSent(int64_t n) { unsent_answers_.fetch_sub(n); }
  int64_t unsent_answers() const { return unsent_answers_.load(); }

  // Answers the RPC layer holds back during the drain's last step (see
  // held_answers.h); MoeServer::Shutdown starts holding and releases them.
  HeldAnswers& held_answers() { return held_answers_; }

  const BatchQueueOptions& batching() const { return batching_; }
  // Prometheus text of every model (each family once, a series per model).
  std::string RenderMetrics() const;

 private:
  absl::Status RunBatch(const Batch& batch);

  std::vector<std::unique_ptr<ServedModel>> models_;
  std::map<std::string, int> by_name_;
  const BatchQueueOptions batching_;
  UnroutedRequests unrouted_;
  std::atomic<bool> draining_{false};
  std::atomic<int64_t> last_arrival_ns_{0};
  std::atomic<int64_t> unsent_answers_{0};
  HeldAnswers held_answers_;
  // Batch buffers, used by the batcher's compute thread only; grow-only.
  std::vector<float> batch_in_, batch_out_, batch_weights_;
  std::vector<int32_t> batch_ids_;
  // Per-token choices of the batch (caller routing, shared experts off).
  std::vector<uint8_t> given_present_, skip_shared_;
  std::vector<int32_t> given_ids_;
  std::vector<float> given_weights_;
  std::vector<int64_t> expert_counts_;
  std::unique_ptr<DynamicBatcher> batcher_;  // last: its threads use the above
};

}  // namespace moe

#endif  // MOE_BATCHING_SERVING_CORE_H_
