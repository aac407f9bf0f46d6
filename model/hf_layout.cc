#include "model/hf_layout.h"

#include <algorithm>
#include <optional>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace moe {
namespace {

using json = nlohmann::json;

// Reads typed config keys, with errors that name the file and the key.
class ConfigReader {
 public:
  ConfigReader(const json& config, const std::string& path) : c_(config), path_(path) {}

  bool Has(const std::string& key) const {
    return c_.contains(key) && !c_.at(key).is_null();
  }

  absl::StatusOr<int64_t> Int(const std::string& key) const {
    if (!Has(key)) return Missing(key);
    const json& v = c_.at(key);
    if (!v.is_number_integer()) return Bad(key, "an integer");
    return v.get<int64_t>();
  }
  absl::StatusOr<int64_t> Int(const std::string& key, int64_t def) const {
    return Has(key) ? Int(key) : absl::StatusOr<int64_t>(def);
  }
  absl::StatusOr<int64_t> PositiveInt(const std::string& key) const {
    MOE_ASSIGN_OR_RETURN(int64_t v, Int(key));
    if (v < 1) return Bad(key, "a positive integer");
    return v;
  }
  absl::StatusOr<double> Number(const std::string& key, double def) const {
    if (!Has(key)) return def;
    const json& v = c_.at(key);
    if (!v.is_number()) return Bad(key, "a number");
    return v.get<double>();
  }
  absl::StatusOr<bool> Bool(const std::string& key, bool def) const {
    if (!Has(key)) return def;
    const json& v = c_.at(key);
    if (!v.is_boolean()) return Bad(key, "true or false");
    return v.get<bool>();
  }
  absl::StatusOr<std::string> String(const std::string& key, const std::string& def) const {
    if (!Has(key)) return def;
    const json& v = c_.at(key);
    if (!v.is_string()) return Bad(key, "a string");
    return v.get<std::string>();
  }
  absl::StatusOr<std::vector<int64_t>> IntList(const std::string& key) const {
    std::vector<int64_t> out;
    if (!Has(key)) return out;
    const json& v = c_.at(key);
    if (!v.is_array()) return Bad(key, "a list of integers");
    for (const auto& x : v) {
      if (!x.is_number_integer()) return Bad(key, "a list of integers");
      out.push_back(x.get<int64_t>());
    }
    return out;
  }
  absl::Status Missing(const std::string& key) const {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": missing config key '", key, "'"));
  }
  absl::Status Bad(const std::string& key, const char* want) const {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": config key '", key,
                                                   "' must be ", want, ", got ",
                                                   c_.at(key).dump()));
  }
  const std::string& path() const { return path_; }

 private:
  const json& c_;
  const std::string& path_;
};

absl::Status CheckLayer(const ConfigReader& r, int layer, const char* key) {
  MOE_ASSIGN_OR_RETURN(int64_t n, r.PositiveInt(key));
  if (layer < 0 || layer >= n) {
    return absl::OutOfRangeError(absl::StrCat("layer ", layer, " out of range: ", r.path(),
                                              " says ", key, " = ", n, " (valid: 0..",
                                              n - 1, ")"));
  }
  return absl::OkStatus();
}

// LLaMA-style gate_proj/up_proj/down_proj under `prefix`.
FfnTensorNames ProjNames(const std::string& prefix, bool bias) {
  FfnTensorNames n;
  n.w1 = prefix + "gate_proj.weight";
  n.w3 = prefix + "up_proj.weight";
  n.w2 = prefix + "down_proj.weight";
  if (bias) {
    n.b1 = prefix + "gate_proj.bias";
    n.b3 = prefix + "up_proj.bias";
    n.b2 = prefix + "down_proj.bias";
  }
  return n;
}

void MakeDense(HfLayerLayout* l, const std::string& family, int64_t d_model, FfnSpec ffn,
               FfnTensorNames names) {
  l->spec.family = family;
  l->spec.d_model = d_model;
  l->spec.dense = true;
  l->spec.expert = ffn;
  l->spec.router = RouterOptions();
  l->experts = {std::move(names)};
}

absl::StatusOr<Activation> ReadActivation(const ConfigReader& r, const std::string& key,
                                          const std::string& def) {
  MOE_ASSIGN_OR_RETURN(std::string name, r.String(key, def));
  auto act = ParseActivation(name);
  if (!act.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(r.path(), ": config key '", key, "': ", act.status().message()));
  }
  return *act;
}

