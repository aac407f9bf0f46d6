#!/usr/bin/env bash
# The benchmark command. Installs what it needs (Debian packages, as root),
# builds, and measures in one invocation:
#   1. moe_bench: the layer on each model, f32 and bf16, T = 1..4096, against
#      standalone oneDNN matmuls (kernel limit) and the roofline (DRAM
#      bandwidth and peak FLOP/s measured in the same process);
#   2. the PyTorch peer (bench/torch_moe_block.py) on the same safetensors
#      folders, configured fairly (OpenBLAS, glibc malloc keeping its
#      memory; OpenBLAS's Skylake-X kernels on AVX-512 CPUs, which its
#      0.3.21 does not recognise, its own detection elsewhere) and stock
#      (Debian's default reference BLAS);
#   3. serving: moe_loadgen against moe_server on loopback (closed loop,
#      concurrency 1, 8, 64; 1 and 16 tokens per request) and the layer at
#      the mean batch size the batcher formed;
#   4. bench/report.py: bench/results/{results.csv,serving.csv,summary.md,
#      chart.png} and the table printed at the end.
#
#   bench/run.sh                 # everything (about 30 min on 2 cores)
#   bench/run.sh --quick         # demo only, fewer sizes, 1 repetition (~3 min)
#   bench/run.sh --models=demo --reps=5 --no-serving --no-torch
#   bench/run.sh --max_isa=avx2  # our side capped at a CPU tier (MOE_MAX_ISA)
#
# Models: presets exported once with moe_export_preset into $MOE_BENCH_WORK
# (default /tmp/moe-bench, ~3.3 GB with mixtral-8x7b). NAME@bf16 runs a
# model in bf16 only, NAME:1024 caps its batch sizes.
set -euo pipefail
cd "$(dirname "$0")/.."

MODELS="demo,moe-1024x4096,mixtral-8x7b@bf16:1024"
TOKENS="1,4,16,64,256,1024,4096"
REPS=5
OUT=bench/results
TORCH=1
SERVING=1
STOCK_TOKENS="1,4,16,64"
for arg in "$@"; do
  case "$arg" in
    --quick) MODELS="demo"; TOKENS="1,16,256"; REPS=1; STOCK_TOKENS="1,16" ;;
    --models=*) MODELS="${arg#*=}" ;;
    --tokens=*) TOKENS="${arg#*=}" ;;
    --reps=*) REPS="${arg#*=}" ;;
    --out=*) OUT="${arg#*=}" ;;
    --no-torch) TORCH=0 ;;
    --no-serving) SERVING=0 ;;
    --max_isa=*) export MOE_MAX_ISA="${arg#*=}" ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "bench/run.sh: unknown argument $arg (see --help)" >&2; exit 2 ;;
  esac
done

./scripts/install_deps.sh --bench
BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD_DIR" --target moe_bench moe_server moe_loadgen moe_export_preset
WORK=${MOE_BENCH_WORK:-/tmp/moe-bench}
mkdir -p "$OUT" "$WORK"
PY=/usr/bin/python3   # Debian's python3, where python3-torch lives

{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  lscpu | grep -E '^(Model name|CPU\(s\)|Thread|Core|Socket|L2|L3|Flags)' |
    sed -E 's/^(Flags:[[:space:]]*).*/\1'"$(grep -o -w -E 'avx2|fma|avx512f|avx512_bf16|avx512_vnni|amx_bf16|amx_tile' /proc/cpuinfo | sort -u | tr '\n' ' ')"'/'
  echo "memory: $(free -g | awk '/^Mem:/{print $2}') GiB"
  echo "onednn: $(dpkg-query -W -f='${Version}' libdnnl2 2>/dev/null || echo '?')"
  echo "torch: $(dpkg-query -W -f='${Version}' python3-torch 2>/dev/null || echo '?')"
  echo "openblas: $(dpkg-query -W -f='${Version}' libopenblas0-openmp 2>/dev/null || echo '?')"
  echo "cpu tier: $("$BUILD_DIR/bench/moe_bench" --print_cpu_tier)"
  echo "command: bench/run.sh $*"
} > "$OUT/machine.txt"
cat "$OUT/machine.txt"

names=()
IFS=',' read -r -a specs <<< "$MODELS"
for spec in "${specs[@]}"; do
  name=${spec%%[@:]*}
  names+=("$name")
  if [ ! -f "$WORK/$name/config.json" ]; then
    "$BUILD_DIR/tools/moe_export_preset" --preset="$name" --out="$WORK/$name"
  fi
