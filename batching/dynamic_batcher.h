// DynamicBatcher: batches the token rows of concurrent requests into model
// calls.
//
// It keeps one BatchQueue per served model (`num_queues`; a task goes to
// queue `task->queue`), all sharing one compute thread and one bound on
// the tokens queued in total. A queue is ready as soon as its fill target
// is reached (max_batch_tokens, or adaptively the load its previous
// batch's answers bring back; see batch_queue.h) or its oldest task has
// waited max_queue_delay. The compute thread runs the queue whose batch
// became ready first (oldest first, across queues as within one), writes
// each task's rows and
// finishes the tasks whose rows are all done; batches form while the
// previous one computes. A batch holds the rows of one queue only
// (Batch::queue). A watcher thread answers, at the moment it passes, the
// deadline of every task still waiting (DEADLINE_EXCEEDED, never computed)
// and drops cancelled tasks (CANCELLED).
//
// Contract:
// - Enqueue(): OK means the batcher shares the task and will call its
//   `done` exactly once. UNAVAILABLE (queue full, or draining) means it
//   took nothing and will never call it.
// - Latency bound: a queue becomes ready at most max_queue_delay after its
//   oldest task arrived; from then on only the running batch and batches
//   that became ready earlier run before it (tasks of another queue that
//   arrive later never overtake it). With clients that wait for their
//   answers, that is at most one batch of a busy queue.
// - Enqueue() is UNAVAILABLE when the tokens queued in all queues plus the
//   task's would exceed max_queue_tokens.
// - Drain(timeout): stops accepting, lets every accepted task finish, and
//   after `timeout` fails what is left with UNAVAILABLE.
//
// Time: every wait, deadline and timestamp reads the Clock given at
// construction (the real one by default; tests pass a fake).
//
// Thread-safety: all methods may be called from any thread.
#ifndef MOE_BATCHING_DYNAMIC_BATCHER_H_
#define MOE_BATCHING_DYNAMIC_BATCHER_H_

#include <functional>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "batching/batch_queue.h"
#include "common/clock.h"

namespace moe {

class DynamicBatcher {
 public:
  // Computes every slice of `batch` into its task's outputs. Called on the
  // compute thread only, never concurrently with itself.
  using RunBatchFn = std::function<absl::Status(const Batch& batch)>;
  // Observes each finished model call (for statistics and metrics).
  using BatchObserverFn =
      std::function<void(const Batch& batch, absl::Duration compute, const absl::Status& status)>;

  // `num_queues` >= 1 queues, each with `options`. `clock` (not owned)
  // must outlive the batcher.
  DynamicBatcher(const BatchQueueOptions& options, RunBatchFn run,
                 BatchObserverFn observer = nullptr, int num_queues = 1,
                 Clock* clock = Clock::Real());
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

  // In all queues, or in queue `queue`.
  int64_t queued_tokens() const;
  int64_t queued_tokens(int queue) const;
  size_t queued_tasks() const;
  size_t queued_tasks(int queue) const;
  // What queue `queue`'s next batch waits for (BatchQueue::fill_target_tokens()).
  int64_t fill_target_tokens(int queue = 0) const;
  int num_queues() const { return num_queues_; }
  const BatchQueueOptions& options() const { return options_; }

 private:
  void ComputeLoop();
  // The queue to run next and when: the one whose batch is ready first
  // (BatchQueue::BatchReadyTime), at that time (InfiniteFuture() when every
  // queue is empty). While draining, the oldest task's queue, at once.
  std::pair<int, absl::Time> NextReadyQueue() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool AllEmpty() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WatchLoop();
  // Finishes `tasks` with `status` (outside the lock).
  static void FinishAll(const std::vector<std::shared_ptr<InferTask>>& tasks,
                        const absl::Status& status);
  // Finishes dropped cancelled tasks: CANCELLED, or DEADLINE_EXCEEDED when
  // their deadline has passed (gRPC cancels calls at their deadline).
  void FinishDropped(const std::vector<std::shared_ptr<InferTask>>& tasks) const;
  // Waits on mu_ (held) until `cond` or `deadline` (InfiniteFuture: none).
  bool AwaitWithDeadline(const absl::Condition& cond, absl::Time deadline)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const BatchQueueOptions options_;
  const int num_queues_;  // queues_.size(), fixed at construction
  const RunBatchFn run_;
  const BatchObserverFn observer_;
  Clock* const clock_;

  mutable absl::Mutex mu_;
  std::vector<BatchQueue> queues_ ABSL_GUARDED_BY(mu_);
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool batch_running_ ABSL_GUARDED_BY(mu_) = false;  // a batch or its answers in progress
  bool watcher_busy_ ABSL_GUARDED_BY(mu_) = false;   // expiry/cancel answers in progress
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;     // bumped on every change

  std::thread compute_thread_;
  std::thread watch_thread_;
};

}  // namespace moe

#endif  // MOE_BATCHING_DYNAMIC_BATCHER_H_
