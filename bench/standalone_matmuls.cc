#include "bench/standalone_matmuls.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>
#include <unordered_map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "experts/dnnl_engine.h"

namespace moe {
namespace {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

// Operand types per compute dtype: int8 runs oneDNN's u8 × s8 matmul with
// an f32 dst (the project's int8 path keeps its hidden activations f32).
// oneDNN 2.6 has no 4-bit matmul: int4 layers are timed against the same
// int8 one (their weight bytes are counted as int4's; CountWeightBytesAs).
bool Quantized(DType t) { return t == DType::kI8 || t == DType::kI4; }
dt SrcType(DType t) { return t == DType::kBF16 ? dt::bf16 : Quantized(t) ? dt::u8 : dt::f32; }
dt WeightType(DType t) { return Quantized(t) ? dt::s8 : SrcType(t); }
dt HiddenType(DType t) { return Quantized(t) ? dt::f32 : SrcType(t); }

// Small values from a 32-bit LCG, written in the source layout.
void FillPseudoRandom(dnnl::memory* m, DType type, int64_t count, uint32_t seed) {
  uint32_t s = seed * 2654435761u + 1;
  if (Quantized(type)) {
    auto* p = static_cast<int8_t*>(m->get_data_handle());
    for (int64_t i = 0; i < count; ++i) {
      s = s * 1664525u + 1013904223u;
      p[i] = static_cast<int8_t>(static_cast<int>(s >> 24) - 128);
    }
  } else if (type == DType::kBF16) {
    auto* p = static_cast<uint16_t*>(m->get_data_handle());
    for (int64_t i = 0; i < count; ++i) {
      s = s * 1664525u + 1013904223u;
      p[i] = FloatToBf16((static_cast<float>(s >> 8) * (1.0f / 16777216.0f) - 0.5f) * 0.05f);
    }
  } else {
    auto* p = static_cast<float*>(m->get_data_handle());
    for (int64_t i = 0; i < count; ++i) {
      s = s * 1664525u + 1013904223u;
      p[i] = (static_cast<float>(s >> 8) * (1.0f / 16777216.0f) - 0.5f) * 0.05f;
    }
  }
}

}  // namespace

StandaloneMatmuls::StandaloneMatmuls(DType compute)
    : compute_(compute), bytes_dtype_(compute), engine_(CpuEngine()), stream_(engine_) {}

absl::StatusOr<std::unique_ptr<StandaloneMatmuls>> StandaloneMatmuls::Create(
    const std::vector<BlockShape>& blocks, DType compute) {
  std::unique_ptr<StandaloneMatmuls> s(new StandaloneMatmuls(compute));
  for (const BlockShape& b : blocks) {
    Block block;
    absl::Status st = s->AddMatrix(&block, b.d_model, b.d_ff, false);
    if (st.ok() && b.gated) st = s->AddMatrix(&block, b.d_model, b.d_ff, false);
    if (st.ok()) st = s->AddMatrix(&block, b.d_ff, b.d_model, true);
    if (!st.ok()) return st;
    s->blocks_.push_back(std::move(block));
  }
  return s;
}

absl::Status StandaloneMatmuls::AddMatrix(Block* block, int64_t k, int64_t n, bool f32_dst) {
  Matrix m;
  m.k = k;
  m.n = n;
  m.f32_dst = f32_dst;
  try {
    // The layout oneDNN prefers for these weights (asked at 64 rows).
    dnnl::memory::desc src({64, k}, SrcType(compute_), tag::ab);
    dnnl::memory::desc any({k, n}, WeightType(compute_), tag::any);
    dnnl::memory::desc dst({64, n}, f32_dst ? dt::f32 : HiddenType(compute_), tag::ab);
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src, any, dst), engine_);
    m.packed_desc = pd.weights_desc();
    dnnl::memory plain({{k, n}, WeightType(compute_), tag::ba}, engine_);
    FillPseudoRandom(&plain, compute_, k * n,
                     static_cast<uint32_t>(blocks_.size() * 3 + block->matrices.size()));
    m.weights = dnnl::memory(m.packed_desc, engine_);
    dnnl::reorder(plain, m.weights).execute(stream_, plain, m.weights);
    stream_.wait();
  } catch (const dnnl::error& e) {
    return absl::InternalError(absl::StrCat("standalone matmul ", k, "x", n, ": ", e.what()));
  }
  block->matrices.push_back(std::move(m));
  return absl::OkStatus();
}

dnnl::memory::desc StandaloneMatmuls::SrcDesc(const Matrix& m, int64_t rows) const {
  return dnnl::memory::desc({rows, m.k}, SrcType(compute_), tag::ab);
}

dnnl::memory::desc StandaloneMatmuls::DstDesc(const Matrix& m, int64_t rows) const {
  return dnnl::memory::desc({rows, m.n}, m.f32_dst ? dt::f32 : HiddenType(compute_), tag::ab);
}

dnnl::matmul StandaloneMatmuls::Plan(const Matrix& m, int64_t rows) const {
  return dnnl::matmul(dnnl::matmul::primitive_desc(
      dnnl::matmul::desc(SrcDesc(m, rows), m.packed_desc, DstDesc(m, rows)), engine_));
}

absl::StatusOr<dnnl::matmul*> StandaloneMatmuls::Primitive(Matrix* m, int64_t rows) {
  auto it = m->by_rows.find(rows);
  if (it != m->by_rows.end()) return &it->second;
  try {
    return &m->by_rows.emplace(rows, Plan(*m, rows)).first->second;
  } catch (const dnnl::error& e) {
    return absl::InternalError(
        absl::StrCat("standalone matmul ", m->k, "x", m->n, " for ", rows, " rows: ", e.what()));
  }
}

