#include "common/vector_kernels.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "common/cpu_tier.h"
#include "common/dtype.h"
#include "common/x86_intrinsics.h"

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

// exp(x) for SiLU: +inf above kExpMax (so silu(g) -> -0 for g < -88, and
// NaN at -inf, as g / (1 + exp(-g)) gives in PyTorch); below kExpMin the
// argument is clamped to it (e^-87 = 1.6e-38 < 2^-24, so 1 + e rounds to
// 1 either way); in between x is reduced to r = x - n ln 2 with
// n = round(x / ln 2) (ln 2 in two parts; n * kLn2Hi is exact, kLn2Hi has
// 9 significant bits and |n| <= 127), e^r from its Taylor polynomial to
// r^7 (|r| <= 0.347: truncation < 0.05 ulp) by Horner's rule, then
// times 2^n. Every operation rounds on its own (no fused multiply-add).
constexpr float kExpMax = 88.0f;
constexpr float kExpMin = -87.0f;
constexpr float kLog2E = 1.44269504089f;
constexpr float kLn2Hi = 0.693359375f;
constexpr float kLn2Lo = -2.12194440e-4f;
constexpr float kExpPoly[8] = {1.0f,      1.0f,       1.0f / 2,   1.0f / 6,
                               1.0f / 24, 1.0f / 120, 1.0f / 720, 1.0f / 5040};

float ExpPortable(float arg) {
  // The comparisons are written as the AVX-512 min/max instructions
  // evaluate them, so a NaN passes through both the same way.
  float x = kExpMax < arg ? kExpMax : arg;
  x = kExpMin > x ? kExpMin : x;
  const float n = std::nearbyint(x * kLog2E);
  float r = x - n * kLn2Hi;
  r = r - n * kLn2Lo;
  float p = kExpPoly[7];
  for (int i = 6; i >= 0; --i) p = p * r + kExpPoly[i];
  // cvtps2dq's answer for NaN is INT32_MIN; unsigned arithmetic wraps as
  // the vector lanes do.
  const uint32_t ni = std::isnan(n) ? 0x80000000u : static_cast<uint32_t>(static_cast<int32_t>(n));
  const uint32_t bits = (ni + 127u) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return arg > kExpMax ? std::numeric_limits<float>::infinity() : p * scale;
}

float SiluPortable(float g) {
  const float e = ExpPortable(-g);
  return g / (1.0f + e);
}

void SiluProductPortable(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = SiluPortable(gate[i]) * up[i];
}

void SiluProductBf16Portable(const uint16_t* gate, const uint16_t* up, int64_t n, uint16_t* out) {
  for (int64_t i = 0; i < n; ++i) {
    const float s = RoundToBf16(SiluPortable(Bf16ToFloat(gate[i])));
    out[i] = FloatToBf16(s * Bf16ToFloat(up[i]));
  }
}

constexpr float kGptOssAlpha = 1.702f;

// Clamps keep NaN (comparisons with NaN are false).
inline float ClampBelow(float v, float limit) { return v > limit ? limit : v; }
inline float ClampBoth(float v, float limit) {
  const float c = v > limit ? limit : v;
  return c < -limit ? -limit : c;
}

// ---- AVX-512 versions: the same operations, 16 lanes at a time ----

#define MOE_AVX512 __attribute__((target("avx512f,avx512bw")))

// FloatToBf16 on 16 lanes: each lane's bf16 bits in its low 16 bits.
MOE_AVX512 inline __m512i ToBf16Lanes(__m512 v) {
  const __m512i bits = _mm512_castps_si512(v);
  const __m512i hi = _mm512_srli_epi32(bits, 16);
  // Round to nearest even: bits + 0x7fff + ((bits >> 16) & 1), top half.
  const __m512i rounded = _mm512_srli_epi32(
      _mm512_add_epi32(bits, _mm512_add_epi32(_mm512_set1_epi32(0x7fff),
                                              _mm512_and_si512(hi, _mm512_set1_epi32(1)))),
      16);
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(
      _mm512_and_si512(bits, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
  return _mm512_mask_or_epi32(rounded, nan, hi, _mm512_set1_epi32(0x0040));
}

// Bf16ToFloat on 16 lanes holding bf16 bits in their low halves.
MOE_AVX512 inline __m512 FromBf16Lanes(__m512i lanes) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(lanes, 16));
}

MOE_AVX512 inline __m512 LoadBf16(const uint16_t* p) {
  return FromBf16Lanes(
      _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))));
}

MOE_AVX512 void FloatsToBf16Avx512(const float* src, int64_t n, uint16_t* dst) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512i out = ToBf16Lanes(_mm512_loadu_ps(src + i));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), _mm512_cvtepi32_epi16(out));
  }
  FloatsToBf16Portable(src + i, n - i, dst + i);
}

