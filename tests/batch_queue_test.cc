// BatchQueue: batch formation, splitting, capacity, deadlines and
// cancellation, with time driven by hand (no threads, no sleeping).
#include "batching/batch_queue.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/status_matchers.h"

namespace moe {
namespace {

using ::moe::testing::StatusIs;
using ::testing::HasSubstr;

// A fake clock: an absl::Time the test advances.
class FakeClock {
 public:
  absl::Time Now() const { return now_; }
  void Advance(absl::Duration d) { now_ += d; }

 private:
  absl::Time now_ = absl::UnixEpoch() + absl::Hours(1);
};

std::shared_ptr<InferTask> Task(int64_t tokens, absl::Time deadline = absl::InfiniteFuture()) {
  auto t = std::make_shared<InferTask>();
  t->num_tokens = tokens;
  t->deadline = deadline;
  return t;
}

BatchQueueOptions Options(int64_t batch, int64_t delay_us, int64_t queue) {
  BatchQueueOptions o;
  o.max_batch_tokens = batch;
  o.max_queue_delay = absl::Microseconds(delay_us);
  o.max_queue_tokens = queue;
  return o;
}

TEST(BatchQueueTest, EmptyQueueIsNeverReady) {
  BatchQueue q(Options(8, 1000, 100));
  EXPECT_EQ(q.BatchReadyTime(), absl::InfiniteFuture());
  EXPECT_EQ(q.EarliestDeadline(), absl::InfiniteFuture());
}

TEST(BatchQueueTest, ReadyAfterTheDelayWhenNotFull) {
  FakeClock clock;
  BatchQueue q(Options(8, 1000, 100));
  ASSERT_OK(q.Enqueue(Task(3), clock.Now()));
  const absl::Time first = clock.Now();
  clock.Advance(absl::Microseconds(400));
  ASSERT_OK(q.Enqueue(Task(2), clock.Now()));
  // The oldest task decides: 1000 µs after the first enqueue.
  EXPECT_EQ(q.BatchReadyTime(), first + absl::Microseconds(1000));
  EXPECT_EQ(q.queued_tokens(), 5);
}

TEST(BatchQueueTest, ReadyAtOnceWhenFull) {
  FakeClock clock;
  BatchQueue q(Options(8, 1000, 100));
  ASSERT_OK(q.Enqueue(Task(5), clock.Now()));
  ASSERT_OK(q.Enqueue(Task(3), clock.Now()));
  EXPECT_LE(q.BatchReadyTime(), clock.Now());
}

TEST(BatchQueueTest, TakesTasksInArrivalOrderUpToTheBatchSize) {
  FakeClock clock;
  BatchQueue q(Options(8, 1000, 100));
  auto a = Task(3), b = Task(4), c = Task(2);
  ASSERT_OK(q.Enqueue(a, clock.Now()));
  ASSERT_OK(q.Enqueue(b, clock.Now()));
  ASSERT_OK(q.Enqueue(c, clock.Now()));
  clock.Advance(absl::Microseconds(250));
  Batch batch = q.TakeBatch(clock.Now());
  ASSERT_EQ(batch.slices.size(), 3u);
  EXPECT_EQ(batch.num_tokens, 8);
  EXPECT_EQ(batch.slices[0].task, a);
  EXPECT_EQ(batch.slices[1].task, b);
  // c is split: 1 row now, 1 row stays queued at the head.
  EXPECT_EQ(batch.slices[2].task, c);
  EXPECT_EQ(batch.slices[2].row_begin, 0);
  EXPECT_EQ(batch.slices[2].rows, 1);
  EXPECT_EQ(q.queued_tokens(), 1);
  EXPECT_EQ(a->queue_time, absl::Microseconds(250));
  Batch rest = q.TakeBatch(clock.Now());
  ASSERT_EQ(rest.slices.size(), 1u);
  EXPECT_EQ(rest.slices[0].task, c);
  EXPECT_EQ(rest.slices[0].row_begin, 1);
  EXPECT_EQ(rest.slices[0].rows, 1);
  EXPECT_TRUE(q.empty());
}

TEST(BatchQueueTest, LargeTaskIsSplitAcrossBatches) {
  FakeClock clock;
  BatchQueue q(Options(4, 1000, 100));
  auto big = Task(10);
  ASSERT_OK(q.Enqueue(big, clock.Now()));
  std::vector<std::pair<int64_t, int64_t>> slices;
  while (!q.empty()) {
    Batch b = q.TakeBatch(clock.Now());
    ASSERT_EQ(b.slices.size(), 1u);
    slices.emplace_back(b.slices[0].row_begin, b.slices[0].rows);
  }
  EXPECT_EQ(slices, (std::vector<std::pair<int64_t, int64_t>>{{0, 4}, {4, 4}, {8, 2}}));
}

TEST(BatchQueueTest, FullQueueIsUnavailableAndKeepsNothing) {
  FakeClock clock;
  BatchQueue q(Options(8, 1000, 10));
  ASSERT_OK(q.Enqueue(Task(6), clock.Now()));
  auto rejected = Task(5);
  EXPECT_THAT(q.Enqueue(rejected, clock.Now()),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("queue full")));
  EXPECT_EQ(rejected.use_count(), 1);  // the queue kept no reference
  EXPECT_EQ(q.queued_tokens(), 6);
  ASSERT_OK(q.Enqueue(Task(4), clock.Now()));  // exactly at the bound
  EXPECT_FALSE(q.Enqueue(Task(1), clock.Now()).ok());
}

TEST(BatchQueueTest, QueueBoundCountsOnlyUnscheduledRows) {
  FakeClock clock;
  BatchQueue q(Options(4, 1000, 10));
  ASSERT_OK(q.Enqueue(Task(10), clock.Now()));
  q.TakeBatch(clock.Now());  // 4 rows leave the queue
  EXPECT_EQ(q.queued_tokens(), 6);
  EXPECT_OK(q.Enqueue(Task(4), clock.Now()));
}

TEST(BatchQueueTest, ZeroTokenTaskIsRejected) {
  BatchQueue q(Options(4, 1000, 10));
  EXPECT_THAT(q.Enqueue(Task(0), absl::Now()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("token")));
}

TEST(BatchQueueTest, ExpiredTasksLeaveAtTheirDeadline) {
  FakeClock clock;
  BatchQueue q(Options(100, 5000, 100));
  auto early = Task(2, clock.Now() + absl::Milliseconds(1));
  auto late = Task(3, clock.Now() + absl::Milliseconds(10));
  auto never = Task(1);
  ASSERT_OK(q.Enqueue(late, clock.Now()));
  ASSERT_OK(q.Enqueue(early, clock.Now()));
  ASSERT_OK(q.Enqueue(never, clock.Now()));
  EXPECT_EQ(q.EarliestDeadline(), clock.Now() + absl::Milliseconds(1));
  EXPECT_TRUE(q.TakeExpired(clock.Now()).empty());
  clock.Advance(absl::Milliseconds(1));
  auto expired = q.TakeExpired(clock.Now());
  ASSERT_EQ(expired.size(), 1u);
  EXPECT_EQ(expired[0], early);
  EXPECT_EQ(q.queued_tokens(), 4);
  EXPECT_EQ(q.EarliestDeadline(), clock.Now() + absl::Milliseconds(9));
  clock.Advance(absl::Milliseconds(20));
  expired = q.TakeExpired(clock.Now());
  ASSERT_EQ(expired.size(), 1u);
  EXPECT_EQ(expired[0], late);
  EXPECT_EQ(q.queued_tokens(), 1);
}

TEST(BatchQueueTest, PartlyScheduledTaskCanStillExpire) {
  FakeClock clock;
  BatchQueue q(Options(4, 1000, 100));
  auto t = Task(10, clock.Now() + absl::Milliseconds(5));
  ASSERT_OK(q.Enqueue(t, clock.Now()));
  q.TakeBatch(clock.Now());
  clock.Advance(absl::Milliseconds(5));
  auto expired = q.TakeExpired(clock.Now());
  ASSERT_EQ(expired.size(), 1u);
  EXPECT_EQ(q.queued_tokens(), 0);
  EXPECT_TRUE(q.empty());
}

TEST(BatchQueueTest, CancelledTasksAreDroppedNotBatched) {
  FakeClock clock;
  BatchQueue q(Options(8, 1000, 100));
  auto a = Task(2), b = Task(3), c = Task(1);
  ASSERT_OK(q.Enqueue(a, clock.Now()));
  ASSERT_OK(q.Enqueue(b, clock.Now()));
  ASSERT_OK(q.Enqueue(c, clock.Now()));
  b->cancelled.store(true);
  Batch batch = q.TakeBatch(clock.Now());
  ASSERT_EQ(batch.slices.size(), 2u);
  EXPECT_EQ(batch.slices[0].task, a);
  EXPECT_EQ(batch.slices[1].task, c);
  ASSERT_EQ(batch.cancelled.size(), 1u);
  EXPECT_EQ(batch.cancelled[0], b);
  EXPECT_EQ(q.queued_tokens(), 0);
  // TakeCancelled() sweeps them without forming a batch.
  auto d = Task(4);
  ASSERT_OK(q.Enqueue(d, clock.Now()));
  d->cancelled.store(true);
  auto swept = q.TakeCancelled();
  ASSERT_EQ(swept.size(), 1u);
  EXPECT_TRUE(q.empty());
}

TEST(BatchQueueTest, FinishedTasksAreSkippedSilently) {
  FakeClock clock;
  BatchQueue q(Options(4, 1000, 100));
  auto t = Task(6);
  ASSERT_OK(q.Enqueue(t, clock.Now()));
  q.TakeBatch(clock.Now());
  ASSERT_TRUE(t->ClaimFinish());  // e.g. its first slice failed
  Batch b = q.TakeBatch(clock.Now());
  EXPECT_TRUE(b.slices.empty());
  EXPECT_TRUE(b.cancelled.empty());
  EXPECT_TRUE(q.empty());
}

TEST(BatchQueueTest, TakeAllEmptiesTheQueue) {
  FakeClock clock;
  BatchQueue q(Options(4, 1000, 100));
  ASSERT_OK(q.Enqueue(Task(2), clock.Now()));
  ASSERT_OK(q.Enqueue(Task(9), clock.Now()));
  EXPECT_EQ(q.TakeAll().size(), 2u);
  EXPECT_EQ(q.queued_tokens(), 0);
}

TEST(BatchQueueTest, UntilTheFirstBatchTheFillTargetIsAFullBatch) {
  BatchQueue q(Options(8, 1000, 100));
  EXPECT_EQ(q.fill_target_tokens(), 8);
}

TEST(BatchQueueTest, AdaptiveFillServesALoneClosedLoopClientAtOnce) {
  FakeClock clock;
  BatchQueue q(Options(8, 1000, 100));
  ASSERT_OK(q.Enqueue(Task(2), clock.Now()));
  clock.Advance(absl::Microseconds(1000));
  ASSERT_EQ(q.TakeBatch(clock.Now()).num_tokens, 2);
  // Its 2 tokens are answered and nothing else is queued: the client sends
  // its next request, which is all the load there is.
  q.NoteBatchComputed(2);
  q.NoteComputeIdle(clock.Now());
  EXPECT_EQ(q.fill_target_tokens(), 2);
  clock.Advance(absl::Microseconds(300));
  ASSERT_OK(q.Enqueue(Task(2), clock.Now()));
  EXPECT_EQ(q.BatchReadyTime(), clock.Now());
}

TEST(BatchQueueTest, AdaptiveFillWaitsForTheAnsweredClientsToComeBack) {
  FakeClock clock;
  BatchQueue q(Options(16, 1000, 100));
  ASSERT_OK(q.Enqueue(Task(4), clock.Now()));
  ASSERT_OK(q.Enqueue(Task(2), clock.Now()));
  clock.Advance(absl::Microseconds(1000));
  ASSERT_EQ(q.TakeBatch(clock.Now()).num_tokens, 6);
  // While that batch computes, 3 tokens from other clients arrive.
  clock.Advance(absl::Microseconds(2000));
  ASSERT_OK(q.Enqueue(Task(3), clock.Now()));
  clock.Advance(absl::Microseconds(3000));
  q.NoteBatchComputed(6);  // the 6 answered tokens will come back
  EXPECT_EQ(q.fill_target_tokens(), 9);
  clock.Advance(absl::Microseconds(200));  // answering
  const absl::Time idle = clock.Now();
  q.NoteComputeIdle(idle);
  // The queued task has waited 3.2 ms, more than the delay, but the delay
  // runs from when the compute became free.
  EXPECT_EQ(q.BatchReadyTime(), idle + absl::Microseconds(1000));
  clock.Advance(absl::Microseconds(100));
  ASSERT_OK(q.Enqueue(Task(4), clock.Now()));
  EXPECT_EQ(q.BatchReadyTime(), idle + absl::Microseconds(1000));
  ASSERT_OK(q.Enqueue(Task(2), clock.Now()));
  EXPECT_LE(q.BatchReadyTime(), clock.Now());  // 9 tokens: all the load is back
  EXPECT_EQ(q.TakeBatch(clock.Now()).num_tokens, 9);
}

TEST(BatchQueueTest, FillTargetStaysWithinOneAndAFullBatch) {
  FakeClock clock;
  BatchQueue q(Options(8, 1000, 100));
  ASSERT_OK(q.Enqueue(Task(20), clock.Now()));
  q.TakeBatch(clock.Now());
  q.NoteBatchComputed(0);  // the task goes on: 12 rows still queued
  EXPECT_EQ(q.fill_target_tokens(), 8);
  q.TakeBatch(clock.Now());
  q.TakeBatch(clock.Now());
  ASSERT_TRUE(q.empty());
  q.NoteBatchComputed(0);
  EXPECT_EQ(q.fill_target_tokens(), 1);
  q.NoteBatchComputed(20);
  EXPECT_EQ(q.fill_target_tokens(), 8);
}

TEST(BatchQueueTest, WithoutAdaptiveFillTheQueueWaitsForAFullBatch) {
  FakeClock clock;
  BatchQueueOptions o = Options(8, 1000, 100);
  o.adaptive_fill = false;
  BatchQueue q(o);
  q.NoteBatchComputed(1);
  q.NoteComputeIdle(clock.Now() + absl::Seconds(1));
  EXPECT_EQ(q.fill_target_tokens(), 8);
  ASSERT_OK(q.Enqueue(Task(1), clock.Now()));
  EXPECT_EQ(q.BatchReadyTime(), clock.Now() + absl::Microseconds(1000));
}

}  // namespace
}  // namespace moe
