#!/usr/bin/env bash
# Overload test (ctest label `overload`): the real moe_server binary under
# open-loop load at 3x its measured capacity for 60 s, then 0.5x for 30 s.
#
# Passes when
#   - the server never dies, and exits 0 (drained) on SIGTERM at the end;
#   - its peak resident memory (VmHWM) stays under MOE_OVERLOAD_RSS_MB: the
#     the demo layer takes about 310 MiB at rest; under overload the peak
#     measured 645-871 MiB (not profiled yet: 64 KiB requests at ~2,000/s,
#     and freed memory kept in the process for reuse, are the likely cause);
#   - during the overload every failed request failed with UNAVAILABLE
#     (queue full) before its 5 s deadline (no hang, no deadline expiry);
#   - accepted requests' p99 latency stays under MOE_OVERLOAD_P99_MS;
#   - at 0.5x afterwards there are no errors at all and p99 is under the
#     same bound.
# The figures are printed as a table; MOE_OVERLOAD_JSON=FILE also writes
# them as JSON.
#
# Usage: tests/overload_test.sh BUILD_DIR
# Env:   MOE_OVERLOAD_S (60), MOE_RECOVERY_S (30), MOE_OVERLOAD_FACTOR (3),
#        MOE_OVERLOAD_RSS_MB (1536), MOE_OVERLOAD_P99_MS (2500)
# The load generator runs on the same machine and takes its share of the
# CPU (on 2 cores: sending 3x capacity and taking the rejections costs
# about a core), so latencies here include its scheduling delays; they are
# measured from each request's intended send time.
set -euo pipefail

bin_dir="$(cd "${1:?usage: overload_test.sh BUILD_DIR}" && pwd)"
server="$bin_dir/server/moe_server"
loadgen="$bin_dir/client/moe_loadgen"
overload_s="${MOE_OVERLOAD_S:-60}"
recovery_s="${MOE_RECOVERY_S:-30}"
factor="${MOE_OVERLOAD_FACTOR:-3}"
rss_bound_mb="${MOE_OVERLOAD_RSS_MB:-1536}"
p99_bound_ms="${MOE_OVERLOAD_P99_MS:-2500}"
deadline_ms=5000
tokens=16
work="$(mktemp -d)"
pid=""

