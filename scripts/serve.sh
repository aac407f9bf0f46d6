#!/usr/bin/env bash
# The README's serve command: installs the Debian packages (as root), builds
# moe_server in build/ and starts it on the built-in demo preset (or with
# the flags you pass: ./scripts/serve.sh --model_dir=/models/mixtral --layer=3).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install_deps.sh

BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD_DIR" --target moe_server
exec "$BUILD_DIR/server/moe_server" "$@"
