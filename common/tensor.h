// Tensor: an immutable, typed, row-major block of host memory with a shape.
//
// A Tensor does not copy its data. It keeps the memory alive through a
// shared owner (an owned buffer, or a memory-mapped checkpoint file), so
// copies of a Tensor are cheap and all share the same bytes. Tensors are
// immutable after construction and therefore safe to read from any thread.
#ifndef MOE_COMMON_TENSOR_H_
#define MOE_COMMON_TENSOR_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/dtype.h"

namespace moe {

class Tensor {
 public:
  Tensor() = default;
  // Views `data` (of dtype/shape) kept alive by `owner`.
  Tensor(DType dtype, std::vector<int64_t> shape, std::shared_ptr<const void> owner,
         const void* data);

  // Makes a tensor that owns a copy of `values` converted to `dtype`
  // (f32 stored as is, bf16 rounded to nearest even).
  static Tensor FromFloats(DType dtype, std::vector<int64_t> shape,
                           const std::vector<float>& values);

  bool empty() const { return data_ == nullptr; }
  DType dtype() const { return dtype_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  int64_t dim(int i) const { return shape_[static_cast<size_t>(i)]; }
  int rank() const { return static_cast<int>(shape_.size()); }
  int64_t num_elements() const;
  int64_t num_bytes() const { return num_elements() * DTypeSize(dtype_); }
  const void* data() const { return data_; }

  // The elements converted to float (a copy).
  std::vector<float> ToFloats() const;

  // A rank-2 tensor's transpose ([r, c] -> [c, r]), same dtype, owning a
  // copy of the data.
  Tensor Transposed2D() const;

  // [top; bottom]: bottom's rows under top's (a copy). Dims other than the
  // first must match (the caller checks). Kept in one dtype when both
  // share it, else both converted to f32.
  static Tensor StackRows(const Tensor& top, const Tensor& bottom);

  // "[4096, 1024]".
  std::string ShapeString() const;

 private:
  DType dtype_ = DType::kF32;
  std::vector<int64_t> shape_;
  std::shared_ptr<const void> owner_;
  const void* data_ = nullptr;
};

std::string ShapeToString(const std::vector<int64_t>& shape);

}  // namespace moe

#endif  // MOE_COMMON_TENSOR_H_
