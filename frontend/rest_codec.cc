#include "frontend/rest_codec.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <nlohmann/json.hpp>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/dtype.h"
#include "common/status_macros.h"
#include "frontend/proto_json.h"

namespace moe {
namespace {

using nlohmann::json;

absl::Status Invalid(absl::string_view what) { return absl::InvalidArgumentError(what); }

// A JSON parameter value as an InferParameter; objects and arrays are not
// parameters.
absl::StatusOr<inference::InferParameter> ToParameter(const json& v, const std::string& where) {
  inference::InferParameter p;
  if (v.is_boolean()) {
    p.set_bool_param(v.get<bool>());
  } else if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u <= static_cast<uint64_t>(INT64_MAX)) {
      p.set_int64_param(static_cast<int64_t>(u));
    } else {
      p.set_uint64_param(u);
    }
  } else if (v.is_number_integer()) {
    p.set_int64_param(v.get<int64_t>());
  } else if (v.is_number_float()) {
    p.set_double_param(v.get<double>());
  } else if (v.is_string()) {
    p.set_string_param(v.get<std::string>());
  } else {
    return Invalid(absl::StrCat(where, ": a parameter must be a bool, number or string"));
  }
  return p;
}

absl::Status CopyParameters(const json& obj, const std::string& where,
                            google::protobuf::Map<std::string, inference::InferParameter>* out) {
  if (!obj.is_object()) return Invalid(absl::StrCat(where, ": expected an object"));
  for (const auto& [key, value] : obj.items()) {
    auto p = ToParameter(value, absl::StrCat(where, ".", key));
    if (!p.ok()) return p.status();
    (*out)[key] = *std::move(p);
  }
  return absl::OkStatus();
}

// Appends the numbers of `data` (nested arrays allowed, at most
// `max_depth` levels: the shape's rank), row-major.
absl::Status Flatten(const json& data, const std::string& where, size_t depth, size_t max_depth,
                     std::vector<double>* out) {
  if (data.is_array()) {
    if (depth >= max_depth) {
      return Invalid(
          absl::StrCat(where, ": nested deeper than the shape's rank (", max_depth, ")"));
    }
    for (const json& e : data) {
      absl::Status st = Flatten(e, where, depth + 1, max_depth, out);
      if (!st.ok()) return st;
    }
    return absl::OkStatus();
  }
  if (!data.is_number()) {
    return Invalid(absl::StrCat(where, ": element ", out->size(), " is ", data.type_name(),
                                ", expected a number"));
  }
  out->push_back(data.get<double>());
  return absl::OkStatus();
}

// How many leading bytes of `body` are the JSON header.
absl::StatusOr<size_t> JsonHeaderBytes(absl::string_view body,
                                       std::optional<int64_t> header_length) {
  if (!header_length.has_value()) return body.size();
  if (*header_length == 0) {
    return Invalid(absl::StrCat(kHeaderLengthHeader,
                                ": 0 (a request without a JSON header) "
                                "is not supported; send the JSON header first"));
  }
  if (*header_length < 0 || static_cast<size_t>(*header_length) > body.size()) {
    return Invalid(absl::StrCat(kHeaderLengthHeader, ": ", *header_length,
                                " is outside the body's ", body.size(), " bytes"));
  }
  return static_cast<size_t>(*header_length);
}

// The request's "id" and "parameters" (binary_data_output taken out).
absl::Status ParseRequestFields(json& doc, RestInferRequest* out) {
  inference::ModelInferRequest& req = out->request;
  if (doc.contains("id")) {
    if (!doc["id"].is_string()) return Invalid("id: expected a string");
    req.set_id(doc["id"].get<std::string>());
  }
  if (!doc.contains("parameters")) return absl::OkStatus();
  MOE_RETURN_IF_ERROR(CopyParameters(doc["parameters"], "parameters", req.mutable_parameters()));
  const auto& params = req.parameters();
  if (auto it = params.find("binary_data_output"); it != params.end()) {
    if (!it->second.has_bool_param()) {
      return Invalid("parameters.binary_data_output: expected a bool");
    }
    out->all_outputs_binary = it->second.bool_param();
    req.mutable_parameters()->erase("binary_data_output");
  }
  return absl::OkStatus();
}

