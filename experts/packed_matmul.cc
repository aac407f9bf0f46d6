#include "experts/packed_matmul.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <unordered_map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "experts/aligned_buffer.h"
#include "experts/dnnl_engine.h"

namespace moe {
namespace {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

dt ToDnnl(DType t) {
  switch (t) {
    case DType::kF32:
      return dt::f32;
    case DType::kBF16:
      return dt::bf16;
    case DType::kF16:
      return dt::f16;
    case DType::kI8:
      return dt::s8;
    case DType::kI4:
      return dt::undef;
  }
  return dt::undef;
}

dnnl::algorithm ToEltwise(Activation a) {
  switch (a) {
    case Activation::kRelu:
      return dnnl::algorithm::eltwise_relu;
    case Activation::kGelu:
      return dnnl::algorithm::eltwise_gelu_erf;
    case Activation::kGeluTanh:
      return dnnl::algorithm::eltwise_gelu_tanh;
    case Activation::kSilu:
      return dnnl::algorithm::eltwise_swish;
  }
  return dnnl::algorithm::eltwise_relu;
}

absl::Status DnnlError(const std::string& what, const dnnl::error& e) {
  return absl::InternalError(absl::StrCat(what, ": oneDNN error: ", e.what()));
}

// The row count whose primitive decides the packed weight layout.
constexpr int64_t kLayoutRows = 64;

}  // namespace

std::string MatmulShape::Key() const {
  return absl::StrCat(k, "x", n, ":", DTypeName(compute), "->", DTypeName(dst), ":post",
                      static_cast<int>(post), ":act", static_cast<int>(activation), ":bias",
                      bias ? 1 : 0);
}

MatmulPrimitiveCache::MatmulPrimitiveCache(const MatmulShape& shape, dnnl::memory::desc packed,
                                           std::string impl)
    : shape_(shape), packed_(packed), impl_(std::move(impl)) {
  absl::MutexLock lock(&mu_);
  entries_.resize(static_cast<size_t>(kMaxRows + 1));
}

dnnl::post_ops MatmulPrimitiveCache::PostOps(int64_t rows) const {
  dnnl::post_ops po;
  if (PostOpAfterRounding()) return po;  // ApplyBf16PostOp runs it
  if (shape_.post == MatmulPostOp::kActivation) {
    po.append_eltwise(1.0f, ToEltwise(shape_.activation),
                      shape_.activation == Activation::kSilu ? 1.0f : 0.0f, 0.0f);
  } else if (shape_.post == MatmulPostOp::kMultiply) {
    po.append_binary(dnnl::algorithm::binary_mul,
                     dnnl::memory::desc({rows, shape_.n}, ToDnnl(shape_.compute), tag::ab));
  }
  return po;
}

dnnl::matmul::primitive_desc MatmulPrimitiveCache::MakePd(int64_t rows,
                                                          const dnnl::memory::desc& weights) const {
  const dt compute = ToDnnl(shape_.compute);
  dnnl::memory::desc src({rows, shape_.k}, compute, tag::ab);
  dnnl::memory::desc dst({rows, shape_.n}, ToDnnl(shape_.dst), tag::ab);
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  attr.set_post_ops(PostOps(rows));
  if (shape_.bias) {
    dnnl::memory::desc bias({1, shape_.n}, dt::f32, tag::ab);
    return dnnl::matmul::primitive_desc(dnnl::matmul::desc(src, weights, bias, dst), attr,
                                        CpuEngine());
  }
  return dnnl::matmul::primitive_desc(dnnl::matmul::desc(src, weights, dst), attr, CpuEngine());
}

absl::StatusOr<std::shared_ptr<MatmulPrimitiveCache>> MatmulPrimitiveCache::Create(
    const MatmulShape& shape) {
  if (shape.k < 1 || shape.n < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("matmul shape ", shape.Key(), " has an empty dimension"));
  }
  if (shape.compute != DType::kF32 && shape.compute != DType::kBF16) {
    return absl::InvalidArgumentError("matmul compute dtype must be f32 or bf16");
  }
  try {
    // Ask oneDNN for its preferred weight layout at a typical row count;
    // every row count then uses that same packed layout.
    MatmulPrimitiveCache probe(shape, dnnl::memory::desc(), "");
    dnnl::memory::desc any({shape.k, shape.n}, ToDnnl(shape.compute), tag::any);
    auto pd = probe.MakePd(kLayoutRows, any);
    dnnl::memory::desc packed = pd.weights_desc();
    // Confirm the packed layout is usable at one row too.
    auto pd1 = probe.MakePd(1, packed);
    std::string impl = pd1.impl_info_str();
    return std::shared_ptr<MatmulPrimitiveCache>(new MatmulPrimitiveCache(shape, packed, impl));
  } catch (const dnnl::error& e) {
    return DnnlError(absl::StrCat("creating matmul ", shape.Key()), e);
  }
}

