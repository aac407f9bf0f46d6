#include "experts/panel_matmul.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/cpu_tier.h"
#include "experts/openmp_threads.h"
#include "experts/panel_kernels.h"

namespace moe {
namespace {

using panel::kMaxTilePanels;
using panel::kMaxTileRows;
using panel::kPanelCols;

// K steps per chunk: 16 KB of one panel's weights, which stay in L1 while
// every row block of the batch runs over them.
int64_t ChunkSteps(DType compute) { return compute == DType::kBF16 ? 512 : 256; }

// Rows one Execute() pass covers: bounds the f32 sums' scratch
// (kPassRows × N floats) and changes no bits.
constexpr int64_t kPassRows = 256;

// Software prefetch distance for small row counts (memory-bound): the
// hardware prefetcher alone leaves DRAM bandwidth unused across the
// panels' 4 KB pages.
constexpr int64_t kPrefetchBytes = 1024;
constexpr int64_t kPrefetchMaxRows = 6;

// Panels per tile for a row block of `rows` rows: as many as keep
// rows × panels <= 6 (12 sum registers).
int PanelsPerTile(int64_t rows) {
  if (rows >= kMaxTileRows) return 1;
  return static_cast<int>(std::min<int64_t>(kMaxTilePanels, kMaxTileRows / rows));
}

panel::Type ToPanelType(DType t) {
  return t == DType::kBF16 ? panel::Type::kBF16 : panel::Type::kF32;
}

}  // namespace

PanelMatmul::PanelMatmul(const MatmulShape& shape) : shape_(shape) {}

absl::StatusOr<std::unique_ptr<PanelMatmul>> PanelMatmul::Create(const MatmulShape& shape,
                                                                 const Tensor& top,
                                                                 const Tensor* bottom,
                                                                 const Tensor& bias) {
  if (!CpuMeetsBaseline()) {
    return absl::FailedPreconditionError(
        "this CPU lacks AVX2, FMA or F16C (x86-64-v3), which moe-serve's kernels need");
  }
  if (shape.k < 1 || shape.n < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("matmul shape ", shape.Key(), " has an empty dimension"));
  }
  if (shape.compute != DType::kF32 && shape.compute != DType::kBF16) {
    return absl::InvalidArgumentError("panel matmul compute dtype must be f32 or bf16");
  }
  if (shape.dst != DType::kF32 && shape.dst != DType::kBF16) {
    return absl::InvalidArgumentError("panel matmul dst dtype must be f32 or bf16");
  }
  std::unique_ptr<PanelMatmul> m(new PanelMatmul(shape));
  const int64_t k = shape.k, n = shape.n;
  m->panels_ = (n + kPanelCols - 1) / kPanelCols;
  const size_t elem = static_cast<size_t>(DTypeSize(shape.compute));
  m->weight_bytes_ = static_cast<size_t>(m->panels_ * k * kPanelCols) * elem;
  char* packed = static_cast<char*>(m->weights_.Reserve(m->weight_bytes_));
  const int64_t n_top = top.dim(0);
  // Row `col` of the stacked matrix, as floats.
  auto source_row = [&](int64_t col, std::vector<float>* row) {
    const Tensor& part = col < n_top ? top : *bottom;
    const int64_t r = col < n_top ? col : col - n_top;
    const size_t part_elem = static_cast<size_t>(DTypeSize(part.dtype()));
    ConvertToFloat(part.dtype(), static_cast<const char*>(part.data()) + r * k * part_elem, k,
                   row->data());
  };
  const bool bf16 = shape.compute == DType::kBF16;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t p = 0; p < m->panels_; ++p) {
    std::vector<float> row(static_cast<size_t>(k));
    char* base = packed + static_cast<size_t>(p * k * kPanelCols) * elem;
    for (int64_t i = 0; i < kPanelCols; ++i) {
      const int64_t col = p * kPanelCols + i;
      if (col < n) {
        source_row(col, &row);
      } else {
        std::fill(row.begin(), row.end(), 0.0f);
      }
      if (bf16) {
        // Lane i % 8 holds column i % 8 (low half) and i % 8 + 8 (high).
        const int64_t slot = (i % 8) * 2 + (i / 8);
        auto* out = reinterpret_cast<uint16_t*>(base);
        for (int64_t kk = 0; kk < k; ++kk) out[kk * kPanelCols + slot] = FloatToBf16(row[kk]);
      } else {
        auto* out = reinterpret_cast<float*>(base);
        for (int64_t kk = 0; kk < k; ++kk) out[kk * kPanelCols + i] = row[kk];
      }
    }
  }
  if (shape.bias) {
    m->bias_.assign(static_cast<size_t>(m->panels_ * kPanelCols), 0.0f);
    ConvertToFloat(bias.dtype(), bias.data(), n, m->bias_.data());
  }
  return m;
}

