// .npy reading and writing.
#include "common/npy.h"

#include "gtest/gtest.h"
#include "tests/status_matchers.h"
#include "tests/test_files.h"

namespace moe {
namespace {

using ::moe::testing::TempDir;
using ::moe::testing::WriteFile;

TEST(NpyTest, RoundTrip) {
  TempDir dir;
  const std::string path = dir.File("a.npy");
  std::vector<float> v = {1, 2, 3, 4, 5, 6};
  ASSERT_OK(WriteNpyF32(path, {2, 3}, v));
  ASSERT_OK_AND_ASSIGN(NpyArray a, ReadNpy(path));
  EXPECT_EQ(a.descr, "<f4");
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a.f32, v);
  // Data starts 64-byte aligned, as NumPy writes it.
  EXPECT_EQ((::moe::testing::ReadFile(path).size() - 24) % 64, 0u);
}

TEST(NpyTest, OneDimensional) {
  TempDir dir;
  ASSERT_OK(WriteNpyF32(dir.File("b.npy"), {3}, {1, 2, 3}));
  ASSERT_OK_AND_ASSIGN(NpyArray a, ReadNpy(dir.File("b.npy")));
  EXPECT_EQ(a.shape, (std::vector<int64_t>{3}));
}

TEST(NpyTest, RejectsBadFiles) {
  TempDir dir;
  WriteFile(dir.File("x.npy"), "not numpy");
  EXPECT_FALSE(ReadNpy(dir.File("x.npy")).ok());
  std::string header = "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }";
  std::string bytes = std::string("\x93NUMPY\x01\x00", 8) + static_cast<char>(header.size()) +
                      '\0' + header + std::string(8, '\0');
  WriteFile(dir.File("f8.npy"), bytes);
  auto r = ReadNpy(dir.File("f8.npy"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("<f8"), std::string::npos);
  header = "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }";
  bytes = std::string("\x93NUMPY\x01\x00", 8) + static_cast<char>(header.size()) + '\0' + header +
          std::string(8, '\0');
  WriteFile(dir.File("short.npy"), bytes);
  r = ReadNpy(dir.File("short.npy"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("needs 16"), std::string::npos) << r.status();
  EXPECT_EQ(ReadNpy(dir.File("missing.npy")).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace moe