absl::StatusOr<const MatmulPrimitiveCache::Entry*> MatmulPrimitiveCache::Get(int64_t rows) {
  if (rows < 1 || rows > kMaxRows) {
    return absl::InvalidArgumentError(
        absl::StrCat("matmul row count ", rows, " outside [1, ", kMaxRows, "]"));
  }
  absl::MutexLock lock(&mu_);
  auto& slot = entries_[static_cast<size_t>(rows)];
  if (slot == nullptr) {
    try {
      auto pd = MakePd(rows, packed_);
      auto entry = std::make_unique<Entry>();
      entry->primitive = dnnl::matmul(pd);
      entry->scratchpad_desc = pd.scratchpad_desc();
      slot = std::move(entry);
    } catch (const dnnl::error& e) {
      return DnnlError(absl::StrCat("creating matmul ", shape_.Key(), " for ", rows, " rows"), e);
    }
  }
  return slot.get();
}

std::string MatmulPrimitiveCache::impl() const {
  absl::MutexLock lock(&mu_);
  return impl_ + stream_note_;
}

const MatmulPrimitiveCache::StreamPlan* MatmulPrimitiveCache::stream_plan() const {
  return stream_published_.load(std::memory_order_acquire);
}

namespace {

// Deterministic values for the streaming check, rounded to `type` (f32 or
// bf16) into `out`: `rows` rows of `cols`, row r in [-s, s) with s the
// r-th of `scales` (cycled), so that the check sees small, ordinary and
// saturating activations alike.
void FillProbe(uint64_t seed, const std::vector<float>& scales, DType type, int64_t rows,
               int64_t cols, std::vector<char>* out) {
  const int64_t count = rows * cols;
  out->assign(static_cast<size_t>(count) * DTypeSize(type), 0);
  uint64_t state = seed * 0x9E3779B97F4A7C15ull + 1;
  for (int64_t i = 0; i < count; ++i) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    const float scale = scales[static_cast<size_t>(i / cols) % scales.size()];
    const float v = scale * (static_cast<float>(state >> 40) / 8388608.0f - 1.0f);
    if (type == DType::kBF16) {
      const uint16_t b = FloatToBf16(v);
      std::memcpy(out->data() + 2 * i, &b, 2);
    } else {
      std::memcpy(out->data() + 4 * i, &v, 4);
    }
  }
}

}  // namespace