PanelMatmul::PassLayout PanelMatmul::LayoutPass(int64_t m) const {
  PassLayout l;
  l.m = m;
  // Row blocks of at most 6 rows, as even as possible (8 rows: 4 + 4, not
  // 6 + 2, so that every tile keeps enough independent sums).
  l.blocks = (m + kMaxTileRows - 1) / kMaxTileRows;
  int64_t widest = 0;
  for (int64_t b = 0; b < l.blocks; ++b) widest = std::max(widest, l.begin(b + 1) - l.begin(b));
  l.panels_per_tile = PanelsPerTile(widest);
  l.groups = (panels_ + l.panels_per_tile - 1) / l.panels_per_tile;
  return l;
}

void PanelMatmul::PackPass(const char* src_pass, const PassLayout& l, float* xpack) const {
  // Each block's rows interleaved by k (widened to f32): block b holds
  // rows [begin, end) at xpack + begin * k, input i of its row j at
  // [i * (end - begin) + j].
  const int64_t k = shape_.k;
  const bool bf16 = shape_.compute == DType::kBF16;
#pragma omp parallel for schedule(static) if (l.m * k >= 65536)
  for (int64_t b = 0; b < l.blocks; ++b) {
    const int64_t begin = l.begin(b), count = l.begin(b + 1) - begin;
    float* out = xpack + begin * k;
    for (int64_t j = 0; j < count; ++j) {
      if (bf16) {
        const auto* in = reinterpret_cast<const uint16_t*>(src_pass) + (begin + j) * k;
        for (int64_t i = 0; i < k; ++i) out[i * count + j] = Bf16ToFloat(in[i]);
      } else {
        const auto* in = reinterpret_cast<const float*>(src_pass) + (begin + j) * k;
        for (int64_t i = 0; i < k; ++i) out[i * count + j] = in[i];
      }
    }
  }
}

void PanelMatmul::RunTiles(const PassLayout& l, int64_t group, int64_t b0, int64_t b1,
                           const float* xpack, float* acc) const {
  const int64_t k = shape_.k;
  const int64_t padded_n = panels_ * kPanelCols;
  const int64_t chunk = ChunkSteps(shape_.compute);
  const size_t elem = static_cast<size_t>(DTypeSize(shape_.compute));
  const int64_t p0 = group * l.panels_per_tile;
  const int panels = static_cast<int>(std::min<int64_t>(l.panels_per_tile, panels_ - p0));
  const char* w0 =
      static_cast<const char*>(weights_.data()) + static_cast<size_t>(p0 * k * kPanelCols) * elem;
  for (int64_t k0 = 0; k0 < k; k0 += chunk) {
    const int64_t steps = std::min(chunk, k - k0);
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t begin = l.begin(b), count = l.begin(b + 1) - begin;
      panel::TileArgs t;
      t.x = xpack + begin * k + k0 * count;
      t.x_step = count;
      t.w = w0 + static_cast<size_t>(k0 * kPanelCols) * elem;
      t.panel_stride = k * kPanelCols;
      t.k_count = steps;
      t.acc = acc + begin * padded_n + p0 * kPanelCols;
      t.acc_stride = padded_n;
      t.first = k0 == 0;
      t.prefetch_bytes = l.m <= kPrefetchMaxRows ? kPrefetchBytes : 0;
      panel::TileAvx2(static_cast<int>(count), panels, ToPanelType(shape_.compute), t);
    }
  }
}

void PanelMatmul::RunEpilogue(const PassLayout& l, int64_t group, int64_t b0, int64_t b1,
                              int64_t r0, const float* acc, const void* multiplier,
                              void* dst) const {
  const int64_t n = shape_.n;
  const int64_t padded_n = panels_ * kPanelCols;
  const size_t elem = static_cast<size_t>(DTypeSize(shape_.compute));
  const size_t dst_elem = static_cast<size_t>(DTypeSize(shape_.dst));
  const int64_t p0 = group * l.panels_per_tile;
  const int64_t panels = std::min<int64_t>(l.panels_per_tile, panels_ - p0);
  const int64_t rs = l.begin(b0), re = l.begin(b1);
  panel::EpilogueArgs e;
  e.acc = acc + rs * padded_n;
  e.acc_stride = padded_n;
  e.bias = shape_.bias ? bias_.data() : nullptr;
  e.act = PanelActivation(shape_);
  e.round_bf16_first = shape_.dst == DType::kBF16 && shape_.post != MatmulPostOp::kNone;
  if (shape_.post == MatmulPostOp::kMultiply) {
    e.multiplier = static_cast<const char*>(multiplier) + (r0 + rs) * n * elem;
    e.multiplier_type = ToPanelType(shape_.compute);
  }
  e.dst = static_cast<char*>(dst) + (r0 + rs) * n * dst_elem;
  e.dst_type = ToPanelType(shape_.dst);
  e.row_stride = n;
  e.rows = re - rs;
  e.c0 = p0 * kPanelCols;
  e.c1 = std::min(n, (p0 + panels) * kPanelCols);
  panel::EpilogueAvx2(e);
}

