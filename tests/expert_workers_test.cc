// Expert workers: real moe_expert_worker processes on loopback behind a
// RemoteExpertBackend. Results are bitwise those of the in-process layer;
// a killed replica is failed over without wrong answers and comes back;
// mismatched workers are refused at start-up.
#include <atomic>
#include <cstring>
#include <filesystem>
#include <functional>
#include <thread>

#include "batching/serving_core.h"
#include "client/kserve_client.h"
#include "experts/dnnl_engine.h"
#include "experts/packed_matmul.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/checkpoint_loader.h"
#include "model/checkpoint_writer.h"
#include "model/expert_ranges.h"
#include "model/moe_layer.h"
#include "model/presets.h"
#include "proto/expert_service.grpc.pb.h"
#include "tests/naive_reference.h"
#include "tests/process_util.h"
#include "tests/server_test_util.h"
#include "tests/status_matchers.h"
#include "workers/remote_expert_backend.h"

namespace moe {
namespace {

using ::moe::testing::ChildProcess;
using ::moe::testing::RandomTokens;
using ::moe::testing::StatusIs;
using ::moe::testing::TempDir;
using ::testing::AllOf;
using ::testing::HasSubstr;

// A worker process and its port.
struct Worker {
  ChildProcess process;
  int port = 0;
  std::string address() const { return "127.0.0.1:" + std::to_string(port); }
};

Worker StartWorker(const TempDir& dir, const std::string& name, const std::string& preset,
                   const std::string& experts, const std::string& dtype, int port = 0,
                   uint64_t seed = kDefaultPresetSeed, const std::string& max_isa = "") {
  const std::string log = dir.File(name + ".log");
  Worker w;
  std::vector<std::string> args = {"--preset=" + preset,
                                   "--experts=" + experts,
                                   "--dtype=" + dtype,
                                   "--host=127.0.0.1",
                                   "--grpc_port=" + std::to_string(port),
                                   "--metrics_port=0",
                                   "--seed=" + std::to_string(seed)};
  if (!max_isa.empty()) args.push_back("--max_isa=" + max_isa);
  w.process = ::moe::testing::Spawn(MOE_WORKER_BINARY, args, log);
  w.port = ::moe::testing::WaitForReadyPort(log, absl::Seconds(120));
  EXPECT_GT(w.port, 0) << ::moe::testing::ReadFile(log);
  return w;
}

// A worker over `model_dir` hosting `experts` of `layers`.
Worker StartLayerWorker(const TempDir& dir, const std::string& name, const std::string& model_dir,
                        const std::string& layers, const std::string& experts) {
  const std::string log = dir.File(name + ".log");
  Worker w;
  w.process = ::moe::testing::Spawn(
      MOE_WORKER_BINARY,
      {"--model_dir=" + model_dir, "--layers=" + layers, "--experts=" + experts, "--dtype=f32",
       "--host=127.0.0.1", "--grpc_port=0", "--metrics_port=-1"},
      log);
  w.port = ::moe::testing::WaitForReadyPort(log, absl::Seconds(120));
  EXPECT_GT(w.port, 0) << ::moe::testing::ReadFile(log);
  return w;
}

// Clients that call the server until stopped, each call's request and
// the layer that must answer it given by `call(client, i)`, and count the
// answers: ok (and wrong, when not bitwise the layer's), unavailable (or
// deadline exceeded), other.
class CheckedLoad {
 public:
  using Call = std::function<std::pair<inference::ModelInferRequest, const MoeLayer*>(int, int)>;
  CheckedLoad(const std::string& address, int clients, Call call) {
    for (int c = 0; c < clients; ++c) {
      threads_.emplace_back([this, address, call, c] {
        auto stub = ::moe::testing::Stub(address);
        for (int i = 0; !stop_.load(); ++i) {
          auto [request, layer] = call(c, i);
          grpc::ClientContext ctx;
          ::moe::testing::SetDeadline(&ctx, absl::Seconds(30));
          inference::ModelInferResponse resp;
          grpc::Status st = stub->ModelInfer(&ctx, request, &resp);
          if (st.ok()) {
            ++ok;
            if (::moe::testing::OutputFloats(resp, "output") !=
                ::moe::testing::Reference(const_cast<MoeLayer*>(layer), Tokens(request))) {
              ++wrong;
            }
          } else if (st.error_code() == grpc::StatusCode::UNAVAILABLE ||
                     st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
            ++unavailable;
          } else {
            ++other;
          }
        }
      });
    }
  }
  ~CheckedLoad() { Stop(); }
  // Returns once `n` more calls have been answered OK.
  void WaitForMoreOk(int64_t n) {
    const int64_t target = ok.load() + n;
    while (ok.load() < target) absl::SleepFor(absl::Milliseconds(10));
  }
  void Stop() {
    stop_.store(true);
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }

