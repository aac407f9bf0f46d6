// dtype conversions: bf16 rounding (nearest even), NaN/Inf, IEEE half.
#include "common/dtype.h"

#include <cmath>
#include <limits>

#include "gtest/gtest.h"

namespace moe {
namespace {

float FromBits(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

TEST(DTypeTest, Bf16RoundsToNearestEven) {
  EXPECT_EQ(FloatToBf16(1.0f), 0x3f80);
  // Exactly halfway between 0x3f80 and 0x3f81: ties to even (0x3f80).
  EXPECT_EQ(FloatToBf16(FromBits(0x3f808000u)), 0x3f80);
  // Halfway between 0x3f81 and 0x3f82: to even (0x3f82).
  EXPECT_EQ(FloatToBf16(FromBits(0x3f818000u)), 0x3f82);
  // Just above halfway rounds up.
  EXPECT_EQ(FloatToBf16(FromBits(0x3f808001u)), 0x3f81);
  EXPECT_EQ(Bf16ToFloat(0xc000), -2.0f);
}

TEST(DTypeTest, Bf16SpecialValues) {
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(std::numeric_limits<float>::quiet_NaN()))));
  // A NaN whose payload sits only in the low bits must stay NaN.
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(FromBits(0x7f800001u)))));
  EXPECT_EQ(Bf16ToFloat(FloatToBf16(INFINITY)), INFINITY);
  EXPECT_EQ(Bf16ToFloat(FloatToBf16(-INFINITY)), -INFINITY);
  // The largest float rounds to infinity in bf16, as IEEE rounding says.
  EXPECT_EQ(Bf16ToFloat(FloatToBf16(std::numeric_limits<float>::max())), INFINITY);
}

TEST(DTypeTest, F16Conversion) {
  EXPECT_EQ(F16ToFloat(0x3c00), 1.0f);
  EXPECT_EQ(F16ToFloat(0xc000), -2.0f);
  EXPECT_EQ(F16ToFloat(0x7bff), 65504.0f);
  EXPECT_EQ(F16ToFloat(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(F16ToFloat(0x03ff), std::ldexp(1023.0f, -24));
  EXPECT_EQ(F16ToFloat(0x7c00), INFINITY);
  EXPECT_TRUE(std::isnan(F16ToFloat(0x7e00)));
  EXPECT_EQ(F16ToFloat(0x8000), -0.0f);
  EXPECT_TRUE(std::signbit(F16ToFloat(0x8000)));
}

TEST(DTypeTest, ParseComputeDType) {
  EXPECT_EQ(*ParseComputeDType("F32"), DType::kF32);
  EXPECT_EQ(*ParseComputeDType("bfloat16"), DType::kBF16);
  EXPECT_FALSE(ParseComputeDType("f16").ok());
  EXPECT_EQ(*ParseComputeDType("int8"), DType::kI8);
  EXPECT_EQ(*ParseComputeDType("I8"), DType::kI8);
  EXPECT_FALSE(ParseComputeDType("int3").ok());
}

}  // namespace
}  // namespace moe
