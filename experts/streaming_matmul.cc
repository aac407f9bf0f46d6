#include "experts/streaming_matmul.h"

#include <algorithm>
#include <cstring>

#include "common/cpu_tier.h"
#include "common/x86_intrinsics.h"

namespace moe {
namespace {

#define MOE_AVX512_BF16 __attribute__((target("avx512f,avx512bw,avx512bf16")))
#define MOE_AVX512_F32 __attribute__((target("avx512f,avx512bw")))

constexpr int64_t kN = 64;  // columns per packed block: 4 vectors of 16

// Prefetching. The hardware prefetcher alone leaves bandwidth unused here:
// its streams restart at every 4 KB page, and the out-of-order window,
// which also issues loads ahead, holds fewer 256-byte steps the more rows
// (sums) each step updates. So:
// - each K block (4 KB) requests its first line kPageAheadBlocks blocks
//   ahead (one row: 61 → 70 GB/s);
// - from kRowPrefetchMinRows rows on, each 256-byte step also requests its
//   four lines kRowAheadBlocks blocks ahead (mixtral's 14336 × 4096 bf16
//   W2 at 3-6 rows: 1.84-2.05 → 1.52-1.84 ms; at 1-2 rows, and for f32 at
//   1-3, it measured level or slower).
// Reading past the matrix's end is harmless for a prefetch; the addresses
// are formed as integers because they may lie past it.
constexpr int64_t kPageAheadBlocks = 8;
constexpr int64_t kRowAheadBlocks = 4;
constexpr int kRowPrefetchMinRows = 3;

inline void PrefetchLine(const void* p, int64_t ahead_bytes) {
  const uintptr_t at = reinterpret_cast<uintptr_t>(p) + static_cast<uintptr_t>(ahead_bytes);
  __builtin_prefetch(reinterpret_cast<const void*>(at), 0, 3);  // NOLINT(performance-no-int-to-ptr)
}

// The four lines of the 256-byte row `ahead_bytes` past `row` (unrolled:
// as a loop it cost four taken branches on every step).
inline void PrefetchRow(const void* row, int64_t ahead_bytes) {
#pragma GCC unroll 4
  for (int64_t line = 0; line < 256; line += 64) PrefetchLine(row, ahead_bytes + line);
}

// Copies `rows` rows of `k` elements (`elem` bytes each) into rows of
// `k_padded` elements, zero-filled past k (the packed weights are zero
// there too).
void PadRows(const void* x, int64_t rows, int64_t k, int64_t k_padded, size_t elem, void* out) {
  auto* dst = static_cast<char*>(out);
  const auto* src = static_cast<const char*>(x);
  for (int64_t r = 0; r < rows; ++r) {
    std::memcpy(dst + r * k_padded * elem, src + r * k * elem, k * elem);
    std::memset(dst + (r * k_padded + k) * elem, 0, (k_padded - k) * elem);
  }
}

// One chunk of K, [c0, c1), for M rows over one column block, summed from
// zero and stored or added (c0 > 0) into total[M][64]. `blk` is the
// block's first K block. c1 stops at K (f32) or K rounded up to a pair
// (bf16), not at the padded block's end: adding the padding's +0 products
// would turn a -0 sum into +0, which oneDNN's K-tail kernels do not.

// M rows × 64 columns of accumulators, zeroed.
template <int M>
MOE_AVX512_F32 inline void ZeroAcc(__m512 (&acc)[M][4]) {
#pragma GCC unroll 8
  for (int m = 0; m < M; ++m) {
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) acc[m][j] = _mm512_setzero_ps();
  }
}

// The chunk's sums into total[M][64]: stored for the first chunk, else
// added to the running total (plain f32 additions left to right, as brgemm
// adds its partial sums).
MOE_AVX512_F32 inline void StoreSum(__m512 sum, bool first, float* total) {
  _mm512_storeu_ps(total, first ? sum : _mm512_add_ps(_mm512_loadu_ps(total), sum));
}
template <int M>
MOE_AVX512_F32 inline void StoreAcc(const __m512 (&acc)[M][4], bool first, float (*total)[kN]) {
#pragma GCC unroll 8
  for (int m = 0; m < M; ++m) {
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) StoreSum(acc[m][j], first, total[m] + 16 * j);
  }
}

#define MOE_ALWAYS_INLINE inline __attribute__((always_inline))