  std::atomic<int64_t> ok{0}, wrong{0}, unavailable{0}, other{0};

 private:
  // The request's tokens (raw FP32 input).
  static std::vector<float> Tokens(const inference::ModelInferRequest& r) {
    std::vector<float> x(r.raw_input_contents(0).size() / 4);
    std::memcpy(x.data(), r.raw_input_contents(0).data(), x.size() * 4);
    return x;
  }
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
};

// What `worker` says of its layer `layer` (moe.v1.ExpertService/Info).
absl::StatusOr<moe::v1::InfoResponse> WorkerInfo(const Worker& worker, int layer = 0) {
  auto stub = moe::v1::ExpertService::NewStub(
      grpc::CreateChannel(worker.address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ::moe::testing::SetDeadline(&ctx, absl::Seconds(30));
  moe::v1::InfoRequest req;
  req.set_layer(layer);
  moe::v1::InfoResponse info;
  grpc::Status st = stub->Info(&ctx, req, &info);
  if (!st.ok()) return absl::UnavailableError(st.error_message());
  return info;
}

std::vector<int> Uncovered(int num_experts, const std::vector<ShardSpec>& shards) {
  std::vector<bool> covered(static_cast<size_t>(num_experts), false);
  for (const auto& s : shards) {
    for (int e : s.experts) covered[static_cast<size_t>(e)] = true;
  }
  std::vector<int> out;
  for (int e = 0; e < num_experts; ++e) {
    if (!covered[static_cast<size_t>(e)]) out.push_back(e);
  }
  return out;
}

absl::StatusOr<std::unique_ptr<RemoteExpertBackend>> MakeRemote(
    const std::vector<ShardSpec>& shards, const LayerWeights& w, DType compute,
    RemoteBackendOptions options = RemoteBackendOptions()) {
  std::unique_ptr<ExpertBackend> local;
  const auto ids = Uncovered(w.spec.num_experts(), shards);
  if (!ids.empty()) {
    MatmulCacheRegistry registry;
    auto made = CreateLocalBackend(w, compute, &registry, ids);
    if (!made.ok()) return made.status();
    local = *std::move(made);
  }
  options.startup_timeout = absl::Seconds(30);
  return RemoteExpertBackend::Create(shards, w, compute, std::move(local), options);
}

TEST(ExpertWorkerSpecTest, ParsesAndRejects) {
  ASSERT_OK_AND_ASSIGN(auto shards,
                       ParseExpertWorkerSpec("0-3=hostA:9001,hostA2:9001;4-6=hostB:9001", 8));
  ASSERT_EQ(shards.size(), 2u);
  EXPECT_EQ(shards[0].experts, (std::vector<int>{0, 1, 2, 3}));
  EXPECT_EQ(shards[0].addresses, (std::vector<std::string>{"hostA:9001", "hostA2:9001"}));
  EXPECT_EQ(shards[1].experts, (std::vector<int>{4, 5, 6}));
  EXPECT_THAT(ParseExpertWorkerSpec("0-3=a:1;3-5=b:2", 8),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("expert 3 of layer 0 is in two shards")));
  EXPECT_THAT(ParseExpertWorkerSpec("0-9=a:1", 8),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("outside 0..7")));
  EXPECT_THAT(ParseExpertWorkerSpec("0-3", 8),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("EXPERTS=HOST:PORT")));
  EXPECT_THAT(ParseExpertWorkerSpec("0-3=hostonly", 8),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("host:port")));
  EXPECT_EQ(FormatExpertList({0, 1, 2, 5, 7, 8}), "0-2,5,7-8");
}

