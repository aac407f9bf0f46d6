#include "workers/hosted_layer.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/cpu_tier.h"
#include "experts/packed_matmul.h"
#include "model/moe_layer.h"

namespace moe {

absl::StatusOr<HostedLayer> MakeHostedLayer(const LayerWeights& weights, DType compute,
                                            const std::vector<int>& experts, int layer) {
  MatmulCacheRegistry registry;
  auto backend = CreateLocalBackend(weights, compute, &registry, experts);
  if (!backend.ok()) {
    return absl::InternalError(
        absl::StrCat("cannot pack the experts: ", backend.status().message()));
  }
  HostedLayer h;
  h.layer = layer;
  moe::v1::InfoResponse& info = h.info;
  for (int e : experts) info.add_experts(e);
  info.set_d_model(weights.spec.d_model);
  info.set_d_ff(weights.spec.expert.d_ff);
  info.set_dtype(DTypeName(compute));
  info.set_weights_checksum(ExpertWeightsChecksum(weights, experts));
  info.set_family(weights.spec.family);
  info.set_kernel((*backend)->Describe());
  info.set_cpu_tier(CpuTierName(ActiveCpuTier()));
  h.backend = *std::move(backend);
  return h;
}

}  // namespace moe
