#!/usr/bin/env bash
# ctest bench_smoke: the benchmark pipeline still works end to end on a
# small case (moe_bench with its limits, then report.py). Checks that the
# figures exist and are sane, not how fast anything is.
set -euo pipefail
bench=$1
src=$(cd "$(dirname "$0")/.." && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$bench" --models=demo --dtypes=f32 --tokens=4 --repeat_token=false \
  --benchmark_min_time=0.05 --benchmark_out="$out/moe_bench.json" \
  --benchmark_out_format=json > "$out/console.txt" 2>&1 || { cat "$out/console.txt"; exit 1; }
python3 "$src/bench/report.py" --dir="$out" > "$out/report.txt"
python3 - "$out/results.csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert len(rows) == 1, rows
r = rows[0]
assert (r["model"], r["dtype"], r["routing"], r["T"]) == ("demo", "f32", "random", "4"), r
for key in ["tokens_per_s", "layer_ms", "kernel_ms", "eff_kernel", "mem_limit_ms",
            "flop_limit_ms", "roofline", "dram_GBps", "experts_parallel_ms"]:
    v = float(r[key])
    assert v > 0, (key, v)
# The split adds up to (nearly) the whole layer time.
split = sum(float(r[k]) for k in ["route_ms", "gather_ms", "experts_ms", "shared_ms", "combine_ms"])
assert 0.5 * float(r["layer_ms"]) < split <= 1.01 * float(r["layer_ms"]), (split, r["layer_ms"])
assert float(r["experts_hit"]) > 1, r["experts_hit"]
print("bench_smoke: ok", {k: r[k] for k in ["tokens_per_s", "eff_kernel", "roofline"]})
PY
