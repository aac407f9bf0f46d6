// The moe_server binary as a user runs it: start-up log, serving, SIGTERM
// drain with exit 0, and a malformed weight file stopping start-up with a
// message naming the file, the tensor and the problem.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <regex>

#include "gtest/gtest.h"
#include "model/checkpoint_writer.h"
#include "model/presets.h"
#include "tests/naive_reference.h"
#include "tests/process_util.h"
#include "tests/server_test_util.h"
#include "tests/status_matchers.h"
#include "tests/test_files.h"

namespace moe {
namespace {

using ::moe::testing::ReadFile;
using ::moe::testing::TempDir;

// Runs moe_server with `args`, output to `log`. Returns the pid.
pid_t Spawn(const std::vector<std::string>& args, const std::string& log) {
  return ::moe::testing::Spawn(MOE_SERVER_BINARY, args, log);
}

using ::moe::testing::WaitExit;

TEST(ServerBinaryTest, ServesAndDrainsOnSigterm) {
  TempDir dir;
  const std::string log = dir.File("server.log");
  const pid_t pid = Spawn({"--preset=transformer-base", "--dtype=f32", "--host=127.0.0.1",
                           "--grpc_port=0", "--http_port=0", "--metrics_port=0"},
                          log);
  // Wait for the ready line and read the chosen port from the log.
  const int port = ::moe::testing::WaitForReadyPort(log, absl::Seconds(30));
  std::string text = ReadFile(log);
  ASSERT_GT(port, 0) << "no ready line in the log:\n" << text;
  EXPECT_NE(text.find("bert: d_model 512, dense FFN (relu d_ff 2048 +bias)"), std::string::npos)
      << text;
  EXPECT_NE(text.find("compute f32"), std::string::npos) << text;

  auto stub = ::moe::testing::Stub("127.0.0.1:" + std::to_string(port));
  grpc::ClientContext ctx;
  ::moe::testing::SetDeadline(&ctx, absl::Seconds(30));
  inference::ModelInferResponse resp;
  auto tokens = ::moe::testing::RandomTokens(3 * 512, 5);
  grpc::Status st = stub->ModelInfer(&ctx, ::moe::testing::InferRequest(tokens, 512), &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  // The same preset in process gives the same bits.
  auto layer = ::moe::testing::MakeLayer(*MakePreset("transformer-base"));
  EXPECT_EQ(::moe::testing::OutputFloats(resp, "output"),
            ::moe::testing::Reference(layer.get(), tokens));

  ASSERT_EQ(kill(pid, SIGTERM), 0);
  EXPECT_EQ(WaitExit(pid, absl::Seconds(60)), 0);
  text = ReadFile(log);
  EXPECT_NE(text.find("received SIGTERM: draining"), std::string::npos) << text;
  EXPECT_NE(text.find("drained: every accepted request was answered"), std::string::npos) << text;
}

// --dtype=int8 end to end: the log names it, and a served answer is
// bitwise the in-process int8 layer's.
TEST(ServerBinaryTest, ServesInt8AsTheInProcessInt8Layer) {
  TempDir dir;
  const std::string log = dir.File("server.log");
  const pid_t pid = Spawn({"--preset=demo", "--dtype=int8", "--host=127.0.0.1", "--grpc_port=0",
                           "--http_port=-1", "--metrics_port=-1"},
                          log);
  const int port = ::moe::testing::WaitForReadyPort(log, absl::Seconds(30));
  std::string text = ReadFile(log);
  ASSERT_GT(port, 0) << "no ready line in the log:\n" << text;
  EXPECT_NE(text.find("compute int8"), std::string::npos) << text;
  EXPECT_NE(text.find("own:int8"), std::string::npos) << text;

  auto stub = ::moe::testing::Stub("127.0.0.1:" + std::to_string(port));
  grpc::ClientContext ctx;
  ::moe::testing::SetDeadline(&ctx, absl::Seconds(30));
  inference::ModelInferResponse resp;
  ASSERT_OK_AND_ASSIGN(LayerWeights w, MakePreset("demo"));
  const int64_t d = w.spec.d_model;
  auto tokens = ::moe::testing::RandomTokens(5 * d, 9);
  grpc::Status st = stub->ModelInfer(&ctx, ::moe::testing::InferRequest(tokens, d), &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  auto layer = ::moe::testing::MakeLayer(w, DType::kI8);
  EXPECT_EQ(::moe::testing::OutputFloats(resp, "output"),
            ::moe::testing::Reference(layer.get(), tokens));
  ASSERT_EQ(kill(pid, SIGTERM), 0);
  EXPECT_EQ(WaitExit(pid, absl::Seconds(60)), 0);
}

TEST(ServerBinaryTest, MalformedWeightFileStopsStartUpWithAClearMessage) {
  TempDir dir;
  LayerSpec s = *PresetSpec("demo");
  s.d_model = s.expert.d_model = 16;
  s.expert.d_ff = 32;
  ASSERT_TRUE(WriteHfLayer(MakeSyntheticWeights(s, 1), dir.File("model")).ok());
  const std::string weights = dir.File("model/model.safetensors");
  const std::string bytes = ReadFile(weights);
  ::moe::testing::WriteFile(weights, bytes.substr(0, bytes.size() - 64));  // truncate
  const std::string log = dir.File("server.log");
  const pid_t pid = Spawn(
      {"--model_dir=" + dir.File("model"), "--grpc_port=0", "--http_port=-1", "--metrics_port=-1"},
      log);
  EXPECT_EQ(WaitExit(pid, absl::Seconds(60)), 1);
  const std::string text = ReadFile(log);
  EXPECT_NE(text.find(weights), std::string::npos) << text;
  EXPECT_NE(text.find("tensor '"), std::string::npos) << text;
  EXPECT_NE(text.find("outside the data section"), std::string::npos) << text;
}

TEST(ServerBinaryTest, UnknownPresetStopsStartUp) {
  TempDir dir;
  const std::string log = dir.File("server.log");
  const pid_t pid =
      Spawn({"--preset=nope", "--grpc_port=0", "--http_port=-1", "--metrics_port=-1"}, log);
  EXPECT_EQ(WaitExit(pid, absl::Seconds(60)), 1);
  EXPECT_NE(ReadFile(log).find("unknown preset 'nope'"), std::string::npos) << ReadFile(log);
}

// --help lists every flag the server defines (not abseil's default of the
// flags in a file named after the program), --version names the program,
// version, commit, oneDNN and the CPU tier; both exit 0.
TEST(ServerBinaryTest, HelpListsEveryFlagAndVersionSaysWhatRuns) {
  TempDir dir;
  const std::string log = dir.File("help.log");
  EXPECT_EQ(WaitExit(Spawn({"--help"}, log), absl::Seconds(30)), 0);
  const std::string help = ReadFile(log);
  for (const char* flag :
       {"--grpc_port", "--http_port", "--metrics_port", "--preset", "--model_dir", "--dtype",
        "--max_isa", "--max_batch_tokens", "--max_queue_delay_us", "--tls_cert", "--expert_workers",
        "--drain_timeout_s", "--allow_mixed_isa", "--layers"}) {
    EXPECT_NE(help.find(flag), std::string::npos) << flag << " missing from --help:\n" << help;
  }
  EXPECT_NE(help.find("default: 8000"), std::string::npos) << help;
  // The --preset help names every preset (it reads the preset registry).
  for (const auto& p : Presets()) {
    EXPECT_NE(help.find(p.name), std::string::npos) << p.name << " missing from --help";
  }
  const std::string vlog = dir.File("version.log");
  EXPECT_EQ(WaitExit(Spawn({"--version"}, vlog), absl::Seconds(30)), 0);
  const std::string version = ReadFile(vlog);
  static const std::regex kVersion(
      R"(moe_server \d+\.\d+\.\d+ \(git ([0-9a-f]{12}(-dirty)?|unknown)\), oneDNN \d+\.\d+\.\d+, CPU tier (avx2|avx512|avx512_bf16|amx))");
  EXPECT_TRUE(std::regex_search(version, kVersion)) << version;
}

// --layers: every listed layer is a model <name>.layer<L>; the log gives
// each layer's and the total bytes and the load time; bad lists stop
// start-up naming the problem.
TEST(ServerBinaryTest, LayersServesEveryListedLayerAndRejectsBadLists) {
  TempDir dir;
  LayerSpec s = *PresetSpec("demo");
  s.d_model = s.expert.d_model = 16;
  s.expert.d_ff = 32;
  auto layer = [&s](int l) -> absl::StatusOr<LayerWeights> {
    return MakeSyntheticWeights(s, 10 + static_cast<uint64_t>(l));
  };
  ASSERT_TRUE(WriteHfLayers(3, 2, layer, dir.File("model")).ok());
  const std::string log = dir.File("server.log");
  const pid_t pid =
      Spawn({"--model_dir=" + dir.File("model"), "--layers=1-2", "--dtype=f32", "--host=127.0.0.1",
             "--grpc_port=0", "--http_port=-1", "--metrics_port=-1"},
            log);
  const int port = ::moe::testing::WaitForReadyPort(log, absl::Seconds(30));
  const std::string text = ReadFile(log);
  ASSERT_GT(port, 0) << "no ready line in the log:\n" << text;
  EXPECT_NE(text.find("model 'moe.layer1': mixtral"), std::string::npos) << text;
  EXPECT_NE(text.find("model 'moe.layer2': mixtral"), std::string::npos) << text;
  EXPECT_EQ(text.find("model 'moe.layer0'"), std::string::npos) << text;
  EXPECT_NE(text.find("2 layers (1-2): "), std::string::npos) << text;
  EXPECT_NE(text.find("MB of packed FFN weights"), std::string::npos) << text;
  auto stub = ::moe::testing::Stub("127.0.0.1:" + std::to_string(port));
  const auto tokens = ::moe::testing::RandomTokens(2 * 16, 5);
  grpc::ClientContext ctx;
  ::moe::testing::SetDeadline(&ctx, absl::Seconds(30));
  inference::ModelInferResponse resp;
  grpc::Status st =
      stub->ModelInfer(&ctx, BuildInferRequest("moe.layer2", tokens, 16, false, "", false), &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  auto ref = ::moe::testing::MakeLayer(*layer(2));
  EXPECT_EQ(::moe::testing::OutputFloats(resp, "output"),
            ::moe::testing::Reference(ref.get(), tokens));
  ASSERT_EQ(kill(pid, SIGTERM), 0);
  EXPECT_EQ(WaitExit(pid, absl::Seconds(60)), 0);

  const std::vector<std::pair<std::vector<std::string>, std::string>> bad = {
      {{"--model_dir=" + dir.File("model"), "--layers=0-3"}, "--layers: layer list '0-3'"},
      {{"--model_dir=" + dir.File("model"), "--layers=x"}, "bad piece 'x'"},
      {{"--layers=all"}, "--layers needs --model_dir"},
  };
  for (const auto& [args, message] : bad) {
    std::vector<std::string> all = args;
    for (const char* a : {"--grpc_port=0", "--http_port=-1", "--metrics_port=-1"}) {
      all.push_back(a);
    }
    const std::string bad_log = dir.File("bad.log");
    EXPECT_EQ(WaitExit(Spawn(all, bad_log), absl::Seconds(60)), 1) << message;
    EXPECT_NE(ReadFile(bad_log).find(message), std::string::npos) << ReadFile(bad_log);
  }
}

}  // namespace
}  // namespace moe