// Loads `G` rows of parked sums into registers, and back.
template <int G>
MOE_AVX512_F32 MOE_ALWAYS_INLINE void Unpark(const float (*park)[kN], __m512 (&acc)[G][4]) {
#pragma GCC unroll 8
  for (int m = 0; m < G; ++m) {
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) acc[m][j] = _mm512_load_ps(park[m] + 16 * j);
  }
}
template <int G>
MOE_AVX512_F32 MOE_ALWAYS_INLINE void Park(const __m512 (&acc)[G][4], float (*park)[kN]) {
#pragma GCC unroll 8
  for (int m = 0; m < G; ++m) {
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) _mm512_store_ps(park[m] + 16 * j, acc[m][j]);
  }
}

// A chunk's parked sums into total, as StoreAcc does.
template <int M>
MOE_AVX512_F32 void StoreParked(const float (*park)[kN], bool first, float (*total)[kN]) {
  for (int m = 0; m < M; ++m) {
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) {
      StoreSum(_mm512_load_ps(park[m] + 16 * j), first, total[m] + 16 * j);
    }
  }
}

// Each step's four weight vectors are loaded once and used by every row.
// Without this barrier GCC 12 loads them again for each row at 3 rows and
// in 7 rows' 3-row group (12 loads of the same 256 bytes per step instead
// of 4). The empty asm claims to change them in registers, so they can
// only be kept there; it emits no instruction. (Mixtral's shapes at 7
// rows: 5-9 % faster; other row counts within 4 %, either way.)
template <typename V>
MOE_AVX512_F32 MOE_ALWAYS_INLINE void PinInRegisters(V& a, V& b, V& c, V& d) {
  asm("" : "+v"(a), "+v"(b), "+v"(c), "+v"(d));
}

// bf16: K blocks of [16 pairs][64 columns][2], one vdpbf16ps per pair of k.
// One K block `kb` ([k0, k0 + 2 * pairs)) for G rows of x into acc.
template <int G>
MOE_AVX512_BF16 MOE_ALWAYS_INLINE void Bf16Block(const uint16_t* kb, int64_t pairs,
                                                 const uint16_t* x, int64_t k_padded, int64_t k0,
                                                 bool prefetch_rows, int64_t row_ahead,
                                                 __m512 (&acc)[G][4]) {
  for (int64_t p = 0; p < pairs; ++p) {
    const uint16_t* row = kb + p * 2 * kN;
    if (prefetch_rows) PrefetchRow(row, row_ahead);
    __m512bh w0 = (__m512bh)_mm512_loadu_si512(row);
    __m512bh w1 = (__m512bh)_mm512_loadu_si512(row + 32);
    __m512bh w2 = (__m512bh)_mm512_loadu_si512(row + 64);
    __m512bh w3 = (__m512bh)_mm512_loadu_si512(row + 96);
    PinInRegisters(w0, w1, w2, w3);
#pragma GCC unroll 8
    for (int m = 0; m < G; ++m) {
      uint32_t pair;
      std::memcpy(&pair, x + m * k_padded + k0 + 2 * p, sizeof(pair));
      const __m512bh a = (__m512bh)_mm512_set1_epi32(static_cast<int>(pair));
      acc[m][0] = _mm512_dpbf16_ps(acc[m][0], a, w0);
      acc[m][1] = _mm512_dpbf16_ps(acc[m][1], a, w1);
      acc[m][2] = _mm512_dpbf16_ps(acc[m][2], a, w2);
      acc[m][3] = _mm512_dpbf16_ps(acc[m][3], a, w3);
    }
  }
}

// f32: K blocks of [16 k][64 columns], one FMA per k. Same contract.
template <int G>
MOE_AVX512_F32 MOE_ALWAYS_INLINE void F32Block(const float* kb, int64_t steps, const float* x,
                                               int64_t k_padded, int64_t k0, bool prefetch_rows,
                                               int64_t row_ahead, __m512 (&acc)[G][4]) {
  for (int64_t kk = 0; kk < steps; ++kk) {
    const float* row = kb + kk * kN;
    if (prefetch_rows) PrefetchRow(row, row_ahead);
    __m512 w0 = _mm512_loadu_ps(row);
    __m512 w1 = _mm512_loadu_ps(row + 16);
    __m512 w2 = _mm512_loadu_ps(row + 32);
    __m512 w3 = _mm512_loadu_ps(row + 48);
    PinInRegisters(w0, w1, w2, w3);
#pragma GCC unroll 8
    for (int m = 0; m < G; ++m) {
      const __m512 a = _mm512_set1_ps(x[m * k_padded + k0 + kk]);
      acc[m][0] = _mm512_fmadd_ps(a, w0, acc[m][0]);
      acc[m][1] = _mm512_fmadd_ps(a, w1, acc[m][1]);
      acc[m][2] = _mm512_fmadd_ps(a, w2, acc[m][2]);
      acc[m][3] = _mm512_fmadd_ps(a, w3, acc[m][3]);
    }
  }
}