// Shards by layer: "LAYERS:EXPERTS=..." applies to those layers only, a
// shard without layers to every layer; overlaps are per layer.
TEST(ExpertWorkerSpecTest, ShardsByLayerRange) {
  const std::string spec = "0-15:0-3=hostA:9001;16-31:0-3=hostB:9001;4-7=hostC:9001,hostD:9001";
  ASSERT_OK_AND_ASSIGN(auto l3, ParseExpertWorkerSpec(spec, 8, 3));
  ASSERT_EQ(l3.size(), 2u);
  EXPECT_EQ(l3[0].addresses, (std::vector<std::string>{"hostA:9001"}));
  EXPECT_EQ(l3[1].experts, (std::vector<int>{4, 5, 6, 7}));
  ASSERT_OK_AND_ASSIGN(auto l20, ParseExpertWorkerSpec(spec, 8, 20));
  ASSERT_EQ(l20.size(), 2u);
  EXPECT_EQ(l20[0].addresses, (std::vector<std::string>{"hostB:9001"}));
  ASSERT_OK_AND_ASSIGN(auto l40, ParseExpertWorkerSpec(spec, 8, 40));
  ASSERT_EQ(l40.size(), 1u);  // only the shard for every layer
  ASSERT_OK_AND_ASSIGN(auto named, ExpertWorkerSpecLayers(spec));
  EXPECT_EQ(named.size(), 32u);
  EXPECT_EQ(named.back(), 31);
  EXPECT_THAT(ParseExpertWorkerSpec("0-3:0-3=a:1;2:3=b:2", 8, 2),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("expert 3 of layer 2 is in two shards")));
  EXPECT_OK(ParseExpertWorkerSpec("0-3:0-3=a:1;2:3=b:2", 8, 5));
  EXPECT_THAT(ParseExpertWorkerSpec("x:0-3=a:1", 8, 0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("layer list 'x'")));
}

struct BitwiseCase {
  std::string preset;
  std::string dtype;
};

class WorkersBitwiseTest : public ::testing::TestWithParam<BitwiseCase> {};

TEST_P(WorkersBitwiseTest, TwoWorkersMatchTheInProcessLayer) {
  const BitwiseCase& c = GetParam();
  const DType compute = *ParseComputeDType(c.dtype);
  ASSERT_OK_AND_ASSIGN(LayerWeights w, MakePreset(c.preset));
  const int e = w.spec.num_experts();
  // Two shards and one expert left in process: every path at once.
  const std::string a = "0-" + std::to_string(e / 2 - 1);
  const std::string b = std::to_string(e / 2) + "-" + std::to_string(e - 2);
  TempDir dir;
  Worker wa = StartWorker(dir, "a", c.preset, a, c.dtype);
  Worker wb = StartWorker(dir, "b", c.preset, b, c.dtype);
  ASSERT_OK_AND_ASSIGN(
      auto shards, ParseExpertWorkerSpec(a + "=" + wa.address() + ";" + b + "=" + wb.address(), e));
  ASSERT_OK_AND_ASSIGN(auto remote, MakeRemote(shards, w, compute));
  MoeLayerOptions options;
  options.compute = compute;
  ASSERT_OK_AND_ASSIGN(auto distributed, MoeLayer::Create(w, options, std::move(remote)));
  ASSERT_OK_AND_ASSIGN(auto local, MoeLayer::Create(w, options));
  for (int64_t t : {1, 37, 300}) {
    auto x = RandomTokens(t * w.spec.d_model, static_cast<uint32_t>(t));
    std::vector<float> y1(x.size()), y2(x.size());
    ForwardOutputs o1, o2;
    o1.output = y1.data();
    o2.output = y2.data();
    ASSERT_OK(distributed->Forward(x.data(), t, o1));
    ASSERT_OK(local->Forward(x.data(), t, o2));
    EXPECT_EQ(0, std::memcmp(y1.data(), y2.data(), y1.size() * 4)) << c.preset << " T=" << t;
  }
}

