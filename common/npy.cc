#include "common/npy.h"

#include <cstring>
#include <fstream>
#include <iterator>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace moe {
namespace {

absl::Status NpyError(const std::string& path, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
}

// Extracts the value text of `key` from the header dict, e.g. 'descr'.
bool FindValue(absl::string_view header, absl::string_view key, absl::string_view* value) {
  const std::string quoted = absl::StrCat("'", key, "'");
  size_t pos = header.find(quoted);
  if (pos == absl::string_view::npos) return false;
  pos = header.find(':', pos + quoted.size());
  if (pos == absl::string_view::npos) return false;
  absl::string_view rest = absl::StripLeadingAsciiWhitespace(header.substr(pos + 1));
  if (absl::StartsWith(rest, "(")) {
    size_t end = rest.find(')');
    if (end == absl::string_view::npos) return false;
    *value = rest.substr(1, end - 1);
    return true;
  }
  size_t end = rest.find_first_of(",}");
  *value = absl::StripAsciiWhitespace(rest.substr(0, end));
  return true;
}

}  // namespace

absl::StatusOr<NpyArray> ReadNpy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.size() < 10 || std::memcmp(bytes.data(), "\x93NUMPY", 6) != 0) {
    return NpyError(path, "not a .npy file (bad magic)");
  }
  const int major = static_cast<unsigned char>(bytes[6]);
  size_t header_len = 0;
  size_t header_start = 0;
  if (major == 1) {
    header_len = static_cast<unsigned char>(bytes[8]) |
                 (static_cast<size_t>(static_cast<unsigned char>(bytes[9])) << 8);
    header_start = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) return NpyError(path, "truncated header");
    for (int i = 0; i < 4; ++i) {
      header_len |= static_cast<size_t>(static_cast<unsigned char>(bytes[8 + i])) << (8 * i);
    }
    header_start = 12;
  } else {
    return NpyError(path, absl::StrCat("unsupported .npy version ", major));
  }
  if (header_start + header_len > bytes.size()) {
    return NpyError(path, "header longer than the file");
  }
  absl::string_view header(bytes.data() + header_start, header_len);
  NpyArray out;
  absl::string_view descr, fortran, shape;
  if (!FindValue(header, "descr", &descr) || !FindValue(header, "fortran_order", &fortran) ||
      !FindValue(header, "shape", &shape)) {
    return NpyError(path, "header lacks descr, fortran_order or shape");
  }
  out.descr = std::string(absl::StripPrefix(absl::StripSuffix(descr, "'"), "'"));
  if (fortran != "False") return NpyError(path, "Fortran order not supported");
  if (out.descr != "<f4" && out.descr != "<i4") {
    return NpyError(path, absl::StrCat("dtype ", out.descr, " not supported (need <f4 or <i4)"));
  }
  int64_t count = 1;
  for (absl::string_view d : absl::StrSplit(shape, ',', absl::SkipWhitespace())) {
    int64_t v;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(d), &v) || v < 0) {
      return NpyError(path, absl::StrCat("bad shape (", shape, ")"));
    }
    out.shape.push_back(v);
    count *= v;
  }
  const size_t data_start = header_start + header_len;
  const size_t need = static_cast<size_t>(count) * 4;
  if (bytes.size() - data_start != need) {
    return NpyError(path, absl::StrCat("data is ", bytes.size() - data_start, " bytes, shape (",
                                       shape, ") needs ", need));
  }
  if (out.descr == "<f4") {
    out.f32.resize(static_cast<size_t>(count));
    std::memcpy(out.f32.data(), bytes.data() + data_start, need);
  } else {
    out.i32.resize(static_cast<size_t>(count));
    std::memcpy(out.i32.data(), bytes.data() + data_start, need);
  }
  return out;
}

absl::Status WriteNpyF32(const std::string& path, const std::vector<int64_t>& shape,
                         const std::vector<float>& values) {
  int64_t count = 1;
  std::string dims;
  for (int64_t d : shape) {
    count *= d;
    absl::StrAppend(&dims, d, ",");
  }
  if (count != static_cast<int64_t>(values.size())) {
    return absl::InvalidArgumentError("WriteNpyF32: shape does not match data");
  }
  if (shape.size() > 1) dims.pop_back();
  std::string header =
      absl::StrCat("{'descr': '<f4', 'fortran_order': False, 'shape': (", dims, "), }");
  // Pad so that the data starts on a 64-byte boundary; header ends in '\n'.
  while ((10 + header.size() + 1) % 64 != 0) header.push_back(' ');
  header.push_back('\n');
  std::ofstream out(path, std::ios::binary);
  if (!out) return absl::PermissionDeniedError(absl::StrCat(path, ": cannot write"));
  out.write("\x93NUMPY\x01\x00", 8);
  const char len[2] = {static_cast<char>(header.size() & 0xff),
                       static_cast<char>(header.size() >> 8)};
  out.write(len, 2);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  out.write(reinterpret_cast<const char*>(values.data()),
            static_cast<std::streamsize>(values.size() * 4));
  if (!out) return absl::DataLossError(absl::StrCat(path, ": write failed"));
  return absl::OkStatus();
}

}  // namespace moe
