#include "experts/int8_matmul.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "experts/int8_kernels.h"
#include "experts/panel_kernels.h"
#include "experts/panel_matmul.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace moe {
namespace {

using int8k::kMaxTileRows;
using int8k::kPanelCols;

// Rows one Execute() pass covers: bounds the scratch (quantized rows and
// int32 sums); changes no bits.
constexpr int64_t kPassRows = 256;
// Weight bytes of one tile's panels kept in L1 while every row block of a
// work item runs over them (only when an item has several blocks).
constexpr int64_t kChunkBytes = 16384;
// Software prefetch distance for one row block (memory-bound).
constexpr int64_t kPrefetchBytes = 1024;

int MaxThreads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

int PanelsPerTile(bool vnni, int64_t rows) {
  return vnni ? int8k::TilePanelsVnni(static_cast<int>(rows))
              : int8k::TilePanelsAvx2(static_cast<int>(rows));
}

// The same rounding as the kernels' activation quantization.
int8_t QuantizeWeight(float w, float inv) {
  const float v = std::nearbyint(w * inv);
  return static_cast<int8_t>(v > 127.0f ? 127 : v < -127.0f ? -127 : static_cast<int>(v));
}

}  // namespace

Int8Matmul::Int8Matmul(const MatmulShape& shape, bool vnni) : shape_(shape), vnni_(vnni) {}

absl::StatusOr<std::unique_ptr<Int8Matmul>> Int8Matmul::Create(const MatmulShape& shape,
                                                               const Tensor& top,
                                                               const Tensor* bottom,
                                                               const Tensor& bias,
                                                               CpuTier tier) {
  if (!CpuMeetsBaseline()) {
    return absl::FailedPreconditionError(
        "this CPU lacks AVX2, FMA or F16C (x86-64-v3), which moe-serve's kernels need");
  }
  if (shape.compute != DType::kI8 || shape.dst != DType::kF32) {
    return absl::InvalidArgumentError("int8 matmul: compute must be int8 and dst f32");
  }
  if (shape.k < 1 || shape.n < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("matmul shape ", shape.Key(), " has an empty dimension"));
  }
  if (shape.k > kMaxK) {
    return absl::InvalidArgumentError(absl::StrCat(
        "int8 matmul: K = ", shape.k, " exceeds the int8 kernels' limit of ", kMaxK));
  }
  const bool vnni = tier >= CpuTier::kAvx512Bf16 && CpuSupportsTier(CpuTier::kAvx512Bf16);
  std::unique_ptr<Int8Matmul> m(new Int8Matmul(shape, vnni));
  const int64_t k = shape.k, n = shape.n;
  m->padded_k_ = (k + int8k::kGroup - 1) / int8k::kGroup * int8k::kGroup;
  m->panels_ = (n + kPanelCols - 1) / kPanelCols;
  const int64_t padded_n = m->panels_ * kPanelCols;
  auto* packed = static_cast<uint8_t*>(
      m->weights_.Reserve(static_cast<size_t>(m->panels_ * m->padded_k_ * kPanelCols)));
  m->col_scale_.assign(static_cast<size_t>(padded_n), 0.0f);
  const int64_t n_top = top.dim(0);
  const int64_t pk = m->padded_k_;
  std::vector<int64_t> bad_column(static_cast<size_t>(m->panels_), -1);
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t p = 0; p < m->panels_; ++p) {
    std::vector<float> row(static_cast<size_t>(k));
    uint8_t* base = packed + p * pk * kPanelCols;
    // The VNNI kernel takes the weights + 128 as its unsigned operand.
    const uint8_t offset = vnni ? 0x80 : 0;
    for (int64_t i = 0; i < kPanelCols; ++i) {
      const int64_t col = p * kPanelCols + i;
      float amax = 0;
      if (col < n) {
        const Tensor& part = col < n_top ? top : *bottom;
        const int64_t r = col < n_top ? col : col - n_top;
        const size_t elem = static_cast<size_t>(DTypeSize(part.dtype()));
        ConvertToFloat(part.dtype(), static_cast<const char*>(part.data()) + r * k * elem, k,
                       row.data());
        for (float v : row) {
          if (!std::isfinite(v)) bad_column[static_cast<size_t>(p)] = col;
          amax = std::max(amax, std::fabs(v));
        }
      }
      const float inv = amax > 0 ? 127.0f / amax : 0.0f;
      for (int64_t kk = 0; kk < pk; ++kk) {
        const int8_t q = col < n && kk < k && amax > 0
                             ? QuantizeWeight(row[static_cast<size_t>(kk)], inv)
                             : int8_t{0};
        base[(kk / 4) * 64 + i * 4 + kk % 4] = static_cast<uint8_t>(static_cast<uint8_t>(q) ^ offset);
      }
      m->col_scale_[static_cast<size_t>(col)] = amax / 127.0f;
    }
  }
  for (int64_t col : bad_column) {
    if (col >= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("output channel ", col, " holds a non-finite weight"));
    }
  }
  if (shape.bias) {
    m->bias_.assign(static_cast<size_t>(padded_n), 0.0f);
    ConvertToFloat(bias.dtype(), bias.data(), n, m->bias_.data());
  }
  return m;
}