absl::Status ResolveMixtral(const ConfigReader& r, int layer, HfLayerLayout* l) {
  MOE_RETURN_IF_ERROR(CheckLayer(r, layer, "num_hidden_layers"));
  MOE_ASSIGN_OR_RETURN(int64_t h, r.PositiveInt("hidden_size"));
  MOE_ASSIGN_OR_RETURN(int64_t ff, r.PositiveInt("intermediate_size"));
  MOE_ASSIGN_OR_RETURN(int64_t e, r.PositiveInt("num_local_experts"));
  MOE_ASSIGN_OR_RETURN(int64_t k, r.PositiveInt("num_experts_per_tok"));
  MOE_ASSIGN_OR_RETURN(Activation act, ReadActivation(r, "hidden_act", "silu"));
  const std::string p = absl::StrCat("model.layers.", layer, ".block_sparse_moe.");
  l->spec.family = "mixtral";
  l->spec.d_model = h;
  l->spec.expert = MakeFfnSpec(h, ff, act, true, false);
  l->spec.router.num_experts = static_cast<int>(e);
  l->spec.router.top_k = static_cast<int>(k);
  l->spec.router.scoring = ScoringFunc::kSoftmax;
  l->spec.router.renormalize = true;
  l->gate_weight = p + "gate.weight";
  for (int64_t i = 0; i < e; ++i) {
    const std::string q = absl::StrCat(p, "experts.", i, ".");
    FfnTensorNames n;
    n.w1 = q + "w1.weight";
    n.w3 = q + "w3.weight";
    n.w2 = q + "w2.weight";
    l->experts.push_back(n);
  }
  return absl::OkStatus();
}

// Qwen2-MoE and Qwen3-MoE (the same block; Qwen3 has no shared expert, so
// its config has no shared_expert_intermediate_size).
absl::Status ResolveQwenMoe(const ConfigReader& r, int layer, const std::string& family,
                            HfLayerLayout* l) {
  MOE_RETURN_IF_ERROR(CheckLayer(r, layer, "num_hidden_layers"));
  MOE_ASSIGN_OR_RETURN(int64_t h, r.PositiveInt("hidden_size"));
  MOE_ASSIGN_OR_RETURN(Activation act, ReadActivation(r, "hidden_act", "silu"));
  MOE_ASSIGN_OR_RETURN(int64_t e, r.Int("num_experts", 0));
  MOE_ASSIGN_OR_RETURN(int64_t step, r.Int("decoder_sparse_step", 1));
  MOE_ASSIGN_OR_RETURN(std::vector<int64_t> mlp_only, r.IntList("mlp_only_layers"));
  const std::string p = absl::StrCat("model.layers.", layer, ".mlp.");
  const bool is_moe = std::find(mlp_only.begin(), mlp_only.end(), layer) == mlp_only.end() &&
                      e > 0 && step > 0 && (layer + 1) % step == 0;
  if (!is_moe) {
    MOE_ASSIGN_OR_RETURN(int64_t ff, r.PositiveInt("intermediate_size"));
    MakeDense(l, family, h, MakeFfnSpec(h, ff, act, true, false), ProjNames(p, false));
    return absl::OkStatus();
  }
  MOE_ASSIGN_OR_RETURN(int64_t ff, r.PositiveInt("moe_intermediate_size"));
  MOE_ASSIGN_OR_RETURN(int64_t k, r.PositiveInt("num_experts_per_tok"));
  MOE_ASSIGN_OR_RETURN(bool norm, r.Bool("norm_topk_prob", false));
  MOE_ASSIGN_OR_RETURN(int64_t shared_ff, r.Int("shared_expert_intermediate_size", 0));
  l->spec.family = family;
  l->spec.d_model = h;
  l->spec.expert = MakeFfnSpec(h, ff, act, true, false);
  l->spec.router.num_experts = static_cast<int>(e);
  l->spec.router.top_k = static_cast<int>(k);
  l->spec.router.scoring = ScoringFunc::kSoftmax;
  l->spec.router.renormalize = norm;
  l->gate_weight = p + "gate.weight";
  for (int64_t i = 0; i < e; ++i) {
    l->experts.push_back(ProjNames(absl::StrCat(p, "experts.", i, "."), false));
  }
  if (shared_ff > 0) {
    l->spec.shared = MakeFfnSpec(h, shared_ff, act, true, false);
    l->spec.shared_gate = true;
    l->shared = ProjNames(p + "shared_expert.", false);
    l->shared_gate = p + "shared_expert_gate.weight";
  }
  return absl::OkStatus();
}

