// SafetensorsFile: a valid file reads back; every malformed file is refused
// with a message naming the file, the tensor and the problem.
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/checkpoint_writer.h"
#include "model/safetensors_file.h"
#include "tests/status_matchers.h"
#include "tests/test_files.h"

namespace moe {
namespace {

using ::moe::testing::SafetensorsBytes;
using ::moe::testing::StatusIs;
using ::moe::testing::TempDir;
using ::moe::testing::WriteFile;
using ::testing::AllOf;
using ::testing::HasSubstr;

TEST(SafetensorsTest, WrittenFileReadsBack) {
  TempDir dir;
  const std::string path = dir.File("a.safetensors");
  Tensor a = Tensor::FromFloats(DType::kF32, {2, 3}, {1, 2, 3, 4, 5, 6});
  Tensor b = Tensor::FromFloats(DType::kBF16, {4}, {0.5f, -1.0f, 2.0f, 1e-3f});
  ASSERT_OK(WriteSafetensors(path, {{"a", a}, {"b.weight", b}}));
  ASSERT_OK_AND_ASSIGN(auto file, SafetensorsFile::Open(path));
  EXPECT_EQ(file->entries().size(), 2u);
  ASSERT_OK_AND_ASSIGN(Tensor ra, file->Get("a"));
  EXPECT_EQ(ra.dtype(), DType::kF32);
  EXPECT_EQ(ra.shape(), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(ra.ToFloats(), a.ToFloats());
  ASSERT_OK_AND_ASSIGN(Tensor rb, file->Get("b.weight"));
  EXPECT_EQ(rb.dtype(), DType::kBF16);
  EXPECT_EQ(rb.ToFloats(), b.ToFloats());
  // Tensors keep the mapping alive after the file object is gone.
  file.reset();
  EXPECT_EQ(ra.ToFloats()[5], 6.0f);
}

TEST(SafetensorsTest, ScalarAndEmptyTensorsAndMetadataAreAccepted) {
  TempDir dir;
  const std::string path = dir.File("s.safetensors");
  WriteFile(path,
            SafetensorsBytes(
                R"({"__metadata__":{"format":"pt"},"s":{"dtype":"F32","shape":[],)"
                R"("data_offsets":[0,4]},"e":{"dtype":"F32","shape":[0,3],"data_offsets":[4,4]}})",
                std::string(4, '\0')));
  ASSERT_OK_AND_ASSIGN(auto file, SafetensorsFile::Open(path));
  EXPECT_TRUE(file->Has("s"));
  EXPECT_TRUE(file->Has("e"));
  EXPECT_FALSE(file->Has("__metadata__"));
}

struct BadFile {
  const char* name;
  std::string bytes;
  std::vector<std::string> message_parts;
};

class SafetensorsBadFileTest : public ::testing::TestWithParam<BadFile> {};

TEST_P(SafetensorsBadFileTest, IsRefusedWithAClearMessage) {
  TempDir dir;
  const std::string path = dir.File("model.safetensors");
  WriteFile(path, GetParam().bytes);
  auto file = SafetensorsFile::Open(path);
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument) << file.status();
  EXPECT_THAT(std::string(file.status().message()), HasSubstr(path));
  for (const auto& part : GetParam().message_parts) {
    EXPECT_THAT(std::string(file.status().message()), HasSubstr(part));
  }
}

const std::string kEightBytes(8, '\1');

INSTANTIATE_TEST_SUITE_P(
    Malformed, SafetensorsBadFileTest,
    ::testing::Values(
        BadFile{"Empty", "", {"too short"}}, BadFile{"Truncated", "\x10\0\0", {"too short"}},
        BadFile{"HeaderLongerThanFile",
                SafetensorsBytes("{}", "", 4096),
                {"header length 4096", "larger than the rest of the file"}},
        BadFile{"HugeHeaderLength", SafetensorsBytes("{}", "", UINT64_MAX - 1), {"header length"}},
        BadFile{"InvalidJson", SafetensorsBytes("{\"a\": [1, 2", ""), {"not valid JSON"}},
        BadFile{"NotAnObject", SafetensorsBytes("[1, 2]", ""), {"not a JSON object"}},
        BadFile{"EntryNotObject", SafetensorsBytes(R"({"w": 3})", ""), {"'w'", "not an object"}},
        BadFile{"UnknownDtype",
                SafetensorsBytes(R"({"w":{"dtype":"Q4","shape":[2],"data_offsets":[0,2]}})", "ab"),
                {"'w'", "unknown dtype 'Q4'"}},
        BadFile{"MissingShape",
                SafetensorsBytes(R"({"w":{"dtype":"F32","data_offsets":[0,4]}})", "abcd"),
                {"'w'", "shape"}},
        BadFile{
            "NegativeDim",
            SafetensorsBytes(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", "abcd"),
            {"'w'", "bad shape entry -1"}},
        BadFile{"OffsetsOutsideData",
                SafetensorsBytes(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})",
                                 kEightBytes),
                {"'w'", "outside the data section of 8 bytes"}},
        BadFile{"OffsetsReversed",
                SafetensorsBytes(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})",
                                 kEightBytes),
                {"'w'", "outside the data section"}},
        BadFile{"OffsetsNotMatchingShape",
                SafetensorsBytes(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})",
                                 kEightBytes),
                {"'w'", "span 8 bytes", "needs 12"}},
        BadFile{"OffsetsNegative",
                SafetensorsBytes(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})",
                                 kEightBytes),
                {"'w'", "data_offsets"}},
        BadFile{"Overlapping",
                SafetensorsBytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                 R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                                 kEightBytes),
                {"overlap"}},
        BadFile{"OverlapInsideALargerTensor",
                SafetensorsBytes(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                                 R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},)"
                                 R"("c":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                                 std::string(16, '\0')),
                {"overlap"}},
        BadFile{"ShapeOverflow",
                SafetensorsBytes(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],)"
                                 R"("data_offsets":[0,8]}})",
                                 kEightBytes),
                {"'w'", "shape too large"}}),
    [](const ::testing::TestParamInfo<BadFile>& info) { return info.param.name; });

