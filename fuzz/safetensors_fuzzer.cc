// libFuzzer target: one .safetensors file, as raw bytes.
//
// The input is written to a scratch file and opened with
// SafetensorsFile::Open (header length, JSON, dtypes, shapes, offsets,
// overlaps). When it opens, every tensor is read through Get(), which
// converts to float and would fault on any offset the validation let
// through. Contract under test: Open() and Get() return a Status for every
// input; nothing crashes, leaks or reads outside the mapping.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "fuzz/fuzz_files.h"
#include "model/safetensors_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static moe::fuzz::ScratchDir scratch;  // removed at exit
  const moe::fuzz::ScratchDir* dir = &scratch;
  const std::string path = dir->Write("model.safetensors", data, size);
  auto file = moe::SafetensorsFile::Open(path);
  if (!file.ok()) return 0;
  // Independent of Open()'s checks: every accepted entry lies inside the
  // input (the mapping is page-rounded, so a read just past the end would
  // not fault, and ASan does not watch mmap'd memory).
  uint64_t header_bytes = 0;
  std::memcpy(&header_bytes, data, sizeof(header_bytes));  // Open() succeeded: size >= 8
  for (const auto& [name, entry] : (*file)->entries()) {
    if (entry.begin > entry.end || 8 + header_bytes + entry.end > size) std::abort();
  }
  volatile float sink = 0;
  for (const auto& [name, entry] : (*file)->entries()) {
    auto t = (*file)->Get(name);
    if (!t.ok()) continue;
    for (float v : t->ToFloats()) sink = sink + v;
  }
  return 0;
}
