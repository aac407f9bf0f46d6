#include "model/fp8_weights.h"

#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/dtype.h"

namespace moe {

float DecodeE4m3(uint8_t byte) {
  const int sign = byte >> 7;
  const int exp = (byte >> 3) & 15;
  const int man = byte & 7;
  float v;
  if (exp == 15 && man == 7) {
    v = std::nanf("");
  } else if (exp == 0) {
    v = std::ldexp(static_cast<float>(man), -9);  // man / 8 * 2^-6
  } else {
    v = std::ldexp(static_cast<float>(8 + man), exp - 10);  // (1 + man / 8) * 2^(exp - 7)
  }
  return sign ? -v : v;
}

absl::StatusOr<Tensor> DecodeFp8Blocks(const SafetensorsFile::Raw& weight,
                                       const SafetensorsFile::Raw& scale, int64_t bn, int64_t bk,
                                       const std::string& file, const std::string& weight_name,
                                       const std::string& scale_name) {
  auto bad = [&](const std::string& name, const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": tensor '", name, "': ", what));
  };
  const auto& ws = weight.entry->shape;
  if (weight.entry->dtype != "F8_E4M3" || ws.size() != 2) {
    return bad(weight_name, absl::StrCat("expected F8_E4M3 [N, K], got ", weight.entry->dtype,
                                         " ", ShapeToString(ws)));
  }
  const int64_t n = ws[0], k = ws[1];
  const int64_t sn = (n + bn - 1) / bn, sk = (k + bk - 1) / bk;
  const std::vector<int64_t> want = {sn, sk};
  if (scale.entry->dtype != "F32" || scale.entry->shape != want) {
    return bad(scale_name, absl::StrCat("expected F32 ", ShapeToString(want), " (one scale per ",
                                        bn, " x ", bk, " block of ", ShapeToString(ws),
                                        "), got ", scale.entry->dtype, " ",
                                        ShapeToString(scale.entry->shape)));
  }
  std::vector<float> scales(static_cast<size_t>(sn * sk));
  std::memcpy(scales.data(), scale.data, scales.size() * sizeof(float));
  for (size_t i = 0; i < scales.size(); ++i) {
    if (!std::isfinite(scales[i]) || !(scales[i] > 0)) {
      return bad(scale_name, absl::StrCat("scale ", scales[i], " of block [", i / sk, ", ",
                                          i % sk, "] is not a positive finite number"));
    }
  }
  float table[256];
  for (int b = 0; b < 256; ++b) table[b] = DecodeE4m3(static_cast<uint8_t>(b));
  auto out = std::make_shared<std::vector<uint16_t>>(static_cast<size_t>(n * k));
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* row = weight.data + i * k;
    const float* srow = scales.data() + (i / bn) * sk;
    uint16_t* dst = out->data() + i * k;
    for (int64_t j = 0; j < k; ++j) {
      const float q = table[row[j]];
      if (std::isnan(q)) {
        return bad(weight_name, absl::StrCat("NaN code 0x", absl::Hex(row[j]), " at [", i, ", ",
                                             j, "]"));
      }
      dst[j] = FloatToBf16(q * srow[j / bk]);
    }
  }
  const void* data = out->data();
  return Tensor(DType::kBF16, {n, k}, std::move(out), data);
}

}  // namespace moe
