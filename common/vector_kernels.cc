#include "common/vector_kernels.h"

#include "common/x86_intrinsics.h"

#include <cstring>

#include "common/dtype.h"

namespace moe {
namespace {

// ---- portable versions: the definition of each result ----

void FloatsToBf16Portable(const float* src, int64_t n, uint16_t* dst) {
  for (int64_t i = 0; i < n; ++i) dst[i] = FloatToBf16(src[i]);
}

void AddScaledPortable(float w, const float* x, int64_t n, float* y) {
  for (int64_t i = 0; i < n; ++i) {
    const float p = w * x[i];
    y[i] += p;
  }
}

constexpr int kLanes = 16;

float ReduceLanes(float* acc) {
  for (int width = kLanes / 2; width > 0; width /= 2) {
    for (int l = 0; l < width; ++l) acc[l] += acc[l + width];
  }
  return acc[0];
}

float FixedOrderDotPortable(const float* a, const float* b, int64_t n) {
  float acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      const float p = a[i + l] * b[i + l];
      acc[l] += p;
    }
  }
  for (int l = 0; i < n; ++i, ++l) {
    const float p = a[i] * b[i];
    acc[l] += p;
  }
  return ReduceLanes(acc);
}

// ---- AVX-512 versions: the same operations, 16 lanes at a time ----

#define MOE_AVX512 __attribute__((target("avx512f,avx512bw")))

MOE_AVX512 void FloatsToBf16Avx512(const float* src, int64_t n, uint16_t* dst) {
  const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff);
  const __m512i inf = _mm512_set1_epi32(0x7f800000);
  const __m512i bias = _mm512_set1_epi32(0x7fff);
  const __m512i one = _mm512_set1_epi32(1);
  const __m512i quiet = _mm512_set1_epi32(0x0040);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512i bits = _mm512_loadu_si512(src + i);
    const __m512i hi = _mm512_srli_epi32(bits, 16);
    // Round to nearest even: bits + 0x7fff + ((bits >> 16) & 1), top half.
    const __m512i rounded =
        _mm512_srli_epi32(_mm512_add_epi32(bits, _mm512_add_epi32(bias, _mm512_and_si512(hi, one))), 16);
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(bits, abs_mask), inf);
    const __m512i out = _mm512_mask_or_epi32(rounded, nan, hi, quiet);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), _mm512_cvtepi32_epi16(out));
  }
  FloatsToBf16Portable(src + i, n - i, dst + i);
}

MOE_AVX512 void AddScaledAvx512(float w, const float* x, int64_t n, float* y) {
  const __m512 vw = _mm512_set1_ps(w);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 p = _mm512_mul_ps(vw, _mm512_loadu_ps(x + i));
    _mm512_storeu_ps(y + i, _mm512_add_ps(_mm512_loadu_ps(y + i), p));
  }
  AddScaledPortable(w, x + i, n - i, y + i);
}

MOE_AVX512 float FixedOrderDotAvx512(const float* a, const float* b, int64_t n) {
  __m512 acc = _mm512_set1_ps(0.0f);
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const __m512 p = _mm512_mul_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i));
    acc = _mm512_add_ps(acc, p);
  }
  if (i < n) {
    // The tail goes to lanes 0..n-i-1; the other lanes are left untouched.
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1u);
    const __m512 p = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i));
    acc = _mm512_mask_add_ps(acc, m, acc, p);
  }
  alignas(64) float lanes[kLanes];
  _mm512_store_ps(lanes, acc);
  return ReduceLanes(lanes);
}

#undef MOE_AVX512

bool DetectAvx512() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
}

const bool kAvx512 = DetectAvx512();

}  // namespace

bool VectorKernelsUseAvx512() { return kAvx512; }

void FloatsToBf16(const float* src, int64_t n, uint16_t* dst) {
  if (kAvx512) return FloatsToBf16Avx512(src, n, dst);
  FloatsToBf16Portable(src, n, dst);
}

void AddScaled(float w, const float* x, int64_t n, float* y) {
  if (kAvx512) return AddScaledAvx512(w, x, n, y);
  AddScaledPortable(w, x, n, y);
}

float FixedOrderDot(const float* a, const float* b, int64_t n) {
  return kAvx512 ? FixedOrderDotAvx512(a, b, n) : FixedOrderDotPortable(a, b, n);
}

}  // namespace moe
