// MXFP4 (gpt-oss): the e2m1 table, low nibble first, the e8m0 group scale,
// and the errors that stop a malformed checkpoint.
#include "model/mxfp4_weights.h"

#include <cmath>
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
  EXPECT_THAT(DecodeMxfp4(bl.raw(), nan_scale.raw(), "m.safetensors", "x_blocks", "x_scales"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("m.safetensors"), HasSubstr("'x_scales'"),
                             HasSubstr("scale 255"))));
  Stored wrong = U8({1, 2}, {127, 127});
  EXPECT_THAT(DecodeMxfp4(bl.raw(), wrong.raw(), "m", "x_blocks", "x_scales"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected U8 [1, 1]")));
  Stored not_blocks = U8({1, 1, 8}, std::vector<uint8_t>(8, 0));
  EXPECT_THAT(DecodeMxfp4(not_blocks.raw(), wrong.raw(), "m", "x_blocks", "x_scales"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'x_blocks'")));
}

}  // namespace
}  // namespace moe