bool MatmulPrimitiveCache::FindKChunk(const PackedMatmul& matrix, const std::vector<char>& x,
                                      StreamPlan* plan, std::string* note, bool* undecided) const {
  const dnnl::engine& engine = CpuEngine();
  dnnl::stream stream(engine);
  const StreamingMatmul& kernel = plan->kernel;
  // oneDNN's K chunking: a bare one-row matmul on the same packed weights,
  // against the kernel with each candidate chunk on the first 64 columns.
  dnnl::memory::desc src({1, shape_.k}, ToDnnl(shape_.compute), tag::ab);
  dnnl::memory::desc dst({1, shape_.n}, dt::f32, tag::ab);
  dnnl::matmul bare(dnnl::matmul::primitive_desc(dnnl::matmul::desc(src, packed_, dst), engine));
  std::vector<float> ref(static_cast<size_t>(shape_.n));
  dnnl::memory src_mem(src, engine, const_cast<char*>(x.data())), dst_mem(dst, engine, ref.data());
  bare.execute(
      stream,
      {{DNNL_ARG_SRC, src_mem}, {DNNL_ARG_WEIGHTS, matrix.weights_}, {DNNL_ARG_DST, dst_mem}});
  stream.wait();
  const int64_t step = kernel.k_block();
  std::vector<int64_t> candidates;
  for (int64_t c = step; c < kernel.k_padded(); c *= 2) candidates.push_back(c);
  for (int64_t c = step; c < kernel.k_padded(); c += step) candidates.push_back(c);
  candidates.push_back(kernel.k_padded());
  std::sort(candidates.begin(), candidates.end());
  candidates.erase(std::unique(candidates.begin(), candidates.end()), candidates.end());
  std::vector<char> pad(kernel.XPadBytes(1));
  std::vector<float> acc(static_cast<size_t>(shape_.n));
  const size_t cols = static_cast<size_t>(std::min<int64_t>(64, shape_.n));
  const void* weights = matrix.weights_.get_data_handle();
  int matches = 0;
  for (int64_t c : candidates) {
    kernel.RunBlocks(weights, x.data(), 1, c, 0, 1, {}, pad.data(), acc.data());
    if (std::memcmp(acc.data(), ref.data(), cols * sizeof(float)) == 0) {
      plan->k_chunk = c;
      ++matches;
    }
  }
  if (matches == 1) return true;
  // Weights that cannot tell the orders apart (e.g. constant) cannot prove
  // which one oneDNN uses: stay with the primitives, and leave the
  // question open for the next matrix of this shape.
  *undecided = matches > 1;
  *note = matches == 0
              ? " (small row counts: oneDNN; its K order is not one the streaming kernel has)"
              : " (small row counts: oneDNN; the weights could not tell its K order)";
  return false;
}

bool MatmulPrimitiveCache::AddActivationPrimitives(StreamPlan* plan, std::string* note) const {
  if (shape_.post != MatmulPostOp::kActivation || PostOpAfterRounding()) return true;
  const dnnl::engine& engine = CpuEngine();
  for (int64_t rows = 1; rows <= StreamingMatmul::kMaxRows; ++rows) {
    dnnl::memory::desc acc({rows, shape_.n}, dt::f32, tag::ab);
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    dnnl::eltwise_forward::primitive_desc pd(
        dnnl::eltwise_forward::desc(dnnl::prop_kind::forward_inference,
                                    ToEltwise(shape_.activation), acc,
                                    shape_.activation == Activation::kSilu ? 1.0f : 0.0f, 0.0f),
        attr, engine);
    // Only the JIT eltwise runs the same code as the matmul's post-op.
    if (std::string(pd.impl_info_str()).rfind("jit", 0) != 0) {
      *note = absl::StrCat(" (small row counts: oneDNN; eltwise is ", pd.impl_info_str(), ")");
      return false;
    }
    plan->activation.push_back({dnnl::eltwise_forward(pd), pd.scratchpad_desc()});
  }
  return true;
}

absl::StatusOr<bool> MatmulPrimitiveCache::StreamingMatchesPrimitives(const PackedMatmul& matrix,
                                                                      const StreamPlan& plan,
                                                                      const std::vector<char>& x,
                                                                      std::string* note) const {
  dnnl::stream stream(CpuEngine());
  AlignedBuffer scratch;
  std::vector<char> mul;
  FillProbe(2, {2.0f, 0.5f, 64.0f, 1.0f / 256}, shape_.compute, StreamingMatmul::kMaxRows, shape_.n,
            &mul);
  const size_t out_bytes =
      static_cast<size_t>(StreamingMatmul::kMaxRows * shape_.n) * DTypeSize(shape_.dst);
  std::vector<char> want(out_bytes), got(out_bytes);
  const void* m = shape_.post == MatmulPostOp::kMultiply ? mul.data() : nullptr;
  for (int64_t rows = 1; rows <= StreamingMatmul::kMaxRows; ++rows) {
    MOE_RETURN_IF_ERROR(
        matrix.ExecutePrimitives(x.data(), rows, want.data(), m, &scratch, &stream));
    MOE_RETURN_IF_ERROR(
        matrix.ExecuteStreaming(plan, x.data(), rows, got.data(), m, &scratch, &stream));
    const size_t bytes = static_cast<size_t>(rows * shape_.n) * DTypeSize(shape_.dst);
    if (std::memcmp(want.data(), got.data(), bytes) != 0) {
      *note = absl::StrCat(" (small row counts: oneDNN; the streaming result differed at ", rows,
                           " rows)");
      return false;
    }
  }
  return true;
}

