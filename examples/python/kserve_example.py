#!/usr/bin/env python3
"""A KServe v2 client for moe-serve in plain Python: gRPC with Debian's
python3-grpcio, REST with the standard library's http.client. No generated
code and no other package: the few protobuf messages it needs are encoded
and decoded by the small wire-format helpers below.

It reads the server's and the model's metadata over both protocols, sends
the same random tokens to ModelInfer over gRPC and over REST asking for the
layer's output and its routing (expert_ids, expert_weights), checks that
both protocols return the same bits, and sends its own routing (the
optional inputs expert_ids and expert_weights), as a pipeline that computes
the gate elsewhere does.

  python3 examples/python/kserve_example.py --grpc=localhost:8001 --http=localhost:8000
  python3 examples/python/kserve_example.py --tokens=4 --model=moe --seed=7

Exit status 0 when every check passes, 1 otherwise.
"""
import argparse
import http.client
import json
import random
import struct
import sys

import grpc

SERVICE = "/inference.GRPCInferenceService/"

# ---------------------------------------------------------------- protobuf
# Wire types: 0 varint, 2 length-delimited (strings, bytes, messages,
# packed repeated scalars).


def _varint(n):
    n &= (1 << 64) - 1  # negative int64 values are 10-byte varints
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number, wire_type):
    return _varint(number << 3 | wire_type)


def _bytes(number, data):
    return _field(number, 2) + _varint(len(data)) + data


def _string(number, text):
    return _bytes(number, text.encode())


def _packed_int64(number, values):
    return _bytes(number, b"".join(_varint(v) for v in values))


def _read_varint(data, i):
    """The varint starting at data[i]: (value, index after it)."""
    shift = result = 0
    while True:
        b = data[i]
        i += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return result, i


def _parse(data):
    """Yields (field number, wire type, value) of one message; a varint's
    value is an int, a length-delimited one's the bytes."""
    i = 0
    while i < len(data):
        key, i = _read_varint(data, i)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, i = _read_varint(data, i)
            yield number, wire_type, value
        elif wire_type == 2:
            n, i = _read_varint(data, i)
            yield number, wire_type, data[i:i + n]
            i += n
        elif wire_type == 1:
            yield number, wire_type, data[i:i + 8]
            i += 8
        elif wire_type == 5:
            yield number, wire_type, data[i:i + 4]
            i += 4
        else:
            raise ValueError("unsupported wire type %d" % wire_type)


def _signed(v):
    """An int64 read as an unsigned varint, back to its sign."""
    return v - (1 << 64) if v >> 63 else v


def _int64s(wire_type, value):
    """A repeated int64 field's values, packed or not."""
    if wire_type == 0:
        return [_signed(value)]
    i, out = 0, []
    while i < len(value):
        v, i = _read_varint(value, i)
        out.append(_signed(v))
    return out


def _tensor_metadata(data):
    """ModelMetadataResponse.TensorMetadata: name 1, datatype 2, shape 3."""
    t = {"name": "", "datatype": "", "shape": []}
    for number, wire_type, value in _parse(data):
        if number == 1:
            t["name"] = value.decode()
        elif number == 2:
            t["datatype"] = value.decode()
        elif number == 3:
            t["shape"] += _int64s(wire_type, value)
    return t


# ---------------------------------------------------------------- gRPC


