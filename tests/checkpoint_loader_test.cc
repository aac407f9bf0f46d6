// LoadHfLayer: good folders load (single file and sharded); every malformed
// folder gives an error naming the file, the tensor and the problem.
#include "model/checkpoint_loader.h"

#include <filesystem>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/checkpoint_writer.h"
#include "model/expert_ranges.h"
#include "model/presets.h"
#include "model/safetensors_file.h"
#include "nlohmann/json.hpp"
#include "tests/status_matchers.h"
#include "tests/test_files.h"

namespace moe {
namespace {

using ::moe::testing::ReadFile;
using ::moe::testing::StatusIs;
using ::moe::testing::TempDir;
using ::moe::testing::WriteFile;
using ::testing::AllOf;
using ::testing::HasSubstr;
using json = nlohmann::json;

// A tiny Mixtral layer: d_model 8, 4 experts of d_ff 16, top-2.
LayerWeights TinyMixtral() {
  LayerSpec s = *PresetSpec("demo");
  s.d_model = s.expert.d_model = 8;
  s.expert.d_ff = 16;
  s.router.num_experts = 4;
  return MakeSyntheticWeights(s, 5);
}

class CheckpointLoaderTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_OK(WriteHfLayer(TinyMixtral(), dir_.path())); }

  json Config() { return json::parse(ReadFile(dir_.File("config.json"))); }
  void SetConfig(const json& c) { WriteFile(dir_.File("config.json"), c.dump()); }

  // Rewrites model.safetensors through `edit` on its (name, tensor) list.
  template <typename Edit>
  void EditTensors(Edit edit) {
    std::vector<std::pair<std::string, Tensor>> tensors;
    {
      auto file = SafetensorsFile::Open(dir_.File("model.safetensors"));
      ASSERT_OK(file);
      for (const auto& [name, e] : (*file)->entries()) {
        auto t = (*file)->Get(name);
        ASSERT_OK(t);
        // Copy out of the mapping before the file is rewritten.
        tensors.emplace_back(name, Tensor::FromFloats(t->dtype(), t->shape(), t->ToFloats()));
      }
    }
    edit(&tensors);
    ASSERT_OK(WriteSafetensors(dir_.File("model.safetensors"), tensors));
  }

  TempDir dir_;
};

const char kW2[] = "model.layers.0.block_sparse_moe.experts.3.w2.weight";

TEST_F(CheckpointLoaderTest, LoadsTheWrittenLayer) {
  ASSERT_OK_AND_ASSIGN(LayerWeights w, LoadHfLayer(dir_.path(), 0));
  EXPECT_EQ(w.spec.family, "mixtral");
  EXPECT_EQ(w.spec.d_model, 8);
  EXPECT_EQ(w.spec.num_experts(), 4);
  EXPECT_EQ(w.spec.top_k(), 2);
  EXPECT_TRUE(w.spec.router.renormalize);
  EXPECT_EQ(w.experts[3].w2.ToFloats(), TinyMixtral().experts[3].w2.ToFloats());
}

TEST_F(CheckpointLoaderTest, MissingConfig) {
  std::filesystem::remove(dir_.File("config.json"));
  EXPECT_THAT(LoadHfLayer(dir_.path(), 0),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(dir_.File("config.json"))));
}

TEST_F(CheckpointLoaderTest, InvalidConfigJson) {
  WriteFile(dir_.File("config.json"), "{\"hidden_size\": ");
  EXPECT_THAT(LoadHfLayer(dir_.path(), 0),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("config.json"), HasSubstr("invalid JSON"))));
}

TEST_F(CheckpointLoaderTest, MissingConfigKey) {
  json c = Config();
  c.erase("hidden_size");
  SetConfig(c);
  EXPECT_THAT(
      LoadHfLayer(dir_.path(), 0),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr("config.json"), HasSubstr("missing config key 'hidden_size'"))));
}

TEST_F(CheckpointLoaderTest, WrongConfigValueType) {
  json c = Config();
  c["num_experts_per_tok"] = "two";
  SetConfig(c);
  EXPECT_THAT(LoadHfLayer(dir_.path(), 0),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("'num_experts_per_tok'"), HasSubstr("must be an integer"))));
}

TEST_F(CheckpointLoaderTest, TopKLargerThanExperts) {
  json c = Config();
  c["num_experts_per_tok"] = 5;
  SetConfig(c);
  EXPECT_THAT(LoadHfLayer(dir_.path(), 0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("num_experts_per_tok = 5")));
}

TEST_F(CheckpointLoaderTest, UnknownModelType) {
  json c = Config();
  c["model_type"] = "gpt_neox";
  SetConfig(c);
  EXPECT_THAT(LoadHfLayer(dir_.path(), 0),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("model_type 'gpt_neox' is not supported")));
}

