#include "server/request_codec.h"

#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/dtype.h"
#include "common/vector_kernels.h"
#include "server/model_descriptors.h"

namespace moe {
namespace {

absl::Status Invalid(absl::string_view what) { return absl::InvalidArgumentError(what); }

}  // namespace

absl::StatusOr<DecodedRequest> DecodeInferRequest(const inference::ModelInferRequest& req,
                                                  const ModelIo& io) {
  absl::Status model = CheckModel(io, req.model_name(), req.model_version());
  if (!model.ok()) return model;
  DecodedRequest out;
  out.id = req.id();
  if (req.inputs_size() != 1) {
    return Invalid(absl::StrCat("inputs: expected exactly 1 input tensor '", kInputName,
                                "', got ", req.inputs_size()));
  }
  const auto& in = req.inputs(0);
  if (in.name() != kInputName) {
    return Invalid(absl::StrCat("inputs[0].name: expected '", kInputName, "', got '", in.name(),
                                "'"));
  }
  if (in.datatype() == "FP32") {
    out.dtype = WireDType::kFp32;
  } else if (in.datatype() == "BF16") {
    out.dtype = WireDType::kBf16;
  } else {
    return Invalid(absl::StrCat("inputs[0].datatype: expected FP32 or BF16, got '",
                                in.datatype(), "'"));
  }
  if (in.shape_size() != 2) {
    return Invalid(absl::StrCat("inputs[0].shape: expected rank 2 [T, ", io.d_model,
                                "], got rank ", in.shape_size(), " [",
                                absl::StrJoin(in.shape(), ", "), "]"));
  }
  const int64_t t = in.shape(0);
  if (in.shape(1) != io.d_model) {
    return Invalid(absl::StrCat("inputs[0].shape[1] (d_model): expected ", io.d_model, ", got ",
                                in.shape(1)));
  }
  if (t < 1 || t > io.max_request_tokens) {
    return Invalid(absl::StrCat("inputs[0].shape[0] (tokens): expected 1..",
                                io.max_request_tokens, ", got ", t));
  }
  const int64_t count = t * io.d_model;
  const int64_t elem = out.dtype == WireDType::kFp32 ? 4 : 2;
  const bool has_typed = in.has_contents();
  if (req.raw_input_contents_size() > 1) {
    return Invalid(absl::StrCat("raw_input_contents: expected at most 1 entry (one input), got ",
                                req.raw_input_contents_size()));
  }
  const bool has_raw = req.raw_input_contents_size() == 1;
  if (has_raw && has_typed) {
    return Invalid("inputs[0]: data given both in raw_input_contents and in contents; use one");
  }
  out.tokens.resize(static_cast<size_t>(count));
  if (has_raw) {
    const std::string& raw = req.raw_input_contents(0);
    if (static_cast<int64_t>(raw.size()) != count * elem) {
      return Invalid(absl::StrCat("raw_input_contents[0]: expected ", count * elem, " bytes (",
                                  t, " x ", io.d_model, " ", in.datatype(), "), got ",
                                  raw.size()));
    }
    if (out.dtype == WireDType::kFp32) {
      std::memcpy(out.tokens.data(), raw.data(), raw.size());
    } else {
      ConvertToFloat(DType::kBF16, raw.data(), count, out.tokens.data());
    }
  } else if (has_typed) {
    if (out.dtype != WireDType::kFp32) {
      return Invalid("inputs[0].contents: BF16 data has no typed field; send it in "
                     "raw_input_contents");
    }
    const auto& c = in.contents();
    if (c.bool_contents_size() + c.int_contents_size() + c.int64_contents_size() +
            c.uint_contents_size() + c.uint64_contents_size() + c.fp64_contents_size() +
            c.bytes_contents_size() >
        0) {
      return Invalid("inputs[0].contents: only fp32_contents may be set for FP32 data");
    }
    if (c.fp32_contents_size() != count) {
      return Invalid(absl::StrCat("inputs[0].contents.fp32_contents: expected ", count,
                                  " values (", t, " x ", io.d_model, "), got ",
                                  c.fp32_contents_size()));
    }
    std::memcpy(out.tokens.data(), c.fp32_contents().data(), static_cast<size_t>(count) * 4);
  } else {
    return Invalid("inputs[0]: no data (set raw_input_contents or contents.fp32_contents)");
  }
  if (!io.allow_non_finite) {
    for (int64_t i = 0; i < count; ++i) {
      if (!std::isfinite(out.tokens[static_cast<size_t>(i)])) {
        return Invalid(absl::StrCat("inputs[0]: non-finite value ", out.tokens[static_cast<size_t>(i)],
                                    " at [", i / io.d_model, ", ", i % io.d_model,
                                    "] (the server runs without --allow_non_finite)"));
      }
    }
  }
  out.num_tokens = t;
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
  return out;
}

std::shared_ptr<InferTask> MakeInferTask(DecodedRequest& decoded, absl::Time deadline) {
  auto task = std::make_shared<InferTask>();
  task->tokens = std::move(decoded.tokens);
  task->num_tokens = decoded.num_tokens;
  task->deadline = deadline;
  task->want_routing = decoded.want_routing;
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
        FloatsToBf16(task.output.data(), static_cast<int64_t>(n), dst);
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
