// Temporary folders and raw file writing for loader tests.
#ifndef MOE_TESTS_TEST_FILES_H_
#define MOE_TESTS_TEST_FILES_H_

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace moe::testing {

// A fresh folder under the test's temp dir, removed on destruction. Made
// outside a test (e.g. in SetUpTestSuite), it is named after the suite.
class TempDir {
 public:
  TempDir() {
    const auto* unit = ::testing::UnitTest::GetInstance();
    const auto* info = unit->current_test_info();
    const auto* suite = unit->current_test_suite();
    const std::string name = info != nullptr
                                 ? std::string(info->test_suite_name()) + "_" + info->name()
                             : suite != nullptr ? std::string(suite->name()) + "_suite"
                                                : std::string("shared");
    path_ = std::filesystem::path(::testing::TempDir()) /
            ("moe_" + name + "_" + std::to_string(::getpid()));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string path() const { return path_.string(); }
  std::string File(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

inline void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// A safetensors file from header text and data bytes.
inline std::string SafetensorsBytes(const std::string& header, const std::string& data,
                                    uint64_t declared_len = UINT64_MAX) {
  const uint64_t len = declared_len == UINT64_MAX ? header.size() : declared_len;
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((len >> (8 * i)) & 0xff);
  return out + header + data;
}

}  // namespace moe::testing

#endif  // MOE_TESTS_TEST_FILES_H_
