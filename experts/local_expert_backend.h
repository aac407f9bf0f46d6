// LocalExpertBackend: the routed experts, in process, on oneDNN.
//
// Owns one DenseFfn per hosted expert (all of them for the front end; a
// shard for an expert worker). Run() calls are serialised on an internal
// mutex: each expert call already uses every core through oneDNN's OpenMP
// threads, so running two batches at once would only oversubscribe them.
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

  absl::Status Run(absl::Span<const ExpertJob> jobs) override;
  std::string Describe() const override;
  size_t WeightBytes() const override;

 private:
  const std::vector<std::unique_ptr<DenseFfn>> experts_;
  absl::Mutex mu_;
  FfnWorkspace workspace_ ABSL_GUARDED_BY(mu_);
};

}  // namespace moe

#endif  // MOE_EXPERTS_LOCAL_EXPERT_BACKEND_H_