absl::StatusOr<std::unique_ptr<MatmulPrimitiveCache::StreamPlan>>
MatmulPrimitiveCache::TryStreaming(const PackedMatmul& matrix, std::string* note, bool* undecided) {
  *undecided = false;
  const char* env = std::getenv("MOE_STREAMING_KERNEL");
  if (env != nullptr && std::string(env) == "0") {
    *note = " (small row counts: oneDNN; MOE_STREAMING_KERNEL=0)";
    return nullptr;
  }
  // The kernel writes f32, or bf16 with the bf16 instruction set it needs.
  const bool dst_ok =
      shape_.dst == DType::kF32 || (shape_.dst == DType::kBF16 && shape_.compute == DType::kBF16);
  auto kernel = StreamingMatmul::ForLayout(packed_, shape_.compute, shape_.k, shape_.n);
  if (!kernel.has_value() || !dst_ok) {
    *note = " (small row counts: oneDNN; no streaming kernel for this layout or CPU)";
    return nullptr;
  }
  auto plan = std::make_unique<StreamPlan>(*kernel);
  std::vector<char> x;
  FillProbe(1, {1.0f, 16.0f, 1.0f / 1024, 200.0f}, shape_.compute, StreamingMatmul::kMaxRows,
            shape_.k, &x);
  if (!FindKChunk(matrix, x, plan.get(), note, undecided)) return nullptr;
  if (!AddActivationPrimitives(plan.get(), note)) return nullptr;
  // The whole result, bitwise, for every row count the path serves.
  absl::StatusOr<bool> same = StreamingMatchesPrimitives(matrix, *plan, x, note);
  if (!same.ok()) return same.status();
  if (!*same) return nullptr;
  *note = absl::StrCat(" + streaming kernel for <= ", StreamingMatmul::kMaxRows, " rows (K chunk ",
                       plan->k_chunk, ")");
  return plan;
}

