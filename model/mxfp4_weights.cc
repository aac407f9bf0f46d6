#include "model/mxfp4_weights.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/tensor.h"

namespace moe {

float DecodeE2m1(uint8_t code) {
  static constexpr float kMagnitude[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
  const float v = kMagnitude[code & 7];
  return (code & 8) ? -v : v;
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
    return bad(scales_name, absl::StrCat("expected U8 ", ShapeToString(want),
                                         " (one e8m0 scale per 32 values of ", blocks_name,
                                         "), got ", scales.entry->dtype, " ",
                                         ShapeToString(scales.entry->shape)));
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
    const float scale = std::ldexp(1.0f, static_cast<int>(e) - 127);
    const uint8_t* in = blocks.data + g * 16;
    float* dst = out.values.data() + g * 32;
    for (int b = 0; b < 16; ++b) {
      dst[2 * b] = DecodeE2m1(in[b] & 15) * scale;
      dst[2 * b + 1] = DecodeE2m1(in[b] >> 4) * scale;
    }
  }
  return out;
}

}  // namespace moe
