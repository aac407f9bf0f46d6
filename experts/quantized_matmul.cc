#include "experts/quantized_matmul.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "experts/openmp_threads.h"
#include "experts/panel_kernels.h"
#include "experts/panel_matmul.h"
#include "experts/quantized_kernels.h"

namespace moe {
namespace {

using qk::kGroup;
using qk::kMaxTileRows;
using qk::kPanelCols;
using qk::WeightFormat;

// Rows one Execute() pass covers: bounds the scratch (quantized rows and
// f32 sums); changes no bits.
constexpr int64_t kPassRows = 256;
// Weight bytes of one tile's panels kept in L1 while every row block of a
// work item runs over them (only when an item has several blocks).
constexpr int64_t kChunkBytes = 16384;
// Software prefetch distance for one row block (memory-bound).
constexpr int64_t kPrefetchBytes = 1024;

// 1 / scale as the kernels use it, or 0 when the scale is 0 or so small
// that its inverse overflows (the group or column is then all zeros).
float InverseOrZero(float numerator, float scale) {
  const float inv = scale != 0 ? numerator / scale : 0.0f;
  return inv <= 3.40282347e+38f && inv >= -3.40282347e+38f ? inv : 0.0f;
}

// The kernels' rounding: nearest even, then clamped.
int QuantizeValue(float v, float inv, int lo, int hi) {
  const float r = std::nearbyint(v * inv);
  return r > static_cast<float>(hi) ? hi : r < static_cast<float>(lo) ? lo : static_cast<int>(r);
}

}  // namespace

QuantizedMatmul::QuantizedMatmul(const MatmulShape& shape, bool vnni)
    : shape_(shape), vnni_(vnni), int4_(shape.compute == DType::kI4) {}

absl::StatusOr<std::unique_ptr<QuantizedMatmul>> QuantizedMatmul::Create(const MatmulShape& shape,
                                                                         const Tensor& top,
                                                                         const Tensor* bottom,
                                                                         const Tensor& bias,
                                                                         CpuTier tier) {
  if (!CpuMeetsBaseline()) {
    return absl::FailedPreconditionError(
        "this CPU lacks AVX2, FMA or F16C (x86-64-v3), which moe-serve's kernels need");
  }
  if ((shape.compute != DType::kI8 && shape.compute != DType::kI4) || shape.dst != DType::kF32) {
    return absl::InvalidArgumentError("quantized matmul: compute must be int8 or int4, dst f32");
  }
  if (shape.k < 1 || shape.n < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("matmul shape ", shape.Key(), " has an empty dimension"));
  }
  if (shape.k > kMaxK) {
    return absl::InvalidArgumentError(
        absl::StrCat("quantized matmul: K = ", shape.k, " exceeds the kernels' limit of ", kMaxK));
  }
  const bool vnni = tier >= CpuTier::kAvx512Bf16 && CpuSupportsTier(CpuTier::kAvx512Bf16);
  std::unique_ptr<QuantizedMatmul> m(new QuantizedMatmul(shape, vnni));
  m->padded_k_ = (shape.k + kGroup - 1) / kGroup * kGroup;
  m->groups_ = m->padded_k_ / kGroup;
  m->panels_ = (shape.n + kPanelCols - 1) / kPanelCols;
  m->panel_bytes_ =
      m->groups_ * qk::GroupBytes(m->int4_ ? WeightFormat::kInt4 : WeightFormat::kInt8);
  m->packed_ =
      static_cast<uint8_t*>(m->weights_.Reserve(static_cast<size_t>(m->panels_ * m->panel_bytes_)));
  if (!m->int4_) m->col_scale_.assign(static_cast<size_t>(m->panels_ * kPanelCols), 0.0f);
  std::vector<int64_t> bad_column(static_cast<size_t>(m->panels_), -1);
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t p = 0; p < m->panels_; ++p) {
    bad_column[static_cast<size_t>(p)] = m->PackPanel(p, top, bottom);
  }
  for (int64_t col : bad_column) {
    if (col >= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("output channel ", col, " holds a non-finite weight"));
    }
  }
  if (shape.bias) {
    m->bias_.assign(static_cast<size_t>(m->panels_ * kPanelCols), 0.0f);
    ConvertToFloat(bias.dtype(), bias.data(), shape.n, m->bias_.data());
  }
  return m;
}

