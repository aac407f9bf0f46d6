// One thread for a process's OpenMP work.
//
// libgomp gives every thread that opens a parallel region its own team of
// worker threads, kept for the thread's lifetime, and once it manages more
// threads than there are CPUs its workers sleep between regions, so each
// region starts with a futex wake-up. A serving process therefore opens
// parallel regions from one long-lived thread only:
//   - start-up work (weight packing, kernel checks) runs on a transient
//     thread (RunOnTransientThread): its team goes away when it ends;
//   - requests that arrive on many gRPC threads run their compute on one
//     ComputeThread (or on the batcher's compute thread).
// How long that one team's workers spin is set at start-up
// (serving/process_setup.h, UseServingOpenMpSpinCount). The cost per
// region is measured in bench/README.md.
#ifndef MOE_COMMON_COMPUTE_THREAD_H_
#define MOE_COMMON_COMPUTE_THREAD_H_

#include <exception>
#include <optional>
#include <thread>
#include <type_traits>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

namespace moe {

// Runs `fn` on a new thread, waits for it to end and returns its result
// (a non-void, movable type such as absl::Status or StatusOr). An exception
// `fn` throws is rethrown here, in the caller's thread.
template <typename Fn>
std::invoke_result_t<Fn&> RunOnTransientThread(Fn&& fn) {
  using Result = std::invoke_result_t<Fn&>;
  static_assert(!std::is_void_v<Result>, "return a Status");
  std::optional<Result> result;
  std::exception_ptr error;
  std::thread thread([&] {
    try {
      result.emplace(fn());
    } catch (...) {
      error = std::current_exception();
    }
  });
  thread.join();
  if (error) std::rethrow_exception(error);
  return *std::move(result);
}

// A long-lived thread that runs the functions callers hand it, one at a
// time. Thread-safe: Run may be called from any number of threads; each
// call blocks until its function has run. Callers must not call Run from
// inside a function it runs (that would wait for itself), nor start a Run
// once the destructor has begun. An exception a function throws becomes an
// INTERNAL status for its caller (the thread goes on).
class ComputeThread {
 public:
  ComputeThread();
  ~ComputeThread();  // waits for a Run in progress to return, then joins
  ComputeThread(const ComputeThread&) = delete;
  ComputeThread& operator=(const ComputeThread&) = delete;

  // Runs `fn` on the compute thread and returns its status.
  absl::Status Run(absl::FunctionRef<absl::Status()> fn);

  std::thread::id id() const { return thread_.get_id(); }

 private:
  void Loop();

  absl::Mutex run_mu_;  // held by the caller whose function is next or running
  absl::Mutex mu_;
  const absl::FunctionRef<absl::Status()>* pending_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::optional<absl::Status> result_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace moe

#endif  // MOE_COMMON_COMPUTE_THREAD_H_
