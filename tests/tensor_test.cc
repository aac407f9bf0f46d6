// Tensor: views and owned copies, conversions, transpose, stacking, shape
// text.
#include "common/tensor.h"

#include <memory>
#include <vector>

#include "common/dtype.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace moe {
namespace {

using ::testing::ElementsAre;

TEST(TensorTest, DefaultIsEmpty) {
  const Tensor t;
  EXPECT_TRUE(t.empty());
  EXPECT_EQ(t.data(), nullptr);
}

TEST(TensorTest, FromFloatsOwnsACopyInItsDtype) {
  std::vector<float> values = {1.0f, -2.5f, 3.14159f, 1e-3f, 0.0f, 7.0f};
  const Tensor f32 = Tensor::FromFloats(DType::kF32, {2, 3}, values);
  values[0] = 99.0f;  // the tensor keeps its own copy
  EXPECT_EQ(f32.dtype(), DType::kF32);
  EXPECT_EQ(f32.rank(), 2);
  EXPECT_EQ(f32.dim(0), 2);
  EXPECT_EQ(f32.dim(1), 3);
  EXPECT_EQ(f32.num_elements(), 6);
  EXPECT_EQ(f32.num_bytes(), 24);
  EXPECT_THAT(f32.ToFloats(), ElementsAre(1.0f, -2.5f, 3.14159f, 1e-3f, 0.0f, 7.0f));

  const Tensor bf16 = Tensor::FromFloats(DType::kBF16, {3}, {1.0f, 3.14159f, 1e-3f});
  EXPECT_EQ(bf16.num_bytes(), 6);
  EXPECT_THAT(bf16.ToFloats(), ElementsAre(1.0f, RoundToBf16(3.14159f), RoundToBf16(1e-3f)));
  EXPECT_NE(RoundToBf16(3.14159f), 3.14159f);  // it did round
}

TEST(TensorTest, AViewKeepsItsOwnerAliveAndCopiesShareTheBytes) {
  auto owner = std::make_shared<std::vector<float>>(std::vector<float>{1, 2, 3, 4});
  const void* bytes = owner->data();
  Tensor view(DType::kF32, {4}, owner, bytes);
  owner.reset();  // the tensor holds the last reference
  const Tensor copy = view;
  EXPECT_EQ(copy.data(), bytes);
  EXPECT_THAT(copy.ToFloats(), ElementsAre(1, 2, 3, 4));
}

TEST(TensorTest, TransposesAMatrixIntoACopy) {
  const Tensor t = Tensor::FromFloats(DType::kF32, {2, 3}, {1, 2, 3, 4, 5, 6});
  const Tensor tt = t.Transposed2D();
  EXPECT_THAT(tt.shape(), ElementsAre(3, 2));
  EXPECT_THAT(tt.ToFloats(), ElementsAre(1, 4, 2, 5, 3, 6));
  EXPECT_NE(tt.data(), t.data());
  const Tensor b = Tensor::FromFloats(DType::kBF16, {1, 2}, {0.5f, 2.0f}).Transposed2D();
  EXPECT_EQ(b.dtype(), DType::kBF16);
  EXPECT_THAT(b.shape(), ElementsAre(2, 1));
  EXPECT_THAT(b.ToFloats(), ElementsAre(0.5f, 2.0f));
}

TEST(TensorTest, StacksRowsKeepingASharedDtypeElseF32) {
  const Tensor top = Tensor::FromFloats(DType::kBF16, {1, 2}, {1, 2});
  const Tensor bottom = Tensor::FromFloats(DType::kBF16, {2, 2}, {3, 4, 5, 6});
  const Tensor s = Tensor::StackRows(top, bottom);
  EXPECT_EQ(s.dtype(), DType::kBF16);
  EXPECT_THAT(s.shape(), ElementsAre(3, 2));
  EXPECT_THAT(s.ToFloats(), ElementsAre(1, 2, 3, 4, 5, 6));
  const Tensor mixed = Tensor::StackRows(top, Tensor::FromFloats(DType::kF32, {1, 2}, {0.25f, -1}));
  EXPECT_EQ(mixed.dtype(), DType::kF32);
  EXPECT_THAT(mixed.ToFloats(), ElementsAre(1, 2, 0.25f, -1));
}

TEST(TensorTest, ShapeText) {
  EXPECT_EQ(Tensor::FromFloats(DType::kF32, {4, 2}, std::vector<float>(8)).ShapeString(), "[4, 2]");
  EXPECT_EQ(ShapeToString({4096, 1024}), "[4096, 1024]");
  EXPECT_EQ(ShapeToString({}), "[]");
}

}  // namespace
}  // namespace moe