// OLMoE: every layer is MoE; intermediate_size is the expert size; softmax
// top-k, renormalised only with norm_topk_prob; no shared expert.
absl::Status ResolveOlmoe(const ConfigReader& r, int layer, HfLayerLayout* l) {
  MOE_RETURN_IF_ERROR(CheckLayer(r, layer, "num_hidden_layers"));
  MOE_ASSIGN_OR_RETURN(int64_t h, r.PositiveInt("hidden_size"));
  MOE_ASSIGN_OR_RETURN(int64_t ff, r.PositiveInt("intermediate_size"));
  MOE_ASSIGN_OR_RETURN(int64_t e, r.PositiveInt("num_experts"));
  MOE_ASSIGN_OR_RETURN(int64_t k, r.PositiveInt("num_experts_per_tok"));
  MOE_ASSIGN_OR_RETURN(bool norm, r.Bool("norm_topk_prob", false));
  MOE_ASSIGN_OR_RETURN(Activation act, ReadActivation(r, "hidden_act", "silu"));
  const std::string p = absl::StrCat("model.layers.", layer, ".mlp.");
  l->spec.family = "olmoe";
  l->spec.d_model = h;
  l->spec.expert = MakeFfnSpec(h, ff, act, true, false);
  l->spec.router.num_experts = static_cast<int>(e);
  l->spec.router.top_k = static_cast<int>(k);
  l->spec.router.scoring = ScoringFunc::kSoftmax;
  l->spec.router.renormalize = norm;
  l->gate_weight = p + "gate.weight";
  for (int64_t i = 0; i < e; ++i) {
    l->experts.push_back(ProjNames(absl::StrCat(p, "experts.", i, "."), false));
  }
  return absl::OkStatus();
}

// gpt-oss: the router has a bias, picks the top k logits and takes the
// softmax over those k (the same weights as a softmax over all, then
// renormalised over the k); the experts are one clamped-SwiGLU FFN each,
// with biases, stored together (HfLayerLayout::packed_experts).
absl::Status ResolveGptOss(const ConfigReader& r, int layer, HfLayerLayout* l) {
  MOE_RETURN_IF_ERROR(CheckLayer(r, layer, "num_hidden_layers"));
  MOE_ASSIGN_OR_RETURN(int64_t h, r.PositiveInt("hidden_size"));
  MOE_ASSIGN_OR_RETURN(int64_t ff, r.PositiveInt("intermediate_size"));
  MOE_ASSIGN_OR_RETURN(int64_t e, r.PositiveInt("num_local_experts"));
  MOE_ASSIGN_OR_RETURN(int64_t k_default, r.Int("experts_per_token", 4));
  MOE_ASSIGN_OR_RETURN(int64_t k, r.Int("num_experts_per_tok", k_default));
  MOE_ASSIGN_OR_RETURN(double limit, r.Number("swiglu_limit", 7.0));
  if (k < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(r.path(), ": config key 'num_experts_per_tok' must be >= 1, got ", k));
  }
  if (!(limit > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat(r.path(), ": config key 'swiglu_limit' must be > 0, got ", limit));
  }
  const std::string p = absl::StrCat("model.layers.", layer, ".mlp.");
  l->spec.family = "gpt_oss";
  l->spec.d_model = h;
  l->spec.expert = MakeFfnSpec(h, ff, Activation::kSilu, true, true);
  l->spec.expert.swiglu_limit = static_cast<float>(limit);
  l->spec.router.num_experts = static_cast<int>(e);
  l->spec.router.top_k = static_cast<int>(k);
  l->spec.router.scoring = ScoringFunc::kSoftmax;
  l->spec.router.renormalize = true;
  l->spec.gate_bias = true;
  l->gate_weight = p + "router.weight";
  l->gate_bias = p + "router.bias";
  l->packed_experts = p + "experts.";
  return absl::OkStatus();
}