int64_t QuantizedMatmul::PackPanel(int64_t p, const Tensor& top, const Tensor* bottom) {
  const int64_t k = shape_.k, n = shape_.n, pk = padded_k_;
  const int64_t n_top = top.dim(0);
  uint8_t* base = packed_ + p * panel_bytes_;
  std::memset(base, 0, static_cast<size_t>(panel_bytes_));
  int64_t bad = -1;
  std::vector<float> row(static_cast<size_t>(pk));
  for (int64_t i = 0; i < kPanelCols; ++i) {
    const int64_t col = p * kPanelCols + i;
    std::fill(row.begin(), row.end(), 0.0f);
    if (col < n) {
      const Tensor& part = col < n_top ? top : *bottom;
      const int64_t r = col < n_top ? col : col - n_top;
      const size_t elem = static_cast<size_t>(DTypeSize(part.dtype()));
      ConvertToFloat(part.dtype(), static_cast<const char*>(part.data()) + r * k * elem, k,
                     row.data());
      for (int64_t kk = 0; kk < k; ++kk) {
        if (!std::isfinite(row[static_cast<size_t>(kk)])) bad = col;
      }
    }
    if (bad >= 0) return bad;
    if (!int4_) {
      float amax = 0;
      for (float v : row) amax = std::max(amax, std::fabs(v));
      const float inv = InverseOrZero(127.0f, amax);
      // The VNNI kernel takes the weights + 128 as its unsigned operand.
      const int offset = vnni_ ? 128 : 0;
      for (int64_t kk = 0; kk < pk; ++kk) {
        const int q = inv != 0 ? QuantizeValue(row[static_cast<size_t>(kk)], inv, -127, 127) : 0;
        base[(kk / 4) * 64 + i * 4 + kk % 4] = static_cast<uint8_t>((q + offset) & 0xff);
      }
      if (col < n) col_scale_[static_cast<size_t>(col)] = inv != 0 ? amax / 127.0f : 0.0f;
      continue;
    }
    for (int64_t g = 0; g < groups_; ++g) {
      const float* v = row.data() + g * kGroup;
      float m = 0;
      for (int64_t j = 0; j < kGroup; ++j) {
        if (std::fabs(v[j]) > std::fabs(m)) m = v[j];
      }
      uint16_t d16 = FloatToBf16(m / -8.0f);
      const float inv = InverseOrZero(1.0f, Bf16ToFloat(d16));
      if (inv == 0) d16 = 0;
      uint8_t* block = base + g * qk::kInt4GroupBytes;
      for (int64_t j = 0; j < kGroup; ++j) {
        const int q = inv != 0 ? QuantizeValue(v[j], inv, -8, 7) : 0;
        const int64_t b = j / 8, quad = (j % 8) / 4, lane = j % 4;
        uint8_t& byte = block[b * 64 + i * 4 + lane];
        byte = static_cast<uint8_t>(byte | ((q + 8) << (4 * quad)));
      }
      std::memcpy(block + 256 + 2 * i, &d16, 2);
    }
  }
  return -1;
}

const uint8_t* QuantizedMatmul::PanelData(int64_t p) const { return packed_ + p * panel_bytes_; }

int8_t QuantizedMatmul::quantized_weight(int64_t n, int64_t k) const {
  const uint8_t* base = PanelData(n / kPanelCols);
  const int64_t i = n % kPanelCols;
  if (!int4_) {
    const uint8_t stored = base[(k / 4) * 64 + i * 4 + k % 4];
    return static_cast<int8_t>(vnni_ ? stored ^ 0x80 : stored);
  }
  const int64_t g = k / kGroup, j = k % kGroup;
  const uint8_t byte = base[g * qk::kInt4GroupBytes + (j / 8) * 64 + i * 4 + j % 4];
  return static_cast<int8_t>(((byte >> (4 * ((j % 8) / 4))) & 0x0f) - 8);
}

float QuantizedMatmul::weight_scale(int64_t n, int64_t k) const {
  if (!int4_) return col_scale_[static_cast<size_t>(n)];
  uint16_t d16;
  std::memcpy(
      &d16,
      PanelData(n / kPanelCols) + (k / kGroup) * qk::kInt4GroupBytes + 256 + 2 * (n % kPanelCols),
      2);
  return Bf16ToFloat(d16);
}

size_t QuantizedMatmul::weight_bytes() const {
  return static_cast<size_t>(panels_ * panel_bytes_) + col_scale_.size() * sizeof(float);
}

std::string QuantizedMatmul::impl() const {
  return absl::StrCat(
      "own:", int4_ ? "int4 " : "int8 ", vnni_ ? "avx512 vnni" : "avx2",
      int4_ ? " (weights per 32-input group with bf16 scales" : " (per-channel weights",
      ", activations per ", kGroup, "-input group)");
}

void QuantizedMatmul::RunTiles(const Pass& pass, int64_t p0, int panels, int64_t b0,
                               int64_t b1) const {
  const int64_t pk = padded_k_, groups = groups_;
  const int64_t padded_n = panels_ * kPanelCols;
  const int64_t group_bytes = qk::GroupBytes(format());  // of one panel
  // Several row blocks: K in chunks whose weights stay in L1 while every
  // block runs over them. One block: all of K at once, prefetching.
  const int64_t chunk =
      b1 - b0 > 1 ? std::max<int64_t>(1, kChunkBytes / (group_bytes * panels)) : groups;
  const uint8_t* w0 = packed_ + p0 * panel_bytes_;
  for (int64_t g0 = 0; g0 < groups; g0 += chunk) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t begin = pass.BlockBegin(b), count = pass.BlockBegin(b + 1) - begin;
      qk::TileArgs t;
      t.x = pass.xq + begin * pk + g0 * kGroup;
      t.x_stride = pk;
      t.x_scale = pass.x_scale + begin * groups + g0;
      t.x_corr = pass.x_corr + begin * groups + g0;
      t.scale_stride = groups;
      t.w = w0 + g0 * group_bytes;
      t.panel_stride = panel_bytes_;
      t.groups = std::min(chunk, groups - g0);
      t.acc = pass.acc + begin * padded_n + p0 * kPanelCols;
      t.acc_stride = padded_n;
      t.first = g0 == 0;
      t.prefetch_bytes = b1 - b0 == 1 ? kPrefetchBytes : 0;
      if (vnni_) {
        qk::TileVnni(format(), static_cast<int>(count), panels, t);
      } else {
        qk::TileAvx2(format(), static_cast<int>(count), panels, t);
      }
    }
  }
}