absl::Status MatmulPrimitiveCache::PlanStreaming(const PackedMatmul& matrix) {
  {
    absl::MutexLock lock(&mu_);
    if (stream_planned_) return absl::OkStatus();
  }
  std::string note;
  bool undecided = false;
  absl::StatusOr<std::unique_ptr<StreamPlan>> plan;
  try {
    plan = TryStreaming(matrix, &note, &undecided);
  } catch (const dnnl::error& e) {
    return DnnlError(absl::StrCat("planning the streaming path of ", shape_.Key()), e);
  }
  if (!plan.ok()) return plan.status();
  absl::MutexLock lock(&mu_);
  if (!stream_planned_) {
    stream_planned_ = !undecided;
    stream_ = *std::move(plan);
    stream_note_ = note;
    stream_published_.store(stream_.get(), std::memory_order_release);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<MatmulPrimitiveCache>> MatmulCacheRegistry::Get(
    const MatmulShape& shape) {
  const std::string key = shape.Key();
  absl::MutexLock lock(&mu_);
  auto it = caches_.find(key);
  if (it != caches_.end()) return it->second;
  auto cache = MatmulPrimitiveCache::Create(shape);
  if (!cache.ok()) return cache.status();
  caches_.emplace(key, *cache);
  return *cache;
}

namespace {

// Reorders `part` ([n, K] row-major: the K x n matrix in "ba" order) into
// columns [n0, n0 + n) of `packed`. f16 is widened to f32 first; f32 and
// bf16 are read straight from the source (mapped file or buffer). Throws
// dnnl::error, e.g. when n0 is not on a column block boundary of the
// packed layout.
void PackColumns(const Tensor& part, int64_t n0, const dnnl::memory& packed, dnnl::stream* stream) {
  const dnnl::engine& engine = CpuEngine();
  const int64_t n = part.dim(0), k = part.dim(1);
  std::vector<float> widened;
  const void* src_data = part.data();
  dt src_type = ToDnnl(part.dtype());
  if (part.dtype() == DType::kF16) {
    widened = part.ToFloats();
    src_data = widened.data();
    src_type = dt::f32;
  }
  dnnl::memory user({{k, n}, src_type, tag::ba}, engine, const_cast<void*>(src_data));
  dnnl::memory dst = packed;
  if (n0 != 0 || n != packed.get_desc().dims()[1]) {
    dst = dnnl::memory(packed.get_desc().submemory_desc({k, n}, {0, n0}), engine,
                       packed.get_data_handle());
  }
  dnnl::reorder(user, dst).execute(*stream, user, dst);
  stream->wait();
}

}  // namespace

absl::StatusOr<std::unique_ptr<PackedMatmul>> PackedMatmul::Create(const Tensor& weight,
                                                                   const Tensor& bias,
                                                                   const MatmulShape& shape,
                                                                   MatmulCacheRegistry* registry,
                                                                   const std::string& what) {
  return CreateFromParts(weight, nullptr, bias, shape, registry, what);
}

absl::StatusOr<std::unique_ptr<PackedMatmul>> PackedMatmul::CreateStacked(
    const Tensor& top, const Tensor& bottom, const Tensor& bias, const MatmulShape& shape,
    MatmulCacheRegistry* registry, const std::string& what) {
  return CreateFromParts(top, &bottom, bias, shape, registry, what);
}

absl::StatusOr<std::unique_ptr<PackedMatmul>> PackedMatmul::CreateFromParts(
    const Tensor& top, const Tensor* bottom, const Tensor& bias, const MatmulShape& shape,
    MatmulCacheRegistry* registry, const std::string& what) {
  auto part_ok = [&](const Tensor& t) { return t.rank() == 2 && t.dim(1) == shape.k; };
  if (!part_ok(top) || (bottom != nullptr && !part_ok(*bottom)) ||
      top.dim(0) + (bottom != nullptr ? bottom->dim(0) : 0) != shape.n) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": weight shape ", top.ShapeString(),
                     bottom != nullptr ? absl::StrCat(" + ", bottom->ShapeString()) : "",
                     ", expected [", shape.n, ", ", shape.k, "]"));
  }
  if (shape.bias != !bias.empty() || (shape.bias && (bias.rank() != 1 || bias.dim(0) != shape.n))) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": bias shape ", bias.ShapeString(), ", expected [", shape.n, "]"));
  }
  if (shape.compute == DType::kI8 || shape.compute == DType::kI4) {
    auto int8 = QuantizedMatmul::Create(shape, top, bottom, bias, registry->tier());
    if (!int8.ok()) {
      return absl::Status(int8.status().code(), absl::StrCat(what, ": ", int8.status().message()));
    }
    return std::unique_ptr<PackedMatmul>(new PackedMatmul(*std::move(int8)));
  }
  if (registry->UsesPanels(shape.compute)) {
    auto panels = PanelMatmul::Create(shape, top, bottom, bias);
    if (!panels.ok()) {
      return absl::Status(panels.status().code(),
                          absl::StrCat(what, ": ", panels.status().message()));
    }
    return std::unique_ptr<PackedMatmul>(new PackedMatmul(*std::move(panels)));
  }
  auto cache = registry->Get(shape);
  if (!cache.ok()) return cache.status();
  try {
    const dnnl::engine& engine = CpuEngine();
    dnnl::stream stream(engine);
    dnnl::memory packed((*cache)->packed_weights_desc(), engine);
    bool in_parts = false;
    if (bottom == nullptr) {
      PackColumns(top, 0, packed, &stream);
    } else {
      // Each part straight into its columns; where the layout cannot be
      // cut there (a split inside a column block), through one stacked
      // copy.
      bool direct = true;
      try {
        std::memset(packed.get_data_handle(), 0, packed.get_desc().get_size());
        PackColumns(top, 0, packed, &stream);
        PackColumns(*bottom, top.dim(0), packed, &stream);
      } catch (const dnnl::error&) {
        direct = false;
      }
      if (!direct) PackColumns(Tensor::StackRows(top, *bottom), 0, packed, &stream);
      in_parts = direct;
    }
    dnnl::memory bias_mem;
    if (shape.bias) {
      bias_mem = dnnl::memory({{1, shape.n}, dt::f32, tag::ab}, engine);
      ConvertToFloat(bias.dtype(), bias.data(), shape.n,
                     static_cast<float*>(bias_mem.get_data_handle()));
    }
    std::unique_ptr<PackedMatmul> matrix(
        new PackedMatmul(*std::move(cache), std::move(packed), std::move(bias_mem)));
    matrix->packed_in_parts_ = in_parts;
    absl::Status planned = matrix->cache_->PlanStreaming(*matrix);
    if (!planned.ok()) return absl::InternalError(absl::StrCat(what, ": ", planned.message()));
    return matrix;
  } catch (const dnnl::error& e) {
    return DnnlError(what, e);
  }
}

