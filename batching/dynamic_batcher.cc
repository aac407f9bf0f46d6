#include "batching/dynamic_batcher.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/tsan_annotations.h"

namespace moe {

DynamicBatcher::DynamicBatcher(const BatchQueueOptions& options, RunBatchFn run,
                               BatchObserverFn observer, int num_queues, Clock* clock)
    : options_(options),
      num_queues_(std::max(num_queues, 1)),
      run_(std::move(run)),
      observer_(std::move(observer)),
      clock_(clock) {
  {
    absl::MutexLock lock(&mu_);
    queues_.reserve(static_cast<size_t>(num_queues_));
    for (int q = 0; q < num_queues_; ++q) queues_.emplace_back(options);
  }
  compute_thread_ = std::thread([this] { ComputeLoop(); });
  watch_thread_ = std::thread([this] { WatchLoop(); });
}

DynamicBatcher::~DynamicBatcher() {
  Drain(absl::ZeroDuration());
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    ++generation_;
  }
  compute_thread_.join();
  watch_thread_.join();
}

absl::Status DynamicBatcher::Enqueue(std::shared_ptr<InferTask> task) {
  absl::MutexLock lock(&mu_);
  if (draining_ || stop_) {
    return absl::UnavailableError("server is shutting down (draining); not accepting requests");
  }
  if (task->queue < 0 || task->queue >= num_queues()) {
    return absl::InternalError(absl::StrCat("task for queue ", task->queue, " of ", num_queues()));
  }
  int64_t queued = 0;
  for (const BatchQueue& q : queues_) queued += q.queued_tokens();
  if (queued + task->num_tokens > options_.max_queue_tokens) {
    return absl::UnavailableError(absl::StrCat("queue full: ", queued, " tokens waiting + ",
                                               task->num_tokens, " requested > max_queue_tokens ",
                                               options_.max_queue_tokens, "; retry later"));
  }
  BatchQueue& q = queues_[static_cast<size_t>(task->queue)];
  absl::Status st = q.Enqueue(std::move(task), clock_->Now());
  if (st.ok()) ++generation_;
  return st;
}

void DynamicBatcher::NotifyCancelled() {
  absl::MutexLock lock(&mu_);
  ++generation_;
}

int64_t DynamicBatcher::queued_tokens() const {
  absl::MutexLock lock(&mu_);
  int64_t n = 0;
  for (const BatchQueue& q : queues_) n += q.queued_tokens();
  return n;
}

int64_t DynamicBatcher::queued_tokens(int queue) const {
  absl::MutexLock lock(&mu_);
  return queues_.at(static_cast<size_t>(queue)).queued_tokens();
}

size_t DynamicBatcher::queued_tasks() const {
  absl::MutexLock lock(&mu_);
  size_t n = 0;
  for (const BatchQueue& q : queues_) n += q.queued_tasks();
  return n;
}

size_t DynamicBatcher::queued_tasks(int queue) const {
  absl::MutexLock lock(&mu_);
  return queues_.at(static_cast<size_t>(queue)).queued_tasks();
}

int64_t DynamicBatcher::fill_target_tokens(int queue) const {
  absl::MutexLock lock(&mu_);
  return queues_.at(static_cast<size_t>(queue)).fill_target_tokens();
}

bool DynamicBatcher::AllEmpty() const {
  for (const BatchQueue& q : queues_) {
    if (!q.empty()) return false;
  }
  return true;
}

std::pair<int, absl::Time> DynamicBatcher::NextReadyQueue() const {
  int best = -1;
  absl::Time best_time = absl::InfiniteFuture();
  for (size_t i = 0; i < queues_.size(); ++i) {
    const BatchQueue& q = queues_[i];
    if (q.empty()) continue;
    // Draining: every accepted task runs at once, oldest first.
    const absl::Time t = draining_ ? q.OldestEnqueueTime() : q.BatchReadyTime();
    if (best < 0 || t < best_time) {
      best = static_cast<int>(i);
      best_time = t;
    }
  }
  if (best < 0) return {0, absl::InfiniteFuture()};
  return {best, draining_ ? absl::InfinitePast() : best_time};
}

namespace {

// A dropped cancelled task: gRPC cancels a call server-side when its
// deadline passes, so a cancellation at the deadline (within the slack of
// the two clocks' conversions) is reported as the deadline it is.
absl::Status DroppedStatus(const InferTask& t, absl::Time now) {
  if (now + absl::Milliseconds(20) >= t.deadline) {
    return absl::DeadlineExceededError(
        "deadline passed while the request was queued; it was not computed");
  }
  return absl::CancelledError("request cancelled by the client");
}

}  // namespace

void DynamicBatcher::FinishDropped(const std::vector<std::shared_ptr<InferTask>>& tasks) const {
  for (const auto& t : tasks) {
    if (t->ClaimFinish() && t->done) t->done(DroppedStatus(*t, clock_->Now()), *t);
  }
}

bool DynamicBatcher::AwaitWithDeadline(const absl::Condition& cond, absl::Time deadline) {
  return clock_->AwaitWithDeadline(&mu_, cond, deadline);
}

void DynamicBatcher::FinishAll(const std::vector<std::shared_ptr<InferTask>>& tasks,
                               const absl::Status& status) {
  for (const auto& t : tasks) {
    if (t->ClaimFinish() && t->done) t->done(status, *t);
  }
}

