// Block-scaled FP8 (e4m3fn) weights: the code table, the per-block scales
// and bf16 rounding, and the errors that stop a malformed checkpoint.
#include "model/fp8_weights.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/naive_reference.h"
#include "tests/status_matchers.h"

namespace moe {
namespace {

using ::moe::testing::NaiveRoundBf16;
using ::moe::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

TEST(Fp8WeightsTest, E4m3CodesDecodeAsTheFormatDefines) {
  EXPECT_EQ(DecodeE4m3(0x00), 0.0f);
  EXPECT_TRUE(std::signbit(DecodeE4m3(0x80)));
  EXPECT_EQ(DecodeE4m3(0x38), 1.0f);  // exponent 7 (the bias), mantissa 0
  EXPECT_EQ(DecodeE4m3(0xB8), -1.0f);
  EXPECT_EQ(DecodeE4m3(0x3C), 1.5f);          // mantissa 4/8
  EXPECT_EQ(DecodeE4m3(0x7E), 448.0f);        // the largest finite: 1.75 * 2^8
  EXPECT_EQ(DecodeE4m3(0x08), 0.015625f);     // the smallest normal: 2^-6
  EXPECT_EQ(DecodeE4m3(0x01), 0.001953125f);  // the smallest subnormal: 2^-9
  EXPECT_EQ(DecodeE4m3(0x07), 7 * 0.001953125f);
  EXPECT_EQ(DecodeE4m3(0x78), 256.0f);  // S.1111.000 is finite (no infinities)
  EXPECT_TRUE(std::isnan(DecodeE4m3(0x7F)));
  EXPECT_TRUE(std::isnan(DecodeE4m3(0xFF)));
}

struct Stored {
  SafetensorsFile::Entry entry;
  std::vector<uint8_t> bytes;
  SafetensorsFile::Raw raw() const { return {&entry, bytes.data()}; }
};

Stored Fp8(std::vector<int64_t> shape, std::vector<uint8_t> codes) {
  Stored s;
  s.entry.dtype = "F8_E4M3";
  s.entry.shape = std::move(shape);
  s.bytes = std::move(codes);
  return s;
}

Stored F32(std::vector<int64_t> shape, const std::vector<float>& values) {
  Stored s;
  s.entry.dtype = "F32";
  s.entry.shape = std::move(shape);
  s.bytes.resize(values.size() * 4);
  std::memcpy(s.bytes.data(), values.data(), s.bytes.size());
  return s;
}

float Bf16Value(const Tensor& t, int64_t i) {
  uint16_t b;
  std::memcpy(&b, static_cast<const char*>(t.data()) + 2 * i, 2);
  const uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// A 3 x 5 weight in 2 x 2 blocks (the last block row and column partial):
// each value is bf16(code value x its block's scale).
TEST(Fp8WeightsTest, EachBlockTakesItsScaleAndRoundsToBf16) {
  // Codes: 1.0 (0x38), 1.5 (0x3C), -2 (0xC0), 0.5 (0x30), 3 (0x44).
  const std::vector<uint8_t> codes = {0x38, 0x3C, 0xC0, 0x30, 0x44,  //
                                      0x3C, 0x38, 0x44, 0xC0, 0x30,  //
                                      0x30, 0x44, 0x38, 0x3C, 0xC0};
  const std::vector<float> code_values = {1,  1.5, -2,  0.5, 3, 1.5, 1, 3,
                                          -2, 0.5, 0.5, 3,   1, 1.5, -2};
  const std::vector<float> scales = {0.1f, 3.0f, 7.0f, 1e-3f, 0.3333f, 5.5f};  // [2, 3]
  Stored w = Fp8({3, 5}, codes);
  Stored s = F32({2, 3}, scales);
  ASSERT_OK_AND_ASSIGN(Tensor t, DecodeFp8Blocks(w.raw(), s.raw(), 2, 2, "f", "w", "w_scale_inv"));
  ASSERT_EQ(t.dtype(), DType::kBF16);
  ASSERT_EQ(t.shape(), (std::vector<int64_t>{3, 5}));
  for (int64_t i = 0; i < 3; ++i) {
    for (int64_t j = 0; j < 5; ++j) {
      const float scale = scales[static_cast<size_t>((i / 2) * 3 + j / 2)];
      EXPECT_EQ(Bf16Value(t, i * 5 + j), NaiveRoundBf16(code_values[i * 5 + j] * scale))
          << i << ", " << j;
    }
  }
}

TEST(Fp8WeightsTest, MalformedTensorsAreRejectedByName) {
  Stored w = Fp8({2, 2}, {0x38, 0x38, 0x7F, 0x38});
  Stored good = F32({1, 1}, {1.0f});
  EXPECT_THAT(DecodeFp8Blocks(w.raw(), good.raw(), 128, 128, "m.safetensors", "w", "w_s"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("m.safetensors"), HasSubstr("'w'"), HasSubstr("NaN code"),
                             HasSubstr("[1, 0]"))));
  Stored w_ok = Fp8({2, 2}, {0x38, 0x38, 0x38, 0x38});
  Stored wrong_shape = F32({2, 1}, {1.0f, 1.0f});
  EXPECT_THAT(DecodeFp8Blocks(w_ok.raw(), wrong_shape.raw(), 128, 128, "m", "w", "w_s"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("'w_s'"), HasSubstr("expected F32 [1, 1]"))));
  Stored zero = F32({1, 1}, {0.0f});
  EXPECT_THAT(DecodeFp8Blocks(w_ok.raw(), zero.raw(), 128, 128, "m", "w", "w_s"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a positive finite")));
  Stored not_fp8 = F32({2, 2}, {1, 2, 3, 4});
  EXPECT_THAT(DecodeFp8Blocks(not_fp8.raw(), good.raw(), 128, 128, "m", "w", "w_s"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected F8_E4M3")));
}

// The naive reference: the nearest finite e4m3fn value by exhaustive
// search, ties to the even code; beyond 448, 448.
uint8_t NaiveE4m3(float v) {
  uint8_t best = 0;
  for (int c = 0; c < 256; ++c) {
    const float q = DecodeE4m3(static_cast<uint8_t>(c));
    if (std::isnan(q)) continue;
    const double d = std::fabs(static_cast<double>(v) - q);
    const double db = std::fabs(static_cast<double>(v) - DecodeE4m3(best));
    if (d < db || (d == db && (best & 1) != 0 && (c & 1) == 0)) best = static_cast<uint8_t>(c);
  }
  return best == 0x80 ? 0 : best;
}

TEST(Fp8WeightsTest, EncodeE4m3IsNearestTiesToEvenSaturating) {
  EXPECT_EQ(EncodeE4m3(1.0f), 0x38);
  EXPECT_EQ(EncodeE4m3(1.0625f), 0x38);  // midpoint of 1 and 1.125: the even code
  EXPECT_EQ(EncodeE4m3(1.1875f), 0x3A);  // midpoint of 1.125 and 1.25: the even code
  EXPECT_EQ(EncodeE4m3(1e9f), 0x7E);     // saturates at 448
  EXPECT_EQ(EncodeE4m3(-1e9f), 0xFE);
  EXPECT_EQ(EncodeE4m3(0.0009765625f), 0x00);  // half the smallest subnormal: to 0
  EXPECT_EQ(EncodeE4m3(std::nanf("")), 0x7F);
  uint32_t state = 7;
  for (int i = 0; i < 20000; ++i) {
    state = state * 1664525u + 1013904223u;
    const float u = static_cast<float>(state >> 8) / 16777216.0f - 0.5f;
    const float v = u * std::ldexp(1.0f, i % 24 - 10);
    EXPECT_EQ(EncodeE4m3(v), NaiveE4m3(v)) << v;
  }
  // Every code's own value and every midpoint between neighbours.
  for (int c = 0; c < 0x7E; ++c) {
    const float a = DecodeE4m3(static_cast<uint8_t>(c));
    const float b = DecodeE4m3(static_cast<uint8_t>(c + 1));
    EXPECT_EQ(EncodeE4m3(a), NaiveE4m3(a)) << c;
    EXPECT_EQ(EncodeE4m3((a + b) / 2), NaiveE4m3((a + b) / 2)) << c;
  }
}

TEST(Fp8WeightsTest, ATinyBlockKeepsAPositiveScale) {
  // max |w| / 448 underflows to 0 in f32: the scale stays FLT_MIN, and the
  // block decodes (to zeros) instead of failing as 0 / 0.
  const Tensor t = Tensor::FromFloats(DType::kF32, {1, 2}, {1e-44f, -1e-44f});
  ASSERT_OK_AND_ASSIGN(Fp8Encoded enc, EncodeFp8Blocks(t, 128, 128));
  EXPECT_EQ(enc.scale_inv[0], std::numeric_limits<float>::min());
  EXPECT_EQ(enc.codes[0], 0);
  EXPECT_EQ(enc.codes[1], 0);
  Stored codes = Fp8({1, 2}, enc.codes);
  Stored scales = F32({1, 1}, enc.scale_inv);
  EXPECT_OK(DecodeFp8Blocks(codes.raw(), scales.raw(), 128, 128, "f", "w", "s").status());
}

TEST(Fp8WeightsTest, BlocksEncodeWithMaxOver448AndDecodeBack) {
  // 5 x 7 in 2 x 4 blocks; one block all zero.
  std::vector<float> w(35);
  for (size_t i = 0; i < w.size(); ++i) w[i] = std::sin(static_cast<float>(i) * 1.3f) * (1 + i % 5);
  for (int r = 0; r < 2; ++r) {
    for (int c = 0; c < 4; ++c) w[static_cast<size_t>(r * 7 + c)] = 0;
  }
  const Tensor t = Tensor::FromFloats(DType::kF32, {5, 7}, w);
  ASSERT_OK_AND_ASSIGN(Fp8Encoded enc, EncodeFp8Blocks(t, 2, 4));
  ASSERT_EQ(enc.scale_inv.size(), 3u * 2);
  EXPECT_EQ(enc.scale_inv[0], 1.0f);
  for (int bi = 0; bi < 3; ++bi) {
    for (int bj = 0; bj < 2; ++bj) {
      float amax = 0;
      for (int i = bi * 2; i < std::min(5, bi * 2 + 2); ++i) {
        for (int j = bj * 4; j < std::min(7, bj * 4 + 4); ++j) {
          amax = std::max(amax, std::fabs(w[static_cast<size_t>(i * 7 + j)]));
        }
      }
      if (amax > 0) {
        EXPECT_EQ(enc.scale_inv[static_cast<size_t>(bi * 2 + bj)], amax / 448.0f);
      }
    }
  }
  Stored codes = Fp8({5, 7}, enc.codes);
  Stored scales = F32({3, 2}, enc.scale_inv);
  ASSERT_OK_AND_ASSIGN(Tensor d, DecodeFp8Blocks(codes.raw(), scales.raw(), 2, 4, "f", "w", "s"));
  for (int64_t i = 0; i < 5; ++i) {
    for (int64_t j = 0; j < 7; ++j) {
      const float s = enc.scale_inv[static_cast<size_t>((i / 2) * 2 + j / 4)];
      const float v = w[static_cast<size_t>(i * 7 + j)];
      EXPECT_EQ(enc.codes[static_cast<size_t>(i * 7 + j)], NaiveE4m3(v / s)) << i << ", " << j;
      // e4m3 keeps 3 mantissa bits (relative error <= 2^-4), bf16 adds 2^-9;
      // below the normal range the step is 2^-9 of the scale.
      EXPECT_NEAR(Bf16Value(d, i * 7 + j), v, std::fabs(v) * 0.0665f + s * 0.001f)
          << i << ", " << j;
    }
  }
}

}  // namespace
}  // namespace moe
