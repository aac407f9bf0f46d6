#!/bin/sh
# clang-tidy, with the repository's .clang-tidy (its check list and why each
# excluded check is off), over every source file of the libraries, programs
# and benchmarks in the build's compile_commands.json; the headers they
# include are checked through them. Tests and fuzz targets are not. Fails on
# any warning (.clang-tidy makes every warning an error) and prints each.
#   clang_tidy_test.sh RUN_CLANG_TIDY CLANG_TIDY SOURCE_DIR BUILD_DIR
set -u
run_tidy=$1 tidy=$2 src=$3 build=$4
for tool in "$run_tidy" "$tidy"; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "not found: $tool (scripts/install_deps.sh installs clang-tidy-14)"
    exit 1
  fi
done
if [ ! -f "$build/compile_commands.json" ]; then
  echo "no $build/compile_commands.json (CMAKE_EXPORT_COMPILE_COMMANDS is on in CMakeLists.txt)"
  exit 1
fi
dirs='common|router|experts|model|serving|batching|frontend|workers|client|tools|bench'
files=$(grep -c "\"file\": \"$src/\\($(echo "$dirs" | sed 's/|/\\|/g')\\)/" "$build/compile_commands.json")
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# run-clang-tidy colours its output; the log is plain text.
"$run_tidy" -clang-tidy-binary "$tidy" -p "$build" -quiet -j 2 "^$src/($dirs)/" 2>&1 |
  sed 's/\x1b\[[0-9;]*m//g' >"$log"
rc=$(grep -c 'warning:\|error:' "$log")
ran=$(grep -c "^$tidy .* $src/" "$log")
if [ "$files" -eq 0 ] || [ "$ran" -ne "$files" ]; then
  cat "$log"
  echo "clang-tidy ran on $ran of the $files source files"
  exit 1
fi
if [ "$rc" -ne 0 ]; then
  grep -A3 'warning:\|error:' "$log"
  echo "clang-tidy: $rc warnings or errors (headers count once per file including them)"
  exit 1
fi
echo "clang-tidy: $files files, no warnings ($("$tidy" --version | grep -o 'version [0-9.]*'))"
