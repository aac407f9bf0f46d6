// MXFP4 weights as gpt-oss ships them (OCP microscaling FP4): a "_blocks"
// U8 tensor [..., R, G, 16] holding two e2m1 values per byte, low nibble
// first (magnitudes 0, 0.5, 1, 1.5, 2, 3, 4, 6; bit 3 is the sign), and a
// "_scales" U8 tensor [..., R, G] of e8m0 exponents, each scaling its
// group of 32 values by 2^(scale - 127) (255 is NaN in the format and is
// rejected). Decoded, row r holds R rows of K = 32 G values.
//
// Encoding (for writing checkpoints) follows the OCP MX specification's
// conversion: a group's scale is 2^(floor(log2(max |v|)) - 2) (e2m1's
// largest exponent is 2), each value divided by it is rounded to the
// nearest e2m1 value, ties to the even code, saturating at +-6; the
// exponent is clamped to [-127, 127]. Encoding values that an encoding
// decoded to gives the same bytes back, except for a group whose values
// all rounded to zero (its scale byte comes back as 127).
//
// Thread-safety: pure functions.
#ifndef MOE_MODEL_MXFP4_WEIGHTS_H_
#define MOE_MODEL_MXFP4_WEIGHTS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/safetensors_file.h"

namespace moe {

// The value of an e2m1 nibble (the low 4 bits of `code`).
float DecodeE2m1(uint8_t code);

// The e2m1 code (sign in bit 3) nearest to `v`, ties to the even code,
// saturating at +-6; NaN gives +0. Zero is always +0.
uint8_t EncodeE2m1(float v);

// Encodes `values`, row-major rows of `k` values (k a positive multiple of
// 32), into `blocks` (16 bytes per group of 32, low nibble first) and
// `scales` (one e8m0 byte per group), both resized. Non-finite values are
// INVALID_ARGUMENT naming their index; a group of zeros gets scale 2^0.
absl::Status EncodeMxfp4(const std::vector<float>& values, int64_t k, std::vector<uint8_t>* blocks,
                         std::vector<uint8_t>* scales);

// The values MXFP4 stores for `values` (EncodeMxfp4, then decoded).
absl::StatusOr<std::vector<float>> RoundToMxfp4(const std::vector<float>& values, int64_t k);

struct Mxfp4Decoded {
  std::vector<int64_t> shape;  // the blocks' leading dims, then K = 32 G
  std::vector<float> values;   // row-major, exact (every value is k * 2^e)
};

// Decodes `blocks` with `scales`; names them in errors (a wrong dtype or
// shape, or a NaN scale, is INVALID_ARGUMENT naming the file and tensor).
absl::StatusOr<Mxfp4Decoded> DecodeMxfp4(const SafetensorsFile::Raw& blocks,
                                         const SafetensorsFile::Raw& scales,
                                         const std::string& file, const std::string& blocks_name,
                                         const std::string& scales_name);

}  // namespace moe

#endif  // MOE_MODEL_MXFP4_WEIGHTS_H_
