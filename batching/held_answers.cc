#include "batching/held_answers.h"

#include <utility>

#include "absl/time/clock.h"

namespace moe {

void HeldAnswers::StartHolding() {
  absl::MutexLock lock(&mu_);
  if (released_) return;
  holding_ = true;
  last_activity_ = absl::Now();  // quiet is measured from here
}

void HeldAnswers::HoldOrRun(std::function<void()> answer, absl::Time deadline) {
  {
    absl::MutexLock lock(&mu_);
    if (holding_) {
      const absl::Time now = absl::Now();
      last_activity_ = now;
      if (deadline - now > kMaxHold) {
        held_.push_back(std::move(answer));
        return;
      }
    }
  }
  answer();
}

absl::Time HeldAnswers::last_activity() const {
  absl::MutexLock lock(&mu_);
  return last_activity_;
}

void HeldAnswers::Release() {
  std::vector<std::function<void()>> run;
  {
    absl::MutexLock lock(&mu_);
    holding_ = false;
    released_ = true;
    run.swap(held_);
  }
  for (auto& answer : run) answer();
}

int64_t HeldAnswers::held() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(held_.size());
}

}  // namespace moe
