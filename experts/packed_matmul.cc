#include "experts/packed_matmul.h"

#include <algorithm>
#include <unordered_map>
#include <utility>

#include "absl/strings/str_cat.h"
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
  return absl::StrCat(k, "x", n, ":", DTypeName(compute), "->", DTypeName(dst),
                      ":post", static_cast<int>(post), ":act",
                      static_cast<int>(activation), ":bias", bias ? 1 : 0);
}

MatmulPrimitiveCache::MatmulPrimitiveCache(const MatmulShape& shape,
                                           dnnl::memory::desc packed,
                                           std::string impl)
    : shape_(shape), packed_(std::move(packed)), impl_(std::move(impl)) {
  absl::MutexLock lock(&mu_);
  entries_.resize(static_cast<size_t>(kMaxRows + 1));
}

dnnl::matmul::primitive_desc MatmulPrimitiveCache::MakePd(
    int64_t rows, const dnnl::memory::desc& weights) const {
  const dt compute = ToDnnl(shape_.compute);
  dnnl::memory::desc src({rows, shape_.k}, compute, tag::ab);
  dnnl::memory::desc dst({rows, shape_.n}, ToDnnl(shape_.dst), tag::ab);
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  dnnl::post_ops po;
  if (shape_.post == MatmulPostOp::kActivation) {
    po.append_eltwise(1.0f, ToEltwise(shape_.activation),
                      shape_.activation == Activation::kSilu ? 1.0f : 0.0f, 0.0f);
  } else if (shape_.post == MatmulPostOp::kMultiply) {
    po.append_binary(dnnl::algorithm::binary_mul,
                     dnnl::memory::desc({rows, shape_.n}, compute, tag::ab));
  }
  attr.set_post_ops(po);
  if (shape_.bias) {
    dnnl::memory::desc bias({1, shape_.n}, dt::f32, tag::ab);
    return dnnl::matmul::primitive_desc(dnnl::matmul::desc(src, weights, bias, dst),
                                        attr, CpuEngine());
  }
  return dnnl::matmul::primitive_desc(dnnl::matmul::desc(src, weights, dst), attr,
                                      CpuEngine());
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
    return std::shared_ptr<MatmulPrimitiveCache>(
        new MatmulPrimitiveCache(shape, packed, impl));
  } catch (const dnnl::error& e) {
    return DnnlError(absl::StrCat("creating matmul ", shape.Key()), e);
  }
}

absl::StatusOr<const MatmulPrimitiveCache::Entry*> MatmulPrimitiveCache::Get(
    int64_t rows) {
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
      return DnnlError(absl::StrCat("creating matmul ", shape_.Key(), " for ",
                                    rows, " rows"),
                       e);
    }
  }
  return slot.get();
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

absl::StatusOr<std::unique_ptr<PackedMatmul>> PackedMatmul::Create(
    const Tensor& weight, const Tensor& bias, const MatmulShape& shape,
    MatmulCacheRegistry* registry, const std::string& what) {
  if (weight.rank() != 2 || weight.dim(0) != shape.n || weight.dim(1) != shape.k) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": weight shape ", weight.ShapeString(), ", expected [", shape.n,
        ", ", shape.k, "]"));
  }
  if (shape.bias != !bias.empty() ||
      (shape.bias && (bias.rank() != 1 || bias.dim(0) != shape.n))) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": bias shape ", bias.ShapeString(), ", expected [", shape.n, "]"));
  }
  auto cache = registry->Get(shape);
  if (!cache.ok()) return cache.status();
  try {
    const dnnl::engine& engine = CpuEngine();
    dnnl::stream stream(engine);
    // The [N, K] row-major tensor is the K x N matrix in "ba" order. f16 is
    // widened to f32 first; f32 and bf16 are reordered straight from the
    // source (mapped file or buffer) into the packed layout.
    std::vector<float> widened;
    const void* src_data = weight.data();
    dt src_type = ToDnnl(weight.dtype());
    if (weight.dtype() == DType::kF16) {
      widened = weight.ToFloats();
      src_data = widened.data();
      src_type = dt::f32;
    }
    dnnl::memory user({{shape.k, shape.n}, src_type, tag::ba}, engine,
                      const_cast<void*>(src_data));
    dnnl::memory packed((*cache)->packed_weights_desc(), engine);
    dnnl::reorder(user, packed).execute(stream, user, packed);
    dnnl::memory bias_mem;
    if (shape.bias) {
      bias_mem = dnnl::memory({{1, shape.n}, dt::f32, tag::ab}, engine);
      ConvertToFloat(bias.dtype(), bias.data(), shape.n,
                     static_cast<float*>(bias_mem.get_data_handle()));
    }
    stream.wait();
    return std::unique_ptr<PackedMatmul>(
        new PackedMatmul(*std::move(cache), std::move(packed), std::move(bias_mem)));
  } catch (const dnnl::error& e) {
    return DnnlError(what, e);
  }
}

absl::Status PackedMatmul::Execute(const void* src, int64_t rows, void* dst,
                                   const void* multiplier, AlignedBuffer* scratch,
                                   dnnl::stream* stream) const {
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
                           const_cast<char*>(static_cast<const char*>(src) +
                                             r0 * src_row_bytes));
      dnnl::memory dst_mem({{m, s.n}, ToDnnl(s.dst), tag::ab}, engine,
                           static_cast<char*>(dst) + r0 * dst_row_bytes);
      const dnnl::memory::desc& scratch_desc = (*entry)->scratchpad_desc;
      void* scratch_ptr = scratch->Reserve(std::max<size_t>(scratch_desc.get_size(), 64));
      dnnl::memory scratch_mem(scratch_desc, engine, scratch_ptr);
      std::unordered_map<int, dnnl::memory> args = {
          {DNNL_ARG_SRC, src_mem},
          {DNNL_ARG_WEIGHTS, weights_},
          {DNNL_ARG_DST, dst_mem},
          {DNNL_ARG_SCRATCHPAD, scratch_mem}};
      if (s.bias) args.emplace(DNNL_ARG_BIAS, bias_);
      if (s.post == MatmulPostOp::kMultiply) {
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
  return absl::OkStatus();
}

}  // namespace moe
