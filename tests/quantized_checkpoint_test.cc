// Malformed FP8 (block-scaled) and MXFP4 checkpoints stop the load with a
// message naming the file, the tensor and the problem: one test per case.
// Each starts from a good folder written by the checkpoint writer and
// breaks one thing in it.
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/checkpoint_loader.h"
#include "model/checkpoint_writer.h"
#include "model/presets.h"
#include "model/safetensors_file.h"
#include "nlohmann/json.hpp"
#include "tests/status_matchers.h"
#include "tests/test_files.h"

namespace moe {
namespace {

using ::moe::testing::StatusIs;
using ::moe::testing::TempDir;
using ::testing::AllOf;
using ::testing::HasSubstr;

struct Item {
  std::string name, dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

// Reads `path`, lets `edit` change its tensors, writes it back.
void RewriteTensors(const std::string& path, const std::function<void(std::vector<Item>*)>& edit) {
  std::vector<Item> items;
  {
    auto file = SafetensorsFile::Open(path);
    ASSERT_TRUE(file.ok()) << file.status();
    for (const auto& [name, e] : (*file)->entries()) {
      auto raw = (*file)->GetRaw(name);
      ASSERT_TRUE(raw.ok());
      items.push_back(
          {name, e.dtype, e.shape, std::vector<uint8_t>(raw->data, raw->data + (e.end - e.begin))});
    }
  }
  edit(&items);
  std::vector<StoredTensor> views;
  for (const Item& it : items) {
    views.push_back({it.name, it.dtype, it.shape, it.bytes.data(), it.bytes.size()});
  }
  ASSERT_OK(WriteSafetensors(path, views));
}

Item* Find(std::vector<Item>* items, const std::string& name) {
  for (Item& it : *items) {
    if (it.name == name) return &it;
  }
  ADD_FAILURE() << "no tensor " << name;
  static Item none;
  return &none;
}

void Remove(std::vector<Item>* items, const std::string& name) {
  for (size_t i = 0; i < items->size(); ++i) {
    if ((*items)[i].name == name) {
      items->erase(items->begin() + static_cast<std::ptrdiff_t>(i));
      return;
    }
  }
  ADD_FAILURE() << "no tensor " << name;
}

void EditConfig(const std::string& dir, const std::function<void(nlohmann::json*)>& edit) {
  nlohmann::json c = nlohmann::json::parse(::moe::testing::ReadFile(dir + "/config.json"));
  edit(&c);
  ::moe::testing::WriteFile(dir + "/config.json", c.dump(1));
}

// deepseek-v3-small at d_model 64, 8 experts of d_ff 48, written FP8 with
// 16 x 32 blocks: gate_proj.weight is F8_E4M3 [48, 64] with an F32
// weight_scale_inv [3, 2].
class Fp8CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    LayerSpec spec = *PresetSpec("deepseek-v3-small");
    spec.d_model = spec.expert.d_model = spec.shared.d_model = 64;
    spec.expert.d_ff = 48;
    spec.shared.d_ff = 96;
    spec.router.num_experts = 8;
    spec.router.n_group = 4;
    spec.router.topk_group = 2;
    spec.router.top_k = 2;
    HfWriteOptions options;
    options.fp8_block[0] = 16;
    options.fp8_block[1] = 32;
    ASSERT_OK(WriteHfLayer(MakeSyntheticWeights(spec, 3), dir_.path(), options));
    ASSERT_OK(LoadHfLayer(dir_.path(), 0).status());  // good as written
  }
  std::string File() const { return dir_.File("model.safetensors"); }
  absl::Status Load() const { return LoadHfLayer(dir_.path(), 0).status(); }

  TempDir dir_;
  const std::string weight_ = "model.layers.0.mlp.experts.2.gate_proj.weight";
  const std::string scale_ = weight_ + "_scale_inv";
};

TEST_F(Fp8CheckpointTest, WrongScaleShapeNamesTheScaleTensor) {
  RewriteTensors(File(), [&](std::vector<Item>* t) {
    Item* s = Find(t, scale_);
    s->shape = {2, 3};  // same bytes, the grid transposed
  });
  EXPECT_THAT(Load(), StatusIs(absl::StatusCode::kInvalidArgument,
                               AllOf(HasSubstr(File()), HasSubstr("'" + scale_ + "'"),
                                     HasSubstr("expected F32 [3, 2]"), HasSubstr("[2, 3]"))));
}

TEST_F(Fp8CheckpointTest, BlockSizeThatDoesNotFitTheScalesNamesTheBlock) {
  // config.json says 32 x 32 blocks: gate_proj [48, 64] would need [2, 2]
  // scales, the file has [3, 2].
  EditConfig(dir_.path(), [](nlohmann::json* c) {
    (*c)["quantization_config"]["weight_block_size"] = {32, 32};
  });
  EXPECT_THAT(Load(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(File()), HasSubstr("_scale_inv'"),
                             HasSubstr("32 x 32 block"), HasSubstr("expected F32 [2, 2]"))));
}

TEST_F(Fp8CheckpointTest, ScaleDtypeOtherThanF32IsRefused) {
  RewriteTensors(File(), [&](std::vector<Item>* t) {
    Item* s = Find(t, scale_);
    s->dtype = "BF16";
    s->bytes.resize(s->bytes.size() / 2);
  });
  EXPECT_THAT(Load(), StatusIs(absl::StatusCode::kInvalidArgument,
                               AllOf(HasSubstr(File()), HasSubstr("'" + scale_ + "'"),
                                     HasSubstr("expected F32"), HasSubstr("got BF16"))));
}

