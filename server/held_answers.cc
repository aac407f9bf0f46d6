#include "server/held_answers.h"

#include <utility>

namespace moe {

void HeldAnswers::StartHolding() {
  absl::MutexLock lock(&mu_);
  if (!released_) holding_ = true;
}

void HeldAnswers::HoldOrRun(std::function<void()> answer) {
  {
    absl::MutexLock lock(&mu_);
    if (holding_) {
      held_.push_back(std::move(answer));
      return;
    }
  }
  answer();
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
