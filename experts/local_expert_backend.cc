#include "experts/local_expert_backend.h"

#include <algorithm>
#include <memory>
#include <new>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "experts/openmp_threads.h"

namespace moe {

LocalExpertBackend::LocalExpertBackend(std::vector<std::unique_ptr<DenseFfn>> experts)
    : experts_(std::move(experts)) {}

absl::Status LocalExpertBackend::RunOne(const ExpertJob& job, FfnWorkspace* ws) const {
  absl::Status st =
      experts_[static_cast<size_t>(job.expert)]->Run(job.rows, job.num_rows, job.out, ws);
  if (!st.ok()) {
    return absl::Status(st.code(), absl::StrCat("expert ", job.expert, ": ", st.message()));
  }
  return absl::OkStatus();
}

bool LocalExpertBackend::RunsSideBySide(absl::Span<const ExpertJob> jobs) const {
  if (jobs.size() < 2 || OpenMpMaxThreads() < 2) return false;
  for (const ExpertJob& job : jobs) {
    const DType c = experts_[static_cast<size_t>(job.expert)]->compute();
    if (job.num_rows > kLaneRows || (c != DType::kI8 && c != DType::kI4)) return false;
  }
  return true;
}

absl::Status LocalExpertBackend::Run(absl::Span<const ExpertJob> jobs) {
  absl::MutexLock lock(&mu_);
  for (const ExpertJob& job : jobs) {
    if (job.expert < 0 || job.expert >= static_cast<int>(experts_.size()) ||
        experts_[static_cast<size_t>(job.expert)] == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("expert ", job.expert, " is not hosted by this backend"));
    }
  }
  if (!RunsSideBySide(jobs)) {
    for (const ExpertJob& job : jobs) MOE_RETURN_IF_ERROR(RunOne(job, &workspace_));
    return absl::OkStatus();
  }
  const int lanes = std::min(OpenMpMaxThreads(), static_cast<int>(jobs.size()));
  while (static_cast<int>(lane_workspaces_.size()) < lanes - 1) {
    lane_workspaces_.push_back(std::make_unique<FfnWorkspace>());
  }
  std::vector<absl::Status> status(jobs.size());
  const int64_t count = static_cast<int64_t>(jobs.size());
#pragma omp parallel for schedule(dynamic, 1) num_threads(lanes)
  for (int64_t j = 0; j < count; ++j) {
    const int lane = OpenMpThreadNum();
    FfnWorkspace* ws =
        lane == 0 ? &workspace_ : lane_workspaces_[static_cast<size_t>(lane - 1)].get();
    // No exception may leave an OpenMP region (it would terminate).
    try {
      status[static_cast<size_t>(j)] = RunOne(jobs[static_cast<size_t>(j)], ws);
    } catch (const std::bad_alloc&) {
      status[static_cast<size_t>(j)] = absl::ResourceExhaustedError(absl::StrCat(
          "expert ", jobs[static_cast<size_t>(j)].expert, ": out of memory for its workspace"));
    }
  }
  for (const absl::Status& st : status) MOE_RETURN_IF_ERROR(st);
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
                      any != nullptr
                          ? absl::StrCat(", ", DTypeName(any->compute()), ", kernel ", any->impl())
                          : std::string());
}

}  // namespace moe