class GrpcClient:
    """The KServe v2 gRPC calls this example uses, on one channel."""

    def __init__(self, address):
        self.channel = grpc.insecure_channel(address)

    def _call(self, method, request, timeout=30):
        rpc = self.channel.unary_unary(SERVICE + method)  # bytes in, bytes out
        return rpc(request, timeout=timeout)

    def server_ready(self):
        for number, _, value in _parse(self._call("ServerReady", b"")):
            if number == 1:
                return bool(value)
        return False

    def model_metadata(self, model):
        """ModelMetadataRequest: name 1. Response: name 1, versions 2,
        platform 3, inputs 4, outputs 5."""
        meta = {"name": "", "versions": [], "platform": "", "inputs": [], "outputs": []}
        for number, _, value in _parse(self._call("ModelMetadata", _string(1, model))):
            if number == 1:
                meta["name"] = value.decode()
            elif number == 2:
                meta["versions"].append(value.decode())
            elif number == 3:
                meta["platform"] = value.decode()
            elif number in (4, 5):
                meta["inputs" if number == 4 else "outputs"].append(_tensor_metadata(value))
        return meta

    def infer(self, model, tokens, d_model, outputs, routing=None):
        """ModelInferRequest: model_name 1, id 3, inputs 5 (name 1, datatype 2,
        shape 3), outputs 6 (name 1), raw_input_contents 7 (one per input, in
        order). `routing`: optional (expert_ids, expert_weights, k), the
        caller's own routing. Returns {output name: (datatype, shape, raw
        little-endian bytes)}."""
        rows = len(tokens) // d_model
        inputs = [("input", "FP32", [rows, d_model], struct.pack("<%df" % len(tokens), *tokens))]
        if routing is not None:
            ids, weights, k = routing
            inputs.append(("expert_ids", "INT32", [rows, k], struct.pack("<%di" % len(ids), *ids)))
            inputs.append(("expert_weights", "FP32", [rows, k],
                           struct.pack("<%df" % len(weights), *weights)))
        request = _string(1, model) + _string(3, "python-grpc")
        for name, datatype, shape, _ in inputs:
            request += _bytes(5, _string(1, name) + _string(2, datatype) + _packed_int64(3, shape))
        request += b"".join(_bytes(6, _string(1, name)) for name in outputs)
        request += b"".join(_bytes(7, raw) for _, _, _, raw in inputs)
        # Response: outputs 5 (name 1, datatype 2, shape 3), raw_output_contents 6,
        # in the same order.
        described, raw = [], []
        for number, _, value in _parse(self._call("ModelInfer", request)):
            if number == 5:
                described.append(_tensor_metadata(value))
            elif number == 6:
                raw.append(value)
        return {t["name"]: (t["datatype"], t["shape"], r) for t, r in zip(described, raw)}


# ---------------------------------------------------------------- REST


class RestClient:
    """KServe v2 REST with JSON tensors, on http.client."""

    def __init__(self, address):
        host, _, port = address.rpartition(":")
        self.host, self.port = host, int(port)

    def _request(self, method, path, body=None):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            data = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if data else {}
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            text = resp.read().decode()
            return resp.status, json.loads(text) if text else {}
        finally:
            conn.close()

    def ready(self):
        status, _ = self._request("GET", "/v2/health/ready")
        return status == 200

    def model_metadata(self, model):
        status, body = self._request("GET", "/v2/models/" + model)
        if status != 200:
            raise RuntimeError("REST metadata: HTTP %d %s" % (status, body))
        return body

    def model_config(self, model):
        status, body = self._request("GET", "/v2/models/%s/config" % model)
        if status != 200:
            raise RuntimeError("REST config: HTTP %d %s" % (status, body))
        return body

    def infer(self, model, tokens, d_model, outputs, routing=None):
        rows = len(tokens) // d_model
        body = {"id": "python-rest",
                "inputs": [{"name": "input", "datatype": "FP32",
                            "shape": [rows, d_model], "data": tokens}],
                "outputs": [{"name": name} for name in outputs]}
        if routing is not None:
            ids, weights, k = routing
            body["inputs"] += [
                {"name": "expert_ids", "datatype": "INT32", "shape": [rows, k], "data": ids},
                {"name": "expert_weights", "datatype": "FP32", "shape": [rows, k], "data": weights}]
        status, resp = self._request("POST", "/v2/models/%s/infer" % model, body)
        if status != 200:
            raise RuntimeError("REST infer: HTTP %d %s" % (status, resp))
        return {o["name"]: (o["datatype"], o["shape"], o["data"]) for o in resp["outputs"]}


# ---------------------------------------------------------------- checks


