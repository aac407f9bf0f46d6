// HeldAnswers: answers that wait for a signal before they are sent.
//
// The drain uses it for its last step. gRPC 1.51 cancels (status
// CANCELLED) every call that reaches the server after Server::Shutdown has
// begun but before the client has processed the GOAWAY (grpc/grpc#41785).
// A client that resends the moment it is rejected always has such a call
// in flight. So before the listener closes, rejections are held instead of
// sent: each closed-loop client ends up waiting on one held answer and
// sends nothing more. Then Shutdown sends the GOAWAY, and only after it do
// the held answers (UNAVAILABLE) go out; a client's next call sees the
// GOAWAY and fails over with UNAVAILABLE.
//
// Thread-safety: every method may be called from any thread. Callbacks run
// without the lock held, on the thread that calls Release() or HoldOrRun().
#ifndef MOE_BATCHING_HELD_ANSWERS_H_
#define MOE_BATCHING_HELD_ANSWERS_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace moe {

class HeldAnswers {
 public:
  // The longest an answer may be held: MoeServer::Shutdown releases within
  // this of StartHolding(). A call whose deadline is nearer is answered at
  // once rather than held into DEADLINE_EXCEEDED.
  static constexpr absl::Duration kMaxHold = absl::Milliseconds(1500);

  // From now on HoldOrRun() keeps its callback until Release().
  void StartHolding();
  // Runs `answer` now, or keeps it if holding has started, Release() has
  // not been called yet, and `deadline` (the call's) is more than kMaxHold
  // away.
  void HoldOrRun(std::function<void()> answer, absl::Time deadline = absl::InfiniteFuture());
  // When holding started or HoldOrRun() was last called while holding,
  // whichever is later (InfinitePast before holding): the drain waits for
  // this to go quiet.
  absl::Time last_activity() const;
  // Runs every kept callback (in arrival order) and stops holding for good.
  void Release();
  // Callbacks kept so far and not yet released.
  int64_t held() const;

 private:
  mutable absl::Mutex mu_;
  bool holding_ ABSL_GUARDED_BY(mu_) = false;
  bool released_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time last_activity_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::vector<std::function<void()>> held_ ABSL_GUARDED_BY(mu_);
};

}  // namespace moe

#endif  // MOE_BATCHING_HELD_ANSWERS_H_
