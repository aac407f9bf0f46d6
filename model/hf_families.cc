#include "model/hf_families.h"

namespace moe {

const std::vector<HfFamily>& HfFamilies() {
  static const std::vector<HfFamily> kFamilies = {
      {"mixtral", ResolveMixtral, WriteMixtralConfig},
      {"qwen2_moe", ResolveQwenMoe, WriteQwen2MoeConfig},
      {"qwen3_moe", ResolveQwenMoe, WriteQwen3MoeConfig},
      {"olmoe", ResolveOlmoe, WriteOlmoeConfig},
      {"gpt_oss", ResolveGptOss, WriteGptOssConfig},
      {"deepseek_v2", ResolveDeepseek, nullptr},
      {"deepseek_v3", ResolveDeepseek, WriteDeepseekConfig},
      {"llama", ResolveLlama, WriteLlamaConfig},
      {"mistral", ResolveLlama, WriteLlamaConfig},
      {"qwen2", ResolveLlama, WriteLlamaConfig},
      {"bert", ResolveBert, WriteBertConfig},
      {"gpt2", ResolveGpt2, WriteGpt2Config},
      {"switch_transformers", ResolveSwitch, WriteSwitchConfig},
  };
  return kFamilies;
}

const HfFamily* FindHfFamily(const std::string& model_type) {
  for (const HfFamily& f : HfFamilies()) {
    if (model_type == f.model_type) return &f;
  }
  return nullptr;
}

}  // namespace moe
