#!/bin/sh
# Checks the layering the headers promise: no header of a folder reaches
# (directly or through other headers) a dependency the folder does not own.
#   common/ router/ model/ serving/ batching/   no oneDNN, gRPC or protobuf
#   experts/                                     oneDNN (its own), no gRPC or protobuf
# The proto enters at frontend/ and workers/ only.
#   header_dependencies_test.sh CXX SOURCE_DIR BINARY_DIR
set -u
cxx=$1 src=$2 bin=$3
cd "$src" || exit 2
fail=0 count=0
check() {  # folder, forbidden (extended regex over the dependency paths)
  for h in "$1"/*.h; do
    count=$((count + 1))
    deps=$("$cxx" -std=c++17 -I"$src" -I"$bin" -M -x c++ "$h" 2>&1) || {
      echo "FAIL $h: the preprocessor failed: $deps"; fail=1; continue; }
    bad=$(printf '%s\n' "$deps" | tr ' \\' '\n\n' | grep -E "$2" | sort -u | head -3)
    if [ -n "$bad" ]; then
      echo "FAIL $h reaches $(echo "$bad" | tr '\n' ' ')"
      fail=1
    fi
  done
}
rpc='grpc|google/protobuf|\.pb\.h'
check common "oneapi/dnnl|$rpc"
check router "oneapi/dnnl|$rpc"
check model "oneapi/dnnl|$rpc"
check serving "oneapi/dnnl|$rpc"
check batching "oneapi/dnnl|$rpc"
check experts "$rpc"
[ $fail -eq 0 ] && echo "header_dependencies: $count headers keep to their folder's dependencies"
exit $fail
