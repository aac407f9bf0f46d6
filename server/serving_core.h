// ServingCore: the served model behind the batcher, independent of the
// RPC layer. It owns the MoeLayer, the DynamicBatcher and the metrics, runs
// each batch (gather rows, MoeLayer::Forward, scatter rows back) and keeps
// the draining flag.
//
// Thread-safety: all methods may be called from any thread.
#ifndef MOE_SERVER_SERVING_CORE_H_
#define MOE_SERVER_SERVING_CORE_H_

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "model/moe_layer.h"
#include "server/dynamic_batcher.h"
#include "server/held_answers.h"
#include "server/request_codec.h"
#include "server/serving_metrics.h"

namespace moe {

class ServingCore {
 public:
  ServingCore(std::unique_ptr<MoeLayer> layer, const ModelIo& io,
              const BatchQueueOptions& batching);
  ~ServingCore();

  // Queues a task (see DynamicBatcher::Enqueue for the contract).
  absl::Status Submit(std::shared_ptr<InferTask> task);
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

  // What waits in the batch queue now (for tests and metrics).
  int64_t QueuedTokens() const;

  // Answers handed to gRPC whose sending has not completed yet (a unary
  // call until its OnDone, a stream message until its write is done). The
  // drain waits for zero before gRPC may cancel what is left.
  void AnswersPending(int64_t n) { unsent_answers_.fetch_add(n); }
  void AnswersSent(int64_t n) { unsent_answers_.fetch_sub(n); }
  int64_t unsent_answers() const { return unsent_answers_.load(); }

  // Answers the RPC layer holds back during the drain's last step (see
  // held_answers.h); MoeServer::Shutdown starts holding and releases them.
  HeldAnswers& held_answers() { return held_answers_; }

  const ModelIo& io() const { return io_; }
  const BatchQueueOptions& batching() const { return batching_; }
  const MoeLayer& layer() const { return *layer_; }
  ServingMetrics& metrics() { return *metrics_; }
  std::string RenderMetrics() const;

 private:
  absl::Status RunBatch(const Batch& batch);

  std::unique_ptr<MoeLayer> layer_;
  const ModelIo io_;
  const BatchQueueOptions batching_;
  std::unique_ptr<ServingMetrics> metrics_;
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

#endif  // MOE_SERVER_SERVING_CORE_H_
