// Elementwise and reduction loops of the layer's hot path, with an AVX-512
// version picked at run time where the CPU has it (the build targets plain
// x86-64). Every function returns bitwise the same result on either path:
// the vector code does the same operations in the same order as the
// portable loop (no fused multiply-add, fixed lane assignment), so outputs
// do not depend on the machine's vector width.
//
// Thread-safety: pure functions.
#ifndef MOE_COMMON_VECTOR_KERNELS_H_
#define MOE_COMMON_VECTOR_KERNELS_H_

#include <cstdint>

namespace moe {

// dst[i] = FloatToBf16(src[i]) for i < n (round to nearest even, NaN kept
// quiet).
void FloatsToBf16(const float* src, int64_t n, uint16_t* dst);

// y[i] += w * x[i] for i < n: the product rounded to f32, then the sum.
void AddScaled(float w, const float* x, int64_t n, float* y);

// Dot product with 16 interleaved partial sums (element i goes to sum
// i % 16), then a fixed halving tree (sum l += sum l + 8, then + 4, + 2,
// + 1). Independent of alignment and of anything around the vectors.
float FixedOrderDot(const float* a, const float* b, int64_t n);

// True when the AVX-512 versions are in use.
bool VectorKernelsUseAvx512();

}  // namespace moe

#endif  // MOE_COMMON_VECTOR_KERNELS_H_
