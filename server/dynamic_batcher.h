// DynamicBatcher: batches the token rows of concurrent requests into model
// calls.
//
// Tasks from every RPC go into one BatchQueue (bounded in tokens). A
// compute thread takes a batch as soon as the queue's fill target is
// reached (max_batch_tokens, or adaptively the load the previous batch's
// answers bring back; see batch_queue.h) or the oldest task has waited
// max_queue_delay, runs it, writes each task's rows and finishes the tasks
// whose rows are all done; batches form while the previous one computes. A watcher thread answers, at the moment it
// passes, the deadline of every task still waiting (DEADLINE_EXCEEDED,
// never computed) and drops cancelled tasks (CANCELLED).
//
// Contract:
// - Enqueue(): OK means the batcher shares the task and will call its
//   `done` exactly once. UNAVAILABLE (queue full, or draining) means it
//   took nothing and will never call it.
// - Latency bound: a task's first rows run at most max_queue_delay after
//   the compute is free of the batches ahead of it (those running or
//   queued before it, with their answering).
// - Drain(timeout): stops accepting, lets every accepted task finish, and
//   after `timeout` fails what is left with UNAVAILABLE.
//
// Thread-safety: all methods may be called from any thread.
#ifndef MOE_SERVER_DYNAMIC_BATCHER_H_
#define MOE_SERVER_DYNAMIC_BATCHER_H_

#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/batch_queue.h"

namespace moe {

class DynamicBatcher {
 public:
  // Computes every slice of `batch` into its task's outputs. Called on the
  // compute thread only, never concurrently with itself.
  using RunBatchFn = std::function<absl::Status(const Batch& batch)>;
  // Observes each finished model call (for statistics and metrics).
  using BatchObserverFn =
      std::function<void(const Batch& batch, absl::Duration compute, const absl::Status& status)>;

  DynamicBatcher(const BatchQueueOptions& options, RunBatchFn run,
                 BatchObserverFn observer = nullptr);
  // Fails whatever is still queued with UNAVAILABLE and joins the threads.
  ~DynamicBatcher();

  DynamicBatcher(const DynamicBatcher&) = delete;
  DynamicBatcher& operator=(const DynamicBatcher&) = delete;

  absl::Status Enqueue(std::shared_ptr<InferTask> task);

  // Wakes the watcher to drop tasks whose `cancelled` flag was set.
  void NotifyCancelled();

  struct DrainResult {
    int64_t cut = 0;  // tasks failed with UNAVAILABLE at the timeout
  };
  DrainResult Drain(absl::Duration timeout);

  int64_t queued_tokens() const;
  size_t queued_tasks() const;
  // What the next batch waits for (BatchQueue::fill_target_tokens()).
  int64_t fill_target_tokens() const;
  const BatchQueueOptions& options() const { return options_; }

 private:
  void ComputeLoop();
  void WatchLoop();
  // Finishes `tasks` with `status` (outside the lock).
  static void FinishAll(const std::vector<std::shared_ptr<InferTask>>& tasks,
                        const absl::Status& status);
  // Finishes dropped cancelled tasks: CANCELLED, or DEADLINE_EXCEEDED when
  // their deadline has passed (gRPC cancels calls at their deadline).
  static void FinishDropped(const std::vector<std::shared_ptr<InferTask>>& tasks);

  const BatchQueueOptions options_;
  const RunBatchFn run_;
  const BatchObserverFn observer_;

  mutable absl::Mutex mu_;
  BatchQueue queue_ ABSL_GUARDED_BY(mu_);
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool batch_running_ ABSL_GUARDED_BY(mu_) = false;  // a batch or its answers in progress
  bool watcher_busy_ ABSL_GUARDED_BY(mu_) = false;   // expiry/cancel answers in progress
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;  // bumped on every change

  std::thread compute_thread_;
  std::thread watch_thread_;
};

}  // namespace moe

#endif  // MOE_SERVER_DYNAMIC_BATCHER_H_
