#include "model/presets.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/seeded_random.h"
#include "model/mxfp4_weights.h"

namespace moe {
namespace {

LayerSpec Mixtral(int64_t d_model, int64_t d_ff, int experts, int k) {
  LayerSpec s;
  s.family = "mixtral";
  s.d_model = d_model;
  s.expert = MakeFfnSpec(d_model, d_ff, Activation::kSilu, true, false);
  s.router.num_experts = experts;
  s.router.top_k = k;
  s.router.scoring = ScoringFunc::kSoftmax;
  s.router.renormalize = true;
  return s;
}

LayerSpec Dense(const std::string& family, int64_t d_model, int64_t d_ff, Activation act,
                bool gated, bool bias) {
  LayerSpec s;
  s.family = family;
  s.d_model = d_model;
  s.dense = true;
  s.expert = MakeFfnSpec(d_model, d_ff, act, gated, bias);
  return s;
}

Tensor Uniform(uint64_t seed, const std::string& name, std::vector<int64_t> shape, float limit) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  SeededRandom rng(DeriveSeed(seed, name));
  return Tensor::FromFloats(DType::kBF16, std::move(shape), rng.UniformVector(n, limit));
}

// `t` (bf16) rounded to the MXFP4 grid along its rows, when they are a
// multiple of 32 long (MXFP4 values are exact in bf16).
Tensor OnMxfp4Grid(const Tensor& t) {
  const int64_t k = t.shape().back();
  if (k % 32 != 0) return t;
  absl::StatusOr<std::vector<float>> v = RoundToMxfp4(t.ToFloats(), k);
  if (!v.ok()) return t;  // not reached: the generator's values are finite
  return Tensor::FromFloats(DType::kBF16, t.shape(), *v);
}

// One FFN's weights; with `mxfp4` its matrices lie on the MXFP4 grid, as
// gpt-oss's experts do (so they write to MXFP4 and load back exactly).
FfnWeights MakeFfn(const FfnSpec& s, uint64_t seed, const std::string& prefix, bool mxfp4 = false) {
  const float in_limit = 1.0f / std::sqrt(static_cast<float>(s.d_model));
  const float ff_limit = 1.0f / std::sqrt(static_cast<float>(s.d_ff));
  FfnWeights w;
  w.w1 = Uniform(seed, prefix + ".w1", {s.d_ff, s.d_model}, in_limit);
  if (s.gated) w.w3 = Uniform(seed, prefix + ".w3", {s.d_ff, s.d_model}, in_limit);
  w.w2 = Uniform(seed, prefix + ".w2", {s.d_model, s.d_ff}, ff_limit);
  if (mxfp4) {
    w.w1 = OnMxfp4Grid(w.w1);
    if (s.gated) w.w3 = OnMxfp4Grid(w.w3);
    w.w2 = OnMxfp4Grid(w.w2);
  }
  if (s.has_bias) {
    w.b1 = Uniform(seed, prefix + ".b1", {s.d_ff}, in_limit);
    if (s.gated) w.b3 = Uniform(seed, prefix + ".b3", {s.d_ff}, in_limit);
    w.b2 = Uniform(seed, prefix + ".b2", {s.d_model}, ff_limit);
  }
  return w;
}

}  // namespace

const std::vector<PresetInfo>& Presets() {
  static const auto* presets = new std::vector<PresetInfo>{
      {"demo", "mixtral-style: d_model 1024, 8 experts SwiGLU d_ff 2816, top-2 (default)"},
      {"mixtral-8x7b", "Mixtral 8x7B layer: d_model 4096, 8 experts SwiGLU d_ff 14336, top-2"},
      {"moe-1024x4096",
       "mixtral-style: d_model 1024, 8 experts SwiGLU d_ff 4096, top-2 (the shape the "
       "performance reference figures in bench/README.md were measured on)"},
      {"qwen2-moe-a2.7b",
       "Qwen1.5-MoE-A2.7B layer: d_model 2048, 60 experts d_ff 1408, top-4, shared expert "
       "5632 with sigmoid gate, no renormalisation"},
      {"qwen3-30b-a3b",
       "Qwen3-30B-A3B layer: d_model 2048, 128 experts SwiGLU d_ff 768, top-8, renormalised"},
      {"olmoe-1b-7b",
       "OLMoE-1B-7B layer: d_model 2048, 64 experts SwiGLU d_ff 1024, top-8, not "
       "renormalised"},
      {"gpt-oss-20b",
       "gpt-oss-20b layer: d_model 2880, 32 experts clamped SwiGLU d_ff 2880 with biases, "
       "router bias, top-4 softmax over the k; expert matrices on the MXFP4 grid (written "
       "as MXFP4, as shipped)"},
      {"deepseek-v3-small",
       "DeepSeek-V3 routing at a small size: d_model 1024, 64 experts d_ff 512, top-8, "
       "sigmoid + correction bias, 8 groups top-4, 2 shared experts, scaling 2.5"},
      {"switch-8",
       "Switch Transformer: d_model 768, 8 experts ReLU d_ff 3072, top-1, "
       "capacity factor 1.25"},
      {"transformer-base", "dense FFN of the original Transformer: 512/2048 ReLU, biases"},
      {"bert-base", "dense FFN of BERT-base: 768/3072 GELU, biases"},
      {"gpt2", "dense FFN of GPT-2: 768/3072 gelu_tanh, biases"},
      {"llama-7b", "dense FFN of LLaMA-7B: 4096/11008 SwiGLU"},
  };
  return *presets;
}

std::string PresetNameList() {
  std::vector<std::string> names;
  for (const auto& p : Presets()) names.push_back(p.name);
  return absl::StrJoin(names, ", ");
}