void QuantizedMatmul::Finish(const Pass& pass, int64_t r0, int64_t p0, int panels, int64_t rs,
                             int64_t re, const float* multiplier, float* dst) const {
  const int64_t n = shape_.n;
  const int64_t padded_n = panels_ * kPanelCols;
  const int64_t c0 = p0 * kPanelCols, c_end = (p0 + panels) * kPanelCols;
  if (!int4_) {
    qk::ScaleColumnsAvx2(pass.acc + rs * padded_n, padded_n, re - rs, c0, c_end, col_scale_.data());
  }
  panel::EpilogueArgs e;
  e.acc = pass.acc + rs * padded_n;
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

void QuantizedMatmul::Execute(const float* src, int64_t rows, float* dst, const float* multiplier,
                              AlignedBuffer* scratch) const {
  if (rows <= 0) return;
  const int64_t k = shape_.k, pk = padded_k_, groups = groups_;
  const int32_t offset = qk::CorrectionOffset(format(), vnni_);
  const int64_t pass_rows = std::min(rows, kPassRows);
  auto align = [](size_t bytes) { return (bytes + 63) & ~size_t{63}; };
  const size_t x_bytes = align(static_cast<size_t>(pass_rows * pk));
  const size_t scale_bytes = align(static_cast<size_t>(pass_rows * groups) * sizeof(float));
  const size_t acc_bytes = static_cast<size_t>(pass_rows * panels_ * kPanelCols) * sizeof(float);
  char* base = static_cast<char*>(scratch->Reserve(x_bytes + 2 * scale_bytes + acc_bytes));
  auto* xq = reinterpret_cast<uint8_t*>(base);
  auto* x_scale = reinterpret_cast<float*>(base + x_bytes);
  auto* x_corr = reinterpret_cast<int32_t*>(base + x_bytes + scale_bytes);
  Pass pass;
  pass.xq = xq;
  pass.x_scale = x_scale;
  pass.x_corr = x_corr;
  pass.acc = reinterpret_cast<float*>(base + x_bytes + 2 * scale_bytes);
  const int threads = OpenMpMaxThreads();

  for (int64_t r0 = 0; r0 < rows; r0 += kPassRows) {
    const int64_t m = std::min(kPassRows, rows - r0);
#pragma omp parallel for schedule(static) if (m * k >= 65536)
    for (int64_t r = 0; r < m; ++r) {
      qk::QuantizeRowAvx2(src + (r0 + r) * k, k, pk, offset, xq + r * pk, x_scale + r * groups,
                          x_corr + r * groups);
    }
    pass.rows = m;
    pass.blocks = (m + kMaxTileRows - 1) / kMaxTileRows;
    int64_t widest = 0;
    for (int64_t b = 0; b < pass.blocks; ++b) {
      widest = std::max(widest, pass.BlockBegin(b + 1) - pass.BlockBegin(b));
    }
    const int np = vnni_ ? qk::TilePanelsVnni(format(), static_cast<int>(widest))
                         : qk::TilePanelsAvx2(format(), static_cast<int>(widest));
    // Work items: panel groups × ranges of row blocks (ranges only when
    // there are too few panel groups to keep every thread busy).
    const int64_t panel_groups = (panels_ + np - 1) / np;
    int64_t splits = 1;
    if (panel_groups < 2 * threads && pass.blocks >= 4) {
      splits = std::min<int64_t>((2 * threads + panel_groups - 1) / panel_groups, pass.blocks);
    }
    const int64_t blocks_per_split = (pass.blocks + splits - 1) / splits;
    const int64_t items = panel_groups * splits;
#pragma omp parallel for schedule(static) if (items > 1)
    for (int64_t item = 0; item < items; ++item) {
      const int64_t b0 = (item % splits) * blocks_per_split;
      const int64_t b1 = std::min(pass.blocks, b0 + blocks_per_split);
      if (b0 >= b1) continue;
      const int64_t p0 = item / splits * np;
      const int panels = static_cast<int>(std::min<int64_t>(np, panels_ - p0));
      RunTiles(pass, p0, panels, b0, b1);
      Finish(pass, r0, p0, panels, pass.BlockBegin(b0), pass.BlockBegin(b1), multiplier, dst);
    }
  }
}

}  // namespace moe