// An input's name, datatype and shape into `t`; returns its element count
// (saturated at INT64_MAX instead of overflowing; the codec bounds it).
absl::StatusOr<int64_t> ParseInputHeader(const json& in, const std::string& where,
                                         inference::ModelInferRequest::InferInputTensor* t) {
  if (!in.is_object()) return Invalid(absl::StrCat(where, ": expected an object"));
  if (!in.contains("name") || !in["name"].is_string()) {
    return Invalid(absl::StrCat(where, ".name: expected a string"));
  }
  t->set_name(in["name"].get<std::string>());
  if (!in.contains("datatype") || !in["datatype"].is_string()) {
    return Invalid(absl::StrCat(where, ".datatype: expected a string"));
  }
  t->set_datatype(in["datatype"].get<std::string>());
  if (!in.contains("shape") || !in["shape"].is_array()) {
    return Invalid(absl::StrCat(where, ".shape: expected an array of integers"));
  }
  int64_t elements = 1;
  for (const json& d : in["shape"]) {
    if (!d.is_number_integer() || d.get<int64_t>() < 0) {
      return Invalid(absl::StrCat(where, ".shape: expected integers >= 0, got ", d.dump()));
    }
    const int64_t n = d.get<int64_t>();
    t->add_shape(n);
    elements = n > 0 && elements > INT64_MAX / n ? INT64_MAX : elements * n;
  }
  return elements;
}

// The input's parameters into `t`; returns binary_data_size (taken out)
// when given.
absl::StatusOr<std::optional<uint64_t>> ParseInputParameters(
    const json& in, const std::string& where, inference::ModelInferRequest::InferInputTensor* t) {
  if (!in.contains("parameters")) return std::nullopt;
  MOE_RETURN_IF_ERROR(
      CopyParameters(in["parameters"], where + ".parameters", t->mutable_parameters()));
  auto it = t->parameters().find("binary_data_size");
  if (it == t->parameters().end()) return std::nullopt;
  if (!it->second.has_int64_param() || it->second.int64_param() < 0) {
    return Invalid(
        absl::StrCat(where, ".parameters.binary_data_size: expected bytes, ", "an integer >= 0"));
  }
  const auto size = static_cast<uint64_t>(it->second.int64_param());
  t->mutable_parameters()->erase("binary_data_size");
  return size;
}

// The JSON "data" of an FP32, BF16 or INT32 input, as the raw bytes the
// binary extension would carry.
absl::Status EncodeJsonData(const json& data, const std::string& where, int64_t elements,
                            const inference::ModelInferRequest::InferInputTensor& t,
                            std::string* raw) {
  const bool bf16 = t.datatype() == "BF16";
  const bool int32 = t.datatype() == "INT32";  // expert_ids
  std::vector<double> values;
  // A flat array is depth 1; nested by the shape, up to the rank.
  MOE_RETURN_IF_ERROR(Flatten(data, where + ".data", 0,
                              std::max<size_t>(1, static_cast<size_t>(t.shape_size())), &values));
  if (static_cast<int64_t>(values.size()) != elements) {
    return Invalid(absl::StrCat(where, ".data: expected ", elements, " values for shape [",
                                absl::StrJoin(t.shape(), ", "), "], got ", values.size()));
  }
  raw->resize(values.size() * (bf16 ? 2 : 4));
  for (size_t j = 0; j < values.size(); ++j) {
    if (int32) {
      const double v = values[j];
      if (!(v >= INT32_MIN && v <= INT32_MAX) || v != std::floor(v)) {
        return Invalid(absl::StrCat(where, ".data[", j, "]: expected an INT32, got ", v));
      }
      const int32_t n = static_cast<int32_t>(v);
      std::memcpy(raw->data() + 4 * j, &n, 4);
      continue;
    }
    const float f = static_cast<float>(values[j]);
    if (bf16) {
      const uint16_t b = FloatToBf16(f);
      std::memcpy(raw->data() + 2 * j, &b, 2);
    } else {
      std::memcpy(raw->data() + 4 * j, &f, 4);
    }
  }
  return absl::OkStatus();
}