TEST_F(CheckpointLoaderTest, UnknownActivation) {
  json c = Config();
  c["hidden_act"] = "mish";
  SetConfig(c);
  EXPECT_THAT(LoadHfLayer(dir_.path(), 0),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("'hidden_act'"), HasSubstr("'mish'"))));
}

TEST_F(CheckpointLoaderTest, LayerOutOfRange) {
  EXPECT_THAT(LoadHfLayer(dir_.path(), 3),
              StatusIs(absl::StatusCode::kOutOfRange, AllOf(HasSubstr("layer 3 out of range"),
                                                            HasSubstr("num_hidden_layers = 1"))));
  EXPECT_THAT(LoadHfLayer(dir_.path(), -1),
              StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("layer -1")));
}

TEST_F(CheckpointLoaderTest, ShapeNotMatchingConfig) {
  json c = Config();
  c["intermediate_size"] = 24;
  SetConfig(c);
  EXPECT_THAT(
      LoadHfLayer(dir_.path(), 0),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr("model.safetensors"),
                     HasSubstr("'model.layers.0.block_sparse_moe.experts.0.w1.weight'"),
                     HasSubstr("shape [16, 8] does not match config.json (expected [24, 8])"))));
}

TEST_F(CheckpointLoaderTest, MissingTensor) {
  EditTensors([](auto* t) {
    t->erase(std::remove_if(t->begin(), t->end(), [](const auto& p) { return p.first == kW2; }),
             t->end());
  });
  EXPECT_THAT(
      LoadHfLayer(dir_.path(), 0),
      StatusIs(absl::StatusCode::kNotFound,
               AllOf(HasSubstr(dir_.path()), HasSubstr(std::string("missing tensor '") + kW2))));
}

TEST_F(CheckpointLoaderTest, UnsupportedTensorDtype) {
  EditTensors([](auto* t) {
    for (auto& [name, tensor] : *t) {
      if (name == kW2) {
        // Same bytes, declared I16.
        auto buf =
            std::make_shared<std::vector<uint16_t>>(static_cast<size_t>(tensor.num_elements()));
        const void* p = buf->data();
        tensor = Tensor(DType::kF16, tensor.shape(), buf, p);
      }
    }
  });
  // Patch the header's dtype for that tensor from F16 to I16.
  std::string bytes = ReadFile(dir_.File("model.safetensors"));
  const size_t at = bytes.find(kW2);
  ASSERT_NE(at, std::string::npos);
  const size_t dtype_at = bytes.find("\"F16\"", at);
  ASSERT_NE(dtype_at, std::string::npos);
  bytes.replace(dtype_at, 5, "\"I16\"");
  WriteFile(dir_.File("model.safetensors"), bytes);
  EXPECT_THAT(LoadHfLayer(dir_.path(), 0),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("model.safetensors"), HasSubstr(kW2),
                             HasSubstr("dtype I16 is not supported"))));
}

TEST_F(CheckpointLoaderTest, TruncatedWeightsFile) {
  std::string bytes = ReadFile(dir_.File("model.safetensors"));
  WriteFile(dir_.File("model.safetensors"), bytes.substr(0, bytes.size() - 100));
  EXPECT_THAT(LoadHfLayer(dir_.path(), 0),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("model.safetensors"), HasSubstr("outside the data section"),
                             HasSubstr("truncated?"))));
}