INSTANTIATE_TEST_SUITE_P(Presets, WorkersBitwiseTest,
                         ::testing::Values(BitwiseCase{"demo", "f32"}, BitwiseCase{"demo", "bf16"},
                                           BitwiseCase{"demo", "int8"},
                                           BitwiseCase{"qwen2-moe-a2.7b", "f32"},
                                           BitwiseCase{"qwen2-moe-a2.7b", "bf16"},
                                           BitwiseCase{"qwen2-moe-a2.7b", "int8"},
                                           BitwiseCase{"qwen2-moe-a2.7b", "int4"}),
                         [](const ::testing::TestParamInfo<BitwiseCase>& info) {
                           std::string n = info.param.preset + "_" + info.param.dtype;
                           std::replace_if(
                               n.begin(), n.end(), [](char ch) { return !std::isalnum(ch); }, '_');
                           return n;
                         });

TEST(WorkersFailoverTest, KilledReplicaIsFailedOverAndComesBack) {
  ASSERT_OK_AND_ASSIGN(LayerWeights w, MakePreset("demo"));
  auto reference = ::moe::testing::MakeLayer(w, DType::kF32);
  TempDir dir;
  Worker a1 = StartWorker(dir, "a1", "demo", "0-3", "f32");
  Worker a2 = StartWorker(dir, "a2", "demo", "0-3", "f32");
  Worker b = StartWorker(dir, "b", "demo", "4-7", "f32");
  const int a1_port = a1.port;
  ASSERT_OK_AND_ASSIGN(
      auto shards,
      ParseExpertWorkerSpec("0-3=" + a1.address() + "," + a2.address() + ";4-7=" + b.address(), 8));
  RemoteBackendOptions ro;
  ro.rpc_timeout = absl::Seconds(5);
  ro.probe_interval = absl::Milliseconds(100);
  ASSERT_OK_AND_ASSIGN(auto remote, MakeRemote(shards, w, DType::kF32, ro));
  RemoteExpertBackend* backend = remote.get();
  MoeLayerOptions lo;
  lo.compute = DType::kF32;
  ASSERT_OK_AND_ASSIGN(auto layer, MoeLayer::Create(w, lo, std::move(remote)));
  auto server_or = MoeServer::Start(std::move(layer), ::moe::testing::LocalOptions());
  ASSERT_OK(server_or);
  std::unique_ptr<MoeServer> server = *std::move(server_or);

  constexpr int kClients = 6;
  CheckedLoad load(server->local_grpc_address(), kClients, [&](int c, int i) {
    auto tokens = RandomTokens((1 + (c + i) % 4) * 1024, static_cast<uint32_t>(c * 7777 + i));
    return std::make_pair(::moe::testing::InferRequest(tokens, 1024),
                          static_cast<const MoeLayer*>(reference.get()));
  });
  load.WaitForMoreOk(30);
  a1.process.Kill();  // SIGKILL during sustained load
  load.WaitForMoreOk(60);
  EXPECT_FALSE(backend->ReplicaUp(0, 0));
  EXPECT_TRUE(backend->ReplicaUp(0, 1));

  // Restart the killed replica on its port: the prober brings it back and
  // it takes traffic again.
  Worker restarted = StartWorker(dir, "a1-restarted", "demo", "0-3", "f32", a1_port);
  ASSERT_EQ(restarted.port, a1_port);
  for (int i = 0; i < 300 && !backend->ReplicaUp(0, 0); ++i) absl::SleepFor(absl::Milliseconds(20));
  EXPECT_TRUE(backend->ReplicaUp(0, 0));
  load.WaitForMoreOk(60);
  load.Stop();

  ASSERT_OK_AND_ASSIGN(moe::v1::InfoResponse info, WorkerInfo(restarted));
  EXPECT_GT(info.runs_served(), 0u);

  EXPECT_EQ(load.wrong.load(), 0);
  EXPECT_EQ(load.other.load(), 0);
  // With a live replica a failed call is retried on it: the only requests
  // that may fail are those of the batch in flight at the kill, at most
  // one per client.
  EXPECT_LE(load.unavailable.load(), kClients);
  std::printf("failover: %lld ok, %lld unavailable (bound %d), %lld wrong\n",
              static_cast<long long>(load.ok.load()),
              static_cast<long long>(load.unavailable.load()), kClients,
              static_cast<long long>(load.wrong.load()));
  server->Shutdown(absl::Seconds(10));
}

