#include "frontend/request_codec.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/dtype.h"
#include "common/status_macros.h"
#include "common/vector_kernels.h"
#include "frontend/model_descriptors.h"
#include "router/given_routing.h"

namespace moe {
namespace {

absl::Status Invalid(absl::string_view what) { return absl::InvalidArgumentError(what); }

// The raw payload of inputs[index], or null when the request uses typed
// contents. `raw_used`: the request carries raw_input_contents at all
// (then every input must have its entry, by position).
const std::string* RawOf(const inference::ModelInferRequest& req, int index) {
  return req.raw_input_contents_size() > 0 ? &req.raw_input_contents(index) : nullptr;
}

// inputs[index] "input": the tokens, [T, d_model] FP32 or BF16.
absl::Status DecodeTokens(const inference::ModelInferRequest& req, int index, const ModelIo& io,
                          DecodedRequest* out) {
  const auto& in = req.inputs(index);
  const std::string at = absl::StrCat("inputs[", index, "]");
  if (in.datatype() == "FP32") {
    out->dtype = WireDType::kFp32;
  } else if (in.datatype() == "BF16") {
    out->dtype = WireDType::kBf16;
  } else {
    return Invalid(absl::StrCat(at, ".datatype: expected FP32 or BF16, got '", in.datatype(), "'"));
  }
  if (in.shape_size() != 2) {
    return Invalid(absl::StrCat(at, ".shape: expected rank 2 [T, ", io.d_model, "], got rank ",
                                in.shape_size(), " [", absl::StrJoin(in.shape(), ", "), "]"));
  }
  const int64_t t = in.shape(0);
  if (in.shape(1) != io.d_model) {
    return Invalid(
        absl::StrCat(at, ".shape[1] (d_model): expected ", io.d_model, ", got ", in.shape(1)));
  }
  if (t < 1 || t > io.limits.max_request_tokens) {
    return Invalid(absl::StrCat(at, ".shape[0] (tokens): expected 1..",
                                io.limits.max_request_tokens, ", got ", t));
  }
  const int64_t count = t * io.d_model;
  const int64_t elem = out->dtype == WireDType::kFp32 ? 4 : 2;
  const std::string* raw = RawOf(req, index);
  if (raw != nullptr && in.has_contents()) {
    return Invalid(absl::StrCat(at,
                                ": data given both in raw_input_contents and in contents; "
                                "use one"));
  }
  out->tokens.resize(static_cast<size_t>(count));
  if (raw != nullptr) {
    if (static_cast<int64_t>(raw->size()) != count * elem) {
      return Invalid(absl::StrCat("raw_input_contents[", index, "]: expected ", count * elem,
                                  " bytes (", t, " x ", io.d_model, " ", in.datatype(), "), got ",
                                  raw->size()));
    }
    if (out->dtype == WireDType::kFp32) {
      std::memcpy(out->tokens.data(), raw->data(), raw->size());
    } else {
      ConvertToFloat(DType::kBF16, raw->data(), count, out->tokens.data());
    }
  } else if (in.has_contents()) {
    if (out->dtype != WireDType::kFp32) {
      return Invalid(absl::StrCat(at,
                                  ".contents: BF16 data has no typed field; send it in "
                                  "raw_input_contents"));
    }
    const auto& c = in.contents();
    if (c.bool_contents_size() + c.int_contents_size() + c.int64_contents_size() +
            c.uint_contents_size() + c.uint64_contents_size() + c.fp64_contents_size() +
            c.bytes_contents_size() >
        0) {
      return Invalid(absl::StrCat(at, ".contents: only fp32_contents may be set for FP32 data"));
    }
    if (c.fp32_contents_size() != count) {
      return Invalid(absl::StrCat(at, ".contents.fp32_contents: expected ", count, " values (", t,
                                  " x ", io.d_model, "), got ", c.fp32_contents_size()));
    }
    std::memcpy(out->tokens.data(), c.fp32_contents().data(), static_cast<size_t>(count) * 4);
  } else {
    return Invalid(
        absl::StrCat(at, ": no data (set raw_input_contents or contents.fp32_contents)"));
  }
  if (!io.limits.allow_non_finite) {
    for (int64_t i = 0; i < count; ++i) {
      if (!std::isfinite(out->tokens[static_cast<size_t>(i)])) {
        return Invalid(absl::StrCat(at, ": non-finite value ", out->tokens[static_cast<size_t>(i)],
                                    " at [", i / io.d_model, ", ", i % io.d_model,
                                    "] (the server runs without --allow_non_finite)"));
      }
    }
  }
  out->num_tokens = t;
  return absl::OkStatus();
}

// inputs[index] "expert_ids" (INT32) or "expert_weights" (FP32), [T, k],
// into `values` (int32_t or float): 4-byte little-endian raw data, or the
// typed field (int_contents / fp32_contents).
template <typename T>
absl::Status DecodeRoutingInput(const inference::ModelInferRequest& req, int index,
                                const char* datatype, int64_t tokens, int k,
                                std::vector<T>* values) {
  const auto& in = req.inputs(index);
  const std::string at = absl::StrCat("inputs[", index, "] (", in.name(), ")");
  if (in.datatype() != datatype) {
    return Invalid(
        absl::StrCat(at, ".datatype: expected ", datatype, ", got '", in.datatype(), "'"));
  }
  if (in.shape_size() != 2 || in.shape(0) != tokens || in.shape(1) != k) {
    return Invalid(absl::StrCat(at, ".shape: expected [", tokens, ", ", k,
                                "] (the input's tokens x top-k), got [",
                                absl::StrJoin(in.shape(), ", "), "]"));
  }
  const size_t count = static_cast<size_t>(tokens * k);
  values->resize(count);
  const std::string* raw = RawOf(req, index);
  if (raw != nullptr && in.has_contents()) {
    return Invalid(absl::StrCat(at,
                                ": data given both in raw_input_contents and in contents; "
                                "use one"));
  }
  if (raw != nullptr) {
    if (raw->size() != count * 4) {
      return Invalid(absl::StrCat("raw_input_contents[", index, "] (", in.name(), "): expected ",
                                  count * 4, " bytes (", tokens, " x ", k, " ", datatype, "), got ",
                                  raw->size()));
    }
    std::memcpy(values->data(), raw->data(), raw->size());
    return absl::OkStatus();
  }
  const auto& c = in.contents();
  const int others = c.bool_contents_size() + c.int64_contents_size() + c.uint_contents_size() +
                     c.uint64_contents_size() + c.fp64_contents_size() + c.bytes_contents_size() +
                     (std::is_same_v<T, int32_t> ? c.fp32_contents_size() : c.int_contents_size());
  if (others > 0) {
    return Invalid(absl::StrCat(at, ".contents: only ",
                                std::is_same_v<T, int32_t> ? "int_contents" : "fp32_contents",
                                " may be set for ", datatype, " data"));
  }
  const int typed = std::is_same_v<T, int32_t> ? c.int_contents_size() : c.fp32_contents_size();
  if (static_cast<size_t>(typed) != count) {
    return Invalid(absl::StrCat(
        at, ".contents.", std::is_same_v<T, int32_t> ? "int_contents" : "fp32_contents",
        ": expected ", count, " values (", tokens, " x ", k, "), got ", typed));
  }
  if constexpr (std::is_same_v<T, int32_t>) {
    std::copy(c.int_contents().begin(), c.int_contents().end(), values->begin());
  } else {
    std::copy(c.fp32_contents().begin(), c.fp32_contents().end(), values->begin());
  }
  return absl::OkStatus();
}

// The request's inputs by name: "input" and, together or not at all, the
// routing inputs. Returns their positions (-1: absent).
struct InputPositions {
  int tokens = -1, ids = -1, weights = -1;
};

absl::StatusOr<InputPositions> FindInputs(const inference::ModelInferRequest& req,
                                          const ModelIo& io) {
  const int n = req.inputs_size();
  if (n != 1 && n != 3) {
    return Invalid(absl::StrCat("inputs: expected exactly 1 input tensor '", kInputName,
                                "', or 3 with the routing inputs '", kExpertIdsName, "' and '",
                                kExpertWeightsName, "'; got ", n));
  }
  InputPositions pos;
  for (int i = 0; i < n; ++i) {
    const std::string& name = req.inputs(i).name();
    int* slot = name == kInputName           ? &pos.tokens
                : name == kExpertIdsName     ? &pos.ids
                : name == kExpertWeightsName ? &pos.weights
                                             : nullptr;
    if (n == 1 && slot != &pos.tokens) {
      return Invalid(absl::StrCat("inputs[0].name: expected '", kInputName, "', got '", name, "'"));
    }
    if (slot == nullptr) {
      return Invalid(absl::StrCat("inputs[", i, "].name: expected '", kInputName, "', '",
                                  kExpertIdsName, "' or '", kExpertWeightsName, "', got '", name,
                                  "'"));
    }
    if (*slot >= 0) {
      return Invalid(absl::StrCat("inputs[", i, "].name: '", name, "' given twice"));
    }
    *slot = i;
  }
  if (pos.tokens < 0) {
    return Invalid(absl::StrCat("inputs: no input named '", kInputName, "'"));
  }
  if (n == 3 && io.num_experts <= 1) {
    return Invalid(absl::StrCat("inputs: '", kExpertIdsName, "' and '", kExpertWeightsName,
                                "' route a mixture of experts; this model is a dense FFN"));
  }
  const int raw = req.raw_input_contents_size();
  if (raw > 0 && raw != n) {
    return Invalid(n == 1 ? absl::StrCat("raw_input_contents: expected at most 1 entry (one "
                                         "per input), got ",
                                         raw)
                          : absl::StrCat("raw_input_contents: expected ", n,
                                         " entries (one per input, in order) or none, got ", raw));
  }
  return pos;
}

}  // namespace

absl::StatusOr<DecodedRequest> DecodeInferRequest(const inference::ModelInferRequest& req,
                                                  const ModelIo& io) {
  absl::Status model = CheckModel(io, req.model_name(), req.model_version());
  if (!model.ok()) return model;
  DecodedRequest out;
  out.id = req.id();
  auto pos = FindInputs(req, io);
  if (!pos.ok()) return pos.status();
  MOE_RETURN_IF_ERROR(DecodeTokens(req, pos->tokens, io, &out));
  if (pos->ids >= 0) {
    MOE_RETURN_IF_ERROR(
        DecodeRoutingInput(req, pos->ids, "INT32", out.num_tokens, io.top_k, &out.given_ids));
    MOE_RETURN_IF_ERROR(DecodeRoutingInput(req, pos->weights, "FP32", out.num_tokens, io.top_k,
                                           &out.given_weights));
    MOE_RETURN_IF_ERROR(ValidateGivenRouting(out.given_ids.data(), out.given_weights.data(),
                                             out.num_tokens, io.top_k, io.num_experts));
  }
  for (const auto& o : req.outputs()) {
    const std::string& name = o.name();
    if (name != kOutputName && name != kExpertIdsName && name != kExpertWeightsName) {
      return Invalid(absl::StrCat("outputs: unknown output '", name, "' (outputs: ", kOutputName,
                                  ", ", kExpertIdsName, ", ", kExpertWeightsName, ")"));
    }
    for (const auto& seen : out.outputs) {
      if (seen == name) return Invalid(absl::StrCat("outputs: '", name, "' requested twice"));
    }
    out.outputs.push_back(name);
    if (name != kOutputName) out.want_routing = true;
  }
  if (out.outputs.empty()) {
    // No outputs named: every output the model produces (the spec's rule).
    out.outputs = {kOutputName, kExpertIdsName, kExpertWeightsName};
    out.want_routing = true;
  }
  // Triton's "timeout" request parameter, microseconds; 0: none.
  if (auto it = req.parameters().find("timeout"); it != req.parameters().end()) {
    if (!it->second.has_int64_param() || it->second.int64_param() < 0) {
      return Invalid("parameters.timeout: expected microseconds, an int64 >= 0");
    }
    if (it->second.int64_param() > 0) out.timeout = absl::Microseconds(it->second.int64_param());
  }
  // "shared_experts": false leaves the layer's shared experts out (a hybrid
  // pipeline that runs them itself); default true.
  if (auto it = req.parameters().find("shared_experts"); it != req.parameters().end()) {
    if (!it->second.has_bool_param()) {
      return Invalid("parameters.shared_experts: expected a bool");
    }
    out.skip_shared = !it->second.bool_param();
  }
  return out;
}

std::shared_ptr<InferTask> MakeInferTask(DecodedRequest& decoded, absl::Time deadline) {
  auto task = std::make_shared<InferTask>();
  task->tokens = std::move(decoded.tokens);
  task->num_tokens = decoded.num_tokens;
  task->deadline = deadline;
  task->want_routing = decoded.want_routing;
  task->given_ids = std::move(decoded.given_ids);
  task->given_weights = std::move(decoded.given_weights);
  task->skip_shared = decoded.skip_shared;
  return task;
}

void EncodeInferResponse(const DecodedRequest& req, const InferTask& task, const ModelIo& io,
                         inference::ModelInferResponse* resp) {
  resp->set_model_name(io.model_name);
  resp->set_model_version(kModelVersion);
  resp->set_id(req.id);
  const int64_t t = req.num_tokens;
  for (const std::string& name : req.outputs) {
    auto* o = resp->add_outputs();
    o->set_name(name);
    std::string* raw = resp->add_raw_output_contents();
    if (name == kOutputName) {
      o->add_shape(t);
      o->add_shape(io.d_model);
      const size_t n = static_cast<size_t>(t * io.d_model);
      if (req.dtype == WireDType::kFp32) {
        o->set_datatype("FP32");
        raw->assign(reinterpret_cast<const char*>(task.output.data()), n * 4);
      } else {
        o->set_datatype("BF16");
        raw->resize(n * 2);
        auto* dst = reinterpret_cast<uint16_t*>(raw->data());
        FloatToBf16Array(task.output.data(), static_cast<int64_t>(n), dst);
      }
    } else if (name == kExpertIdsName) {
      o->set_datatype("INT32");
      o->add_shape(t);
      o->add_shape(io.top_k);
      raw->assign(reinterpret_cast<const char*>(task.expert_ids.data()),
                  task.expert_ids.size() * 4);
    } else {
      o->set_datatype("FP32");
      o->add_shape(t);
      o->add_shape(io.top_k);
      raw->assign(reinterpret_cast<const char*>(task.expert_weights.data()),
                  task.expert_weights.size() * 4);
    }
  }
}

}  // namespace moe