fail() { echo "FAIL: $*" >&2; exit 1; }
cleanup() {
  local rc=$?
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
  fi
  [ $rc -ne 0 ] && tail -20 "$work/server.log" >&2
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT

# The queue holds about 0.15 s of work at capacity (set below once capacity
# is known): a request it admits is answered well within its deadline; the
# rest are refused at once with UNAVAILABLE.
start_server() {
  "$server" --preset=demo --grpc_port=0 --http_port=-1 --metrics_port=-1 --max_batch_tokens=256 \
    --max_queue_tokens="$1" --max_request_tokens=256 >"$work/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 240); do
    grep -q "listening: gRPC" "$work/server.log" && break
    kill -0 "$pid" 2>/dev/null || fail "the server died at start-up"
    sleep 0.25
  done
  port=$(sed -n 's/.*listening: gRPC [^ ]*:\([0-9]*\).*/\1/p' "$work/server.log" | head -1)
  [ -n "$port" ] || fail "no port in the server log"
}

rss_mb() { awk '/^VmHWM/ {printf "%d", $2 / 1024}' "/proc/$pid/status"; }
cur_rss_mb() { awk '/^VmRSS/ {printf "%d", $2 / 1024}' "/proc/$pid/status"; }

# field FILE EXPR: a Python expression over the loadgen JSON report `r`.
field() {
  python3 - "$1" "$2" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["runs"][0]
v = eval(sys.argv[2])
print(round(v, 3) if isinstance(v, float) else v)
PY
}

lg() {  # lg JSON_OUT FLAGS...: one loadgen run against the server
  local out="$1"; shift
  "$loadgen" --address="127.0.0.1:$port" --tokens=$tokens --deadline_ms=$deadline_ms --progress=false \
    --json="$out" "$@" >/dev/null
}

# 1. Capacity: closed loop, enough requests in flight to fill batches.
start_server 65536
lg "$work/capacity.json" --concurrency=32 --duration_s=8 --warmup_s=2
capacity=$(field "$work/capacity.json" 'r["throughput_rps"]')
kill -TERM "$pid"; wait "$pid" || fail "the server did not exit 0 after the capacity run"
pid=""
queue_tokens=$(python3 -c "print(max(256, int($capacity * $tokens * 0.15)))")
overload_rate=$(python3 -c "print(round($capacity * $factor, 1))")
recovery_rate=$(python3 -c "print(round($capacity * 0.5, 1))")
echo "capacity: $capacity req/s of $tokens tokens (closed loop, 32 in flight); queue bound $queue_tokens tokens"

# 2. Overload, then recovery, on a fresh server.
start_server "$queue_tokens"
lg "$work/warm.json" --concurrency=8 --duration_s=2 --warmup_s=0
rss_before=$(cur_rss_mb)
echo "overload: ${overload_rate} req/s (${factor}x) for ${overload_s} s"
lg "$work/overload.json" --rate="$overload_rate" --duration_s="$overload_s" --warmup_s=0
kill -0 "$pid" 2>/dev/null || fail "the server died under overload"
rss_overload=$(rss_mb)
echo "recovery: ${recovery_rate} req/s (0.5x) for ${recovery_s} s"
lg "$work/recovery.json" --rate="$recovery_rate" --duration_s="$recovery_s" --warmup_s=0
kill -0 "$pid" 2>/dev/null || fail "the server died during recovery"
rss_peak=$(rss_mb)
kill -TERM "$pid"
wait "$pid" || fail "the server did not exit 0 on SIGTERM after the test"
pid=""
grep -q "drained: every accepted request was answered" "$work/server.log" \
  || fail "the server did not drain cleanly"

# 3. Figures and verdict.
python3 - "$work" "$capacity" "$factor" "$rss_before" "$rss_overload" "$rss_peak" \
  "$rss_bound_mb" "$p99_bound_ms" "${MOE_OVERLOAD_JSON:-}" "$deadline_ms" <<'PY'
import json, sys
work, capacity, factor = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
rss_before, rss_overload, rss_peak = map(int, sys.argv[4:7])
rss_bound, p99_bound = float(sys.argv[7]), float(sys.argv[8])
out = sys.argv[9]
deadline_ms = float(sys.argv[10])

def load(name):
    return json.load(open("%s/%s.json" % (work, name)))["runs"][0]

o, rec = load("overload"), load("recovery")
rows = []
for name, r in (("overload %.1fx" % factor, o), ("recovery 0.5x", rec)):
    rows.append((name, r["target_rate"], r["achieved_rate"], r["ok"], r["failed"],
                 r["throughput_rps"], r["latency_ms"]["p50"], r["latency_ms"]["p99"],
                 r["latency_ms"]["max"], r.get("failed_max_ms", 0.0), r["errors"]))
print("%-15s %9s %9s %8s %8s %9s %9s %9s %9s %11s  %s" % (
    "phase", "offered/s", "sent/s", "ok", "failed", "ok/s", "p50 ms", "p99 ms", "max ms",
    "fail max ms", "errors"))
for row in rows:
    print("%-15s %9.1f %9.1f %8d %8d %9.1f %9.1f %9.1f %9.1f %11.1f  %s" % row)
print("server RSS: %d MiB before, %d MiB peak after overload, %d MiB peak overall (bound %d MiB)"
      % (rss_before, rss_overload, rss_peak, rss_bound))

problems = []
# The test only means something if the server really was overloaded.
if o["errors"].get("UNAVAILABLE", 0) == 0:
    problems.append("overload: nothing was refused; the server was not overloaded")
if o["achieved_rate"] < 1.5 * capacity:
    problems.append("overload: the load generator sent only %.0f/s (< 1.5x capacity)"
                    % o["achieved_rate"])
bad = {k: v for k, v in o["errors"].items() if k != "UNAVAILABLE"}
if bad:
    problems.append("overload: errors other than UNAVAILABLE: %s" % bad)
if o.get("failed_max_ms", 0) >= deadline_ms:
    problems.append("overload: a rejection took %.0f ms (deadline %.0f ms)"
                    % (o["failed_max_ms"], deadline_ms))
if o["ok"] == 0:
    problems.append("overload: nothing was served")
if o["latency_ms"]["p99"] > p99_bound:
    problems.append("overload: accepted p99 %.1f ms > %.0f ms" % (o["latency_ms"]["p99"], p99_bound))
if rec["failed"] != 0:
    problems.append("recovery: %d failed requests %s" % (rec["failed"], rec["errors"]))
if rec["latency_ms"]["p99"] > p99_bound:
    problems.append("recovery: p99 %.1f ms > %.0f ms" % (rec["latency_ms"]["p99"], p99_bound))
if rss_peak > rss_bound:
    problems.append("peak RSS %d MiB > %d MiB" % (rss_peak, rss_bound))
if out:
    json.dump({"capacity_rps": capacity, "factor": factor, "overload": o, "recovery": rec,
               "rss_mib": {"before": rss_before, "after_overload": rss_overload,
                           "peak": rss_peak, "bound": rss_bound},
               "p99_bound_ms": p99_bound, "problems": problems}, open(out, "w"), indent=1)
for p in problems:
    print("FAIL: " + p)
sys.exit(1 if problems else 0)
PY
echo "overload test passed"
