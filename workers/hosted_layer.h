// HostedLayer: what an expert worker serves for one layer — the backend
// that runs its hosted experts and the moe.v1 InfoResponse the front end
// checks before it sends work (experts, sizes, dtype, weights checksum,
// kernel, CPU tier).
#ifndef MOE_WORKERS_HOSTED_LAYER_H_
#define MOE_WORKERS_HOSTED_LAYER_H_

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "common/dtype.h"
#include "experts/expert_backend.h"
#include "model/layer_spec.h"
#include "proto/expert_service.pb.h"

namespace moe {

struct HostedLayer {
  int layer = 0;
  std::unique_ptr<ExpertBackend> backend;
  moe::v1::InfoResponse info;
};

// Packs `experts` (ascending ids of `weights`' routed experts) at
// `compute` for checkpoint layer `layer` and fills the InfoResponse. Runs
// OpenMP work: call it off main()'s thread (common/compute_thread.h).
// INTERNAL naming the problem when the experts cannot be packed.
absl::StatusOr<HostedLayer> MakeHostedLayer(const LayerWeights& weights, DType compute,
                                            const std::vector<int>& experts, int layer);

}  // namespace moe

#endif  // MOE_WORKERS_HOSTED_LAYER_H_