// Rows per register group: up to kRegisterRows rows keep their sums in
// registers over the whole chunk; more rows are split into two groups that
// take turns on each K block (4 KB, read from DRAM by the first group and
// again from L1 by the second), their sums parked in L1 between turns. The
// sums see the same additions in the same order either way.
constexpr int kRegisterRows = 6;

// The two group sizes for M rows (the second 0 when all fit in one).
template <int M>
struct Groups {
  static constexpr int kFirst = M <= kRegisterRows ? M : (M + 1) / 2;
  static constexpr int kSecond = M <= kRegisterRows ? 0 : M / 2;
};

// One chunk of K, [c0, c1), for M rows over one column block (see above).
// (The bf16 and f32 versions differ in their target and block function:
// GCC cannot inline a function of a wider target into a shared template.)
template <int M>
MOE_AVX512_BF16 void Bf16Chunk(const uint16_t* blk, int64_t kblock_stride, const uint16_t* x,
                               int64_t k_padded, int64_t c0, int64_t c1, float (*total)[kN]) {
  using G = Groups<M>;
  const int64_t bytes = kblock_stride * static_cast<int64_t>(sizeof(uint16_t));
  if constexpr (G::kSecond == 0) {
    __m512 acc[M][4];
    ZeroAcc<M>(acc);
    for (int64_t k0 = c0; k0 < c1; k0 += 32) {
      const uint16_t* kb = blk + (k0 / 32) * kblock_stride;
      PrefetchLine(kb, kPageAheadBlocks * bytes);
      Bf16Block<M>(kb, std::min<int64_t>(16, (c1 - k0) / 2), x, k_padded, k0,
                   M >= kRowPrefetchMinRows, kRowAheadBlocks * bytes, acc);
    }
    StoreAcc<M>(acc, c0 == 0, total);
  } else {
    alignas(64) float park[M][kN] = {};
    for (int64_t k0 = c0; k0 < c1; k0 += 32) {
      const uint16_t* kb = blk + (k0 / 32) * kblock_stride;
      PrefetchLine(kb, kPageAheadBlocks * bytes);
      const int64_t pairs = std::min<int64_t>(16, (c1 - k0) / 2);
      __m512 a1[G::kFirst][4];
      Unpark<G::kFirst>(park, a1);
      Bf16Block<G::kFirst>(kb, pairs, x, k_padded, k0, true, kRowAheadBlocks * bytes, a1);
      Park<G::kFirst>(a1, park);
      __m512 a2[G::kSecond][4];
      Unpark<G::kSecond>(park + G::kFirst, a2);
      Bf16Block<G::kSecond>(kb, pairs, x + G::kFirst * k_padded, k_padded, k0, false, 0, a2);
      Park<G::kSecond>(a2, park + G::kFirst);
    }
    StoreParked<M>(park, c0 == 0, total);
  }
}

template <int M>
MOE_AVX512_F32 void F32Chunk(const float* blk, int64_t kblock_stride, const float* x,
                             int64_t k_padded, int64_t c0, int64_t c1, float (*total)[kN]) {
  using G = Groups<M>;
  const int64_t bytes = kblock_stride * static_cast<int64_t>(sizeof(float));
  if constexpr (G::kSecond == 0) {
    __m512 acc[M][4];
    ZeroAcc<M>(acc);
    for (int64_t k0 = c0; k0 < c1; k0 += 16) {
      const float* kb = blk + (k0 / 16) * kblock_stride;
      PrefetchLine(kb, kPageAheadBlocks * bytes);
      F32Block<M>(kb, std::min<int64_t>(16, c1 - k0), x, k_padded, k0, M >= kRowPrefetchMinRows,
                  kRowAheadBlocks * bytes, acc);
    }
    StoreAcc<M>(acc, c0 == 0, total);
  } else {
    alignas(64) float park[M][kN] = {};
    for (int64_t k0 = c0; k0 < c1; k0 += 16) {
      const float* kb = blk + (k0 / 16) * kblock_stride;
      PrefetchLine(kb, kPageAheadBlocks * bytes);
      const int64_t steps = std::min<int64_t>(16, c1 - k0);
      __m512 a1[G::kFirst][4];
      Unpark<G::kFirst>(park, a1);
      F32Block<G::kFirst>(kb, steps, x, k_padded, k0, true, kRowAheadBlocks * bytes, a1);
      Park<G::kFirst>(a1, park);
      __m512 a2[G::kSecond][4];
      Unpark<G::kSecond>(park + G::kFirst, a2);
      F32Block<G::kSecond>(kb, steps, x + G::kFirst * k_padded, k_padded, k0, false, 0, a2);
      Park<G::kSecond>(a2, park + G::kFirst);
    }
    StoreParked<M>(park, c0 == 0, total);
  }
}