absl::Status ResolveDeepseek(const ConfigReader& r, int layer, bool v3, HfLayerLayout* l) {
  const std::string family = v3 ? "deepseek_v3" : "deepseek_v2";
  MOE_RETURN_IF_ERROR(CheckLayer(r, layer, "num_hidden_layers"));
  MOE_ASSIGN_OR_RETURN(int64_t h, r.PositiveInt("hidden_size"));
  MOE_ASSIGN_OR_RETURN(Activation act, ReadActivation(r, "hidden_act", "silu"));
  MOE_ASSIGN_OR_RETURN(int64_t e, r.Int("n_routed_experts", 0));
  MOE_ASSIGN_OR_RETURN(int64_t first_dense, r.Int("first_k_dense_replace", 0));
  MOE_ASSIGN_OR_RETURN(int64_t freq, r.Int("moe_layer_freq", 1));
  const std::string p = absl::StrCat("model.layers.", layer, ".mlp.");
  const bool is_moe = e > 0 && layer >= first_dense && freq > 0 && layer % freq == 0;
  if (!is_moe) {
    MOE_ASSIGN_OR_RETURN(int64_t ff, r.PositiveInt("intermediate_size"));
    MakeDense(l, family, h, MakeFfnSpec(h, ff, act, true, false), ProjNames(p, false));
    return absl::OkStatus();
  }
  MOE_ASSIGN_OR_RETURN(int64_t ff, r.PositiveInt("moe_intermediate_size"));
  MOE_ASSIGN_OR_RETURN(int64_t k, r.PositiveInt("num_experts_per_tok"));
  MOE_ASSIGN_OR_RETURN(std::string scoring,
                       r.String("scoring_func", v3 ? "sigmoid" : "softmax"));
  MOE_ASSIGN_OR_RETURN(std::string method,
                       r.String("topk_method", v3 ? "noaux_tc" : "greedy"));
  MOE_ASSIGN_OR_RETURN(bool norm, r.Bool("norm_topk_prob", v3));
  MOE_ASSIGN_OR_RETURN(double scale, r.Number("routed_scaling_factor", v3 ? 2.5 : 1.0));
  MOE_ASSIGN_OR_RETURN(int64_t shared_n, r.Int("n_shared_experts", 0));
  RouterOptions& o = l->spec.router;
  o.num_experts = static_cast<int>(e);
  o.top_k = static_cast<int>(k);
  if (scoring == "softmax") {
    o.scoring = ScoringFunc::kSoftmax;
  } else if (scoring == "sigmoid") {
    o.scoring = ScoringFunc::kSigmoid;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        r.path(), ": config key 'scoring_func' must be softmax or sigmoid, got '", scoring, "'"));
  }
  if (method == "noaux_tc" || method == "group_limited_greedy") {
    MOE_ASSIGN_OR_RETURN(int64_t n_group, r.PositiveInt("n_group"));
    MOE_ASSIGN_OR_RETURN(int64_t topk_group, r.PositiveInt("topk_group"));
    o.n_group = static_cast<int>(n_group);
    o.topk_group = static_cast<int>(topk_group);
    o.group_score = method == "noaux_tc" ? GroupScore::kSumTop2 : GroupScore::kMax;
    l->spec.correction_bias = method == "noaux_tc";
  } else if (method != "greedy" && method != "gready") {
    return absl::InvalidArgumentError(absl::StrCat(
        r.path(), ": config key 'topk_method' must be greedy, group_limited_greedy or "
                  "noaux_tc, got '", method, "'"));
  }
  // Weights as the families compute them: V3 renormalises (top_k > 1) and
  // always scales; V2 either renormalises or scales.
  o.renormalize = norm && k > 1;
  o.renorm_epsilon = 1e-20f;
  o.routed_scaling_factor = (v3 || !o.renormalize) ? static_cast<float>(scale) : 1.0f;
  l->spec.family = family;
  l->spec.d_model = h;
  l->spec.expert = MakeFfnSpec(h, ff, act, true, false);
  l->gate_weight = p + "gate.weight";
  if (l->spec.correction_bias) l->correction_bias = p + "gate.e_score_correction_bias";
  for (int64_t i = 0; i < e; ++i) {
    l->experts.push_back(ProjNames(absl::StrCat(p, "experts.", i, "."), false));
  }
  if (shared_n > 0) {
    l->spec.shared = MakeFfnSpec(h, ff * shared_n, act, true, false);
    l->shared = ProjNames(p + "shared_experts.", false);
  }
  return absl::OkStatus();
}

absl::Status ResolveLlama(const ConfigReader& r, int layer, const std::string& family,
                          HfLayerLayout* l) {
  MOE_RETURN_IF_ERROR(CheckLayer(r, layer, "num_hidden_layers"));
  MOE_ASSIGN_OR_RETURN(int64_t h, r.PositiveInt("hidden_size"));
  MOE_ASSIGN_OR_RETURN(int64_t ff, r.PositiveInt("intermediate_size"));
  MOE_ASSIGN_OR_RETURN(Activation act, ReadActivation(r, "hidden_act", "silu"));
  MOE_ASSIGN_OR_RETURN(bool bias, r.Bool("mlp_bias", false));
  MakeDense(l, family, h, MakeFfnSpec(h, ff, act, true, bias),
            ProjNames(absl::StrCat("model.layers.", layer, ".mlp."), bias));
  return absl::OkStatus();
}

