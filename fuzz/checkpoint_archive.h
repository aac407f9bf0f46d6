// The input format of checkpoint_fuzzer: a model folder's files
// concatenated with kFileSeparator between them, in kFileNames order.
// Shared by the fuzzer and the seed-corpus generator.
#ifndef MOE_FUZZ_CHECKPOINT_ARCHIVE_H_
#define MOE_FUZZ_CHECKPOINT_ARCHIVE_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace moe::fuzz {

inline constexpr std::string_view kFileSeparator = "\n--moe-fuzz-file--\n";
inline constexpr std::array<const char*, 5> kFileNames = {
    "config.json", "model.safetensors.index.json", "model.safetensors",
    "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"};

inline std::vector<std::string_view> SplitArchive(const uint8_t* data, size_t size) {
  std::vector<std::string_view> out;
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  while (out.size() + 1 < kFileNames.size()) {
    const size_t at = rest.find(kFileSeparator);
    if (at == std::string_view::npos) break;
    out.push_back(rest.substr(0, at));
    rest.remove_prefix(at + kFileSeparator.size());
  }
  out.push_back(rest);
  return out;
}

inline std::string JoinArchive(const std::vector<std::string>& files) {
  std::string out;
  for (size_t i = 0; i < files.size(); ++i) {
    if (i > 0) out += kFileSeparator;
    out += files[i];
  }
  return out;
}

}  // namespace moe::fuzz

#endif  // MOE_FUZZ_CHECKPOINT_ARCHIVE_H_