// inputs[i] into `req`: its raw contents come from its JSON "data" or from
// `binary` at *binary_used (advanced past them).
absl::Status ParseInput(const json& in, size_t i, absl::string_view binary, size_t* binary_used,
                        inference::ModelInferRequest* req) {
  const std::string where = absl::StrCat("inputs[", i, "]");
  auto* t = req->add_inputs();
  MOE_ASSIGN_OR_RETURN(const int64_t elements, ParseInputHeader(in, where, t));
  MOE_ASSIGN_OR_RETURN(const std::optional<uint64_t> binary_size,
                       ParseInputParameters(in, where, t));
  const bool has_data = in.contains("data");
  if (!binary_size.has_value() && !has_data) {
    return Invalid(absl::StrCat(where, ": no data (give \"data\", or binary_data_size with ",
                                kHeaderLengthHeader, ")"));
  }
  if (binary_size.has_value() && has_data) {
    return Invalid(absl::StrCat(where, ": both \"data\" and binary_data_size given; use one"));
  }
  const std::string& type = t->datatype();
  if (!binary_size.has_value() && type != "FP32" && type != "BF16" && type != "INT32") {
    return absl::OkStatus();  // the codec rejects the datatype
  }
  if (binary_size.has_value() && *binary_size > binary.size() - *binary_used) {
    return Invalid(absl::StrCat(where, ".parameters.binary_data_size: ", *binary_size,
                                " bytes, but only ", binary.size() - *binary_used,
                                " binary bytes remain after the JSON header"));
  }
  // Placed at this input's index; inputs without raw contents get an
  // empty entry, which the codec rejects as the wrong size.
  while (req->raw_input_contents_size() < static_cast<int>(i)) req->add_raw_input_contents();
  std::string* raw = req->add_raw_input_contents();
  if (!binary_size.has_value()) return EncodeJsonData(in["data"], where, elements, *t, raw);
  raw->assign(binary.data() + *binary_used, *binary_size);
  *binary_used += *binary_size;
  return absl::OkStatus();
}

