// BatchQueue: the decision logic of the dynamic batcher, with no threads
// and no clock of its own — every call takes `now` — so that its tests
// drive time by hand.
//
// Contract:
// - Enqueue() accepts a task of 1..max_queue_tokens tokens if the queued
//   tokens plus its own stay within max_queue_tokens; otherwise it returns
//   UNAVAILABLE ("queue full ...") and keeps nothing. On OK the queue
//   shares ownership until the task leaves through TakeBatch(),
//   TakeExpired(), TakeCancelled() or TakeAll().
// - A batch is ready when the fill target is queued, or when the oldest
//   queued task has waited max_queue_delay (BatchReadyTime()). The fill
//   target is max_batch_tokens, or with adaptive_fill (the default), once
//   a batch has run: the tokens of the tasks that batch answers plus the
//   tokens that were queued when its compute ended (NoteBatchComputed),
//   capped at max_batch_tokens. Closed-loop clients send again once
//   answered, so this waits for exactly the load that is coming back: one
//   client alone is never kept waiting, and 64 clients are batched
//   together instead of splitting into two alternating half batches. In
//   that mode the delay runs from the later of the oldest task's arrival
//   and the moment the compute became free (NoteComputeIdle): tasks that
//   arrived during the last batch may still wait for the ones it answers.
//   With several queues (one per served layer, DynamicBatcher) both are
//   this queue's own: its last batch's answers and the end of its last
//   batch. Clients that walk the layers bring a layer's answers back to
//   the next layer's queue, which learns the load from its own previous
//   batch.
// - TakeBatch() takes up to max_batch_tokens rows in arrival order. A task
//   larger than what is left of the batch is split: its first rows go in
//   this batch and the rest stays at the head of the queue.
// - TakeExpired(now) removes the tasks whose deadline has passed. They have
//   not (entirely) been scheduled; the caller answers DEADLINE_EXCEEDED.
//
// Not thread-safe: the DynamicBatcher calls it under its mutex.
#ifndef MOE_BATCHING_BATCH_QUEUE_H_
#define MOE_BATCHING_BATCH_QUEUE_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "batching/infer_task.h"

namespace moe {

struct BatchQueueOptions {
  // Most token rows in one model call.
  int64_t max_batch_tokens = 256;
  // Longest time the oldest queued task waits for a batch to fill.
  absl::Duration max_queue_delay = absl::Microseconds(2000);
  // Most token rows waiting (not yet scheduled) at once.
  int64_t max_queue_tokens = 65536;
  // Wait only for the load the last batch's answers bring back (see the
  // contract above); false: always wait for max_batch_tokens.
  bool adaptive_fill = true;
};

// Rows [row_begin, row_begin + rows) of one task.
struct BatchSlice {
  std::shared_ptr<InferTask> task;
  int64_t row_begin = 0;
  int64_t rows = 0;
};

struct Batch {
  // Which of the DynamicBatcher's queues (the served model) it came from.
  int queue = 0;
  std::vector<BatchSlice> slices;
  int64_t num_tokens = 0;
  // Cancelled tasks met while forming the batch; not in `slices`.
  std::vector<std::shared_ptr<InferTask>> cancelled;
};

class BatchQueue {
 public:
  explicit BatchQueue(const BatchQueueOptions& options) : options_(options) {}

  absl::Status Enqueue(std::shared_ptr<InferTask> task, absl::Time now);

  // When a batch should be taken: InfiniteFuture() if empty; the oldest
  // task's enqueue time if the fill target is queued (i.e. at once);
  // otherwise max_queue_delay after the oldest enqueue time, or with
  // adaptive_fill after the later of that and the last NoteComputeIdle().
  absl::Time BatchReadyTime() const;
  // The oldest queued task's enqueue time (InfiniteFuture() if empty).
  absl::Time OldestEnqueueTime() const {
    return tasks_.empty() ? absl::InfiniteFuture() : tasks_.front()->enqueue_time;
  }

  // Called when a batch's compute has ended, before its tasks are
  // answered: `answered_tokens` is the total size of the tasks it
  // completes (successfully or not). Sets the fill target to that plus the
  // tokens queued now, within [1, max_batch_tokens].
  void NoteBatchComputed(int64_t answered_tokens);
  // Called when the compute is free again (its answers handed out).
  void NoteComputeIdle(absl::Time now);
  int64_t fill_target_tokens() const;

  // Earliest deadline of a queued task (InfiniteFuture() if none).
  absl::Time EarliestDeadline() const;

  Batch TakeBatch(absl::Time now);
  std::vector<std::shared_ptr<InferTask>> TakeExpired(absl::Time now);
  std::vector<std::shared_ptr<InferTask>> TakeCancelled();
  std::vector<std::shared_ptr<InferTask>> TakeAll();

  bool empty() const { return tasks_.empty(); }
  size_t queued_tasks() const { return tasks_.size(); }
  int64_t queued_tokens() const { return queued_tokens_; }
  const BatchQueueOptions& options() const { return options_; }

 private:
  template <typename Pred>
  std::vector<std::shared_ptr<InferTask>> RemoveIf(Pred pred);

  const BatchQueueOptions options_;
  std::deque<std::shared_ptr<InferTask>> tasks_;
  int64_t queued_tokens_ = 0;  // unscheduled rows of the queued tasks
  // Until the first batch has run: a full batch.
  int64_t fill_target_tokens_ = options_.max_batch_tokens;
  absl::Time compute_idle_since_ = absl::InfinitePast();
};

}  // namespace moe

#endif  // MOE_BATCHING_BATCH_QUEUE_H_