TEST_F(CheckpointLoaderTest, NoWeightsFile) {
  std::filesystem::remove(dir_.File("model.safetensors"));
  EXPECT_THAT(LoadHfLayer(dir_.path(), 0),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no model.safetensors")));
}

TEST_F(CheckpointLoaderTest, ShardedIndexLoads) {
  // Split the tensors over two shards and index them.
  std::vector<std::pair<std::string, Tensor>> a, b;
  json index;
  {
    ASSERT_OK_AND_ASSIGN(auto file, SafetensorsFile::Open(dir_.File("model.safetensors")));
    int i = 0;
    for (const auto& [name, e] : file->entries()) {
      ASSERT_OK_AND_ASSIGN(Tensor t, file->Get(name));
      Tensor copy = Tensor::FromFloats(t.dtype(), t.shape(), t.ToFloats());
      const char* shard =
          (i++ % 2) ? "model-00002-of-00002.safetensors" : "model-00001-of-00002.safetensors";
      ((i % 2) ? a : b).emplace_back(name, copy);
      index["weight_map"][name] = shard;
    }
  }
  ASSERT_OK(WriteSafetensors(dir_.File("model-00001-of-00002.safetensors"), a));
  ASSERT_OK(WriteSafetensors(dir_.File("model-00002-of-00002.safetensors"), b));
  std::filesystem::remove(dir_.File("model.safetensors"));
  WriteFile(dir_.File("model.safetensors.index.json"), index.dump());
  ASSERT_OK_AND_ASSIGN(LayerWeights w, LoadHfLayer(dir_.path(), 0));
  EXPECT_EQ(w.experts[3].w2.ToFloats(), TinyMixtral().experts[3].w2.ToFloats());

  // An index naming a shard that is not there.
  index["weight_map"][kW2] = "model-00003-of-00002.safetensors";
  WriteFile(dir_.File("model.safetensors.index.json"), index.dump());
  EXPECT_THAT(LoadHfLayer(dir_.path(), 0),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("model-00003-of-00002.safetensors")));
  // An index pointing at the wrong shard.
  index["weight_map"][kW2] = "model-00001-of-00002.safetensors";
  WriteFile(dir_.File("model.safetensors.index.json"), index.dump());
  auto other = LoadHfLayer(dir_.path(), 0);
  // Either the tensor is in shard 1 (then this is fine) or the index is wrong.
  if (!other.ok()) {
    EXPECT_THAT(other, StatusIs(absl::StatusCode::kInvalidArgument,
                                AllOf(HasSubstr(kW2), HasSubstr("does not contain it"))));
  }
  // An index escaping the folder.
  index["weight_map"][kW2] = "../model.safetensors";
  WriteFile(dir_.File("model.safetensors.index.json"), index.dump());
  EXPECT_THAT(LoadHfLayer(dir_.path(), 0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a file in the folder")));
  // An invalid index.
  WriteFile(dir_.File("model.safetensors.index.json"), "{\"weight_map\": 3}");
  EXPECT_THAT(LoadHfLayer(dir_.path(), 0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("weight_map")));
}

TEST(CheckpointLayerKindTest, QwenMlpOnlyLayersAndDeepseekDenseLayersAreDense) {
  TempDir dir;
  // Qwen2-MoE with layer 0 listed in mlp_only_layers: a dense MLP there.
  json c = {{"model_type", "qwen2_moe"},  {"num_hidden_layers", 2},
            {"hidden_size", 8},           {"intermediate_size", 12},
            {"moe_intermediate_size", 4}, {"num_experts", 4},
            {"num_experts_per_tok", 2},   {"shared_expert_intermediate_size", 6},
            {"mlp_only_layers", {0}},     {"hidden_act", "silu"}};
  WriteFile(dir.File("config.json"), c.dump());
  auto t = [](std::vector<int64_t> shape) {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    return Tensor::FromFloats(DType::kBF16, shape,
                              std::vector<float>(static_cast<size_t>(n), 0.1f));
  };
  ASSERT_OK(WriteSafetensors(dir.File("model.safetensors"),
                             {{"model.layers.0.mlp.gate_proj.weight", t({12, 8})},
                              {"model.layers.0.mlp.up_proj.weight", t({12, 8})},
                              {"model.layers.0.mlp.down_proj.weight", t({8, 12})}}));
  ASSERT_OK_AND_ASSIGN(LayerWeights w, LoadHfLayer(dir.path(), 0));
  EXPECT_TRUE(w.spec.dense);
  EXPECT_EQ(w.spec.expert.d_ff, 12);
  // Layer 1 is MoE, and its tensors are missing from this file.
  EXPECT_THAT(LoadHfLayer(dir.path(), 1),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("model.layers.1.mlp.gate.weight")));

  // DeepSeek: layers before first_k_dense_replace are dense.
  c = {{"model_type", "deepseek_v3"},
       {"num_hidden_layers", 2},
       {"hidden_size", 8},
       {"intermediate_size", 12},
       {"moe_intermediate_size", 4},
       {"n_routed_experts", 4},
       {"num_experts_per_tok", 2},
       {"n_group", 2},
       {"topk_group", 1},
       {"first_k_dense_replace", 1}};
  WriteFile(dir.File("config.json"), c.dump());
  ASSERT_OK_AND_ASSIGN(w, LoadHfLayer(dir.path(), 0));
  EXPECT_TRUE(w.spec.dense);
}

// Several layers, sharded across files: each layer loads back as written,
// and the layer count comes from config.json.
TEST(MultiLayerCheckpointTest, EveryLayerOfAShardedFolderLoadsBack) {
  moe::testing::TempDir dir;
  auto layer = [](int l) -> absl::StatusOr<LayerWeights> {
    LayerSpec s = TinyMixtral().spec;
    return MakeSyntheticWeights(s, 100 + static_cast<uint64_t>(l));
  };
  ASSERT_OK(WriteHfLayers(8, 3, layer, dir.path()));
  EXPECT_TRUE(std::filesystem::exists(dir.File("model.safetensors.index.json")));
  EXPECT_TRUE(std::filesystem::exists(dir.File("model-00003-of-00003.safetensors")));
  ASSERT_OK_AND_ASSIGN(int count, HfLayerCount(dir.path()));
  EXPECT_EQ(count, 8);
  for (int l = 0; l < 8; ++l) {
    ASSERT_OK_AND_ASSIGN(LayerWeights got, LoadHfLayer(dir.path(), l));
    const LayerWeights want = *layer(l);
    EXPECT_EQ(got.gate_weight.ToFloats(), want.gate_weight.ToFloats()) << "layer " << l;
    ASSERT_EQ(got.experts.size(), want.experts.size());
    EXPECT_EQ(got.experts[3].w2.ToFloats(), want.experts[3].w2.ToFloats()) << "layer " << l;
  }
  EXPECT_THAT(LoadHfLayer(dir.path(), 8),
              StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("num_hidden_layers = 8")));
}