void DynamicBatcher::ComputeLoop() {
  mu_.Lock();
  while (true) {
    if (stop_) break;
    const auto [queue_index, ready] = NextReadyQueue();
    const absl::Time now = clock_->Now();
    if (ready > now) {
      const uint64_t seen = generation_;
      auto changed = [this, seen]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        MOE_TSAN_CONDITION_HOLDS(&mu_);
        return generation_ != seen || stop_;
      };
      AwaitWithDeadline(absl::Condition(&changed), ready);
      continue;
    }
    BatchQueue& queue = queues_[static_cast<size_t>(queue_index)];
    Batch batch = queue.TakeBatch(now);
    batch.queue = queue_index;
    // Covers the completions below too: Drain waits for them.
    batch_running_ = !batch.slices.empty() || !batch.cancelled.empty();
    ++generation_;
    mu_.Unlock();

    FinishDropped(batch.cancelled);
    if (!batch.slices.empty()) {
      const absl::Time start = clock_->Now();
      absl::Status st = run_(batch);
      const absl::Duration compute = clock_->Now() - start;
      if (observer_) observer_(batch, compute, st);
      // Before any answer goes out, so that no request sent again by an
      // answered client is counted twice. Under mu_: next_row is the
      // queue's. A failed task's rows still queued are already counted
      // there; tasks the watcher answered meanwhile will not come back.
      {
        absl::MutexLock lock(&mu_);
        int64_t answered_tokens = 0;
        for (const BatchSlice& s : batch.slices) {
          const InferTask& task = *s.task;
          if (task.finished.load()) continue;
          if (!st.ok()) {
            answered_tokens += task.next_row;
          } else if (task.rows_done + s.rows == task.num_tokens) {
            answered_tokens += task.num_tokens;
          }
        }
        queue.NoteBatchComputed(answered_tokens);
      }
      for (const BatchSlice& s : batch.slices) {
        InferTask& task = *s.task;
        task.compute_time += compute;
        if (!st.ok()) {
          if (task.ClaimFinish() && task.done) {
            // UNAVAILABLE (e.g. an expert shard with no live replica) stays
            // UNAVAILABLE: the client may retry; anything else is INTERNAL.
            const absl::StatusCode code = st.code() == absl::StatusCode::kUnavailable
                                              ? absl::StatusCode::kUnavailable
                                              : absl::StatusCode::kInternal;
            task.done(absl::Status(code, absl::StrCat("model failed: ", st.message())), task);
          }
          continue;
        }
        task.rows_done += s.rows;  // only this thread writes rows_done
        if (task.rows_done == task.num_tokens && task.ClaimFinish() && task.done) {
          task.done(absl::OkStatus(), task);
        }
      }
    }
    mu_.Lock();
    // This queue's own idle time only: moving another queue's would push
    // its ready time back with every batch of this one and starve it.
    queue.NoteComputeIdle(clock_->Now());
    batch_running_ = false;
    ++generation_;
  }
  mu_.Unlock();
}

void DynamicBatcher::WatchLoop() {
  mu_.Lock();
  while (!stop_) {
    const absl::Time now = clock_->Now();
    std::vector<std::shared_ptr<InferTask>> expired, cancelled;
    absl::Time deadline = absl::InfiniteFuture();
    for (BatchQueue& q : queues_) {
      for (auto& t : q.TakeExpired(now)) expired.push_back(std::move(t));
      for (auto& t : q.TakeCancelled()) cancelled.push_back(std::move(t));
      deadline = std::min(deadline, q.EarliestDeadline());
    }
    if (!expired.empty() || !cancelled.empty()) {
      ++generation_;
      watcher_busy_ = true;  // Drain waits for these answers
      mu_.Unlock();
      FinishAll(expired, absl::DeadlineExceededError(
                             "deadline passed while the request was queued; it was not computed"));
      FinishDropped(cancelled);
      mu_.Lock();
      watcher_busy_ = false;
      ++generation_;
      continue;
    }
    const uint64_t seen = generation_;
    auto changed = [this, seen]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      MOE_TSAN_CONDITION_HOLDS(&mu_);
      return generation_ != seen || stop_;
    };
    AwaitWithDeadline(absl::Condition(&changed), deadline);
  }
  mu_.Unlock();
}

DynamicBatcher::DrainResult DynamicBatcher::Drain(absl::Duration timeout) {
  DrainResult result;
  std::vector<std::shared_ptr<InferTask>> cut;
  {
    absl::MutexLock lock(&mu_);
    draining_ = true;
    ++generation_;
    auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      MOE_TSAN_CONDITION_HOLDS(&mu_);
      return AllEmpty() && !batch_running_ && !watcher_busy_;
    };
    AwaitWithDeadline(absl::Condition(&idle), clock_->Now() + timeout);
    for (BatchQueue& q : queues_) {
      for (auto& t : q.TakeAll()) cut.push_back(std::move(t));
    }
    ++generation_;
    // Wait for the running batch: its tasks are accepted work.
    auto not_running = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      MOE_TSAN_CONDITION_HOLDS(&mu_);
      return !batch_running_ && !watcher_busy_;
    };
    mu_.Await(absl::Condition(&not_running));
  }
  for (const auto& t : cut) {
    if (t->ClaimFinish()) {
      ++result.cut;
      if (t->done) {
        t->done(absl::UnavailableError("server shut down before the request was computed "
                                       "(drain timeout)"),
                *t);
      }
    }
  }
  return result;
}

}  // namespace moe
