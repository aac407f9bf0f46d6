#!/bin/sh
# Every C++ source of the repository is as clang-format (.clang-format)
# writes it. Lists the files that are not and the command that fixes them.
#   format_test.sh CLANG_FORMAT SOURCE_DIR
set -u
clang_format=$1 src=$2
cd "$src" || exit 2
if ! command -v "$clang_format" >/dev/null 2>&1; then
  echo "clang-format not found ($clang_format): scripts/install_deps.sh installs clang-format-14"
  exit 1
fi
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  files=$(git ls-files '*.cc' '*.h')
else
  files=$(find common router experts model serving batching frontend workers client tools \
               bench tests fuzz -name '*.cc' -o -name '*.h' 2>/dev/null)
fi
bad=""
n=0
for f in $files; do
  n=$((n + 1))
  "$clang_format" --dry-run -Werror "$f" >/dev/null 2>&1 || bad="$bad $f"
done
if [ -n "$bad" ]; then
  echo "not formatted:$bad"
  echo "fix: $clang_format -i$bad"
  exit 1
fi
echo "format: all $n C++ files as $("$clang_format" --version | head -1) writes them"
