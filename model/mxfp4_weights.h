// MXFP4 weights as gpt-oss ships them (OCP microscaling FP4): a "_blocks"
// U8 tensor [..., R, G, 16] holding two e2m1 values per byte, low nibble
// first (magnitudes 0, 0.5, 1, 1.5, 2, 3, 4, 6; bit 3 is the sign), and a
// "_scales" U8 tensor [..., R, G] of e8m0 exponents, each scaling its
// group of 32 values by 2^(scale - 127) (255 is NaN in the format and is
// rejected). Decoded, row r holds R rows of K = 32 G values.
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
