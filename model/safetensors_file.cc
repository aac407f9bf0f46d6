#include "model/safetensors_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace moe {
namespace {

// Header JSON larger than this is refused (real headers are < 10 MB).
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

absl::Status FileError(const std::string& path, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
}

absl::Status TensorError(const std::string& path, const std::string& name, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": tensor '", name, "': ", what));
}

}  // namespace

int SafetensorsDTypeSize(absl::string_view d) {
  if (d == "F64" || d == "I64" || d == "U64") return 8;
  if (d == "F32" || d == "I32" || d == "U32") return 4;
  if (d == "F16" || d == "BF16" || d == "I16" || d == "U16") return 2;
  if (d == "BOOL" || d == "U8" || d == "I8" || d == "F8_E4M3" || d == "F8_E5M2") return 1;
  return 0;
}

namespace {

using Entry = SafetensorsFile::Entry;

// One tensor's header entry: dtype, shape and data_offsets, checked
// against each other and the data section's `data_bytes`.
absl::StatusOr<Entry> ParseEntry(const nlohmann::json& v, uint64_t data_bytes,
                                 const std::string& path, const std::string& name) {
  if (!v.is_object()) return TensorError(path, name, "entry is not an object");
  Entry e;
  auto dtype = v.find("dtype");
  if (dtype == v.end() || !dtype->is_string()) {
    return TensorError(path, name, "missing or non-string 'dtype'");
  }
  e.dtype = dtype->get<std::string>();
  const int elem = SafetensorsDTypeSize(e.dtype);
  if (elem == 0) return TensorError(path, name, absl::StrCat("unknown dtype '", e.dtype, "'"));
  auto shape = v.find("shape");
  if (shape == v.end() || !shape->is_array()) {
    return TensorError(path, name, "missing or non-array 'shape'");
  }
  // Element count with overflow checks: the product must fit the data.
  uint64_t count = 1;
  for (const auto& d : *shape) {
    if (!d.is_number_integer() || d.get<int64_t>() < 0) {
      return TensorError(path, name, absl::StrCat("bad shape entry ", d.dump()));
    }
    const uint64_t dim = d.get<uint64_t>();
    if (dim != 0 && count > std::numeric_limits<uint64_t>::max() / 8 / dim) {
      return TensorError(path, name, "shape too large");
    }
    count *= dim;
    e.shape.push_back(static_cast<int64_t>(dim));
  }
  auto offsets = v.find("data_offsets");
  if (offsets == v.end() || !offsets->is_array() || offsets->size() != 2 ||
      !(*offsets)[0].is_number_unsigned() || !(*offsets)[1].is_number_unsigned()) {
    return TensorError(path, name, "'data_offsets' must be two non-negative integers");
  }
  e.begin = (*offsets)[0].get<uint64_t>();
  e.end = (*offsets)[1].get<uint64_t>();
  if (e.begin > e.end || e.end > data_bytes) {
    return TensorError(
        path, name,
        absl::StrCat("data_offsets [", e.begin, ", ", e.end, "] outside the data section of ",
                     data_bytes, " bytes (file truncated?)"));
  }
  if (e.end - e.begin != count * static_cast<uint64_t>(elem)) {
    return TensorError(path, name,
                       absl::StrCat("data_offsets span ", e.end - e.begin, " bytes but shape ",
                                    ShapeToString(e.shape), " of ", e.dtype, " needs ",
                                    count * static_cast<uint64_t>(elem)));
  }
  return e;
}

absl::Status CheckNoOverlap(const std::map<std::string, Entry>& entries, const std::string& path) {
  std::vector<std::pair<const std::string*, const Entry*>> sorted;
  sorted.reserve(entries.size());
  for (const auto& [name, e] : entries) sorted.emplace_back(&name, &e);
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) {
    return a.second->begin != b.second->begin ? a.second->begin < b.second->begin
                                              : a.second->end < b.second->end;
  });
  uint64_t max_end = 0;
  const std::string* max_end_name = nullptr;
  const Entry* max_end_entry = nullptr;
  for (const auto& [name, e] : sorted) {
    if (e->end == e->begin) continue;  // empty tensors own no bytes
    if (max_end_entry != nullptr && e->begin < max_end) {
      return TensorError(
          path, *name,
          absl::StrCat("data_offsets [", e->begin, ", ", e->end, "] overlap tensor '",
                       *max_end_name, "' [", max_end_entry->begin, ", ", max_end_entry->end, "]"));
    }
    if (e->end > max_end) {
      max_end = e->end;
      max_end_name = name;
      max_end_entry = e;
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::map<std::string, SafetensorsFile::Entry>> SafetensorsFile::ParseHeader(
    absl::string_view json_text, uint64_t data_bytes, const std::string& path) {
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(json_text.begin(), json_text.end());
  } catch (const nlohmann::json::exception& e) {
    return FileError(path, absl::StrCat("header is not valid JSON: ", e.what()));
  }
  if (!header.is_object()) return FileError(path, "header is not a JSON object");
  std::map<std::string, Entry> entries;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    MOE_ASSIGN_OR_RETURN(Entry e, ParseEntry(it.value(), data_bytes, path, it.key()));
    entries.emplace(it.key(), std::move(e));
  }
  MOE_RETURN_IF_ERROR(CheckNoOverlap(entries, path));  // no two tensors may share bytes
  return entries;
}