MOE_AVX512 inline __m512 ExpAvx512(__m512 arg) {
  // _mm512_min_ps(a, b) is (a < b ? a : b), as ExpPortable writes it.
  __m512 x = _mm512_min_ps(_mm512_set1_ps(kExpMax), arg);
  x = _mm512_max_ps(_mm512_set1_ps(kExpMin), x);
  // The current rounding mode, as std::nearbyint uses.
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kLog2E)),
                                        _MM_FROUND_CUR_DIRECTION | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_sub_ps(x, _mm512_mul_ps(n, _mm512_set1_ps(kLn2Hi)));
  r = _mm512_sub_ps(r, _mm512_mul_ps(n, _mm512_set1_ps(kLn2Lo)));
  __m512 p = _mm512_set1_ps(kExpPoly[7]);
  for (int i = 6; i >= 0; --i) {
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(kExpPoly[i]));
  }
  const __m512i bits =
      _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  const __mmask16 over = _mm512_cmp_ps_mask(arg, _mm512_set1_ps(kExpMax), _CMP_GT_OQ);
  return _mm512_mask_blend_ps(over, _mm512_mul_ps(p, _mm512_castsi512_ps(bits)),
                              _mm512_set1_ps(std::numeric_limits<float>::infinity()));
}

MOE_AVX512 inline __m512 SiluAvx512(__m512 g) {
  const __m512 e = ExpAvx512(_mm512_sub_ps(_mm512_setzero_ps(), g));
  return _mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

MOE_AVX512 void SiluProductAvx512(const float* gate, const float* up, int64_t n, float* out) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 s = SiluAvx512(_mm512_loadu_ps(gate + i));
    _mm512_storeu_ps(out + i, _mm512_mul_ps(s, _mm512_loadu_ps(up + i)));
  }
  SiluProductPortable(gate + i, up + i, n - i, out + i);
}

MOE_AVX512 void SiluProductBf16Avx512(const uint16_t* gate, const uint16_t* up, int64_t n,
                                      uint16_t* out) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 s = FromBf16Lanes(ToBf16Lanes(SiluAvx512(LoadBf16(gate + i))));
    const __m512i y = ToBf16Lanes(_mm512_mul_ps(s, LoadBf16(up + i)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm512_cvtepi32_epi16(y));
  }
  SiluProductBf16Portable(gate + i, up + i, n - i, out + i);
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
    const __m512 p =
        _mm512_mul_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i));
    acc = _mm512_mask_add_ps(acc, m, acc, p);
  }
  alignas(64) float lanes[kLanes];
  _mm512_store_ps(lanes, acc);
  return ReduceLanes(lanes);
}

#undef MOE_AVX512

// ---- AVX2 versions: the same operations, 8 lanes at a time (no FMA) ----

#define MOE_AVX2 __attribute__((target("avx2")))

MOE_AVX2 inline __m256i ToBf16Lanes8(__m256 v) {
  const __m256i bits = _mm256_castps_si256(v);
  const __m256i hi = _mm256_srli_epi32(bits, 16);
  const __m256i rounded = _mm256_srli_epi32(
      _mm256_add_epi32(bits, _mm256_add_epi32(_mm256_set1_epi32(0x7fff),
                                              _mm256_and_si256(hi, _mm256_set1_epi32(1)))),
      16);
  // |bits| > 0x7f800000 as a signed compare: both sides are below 2^31.
  const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(bits, _mm256_set1_epi32(0x7fffffff)),
                                         _mm256_set1_epi32(0x7f800000));
  return _mm256_blendv_epi8(rounded, _mm256_or_si256(hi, _mm256_set1_epi32(0x0040)), nan);
}

MOE_AVX2 inline void StoreBf16Lanes8(__m256i lanes, uint16_t* dst) {
  const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(lanes, lanes), 0x08);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), _mm256_castsi256_si128(packed));
}

MOE_AVX2 inline __m256 LoadBf16x8(const uint16_t* p) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(
      _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
}

MOE_AVX2 void FloatsToBf16Avx2(const float* src, int64_t n, uint16_t* dst) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) StoreBf16Lanes8(ToBf16Lanes8(_mm256_loadu_ps(src + i)), dst + i);
  FloatsToBf16Portable(src + i, n - i, dst + i);
}

MOE_AVX2 inline __m256 ExpAvx2(__m256 arg) {
  // _mm256_min_ps(a, b) is (a < b ? a : b), as ExpPortable writes it.
  __m256 x = _mm256_min_ps(_mm256_set1_ps(kExpMax), arg);
  x = _mm256_max_ps(_mm256_set1_ps(kExpMin), x);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kLog2E)),
                                   _MM_FROUND_CUR_DIRECTION | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_sub_ps(x, _mm256_mul_ps(n, _mm256_set1_ps(kLn2Hi)));
  r = _mm256_sub_ps(r, _mm256_mul_ps(n, _mm256_set1_ps(kLn2Lo)));
  __m256 p = _mm256_set1_ps(kExpPoly[7]);
  for (int i = 6; i >= 0; --i) {
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(kExpPoly[i]));
  }
  const __m256i bits =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  const __m256 over = _mm256_cmp_ps(arg, _mm256_set1_ps(kExpMax), _CMP_GT_OQ);
  return _mm256_blendv_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(bits)),
                          _mm256_set1_ps(std::numeric_limits<float>::infinity()), over);
}

