#!/usr/bin/env bash
# Runs examples/python/kserve_example.py (gRPC with python3-grpcio, REST with
# the standard library) against a live moe_server on free ports.
# Usage: tests/python_example_test.sh MOE_SERVER_BINARY
set -euo pipefail
server_bin="$1"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Debian's interpreter, the one python3-grpcio is installed for (a python3
# from pyenv or a venv earlier on the PATH would not see it).
py=/usr/bin/python3
[ -x "$py" ] || py=python3
"$py" -c 'import grpc' 2>/dev/null || {
  echo "python3-grpcio is missing: apt-get install -y python3-grpcio (scripts/install_deps.sh)" >&2
  exit 1
}
log="$(mktemp)"
"$server_bin" --preset=demo --grpc_port=0 --http_port=0 --metrics_port=-1 --host=127.0.0.1 \
  >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 240); do
  grep -q "listening: gRPC" "$log" && break
  kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.25
done
grpc_port=$(sed -n 's/.*listening: gRPC [^ ]*:\([0-9]*\),.*/\1/p' "$log")
http_port=$(sed -n 's/.*REST http:\/\/[^ ]*:\([0-9]*\)\/v2.*/\1/p' "$log")
[ -n "$grpc_port" ] && [ -n "$http_port" ] || { cat "$log" >&2; exit 1; }
"$py" "$root/examples/python/kserve_example.py" --grpc="127.0.0.1:$grpc_port" \
  --http="127.0.0.1:$http_port" --tokens=5 --seed=3
