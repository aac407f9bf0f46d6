#!/usr/bin/python3
"""Turns one bench/run.sh invocation's raw outputs into
results.csv, serving.csv (augmented), summary.md and chart.png.

Inputs in --dir: moe_bench.json (Google Benchmark, median aggregates),
torch.csv (bench/torch_moe_block.py), serving.csv (moe_loadgen sweeps, with
a leading tokens column) and serving_layer.json (moe_bench at the served
batch sizes). Every ratio pairs figures from the same invocation.
"""
import argparse
import csv
import json
import os
import re

NAME = re.compile(r"^layer/(?P<model>[^/]+)/(?P<dtype>[^/]+)/(?P<routing>[^/]+)/T:(?P<T>\d+)")
COUNTERS = ["layer_ms", "route_ms", "gather_ms", "experts_ms", "shared_ms", "combine_ms",
            "kernel_ms", "eff_kernel", "mem_limit_ms", "flop_limit_ms", "roofline", "dram_GBps", "weight_MB",
            "experts_hit", "experts_parallel_ms", "parallel_gain"]


def load_bench(path):
    """{(model, dtype, routing, T): row} from the median aggregates."""
    if not os.path.exists(path):
        return {}, {}
    with open(path) as f:
        doc = json.load(f)
    rows = {}
    for b in doc["benchmarks"]:
        if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
            continue
        m = NAME.match(b["name"])
        if not m or "error_occurred" in b and b["error_occurred"]:
            continue
        key = (m["model"], m["dtype"], m["routing"], int(m["T"]))
        row = {"tokens_per_s": b.get("items_per_second", 0.0),
               "reps": b.get("repetitions", 1)}
        for c in COUNTERS:
            row[c] = b.get(c, float("nan"))
        rows[key] = row
    return rows, doc.get("context", {})


def load_torch(path):
    out = {}
    if not os.path.exists(path):
        return out
    with open(path) as f:
        for r in csv.DictReader(line for line in f if not line.startswith("#")):
            out[(r["config"], r["model"], r["dtype"], r["routing"], int(r["T"]))] = \
                float(r["tokens_per_s"])
    return out


