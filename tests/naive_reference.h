// An independent, naive reference for the MoE layer, written with plain
// loops in double precision for the tests. It shares no code with the
// production path: its own bf16 decoding, its own activations (std::erf,
// std::tanh, std::exp), its own routing (a full sort), its own summation.
//
// For bf16 compute it rounds at the same points a bf16 PyTorch model does
// (the input, each Linear's result, the activation, the gated product) and
// accumulates in double.
#ifndef MOE_TESTS_NAIVE_REFERENCE_H_
#define MOE_TESTS_NAIVE_REFERENCE_H_

#include <cstdint>
#include <vector>

#include "model/layer_spec.h"

namespace moe::testing {

// Tensor values as doubles, decoded independently of common/dtype.
std::vector<double> NaiveValues(const Tensor& t);

// Rounds to the nearest bf16 (ties to even), independently of common/.
float NaiveRoundBf16(float x);

double NaiveActivation(Activation a, double x);

// y[rows, d_model] for one FFN block.
std::vector<double> NaiveFfn(const FfnSpec& spec, const FfnWeights& w, const std::vector<float>& x,
                             int64_t rows, bool bf16);

// llama.cpp's Q8_0 scheme, fake-quantized: per block of 32 consecutive
// values (the last one partial), d = max |v| / 127 and v = d · round(v / d)
// (half away from zero), in place.
void NaiveFakeQuantizeQ8_0(double* v, int64_t n);

// llama.cpp's Q4_0 scheme, fake-quantized: per block of 32, m = the value
// of largest magnitude, d = m / -8, v = d · min(7, floor(v / d + 0.5)).
void NaiveFakeQuantizeQ4_0(double* v, int64_t n);

// NaiveFfn (f32) as llama.cpp's Q8_0 × Q8_0 (weight_bits 8) or Q4_0 ×
// Q8_0 (weight_bits 4) path computes it: every weight row fake-quantized
// as Q8_0 or Q4_0 and every matmul's input row as Q8_0 (exact scales, so
// a shade better than llama.cpp's f16 ones), the rest in double.
std::vector<double> NaiveFfnLlamaQuantized(const FfnSpec& spec, const FfnWeights& w,
                                           const std::vector<float>& x, int64_t rows,
                                           int weight_bits);

struct NaiveRouting {
  std::vector<int32_t> ids;     // [T, k], best first
  std::vector<double> weights;  // [T, k]
};

NaiveRouting NaiveRoute(const LayerWeights& w, const std::vector<float>& x, int64_t rows);

// The whole layer.
std::vector<double> NaiveLayer(const LayerWeights& w, const std::vector<float>& x, int64_t rows,
                               bool bf16, NaiveRouting* routing = nullptr);

// max |a - b| / max(max |b|, 1e-6).
double MaxRelativeError(const std::vector<float>& got, const std::vector<double>& want);

// n values uniform in [-scale, scale), seeded (std::mt19937).
std::vector<float> RandomTokens(int64_t n, uint32_t seed, float scale = 1.0f);

}  // namespace moe::testing

#endif  // MOE_TESTS_NAIVE_REFERENCE_H_