TEST_F(Fp8CheckpointTest, WeightWithoutItsScaleIsRefused) {
  RewriteTensors(File(), [&](std::vector<Item>* t) { Remove(t, scale_); });
  EXPECT_THAT(Load(), StatusIs(absl::StatusCode::kInvalidArgument,
                               AllOf(HasSubstr(File()), HasSubstr("'" + weight_ + "'"),
                                     HasSubstr("no '" + scale_ + "'"))));
}

TEST_F(Fp8CheckpointTest, Fp8WeightWithoutQuantizationConfigIsRefused) {
  EditConfig(dir_.path(), [](nlohmann::json* c) { c->erase("quantization_config"); });
  EXPECT_THAT(Load(), StatusIs(absl::StatusCode::kInvalidArgument,
                               AllOf(HasSubstr(File()), HasSubstr("F8_E4M3"),
                                     HasSubstr("quantization_config"))));
}

TEST_F(Fp8CheckpointTest, NonPositiveScaleIsRefused) {
  RewriteTensors(File(), [&](std::vector<Item>* t) {
    const float minus_one = -1.0f;
    std::memcpy(Find(t, scale_)->bytes.data() + 4, &minus_one, 4);
  });
  EXPECT_THAT(Load(), StatusIs(absl::StatusCode::kInvalidArgument,
                               AllOf(HasSubstr(File()), HasSubstr("'" + scale_ + "'"),
                                     HasSubstr("block [0, 1]"), HasSubstr("positive finite"))));
}

// gpt-oss at d_model 64, 4 experts of d_ff 32, top-2: gate_up_proj_blocks
// U8 [4, 64, 2, 16] with gate_up_proj_scales U8 [4, 64, 2].
class Mxfp4CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    LayerSpec spec = *PresetSpec("gpt-oss-20b");
    spec.d_model = spec.expert.d_model = 64;
    spec.expert.d_ff = 32;
    spec.router.num_experts = 4;
    spec.router.top_k = 2;
    ASSERT_OK(WriteHfLayer(MakeSyntheticWeights(spec, 3), dir_.path()));
    ASSERT_OK(LoadHfLayer(dir_.path(), 0).status());
  }
  std::string File() const { return dir_.File("model.safetensors"); }
  absl::Status Load() const { return LoadHfLayer(dir_.path(), 0).status(); }

  TempDir dir_;
  const std::string blocks_ = "model.layers.0.mlp.experts.gate_up_proj_blocks";
  const std::string scales_ = "model.layers.0.mlp.experts.gate_up_proj_scales";
};

TEST_F(Mxfp4CheckpointTest, WrongScaleShapeNamesTheScaleTensor) {
  RewriteTensors(File(), [&](std::vector<Item>* t) { Find(t, scales_)->shape = {4, 128, 1}; });
  EXPECT_THAT(Load(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(File()), HasSubstr("'" + scales_ + "'"),
                             HasSubstr("expected U8 [4, 64, 2]"), HasSubstr("[4, 128, 1]"))));
}

TEST_F(Mxfp4CheckpointTest, BlocksThatDoNotDivideAsTheConfigSaysAreRefused) {
  // config.json says d_model 96: three groups of 32 per row, the file has two.
  EditConfig(dir_.path(), [](nlohmann::json* c) { (*c)["hidden_size"] = 96; });
  RewriteTensors(File(), [&](std::vector<Item>* t) {
    // The router must match the new width to get as far as the experts.
    Item* r = Find(t, "model.layers.0.mlp.router.weight");
    r->shape = {4, 96};
    r->bytes.resize(4 * 96 * 2);
  });
  EXPECT_THAT(Load(), StatusIs(absl::StatusCode::kInvalidArgument,
                               AllOf(HasSubstr(File()), HasSubstr("gate_up_proj_blocks'"),
                                     HasSubstr("decodes to [4, 64, 64]"),
                                     HasSubstr("config.json says [4, 64, 96]"))));
}

TEST_F(Mxfp4CheckpointTest, ScaleDtypeOtherThanU8IsRefused) {
  RewriteTensors(File(), [&](std::vector<Item>* t) { Find(t, scales_)->dtype = "I8"; });
  EXPECT_THAT(Load(), StatusIs(absl::StatusCode::kInvalidArgument,
                               AllOf(HasSubstr(File()), HasSubstr("'" + scales_ + "'"),
                                     HasSubstr("expected U8"), HasSubstr("got I8"))));
}

TEST_F(Mxfp4CheckpointTest, BlocksWithoutScalesAreRefused) {
  RewriteTensors(File(), [&](std::vector<Item>* t) { Remove(t, scales_); });
  EXPECT_THAT(Load(), StatusIs(absl::StatusCode::kInvalidArgument,
                               AllOf(HasSubstr(File()), HasSubstr("'" + blocks_ + "'"),
                                     HasSubstr("no '" + scales_ + "'"))));
}

TEST_F(Mxfp4CheckpointTest, BlocksWithoutSixteenBytesPerGroupAreRefused) {
  RewriteTensors(File(), [&](std::vector<Item>* t) {
    Item* b = Find(t, blocks_);
    b->shape = {4, 64, 4, 8};
  });
  EXPECT_THAT(Load(), StatusIs(absl::StatusCode::kInvalidArgument,
                               AllOf(HasSubstr(File()), HasSubstr("'" + blocks_ + "'"),
                                     HasSubstr("expected U8 [..., G, 16]"))));
}

TEST_F(Mxfp4CheckpointTest, NanScaleIsRefused) {
  RewriteTensors(File(), [&](std::vector<Item>* t) { Find(t, scales_)->bytes[7] = 255; });
  EXPECT_THAT(Load(), StatusIs(absl::StatusCode::kInvalidArgument,
                               AllOf(HasSubstr(File()), HasSubstr("'" + scales_ + "'"),
                                     HasSubstr("scale 255"), HasSubstr("group 7"))));
}

}  // namespace
}  // namespace moe
