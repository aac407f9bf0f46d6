#!/usr/bin/env bash
# Runs one libFuzzer target for a bounded time from the checked-in corpus.
#   fuzz/run_fuzzer.sh FUZZER SECONDS CORPUS_DIR REGRESSIONS_DIR
# New interesting inputs go to a scratch folder (deleted afterwards); a crash
# leaves its input in ./crash-* of the working directory (ctest's build
# dir): copy it into REGRESSIONS_DIR as a regression input and fix the bug.
# Longer runs: the same with more seconds, e.g.
#   fuzz/run_fuzzer.sh build-asan/fuzz/checkpoint_fuzzer 3600 fuzz/corpus/checkpoint fuzz/regressions/checkpoint
set -euo pipefail
fuzzer="$1"; seconds="$2"; corpus="$3"; regressions="$4"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
dirs=("$scratch" "$corpus")
[ -d "$regressions" ] && dirs+=("$regressions")
# rss_limit: 2 GiB per input; timeout: an input taking 10 s is a hang.
log="$scratch.log"
status=0
"$fuzzer" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -max_len=65536 \
  -print_final_stats=1 "${dirs[@]}" >"$log" 2>&1 || status=$?
grep -E "^(#[0-9]+[[:space:]]+(INITED|DONE)|stat::number_of_executed_units|stat::peak_rss|==[0-9]+==|SUMMARY|Test unit written|artifact_prefix)" "$log" || true
[ "$status" -eq 0 ] || tail -60 "$log"
rm -f "$log"
exit "$status"