void PanelMatmul::Execute(const void* src, int64_t rows, void* dst, const void* multiplier,
                          AlignedBuffer* scratch) const {
  if (rows <= 0) return;
  const int64_t k = shape_.k;
  const int64_t padded_n = panels_ * kPanelCols;
  const int64_t pass_rows = std::min(rows, kPassRows);
  const size_t x_bytes = (static_cast<size_t>(pass_rows * k) * sizeof(float) + 63) & ~size_t{63};
  const size_t acc_bytes = static_cast<size_t>(pass_rows * padded_n) * sizeof(float);
  char* base = static_cast<char*>(scratch->Reserve(x_bytes + acc_bytes));
  float* xpack = reinterpret_cast<float*>(base);
  float* acc = reinterpret_cast<float*>(base + x_bytes);
  const size_t elem = static_cast<size_t>(DTypeSize(shape_.compute));
  const int threads = OpenMpMaxThreads();

  for (int64_t r0 = 0; r0 < rows; r0 += kPassRows) {
    const PassLayout l = LayoutPass(std::min(kPassRows, rows - r0));
    PackPass(static_cast<const char*>(src) + r0 * k * elem, l, xpack);
    // Work items: panel groups × ranges of blocks (block ranges only when
    // there are too few groups to keep every thread busy).
    int64_t splits = 1;
    if (l.groups < 2 * threads && l.blocks >= 4) {
      splits = std::min<int64_t>((2 * threads + l.groups - 1) / l.groups, l.blocks);
    }
    const int64_t blocks_per_split = (l.blocks + splits - 1) / splits;
    const int64_t items = l.groups * splits;
#pragma omp parallel for schedule(static) if (items > 1)
    for (int64_t item = 0; item < items; ++item) {
      const int64_t g = item / splits;
      const int64_t b0 = (item % splits) * blocks_per_split;
      const int64_t b1 = std::min(l.blocks, b0 + blocks_per_split);
      if (b0 >= b1) continue;
      RunTiles(l, g, b0, b1, xpack, acc);
      RunEpilogue(l, g, b0, b1, r0, acc, multiplier, dst);
    }
  }
}

std::string PanelMatmul::impl() const {
  return absl::StrCat("own:avx2 panels (", DTypeName(shape_.compute),
                      " weights, f32 fma chain in K order)");
}

panel::Act PanelActivation(const MatmulShape& s) {
  if (s.post != MatmulPostOp::kActivation) return panel::Act::kNone;
  switch (s.activation) {
    case Activation::kRelu:
      return panel::Act::kRelu;
    case Activation::kGelu:
      return panel::Act::kGelu;
    case Activation::kGeluTanh:
      return panel::Act::kGeluTanh;
    case Activation::kSilu:
      return panel::Act::kSilu;
  }
  return panel::Act::kNone;
}

void ApplyBf16PostOp(const MatmulShape& shape, int64_t rows, const void* multiplier, void* values) {
  const panel::Act act = PanelActivation(shape);
  const auto* mul =
      shape.post == MatmulPostOp::kMultiply ? static_cast<const uint16_t*>(multiplier) : nullptr;
  if (act == panel::Act::kNone && mul == nullptr) return;
  auto* out = static_cast<uint16_t*>(values);
  // Chunks of 8-value groups: every element is computed on its own, so the
  // split changes no bits.
  constexpr int64_t kChunk = 4096;
  const int64_t count = rows * shape.n;
  const int64_t chunks = (count + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (count >= 4 * kChunk)
  for (int64_t i = 0; i < chunks; ++i) {
    const int64_t at = i * kChunk;
    const int64_t len = std::min(kChunk, count - at);
    panel::Bf16PostOpAvx2(act, mul != nullptr ? mul + at : nullptr, len, out + at);
  }
}

}  // namespace moe