size_t PackedMatmul::weight_bytes() const {
  if (panels_ != nullptr) return panels_->weight_bytes();
  if (quantized_ != nullptr) return quantized_->weight_bytes();
  return weights_.get_desc().get_size();
}

absl::Status PackedMatmul::Execute(const void* src, int64_t rows, void* dst, const void* multiplier,
                                   AlignedBuffer* scratch, dnnl::stream* stream) const {
  if (panels_ != nullptr) {
    panels_->Execute(src, rows, dst, multiplier, scratch);
    return absl::OkStatus();
  }
  if (quantized_ != nullptr) {
    quantized_->Execute(static_cast<const float*>(src), rows, static_cast<float*>(dst),
                        static_cast<const float*>(multiplier), scratch);
    return absl::OkStatus();
  }
  if (rows >= 1 && rows <= StreamingMatmul::kMaxRows) {
    if (const MatmulPrimitiveCache::StreamPlan* plan = cache_->stream_plan()) {
      return ExecuteStreaming(*plan, src, rows, dst, multiplier, scratch, stream);
    }
  }
  return ExecutePrimitives(src, rows, dst, multiplier, scratch, stream);
}

namespace {
size_t Align64(size_t bytes) { return (bytes + 63) & ~static_cast<size_t>(63); }
}  // namespace

absl::Status PackedMatmul::ExecuteStreaming(const MatmulPrimitiveCache::StreamPlan& plan,
                                            const void* src, int64_t rows, void* dst,
                                            const void* multiplier, AlignedBuffer* scratch,
                                            dnnl::stream* stream) const {
  const MatmulShape& s = cache_->shape();
  const int64_t count = rows * s.n;
  const size_t pad_bytes = Align64(plan.kernel.XPadBytes(rows));
  // f32 results are accumulated in dst itself.
  const bool in_dst = s.dst == DType::kF32;
  const size_t acc_bytes = in_dst ? 0 : Align64(static_cast<size_t>(count) * sizeof(float));
  const MatmulPrimitiveCache::StreamPlan::Activation* act =
      plan.activation.empty() ? nullptr : &plan.activation[static_cast<size_t>(rows - 1)];
  const size_t act_scratch = act != nullptr ? act->scratchpad_desc.get_size() : 0;
  char* base = static_cast<char*>(scratch->Reserve(pad_bytes + acc_bytes + act_scratch + 64));
  float* acc = in_dst ? static_cast<float*>(dst) : reinterpret_cast<float*>(base + pad_bytes);
  // Bias, multiplier and the bf16 rounding run inside the kernel, on each
  // column block as it completes; only an activation (a oneDNN eltwise,
  // for the bits of oneDNN's own post-op) runs over the whole result
  // between the bias and the rounding.
  StreamingMatmul::Epilogue epilogue;
  if (s.bias) epilogue.bias = static_cast<const float*>(bias_.get_data_handle());
  const bool after_rounding = cache_->PostOpAfterRounding();
  if (s.post == MatmulPostOp::kMultiply && !after_rounding) epilogue.multiplier = multiplier;
  if (!in_dst && act == nullptr) epilogue.bf16_out = static_cast<uint16_t*>(dst);
  plan.kernel.Run(weights_.get_data_handle(), src, rows, plan.k_chunk, epilogue, base, acc);
  if (after_rounding) ApplyBf16PostOp(s, rows, multiplier, dst);
  if (act != nullptr) {
    try {
      const dnnl::engine& engine = CpuEngine();
      dnnl::memory acc_mem({{rows, s.n}, dt::f32, tag::ab}, engine, acc);
      dnnl::memory scratch_mem(act->scratchpad_desc, engine, base + pad_bytes + acc_bytes);
      act->primitive.execute(
          *stream,
          {{DNNL_ARG_SRC, acc_mem}, {DNNL_ARG_DST, acc_mem}, {DNNL_ARG_SCRATCHPAD, scratch_mem}});
      stream->wait();
    } catch (const dnnl::error& e) {
      return DnnlError(absl::StrCat("activation ", s.Key(), " on ", rows, " rows"), e);
    }
    if (!in_dst) plan.kernel.RoundToBf16AsOneDnn(acc, count, static_cast<uint16_t*>(dst));
  }
  return absl::OkStatus();
}

