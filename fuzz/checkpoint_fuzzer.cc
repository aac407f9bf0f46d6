// libFuzzer target: a whole Hugging Face model folder, loaded as the server
// loads it at start-up (LoadHfLayer: config.json, the optional
// model.safetensors.index.json, the safetensors shards, the family layout,
// every shape and dtype check).
//
// Input: the folder's files concatenated, separated by kFileSeparator, in
// the order of kFileNames; an empty section means "no such file". Layers 0
// and 1 are both loaded. Contract under test: every input gives weights that
// pass ValidateLayerWeights or an error Status; nothing crashes, leaks, hangs
// or reads outside a file.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "fuzz/checkpoint_archive.h"
#include "fuzz/fuzz_files.h"
#include "model/checkpoint_loader.h"
#include "model/layer_spec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static moe::fuzz::ScratchDir scratch;  // removed at exit
  const moe::fuzz::ScratchDir* dir = &scratch;
  const auto sections = moe::fuzz::SplitArchive(data, size);
  for (size_t i = 0; i < moe::fuzz::kFileNames.size(); ++i) {
    const std::string name = moe::fuzz::kFileNames[i];
    if (i < sections.size() && !sections[i].empty()) {
      dir->Write(name, reinterpret_cast<const uint8_t*>(sections[i].data()), sections[i].size());
    } else {
      dir->Remove(name);
    }
  }
  for (int layer : {0, 1}) {
    auto weights = moe::LoadHfLayer(dir->path(), layer);
    if (!weights.ok()) continue;
    // A loaded layer must be internally consistent: the loader promises it.
    if (!moe::ValidateLayerWeights(*weights).ok()) std::abort();
  }
  return 0;
}