absl::Status ResolveBert(const ConfigReader& r, int layer,
                         const std::function<bool(const std::string&)>& has, HfLayerLayout* l) {
  MOE_RETURN_IF_ERROR(CheckLayer(r, layer, "num_hidden_layers"));
  MOE_ASSIGN_OR_RETURN(int64_t h, r.PositiveInt("hidden_size"));
  MOE_ASSIGN_OR_RETURN(int64_t ff, r.PositiveInt("intermediate_size"));
  MOE_ASSIGN_OR_RETURN(Activation act, ReadActivation(r, "hidden_act", "gelu"));
  std::string p = absl::StrCat("bert.encoder.layer.", layer, ".");
  if (!has(p + "intermediate.dense.weight")) p = absl::StrCat("encoder.layer.", layer, ".");
  FfnTensorNames n;
  n.w1 = p + "intermediate.dense.weight";
  n.b1 = p + "intermediate.dense.bias";
  n.w2 = p + "output.dense.weight";
  n.b2 = p + "output.dense.bias";
  MakeDense(l, "bert", h, MakeFfnSpec(h, ff, act, false, true), n);
  return absl::OkStatus();
}

absl::Status ResolveGpt2(const ConfigReader& r, int layer,
                         const std::function<bool(const std::string&)>& has, HfLayerLayout* l) {
  MOE_RETURN_IF_ERROR(CheckLayer(r, layer, "n_layer"));
  MOE_ASSIGN_OR_RETURN(int64_t h, r.PositiveInt("n_embd"));
  MOE_ASSIGN_OR_RETURN(int64_t ff, r.Int("n_inner", 4 * h));
  MOE_ASSIGN_OR_RETURN(Activation act, ReadActivation(r, "activation_function", "gelu_new"));
  std::string p = absl::StrCat("h.", layer, ".mlp.");
  if (!has(p + "c_fc.weight")) p = absl::StrCat("transformer.h.", layer, ".mlp.");
  FfnTensorNames n;
  n.w1 = p + "c_fc.weight";
  n.b1 = p + "c_fc.bias";
  n.w2 = p + "c_proj.weight";
  n.b2 = p + "c_proj.bias";
  n.transposed = true;
  MakeDense(l, "gpt2", h, MakeFfnSpec(h, ff, act, false, true), n);
  return absl::OkStatus();
}

