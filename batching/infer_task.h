// InferTask: one request's tokens on their way through the batcher.
//
// Created by the front end from a validated request and shared with the
// batcher (std::shared_ptr: the RPC may mark it cancelled while the batcher
// holds it). The batcher calls `done` exactly once — with OK after every
// row has been computed, or with DEADLINE_EXCEEDED, CANCELLED or
// UNAVAILABLE — and never after that.
#ifndef MOE_BATCHING_INFER_TASK_H_
#define MOE_BATCHING_INFER_TASK_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace moe {

struct InferTask {
  // Inputs, set before Enqueue() and then read-only.
  std::vector<float> tokens;  // [num_tokens, d_model]
  int64_t num_tokens = 0;
  absl::Time deadline = absl::InfiniteFuture();
  int queue = 0;              // the DynamicBatcher queue (served model) it goes to
  bool want_routing = false;  // fill expert_ids / expert_weights
  // Caller-supplied routing, [num_tokens, k] each; empty: the router's.
  std::vector<int32_t> given_ids;
  std::vector<float> given_weights;
  bool skip_shared = false;  // leave the shared experts out

  // Outputs, written by the batcher before `done` is called with OK.
  std::vector<float> output;          // [num_tokens, d_model]
  std::vector<int32_t> expert_ids;    // [num_tokens, k] if want_routing
  std::vector<float> expert_weights;  // [num_tokens, k] if want_routing

  // Timing, filled by the batcher.
  absl::Time enqueue_time;
  absl::Duration queue_time;    // enqueue -> first row scheduled
  absl::Duration compute_time;  // summed over the batches that held its rows

  // Set by the RPC layer from any thread; the batcher then drops the task
  // (done(CANCELLED)) instead of computing it.
  std::atomic<bool> cancelled{false};

  // Called exactly once, from a batcher thread.
  std::function<void(const absl::Status&, InferTask&)> done;

  // Batcher bookkeeping. next_row and scheduled_once: under the batcher's
  // mutex. rows_done: reset at Enqueue (under the mutex, before the compute
  // thread can see the task), then read and written by the compute thread
  // only.
  int64_t next_row = 0;   // first row not yet scheduled
  int64_t rows_done = 0;  // rows computed
  bool scheduled_once = false;
  std::atomic<bool> finished{false};

  // Returns true for the one caller that gets to finish the task.
  bool ClaimFinish() { return !finished.exchange(true); }
};

}  // namespace moe

#endif  // MOE_BATCHING_INFER_TASK_H_
