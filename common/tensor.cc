#include "common/tensor.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace moe {

Tensor::Tensor(DType dtype, std::vector<int64_t> shape, std::shared_ptr<const void> owner,
               const void* data)
    : dtype_(dtype), shape_(std::move(shape)), owner_(std::move(owner)), data_(data) {}

Tensor Tensor::FromFloats(DType dtype, std::vector<int64_t> shape,
                          const std::vector<float>& values) {
  if (dtype == DType::kF32) {
    auto buf = std::make_shared<std::vector<float>>(values);
    const void* data = buf->data();
    return Tensor(dtype, std::move(shape), std::move(buf), data);
  }
  auto buf = std::make_shared<std::vector<uint16_t>>(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    (*buf)[i] = FloatToBf16(values[i]);
  }
  const void* data = buf->data();
  return Tensor(DType::kBF16, std::move(shape), std::move(buf), data);
}

int64_t Tensor::num_elements() const {
  int64_t n = 1;
  for (int64_t d : shape_) n *= d;
  return n;
}

std::vector<float> Tensor::ToFloats() const {
  std::vector<float> out(static_cast<size_t>(num_elements()));
  if (!out.empty()) ConvertToFloat(dtype_, data_, num_elements(), out.data());
  return out;
}

Tensor Tensor::Transposed2D() const {
  const int64_t rows = dim(0), cols = dim(1);
  const int64_t elem = DTypeSize(dtype_);
  auto buf = std::make_shared<std::vector<uint8_t>>(static_cast<size_t>(rows * cols * elem));
  const auto* src = static_cast<const uint8_t*>(data_);
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < cols; ++j) {
      std::copy(src + (i * cols + j) * elem, src + (i * cols + j + 1) * elem,
                buf->data() + (j * rows + i) * elem);
    }
  }
  const void* data = buf->data();
  return Tensor(dtype_, {cols, rows}, std::move(buf), data);
}

Tensor Tensor::StackRows(const Tensor& top, const Tensor& bottom) {
  std::vector<int64_t> shape = top.shape();
  shape[0] += bottom.dim(0);
  if (top.dtype() != bottom.dtype()) {
    std::vector<float> values = top.ToFloats();
    const std::vector<float> tail = bottom.ToFloats();
    values.insert(values.end(), tail.begin(), tail.end());
    return FromFloats(DType::kF32, std::move(shape), values);
  }
  auto buf = std::make_shared<std::vector<uint8_t>>(
      static_cast<size_t>(top.num_bytes() + bottom.num_bytes()));
  const auto* a = static_cast<const uint8_t*>(top.data());
  const auto* b = static_cast<const uint8_t*>(bottom.data());
  std::copy(a, a + top.num_bytes(), buf->data());
  std::copy(b, b + bottom.num_bytes(), buf->data() + top.num_bytes());
  const void* data = buf->data();
  return Tensor(top.dtype(), std::move(shape), std::move(buf), data);
}

std::string Tensor::ShapeString() const { return ShapeToString(shape_); }

std::string ShapeToString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

}  // namespace moe