absl::Status ResolveSwitch(const ConfigReader& r, int layer, HfLayerLayout* l) {
  MOE_RETURN_IF_ERROR(CheckLayer(r, layer, "num_layers"));
  MOE_ASSIGN_OR_RETURN(int64_t h, r.PositiveInt("d_model"));
  MOE_ASSIGN_OR_RETURN(int64_t ff, r.PositiveInt("d_ff"));
  MOE_ASSIGN_OR_RETURN(int64_t e, r.PositiveInt("num_experts"));
  MOE_ASSIGN_OR_RETURN(int64_t layers, r.PositiveInt("num_layers"));
  MOE_ASSIGN_OR_RETURN(int64_t sparse_layers, r.Int("num_sparse_encoder_layers", 3));
  MOE_ASSIGN_OR_RETURN(Activation act, ReadActivation(r, "dense_act_fn", "relu"));
  MOE_ASSIGN_OR_RETURN(bool router_bias, r.Bool("router_bias", false));
  MOE_ASSIGN_OR_RETURN(double capacity, r.Number("capacity_factor", 0.0));
  const int64_t step = sparse_layers > 0 ? layers / sparse_layers : 0;
  const bool is_moe = step > 0 && (step == 1 || layer % step == 1);
  const std::string p = absl::StrCat("encoder.block.", layer, ".layer.1.mlp.");
  if (!is_moe) {
    FfnTensorNames n;
    n.w1 = p + "wi.weight";
    n.w2 = p + "wo.weight";
    MakeDense(l, "switch_transformers", h, MakeFfnSpec(h, ff, act, false, false), n);
    return absl::OkStatus();
  }
  l->spec.family = "switch_transformers";
  l->spec.d_model = h;
  l->spec.expert = MakeFfnSpec(h, ff, act, false, false);
  l->spec.router.num_experts = static_cast<int>(e);
  l->spec.router.top_k = 1;
  l->spec.router.scoring = ScoringFunc::kSoftmax;
  l->spec.router.capacity_factor = capacity;
  l->spec.gate_bias = router_bias;
  l->gate_weight = p + "router.classifier.weight";
  if (router_bias) l->gate_bias = p + "router.classifier.bias";
  for (int64_t i = 0; i < e; ++i) {
    FfnTensorNames n;
    n.w1 = absl::StrCat(p, "experts.expert_", i, ".wi.weight");
    n.w2 = absl::StrCat(p, "experts.expert_", i, ".wo.weight");
    l->experts.push_back(n);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<int> HfNumLayers(const json& config, const std::string& config_path) {
  if (!config.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(config_path, ": not a JSON object"));
  }
  ConfigReader r(config, config_path);
  for (const char* key : {"num_hidden_layers", "n_layer", "num_layers"}) {
    if (!r.Has(key)) continue;
    MOE_ASSIGN_OR_RETURN(int64_t n, r.PositiveInt(key));
    if (n > 100000) return r.Bad(key, "a layer count below 100000");
    return static_cast<int>(n);
  }
  return r.Missing("num_hidden_layers");
}

absl::StatusOr<HfLayerLayout> ResolveHfLayer(
    const json& config, int layer, const std::string& config_path,
    const std::function<bool(const std::string&)>& has_tensor) {
  if (!config.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(config_path, ": not a JSON object"));
  }
  ConfigReader r(config, config_path);
  if (!r.Has("model_type")) return r.Missing("model_type");
  MOE_ASSIGN_OR_RETURN(std::string type, r.String("model_type", ""));
  HfLayerLayout l;
  if (config.contains("quantization_config")) {
    const json& q = config["quantization_config"];
    const std::string method =
        q.is_object() && q.contains("quant_method") && q["quant_method"].is_string()
            ? q["quant_method"].get<std::string>()
            : "";
    if (method == "mxfp4" && type == "gpt_oss") {
      // The experts' MXFP4 tensors say so themselves (ResolveGptOss).
    } else if (method != "fp8") {
      return absl::InvalidArgumentError(absl::StrCat(
          config_path, ": quantization_config.quant_method '", method,
          "' is not supported (supported: fp8 with weight_block_size; mxfp4 for gpt_oss)"));
    }
    if (method == "fp8") {
      if (q.contains("fmt") && q["fmt"] != "e4m3") {
        return absl::InvalidArgumentError(absl::StrCat(
            config_path, ": quantization_config.fmt ", q["fmt"].dump(), " is not supported (e4m3)"));
      }
      const json& b = q.contains("weight_block_size") ? q["weight_block_size"] : json();
      if (!b.is_array() || b.size() != 2 || !b[0].is_number_integer() ||
          !b[1].is_number_integer() || b[0].get<int64_t>() < 1 || b[1].get<int64_t>() < 1) {
        return absl::InvalidArgumentError(absl::StrCat(
            config_path, ": quantization_config.weight_block_size must be two positive "
                         "integers [rows, columns], got ", b.dump()));
      }
      l.fp8_block[0] = b[0].get<int64_t>();
      l.fp8_block[1] = b[1].get<int64_t>();
    }
  }
  absl::Status st;
  if (type == "mixtral") {
    st = ResolveMixtral(r, layer, &l);
  } else if (type == "qwen2_moe" || type == "qwen3_moe") {
    st = ResolveQwenMoe(r, layer, type, &l);
  } else if (type == "olmoe") {
    st = ResolveOlmoe(r, layer, &l);
  } else if (type == "gpt_oss") {
    st = ResolveGptOss(r, layer, &l);
  } else if (type == "deepseek_v2" || type == "deepseek_v3") {
    st = ResolveDeepseek(r, layer, type == "deepseek_v3", &l);
  } else if (type == "llama" || type == "mistral" || type == "qwen2") {
    st = ResolveLlama(r, layer, type, &l);
  } else if (type == "bert") {
    st = ResolveBert(r, layer, has_tensor, &l);
  } else if (type == "gpt2") {
    st = ResolveGpt2(r, layer, has_tensor, &l);
  } else if (type == "switch_transformers") {
    st = ResolveSwitch(r, layer, &l);
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        config_path, ": model_type '", type,
        "' is not supported (mixtral, qwen2_moe, qwen3_moe, olmoe, gpt_oss, deepseek_v2, "
        "deepseek_v3, llama, mistral, qwen2, bert, gpt2, switch_transformers)"));
  }
  MOE_RETURN_IF_ERROR(st);
  const RouterOptions& o = l.spec.router;
  if (!l.spec.dense && (o.top_k > o.num_experts)) {
    return absl::InvalidArgumentError(absl::StrCat(
        config_path, ": num_experts_per_tok = ", o.top_k, " exceeds the ", o.num_experts,
        " experts"));
  }
  return l;
}