TEST(SafetensorsTest, UnsupportedDtypeIsReportedWhenUsed) {
  TempDir dir;
  const std::string path = dir.File("i.safetensors");
  WriteFile(path, SafetensorsBytes(R"({"ids":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})",
                                   kEightBytes));
  ASSERT_OK_AND_ASSIGN(auto file, SafetensorsFile::Open(path));
  EXPECT_THAT(file->Get("ids"), StatusIs(absl::StatusCode::kInvalidArgument,
                                         AllOf(HasSubstr(path), HasSubstr("'ids'"),
                                               HasSubstr("dtype I64 is not supported"))));
  EXPECT_THAT(file->Get("nope"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("missing tensor 'nope'")));
}

TEST(SafetensorsTest, MissingFileIsNotFound) {
  EXPECT_THAT(SafetensorsFile::Open("/nonexistent/x.safetensors"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent/x.safetensors")));
}

TEST(SafetensorsTest, MisalignedDataIsCopied) {
  TempDir dir;
  const std::string path = dir.File("m.safetensors");
  // A 1-byte tensor first puts the F32 tensor at an odd address.
  std::string data = std::string(1, '\7');
  const float v = 3.5f;
  data.append(reinterpret_cast<const char*>(&v), 4);
  WriteFile(path, SafetensorsBytes(R"({"b":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                                   R"("f":{"dtype":"F32","shape":[1],"data_offsets":[1,5]}}  )",
                                   data));
  ASSERT_OK_AND_ASSIGN(auto file, SafetensorsFile::Open(path));
  ASSERT_OK_AND_ASSIGN(Tensor f, file->Get("f"));
  EXPECT_EQ(f.ToFloats()[0], 3.5f);
}

}  // namespace
}  // namespace moe
