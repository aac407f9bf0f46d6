// Reading and writing NumPy .npy files (format versions 1.0 to 3.0) holding
// little-endian float32 or int32 C-order arrays: the token and result files
// of the client and the conformance fixtures.
#ifndef MOE_COMMON_NPY_H_
#define MOE_COMMON_NPY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace moe {

struct NpyArray {
  std::string descr;  // "<f4" or "<i4".
  std::vector<int64_t> shape;
  std::vector<float> f32;    // Filled when descr == "<f4".
  std::vector<int32_t> i32;  // Filled when descr == "<i4".
};

// Reads `path`. Errors name the file and the problem (bad magic, unsupported
// dtype or order, data size not matching the shape).
absl::StatusOr<NpyArray> ReadNpy(const std::string& path);

// Writes a float32 array of `shape` (product must equal values.size()).
absl::Status WriteNpyF32(const std::string& path, const std::vector<int64_t>& shape,
                         const std::vector<float>& values);

}  // namespace moe

#endif  // MOE_COMMON_NPY_H_