TEST(WorkersFailoverTest, NoLiveReplicaFailsWithUnavailableNamingTheShard) {
  ASSERT_OK_AND_ASSIGN(LayerWeights w, MakePreset("demo"));
  TempDir dir;
  Worker a = StartWorker(dir, "a", "demo", "0-7", "f32");
  ASSERT_OK_AND_ASSIGN(auto shards, ParseExpertWorkerSpec("0-7=" + a.address(), 8));
  ASSERT_OK_AND_ASSIGN(auto remote, MakeRemote(shards, w, DType::kF32));
  MoeLayerOptions lo;
  lo.compute = DType::kF32;
  ASSERT_OK_AND_ASSIGN(auto layer, MoeLayer::Create(w, lo, std::move(remote)));
  a.process.Kill();
  auto x = RandomTokens(4 * 1024, 3);
  std::vector<float> y(x.size());
  ForwardOutputs out;
  out.output = y.data();
  EXPECT_THAT(layer->Forward(x.data(), 4, out),
              StatusIs(absl::StatusCode::kUnavailable,
                       AllOf(HasSubstr("expert shard 0-7"), HasSubstr(a.address()))));
}

TEST(WorkersStartupTest, MismatchedWorkersAreRefused) {
  ASSERT_OK_AND_ASSIGN(LayerWeights w, MakePreset("demo"));
  TempDir dir;
  struct Case {
    std::string preset, dtype;
    uint64_t seed;
    std::string message;
  };
  for (const Case& c : {Case{"demo", "f32", 7, "weights checksum"},
                        Case{"switch-8", "f32", kDefaultPresetSeed, "d_model 768"},
                        Case{"demo", "bf16", kDefaultPresetSeed, "computes in bf16"}}) {
    Worker bad = StartWorker(dir, "bad-" + c.preset + c.dtype, c.preset, "0-3", c.dtype, 0, c.seed);
    ASSERT_OK_AND_ASSIGN(auto shards, ParseExpertWorkerSpec("0-3=" + bad.address(), 8));
    auto remote = MakeRemote(shards, w, DType::kF32);
    EXPECT_THAT(remote,
                StatusIs(absl::StatusCode::kFailedPrecondition,
                         AllOf(HasSubstr("expert worker " + bad.address()), HasSubstr(c.message))))
        << c.preset;
  }
  // A worker hosting other experts than the shard names.
  Worker partial = StartWorker(dir, "partial", "demo", "0-1", "f32");
  ASSERT_OK_AND_ASSIGN(auto shards, ParseExpertWorkerSpec("0-3=" + partial.address(), 8));
  EXPECT_THAT(MakeRemote(shards, w, DType::kF32),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("does not host expert 2")));
}

