// Block-scaled FP8 weights as DeepSeek-V3 and the Qwen3 "-FP8" releases
// ship them: a weight W_q [N, K] of F8_E4M3 (e4m3fn: bias 7, no infinities,
// S.1111.111 is NaN) and an f32 "weight_scale_inv" [ceil(N / bn),
// ceil(K / bk)], one scale per block of bn rows x bk columns. Decoded as
// the reference implementations do: W[i, j] = bf16(e4m3(W_q[i, j]) x
// scale[i / bn, j / bk]), the product in f32, rounded to nearest even.
//
// Thread-safety: pure functions.
#ifndef MOE_MODEL_FP8_WEIGHTS_H_
#define MOE_MODEL_FP8_WEIGHTS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/tensor.h"
#include "model/safetensors_file.h"

namespace moe {

// The value of an e4m3fn byte (NaN for S.1111.111).
float DecodeE4m3(uint8_t byte);

// The e4m3fn byte nearest to `v`, ties to even, saturating at +-448 (the
// format has no infinities); NaN gives the NaN code 0x7F.
uint8_t EncodeE4m3(float v);

// A weight quantized as the FP8 releases are: per block, scale_inv =
// max |w| / 448 (1 for a block of zeros, at least FLT_MIN) and W_q =
// e4m3(w / scale_inv).
struct Fp8Encoded {
  std::vector<uint8_t> codes;        // [N, K]
  std::vector<float> scale_inv;      // [ceil(N / bn), ceil(K / bk)]
  std::vector<int64_t> scale_shape;  // {ceil(N / bn), ceil(K / bk)}
};
// Quantizes the 2-D `weight` ([N, K], any float dtype) in blocks of bn x bk.
// A non-finite value is INVALID_ARGUMENT.
absl::StatusOr<Fp8Encoded> EncodeFp8Blocks(const Tensor& weight, int64_t bn, int64_t bk);

// Decodes `weight` (F8_E4M3 [N, K]) with `scale` (F32 [ceil(N / bn),
// ceil(K / bk)]) into a BF16 [N, K] tensor. `weight_name`, `scale_name`
// and `file` name them in errors: a wrong dtype or shape, a NaN code or a
// non-finite or non-positive scale is INVALID_ARGUMENT.
absl::StatusOr<Tensor> DecodeFp8Blocks(const SafetensorsFile::Raw& weight,
                                       const SafetensorsFile::Raw& scale, int64_t bn, int64_t bk,
                                       const std::string& file, const std::string& weight_name,
                                       const std::string& scale_name);

}  // namespace moe

#endif  // MOE_MODEL_FP8_WEIGHTS_H_