absl::StatusOr<double> StandaloneMatmuls::Run(const std::vector<int64_t>& rows) {
  if (rows.size() != blocks_.size()) return absl::InvalidArgumentError("rows per block");
  // Untimed set-up: primitives and activation buffers.
  size_t most = 0;
  std::vector<std::pair<dnnl::matmul*, const Matrix*>> calls;
  std::vector<int64_t> call_rows;
  for (size_t b = 0; b < blocks_.size(); ++b) {
    if (rows[b] <= 0) continue;
    for (Matrix& m : blocks_[b].matrices) {
      auto p = Primitive(&m, rows[b]);
      if (!p.ok()) return p.status();
      calls.emplace_back(*p, &m);
      call_rows.push_back(rows[b]);
      most = std::max(most, static_cast<size_t>(rows[b] * std::max(m.k, m.n) * 4));
    }
  }
  if (src_.size() < most) {
    src_.assign(most, 0);
    dst_.assign(most, 0);
  }
  const auto start = std::chrono::steady_clock::now();
  try {
    for (size_t i = 0; i < calls.size(); ++i) {
      const Matrix& m = *calls[i].second;
      const int64_t r = call_rows[i];
      dnnl::memory src(SrcDesc(m, r), engine_, src_.data());
      dnnl::memory dst(DstDesc(m, r), engine_, dst_.data());
      calls[i].first->execute(
          stream_, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, m.weights}, {DNNL_ARG_DST, dst}});
      stream_.wait();
    }
  } catch (const dnnl::error& e) {
    return absl::InternalError(absl::StrCat("standalone matmul run: ", e.what()));
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

absl::StatusOr<double> StandaloneMatmuls::RunBlocksInParallel(const std::vector<int64_t>& rows,
                                                              int lanes) {
  if (rows.size() != blocks_.size() || lanes < 1) {
    return absl::InvalidArgumentError("rows per block / lanes");
  }
  // Greedy split: largest blocks first, each to the least loaded lane.
  std::vector<size_t> order;
  for (size_t b = 0; b < rows.size(); ++b) {
    if (rows[b] > 0) order.push_back(b);
  }
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return rows[a] > rows[b]; });
  std::vector<std::vector<size_t>> assigned(static_cast<size_t>(lanes));
  std::vector<int64_t> load(static_cast<size_t>(lanes), 0);
  size_t most = 0;
  for (size_t b : order) {
    const size_t lane =
        static_cast<size_t>(std::min_element(load.begin(), load.end()) - load.begin());
    assigned[lane].push_back(b);
    load[lane] += rows[b];
    for (Matrix& m : blocks_[b].matrices) {
      if (m.lane_by_rows.size() < static_cast<size_t>(lanes)) {
        m.lane_by_rows.resize(static_cast<size_t>(lanes));
      }
      most = std::max(most, static_cast<size_t>(rows[b] * std::max(m.k, m.n) * 4));
    }
  }
  while (lanes_.size() < static_cast<size_t>(lanes)) {
    Lane lane;
    lane.stream = std::make_unique<dnnl::stream>(engine_);
    lanes_.push_back(std::move(lane));
  }
  for (int l = 0; l < lanes; ++l) {
    Lane& lane = lanes_[static_cast<size_t>(l)];
    if (lane.src.size() < most) {
      lane.src.assign(most, 0);
      lane.dst.assign(most, 0);
    }
  }
  std::vector<std::string> errors(static_cast<size_t>(lanes));
  const auto start = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(lanes)
  {
    const size_t l = static_cast<size_t>(omp_get_thread_num());
    Lane& lane = lanes_[l];
    try {
      for (size_t b : assigned[l]) {
        const int64_t r = rows[b];
        for (Matrix& m : blocks_[b].matrices) {
          auto& cache = m.lane_by_rows[l];
          auto it = cache.find(r);
          if (it == cache.end()) {
            // Created inside the parallel region: oneDNN plans it for one
            // thread and runs it on this one.
            it = cache.emplace(r, Plan(m, r)).first;
          }
          dnnl::memory src_mem(SrcDesc(m, r), engine_, lane.src.data());
          dnnl::memory dst_mem(DstDesc(m, r), engine_, lane.dst.data());
          it->second.execute(
              *lane.stream,
              {{DNNL_ARG_SRC, src_mem}, {DNNL_ARG_WEIGHTS, m.weights}, {DNNL_ARG_DST, dst_mem}});
          lane.stream->wait();
        }
      }
    } catch (const dnnl::error& e) {
      errors[l] = e.what();
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (const std::string& e : errors) {
    if (!e.empty()) return absl::InternalError(absl::StrCat("parallel blocks: ", e));
  }
  return seconds;
}

int64_t StandaloneMatmuls::WeightBytes(const std::vector<int64_t>& rows) const {
  int64_t bytes = 0;
  for (size_t b = 0; b < blocks_.size() && b < rows.size(); ++b) {
    if (rows[b] <= 0) continue;
    for (const Matrix& m : blocks_[b].matrices) {
      bytes +=
          static_cast<int64_t>(static_cast<double>(m.k * m.n) * PackedBytesPerWeight(bytes_dtype_));
    }
  }
  return bytes;
}

double StandaloneMatmuls::Flops(const std::vector<int64_t>& rows) const {
  double flops = 0;
  for (size_t b = 0; b < blocks_.size() && b < rows.size(); ++b) {
    for (const Matrix& m : blocks_[b].matrices) {
      flops += 2.0 * static_cast<double>(rows[b]) * static_cast<double>(m.k * m.n);
    }
  }
  return flops;
}

}  // namespace moe