// A worker at another CPU tier sums in another order: refused, naming both
// tiers, unless the front end allows mixed tiers.
TEST(WorkersStartupTest, WorkerAtAnotherCpuTierIsRefusedUnlessAllowed) {
  const CpuTier mine = ActiveCpuTier();
  const CpuTier other = mine == CpuTier::kAvx2 ? CpuTier::kAvx512 : CpuTier::kAvx2;
  if (!CpuSupportsTier(other)) {
    GTEST_SKIP() << "this CPU has no tier besides " << CpuTierName(mine);
  }
  ASSERT_OK_AND_ASSIGN(LayerWeights w, MakePreset("demo"));
  TempDir dir;
  Worker worker =
      StartWorker(dir, "tier", "demo", "0-3", "f32", 0, kDefaultPresetSeed, CpuTierName(other));
  ASSERT_OK_AND_ASSIGN(auto shards, ParseExpertWorkerSpec("0-3=" + worker.address(), 8));
  EXPECT_THAT(MakeRemote(shards, w, DType::kF32),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("runs at CPU tier " + std::string(CpuTierName(other))),
                             HasSubstr("the front end at " + std::string(CpuTierName(mine))),
                             HasSubstr("--allow_mixed_isa"))));
  RemoteBackendOptions mixed;
  mixed.allow_mixed_isa = true;
  EXPECT_OK(MakeRemote(shards, w, DType::kF32, mixed));
}

TEST(WorkerBinaryTest, DrainsOnSigtermAndRefusesBadFlags) {
  TempDir dir;
  Worker w = StartWorker(dir, "w", "demo", "0-1", "f32");
  ASSERT_GT(w.port, 0);
  const std::string log = dir.File("w.log");
  EXPECT_NE(::moe::testing::ReadFile(log).find("hosting experts 0-1"), std::string::npos);
  ASSERT_EQ(kill(w.process.pid(), SIGTERM), 0);
  EXPECT_EQ(::moe::testing::WaitExit(w.process.pid(), absl::Seconds(60)), 0);
  EXPECT_NE(::moe::testing::ReadFile(log).find("drained; exiting"), std::string::npos);
  // Experts outside the layer, and a dense layer, are refused at start-up.
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"--preset=demo", "--experts=6-9", "--grpc_port=0", "--metrics_port=-1"},
           {"--preset=llama-7b", "--experts=0", "--grpc_port=0", "--metrics_port=-1"}}) {
    const std::string bad_log = dir.File("bad.log");
    const pid_t pid = ::moe::testing::Spawn(MOE_WORKER_BINARY, args, bad_log);
    EXPECT_EQ(::moe::testing::WaitExit(pid, absl::Seconds(120)), 1) << args[0];
    const std::string text = ::moe::testing::ReadFile(bad_log);
    EXPECT_TRUE(text.find("outside 0..7") != std::string::npos ||
                text.find("no experts to shard") != std::string::npos)
        << text;
  }
}

// --port, the gRPC port flag's former name, still works and says so.
TEST(WorkerBinaryTest, DeprecatedPortFlagStillListens) {
  TempDir dir;
  const std::string log = dir.File("old.log");
  const pid_t pid = ::moe::testing::Spawn(
      MOE_WORKER_BINARY,
      {"--preset=demo", "--experts=0-1", "--host=127.0.0.1", "--port=0", "--metrics_port=-1"}, log);
  EXPECT_GT(::moe::testing::WaitForReadyPort(log, absl::Seconds(120)), 0);
  EXPECT_THAT(::moe::testing::ReadFile(log), HasSubstr("--port is deprecated; use --grpc_port"));
  ASSERT_EQ(kill(pid, SIGTERM), 0);
  EXPECT_EQ(::moe::testing::WaitExit(pid, absl::Seconds(60)), 0);
}