absl::StatusOr<std::shared_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::NotFoundError(absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return absl::InternalError(absl::StrCat(path, ": fstat: ", std::strerror(err)));
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    return FileError(path, absl::StrCat("file is ", size,
                                        " bytes, too short for the 8-byte header length "
                                        "(truncated?)"));
  }
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_errno = errno;
  ::close(fd);
  if (map == MAP_FAILED) {
    return absl::InternalError(absl::StrCat(path, ": mmap: ", std::strerror(map_errno)));
  }
  const auto* bytes = static_cast<const uint8_t*>(map);
  uint64_t header_len = 0;
  for (int i = 0; i < 8; ++i) header_len |= static_cast<uint64_t>(bytes[i]) << (8 * i);
  auto fail = [&](absl::Status s) {
    ::munmap(map, size);
    return s;
  };
  if (header_len > size - 8) {
    return fail(FileError(
        path, absl::StrCat("header length ", header_len, " is larger than the rest of the file (",
                           size - 8, " bytes; truncated?)")));
  }
  if (header_len > kMaxHeaderBytes) {
    return fail(FileError(path, absl::StrCat("header length ", header_len, " exceeds the ",
                                             kMaxHeaderBytes, "-byte limit")));
  }
  const uint64_t data_start = 8 + header_len;
  auto entries =
      ParseHeader(absl::string_view(reinterpret_cast<const char*>(bytes + 8), header_len),
                  size - data_start, path);
  if (!entries.ok()) return fail(entries.status());
  // Touching the pages ahead of time makes loading sequential.
  ::madvise(map, size, MADV_WILLNEED);
  return std::shared_ptr<SafetensorsFile>(
      new SafetensorsFile(path, bytes, size, data_start, *std::move(entries)));
}

SafetensorsFile::SafetensorsFile(std::string path, const uint8_t* map, size_t map_bytes,
                                 uint64_t data_start, std::map<std::string, Entry> entries)
    : path_(std::move(path)),
      map_(map),
      map_bytes_(map_bytes),
      data_start_(data_start),
      entries_(std::move(entries)) {}

SafetensorsFile::~SafetensorsFile() { ::munmap(const_cast<uint8_t*>(map_), map_bytes_); }

absl::StatusOr<SafetensorsFile::Raw> SafetensorsFile::GetRaw(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) {
    return absl::NotFoundError(absl::StrCat(path_, ": missing tensor '", name, "'"));
  }
  Raw r;
  r.entry = &it->second;
  r.data = map_ + data_start_ + it->second.begin;
  return r;
}

absl::StatusOr<Tensor> SafetensorsFile::Get(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) {
    return absl::NotFoundError(absl::StrCat(path_, ": missing tensor '", name, "'"));
  }
  const Entry& e = it->second;
  DType dtype;
  if (e.dtype == "F32") {
    dtype = DType::kF32;
  } else if (e.dtype == "BF16") {
    dtype = DType::kBF16;
  } else if (e.dtype == "F16") {
    dtype = DType::kF16;
  } else {
    return TensorError(
        path_, name, absl::StrCat("dtype ", e.dtype, " is not supported (need F32, BF16 or F16)"));
  }
  const uint8_t* data = map_ + data_start_ + e.begin;
  const size_t bytes = e.end - e.begin;
  if (reinterpret_cast<uintptr_t>(data) % DTypeSize(dtype) != 0) {
    // Misaligned for the element type: copy into an aligned buffer.
    auto copy = std::make_shared<std::vector<uint32_t>>((bytes + 3) / 4);
    std::memcpy(copy->data(), data, bytes);
    const void* p = copy->data();
    return Tensor(dtype, e.shape, std::move(copy), p);
  }
  return Tensor(dtype, e.shape, shared_from_this(), data);
}

}  // namespace moe