def fmt(v, digits=2):
    if v is None or v != v:
        return "–"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="bench/results")
    args = ap.parse_args()
    d = args.dir
    bench, context = load_bench(os.path.join(d, "moe_bench.json"))
    torch = load_torch(os.path.join(d, "torch.csv"))

    fields = ["model", "dtype", "routing", "T", "tokens_per_s", *COUNTERS,
              "torch_fair_tokens_per_s", "peer_fair", "torch_stock_tokens_per_s", "peer_stock",
              "reps"]
    table = []
    for key in sorted(bench, key=lambda k: (k[0], k[1], k[2] != "repeat", k[3])):
        model, dtype, routing, t = key
        r = dict(bench[key])
        fair = torch.get(("fair", model, dtype, routing, t))
        stock = torch.get(("stock", model, dtype, routing, t))
        r.update(model=model, dtype=dtype, routing=routing, T=t,
                 torch_fair_tokens_per_s=fair, torch_stock_tokens_per_s=stock,
                 peer_fair=r["tokens_per_s"] / fair if fair else None,
                 peer_stock=r["tokens_per_s"] / stock if stock else None)
        table.append(r)
    with open(os.path.join(d, "results.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in table:
            w.writerow({k: r.get(k) for k in fields})

    lines = []
    machine = os.path.join(d, "machine.txt")
    if os.path.exists(machine):
        lines += ["```", open(machine).read().rstrip(), "```", ""]
    lines.append(f"Measured in the same process: DRAM read {fmt(float(context.get('dram_read_GBps', 'nan')), 1)} GB/s, "
                 f"peak f32 {fmt(float(context.get('peak_f32_GFLOPs', 'nan')))} GFLOP/s, "
                 f"peak bf16 {fmt(float(context.get('peak_bf16_GFLOPs', 'nan')))} GFLOP/s.")
    lines.append("")
    lines.append("| model | dtype | routing | T | tokens/s | route / gather / experts / shared / combine ms "
                 "| kernel limit ms | vs kernel | roofline ms | vs roofline | PyTorch fair tok/s | vs fair "
                 "| vs stock |")
    lines.append("|---|---|---|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|")
    for r in table:
        split = " / ".join(fmt(r[c], 3) for c in
                           ["route_ms", "gather_ms", "experts_ms", "shared_ms", "combine_ms"])
        roof_ms = max(r["mem_limit_ms"], r["flop_limit_ms"])
        lines.append(
            f"| {r['model']} | {r['dtype']} | {r['routing']} | {r['T']} | {fmt(r['tokens_per_s'])} "
            f"| {split} | {fmt(r['kernel_ms'], 3)} | {fmt(r['eff_kernel'])} | {fmt(roof_ms, 3)} "
            f"| {fmt(r['roofline'])} | {fmt(r['torch_fair_tokens_per_s'])} "
            f"| {fmt(r['peer_fair'])}× | {fmt(r['peer_stock'])}× |")

    serving_path = os.path.join(d, "serving.csv")
    served_layer, _ = load_bench(os.path.join(d, "serving_layer.json"))
    if os.path.exists(serving_path):
        with open(serving_path) as f:
            served = list(csv.DictReader(f))
        lines += ["", "Serving (demo, bf16, server defaults; moe_loadgen closed loop on the same "
                  "2 cores):", "",
                  "| tokens/request | concurrency | requests/s | tokens/s | p50 ms | p99 ms "
                  "| mean batch (server) | layer tokens/s at that batch | serving ratio |",
                  "|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
        out_rows = []
        for s in served:
            # moe_loadgen's CSV leads with perf_analyzer's columns (latencies in µs).
            s["concurrency"] = s["Concurrency"]
            s["throughput_rps"] = s["Inferences/Second"]
            s["p50_ms"] = float(s["p50 latency"]) / 1000.0
            s["p99_ms"] = float(s["p99 latency"]) / 1000.0
            batch = float(s["server_avg_batch_tokens"])
            t = max(1, int(batch + 0.5))
            layer = served_layer.get(("demo", "bf16", "random", t), {}).get("tokens_per_s")
            ratio = float(s["tokens_per_s"]) / layer if layer else None
            s["layer_tokens_per_s_at_batch"] = layer
            s["serving_ratio"] = ratio
            out_rows.append(s)
            lines.append(f"| {s['tokens']} | {s['concurrency']} | {fmt(float(s['throughput_rps']), 1)} "
                         f"| {fmt(float(s['tokens_per_s']), 1)} | {fmt(float(s['p50_ms']))} "
                         f"| {fmt(float(s['p99_ms']))} | {fmt(batch, 1)} | {fmt(layer)} | {fmt(ratio)} |")
        # Target: at concurrency 1 with 1 token per request, the median
        # latency within the layer's own T = 1 time + 200 µs.
        for s in out_rows:
            if s["tokens"] == "1" and s["concurrency"] == "1" and s["layer_tokens_per_s_at_batch"]:
                layer_ms = 1000.0 / s["layer_tokens_per_s_at_batch"]
                p50 = float(s["p50_ms"])
                lines += ["", f"Latency, 1 client, 1 token: p50 {p50:.3f} ms against the layer's "
                          f"T = 1 time {layer_ms:.3f} ms + 0.200 ms = {layer_ms + 0.2:.3f} ms: "
                          f"{'met' if p50 <= layer_ms + 0.2 else 'not met'} "
                          f"(overhead {1000 * (p50 - layer_ms):.0f} µs)."]
        with open(os.path.join(d, "serving_ratio.csv"), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(out_rows[0].keys()))
            w.writeheader()
            w.writerows(out_rows)

    summary = "\n".join(lines) + "\n"
    with open(os.path.join(d, "summary.md"), "w") as f:
        f.write(summary)
    print(summary)
    chart(table, os.path.join(d, "chart.png"))


def chart(table, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("report.py: matplotlib missing; no chart (install_deps.sh --bench)")
        return
    models = sorted({r["model"] for r in table})
    dtypes = ["f32", "bf16"]
    fig, axes = plt.subplots(len(models), 2, figsize=(12, 4 * len(models)), squeeze=False)
    for i, model in enumerate(models):
        for j, dtype in enumerate(dtypes):
            ax = axes[i][j]
            rows = [r for r in table if r["model"] == model and r["dtype"] == dtype
                    and r["routing"] == "random"]
            if not rows:
                ax.set_visible(False)
                continue
            ts = [r["T"] for r in rows]
            ax.plot(ts, [r["tokens_per_s"] for r in rows], "o-", label="moe-serve layer")
            ax.plot(ts, [r["T"] / r["kernel_ms"] * 1e3 for r in rows], "s--",
                    label="kernel limit (standalone oneDNN)")
            ax.plot(ts, [r["T"] / max(r["mem_limit_ms"], r["flop_limit_ms"]) * 1e3 for r in rows],
                    ":", color="gray", label="roofline")
            fair = [(r["T"], r["torch_fair_tokens_per_s"]) for r in rows
                    if r["torch_fair_tokens_per_s"]]
            if fair:
                ax.plot(*zip(*fair), "^-", label="PyTorch (fair)")
            stock = [(r["T"], r["torch_stock_tokens_per_s"]) for r in rows
                     if r["torch_stock_tokens_per_s"]]
            if stock:
                ax.plot(*zip(*stock), "v-", alpha=0.6, label="PyTorch (stock)")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("tokens per batch (T)")
            ax.set_ylabel("tokens/s")
            ax.set_title(f"{model}, {dtype}, random routing")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    print(f"report.py: wrote {path}")


if __name__ == "__main__":
    main()
