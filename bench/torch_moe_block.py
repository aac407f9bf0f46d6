#!/usr/bin/python3
"""The peer: the same MoE layer in PyTorch, written the way Hugging Face
models write their sparse MoE block in eager mode, timed on the same batch
sizes and routing patterns as moe_bench.

The block (Mixtral family; the form every HF sparse-MoE block shares):
    logits  = x @ gate^T                       (Linear, no bias)
    probs   = softmax(logits, dim=-1) in float32
    w, sel  = topk(probs, k); w /= w.sum(-1)   (renormalised top-k)
    for each expert e with tokens routed to it:
        rows    = tokens routed to e
        y[rows] += w[rows, e] * W2 @ (silu(W1 @ x[rows]) * (W3 @ x[rows]))
                                                (index_add_)
Weights are read from the same safetensors folder moe_bench loads
(moe_export_preset output, Mixtral tensor names), in f32 or bf16.

Run with Debian's /usr/bin/python3 (python3-torch); bench/run.sh sets the
BLAS and allocator environment for the "fair" and "stock" configurations.
Prints one CSV row per case to stdout:
    engine,config,model,dtype,routing,T,tokens_per_s,ms_per_batch,reps
"""
import argparse
import json
import os
import statistics
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

SAFETENSORS_DTYPES = {"F32": (np.float32, 4), "BF16": (np.int16, 2), "F16": (np.float16, 2)}


def read_safetensors(path):
    """All tensors of one .safetensors file as torch tensors (bf16 kept as bf16)."""
    out = {}
    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
        base = 8 + header_len
        data = np.memmap(path, dtype=np.uint8, mode="r", offset=base)
        for name, info in header.items():
            if name == "__metadata__":
                continue
            np_type, size = SAFETENSORS_DTYPES[info["dtype"]]
            begin, end = info["data_offsets"]
            arr = np.frombuffer(data[begin:end], dtype=np_type).reshape(info["shape"]).copy()
            t = torch.from_numpy(arr)
            if info["dtype"] == "BF16":
                t = t.view(torch.bfloat16)
            out[name] = t
    return out


def load_mixtral_layer(folder, layer):
    with open(os.path.join(folder, "config.json")) as f:
        config = json.load(f)
    if config.get("model_type") != "mixtral":
        sys.exit(f"torch_moe_block: {folder}: model_type {config.get('model_type')!r}, "
                 "this peer implements the mixtral block")
    tensors = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".safetensors"):
            tensors.update(read_safetensors(os.path.join(folder, name)))
    p = f"model.layers.{layer}.block_sparse_moe."
    experts = []
    for e in range(config["num_local_experts"]):
        q = f"{p}experts.{e}."
        experts.append((tensors[q + "w1.weight"], tensors[q + "w2.weight"],
                        tensors[q + "w3.weight"]))
    return config, tensors[p + "gate.weight"], experts


class SparseMoeBlock(torch.nn.Module):
    def __init__(self, gate, experts, top_k, dtype):
        super().__init__()
        self.top_k = top_k
        self.gate = torch.nn.Linear(gate.shape[1], gate.shape[0], bias=False, dtype=dtype)
        self.gate.weight.data = gate.to(dtype)
        self.w1 = torch.nn.ModuleList()
        self.w2 = torch.nn.ModuleList()
        self.w3 = torch.nn.ModuleList()
        for w1, w2, w3 in experts:
            for mods, w in ((self.w1, w1), (self.w2, w2), (self.w3, w3)):
                lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=False, dtype=dtype)
                lin.weight.data = w.to(dtype).contiguous()
                mods.append(lin)

    def forward(self, x):
        num_experts = len(self.w1)
        logits = self.gate(x)
        probs = F.softmax(logits, dim=-1, dtype=torch.float32)
        weights, chosen = torch.topk(probs, self.top_k, dim=-1)
        weights = (weights / weights.sum(dim=-1, keepdim=True)).to(x.dtype)
        y = torch.zeros_like(x)
        # [E, k, T]: which (slot, token) pairs go to each expert.
        mask = F.one_hot(chosen, num_classes=num_experts).permute(2, 1, 0)
        for e in range(num_experts):
            slot, rows = torch.where(mask[e])
            if rows.numel() == 0:
                continue
            xe = x[rows]
            he = F.silu(self.w1[e](xe)) * self.w3[e](xe)
            ye = self.w2[e](he) * weights[rows, slot, None]
            y.index_add_(0, rows, ye.to(x.dtype))
        return y


def pool_size(t):
    return max(4, min(32, 4096 // t))


def time_case(block, d_model, dtype, t, repeat, reps, min_time_s):
    n = 1 if repeat else pool_size(t)
    gen = torch.Generator().manual_seed(1000 * t)
    pool = [(torch.rand(t, d_model, generator=gen) * 2 - 1).to(dtype) for _ in range(n)]
    with torch.inference_mode():
        for x in pool:
            block(x)  # warm-up
        results = []
        for _ in range(reps):
            iters = 0
            start = time.perf_counter()
            while True:
                block(pool[iters % n])
                iters += 1
                elapsed = time.perf_counter() - start
                if elapsed >= min_time_s and iters >= min(n, 4):
                    break
            results.append(elapsed / iters)
    return statistics.median(results), results


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model_dir", required=True)
    ap.add_argument("--model", required=True, help="name for the CSV")
    ap.add_argument("--dtypes", default="f32,bf16")
    ap.add_argument("--tokens", default="1,4,16,64,256,1024,4096")
    ap.add_argument("--repeat_token", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--min_time_s", type=float, default=0.5)
    ap.add_argument("--max_batch_s", type=float, default=10.0,
                    help="skip larger T once one batch takes longer than this")
    ap.add_argument("--config", default="fair", help="label for the CSV")
    ap.add_argument("--header", type=int, default=1)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    config, gate, experts = load_mixtral_layer(args.model_dir, 0)
    if args.header:
        print("engine,config,model,dtype,routing,T,tokens_per_s,ms_per_batch,reps", flush=True)
    for name in args.dtypes.split(","):
        dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[name]
        block = SparseMoeBlock(gate, experts, config["num_experts_per_tok"], dtype)
        cases = [(1, True)] if args.repeat_token else []
        cases += [(int(t), False) for t in args.tokens.split(",")]
        for t, repeat in cases:
            sec, reps = time_case(block, gate.shape[1], dtype, t, repeat, args.reps,
                                  args.min_time_s)
            print(f"torch,{args.config},{args.model},{name},{'repeat' if repeat else 'random'},"
                  f"{t},{t / sec:.1f},{sec * 1e3:.4f},{'/'.join(f'{r * 1e3:.4f}' for r in reps)}",
                  flush=True)
            if sec > args.max_batch_s:
                print(f"# {args.model} {name}: one batch of {t} took {sec:.1f} s; "
                      "larger batches skipped", file=sys.stderr)
                break
        del block


if __name__ == "__main__":
    main()
