// Protocol messages as the JSON of the KServe v2 / Triton REST API. One
// generic conversion through protobuf reflection, with Triton's REST
// conventions (which differ from protobuf's canonical JSON mapping):
// proto field names as keys; 64-bit integers as JSON numbers (not strings);
// enums by name; every scalar and repeated field printed, defaults
// included; a message field only when set; of a oneof only the member
// that is set; maps as objects; and an inference.InferParameter as the
// plain JSON value it holds.
//
// Thread-safety: pure functions.
#ifndef MOE_FRONTEND_PROTO_JSON_H_
#define MOE_FRONTEND_PROTO_JSON_H_

#include <nlohmann/json.hpp>

namespace google::protobuf {
class Message;
}

namespace moe {

nlohmann::json ProtoToJson(const google::protobuf::Message& message);

}  // namespace moe

#endif  // MOE_FRONTEND_PROTO_JSON_H_