def as_raw(datatype, values):
    """JSON tensor data as the little-endian bytes gRPC carries."""
    fmt = {"FP32": "f", "INT32": "i"}[datatype]
    return struct.pack("<%d%s" % (len(values), fmt), *values)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--grpc", default="localhost:8001", help="gRPC address host:port")
    ap.add_argument("--http", default="localhost:8000", help="REST address host:port")
    ap.add_argument("--model", default="moe")
    ap.add_argument("--tokens", type=int, default=3, help="tokens per request")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    failures = []

    def check(ok, what):
        print(("ok    " if ok else "FAIL  ") + what)
        if not ok:
            failures.append(what)

    g, r = GrpcClient(args.grpc), RestClient(args.http)
    check(g.server_ready(), "gRPC ServerReady: ready")
    check(r.ready(), "REST GET /v2/health/ready: 200")

    gm, rm = g.model_metadata(args.model), r.model_metadata(args.model)
    inputs = {t["name"]: t for t in gm["inputs"]}
    d_model = inputs["input"]["shape"][-1]
    print("      model %s, platform %s, input %s %s, outputs %s" % (
        gm["name"], gm["platform"], inputs["input"]["datatype"], inputs["input"]["shape"],
        ", ".join("%s %s %s" % (t["name"], t["datatype"], t["shape"]) for t in gm["outputs"])))
    check(gm["name"] == rm["name"] == args.model, "metadata names the model on both protocols")
    check([(t["name"], t["datatype"], t["shape"]) for t in gm["inputs"]] ==
          [(t["name"], t["datatype"], t["shape"]) for t in rm["inputs"]],
          "gRPC and REST metadata describe the same inputs")

    rng = random.Random(args.seed)
    # Values exactly representable in float32, so JSON carries them exactly.
    tokens = [struct.unpack("<f", struct.pack("<f", rng.uniform(-1, 1)))[0]
              for _ in range(args.tokens * d_model)]
    wanted = ["output", "expert_ids", "expert_weights"]
    over_grpc = g.infer(args.model, tokens, d_model, wanted)
    over_rest = r.infer(args.model, tokens, d_model, wanted)
    for name in wanted:
        dt, shape, raw = over_grpc[name]
        rdt, rshape, data = over_rest[name]
        check(dt == rdt and shape == rshape, "%s: %s %s on both protocols" % (name, dt, shape))
        check(raw == as_raw(rdt, data), "%s: the same bits over gRPC and REST" % name)
    ids_dt, ids_shape, ids_raw = over_grpc["expert_ids"]
    ids = struct.unpack("<%di" % (len(ids_raw) // 4), ids_raw)
    weights = struct.unpack("<%df" % (len(over_grpc["expert_weights"][2]) // 4),
                            over_grpc["expert_weights"][2])
    k = ids_shape[1]
    for t in range(args.tokens):
        row = ids[t * k:(t + 1) * k]
        print("      token %d: experts %s, weights %s" % (
            t, list(row), ["%.4f" % w for w in weights[t * k:(t + 1) * k]]))
        check(len(set(row)) == k and all(i >= 0 for i in row),
              "token %d: %d distinct experts" % (t, k))
    out = struct.unpack("<%df" % (len(over_grpc["output"][2]) // 4), over_grpc["output"][2])
    check(len(out) == args.tokens * d_model and all(v == v for v in out),
          "output: %d finite rows of %d" % (args.tokens, d_model))

    # Caller-supplied routing (a gate computed elsewhere): the server's own
    # choice given back reproduces its answer bit for bit; another choice is
    # honoured, and gives the same bits over gRPC and REST.
    n_experts = int(r.model_config(args.model)["parameters"]["num_experts"]["string_value"])
    mine = (list(ids), list(weights), k)
    again = g.infer(args.model, tokens, d_model, ["output"], routing=mine)
    check(again["output"][2] == over_grpc["output"][2],
          "caller routing = the server's own choice: the same output bits")
    other_ids = [(i + 1) % n_experts for i in ids]  # a shift keeps them distinct
    other = (other_ids, [0.5] * len(other_ids), k)
    g_other = g.infer(args.model, tokens, d_model, ["output", "expert_ids"], routing=other)
    r_other = r.infer(args.model, tokens, d_model, ["output", "expert_ids"], routing=other)
    check(list(struct.unpack("<%di" % len(other_ids), g_other["expert_ids"][2])) == other_ids,
          "caller routing: the experts used are the caller's")
    check(g_other["output"][2] == as_raw("FP32", r_other["output"][2]),
          "caller routing: the same bits over gRPC and REST")
    check(g_other["output"][2] != over_grpc["output"][2],
          "caller routing: another choice gives another answer")

    # A malformed request is refused with INVALID_ARGUMENT naming the problem.
    try:
        g.infer(args.model, tokens[:-1], d_model, ["output"])
        check(False, "a ragged request is refused")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.INVALID_ARGUMENT,
              "a ragged request is refused: %s: %s" % (e.code().name, e.details()))

    print("%d check(s) failed" % len(failures) if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