absl::StatusOr<LayerSpec> PresetSpec(const std::string& name) {
  if (name == "demo") return Mixtral(1024, 2816, 8, 2);
  if (name == "moe-1024x4096") return Mixtral(1024, 4096, 8, 2);
  if (name == "mixtral-8x7b") return Mixtral(4096, 14336, 8, 2);
  if (name == "qwen2-moe-a2.7b") {
    LayerSpec s;
    s.family = "qwen2_moe";
    s.d_model = 2048;
    s.expert = MakeFfnSpec(2048, 1408, Activation::kSilu, true, false);
    s.router.num_experts = 60;
    s.router.top_k = 4;
    s.router.scoring = ScoringFunc::kSoftmax;
    s.router.renormalize = false;
    s.shared = MakeFfnSpec(2048, 5632, Activation::kSilu, true, false);
    s.shared_gate = true;
    return s;
  }
  if (name == "qwen3-30b-a3b" || name == "olmoe-1b-7b") {
    const bool qwen = name == "qwen3-30b-a3b";
    LayerSpec s;
    s.family = qwen ? "qwen3_moe" : "olmoe";
    s.d_model = 2048;
    s.expert = MakeFfnSpec(2048, qwen ? 768 : 1024, Activation::kSilu, true, false);
    s.router.num_experts = qwen ? 128 : 64;
    s.router.top_k = 8;
    s.router.scoring = ScoringFunc::kSoftmax;
    s.router.renormalize = qwen;
    return s;
  }
  if (name == "gpt-oss-20b") {
    LayerSpec s;
    s.family = "gpt_oss";
    s.d_model = 2880;
    s.expert = MakeFfnSpec(2880, 2880, Activation::kSilu, true, true);
    s.expert.swiglu_limit = 7.0f;
    s.router.num_experts = 32;
    s.router.top_k = 4;
    s.router.scoring = ScoringFunc::kSoftmax;
    s.router.renormalize = true;
    s.gate_bias = true;
    return s;
  }
  if (name == "deepseek-v3-small") {
    LayerSpec s;
    s.family = "deepseek_v3";
    s.d_model = 1024;
    s.expert = MakeFfnSpec(1024, 512, Activation::kSilu, true, false);
    s.router.num_experts = 64;
    s.router.top_k = 8;
    s.router.scoring = ScoringFunc::kSigmoid;
    s.router.n_group = 8;
    s.router.topk_group = 4;
    s.router.group_score = GroupScore::kSumTop2;
    s.router.renormalize = true;
    s.router.renorm_epsilon = 1e-20f;
    s.router.routed_scaling_factor = 2.5f;
    s.correction_bias = true;
    s.shared = MakeFfnSpec(1024, 2 * 512, Activation::kSilu, true, false);
    return s;
  }
  if (name == "switch-8") {
    LayerSpec s;
    s.family = "switch_transformers";
    s.d_model = 768;
    s.expert = MakeFfnSpec(768, 3072, Activation::kRelu, false, false);
    s.router.num_experts = 8;
    s.router.top_k = 1;
    s.router.scoring = ScoringFunc::kSoftmax;
    s.router.capacity_factor = 1.25;
    return s;
  }
  if (name == "transformer-base") return Dense("bert", 512, 2048, Activation::kRelu, false, true);
  if (name == "bert-base") return Dense("bert", 768, 3072, Activation::kGelu, false, true);
  if (name == "gpt2") return Dense("gpt2", 768, 3072, Activation::kGeluTanh, false, true);
  if (name == "llama-7b") return Dense("llama", 4096, 11008, Activation::kSilu, true, false);
  return absl::NotFoundError(
      absl::StrCat("unknown preset '", name, "' (presets: ", PresetNameList(), ")"));
}

LayerWeights MakeSyntheticWeights(const LayerSpec& spec, uint64_t seed,
                                  const std::vector<int>& hosted) {
  LayerWeights w;
  w.spec = spec;
  const int e = spec.router.num_experts;
  const float gate_limit = 1.0f / std::sqrt(static_cast<float>(spec.d_model));
  if (!spec.dense) {
    w.gate_weight = Uniform(seed, "gate", {e, spec.d_model}, gate_limit);
    if (spec.gate_bias) w.gate_bias = Uniform(seed, "gate.bias", {e}, gate_limit);
    if (spec.correction_bias) {
      // Stored in f32, as DeepSeek-V3 checkpoints do.
      SeededRandom rng(DeriveSeed(seed, "gate.e_score_correction_bias"));
      w.correction_bias = Tensor::FromFloats(DType::kF32, {e}, rng.UniformVector(e, 0.1f));
    }
  }
  w.experts.resize(static_cast<size_t>(e));
  for (int i = 0; i < e; ++i) {
    if (!hosted.empty() && std::find(hosted.begin(), hosted.end(), i) == hosted.end()) continue;
    w.experts[static_cast<size_t>(i)] =
        MakeFfn(spec.expert, seed, absl::StrCat("expert.", i), spec.family == "gpt_oss");
  }
  if (spec.has_shared()) {
    w.shared = MakeFfn(spec.shared, seed, "shared");
    if (spec.shared_gate)
      w.shared_gate = Uniform(seed, "shared_gate", {1, spec.d_model}, gate_limit);
  }
  return w;
}

absl::StatusOr<LayerWeights> MakePreset(const std::string& name, uint64_t seed) {
  auto spec = PresetSpec(name);
  if (!spec.ok()) return spec.status();
  return MakeSyntheticWeights(*spec, seed);
}

}  // namespace moe
