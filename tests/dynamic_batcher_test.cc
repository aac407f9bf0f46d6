// DynamicBatcher: the threads around BatchQueue. The model is a fake that
// records what it ran and can be held mid-batch; nothing here depends on
// timing except waiting for events with generous bounds.
#include "batching/dynamic_batcher.h"

#include <atomic>
#include <set>

#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fake_clock.h"
#include "tests/status_matchers.h"

namespace moe {
namespace {

// Each output row is 1000 * token value, so results can be checked.
class FakeModel {
 public:
  absl::Status Run(const Batch& batch) {
    if (hold_ != nullptr) {
      if (!entered_.HasBeenNotified()) entered_.Notify();
      hold_->WaitForNotification();
    }
    absl::MutexLock lock(&mu_);
    batch_sizes_.push_back(batch.num_tokens);
    if (fail_) return absl::InternalError("injected failure");
    for (const BatchSlice& s : batch.slices) {
      for (int64_t r = s.row_begin; r < s.row_begin + s.rows; ++r) {
        s.task->output[r] = 1000.0f * s.task->tokens[r];
        computed_rows_ += 1;
      }
    }
    return absl::OkStatus();
  }
  absl::Notification* hold_ = nullptr;
  absl::Notification entered_;
  bool fail_ = false;
  absl::Mutex mu_;
  std::vector<int64_t> batch_sizes_;
  int64_t computed_rows_ = 0;
};

struct Result {
  absl::Notification done;
  absl::Status status;
  std::atomic<int> calls{0};
};

std::shared_ptr<InferTask> Task(int64_t tokens, Result* r, float base = 1.0f,
                                absl::Time deadline = absl::InfiniteFuture()) {
  auto t = std::make_shared<InferTask>();
  t->num_tokens = tokens;
  t->deadline = deadline;
  for (int64_t i = 0; i < tokens; ++i) t->tokens.push_back(base + static_cast<float>(i));
  t->output.resize(static_cast<size_t>(tokens));
  t->done = [r](const absl::Status& st, InferTask&) {
    r->status = st;
    if (r->calls.fetch_add(1) == 0) r->done.Notify();
  };
  return t;
}

BatchQueueOptions Options(int64_t batch, absl::Duration delay, int64_t queue = 1000) {
  BatchQueueOptions o;
  o.max_batch_tokens = batch;
  o.max_queue_delay = delay;
  o.max_queue_tokens = queue;
  return o;
}

TEST(DynamicBatcherTest, ComputesEveryRowAndFinishesEachTaskOnce) {
  FakeModel model;
  DynamicBatcher batcher(Options(16, absl::Milliseconds(1)),
                         [&](const Batch& b) { return model.Run(b); });
  std::vector<std::unique_ptr<Result>> results;
  std::vector<std::shared_ptr<InferTask>> tasks;
  for (int i = 0; i < 50; ++i) {
    results.push_back(std::make_unique<Result>());
    tasks.push_back(Task(1 + i % 7, results.back().get(), 10.0f * i));
    ASSERT_OK(batcher.Enqueue(tasks.back()));
  }
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(results[i]->done.WaitForNotificationWithTimeout(absl::Seconds(30)));
    EXPECT_OK(results[i]->status);
    for (int64_t r = 0; r < tasks[i]->num_tokens; ++r) {
      EXPECT_EQ(tasks[i]->output[r], 1000.0f * tasks[i]->tokens[r]);
    }
  }
  absl::MutexLock lock(&model.mu_);
  for (int64_t s : model.batch_sizes_) EXPECT_LE(s, 16);
  int64_t total = 0;
  for (int i = 0; i < 50; ++i) total += tasks[i]->num_tokens;
  EXPECT_EQ(model.computed_rows_, total);
  for (auto& r : results) EXPECT_EQ(r->calls.load(), 1);
}

TEST(DynamicBatcherTest, TaskLargerThanABatchIsSplitAndReassembled) {
  FakeModel model;
  DynamicBatcher batcher(Options(4, absl::Milliseconds(1)),
                         [&](const Batch& b) { return model.Run(b); });
  Result r;
  auto t = Task(11, &r);
  ASSERT_OK(batcher.Enqueue(t));
  ASSERT_TRUE(r.done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_OK(r.status);
  for (int64_t i = 0; i < 11; ++i) EXPECT_EQ(t->output[i], 1000.0f * (1 + i));
  absl::MutexLock lock(&model.mu_);
  EXPECT_EQ(model.batch_sizes_, (std::vector<int64_t>{4, 4, 3}));
}

TEST(DynamicBatcherTest, AdaptiveFillRunsTheRestOfASplitTaskWithoutWaiting) {
  FakeModel model;
  // An hour's delay: only the fill target can make a batch ready.
  DynamicBatcher batcher(Options(4, absl::Hours(1)), [&](const Batch& b) { return model.Run(b); });
  EXPECT_EQ(batcher.fill_target_tokens(), 4);
  Result r;
  auto t = Task(6, &r);
  ASSERT_OK(batcher.Enqueue(t));
  // 4 rows fill the first batch; the 2 left are all the load there is.
  ASSERT_TRUE(r.done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_OK(r.status);
  for (int64_t i = 0; i < 6; ++i) EXPECT_EQ(t->output[i], 1000.0f * (1 + i));
  // The answered task may come back with all of its 6 tokens.
  EXPECT_EQ(batcher.fill_target_tokens(), 4);
  absl::MutexLock lock(&model.mu_);
  EXPECT_EQ(model.batch_sizes_, (std::vector<int64_t>{4, 2}));
}

TEST(DynamicBatcherTest, DeadlineIsAnsweredWhileABatchRuns) {
  FakeModel model;
  absl::Notification release;
  model.hold_ = &release;
  DynamicBatcher batcher(Options(1, absl::Milliseconds(1)),
                         [&](const Batch& b) { return model.Run(b); });
  Result first, second;
  ASSERT_OK(batcher.Enqueue(Task(1, &first)));
  ASSERT_TRUE(model.entered_.WaitForNotificationWithTimeout(absl::Seconds(30)));
  // The model is busy; this task's deadline passes while it waits.
  ASSERT_OK(batcher.Enqueue(Task(1, &second, 1.0f, absl::Now() + absl::Milliseconds(20))));
  ASSERT_TRUE(second.done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_EQ(second.status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_FALSE(first.done.HasBeenNotified());  // answered before the running batch ended
  release.Notify();
  ASSERT_TRUE(first.done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_OK(first.status);
  absl::MutexLock lock(&model.mu_);
  EXPECT_EQ(model.computed_rows_, 1);  // the expired task was never computed
}

TEST(DynamicBatcherTest, CancelledTaskIsDroppedUncomputed) {
  FakeModel model;
  absl::Notification release;
  model.hold_ = &release;
  DynamicBatcher batcher(Options(1, absl::Milliseconds(1)),
                         [&](const Batch& b) { return model.Run(b); });
  Result first, second;
  ASSERT_OK(batcher.Enqueue(Task(1, &first)));
  ASSERT_TRUE(model.entered_.WaitForNotificationWithTimeout(absl::Seconds(30)));
  auto t = Task(1, &second);
  ASSERT_OK(batcher.Enqueue(t));
  t->cancelled.store(true);
  batcher.NotifyCancelled();
  ASSERT_TRUE(second.done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_EQ(second.status.code(), absl::StatusCode::kCancelled);
  release.Notify();
  ASSERT_TRUE(first.done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  absl::MutexLock lock(&model.mu_);
  EXPECT_EQ(model.computed_rows_, 1);
}

TEST(DynamicBatcherTest, FullQueueRejectsWithUnavailable) {
  FakeModel model;
  absl::Notification release;
  model.hold_ = &release;
  DynamicBatcher batcher(Options(1, absl::Milliseconds(1), /*queue=*/3),
                         [&](const Batch& b) { return model.Run(b); });
  Result a, b, c;
  ASSERT_OK(batcher.Enqueue(Task(1, &a)));
  ASSERT_TRUE(model.entered_.WaitForNotificationWithTimeout(absl::Seconds(30)));
  ASSERT_OK(batcher.Enqueue(Task(3, &b)));
  auto st = batcher.Enqueue(Task(1, &c));
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(st.message()), ::testing::HasSubstr("queue full"));
  release.Notify();
  ASSERT_TRUE(b.done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_EQ(c.calls.load(), 0);  // a rejected task is never called back
}

TEST(DynamicBatcherTest, ModelFailureFailsTheBatchTasks) {
  FakeModel model;
  model.fail_ = true;
  DynamicBatcher batcher(Options(8, absl::Milliseconds(1)),
                         [&](const Batch& b) { return model.Run(b); });
  Result r;
  ASSERT_OK(batcher.Enqueue(Task(20, &r)));
  ASSERT_TRUE(r.done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_EQ(r.status.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(std::string(r.status.message()), ::testing::HasSubstr("injected failure"));
}

TEST(DynamicBatcherTest, DrainFinishesAcceptedWorkThenRejects) {
  FakeModel model;
  DynamicBatcher batcher(Options(4, absl::Seconds(10)),  // long delay: drain must flush
                         [&](const Batch& b) { return model.Run(b); });
  Result a, b;
  ASSERT_OK(batcher.Enqueue(Task(3, &a)));
  ASSERT_OK(batcher.Enqueue(Task(2, &b)));
  auto result = batcher.Drain(absl::Seconds(30));
  EXPECT_EQ(result.cut, 0);
  EXPECT_TRUE(a.done.HasBeenNotified());
  EXPECT_TRUE(b.done.HasBeenNotified());
  EXPECT_OK(a.status);
  EXPECT_OK(b.status);
  Result late;
  EXPECT_EQ(batcher.Enqueue(Task(1, &late)).code(), absl::StatusCode::kUnavailable);
}

TEST(DynamicBatcherTest, DrainTimeoutCutsWhatIsLeft) {
  FakeModel model;
  absl::Notification release;
  model.hold_ = &release;
  DynamicBatcher batcher(Options(1, absl::Milliseconds(1)),
                         [&](const Batch& b) { return model.Run(b); });
  Result running, queued;
  ASSERT_OK(batcher.Enqueue(Task(1, &running)));
  ASSERT_TRUE(model.entered_.WaitForNotificationWithTimeout(absl::Seconds(30)));
  ASSERT_OK(batcher.Enqueue(Task(1, &queued)));
  // While the model holds the running batch, nothing but the drain's cut
  // can take the queued task out of the queue: release the model once it
  // is gone (no timing involved; the drain's timeout may be any length).
  std::thread releaser([&] {
    while (batcher.queued_tasks() > 0) absl::SleepFor(absl::Milliseconds(1));
    release.Notify();
  });
  auto result = batcher.Drain(absl::Milliseconds(1));
  releaser.join();
  // The running batch is accepted work: it completes. The queued task is cut.
  EXPECT_EQ(result.cut, 1);
  EXPECT_OK(running.status);
  EXPECT_EQ(queued.status.code(), absl::StatusCode::kUnavailable);
}

// ---- On a fake clock: the times the batcher acts at, exactly ------------

// Records the clock's time at each batch start.
class ClockedModel {
 public:
  explicit ClockedModel(const Clock* clock) : clock_(clock) {}
  absl::Status Run(const Batch& batch) {
    absl::MutexLock lock(&mu_);
    starts_.push_back(clock_->Now());
    for (const BatchSlice& s : batch.slices) {
      for (int64_t r = s.row_begin; r < s.row_begin + s.rows; ++r) {
        s.task->output[r] = 1000.0f * s.task->tokens[r];
      }
    }
    return absl::OkStatus();
  }
  std::vector<absl::Time> starts() const {
    absl::MutexLock lock(&mu_);
    return starts_;
  }

 private:
  const Clock* clock_;
  mutable absl::Mutex mu_;
  std::vector<absl::Time> starts_;
};

// The time a task's `done` ran at, on `clock`.
std::shared_ptr<InferTask> ClockedTask(int64_t tokens, Result* r, const Clock* clock,
                                       absl::Time* answered_at,
                                       absl::Time deadline = absl::InfiniteFuture()) {
  auto t = Task(tokens, r, 1.0f, deadline);
  auto done = t->done;
  t->done = [done, clock, answered_at](const absl::Status& st, InferTask& task) {
    *answered_at = clock->Now();
    done(st, task);
  };
  return t;
}

// Durations no real wait reaches while a test runs: only the fake clock
// can get there.
constexpr absl::Duration kLong = absl::Hours(1);
constexpr absl::Duration kTick = absl::Milliseconds(1);

// Waits (up to 30 s) until `n` threads wait on `clock` and no wait has
// started or ended for 5 ms: a thread woken by the last step (still counted
// while it has not run) has had the time to act, so that a "not yet" check
// that follows would see an early action. False if that never happens.
bool Settle(const ::moe::testing::FakeClock& clock, int n) {
  const absl::Time give_up = absl::Now() + absl::Seconds(30);
  while (absl::Now() < give_up) {
    const int64_t events = clock.wait_events();
    if (clock.waiters() < n) {
      absl::SleepFor(absl::Milliseconds(1));
      continue;
    }
    absl::SleepFor(absl::Milliseconds(5));
    if (clock.wait_events() == events && clock.waiters() >= n) return true;
  }
  return false;
}

TEST(DynamicBatcherClockTest, APartialBatchRunsWhenTheClockReachesMaxQueueDelay) {
  ::moe::testing::FakeClock clock;
  ClockedModel model(&clock);
  Result r;
  absl::Time answered;
  BatchQueueOptions options = Options(64, kLong);
  options.adaptive_fill = false;  // wait for 64 tokens or the delay
  DynamicBatcher batcher(
      options, [&](const Batch& b) { return model.Run(b); }, nullptr, 1, &clock);
  const absl::Time t0 = clock.Now();
  ASSERT_OK(batcher.Enqueue(ClockedTask(3, &r, &clock, &answered)));
  // The compute thread and the watcher wait on the clock; one tick short
  // of the delay, the batch must not start.
  ASSERT_TRUE(Settle(clock, 2));
  clock.AdvanceBy(kLong - kTick);
  ASSERT_TRUE(Settle(clock, 2));
  EXPECT_FALSE(r.done.HasBeenNotified());
  EXPECT_TRUE(model.starts().empty());
  clock.AdvanceBy(kTick);
  ASSERT_TRUE(r.done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_OK(r.status);
  EXPECT_EQ(model.starts(), std::vector<absl::Time>{t0 + kLong});
  EXPECT_EQ(answered, t0 + kLong);
}

TEST(DynamicBatcherClockTest, AQueuedTaskIsAnsweredAtItsDeadlineOnTheClock) {
  ::moe::testing::FakeClock clock;
  ClockedModel model(&clock);
  Result r;
  absl::Time answered;
  BatchQueueOptions options = Options(64, 2 * kLong);
  options.adaptive_fill = false;  // nothing runs before the deadline
  DynamicBatcher batcher(
      options, [&](const Batch& b) { return model.Run(b); }, nullptr, 1, &clock);
  const absl::Time t0 = clock.Now();
  ASSERT_OK(batcher.Enqueue(ClockedTask(2, &r, &clock, &answered, t0 + kLong)));
  ASSERT_TRUE(Settle(clock, 2));
  clock.AdvanceBy(kLong - kTick);
  ASSERT_TRUE(Settle(clock, 2));
  EXPECT_FALSE(r.done.HasBeenNotified());
  clock.AdvanceBy(kTick);
  ASSERT_TRUE(r.done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_EQ(r.status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(answered, t0 + kLong);
  EXPECT_TRUE(model.starts().empty());  // never computed
}

TEST(DynamicBatcherClockTest, DrainCutsWhatIsLeftWhenTheClockReachesItsTimeout) {
  ::moe::testing::FakeClock clock;
  FakeModel model;
  absl::Notification release;
  model.hold_ = &release;
  Result running, queued;
  DynamicBatcher batcher(
      Options(1, absl::ZeroDuration()), [&](const Batch& b) { return model.Run(b); }, nullptr, 1,
      &clock);
  ASSERT_OK(batcher.Enqueue(Task(1, &running)));
  ASSERT_TRUE(model.entered_.WaitForNotificationWithTimeout(absl::Seconds(30)));
  ASSERT_OK(batcher.Enqueue(Task(1, &queued)));
  DynamicBatcher::DrainResult result;
  std::thread drainer([&] { result = batcher.Drain(kLong); });
  // The watcher and the drain wait on the clock (the compute thread is in
  // the held model).
  const bool settled = Settle(clock, 2);
  if (settled) {
    clock.AdvanceBy(kLong - kTick);
    EXPECT_TRUE(Settle(clock, 2));
    EXPECT_EQ(batcher.queued_tasks(), 1u);  // not cut before the timeout
    clock.AdvanceBy(kTick);
    const absl::Time give_up = absl::Now() + absl::Seconds(30);
    while (batcher.queued_tasks() > 0 && absl::Now() < give_up) absl::SleepFor(kTick);
  }
  release.Notify();
  drainer.join();
  ASSERT_TRUE(settled) << "the drain never waited on the clock";
  EXPECT_EQ(result.cut, 1);
  EXPECT_OK(running.status);
  EXPECT_EQ(queued.status.code(), absl::StatusCode::kUnavailable);
}

// ---- Several queues (one per served model) sharing the compute ----------

TEST(DynamicBatcherQueuesTest, BatchesHoldOneQueueEachAndEveryQueueIsServed) {
  absl::Mutex mu;
  std::vector<int> batch_queues;
  int mixed = 0;
  FakeModel model;
  DynamicBatcher batcher(
      Options(8, absl::Milliseconds(1)),
      [&](const Batch& b) {
        {
          absl::MutexLock lock(&mu);
          batch_queues.push_back(b.queue);
          for (const BatchSlice& s : b.slices) mixed += s.task->queue != b.queue;
        }
        return model.Run(b);
      },
      nullptr, /*num_queues=*/3);
  EXPECT_EQ(batcher.num_queues(), 3);
  std::vector<std::unique_ptr<Result>> results;
  std::vector<std::shared_ptr<InferTask>> tasks;
  for (int i = 0; i < 60; ++i) {
    results.push_back(std::make_unique<Result>());
    tasks.push_back(Task(1 + i % 5, results.back().get(), 10.0f * i));
    tasks.back()->queue = i % 3;
    ASSERT_OK(batcher.Enqueue(tasks.back()));
  }
  for (int i = 0; i < 60; ++i) {
    ASSERT_TRUE(results[i]->done.WaitForNotificationWithTimeout(absl::Seconds(30)));
    EXPECT_OK(results[i]->status);
    for (int64_t r = 0; r < tasks[i]->num_tokens; ++r) {
      EXPECT_EQ(tasks[i]->output[r], 1000.0f * tasks[i]->tokens[r]);
    }
  }
  absl::MutexLock lock(&mu);
  EXPECT_EQ(mixed, 0);
  EXPECT_EQ(std::set<int>(batch_queues.begin(), batch_queues.end()), (std::set<int>{0, 1, 2}));
}

TEST(DynamicBatcherQueuesTest, TheQueueBoundCountsEveryQueue) {
  FakeModel model;
  // An hour's delay and a batch of 100: nothing becomes ready.
  DynamicBatcher batcher(
      Options(100, absl::Hours(1), /*queue=*/4), [&](const Batch& b) { return model.Run(b); },
      nullptr, 2);
  Result a, b, c;
  auto ta = Task(2, &a), tb = Task(2, &b), tc = Task(1, &c);
  ta->queue = 0;
  tb->queue = 1;
  tc->queue = 1;
  ASSERT_OK(batcher.Enqueue(ta));
  ASSERT_OK(batcher.Enqueue(tb));
  const absl::Status st = batcher.Enqueue(tc);
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(st.message()), ::testing::HasSubstr("4 tokens waiting"));
  EXPECT_EQ(batcher.queued_tokens(), 4);
  EXPECT_EQ(batcher.queued_tokens(1), 2);
  EXPECT_EQ(batcher.Drain(absl::Seconds(30)).cut, 0);  // the drain runs both queues
  EXPECT_OK(a.status);
  EXPECT_OK(b.status);
  EXPECT_EQ(c.calls.load(), 0);
}

// A hot queue whose closed-loop clients always fill a batch cannot starve
// a cold one: once the cold task has waited max_queue_delay, at most one
// more hot batch starts before it (ready queues take turns). The check is
// on the order of events, not on how long anything took.
TEST(DynamicBatcherQueuesTest, AHotQueueDelaysAnotherByAtMostOneBatch) {
  constexpr int kHotClients = 4;
  const absl::Duration delay = absl::Milliseconds(2);
  absl::Mutex mu;
  std::vector<std::pair<int, absl::Time>> starts;  // (queue, start) of every batch
  std::atomic<bool> cold_done{false};
  DynamicBatcher* batcher_ptr = nullptr;
  std::vector<std::unique_ptr<Result>> hot_results;
  auto send_hot = [&] {
    auto r = std::make_unique<Result>();
    auto t = Task(4, r.get());
    t->queue = 0;
    {
      absl::MutexLock lock(&mu);
      hot_results.push_back(std::move(r));
    }
    (void)batcher_ptr->Enqueue(t);
  };
  DynamicBatcher batcher(
      Options(4 * kHotClients, delay),
      [&](const Batch& b) {
        {
          absl::MutexLock lock(&mu);
          starts.emplace_back(b.queue, absl::Now());
        }
        if (b.queue == 0) {
          absl::SleepFor(absl::Milliseconds(1));  // a batch takes a while
          // Each answered client sends again, until the cold task is done.
          if (!cold_done.load()) {
            for (size_t i = 0; i < b.slices.size(); ++i) send_hot();
          }
        }
        for (const BatchSlice& s : b.slices) {
          for (int64_t r = s.row_begin; r < s.row_begin + s.rows; ++r) s.task->output[r] = 0;
        }
        return absl::OkStatus();
      },
      nullptr, 2);
  batcher_ptr = &batcher;
  for (int c = 0; c < kHotClients; ++c) send_hot();
  // Let the hot loop run a few batches first.
  while (true) {
    absl::SleepFor(absl::Milliseconds(1));
    absl::MutexLock lock(&mu);
    if (starts.size() >= 5) break;
  }
  Result cold;
  auto t = Task(1, &cold);
  t->queue = 1;
  ASSERT_OK(batcher.Enqueue(t));
  ASSERT_TRUE(cold.done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  cold_done.store(true);
  EXPECT_OK(cold.status);
  const absl::Time ready = t->enqueue_time + delay;
  absl::MutexLock lock(&mu);
  int hot_after_ready = 0;
  bool cold_ran = false;
  for (const auto& [queue, start] : starts) {
    if (queue == 1) {
      cold_ran = true;
      break;
    }
    if (start > ready) ++hot_after_ready;
  }
  EXPECT_TRUE(cold_ran);
  EXPECT_LE(hot_after_ready, 1) << "hot batches started after the cold queue was ready";
}

// An open-loop hot queue that arrives faster than it is served (its
// backlog grows): once the cold queue is ready, no hot batch whose tasks
// all arrived after that moment runs before it (oldest first across
// queues), so the backlog cannot starve it.
TEST(DynamicBatcherQueuesTest, LaterArrivalsOfABusyQueueNeverOvertakeAReadyOne) {
  const absl::Duration delay = absl::Milliseconds(2);
  absl::Mutex mu;
  struct Started {
    int queue;
    absl::Time first_arrival;  // the batch's first task's enqueue time
  };
  std::vector<Started> starts;
  DynamicBatcher batcher(
      Options(4, delay, /*queue=*/100000),
      [&](const Batch& b) {
        {
          absl::MutexLock lock(&mu);
          starts.push_back({b.queue, b.slices.front().task->enqueue_time});
        }
        if (b.queue == 0) absl::SleepFor(absl::Milliseconds(1));
        for (const BatchSlice& s : b.slices) {
          for (int64_t r = s.row_begin; r < s.row_begin + s.rows; ++r) s.task->output[r] = 0;
        }
        return absl::OkStatus();
      },
      nullptr, 2);
  // Hot: a full batch every 0.5 ms against 1 ms of compute each.
  std::atomic<bool> stop{false};
  std::vector<std::unique_ptr<Result>> hot;
  absl::Mutex hot_mu;
  std::thread feeder([&] {
    while (!stop.load()) {
      auto r = std::make_unique<Result>();
      auto t = Task(4, r.get());
      t->queue = 0;
      {
        absl::MutexLock lock(&hot_mu);
        hot.push_back(std::move(r));
      }
      (void)batcher.Enqueue(t);
      absl::SleepFor(absl::Microseconds(500));
    }
  });
  absl::SleepFor(absl::Milliseconds(10));  // a backlog builds up
  Result cold;
  auto t = Task(1, &cold);
  t->queue = 1;
  ASSERT_OK(batcher.Enqueue(t));
  ASSERT_TRUE(cold.done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  stop.store(true);
  feeder.join();
  EXPECT_OK(cold.status);
  const absl::Time ready = t->enqueue_time + delay;
  batcher.Drain(absl::Seconds(30));
  absl::MutexLock lock(&mu);
  int overtaking = 0;
  for (const Started& s : starts) {
    if (s.queue == 1) break;
    if (s.first_arrival > ready) ++overtaking;
  }
  EXPECT_EQ(overtaking, 0) << "hot batches of later arrivals ran before the ready cold queue";
}

}  // namespace
}  // namespace moe