absl::Status PackedMatmul::ExecutePrimitives(const void* src, int64_t rows, void* dst,
                                             const void* multiplier, AlignedBuffer* scratch,
                                             dnnl::stream* stream) const {
  if (panels_ != nullptr || quantized_ != nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("matrix ", shape_.Key(), " runs on the panel kernels, not oneDNN"));
  }
  const MatmulShape& s = cache_->shape();
  const int64_t src_row_bytes = s.k * DTypeSize(s.compute);
  const int64_t dst_row_bytes = s.n * DTypeSize(s.dst);
  const int64_t mul_row_bytes = s.n * DTypeSize(s.compute);
  const dnnl::engine& engine = CpuEngine();
  for (int64_t r0 = 0; r0 < rows; r0 += MatmulPrimitiveCache::kMaxRows) {
    const int64_t m = std::min(rows - r0, MatmulPrimitiveCache::kMaxRows);
    auto entry = cache_->Get(m);
    if (!entry.ok()) return entry.status();
    try {
      const dt compute = ToDnnl(s.compute);
      dnnl::memory src_mem({{m, s.k}, compute, tag::ab}, engine,
                           const_cast<char*>(static_cast<const char*>(src) + r0 * src_row_bytes));
      dnnl::memory dst_mem({{m, s.n}, ToDnnl(s.dst), tag::ab}, engine,
                           static_cast<char*>(dst) + r0 * dst_row_bytes);
      const dnnl::memory::desc& scratch_desc = (*entry)->scratchpad_desc;
      void* scratch_ptr = scratch->Reserve(std::max<size_t>(scratch_desc.get_size(), 64));
      dnnl::memory scratch_mem(scratch_desc, engine, scratch_ptr);
      std::unordered_map<int, dnnl::memory> args = {{DNNL_ARG_SRC, src_mem},
                                                    {DNNL_ARG_WEIGHTS, weights_},
                                                    {DNNL_ARG_DST, dst_mem},
                                                    {DNNL_ARG_SCRATCHPAD, scratch_mem}};
      if (s.bias) args.emplace(DNNL_ARG_BIAS, bias_);
      if (s.post == MatmulPostOp::kMultiply && !cache_->PostOpAfterRounding()) {
        args.emplace(DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1,
                     dnnl::memory({{m, s.n}, compute, tag::ab}, engine,
                                  const_cast<char*>(static_cast<const char*>(multiplier) +
                                                    r0 * mul_row_bytes)));
      }
      (*entry)->primitive.execute(*stream, args);
    } catch (const dnnl::error& e) {
      return DnnlError(absl::StrCat("matmul ", s.Key(), " on ", m, " rows"), e);
    }
  }
  try {
    stream->wait();
  } catch (const dnnl::error& e) {
    return DnnlError("matmul wait", e);
  }
  if (cache_->PostOpAfterRounding()) ApplyBf16PostOp(s, rows, multiplier, dst);
  return absl::OkStatus();
}

}  // namespace moe
