#include "model/mxfp4_weights.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/tensor.h"

namespace moe {

float DecodeE2m1(uint8_t code) {
  static constexpr float kMagnitude[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
  const float v = kMagnitude[code & 7];
  return (code & 8) ? -v : v;
}

namespace {

// One group: 16 bytes (low nibble first) times 2^(scale - 127), 32 floats.
void DecodeGroup(const uint8_t* block, uint8_t scale, float* dst) {
  const float s = std::ldexp(1.0f, static_cast<int>(scale) - 127);
  for (int b = 0; b < 16; ++b) {
    dst[2 * b] = DecodeE2m1(block[b] & 15) * s;
    dst[2 * b + 1] = DecodeE2m1(block[b] >> 4) * s;
  }
}

}  // namespace

uint8_t EncodeE2m1(float v) {
  static constexpr float kMagnitude[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
  if (std::isnan(v)) return 0;
  const float a = std::fabs(v);
  if (a >= 6.0f) return static_cast<uint8_t>(7 | (std::signbit(v) ? 8 : 0));  // saturates
  uint8_t best = 0;
  for (uint8_t c = 1; c < 8; ++c) {
    const float d = std::fabs(a - kMagnitude[c]), db = std::fabs(a - kMagnitude[best]);
    // Strictly nearer, or as near with an even code (the previous code is
    // odd then, since neighbours alternate).
    if (d < db || (d == db && c % 2 == 0)) best = c;
  }
  if (best == 0) return 0;  // +0 for zero and for values that round to it
  return static_cast<uint8_t>(best | (std::signbit(v) ? 8 : 0));
}

absl::Status EncodeMxfp4(const std::vector<float>& values, int64_t k, std::vector<uint8_t>* blocks,
                         std::vector<uint8_t>* scales) {
  if (k <= 0 || k % 32 != 0 || values.size() % static_cast<size_t>(k) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("MXFP4 needs rows of a positive multiple of 32 values; got ", values.size(),
                     " values in rows of ", k));
  }
  const size_t groups = values.size() / 32;
  blocks->assign(groups * 16, 0);
  scales->assign(groups, 127);
  for (size_t g = 0; g < groups; ++g) {
    const float* v = values.data() + g * 32;
    float amax = 0;
    for (int i = 0; i < 32; ++i) {
      if (!std::isfinite(v[i])) {
        return absl::InvalidArgumentError(
            absl::StrCat("MXFP4: value ", v[i], " at index ", g * 32 + i, " is not finite"));
      }
      amax = std::max(amax, std::fabs(v[i]));
    }
    if (amax == 0) continue;
    // floor(log2(amax)) exactly: frexp gives amax = m 2^e with m in [0.5, 1).
    int e = 0;
    std::frexp(amax, &e);
    const int shared = std::clamp(e - 1 - 2, -127, 127);
    (*scales)[g] = static_cast<uint8_t>(shared + 127);
    uint8_t* out = blocks->data() + g * 16;
    for (int i = 0; i < 16; ++i) {
      const uint8_t lo = EncodeE2m1(std::ldexp(v[2 * i], -shared));
      const uint8_t hi = EncodeE2m1(std::ldexp(v[2 * i + 1], -shared));
      out[i] = static_cast<uint8_t>(lo | (hi << 4));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<float>> RoundToMxfp4(const std::vector<float>& values, int64_t k) {
  std::vector<uint8_t> blocks, scales;
  if (absl::Status st = EncodeMxfp4(values, k, &blocks, &scales); !st.ok()) return st;
  std::vector<float> out(values.size());
  for (size_t g = 0; g < scales.size(); ++g) {
    DecodeGroup(blocks.data() + g * 16, scales[g], out.data() + g * 32);
  }
  return out;
}

absl::StatusOr<Mxfp4Decoded> DecodeMxfp4(const SafetensorsFile::Raw& blocks,
                                         const SafetensorsFile::Raw& scales,
                                         const std::string& file, const std::string& blocks_name,
                                         const std::string& scales_name) {
  auto bad = [&](const std::string& name, const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": tensor '", name, "': ", what));
  };
  const auto& bs = blocks.entry->shape;
  if (blocks.entry->dtype != "U8" || bs.size() < 2 || bs.back() != 16) {
    return bad(blocks_name, absl::StrCat("expected U8 [..., G, 16] MXFP4 blocks, got ",
                                         blocks.entry->dtype, " ", ShapeToString(bs)));
  }
  const std::vector<int64_t> want(bs.begin(), bs.end() - 1);
  if (scales.entry->dtype != "U8" || scales.entry->shape != want) {
    return bad(scales_name,
               absl::StrCat("expected U8 ", ShapeToString(want),
                            " (one e8m0 scale per 32 values of ", blocks_name, "), got ",
                            scales.entry->dtype, " ", ShapeToString(scales.entry->shape)));
  }
  int64_t groups = 1;
  for (int64_t d : want) groups *= d;
  Mxfp4Decoded out;
  out.shape.assign(want.begin(), want.end() - 1);
  out.shape.push_back(want.back() * 32);
  out.values.resize(static_cast<size_t>(groups * 32));
  for (int64_t g = 0; g < groups; ++g) {
    const uint8_t e = scales.data[g];
    if (e == 255) {
      return bad(scales_name, absl::StrCat("scale 255 (NaN in e8m0) at group ", g));
    }
    DecodeGroup(blocks.data + g * 16, e, out.values.data() + g * 32);
  }
  return out;
}

}  // namespace moe
