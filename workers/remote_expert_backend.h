// RemoteExpertBackend: runs routed experts in moe_expert_worker processes
// (moe.v1.ExpertService), possibly on other hosts, with replicas and
// failover; experts no shard covers run in process.
//
// Per batch it sends each shard with work one RunExperts call (all shards
// concurrently, in-process experts meanwhile) and copies the unweighted
// outputs back; the layer then weights and combines them in its fixed
// order, so results are bitwise those of the in-process server.
//
// Replicas: calls rotate over a shard's healthy replicas. A replica whose
// call fails or times out is marked down and the call is retried once on
// another healthy replica; a prober thread brings replicas back when their
// health check says SERVING and their Info still matches. With no healthy
// replica the batch fails with UNAVAILABLE naming the shard — never a
// partial or wrong result.
//
// Thread-safety: Run() may be called from any thread (the server calls it
// from its one compute thread).
#ifndef MOE_WORKERS_REMOTE_EXPERT_BACKEND_H_
#define MOE_WORKERS_REMOTE_EXPERT_BACKEND_H_

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/cpu_tier.h"
#include "experts/expert_backend.h"
#include "model/layer_spec.h"
#include "proto/expert_service.grpc.pb.h"
#include "serving/prometheus.h"

namespace moe {

struct ShardSpec {
  std::vector<int> experts;            // ascending
  std::vector<std::string> addresses;  // replicas, host:port
};

// Parses "0-3=hostA:9001,hostA2:9001;4-7=hostB:9001": the shards of
// layer `layer`. A shard may name its layers first, "LAYERS:EXPERTS=...",
// e.g. "0-15:0-3=hostA:9001;16-31:0-3=hostB:9001"; one that does not
// applies to every layer. The shards of a layer may not overlap; ids must
// be in [0, num_experts). No shard for `layer` gives an empty list.
absl::StatusOr<std::vector<ShardSpec>> ParseExpertWorkerSpec(const std::string& spec,
                                                             int num_experts, int layer = 0);

// Every layer the spec names in a LAYERS: prefix (ascending), to check
// that they are served.
absl::StatusOr<std::vector<int>> ExpertWorkerSpecLayers(const std::string& spec);

struct RemoteBackendOptions {
  // Longest one RunExperts call may take before the replica counts as failed.
  absl::Duration rpc_timeout = absl::Seconds(10);
  // How often down replicas are probed.
  absl::Duration probe_interval = absl::Milliseconds(200);
  // How long start-up waits for every worker to answer Info.
  absl::Duration startup_timeout = absl::Seconds(60);
  // The front end's CPU tier ("avx2", ...): a worker at another tier sums
  // in another order, so its answers would only be within tolerance of
  // the front end's, not bitwise equal; it is refused unless
  // allow_mixed_isa.
  std::string cpu_tier = CpuTierName(ActiveCpuTier());
  bool allow_mixed_isa = false;
  // The model layer whose experts the workers run (sent with every call;
  // a worker not hosting it refuses). 0 for a preset.
  int layer = 0;
  // The served model's name, for the metrics' model label (empty: none).
  std::string model_name;
};

class RemoteExpertBackend : public ExpertBackend {
 public:
  // Checks every replica (Info: d_model, dtype, CPU tier, hosted experts and the
  // weights checksum of the shard's experts in `weights`) and fails naming
  // the worker that does not match or does not answer. `local` runs the
  // experts no shard covers (null if every expert is covered).
  static absl::StatusOr<std::unique_ptr<RemoteExpertBackend>> Create(
      std::vector<ShardSpec> shards, const LayerWeights& weights, DType compute,
      std::unique_ptr<ExpertBackend> local, const RemoteBackendOptions& options);
  ~RemoteExpertBackend() override;

  absl::Status Run(absl::Span<const ExpertJob> jobs) override;
  std::string Describe() const override;
  // The in-process experts' bytes only.
  size_t WeightBytes() const override;

  // Prometheus text: moe_expert_shard_rpc_seconds{shard}, _errors_total,
  // _retries_total, moe_expert_replica_up{shard,address}; with a model
  // label too when options.model_name is set.
  std::string RenderMetrics() const;
  // The same for several backends (one per served layer), each family once.
  static std::string RenderMetrics(const std::vector<const RemoteExpertBackend*>& backends);

  // Whether replica `replica` of shard `shard` is currently considered up.
  bool ReplicaUp(int shard, int replica) const;

 private:
  struct Replica {
    std::string address;
    std::unique_ptr<moe::v1::ExpertService::Stub> stub;
    std::shared_ptr<grpc::Channel> channel;
    // Shared by every backend of this process that calls this address
    // (one per served layer): a replica one layer finds hung or gone is
    // skipped by all of them at once.
    std::shared_ptr<std::atomic<bool>> up;
  };
  struct Shard {
    std::vector<int> experts;
    std::string name;  // "0-3"
    std::vector<std::unique_ptr<Replica>> replicas;
    std::atomic<uint64_t> next{0};
    std::unique_ptr<Histogram> rpc_seconds;
    std::atomic<uint64_t> errors{0}, retries{0};
  };

  RemoteExpertBackend(RemoteBackendOptions options, DType compute, int64_t d_model)
      : options_(std::move(options)), compute_(compute), d_model_(d_model) {}

  // One RPC of a Run: a shard's jobs, the replica it went to, its answer.
  struct Call;
  // A Run's jobs: per shard index, and those no shard covers.
  struct Grouped {
    std::vector<std::vector<const ExpertJob*>> per_shard;
    std::vector<ExpertJob> local;
  };
  Grouped Group(absl::Span<const ExpertJob> jobs) const;
  // One shard's request (rows as bf16 when compute_ is bf16: exact).
  moe::v1::RunExpertsRequest EncodeRequest(const std::vector<const ExpertJob*>& jobs) const;
  // Picks a live replica for each call not done (attempt > 0: another one
  // than the last); returns the calls to send.
  std::vector<Call*> PickReplicas(std::vector<Call>& calls, int attempt);
  // Sends `c`; `pending` is decremented when it completes.
  void StartCall(Call& c, absl::BlockingCounter* pending);
  // Empty when `c`'s answer is well formed, else the problem, naming
  // `replica`.
  std::string AnswerProblem(const Call& c, const Replica& replica) const;
  // After `c` completed: done, or its replica marked down and the failure
  // kept.
  void FinishCall(Call& c);
  // UNAVAILABLE naming `c`'s shard, its replicas and the last failure.
  absl::Status ShardUnavailable(const Call& c) const;

  // Info check of one replica against the front end's view of the shard.
  absl::Status CheckReplica(const Shard& shard, Replica& replica, uint64_t checksum,
                            absl::Duration timeout) const;
  int PickReplica(Shard& shard, int avoid) const;
  // "model 'moe.layer3': " for log lines and errors, when the model is named.
  std::string LogPrefix() const {
    return options_.model_name.empty() ? "" : "model '" + options_.model_name + "': ";
  }
  void ProbeLoop();

  const RemoteBackendOptions options_;
  const DType compute_;
  const int64_t d_model_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::vector<uint64_t> shard_checksums_;
  std::vector<int> shard_of_;  // expert -> shard index, -1 when local
  std::unique_ptr<ExpertBackend> local_;

  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread prober_;
};

}  // namespace moe

#endif  // MOE_WORKERS_REMOTE_EXPERT_BACKEND_H_