int8_t Int8Matmul::quantized_weight(int64_t n, int64_t k) const {
  const auto* packed = static_cast<const uint8_t*>(weights_.data());
  const int64_t p = n / kPanelCols, i = n % kPanelCols;
  const uint8_t stored = packed[p * padded_k_ * kPanelCols + (k / 4) * 64 + i * 4 + k % 4];
  return static_cast<int8_t>(vnni_ ? stored ^ 0x80 : stored);
}

size_t Int8Matmul::weight_bytes() const {
  return static_cast<size_t>(panels_ * padded_k_ * kPanelCols) + col_scale_.size() * sizeof(float);
}

std::string Int8Matmul::impl() const {
  return absl::StrCat("own:int8 ", vnni_ ? "avx512 vnni" : "avx2",
                      " (per-channel weights, activations per ", int8k::kGroup,
                      "-input group)");
}

void Int8Matmul::Execute(const float* src, int64_t rows, float* dst, const float* multiplier,
                         AlignedBuffer* scratch) const {
  if (rows <= 0) return;
  const int64_t k = shape_.k, n = shape_.n;
  const int64_t pk = padded_k_;
  const int64_t groups = pk / int8k::kGroup;
  const int64_t padded_n = panels_ * kPanelCols;
  const int64_t pass_rows = std::min(rows, kPassRows);
  auto align = [](size_t bytes) { return (bytes + 63) & ~size_t{63}; };
  const size_t x_bytes = align(static_cast<size_t>(pass_rows * pk));
  const size_t scale_bytes = align(static_cast<size_t>(pass_rows * groups) * sizeof(float));
  const size_t acc_bytes = static_cast<size_t>(pass_rows * padded_n) * sizeof(float);
  char* base = static_cast<char*>(scratch->Reserve(x_bytes + 2 * scale_bytes + acc_bytes));
  auto* xq = reinterpret_cast<uint8_t*>(base);
  auto* x_scale = reinterpret_cast<float*>(base + x_bytes);
  auto* x_corr = reinterpret_cast<int32_t*>(base + x_bytes + scale_bytes);
  auto* acc = reinterpret_cast<float*>(base + x_bytes + 2 * scale_bytes);
  const int threads = MaxThreads();
  const auto* weights = static_cast<const uint8_t*>(weights_.data());

  for (int64_t r0 = 0; r0 < rows; r0 += kPassRows) {
    const int64_t m = std::min(kPassRows, rows - r0);
#pragma omp parallel for schedule(static) if (m * k >= 65536)
    for (int64_t r = 0; r < m; ++r) {
      int8k::QuantizeRowAvx2(src + (r0 + r) * k, k, pk, xq + r * pk, x_scale + r * groups,
                             vnni_ ? x_corr + r * groups : nullptr);
    }
    // Row blocks of at most 4 rows, as even as possible.
    const int64_t blocks = (m + kMaxTileRows - 1) / kMaxTileRows;
    auto block_begin = [&](int64_t b) { return b * m / blocks; };
    int64_t widest = 0;
    for (int64_t b = 0; b < blocks; ++b) {
      widest = std::max(widest, block_begin(b + 1) - block_begin(b));
    }
    const int np = PanelsPerTile(vnni_, widest);
    const int64_t panel_groups = (panels_ + np - 1) / np;
    int64_t splits = 1;
    if (panel_groups < 2 * threads && blocks >= 4) {
      splits = std::min<int64_t>((2 * threads + panel_groups - 1) / panel_groups, blocks);
    }
    const int64_t blocks_per_split = (blocks + splits - 1) / splits;
    const int64_t items = panel_groups * splits;
    const int64_t group_bytes = int8k::kGroup * kPanelCols;  // of one panel
    const int64_t chunk_groups = std::max<int64_t>(1, kChunkBytes / (group_bytes * np));
#pragma omp parallel for schedule(static) if (items > 1)
    for (int64_t item = 0; item < items; ++item) {
      const int64_t pg = item / splits;
      const int64_t b0 = (item % splits) * blocks_per_split;
      const int64_t b1 = std::min(blocks, b0 + blocks_per_split);
      if (b0 >= b1) continue;
      const int64_t p0 = pg * np;
      const int panels = static_cast<int>(std::min<int64_t>(np, panels_ - p0));
      const uint8_t* w0 = weights + p0 * pk * kPanelCols;
      const int64_t chunk = b1 - b0 > 1 ? chunk_groups : groups;
      for (int64_t g0 = 0; g0 < groups; g0 += chunk) {
        const int64_t count_g = std::min(chunk, groups - g0);
        for (int64_t b = b0; b < b1; ++b) {
          const int64_t begin = block_begin(b), count = block_begin(b + 1) - begin;
          int8k::TileArgs t;
          t.x = xq + begin * pk + g0 * int8k::kGroup;
          t.x_stride = pk;
          t.x_scale = x_scale + begin * groups + g0;
          t.x_corr = x_corr + begin * groups + g0;
          t.scale_stride = groups;
          t.w = w0 + g0 * group_bytes;
          t.panel_stride = pk * kPanelCols;
          t.groups = count_g;
          t.acc = acc + begin * padded_n + p0 * kPanelCols;
          t.acc_stride = padded_n;
          t.first = g0 == 0;
          t.prefetch_bytes = b1 - b0 == 1 ? kPrefetchBytes : 0;
          if (vnni_) {
            int8k::TileVnni(static_cast<int>(count), panels, t);
          } else {
            int8k::TileAvx2(static_cast<int>(count), panels, t);
          }
        }
      }
      const int64_t rs = block_begin(b0), re = block_begin(b1);
      const int64_t c0 = p0 * kPanelCols, c_end = (p0 + panels) * kPanelCols;
      int8k::ScaleColumnsAvx2(acc + rs * padded_n, padded_n, re - rs, c0, c_end,
                              col_scale_.data());
      panel::EpilogueArgs e;
      e.acc = acc + rs * padded_n;
      e.acc_stride = padded_n;
      e.bias = shape_.bias ? bias_.data() : nullptr;
      e.act = PanelActivation(shape_);
      if (shape_.post == MatmulPostOp::kMultiply) {
        e.multiplier = multiplier + (r0 + rs) * n;
        e.multiplier_type = panel::Type::kF32;
      }
      e.dst = dst + (r0 + rs) * n;
      e.dst_type = panel::Type::kF32;
      e.row_stride = n;
      e.rows = re - rs;
      e.c0 = c0;
      e.c1 = std::min(n, c_end);
      panel::EpilogueAvx2(e);
    }
  }
}

}  // namespace moe