MOE_AVX2 inline __m256 SiluAvx2(__m256 g) {
  const __m256 e = ExpAvx2(_mm256_sub_ps(_mm256_setzero_ps(), g));
  return _mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

MOE_AVX2 void SiluProductAvx2(const float* gate, const float* up, int64_t n, float* out) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 s = SiluAvx2(_mm256_loadu_ps(gate + i));
    _mm256_storeu_ps(out + i, _mm256_mul_ps(s, _mm256_loadu_ps(up + i)));
  }
  SiluProductPortable(gate + i, up + i, n - i, out + i);
}

MOE_AVX2 void SiluProductBf16Avx2(const uint16_t* gate, const uint16_t* up, int64_t n,
                                  uint16_t* out) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 s =
        _mm256_castsi256_ps(_mm256_slli_epi32(ToBf16Lanes8(SiluAvx2(LoadBf16x8(gate + i))), 16));
    StoreBf16Lanes8(ToBf16Lanes8(_mm256_mul_ps(s, LoadBf16x8(up + i))), out + i);
  }
  SiluProductBf16Portable(gate + i, up + i, n - i, out + i);
}

MOE_AVX2 void AddScaledAvx2(float w, const float* x, int64_t n, float* y) {
  const __m256 vw = _mm256_set1_ps(w);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 p = _mm256_mul_ps(vw, _mm256_loadu_ps(x + i));
    _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), p));
  }
  AddScaledPortable(w, x + i, n - i, y + i);
}

#undef MOE_AVX2

// Decided on first use, after main() applied any --max_isa cap (a
// load-time constant would fix the tier before the flags are read).
bool UseAvx512() {
  static const bool use = ActiveCpuTier() >= CpuTier::kAvx512;
  return use;
}

bool UseAvx2() {
  static const bool use = CpuMeetsBaseline();
  return use;
}

}  // namespace

bool VectorKernelsUseAvx512() { return UseAvx512(); }

void FloatToBf16Array(const float* src, int64_t n, uint16_t* dst) {
  if (UseAvx512()) return FloatsToBf16Avx512(src, n, dst);
  if (UseAvx2()) return FloatsToBf16Avx2(src, n, dst);
  FloatsToBf16Portable(src, n, dst);
}

void AddScaled(float w, const float* x, int64_t n, float* y) {
  if (UseAvx512()) return AddScaledAvx512(w, x, n, y);
  if (UseAvx2()) return AddScaledAvx2(w, x, n, y);
  AddScaledPortable(w, x, n, y);
}

float FixedOrderDot(const float* a, const float* b, int64_t n) {
  return UseAvx512() ? FixedOrderDotAvx512(a, b, n) : FixedOrderDotPortable(a, b, n);
}

void SiluProduct(const float* gate, const float* up, int64_t n, float* out) {
  if (UseAvx512()) return SiluProductAvx512(gate, up, n, out);
  if (UseAvx2()) return SiluProductAvx2(gate, up, n, out);
  SiluProductPortable(gate, up, n, out);
}

void ClampedSwigluProduct(const float* gate, const float* up, int64_t n, float limit, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = ClampBelow(gate[i], limit);
    const float u = ClampBoth(up[i], limit);
    const float glu = g / (1.0f + ExpPortable(-(kGptOssAlpha * g)));
    out[i] = (u + 1.0f) * glu;
  }
}

void ClampedSwigluProductBf16(const uint16_t* gate, const uint16_t* up, int64_t n, float limit,
                              uint16_t* out) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = ClampBelow(Bf16ToFloat(gate[i]), limit);
    const float u = ClampBoth(Bf16ToFloat(up[i]), limit);
    const float a = RoundToBf16(kGptOssAlpha * g);
    const float sig = RoundToBf16(1.0f / (1.0f + ExpPortable(-a)));
    const float glu = RoundToBf16(g * sig);
    out[i] = FloatToBf16(RoundToBf16(u + 1.0f) * glu);
  }
}

void SiluProductBf16(const uint16_t* gate, const uint16_t* up, int64_t n, uint16_t* out) {
  if (UseAvx512()) return SiluProductBf16Avx512(gate, up, n, out);
  if (UseAvx2()) return SiluProductBf16Avx2(gate, up, n, out);
  SiluProductBf16Portable(gate, up, n, out);
}

}  // namespace moe