done

echo "== 1/3 moe_bench (layer, kernel limit, roofline)"
"$BUILD_DIR/bench/moe_bench" --model_root="$WORK" --models="$MODELS" --tokens="$TOKENS" \
  --benchmark_repetitions="$REPS" --benchmark_report_aggregates_only=true \
  --benchmark_out="$OUT/moe_bench.json" --benchmark_out_format=json

rm -f "$OUT/torch.csv"
if [ "$TORCH" = 1 ]; then
  echo "== 2/3 PyTorch peer"
  header=1
  for spec in "${specs[@]}"; do
    name=${spec%%[@:]*}
    dtypes=f32,bf16
    case "$spec" in *@*) dtypes=$(echo "${spec#*@}" | cut -d: -f1 | tr '+' ',') ;; esac
    tokens=$TOKENS
    case "$spec" in *:*)
      cap=${spec##*:}
      tokens=$(echo "$TOKENS" | tr ',' '\n' | awk -v c="$cap" '$1 <= c' | paste -sd, -) ;;
    esac
    # Fair: OpenBLAS (with its Skylake-X kernels on an AVX-512 CPU, which
    # 0.3.21 does not recognise; its own detection on AVX2 CPUs) and
    # glibc's malloc keeping freed memory.
    coretype=()
    grep -q -w avx512f /proc/cpuinfo && coretype=(OPENBLAS_CORETYPE=SkylakeX)
    env OMP_NUM_THREADS=2 "${coretype[@]}" \
      GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=68719476736 \
      "$PY" bench/torch_moe_block.py --model_dir="$WORK/$name" --model="$name" \
      --dtypes="$dtypes" --tokens="$tokens" --reps="$REPS" --config=fair \
      --header=$header | tee -a "$OUT/torch.csv"
    header=0
    # Stock: what `apt install python3-torch` gives (reference BLAS), small T.
    env OMP_NUM_THREADS=2 LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/blas \
      "$PY" bench/torch_moe_block.py --model_dir="$WORK/$name" --model="$name" \
      --dtypes="$dtypes" --tokens="$STOCK_TOKENS" --reps="$REPS" --config=stock \
      --max_batch_s=3 --header=0 | tee -a "$OUT/torch.csv"
  done
fi

rm -f "$OUT/serving.csv" "$OUT/serving_layer.json"
if [ "$SERVING" = 1 ]; then
  echo "== 3/3 serving (moe_loadgen -> moe_server on loopback, demo, server defaults)"
  port=$((20000 + RANDOM % 20000))
  "$BUILD_DIR/server/moe_server" --grpc_port=$port --http_port=-1 --metrics_port=-1 --host=127.0.0.1 \
    > "$OUT/serving_server.log" 2>&1 &
  server=$!
  trap 'kill $server 2>/dev/null || true' EXIT
  for _ in $(seq 100); do
    "$BUILD_DIR/client/moe_loadgen" --address=127.0.0.1:$port --concurrency=1 --requests=1 \
      --warmup_s=0 --progress=false >/dev/null 2>&1 && break
    sleep 0.2
  done
  header=1
  for t in 1 16; do
    "$BUILD_DIR/client/moe_loadgen" --address=127.0.0.1:$port --sweep=1,8,64 --concurrency=1 \
      --tokens=$t --duration_s=8 --warmup_s=2 --progress=false --csv=- |
      awk -v h=$header -v t=$t 'NR==1{ if (h) print "tokens," $0; next } { print t "," $0 }' |
      tee -a "$OUT/serving.csv"
    header=0
  done
  kill -TERM $server; wait $server || true
  trap - EXIT
  # The layer alone at the batch sizes the batcher formed (same process
  # settings as the server: demo, bf16 where native).
  sizes=$(awk -F, 'NR>1 { v = int($23 + 0.5); if (v < 1) v = 1; print v }' "$OUT/serving.csv" |
          sort -n -u | paste -sd, -)
  "$BUILD_DIR/bench/moe_bench" --models=demo --dtypes=bf16 --tokens="$sizes" --repeat_token=false \
    --benchmark_repetitions="$REPS" --benchmark_report_aggregates_only=true \
    --benchmark_out="$OUT/serving_layer.json" --benchmark_out_format=json
fi

"$PY" bench/report.py --dir="$OUT"
