// SafetensorsFile: a memory-mapped .safetensors file with a validated
// header.
//
// Format: 8-byte little-endian header length N, N bytes of JSON
//   {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [b, e]}, ...,
//    "__metadata__": {...}}
// then the data; offsets are relative to the end of the header.
//
// Open() validates everything before any tensor byte is read: the header
// length against the file size, the JSON, every entry's dtype, shape and
// offsets (inside the data, matching shape × dtype size, not overlapping).
// Every error names the file, the tensor and the problem.
//
// Thread-safety: immutable after Open(); Tensors returned by Get() keep the
// mapping alive and may outlive the SafetensorsFile object.
#ifndef MOE_MODEL_SAFETENSORS_FILE_H_
#define MOE_MODEL_SAFETENSORS_FILE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/tensor.h"

namespace moe {

class SafetensorsFile : public std::enable_shared_from_this<SafetensorsFile> {
 public:
  struct Entry {
    std::string dtype;  // as written: "BF16", "F32", "I64", ...
    std::vector<int64_t> shape;
    uint64_t begin = 0;  // byte offsets into the data section
    uint64_t end = 0;
  };

  static absl::StatusOr<std::shared_ptr<SafetensorsFile>> Open(const std::string& path);

  // Parses and validates a header (the JSON text) for a data section of
  // `data_bytes` bytes. Exposed for tests and fuzzing.
  static absl::StatusOr<std::map<std::string, Entry>> ParseHeader(absl::string_view json,
                                                                  uint64_t data_bytes,
                                                                  const std::string& path);

  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, Entry>& entries() const { return entries_; }
  bool Has(const std::string& name) const { return entries_.count(name) > 0; }

  // The tensor `name` as F32, BF16 or F16 (other dtypes: INVALID_ARGUMENT
  // naming the dtype). NOT_FOUND if absent.
  absl::StatusOr<Tensor> Get(const std::string& name) const;

  // The stored bytes of `name`, any dtype (quantized weights: F8_E4M3, U8,
  // ...), for decoders that understand them. The bytes live as long as this
  // file. NOT_FOUND if absent.
  struct Raw {
    const Entry* entry = nullptr;
    const uint8_t* data = nullptr;
  };
  absl::StatusOr<Raw> GetRaw(const std::string& name) const;

 private:
  SafetensorsFile(std::string path, const uint8_t* map, size_t map_bytes, uint64_t data_start,
                  std::map<std::string, Entry> entries);

  const std::string path_;
  const uint8_t* const map_;
  const size_t map_bytes_;
  const uint64_t data_start_;
  const std::map<std::string, Entry> entries_;
};

// Bytes per element of a safetensors dtype string, or 0 if unknown.
int SafetensorsDTypeSize(absl::string_view dtype);

}  // namespace moe

#endif  // MOE_MODEL_SAFETENSORS_FILE_H_
