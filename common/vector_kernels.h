// Elementwise and reduction loops of the layer's hot path, with AVX-512 and
// AVX2 versions picked at run time by the active CPU tier (the build targets
// plain x86-64; FixedOrderDot has no AVX2 version). Every function returns bitwise the same result
// on either path: the vector code does the same operations in the same order as the portable loop
// (no fused multiply-add, fixed lane assignment), so outputs do not depend on the machine's vector
// width.
//
// Thread-safety: pure functions.
#ifndef MOE_COMMON_VECTOR_KERNELS_H_
#define MOE_COMMON_VECTOR_KERNELS_H_

#include <cstdint>

namespace moe {

// dst[i] = FloatToBf16(src[i]) for i < n: the same rounding (nearest even,
// NaN kept quiet), vectorised.
void FloatToBf16Array(const float* src, int64_t n, uint16_t* dst);

// y[i] += w * x[i] for i < n: the product rounded to f32, then the sum.
void AddScaled(float w, const float* x, int64_t n, float* y);

// Dot product with 16 interleaved partial sums (element i goes to sum
// i % 16), then a fixed halving tree (sum l += sum l + 8, then + 4, + 2,
// + 1). Independent of alignment and of anything around the vectors.
float FixedOrderDot(const float* a, const float* b, int64_t n);

// The gated product of a SwiGLU FFN, act_fn(w1(x)) * w3(x) with act_fn =
// SiLU: out[i] = silu(gate[i]) * up[i], silu(g) = g / (1 + exp(-g)).
// exp is this file's own (range reduction by ln 2, a degree-7 Taylor
// polynomial, the power of two put into the exponent; the product within
// 2.4 ulp of exact, tested), so both paths give the same bits; silu(g) is
// -0 below g = -88 and NaN at -inf, as in PyTorch. Where both inputs are
// NaN the result is NaN with either one's payload. out may alias neither
// input.
void SiluProduct(const float* gate, const float* up, int64_t n, float* out);

// The same on bf16 values, at PyTorch's bf16 rounding points: silu is
// computed in f32 from the bf16 gate and rounded to bf16, then the
// product with the bf16 up value is rounded to bf16 (FloatToBf16).
void SiluProductBf16(const uint16_t* gate, const uint16_t* up, int64_t n, uint16_t* out);

// gpt-oss's gated product (its "clamped SwiGLU"): g = min(gate, limit),
// u = clamp(up, -limit, limit), out = (u + 1) * (g / (1 + exp(-1.702 g))),
// with this file's exp; NaN inputs stay NaN. One portable loop on every
// tier (no vector version), so the bits never depend on the CPU. out may
// alias neither input.
void ClampedSwigluProduct(const float* gate, const float* up, int64_t n, float limit, float* out);

// The same on bf16 values, rounding to bf16 after each of PyTorch's bf16
// operations: 1.702 g, its sigmoid, g times it, u + 1, and the product.
void ClampedSwigluProductBf16(const uint16_t* gate, const uint16_t* up, int64_t n, float limit,
                              uint16_t* out);

// True when the AVX-512 versions are in use.
bool VectorKernelsUseAvx512();

}  // namespace moe

#endif  // MOE_COMMON_VECTOR_KERNELS_H_