// The requested outputs, their binary_data choices into out->output_binary.
absl::Status ParseOutputs(const json& outputs, RestInferRequest* out) {
  if (!outputs.is_array()) return Invalid("outputs: expected an array");
  for (size_t i = 0; i < outputs.size(); ++i) {
    const std::string where = absl::StrCat("outputs[", i, "]");
    const json& o = outputs[i];
    if (!o.is_object() || !o.contains("name") || !o["name"].is_string()) {
      return Invalid(absl::StrCat(where, ": expected an object with a string \"name\""));
    }
    auto* t = out->request.add_outputs();
    t->set_name(o["name"].get<std::string>());
    if (!o.contains("parameters")) continue;
    MOE_RETURN_IF_ERROR(
        CopyParameters(o["parameters"], where + ".parameters", t->mutable_parameters()));
    auto it = t->parameters().find("binary_data");
    if (it != t->parameters().end()) {
      if (!it->second.has_bool_param()) {
        return Invalid(absl::StrCat(where, ".parameters.binary_data: expected a bool"));
      }
      out->output_binary[t->name()] = it->second.bool_param();
      t->mutable_parameters()->erase("binary_data");
    }
    for (const char* unsupported : {"classification", "shared_memory_region"}) {
      if (t->parameters().count(unsupported) > 0) {
        return Invalid(
            absl::StrCat(where, ".parameters.", unsupported, ": not supported by this server"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<RestInferRequest> ParseRestInferRequest(absl::string_view body,
                                                       std::optional<int64_t> header_length,
                                                       const std::string& model,
                                                       const std::string& version) {
  RestInferRequest out;
  inference::ModelInferRequest& req = out.request;
  req.set_model_name(model);
  req.set_model_version(version);
  MOE_ASSIGN_OR_RETURN(const size_t json_bytes, JsonHeaderBytes(body, header_length));
  json doc = json::parse(body.substr(0, json_bytes), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return Invalid("request body: not valid JSON");
  if (!doc.is_object()) return Invalid("request body: expected a JSON object");
  MOE_RETURN_IF_ERROR(ParseRequestFields(doc, &out));
  if (!doc.contains("inputs") || !doc["inputs"].is_array()) {
    return Invalid("inputs: expected an array of input tensors");
  }
  const absl::string_view binary = body.substr(json_bytes);
  size_t binary_used = 0;
  const json& inputs = doc["inputs"];
  for (size_t i = 0; i < inputs.size(); ++i) {
    MOE_RETURN_IF_ERROR(ParseInput(inputs[i], i, binary, &binary_used, &req));
  }
  // One raw entry per input once any input has one, so that the codec
  // reports an input's own problem (say, an unsupported datatype) rather
  // than a count of raw entries the client never sent.
  if (req.raw_input_contents_size() > 0) {
    while (req.raw_input_contents_size() < req.inputs_size()) req.add_raw_input_contents();
  }
  if (binary_used != binary.size()) {
    return Invalid(absl::StrCat("request body: ", binary.size() - binary_used,
                                " binary bytes after the JSON header that no input claims"));
  }
  if (doc.contains("outputs")) MOE_RETURN_IF_ERROR(ParseOutputs(doc["outputs"], &out));
  return out;
}

RestBody EncodeRestInferResponse(const inference::ModelInferResponse& response,
                                 const RestInferRequest& request) {
  json doc = json::object();
  doc["model_name"] = response.model_name();
  doc["model_version"] = response.model_version();
  doc["id"] = response.id();
  if (response.parameters_size() > 0) {
    json params = json::object();
    for (const auto& [k, v] : response.parameters()) params[k] = ProtoToJson(v);
    doc["parameters"] = std::move(params);
  }
  std::string binary;
  json outputs = json::array();
  for (int i = 0; i < response.outputs_size(); ++i) {
    const auto& o = response.outputs(i);
    const std::string& raw = response.raw_output_contents(i);
    json t = json::object();
    t["name"] = o.name();
    t["datatype"] = o.datatype();
    t["shape"] = json(std::vector<int64_t>(o.shape().begin(), o.shape().end()));
    if (request.Binary(o.name())) {
      t["parameters"] = {{"binary_data_size", raw.size()}};
      binary += raw;
    } else {
      json data = json::array();
      if (o.datatype() == "INT32") {
        for (size_t j = 0; j + 4 <= raw.size(); j += 4) {
          int32_t v;
          std::memcpy(&v, raw.data() + j, 4);
          data.push_back(v);
        }
      } else if (o.datatype() == "BF16") {
        std::vector<float> f(raw.size() / 2);
        ConvertToFloat(DType::kBF16, raw.data(), static_cast<int64_t>(f.size()), f.data());
        for (float v : f) data.push_back(v);
      } else {  // FP32
        for (size_t j = 0; j + 4 <= raw.size(); j += 4) {
          float v;
          std::memcpy(&v, raw.data() + j, 4);
          data.push_back(v);
        }
      }
      t["data"] = std::move(data);
    }
    outputs.push_back(std::move(t));
  }
  doc["outputs"] = std::move(outputs);
  RestBody out;
  out.body = doc.dump(-1, ' ', false, json::error_handler_t::replace);
  bool any_binary = false;
  for (const auto& o : response.outputs()) any_binary = any_binary || request.Binary(o.name());
  if (!any_binary) {
    out.content_type = "application/json";
  } else {
    out.header_length = static_cast<int64_t>(out.body.size());
    out.body += binary;
    out.content_type = "application/octet-stream";
  }
  return out;
}

}  // namespace moe
