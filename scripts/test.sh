#!/usr/bin/env bash
# The README's test command: installs the Debian packages (as root), builds
# everything in build/ and runs every ctest label.
#
#   ./scripts/test.sh              all tests
#   ./scripts/test.sh -L unit      extra arguments go to ctest
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install_deps.sh

BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build "$BUILD_DIR"
# Two test processes at a time: each oneDNN kernel already uses both cores.
ctest --test-dir "$BUILD_DIR" --output-on-failure -j2 "$@"
