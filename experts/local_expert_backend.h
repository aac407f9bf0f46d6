// LocalExpertBackend: the routed experts, in process, on oneDNN.
//
// Owns one DenseFfn per hosted expert (all of them for the front end; a
// shard for an expert worker). Run() calls are serialised on an internal
// mutex: each expert call already uses every core through oneDNN's OpenMP
// threads, so running two batches at once would only oversubscribe them.
//
// Threading plan of one Run(): one job at a time, each on every OpenMP
// thread; except for int8 and int4 experts when every job has at most
// kLaneRows rows, where the jobs run side by side, one per thread (each
// expert's matmuls then on one thread: longer weight streams and no
// barrier per matmul). Both plans give the same bits: every kernel's
// summation order is independent of its thread split. When a job fails,
// side-by-side jobs still run to their end; the first failure (in job
// order) is returned and, as ExpertBackend says, no output is to be trusted.
#ifndef MOE_EXPERTS_LOCAL_EXPERT_BACKEND_H_
#define MOE_EXPERTS_LOCAL_EXPERT_BACKEND_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "experts/dense_ffn.h"
#include "experts/expert_backend.h"

namespace moe {

class LocalExpertBackend : public ExpertBackend {
 public:
  // experts[e] may be null for experts this process does not host; running
  // a job for one is FAILED_PRECONDITION.
  explicit LocalExpertBackend(std::vector<std::unique_ptr<DenseFfn>> experts);

  // Rows per job up to which int8 and int4 jobs run side by side.
  static constexpr int64_t kLaneRows = 4;

  absl::Status Run(absl::Span<const ExpertJob> jobs) override;
  std::string Describe() const override;
  size_t WeightBytes() const override;

 private:
  // Whether `jobs` run side by side (the class comment).
  bool RunsSideBySide(absl::Span<const ExpertJob> jobs) const;
  absl::Status RunOne(const ExpertJob& job, FfnWorkspace* ws) const;

  const std::vector<std::unique_ptr<DenseFfn>> experts_;
  absl::Mutex mu_;
  FfnWorkspace workspace_ ABSL_GUARDED_BY(mu_);
  // One per OpenMP thread beyond the first, for side-by-side jobs.
  std::vector<std::unique_ptr<FfnWorkspace>> lane_workspaces_ ABSL_GUARDED_BY(mu_);
};

}  // namespace moe

#endif  // MOE_EXPERTS_LOCAL_EXPERT_BACKEND_H_