// dst[i] = src[i] rounded to bf16 by vcvtneps2bf16, as oneDNN stores it.
MOE_AVX512_BF16 void CvtNeToBf16(const float* src, int64_t n, uint16_t* dst) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256bh v = _mm512_cvtneps_pbh(_mm512_loadu_ps(src + i));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), (__m256i)v);
  }
  if (i < n) {
    alignas(64) float in[16] = {};
    alignas(32) uint16_t out[16];
    std::memcpy(in, src + i, static_cast<size_t>(n - i) * sizeof(float));
    const __m256bh v = _mm512_cvtneps_pbh(_mm512_load_ps(in));
    _mm256_store_si256(reinterpret_cast<__m256i*>(out), (__m256i)v);
    std::memcpy(dst + i, out, static_cast<size_t>(n - i) * sizeof(uint16_t));
  }
}

// The epilogue on one column block's finished sums, total[M][64] of which
// the first `cols` columns are real, written to the outputs at column
// `col`: + bias, × multiplier, then to acc (f32) or bf16_out. The same f32
// operations, in the same order, as the unfused steps they replace.
template <int M>
MOE_AVX512_F32 void FinishBlock(float (*total)[kN], int64_t cols, int64_t col, int64_t n,
                                const StreamingMatmul::Epilogue& e, DType compute, float* acc) {
  const __mmask16 full = 0xFFFF;
  for (int m = 0; m < M; ++m) {
    for (int64_t j = 0; j < cols; j += 16) {
      const __mmask16 mask = cols - j >= 16 ? full : static_cast<__mmask16>((1u << (cols - j)) - 1);
      __m512 v = _mm512_load_ps(total[m] + j);
      if (e.bias != nullptr) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, e.bias + col + j));
      if (e.multiplier != nullptr) {
        const int64_t at = m * n + col + j;
        __m512 f;
        if (compute == DType::kBF16) {
          const __m512i h =
              _mm512_maskz_loadu_epi16(mask, static_cast<const uint16_t*>(e.multiplier) + at);
          f = _mm512_castsi512_ps(
              _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(h)), 16));
        } else {
          f = _mm512_maskz_loadu_ps(mask, static_cast<const float*>(e.multiplier) + at);
        }
        v = _mm512_mul_ps(v, f);
      }
      if (e.bf16_out != nullptr) {
        _mm512_store_ps(total[m] + j, v);
      } else {
        _mm512_mask_storeu_ps(acc + m * n + col + j, mask, v);
      }
    }
  }
  if (e.bf16_out != nullptr) {
    for (int m = 0; m < M; ++m) CvtNeToBf16(total[m], cols, e.bf16_out + m * n + col);
  }
}

// Column blocks [b0, b1) for M rows, spread over the OpenMP team: each
// block's chunks summed into a tile, then the epilogue writes the tile out.
template <int M, typename T, typename ChunkFn>
void Blocks(ChunkFn chunk, const T* w, const T* x, int64_t k_padded, int64_t k_end, int64_t k_chunk,
            int64_t kblock_stride, int64_t nblock_stride, int64_t b0, int64_t b1, int64_t n,
            const StreamingMatmul::Epilogue& epilogue, DType compute, float* acc_out) {
#if defined(__GNUC__) && !defined(__clang__)
#pragma omp parallel for schedule(static)
#endif
  for (int64_t b = b0; b < b1; ++b) {
    alignas(64) float total[M][kN];
    for (int64_t c0 = 0; c0 < k_end; c0 += k_chunk) {
      chunk(w + b * nblock_stride, kblock_stride, x, k_padded, c0, std::min(k_end, c0 + k_chunk),
            total);
    }
    FinishBlock<M>(total, std::min(kN, n - b * kN), b * kN, n, epilogue, compute, acc_out);
  }
}

