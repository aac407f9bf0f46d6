// Checkpoint: the tensors of a Hugging Face model folder, from either one
// `model.safetensors` or the shards listed in `model.safetensors.index.json`
// (its "weight_map": tensor name -> shard file).
//
// Every shard is opened (mapped and validated) by Open(); tensor bytes are
// read only when a Tensor is used. Thread-safe after Open().
#ifndef MOE_MODEL_CHECKPOINT_H_
#define MOE_MODEL_CHECKPOINT_H_

#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/tensor.h"
#include "model/safetensors_file.h"

namespace moe {

class Checkpoint {
 public:
  static absl::StatusOr<std::unique_ptr<Checkpoint>> Open(const std::string& dir);

  bool Has(const std::string& name) const { return where_.count(name) > 0; }

  // NOT_FOUND ("missing tensor 'x' in DIR") when absent.
  absl::StatusOr<Tensor> Get(const std::string& name) const;

  // The stored bytes of `name` in any dtype (SafetensorsFile::GetRaw); valid
  // while the Checkpoint lives.
  absl::StatusOr<SafetensorsFile::Raw> GetRaw(const std::string& name) const;

  // The file that holds `name` (for messages), or the folder if absent.
  std::string FileOf(const std::string& name) const;

  const std::string& dir() const { return dir_; }

 private:
  explicit Checkpoint(std::string dir) : dir_(std::move(dir)) {}

  std::string dir_;
  std::map<std::string, std::shared_ptr<SafetensorsFile>> files_;  // by file name
  std::map<std::string, SafetensorsFile*> where_;                  // by tensor name
};

}  // namespace moe

#endif  // MOE_MODEL_CHECKPOINT_H_
