#include "server/dynamic_batcher.h"

#include "common/tsan_annotations.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace moe {

DynamicBatcher::DynamicBatcher(const BatchQueueOptions& options, RunBatchFn run,
                               BatchObserverFn observer)
    : options_(options), run_(std::move(run)), observer_(std::move(observer)), queue_(options) {
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
  absl::Status st = queue_.Enqueue(std::move(task), absl::Now());
  if (st.ok()) ++generation_;
  return st;
}

void DynamicBatcher::NotifyCancelled() {
  absl::MutexLock lock(&mu_);
  ++generation_;
}

int64_t DynamicBatcher::queued_tokens() const {
  absl::MutexLock lock(&mu_);
  return queue_.queued_tokens();
}

size_t DynamicBatcher::queued_tasks() const {
  absl::MutexLock lock(&mu_);
  return queue_.queued_tasks();
}

int64_t DynamicBatcher::fill_target_tokens() const {
  absl::MutexLock lock(&mu_);
  return queue_.fill_target_tokens();
}

namespace {

// A dropped cancelled task: gRPC cancels a call server-side when its
// deadline passes, so a cancellation at the deadline (within the slack of
// the two clocks' conversions) is reported as the deadline it is.
absl::Status DroppedStatus(const InferTask& t) {
  if (absl::Now() + absl::Milliseconds(20) >= t.deadline) {
    return absl::DeadlineExceededError(
        "deadline passed while the request was queued; it was not computed");
  }
  return absl::CancelledError("request cancelled by the client");
}

}  // namespace

void DynamicBatcher::FinishDropped(const std::vector<std::shared_ptr<InferTask>>& tasks) {
  for (const auto& t : tasks) {
    if (t->ClaimFinish() && t->done) t->done(DroppedStatus(*t), *t);
  }
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
    const absl::Time ready = draining_ && !queue_.empty() ? absl::InfinitePast()
                                                          : queue_.BatchReadyTime();
    const absl::Time now = absl::Now();
    if (ready > now) {
      const uint64_t seen = generation_;
      auto changed = [this, seen]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        MOE_TSAN_CONDITION_HOLDS(&mu_);
        return generation_ != seen || stop_;
      };
      if (ready == absl::InfiniteFuture()) {
        mu_.Await(absl::Condition(&changed));
      } else {
        mu_.AwaitWithDeadline(absl::Condition(&changed), ready);
      }
      continue;
    }
    Batch batch = queue_.TakeBatch(now);
    // Covers the completions below too: Drain waits for them.
    batch_running_ = !batch.slices.empty() || !batch.cancelled.empty();
    ++generation_;
    mu_.Unlock();

    FinishDropped(batch.cancelled);
    if (!batch.slices.empty()) {
      const absl::Time start = absl::Now();
      absl::Status st = run_(batch);
      const absl::Duration compute = absl::Now() - start;
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
        queue_.NoteBatchComputed(answered_tokens);
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
    queue_.NoteComputeIdle(absl::Now());
    batch_running_ = false;
    ++generation_;
  }
  mu_.Unlock();
}

void DynamicBatcher::WatchLoop() {
  mu_.Lock();
  while (!stop_) {
    const absl::Time now = absl::Now();
    std::vector<std::shared_ptr<InferTask>> expired = queue_.TakeExpired(now);
    std::vector<std::shared_ptr<InferTask>> cancelled = queue_.TakeCancelled();
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
    const absl::Time deadline = queue_.EarliestDeadline();
    const uint64_t seen = generation_;
    auto changed = [this, seen]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      MOE_TSAN_CONDITION_HOLDS(&mu_);
      return generation_ != seen || stop_;
    };
    if (deadline == absl::InfiniteFuture()) {
      mu_.Await(absl::Condition(&changed));
    } else {
      mu_.AwaitWithDeadline(absl::Condition(&changed), deadline);
    }
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
      return queue_.empty() && !batch_running_ && !watcher_busy_;
    };
    mu_.AwaitWithTimeout(absl::Condition(&idle), timeout);
    cut = queue_.TakeAll();
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