template <int M>
void RunRows(DType compute, const void* w, const void* x, int64_t k, int64_t k_padded,
             int64_t k_chunk, int64_t kblock_stride, int64_t nblock_stride, int64_t b0, int64_t b1,
             int64_t n, const StreamingMatmul::Epilogue& epilogue, float* acc) {
  if (compute == DType::kBF16) {
    Blocks<M>(Bf16Chunk<M>, static_cast<const uint16_t*>(w), static_cast<const uint16_t*>(x),
              k_padded, (k + 1) / 2 * 2, k_chunk, kblock_stride, nblock_stride, b0, b1, n, epilogue,
              compute, acc);
  } else {
    Blocks<M>(F32Chunk<M>, static_cast<const float*>(w), static_cast<const float*>(x), k_padded, k,
              k_chunk, kblock_stride, nblock_stride, b0, b1, n, epilogue, compute, acc);
  }
}

}  // namespace

void StreamingMatmul::RoundToBf16AsOneDnn(const float* src, int64_t n, uint16_t* dst) const {
  CvtNeToBf16(src, n, dst);
}

std::optional<StreamingMatmul> StreamingMatmul::ForLayout(const dnnl::memory::desc& packed,
                                                          DType compute, int64_t k, int64_t n) {
  const bool bf16 = compute == DType::kBF16;
  if (compute != DType::kF32 && !bf16) return std::nullopt;
  if (ActiveCpuTier() < (bf16 ? CpuTier::kAvx512Bf16 : CpuTier::kAvx512)) return std::nullopt;
  const dnnl_memory_desc_t& d = packed.data;
  if (d.ndims != 2 || d.dims[0] != k || d.dims[1] != n || d.offset0 != 0 ||
      d.format_kind != dnnl_blocked) {
    return std::nullopt;
  }
  const auto& b = d.format_desc.blocking;
  // BA16a64b (f32) or BA16a64b2a (bf16): inner blocks over K (index 0)
  // and N (index 1).
  const int want = bf16 ? 3 : 2;
  if (b.inner_nblks != want || b.inner_idxs[0] != 0 || b.inner_blks[0] != 16 ||
      b.inner_idxs[1] != 1 || b.inner_blks[1] != kN) {
    return std::nullopt;
  }
  if (bf16 && (b.inner_idxs[2] != 0 || b.inner_blks[2] != 2)) return std::nullopt;
  StreamingMatmul s;
  s.compute_ = compute;
  s.k_ = k;
  s.n_ = n;
  s.k_block_ = bf16 ? 32 : 16;
  s.k_padded_ = d.padded_dims[0];
  if (s.k_padded_ % s.k_block_ != 0 || d.padded_dims[1] % kN != 0 || s.k_padded_ < k) {
    return std::nullopt;
  }
  s.kblock_stride_ = b.strides[0];
  s.nblock_stride_ = b.strides[1];
  // One K block is [k_block][64] contiguous; K blocks follow each other
  // within a column block, and column blocks do not overlap.
  const int64_t block_elems = s.k_block_ * kN;
  if (s.kblock_stride_ != block_elems ||
      s.nblock_stride_ < (s.k_padded_ / s.k_block_) * block_elems) {
    return std::nullopt;
  }
  const dnnl::memory::data_type want_type =
      bf16 ? dnnl::memory::data_type::bf16 : dnnl::memory::data_type::f32;
  if (packed.data_type() != want_type) return std::nullopt;
  return s;
}

size_t StreamingMatmul::XPadBytes(int64_t rows) const {
  return static_cast<size_t>(rows * k_padded_) * DTypeSize(compute_);
}

void StreamingMatmul::RunBlocks(const void* weights, const void* x, int64_t rows, int64_t k_chunk,
                                int64_t block_begin, int64_t block_end, const Epilogue& epilogue,
                                void* x_pad, float* acc) const {
  const size_t elem = DTypeSize(compute_);
  PadRows(x, rows, k_, k_padded_, elem, x_pad);
  using RunFn = void (*)(DType, const void*, const void*, int64_t, int64_t, int64_t, int64_t,
                         int64_t, int64_t, int64_t, int64_t, const Epilogue&, float*);
  static constexpr RunFn kRun[kMaxRows] = {RunRows<1>, RunRows<2>,  RunRows<3>,  RunRows<4>,
                                           RunRows<5>, RunRows<6>,  RunRows<7>,  RunRows<8>,
                                           RunRows<9>, RunRows<10>, RunRows<11>, RunRows<12>};
  static_assert(kMaxRows == 12, "kRun lists one kernel per row count 1..kMaxRows");
  kRun[rows - 1](compute_, weights, x_pad, k_, k_padded_, k_chunk, kblock_stride_, nblock_stride_,
                 block_begin, block_end, n_, epilogue, acc);
}

}  // namespace moe
