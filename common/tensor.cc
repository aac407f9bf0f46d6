#include "common/tensor.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace moe {

Tensor::Tensor(DType dtype, std::vector<int64_t> shape,
               std::shared_ptr<const void> owner, const void* data)
    : dtype_(dtype),
      shape_(std::move(shape)),
      owner_(std::move(owner)),
      data_(data) {}

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

std::string Tensor::ShapeString() const { return ShapeToString(shape_); }

std::string ShapeToString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

}  // namespace moe