// Workers split by layer range (one hosting experts 0-3 and one 4-7 of
// layers 0-1, two replicas hosting every expert of layers 2-3) behind one
// front end serving the four layers: every layer's answers are bitwise the
// in-process layer's, one RPC per shard per layer-batch, and a replica
// killed under load is failed over.
TEST(WorkersByLayerTest, LayerRangeTopologyIsExactAndFailsOver) {
  TempDir dir;
  LayerSpec spec = ::moe::testing::SmallDemoWeights().spec;
  auto layer_weights = [&spec](int l) -> absl::StatusOr<LayerWeights> {
    return MakeSyntheticWeights(spec, 300 + static_cast<uint64_t>(l));
  };
  const std::string model = dir.File("model");
  ASSERT_OK(WriteHfLayers(4, 2, layer_weights, model));
  Worker low_a = StartLayerWorker(dir, "low_a", model, "0-1", "0-3");
  Worker low_b = StartLayerWorker(dir, "low_b", model, "0-1", "4-7");
  Worker high1 = StartLayerWorker(dir, "high1", model, "2-3", "0-7");
  Worker high2 = StartLayerWorker(dir, "high2", model, "2-3", "0-7");
  const std::string topology = "0-1:0-3=" + low_a.address() + ";0-1:4-7=" + low_b.address() +
                               ";2-3:0-7=" + high1.address() + "," + high2.address();
  std::vector<std::unique_ptr<MoeLayer>> served, refs;
  std::vector<std::string> names;
  std::vector<RemoteExpertBackend*> backends;
  for (int l = 0; l < 4; ++l) {
    ASSERT_OK_AND_ASSIGN(LayerWeights w, LoadHfLayer(model, l));
    ASSERT_OK_AND_ASSIGN(auto shards, ParseExpertWorkerSpec(topology, 8, l));
    RemoteBackendOptions ro;
    ro.layer = l;
    ro.model_name = "moe.layer" + std::to_string(l);
    ro.rpc_timeout = absl::Seconds(5);
    ro.probe_interval = absl::Milliseconds(100);
    ASSERT_OK_AND_ASSIGN(auto remote, MakeRemote(shards, w, DType::kF32, ro));
    backends.push_back(remote.get());
    MoeLayerOptions lo;
    lo.compute = DType::kF32;
    ASSERT_OK_AND_ASSIGN(auto layer, MoeLayer::Create(w, lo, std::move(remote)));
    served.push_back(std::move(layer));
    refs.push_back(::moe::testing::MakeLayer(w, DType::kF32));
    names.push_back(ro.model_name);
  }
  // A worker asked for a layer it does not host is refused, naming both.
  {
    ASSERT_OK_AND_ASSIGN(LayerWeights w3, LoadHfLayer(model, 3));
    ASSERT_OK_AND_ASSIGN(auto wrong, ParseExpertWorkerSpec("0-3=" + low_a.address(), 8, 3));
    RemoteBackendOptions ro;
    ro.layer = 3;
    EXPECT_THAT(MakeRemote(wrong, w3, DType::kF32, ro),
                StatusIs(absl::StatusCode::kFailedPrecondition,
                         HasSubstr("layer 3 is not hosted by this worker (it hosts layers 0-1)")));
  }
  auto server_or = MoeServer::Start(std::move(served), names, ::moe::testing::LocalOptions());
  ASSERT_OK(server_or);
  std::unique_ptr<MoeServer> server = *std::move(server_or);
  const std::string metrics = RemoteExpertBackend::RenderMetrics(
      std::vector<const RemoteExpertBackend*>(backends.begin(), backends.end()));
  EXPECT_NE(metrics.find("moe_expert_replica_up{model=\"moe.layer3\",shard=\"0-7\""),
            std::string::npos)
      << metrics;

  constexpr int kClients = 4;
  CheckedLoad load(server->local_grpc_address(), kClients, [&](int c, int i) {
    const size_t l = static_cast<size_t>((c + i) % 4);  // walks the layers
    auto tokens = RandomTokens((1 + i % 3) * 64, static_cast<uint32_t>(c * 7777 + i));
    return std::make_pair(BuildInferRequest(names[l], tokens, 64, false, "", false),
                          static_cast<const MoeLayer*>(refs[l].get()));
  });
  load.WaitForMoreOk(40);
  high1.process.Kill();  // SIGKILL during sustained load
  load.WaitForMoreOk(80);
  load.Stop();
  // One health flag per address: both layers the killed replica served
  // see it down, whichever found it.
  EXPECT_FALSE(backends[2]->ReplicaUp(0, 0));
  EXPECT_FALSE(backends[3]->ReplicaUp(0, 0));
  EXPECT_TRUE(backends[3]->ReplicaUp(0, 1));
  EXPECT_EQ(load.wrong.load(), 0);
  EXPECT_EQ(load.other.load(), 0);
  // Only the batches in flight at the kill may fail: one per client.
  EXPECT_LE(load.unavailable.load(), kClients);
  // Each layer-batch made one call per shard: the low workers served
  // layers 0 and 1, the survivor layers 2 and 3.
  ASSERT_OK_AND_ASSIGN(moe::v1::InfoResponse info, WorkerInfo(low_a, 1));
  EXPECT_EQ(std::vector<int>(info.layers().begin(), info.layers().end()), (std::vector<int>{0, 1}));
  EXPECT_GT(info.runs_served(), 0u);
}

