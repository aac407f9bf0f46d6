#include "experts/local_expert_backend.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace moe {

LocalExpertBackend::LocalExpertBackend(std::vector<std::unique_ptr<DenseFfn>> experts)
    : experts_(std::move(experts)) {}

absl::Status LocalExpertBackend::Run(absl::Span<const ExpertJob> jobs) {
  absl::MutexLock lock(&mu_);
  for (const ExpertJob& job : jobs) {
    if (job.expert < 0 || job.expert >= static_cast<int>(experts_.size()) ||
        experts_[static_cast<size_t>(job.expert)] == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("expert ", job.expert, " is not hosted by this backend"));
    }
    absl::Status st = experts_[static_cast<size_t>(job.expert)]->Run(
        job.rows, job.num_rows, job.out, &workspace_);
    if (!st.ok()) {
      return absl::Status(st.code(),
                          absl::StrCat("expert ", job.expert, ": ", st.message()));
    }
  }
  return absl::OkStatus();
}

size_t LocalExpertBackend::WeightBytes() const {
  size_t bytes = 0;
  for (const auto& e : experts_) {
    if (e != nullptr) bytes += e->weight_bytes();
  }
  return bytes;
}

std::string LocalExpertBackend::Describe() const {
  int hosted = 0;
  const DenseFfn* any = nullptr;
  for (const auto& e : experts_) {
    if (e != nullptr) {
      ++hosted;
      any = e.get();
    }
  }
  return absl::StrCat("local, ", hosted, " experts",
                      any != nullptr ? absl::StrCat(", ", DTypeName(any->compute()),
                                                    ", kernel ", any->impl())
                                     : std::string());
}

}  // namespace moe
