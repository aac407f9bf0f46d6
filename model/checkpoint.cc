#include "model/checkpoint.h"

#include <filesystem>
#include <fstream>
#include <iterator>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace moe {

absl::StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::Open(const std::string& dir) {
  namespace fs = std::filesystem;
  std::unique_ptr<Checkpoint> ckpt(new Checkpoint(dir));
  const fs::path index_path = fs::path(dir) / "model.safetensors.index.json";
  const fs::path single_path = fs::path(dir) / "model.safetensors";
  std::error_code ec;
  if (fs::exists(index_path, ec)) {
    std::ifstream in(index_path);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    nlohmann::json index;
    try {
      index = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
      return absl::InvalidArgumentError(
          absl::StrCat(index_path.string(), ": invalid JSON: ", e.what()));
    }
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat(index_path.string(), ": no \"weight_map\" object"));
    }
    for (const auto& [name, file] : index["weight_map"].items()) {
      if (!file.is_string()) {
        return absl::InvalidArgumentError(absl::StrCat(
            index_path.string(), ": weight_map entry for '", name, "' is not a file name"));
      }
      const std::string shard = file.get<std::string>();
      if (shard.empty() || absl::StrContains(shard, "/") || shard == "." || shard == "..") {
        return absl::InvalidArgumentError(
            absl::StrCat(index_path.string(), ": weight_map entry for '", name, "' names '", shard,
                         "', not a file in the folder"));
      }
      auto it = ckpt->files_.find(shard);
      if (it == ckpt->files_.end()) {
        auto opened = SafetensorsFile::Open((fs::path(dir) / shard).string());
        if (!opened.ok()) return opened.status();
        it = ckpt->files_.emplace(shard, *std::move(opened)).first;
      }
      if (!it->second->Has(name)) {
        return absl::InvalidArgumentError(absl::StrCat(index_path.string(), ": tensor '", name,
                                                       "' is mapped to ", shard,
                                                       ", which does not contain it"));
      }
      ckpt->where_[name] = it->second.get();
    }
  } else if (fs::exists(single_path, ec)) {
    auto opened = SafetensorsFile::Open(single_path.string());
    if (!opened.ok()) return opened.status();
    SafetensorsFile* file = opened->get();
    ckpt->files_.emplace("model.safetensors", *std::move(opened));
    for (const auto& [name, entry] : file->entries()) ckpt->where_[name] = file;
  } else {
    return absl::NotFoundError(
        absl::StrCat(dir, ": no model.safetensors or model.safetensors.index.json in the folder"));
  }
  return ckpt;
}

absl::StatusOr<Tensor> Checkpoint::Get(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) {
    return absl::NotFoundError(absl::StrCat(dir_, ": missing tensor '", name, "'"));
  }
  return it->second->Get(name);
}

absl::StatusOr<SafetensorsFile::Raw> Checkpoint::GetRaw(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) {
    return absl::NotFoundError(absl::StrCat(dir_, ": missing tensor '", name, "'"));
  }
  return it->second->GetRaw(name);
}

std::string Checkpoint::FileOf(const std::string& name) const {
  auto it = where_.find(name);
  return it == where_.end() ? dir_ : it->second->path();
}

}  // namespace moe