// Families whose configs say which layers are sparse write every layer as
// the one given: each loads back with its experts.
TEST(MultiLayerCheckpointTest, EveryPresetFamilyWritesSeveralLayers) {
  for (const char* preset : {"switch-8", "qwen2-moe-a2.7b", "deepseek-v3-small", "bert-base",
                             "qwen3-30b-a3b", "olmoe-1b-7b"}) {
    moe::testing::TempDir dir;
    LayerSpec spec = *PresetSpec(preset);
    spec.d_model = spec.expert.d_model = spec.shared.d_model = 16;
    spec.expert.d_ff = 8;
    if (spec.has_shared()) spec.shared.d_ff = 8;
    auto layer = [&spec](int l) -> absl::StatusOr<LayerWeights> {
      return MakeSyntheticWeights(spec, 9 + static_cast<uint64_t>(l));
    };
    ASSERT_OK(WriteHfLayers(3, 2, layer, dir.path())) << preset;
    for (int l = 0; l < 3; ++l) {
      ASSERT_OK_AND_ASSIGN(LayerWeights got, LoadHfLayer(dir.path(), l));
      EXPECT_EQ(got.spec.dense, spec.dense) << preset << " layer " << l;
      EXPECT_EQ(got.spec.family, spec.family) << preset << " layer " << l;
      EXPECT_EQ(got.spec.router.renormalize, spec.router.renormalize) << preset << " layer " << l;
      EXPECT_EQ(got.spec.top_k(), spec.top_k()) << preset << " layer " << l;
      EXPECT_EQ(got.experts.size(), layer(l)->experts.size()) << preset << " layer " << l;
      EXPECT_EQ(got.experts[0].w1.ToFloats(), layer(l)->experts[0].w1.ToFloats())
          << preset << " layer " << l;
    }
  }
}

TEST(MultiLayerCheckpointTest, LayersOfDifferentShapesAreRefused) {
  moe::testing::TempDir dir;
  auto layer = [](int l) -> absl::StatusOr<LayerWeights> {
    LayerSpec s = TinyMixtral().spec;
    if (l == 1) s.expert.d_ff = 32;
    return MakeSyntheticWeights(s, 7);
  };
  EXPECT_THAT(WriteHfLayers(2, 1, layer, dir.path()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("layer 1")));
}

TEST(MultiLayerCheckpointTest, LayerCountNeedsAConfig) {
  moe::testing::TempDir dir;
  EXPECT_THAT(HfLayerCount(dir.path()),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("config.json")));
  WriteFile(dir.File("config.json"), R"({"model_type": "mixtral"})");
  EXPECT_THAT(HfLayerCount(dir.path()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("num_hidden_layers")));
  WriteFile(dir.File("config.json"), R"({"model_type": "gpt2", "n_layer": 12})");
  EXPECT_EQ(*HfLayerCount(dir.path()), 12);
}

TEST(LayerListTest, AllRangesAndErrors) {
  EXPECT_EQ(*ParseLayerList("all", 4), (std::vector<int>{0, 1, 2, 3}));
  EXPECT_EQ(*ParseLayerList("0-2,7", 8), (std::vector<int>{0, 1, 2, 7}));
  EXPECT_EQ(*ParseLayerList("5", 8), (std::vector<int>{5}));
  EXPECT_THAT(ParseLayerList("0-8", 8),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("layer list"), HasSubstr("outside 0..7"))));
  EXPECT_THAT(ParseLayerList("1,1", 8),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("the same layer twice")));
  EXPECT_THAT(ParseLayerList("x", 8),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bad piece 'x'")));
  EXPECT_THAT(ParseLayerList("", 8),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("is empty")));
}

}  // namespace
}  // namespace moe