// The binaries as a user runs them: moe_server --layers=all over the
// DeepSeek-V3 fixture (dense layer 0, MoE layer 1) with a worker hosting
// layer 1's experts; the dense layer stays in process. A shard naming a
// layer the server does not serve stops start-up.
TEST(WorkersByLayerTest, ServerBinaryShardsTheMoeLayersOfAWholeModel) {
  const std::string fixture = std::string(MOE_FIXTURES_DIR) + "/deepseek_v3";
  if (!std::filesystem::exists(fixture + "/config.json")) {
    GTEST_SKIP() << "conformance fixtures not found at " << fixture;
  }
  TempDir dir;
  Worker worker = StartLayerWorker(dir, "w", fixture, "1", "0-7");
  const std::string log = dir.File("server.log");
  ChildProcess server =
      ::moe::testing::Spawn(MOE_SERVER_BINARY,
                            {"--model_dir=" + fixture, "--layers=all", "--dtype=f32",
                             "--expert_workers=0-7=" + worker.address(), "--host=127.0.0.1",
                             "--grpc_port=0", "--http_port=-1", "--metrics_port=-1"},
                            log);
  const int port = ::moe::testing::WaitForReadyPort(log, absl::Seconds(120));
  ASSERT_GT(port, 0) << ::moe::testing::ReadFile(log);
  EXPECT_NE(::moe::testing::ReadFile(log).find("model 'moe.layer1': connecting to expert workers"),
            std::string::npos)
      << ::moe::testing::ReadFile(log);
  auto stub = ::moe::testing::Stub("127.0.0.1:" + std::to_string(port));
  for (int l : {0, 1}) {
    ASSERT_OK_AND_ASSIGN(LayerWeights w, LoadHfLayer(fixture, l));
    auto reference = ::moe::testing::MakeLayer(w, DType::kF32);
    const int64_t d = w.spec.d_model;
    auto tokens = RandomTokens(5 * d, 9);
    grpc::ClientContext ctx;
    ::moe::testing::SetDeadline(&ctx, absl::Seconds(30));
    inference::ModelInferResponse resp;
    grpc::Status st = stub->ModelInfer(
        &ctx, BuildInferRequest("moe.layer" + std::to_string(l), tokens, d, false, "", false),
        &resp);
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_EQ(::moe::testing::OutputFloats(resp, "output"),
              ::moe::testing::Reference(reference.get(), tokens))
        << "layer " << l;
  }
  ASSERT_OK_AND_ASSIGN(moe::v1::InfoResponse info, WorkerInfo(worker, 1));
  EXPECT_GT(info.runs_served(), 0u);

  const std::string bad_log = dir.File("bad.log");
  const pid_t bad = ::moe::testing::Spawn(
      MOE_SERVER_BINARY,
      {"--model_dir=" + fixture, "--layers=all", "--expert_workers=5:0-7=" + worker.address(),
       "--grpc_port=0", "--http_port=-1", "--metrics_port=-1"},
      bad_log);
  EXPECT_EQ(::moe::testing::WaitExit(bad, absl::Seconds(60)), 1);
  EXPECT_NE(::moe::testing::ReadFile(bad_log).find("names layer 5, which is not served"),
            std::string::npos)
      << ::moe::testing::ReadFile(bad_log);
}

}  // namespace
}  // namespace moe
