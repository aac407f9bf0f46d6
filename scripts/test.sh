#!/usr/bin/env bash
# The README's test command. Installs the Debian packages (as root), then
#   1. release: builds everything in build/ (GCC, RelWithDebInfo) and runs
#      every ctest label: unit, lint, workers, workers-tiers, perf, overload,
#      container;
#   2. sanitize: builds build-san/ with clang, AddressSanitizer +
#      UndefinedBehaviorSanitizer (+ libFuzzer coverage, -Wthread-safety as
#      an error) and runs the unit and workers labels (not workers-tiers:
#      the worker suite capped to lower tiers runs the same worker code; the
#      tier kernels are sanitized by the unit label's tier runs), then the fuzz label
#      (each fuzz target for MOE_FUZZ_SECONDS, default 60);
#   3. tsan: builds build-tsan/ with clang -fsanitize=thread and runs the
#      batch queue and dynamic batcher tests 5 times (what Debian's
#      uninstrumented gRPC allows; see README "Reliability").
#
#   ./scripts/test.sh                 all three stages (what .ci/run runs)
#   ./scripts/test.sh --quick         release build, unit label only
#   ./scripts/test.sh -L unit         release stage only; arguments go to ctest
#   MOE_TEST_STAGES="sanitize" ./scripts/test.sh    chosen stages
set -euo pipefail
cd "$(dirname "$0")/.."

stages="${MOE_TEST_STAGES:-release sanitize tsan}"
ctest_args=()
if [ "${1:-}" = "--quick" ]; then
  stages="release"
  ctest_args=(-L unit)
  shift
fi
if [ $# -gt 0 ]; then
  stages="release"
  ctest_args+=("$@")
fi

./scripts/install_deps.sh

t0=$SECONDS
stage_times=()
run_stage() { echo; echo "==== test.sh: $1 ($(date -u +%H:%M:%S))"; }

# Two test processes at a time: each oneDNN kernel already uses both cores.
# The overload and container tests are RUN_SERIAL: they run alone.
for stage in $stages; do
  s0=$SECONDS
  case "$stage" in
    release)
      run_stage "release build and every label"
      cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
      cmake --build build
      if [ ${#ctest_args[@]} -gt 0 ]; then
        ctest --test-dir build --output-on-failure -j2 "${ctest_args[@]}"
      else
        ctest --test-dir build --output-on-failure -j2 -LE 'overload|container'
        # Verbose: their figures (overload table, image size, drain counts)
        # belong in the log.
        ctest --test-dir build --output-on-failure -V -L overload
        ctest --test-dir build --output-on-failure -V -L container
      fi
      ;;
    sanitize)
      run_stage "ASan + UBSan build (clang), unit + workers + fuzz labels"
      CC=clang-14 CXX=clang++-14 cmake -S . -B build-san -G Ninja -DCMAKE_BUILD_TYPE=Debug \
        -DCMAKE_CXX_FLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined,fuzzer-no-link -fno-sanitize-recover=undefined" \
        -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" \
        -DMOE_BUILD_BENCH=OFF -DMOE_BUILD_FUZZERS=ON -DMOE_SYSTEM_TESTS=OFF \
        -DMOE_FUZZ_SECONDS="${MOE_FUZZ_SECONDS:-60}"
      cmake --build build-san
      # Any report fails the test that triggered it: ASan and UBSan abort,
      # LeakSanitizer runs at every exit.
      ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
        ctest --test-dir build-san --output-on-failure -j2 -L '^(unit|workers)$' --timeout 1200
      ctest --test-dir build-san --output-on-failure -V -L fuzz
      ;;
    tsan)
      run_stage "ThreadSanitizer build (clang): batch queue, dynamic batcher and compute thread tests"
      CC=clang-14 CXX=clang++-14 cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=Debug \
        -DCMAKE_CXX_FLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=thread" \
        -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=thread" \
        -DMOE_BUILD_BENCH=OFF -DMOE_SYSTEM_TESTS=OFF
      cmake --build build-tsan --target batch_queue_test dynamic_batcher_test compute_thread_test
      TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$PWD/tests/tsan.supp" \
        ctest --test-dir build-tsan --output-on-failure -j2 --repeat until-fail:5 -R '^(BatchQueue|DynamicBatcher|ComputeThread|RunOnTransientThread)'
      ;;
    *)
      echo "test.sh: unknown stage '$stage' (release, sanitize, tsan)" >&2
      exit 2
      ;;
  esac
  stage_times+=("$stage $((SECONDS - s0)) s")
done
echo
echo "==== test.sh: passed in $((SECONDS - t0)) s (${stage_times[*]})"
