// ExpertBackend: "run these experts on these gathered rows".
//
// The layer gathers each routed expert's token rows into a contiguous block
// and hands all blocks of a batch to a backend in one call. Backends differ
// in where the experts run (in process on oneDNN, or in worker processes);
// the router and the layer do not care.
#ifndef MOE_EXPERTS_EXPERT_BACKEND_H_
#define MOE_EXPERTS_EXPERT_BACKEND_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace moe {

struct ExpertJob {
  int expert = 0;               // routed expert id, 0..E-1
  const float* rows = nullptr;  // [num_rows, d_model], f32
  int64_t num_rows = 0;
  float* out = nullptr;  // [num_rows, d_model]: FFN_e(rows), unweighted
};

class ExpertBackend {
 public:
  virtual ~ExpertBackend() = default;

  // Runs every job and returns when all are done. On error no output is
  // to be trusted; the status names the expert that failed. Thread-safe.
  virtual absl::Status Run(absl::Span<const ExpertJob> jobs) = 0;

  // One line for logs: where the experts run and with which kernels.
  virtual std::string Describe() const = 0;

  // Bytes of packed expert weights (and their scales) this process holds
  // for the backend: 0 for experts that run elsewhere.
  virtual size_t WeightBytes() const = 0;
};

}  // namespace moe

#endif  // MOE_EXPERTS_EXPERT_BACKEND_H_
