// Scratch files for fuzz targets whose code under test reads from disk.
//
// ScratchDir is a per-process folder on tmpfs (/dev/shm when present) that
// a target rewrites on every input; it is removed at exit. Not thread-safe:
// libFuzzer runs one input at a time per process.
#ifndef MOE_FUZZ_FUZZ_FILES_H_
#define MOE_FUZZ_FUZZ_FILES_H_

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace moe::fuzz {

class ScratchDir {
 public:
  ScratchDir() {
    std::filesystem::path base = std::filesystem::exists("/dev/shm")
                                     ? std::filesystem::path("/dev/shm")
                                     : std::filesystem::temp_directory_path();
    path_ = (base / ("moe-fuzz-" + std::to_string(::getpid()))).string();
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const std::string& path() const { return path_; }

  // Writes `size` bytes to `name` inside the folder; returns the full path.
  std::string Write(const std::string& name, const uint8_t* data, size_t size) const {
    const std::string file = path_ + "/" + name;
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    return file;
  }
  void Remove(const std::string& name) const {
    std::error_code ec;
    std::filesystem::remove(path_ + "/" + name, ec);
  }

 private:
  std::string path_;
};

}  // namespace moe::fuzz

#endif  // MOE_FUZZ_FUZZ_FILES_H_
