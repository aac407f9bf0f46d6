// MXFP4 (gpt-oss): the e2m1 table, low nibble first, the e8m0 group scale,
// and the errors that stop a malformed checkpoint.
#include "model/mxfp4_weights.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/status_matchers.h"

namespace moe {
namespace {

using ::moe::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

TEST(Mxfp4WeightsTest, E2m1CodesDecodeAsTheFormatDefines) {
  const float want[16] = {0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0f, -0.5, -1, -1.5, -2, -3, -4, -6};
  for (int c = 0; c < 16; ++c) EXPECT_EQ(DecodeE2m1(static_cast<uint8_t>(c)), want[c]) << c;
  EXPECT_TRUE(std::signbit(DecodeE2m1(8)));
}

struct Stored {
  SafetensorsFile::Entry entry;
  std::vector<uint8_t> bytes;
  SafetensorsFile::Raw raw() const { return {&entry, bytes.data()}; }
};

Stored U8(std::vector<int64_t> shape, std::vector<uint8_t> bytes) {
  Stored s;
  s.entry.dtype = "U8";
  s.entry.shape = std::move(shape);
  s.bytes = std::move(bytes);
  return s;
}

// Two rows of one group each: row 0 scale 2^0, row 1 scale 2^-3. Byte b
// holds value 2b (low nibble) and 2b + 1 (high nibble).
TEST(Mxfp4WeightsTest, NibblesLowFirstTimesTheGroupScale) {
  std::vector<uint8_t> blocks(32);
  for (int b = 0; b < 16; ++b) {
    blocks[static_cast<size_t>(b)] = static_cast<uint8_t>((b % 16) | ((15 - b) << 4));
    blocks[static_cast<size_t>(16 + b)] = 0x72;  // low 2 (1.0), high 7 (6.0)
  }
  Stored bl = U8({2, 1, 16}, blocks);
  Stored sc = U8({2, 1}, {127, 124});
  ASSERT_OK_AND_ASSIGN(Mxfp4Decoded d, DecodeMxfp4(bl.raw(), sc.raw(), "f", "b", "s"));
  EXPECT_EQ(d.shape, (std::vector<int64_t>{2, 32}));
  for (int b = 0; b < 16; ++b) {
    EXPECT_EQ(d.values[static_cast<size_t>(2 * b)], DecodeE2m1(static_cast<uint8_t>(b)));
    EXPECT_EQ(d.values[static_cast<size_t>(2 * b + 1)], DecodeE2m1(static_cast<uint8_t>(15 - b)));
    EXPECT_EQ(d.values[static_cast<size_t>(32 + 2 * b)], 1.0f / 8);
    EXPECT_EQ(d.values[static_cast<size_t>(32 + 2 * b + 1)], 6.0f / 8);
  }
}

TEST(Mxfp4WeightsTest, MalformedTensorsAreRejectedByName) {
  Stored bl = U8({1, 1, 16}, std::vector<uint8_t>(16, 0x11));
  Stored nan_scale = U8({1, 1}, {255});
  EXPECT_THAT(
      DecodeMxfp4(bl.raw(), nan_scale.raw(), "m.safetensors", "x_blocks", "x_scales"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr("m.safetensors"), HasSubstr("'x_scales'"), HasSubstr("scale 255"))));
  Stored wrong = U8({1, 2}, {127, 127});
  EXPECT_THAT(DecodeMxfp4(bl.raw(), wrong.raw(), "m", "x_blocks", "x_scales"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected U8 [1, 1]")));
  Stored not_blocks = U8({1, 1, 8}, std::vector<uint8_t>(8, 0));
  EXPECT_THAT(DecodeMxfp4(not_blocks.raw(), wrong.raw(), "m", "x_blocks", "x_scales"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'x_blocks'")));
}

// The naive reference: the nearest of the 15 e2m1 values by exhaustive
// search, ties to the even code, beyond 6 the largest.
uint8_t NaiveE2m1(float v) {
  uint8_t best = 0;
  for (uint8_t c = 0; c < 16; ++c) {
    const double d = std::fabs(static_cast<double>(v) - DecodeE2m1(c));
    const double db = std::fabs(static_cast<double>(v) - DecodeE2m1(best));
    if (d < db || (d == db && (best & 1) != 0 && (c & 1) == 0)) best = c;
  }
  return best == 8 ? 0 : best;  // -0 is written +0
}

TEST(Mxfp4WeightsTest, EncodeE2m1IsNearestTiesToEvenSaturating) {
  // Every midpoint between neighbours goes to the even code.
  EXPECT_EQ(EncodeE2m1(0.25f), 0);
  EXPECT_EQ(EncodeE2m1(0.75f), 2);  // 1.0, not 0.5
  EXPECT_EQ(EncodeE2m1(1.25f), 2);  // 1.0, not 1.5
  EXPECT_EQ(EncodeE2m1(1.75f), 4);  // 2.0
  EXPECT_EQ(EncodeE2m1(2.5f), 4);   // 2.0
  EXPECT_EQ(EncodeE2m1(3.5f), 6);   // 4.0
  EXPECT_EQ(EncodeE2m1(5.0f), 6);   // 4.0, not 6.0
  EXPECT_EQ(EncodeE2m1(-5.0f), 14);
  EXPECT_EQ(EncodeE2m1(1e30f), 7);  // saturates
  EXPECT_EQ(EncodeE2m1(-7.0f), 15);
  EXPECT_EQ(EncodeE2m1(-0.1f), 0);  // rounds to zero: +0
  for (int i = -2000; i <= 2000; ++i) {
    const float v = static_cast<float>(i) / 256.0f;
    EXPECT_EQ(EncodeE2m1(v), NaiveE2m1(v)) << v;
  }
}

TEST(Mxfp4WeightsTest, EncodeThenDecodeIsTheNearestGridValueAndIdempotent) {
  // 3 rows of 64: groups of varied magnitude, one all zero, one with a
  // single tiny value.
  std::vector<float> v(3 * 64);
  uint32_t state = 12345;
  for (size_t i = 0; i < v.size(); ++i) {
    state = state * 1664525u + 1013904223u;
    const float u = static_cast<float>(state >> 8) / 16777216.0f - 0.5f;
    v[i] = u * std::ldexp(1.0f, static_cast<int>(i / 32) * 3 - 6);
  }
  for (int i = 64; i < 96; ++i) v[static_cast<size_t>(i)] = 0;
  v[100] = 3e-30f;
  std::vector<uint8_t> blocks, scales;
  ASSERT_OK(EncodeMxfp4(v, 64, &blocks, &scales));
  ASSERT_EQ(blocks.size(), 6u * 16);
  ASSERT_EQ(scales.size(), 6u);
  EXPECT_EQ(scales[2], 127);  // the zero group
  ASSERT_OK_AND_ASSIGN(std::vector<float> q, RoundToMxfp4(v, 64));
  for (size_t g = 0; g < 6; ++g) {
    float amax = 0;
    for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(v[g * 32 + i]));
    if (amax == 0) continue;
    // The OCP MX scale: 2^(floor(log2 amax) - 2).
    const int shared = static_cast<int>(std::floor(std::log2(static_cast<double>(amax)))) - 2;
    EXPECT_EQ(static_cast<int>(scales[g]) - 127, shared) << g;
    for (int i = 0; i < 32; ++i) {
      const size_t at = g * 32 + i;
      const float want =
          DecodeE2m1(NaiveE2m1(std::ldexp(v[at], -shared))) * std::ldexp(1.0f, shared);
      EXPECT_EQ(q[at], want) << g << ", " << i;
    }
  }
  // Values on the grid encode to the same bytes.
  std::vector<uint8_t> blocks2, scales2;
  ASSERT_OK(EncodeMxfp4(q, 64, &blocks2, &scales2));
  EXPECT_EQ(blocks2, blocks);
  EXPECT_EQ(scales2, scales);
}

TEST(Mxfp4WeightsTest, EncodeRejectsRowsNotInGroupsOf32AndNonFiniteValues) {
  std::vector<uint8_t> blocks, scales;
  EXPECT_THAT(EncodeMxfp4(std::vector<float>(48, 1.0f), 48, &blocks, &scales),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("multiple of 32")));
  std::vector<float> v(32, 1.0f);
  v[5] = std::nanf("");
  EXPECT_THAT(EncodeMxfp4(v, 32, &blocks, &scales),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("index 5")));
}

}  // namespace
}  // namespace moe
