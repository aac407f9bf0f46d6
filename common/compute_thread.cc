#include "common/compute_thread.h"

#include <exception>

#include "absl/strings/str_cat.h"
#include "common/tsan_annotations.h"

namespace moe {

ComputeThread::ComputeThread() : thread_([this] { Loop(); }) {}

ComputeThread::~ComputeThread() {
  {
    absl::MutexLock turn(&run_mu_);  // a Run in progress returns first
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
}

absl::Status ComputeThread::Run(absl::FunctionRef<absl::Status()> fn) {
  absl::MutexLock turn(&run_mu_);
  absl::MutexLock lock(&mu_);
  pending_ = &fn;
  auto has_result = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    MOE_TSAN_CONDITION_HOLDS(&mu_);
    return result_.has_value();
  };
  mu_.Await(absl::Condition(&has_result));
  absl::Status st = *std::move(result_);
  result_.reset();
  return st;
}

void ComputeThread::Loop() {
  absl::MutexLock lock(&mu_);
  auto has_work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    MOE_TSAN_CONDITION_HOLDS(&mu_);
    return pending_ != nullptr || stop_;
  };
  while (true) {
    mu_.Await(absl::Condition(&has_work));
    if (pending_ == nullptr) return;  // stopping with nothing left to run
    const absl::FunctionRef<absl::Status()> fn = *pending_;
    pending_ = nullptr;
    mu_.Unlock();
    absl::Status st;
    try {
      st = fn();
    } catch (const std::exception& e) {
      st = absl::InternalError(absl::StrCat("uncaught exception: ", e.what()));
    } catch (...) {
      st = absl::InternalError("uncaught exception");
    }
    mu_.Lock();
    result_ = std::move(st);
  }
}

}  // namespace moe
