// Element types of tensors moving through moe-serve, with the conversions
// between them. All conversions are exact functions of their input (no
// rounding mode state), so results are reproducible across machines.
#ifndef MOE_COMMON_DTYPE_H_
#define MOE_COMMON_DTYPE_H_

#include <cstdint>
#include <cstring>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace moe {

// kI8 and kI4 are compute precisions: int8 weights (one scale per output
// channel) or 4-bit weights (one bf16 scale per 32 inputs), with
// activations quantized per 32-input group at run time; tensors crossing
// module boundaries stay f32 (see experts/quantized_matmul.h). A kI8
// tensor holds int8 values; there are no kI4 tensors.
enum class DType { kF32, kBF16, kF16, kI8, kI4 };

// Bytes per element (kI4: 1, the byte two values share).
inline int64_t DTypeSize(DType t) {
  return t == DType::kF32 ? 4 : (t == DType::kI8 || t == DType::kI4) ? 1 : 2;
}

// Bytes one weight takes once packed for compute dtype `t`, scales
// included (int4: 4 bits plus a 16-bit scale per 32; int8's per-channel
// scales are left out).
inline double PackedBytesPerWeight(DType t) {
  return t == DType::kI4 ? 4.5 / 8 : static_cast<double>(DTypeSize(t));
}

// "f32", "bf16", "f16", "int8", "int4".
const char* DTypeName(DType t);

// Parses a compute precision: "f32", "bf16", "int8" or "int4"
// (case-insensitive, also "float32", "fp32", "bfloat16", "i8", "i4").
absl::StatusOr<DType> ParseComputeDType(absl::string_view name);

// bfloat16 <-> float. Float to bf16 rounds to nearest even; NaN stays NaN
// (quiet), infinities stay infinite.
inline uint16_t FloatToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) {  // NaN: keep sign, force quiet.
    return static_cast<uint16_t>((bits >> 16) | 0x0040u);
  }
  const uint32_t rounding_bias = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding_bias) >> 16);
}

inline float Bf16ToFloat(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Rounds a float to the nearest bf16-representable float.
inline float RoundToBf16(float f) { return Bf16ToFloat(FloatToBf16(f)); }

// IEEE half -> float (exact; subnormals, infinities and NaN included).
float F16ToFloat(uint16_t h);

// Converts n elements of `src` (in dtype `from`) to float (kI8: int8
// values, unscaled).
void ConvertToFloat(DType from, const void* src, int64_t n, float* dst);

}  // namespace moe

#endif  // MOE_COMMON_DTYPE_H_
