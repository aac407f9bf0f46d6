#include "batching/batch_queue.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace moe {

absl::Status BatchQueue::Enqueue(std::shared_ptr<InferTask> task, absl::Time now) {
  if (task->num_tokens < 1) {
    return absl::InvalidArgumentError("a task needs at least one token");
  }
  if (queued_tokens_ + task->num_tokens > options_.max_queue_tokens) {
    return absl::UnavailableError(absl::StrCat("queue full: ", queued_tokens_, " tokens waiting + ",
                                               task->num_tokens, " requested > max_queue_tokens ",
                                               options_.max_queue_tokens, "; retry later"));
  }
  task->enqueue_time = now;
  task->next_row = 0;
  task->rows_done = 0;
  queued_tokens_ += task->num_tokens;
  tasks_.push_back(std::move(task));
  return absl::OkStatus();
}

absl::Time BatchQueue::BatchReadyTime() const {
  if (tasks_.empty()) return absl::InfiniteFuture();
  const absl::Time oldest = tasks_.front()->enqueue_time;
  if (queued_tokens_ >= fill_target_tokens()) return oldest;
  if (!options_.adaptive_fill) return oldest + options_.max_queue_delay;
  return std::max(oldest, compute_idle_since_) + options_.max_queue_delay;
}

void BatchQueue::NoteComputeIdle(absl::Time now) { compute_idle_since_ = now; }

void BatchQueue::NoteBatchComputed(int64_t answered_tokens) {
  fill_target_tokens_ =
      std::clamp<int64_t>(answered_tokens + queued_tokens_, 1, options_.max_batch_tokens);
}

int64_t BatchQueue::fill_target_tokens() const {
  return options_.adaptive_fill ? fill_target_tokens_ : options_.max_batch_tokens;
}

absl::Time BatchQueue::EarliestDeadline() const {
  absl::Time earliest = absl::InfiniteFuture();
  for (const auto& t : tasks_) earliest = std::min(earliest, t->deadline);
  return earliest;
}

Batch BatchQueue::TakeBatch(absl::Time now) {
  Batch batch;
  while (!tasks_.empty() && batch.num_tokens < options_.max_batch_tokens) {
    std::shared_ptr<InferTask>& task = tasks_.front();
    const int64_t remaining = task->num_tokens - task->next_row;
    if (task->finished.load()) {  // already answered (e.g. an earlier slice failed)
      queued_tokens_ -= remaining;
      tasks_.pop_front();
      continue;
    }
    if (task->cancelled.load()) {
      queued_tokens_ -= remaining;
      batch.cancelled.push_back(std::move(task));
      tasks_.pop_front();
      continue;
    }
    const int64_t take = std::min(remaining, options_.max_batch_tokens - batch.num_tokens);
    if (!task->scheduled_once) {
      task->scheduled_once = true;
      task->queue_time = now - task->enqueue_time;
    }
    batch.slices.push_back(BatchSlice{task, task->next_row, take});
    batch.num_tokens += take;
    task->next_row += take;
    queued_tokens_ -= take;
    if (task->next_row == task->num_tokens) tasks_.pop_front();
  }
  return batch;
}

template <typename Pred>
std::vector<std::shared_ptr<InferTask>> BatchQueue::RemoveIf(Pred pred) {
  std::vector<std::shared_ptr<InferTask>> out;
  for (auto it = tasks_.begin(); it != tasks_.end();) {
    if (pred(**it)) {
      queued_tokens_ -= (*it)->num_tokens - (*it)->next_row;
      out.push_back(std::move(*it));
      it = tasks_.erase(it);
    } else {
      ++it;
    }
  }
  return out;
}

std::vector<std::shared_ptr<InferTask>> BatchQueue::TakeExpired(absl::Time now) {
  return RemoveIf([now](const InferTask& t) { return t.deadline <= now; });
}

std::vector<std::shared_ptr<InferTask>> BatchQueue::TakeCancelled() {
  return RemoveIf([](const InferTask& t) { return t.cancelled.load(); });
}

std::vector<std::shared_ptr<InferTask>> BatchQueue::TakeAll() {
  return RemoveIf([](const InferTask&) { return true; });
}

}  // namespace moe
