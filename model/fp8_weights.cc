#include "model/fp8_weights.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
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

uint8_t EncodeE4m3(float v) {
  if (std::isnan(v)) return 0x7F;
  const uint8_t sign = std::signbit(v) ? 0x80 : 0;
  const float a = std::fabs(v);
  if (a >= 448.0f) return sign | 0x7E;  // the largest finite value
  // The codes' magnitudes increase with the code: binary search for the
  // last code whose value is <= a, then pick it or the next by distance.
  uint8_t lo = 0, hi = 0x7E;
  while (lo < hi) {
    const uint8_t mid = static_cast<uint8_t>((lo + hi + 1) / 2);
    if (DecodeE4m3(mid) <= a) {
      lo = mid;
    } else {
      hi = static_cast<uint8_t>(mid - 1);
    }
  }
  uint8_t code = lo;
  if (lo < 0x7E) {
    const float below = a - DecodeE4m3(lo), above = DecodeE4m3(static_cast<uint8_t>(lo + 1)) - a;
    if (above < below || (above == below && (lo & 1) != 0)) code = static_cast<uint8_t>(lo + 1);
  }
  return code == 0 ? 0 : static_cast<uint8_t>(sign | code);
}

absl::StatusOr<Fp8Encoded> EncodeFp8Blocks(const Tensor& weight, int64_t bn, int64_t bk) {
  if (weight.shape().size() != 2 || bn < 1 || bk < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("FP8 blocks need a 2-D weight, got ", weight.ShapeString()));
  }
  const int64_t n = weight.shape()[0], k = weight.shape()[1];
  const int64_t sn = (n + bn - 1) / bn, sk = (k + bk - 1) / bk;
  const std::vector<float> w = weight.ToFloats();
  Fp8Encoded out;
  out.codes.resize(w.size());
  out.scale_inv.assign(static_cast<size_t>(sn * sk), 0.0f);
  out.scale_shape = {sn, sk};
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < k; ++j) {
      const float v = w[static_cast<size_t>(i * k + j)];
      if (!std::isfinite(v)) {
        return absl::InvalidArgumentError(
            absl::StrCat("FP8: value ", v, " at [", i, ", ", j, "] is not finite"));
      }
      float& s = out.scale_inv[static_cast<size_t>((i / bn) * sk + j / bk)];
      s = std::max(s, std::fabs(v));
    }
  }
  // A block whose largest value is below 448 · FLT_MIN gets FLT_MIN, so
  // that no scale underflows to 0 (its codes then round to 0 or near).
  for (float& s : out.scale_inv) {
    s = s > 0 ? std::max(s / 448.0f, std::numeric_limits<float>::min()) : 1.0f;
  }
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < k; ++j) {
      const float s = out.scale_inv[static_cast<size_t>((i / bn) * sk + j / bk)];
      out.codes[static_cast<size_t>(i * k + j)] = EncodeE4m3(w[static_cast<size_t>(i * k + j)] / s);
    }
  }
  return out;
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
    return bad(weight_name, absl::StrCat("expected F8_E4M3 [N, K], got ", weight.entry->dtype, " ",
                                         ShapeToString(ws)));
  }
  const int64_t n = ws[0], k = ws[1];
  const int64_t sn = (n + bn - 1) / bn, sk = (k + bk - 1) / bk;
  const std::vector<int64_t> want = {sn, sk};
  if (scale.entry->dtype != "F32" || scale.entry->shape != want) {
    return bad(scale_name,
               absl::StrCat("expected F32 ", ShapeToString(want), " (one scale per ", bn, " x ", bk,
                            " block of ", ShapeToString(ws), "), got ", scale.entry->dtype, " ",
                            ShapeToString(scale.entry->shape)));
  }
  std::vector<float> scales(static_cast<size_t>(sn * sk));
  std::memcpy(scales.data(), scale.data, scales.size() * sizeof(float));
  for (size_t i = 0; i < scales.size(); ++i) {
    if (!std::isfinite(scales[i]) || !(scales[i] > 0)) {
      return bad(scale_name, absl::StrCat("scale ", scales[i], " of block [", i / sk, ", ", i % sk,
                                          "] is not a positive finite number"));
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
        return bad(weight_name,
                   absl::StrCat("NaN code 0x", absl::Hex(row[j]), " at [", i, ", ", j, "]"));
      }
      dst[j] = FloatToBf16(q * srow[j / bk]);
    }
  }
  const void* data = out->data();
  return Tensor(DType::kBF16, {n, k}, std::move(out), data);
}

}  // namespace moe