absl::StatusOr<json> MakeHfConfig(const LayerSpec& s) {
  json c;
  const std::string& f = s.family;
  const auto unsupported = [&](const std::string& why) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot write a ", f, " checkpoint for this layer: ", why));
  };
  const char* act = s.expert.activation == Activation::kGeluTanh ? "gelu_new"
                                                                  : ActivationName(s.expert.activation);
  c["torch_dtype"] = "bfloat16";
  c["model_type"] = f;
  if (f == "mixtral") {
    if (s.dense || !s.expert.gated || s.expert.has_bias || s.has_shared() ||
        s.router.scoring != ScoringFunc::kSoftmax || !s.router.renormalize ||
        s.router.n_group != 1 || s.router.capacity_factor != 0) {
      return unsupported("mixtral layers are gated, unbiased, softmax top-k renormalised");
    }
    c["architectures"] = {"MixtralForCausalLM"};
    c["num_hidden_layers"] = 1;
    c["hidden_size"] = s.d_model;
    c["intermediate_size"] = s.expert.d_ff;
    c["num_local_experts"] = s.router.num_experts;
    c["num_experts_per_tok"] = s.router.top_k;
    c["hidden_act"] = act;
    return c;
  }
  if (f == "qwen2_moe") {
    if (s.dense || !s.expert.gated || s.expert.has_bias ||
        s.router.scoring != ScoringFunc::kSoftmax || s.router.n_group != 1 ||
        (s.has_shared() && !s.shared_gate)) {
      return unsupported("qwen2_moe layers are gated softmax top-k with a gated shared expert");
    }
    c["architectures"] = {"Qwen2MoeForCausalLM"};
    c["num_hidden_layers"] = 1;
    c["hidden_size"] = s.d_model;
    c["intermediate_size"] = s.has_shared() ? s.shared.d_ff : s.expert.d_ff;
    c["moe_intermediate_size"] = s.expert.d_ff;
    c["shared_expert_intermediate_size"] = s.has_shared() ? s.shared.d_ff : 0;
    c["num_experts"] = s.router.num_experts;
    c["num_experts_per_tok"] = s.router.top_k;
    c["norm_topk_prob"] = s.router.renormalize;
    c["decoder_sparse_step"] = 1;
    c["mlp_only_layers"] = json::array();
    c["hidden_act"] = act;
    return c;
  }
  if (f == "qwen3_moe" || f == "olmoe") {
    if (s.dense || !s.expert.gated || s.expert.has_bias || s.has_shared() || s.gate_bias ||
        s.router.scoring != ScoringFunc::kSoftmax || s.router.n_group != 1) {
      return unsupported("qwen3_moe and olmoe layers are gated softmax top-k without a shared "
                         "expert");
    }
    c["num_hidden_layers"] = 1;
    c["hidden_size"] = s.d_model;
    c["num_experts"] = s.router.num_experts;
    c["num_experts_per_tok"] = s.router.top_k;
    c["norm_topk_prob"] = s.router.renormalize;
    c["hidden_act"] = act;
    if (f == "olmoe") {
      c["architectures"] = {"OlmoeForCausalLM"};
      c["intermediate_size"] = s.expert.d_ff;  // OLMoE: the expert size
    } else {
      c["architectures"] = {"Qwen3MoeForCausalLM"};
      c["intermediate_size"] = 3 * s.expert.d_ff;  // the dense MLP size (unused here)
      c["moe_intermediate_size"] = s.expert.d_ff;
      c["decoder_sparse_step"] = 1;
      c["mlp_only_layers"] = json::array();
    }
    return c;
  }
  if (f == "deepseek_v3") {
    if (s.dense || !s.expert.gated || s.expert.has_bias ||
        s.router.scoring != ScoringFunc::kSigmoid || !s.correction_bias ||
        s.router.group_score != GroupScore::kSumTop2 || s.shared_gate ||
        (s.has_shared() && s.shared.d_ff % s.expert.d_ff != 0)) {
      return unsupported("deepseek_v3 layers are sigmoid noaux_tc with ungated shared experts");
    }
    c["architectures"] = {"DeepseekV3ForCausalLM"};
    c["num_hidden_layers"] = 1;
    c["hidden_size"] = s.d_model;
    c["intermediate_size"] = s.has_shared() ? s.shared.d_ff : s.expert.d_ff;
    c["moe_intermediate_size"] = s.expert.d_ff;
    c["n_routed_experts"] = s.router.num_experts;
    c["n_shared_experts"] = s.has_shared() ? s.shared.d_ff / s.expert.d_ff : 0;
    c["num_experts_per_tok"] = s.router.top_k;
    c["n_group"] = s.router.n_group;
    c["topk_group"] = s.router.topk_group;
    c["norm_topk_prob"] = s.router.renormalize;
    c["routed_scaling_factor"] = s.router.routed_scaling_factor;
    c["scoring_func"] = "sigmoid";
    c["topk_method"] = "noaux_tc";
    c["first_k_dense_replace"] = 0;
    c["moe_layer_freq"] = 1;
    c["hidden_act"] = act;
    return c;
  }
  if (f == "llama" || f == "mistral" || f == "qwen2") {
    if (!s.dense || !s.expert.gated) return unsupported("a dense gated MLP is needed");
    c["architectures"] = {f == "llama" ? "LlamaForCausalLM" : f == "mistral" ? "MistralForCausalLM"
                                                                             : "Qwen2ForCausalLM"};
    c["num_hidden_layers"] = 1;
    c["hidden_size"] = s.d_model;
    c["intermediate_size"] = s.expert.d_ff;
    c["hidden_act"] = act;
    if (s.expert.has_bias) c["mlp_bias"] = true;
    return c;
  }
  if (f == "bert") {
    if (!s.dense || s.expert.gated || !s.expert.has_bias) {
      return unsupported("a dense plain MLP with biases is needed");
    }
    c["architectures"] = {"BertModel"};
    c["num_hidden_layers"] = 1;
    c["hidden_size"] = s.d_model;
    c["intermediate_size"] = s.expert.d_ff;
    c["hidden_act"] = act;
    return c;
  }
  if (f == "gpt2") {
    if (!s.dense || s.expert.gated || !s.expert.has_bias) {
      return unsupported("a dense plain MLP with biases is needed");
    }
    c["architectures"] = {"GPT2LMHeadModel"};
    c["n_layer"] = 1;
    c["n_embd"] = s.d_model;
    c["n_inner"] = s.expert.d_ff;
    c["activation_function"] = act;
    return c;
  }
  if (f == "switch_transformers") {
    if (s.dense || s.expert.gated || s.expert.has_bias || s.router.top_k != 1 ||
        s.router.scoring != ScoringFunc::kSoftmax || s.router.renormalize || s.has_shared()) {
      return unsupported("switch layers are plain top-1 softmax without renormalisation");
    }
    c["architectures"] = {"SwitchTransformersEncoderModel"};
    c["num_layers"] = 1;
    c["num_sparse_encoder_layers"] = 1;
    c["d_model"] = s.d_model;
    c["d_ff"] = s.expert.d_ff;
    c["num_experts"] = s.router.num_experts;
    c["router_bias"] = s.gate_bias;
    c["dense_act_fn"] = act;
    if (s.router.capacity_factor > 0) c["capacity_factor"] = s.router.capacity_factor;
    return c;
  }
  if (f == "gpt_oss") {
    if (s.dense || !s.expert.gated || !s.expert.has_bias || !(s.expert.swiglu_limit > 0) ||
        s.expert.activation != Activation::kSilu || s.router.scoring != ScoringFunc::kSoftmax ||
        !s.router.renormalize || !s.gate_bias || s.correction_bias || s.has_shared() ||
        s.router.n_group != 1 || s.router.capacity_factor != 0 ||
        s.router.routed_scaling_factor != 1.0f) {
      return unsupported("gpt_oss layers are clamped-SwiGLU experts with biases, a router with "
                         "a bias, softmax over the top k (ungrouped, unscaled, no capacity "
                         "factor) and no shared expert");
    }
    c["architectures"] = {"GptOssForCausalLM"};
    c["num_hidden_layers"] = 1;
    c["hidden_size"] = s.d_model;
    c["intermediate_size"] = s.expert.d_ff;
    c["num_local_experts"] = s.router.num_experts;
    c["num_experts_per_tok"] = s.router.top_k;
    c["experts_per_token"] = s.router.top_k;
    c["swiglu_limit"] = s.expert.swiglu_limit;
    c["hidden_act"] = act;
    c["quantization_config"] = {
        {"quant_method", "mxfp4"},
        {"modules_to_not_convert",
         {"model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens",
          "lm_head"}}};
    return c;
  }
  return unsupported("unknown family");
}

}  // namespace moe
