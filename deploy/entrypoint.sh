#!/bin/sh
# Entry point of the moe-serve image.
#   moe-entrypoint [PROGRAM] [FLAGS...]
# PROGRAM is one of moe_server (the default), moe_expert_worker, moe_client,
# moe_loadgen, moe_export_preset; anything else is passed to moe_server as a
# flag. Environment variables named FLAGS_<flag> set flags of PROGRAM
# (abseil's --fromenv), so FLAGS_grpc_port=9000 equals --grpc_port=9000;
# flags on the command line win. The program replaces this shell (exec), so
# it is PID 1 and receives the SIGTERM that starts the graceful drain.
set -eu
prog=moe_server
case "${1:-}" in
  moe_server|moe_expert_worker|moe_client|moe_loadgen|moe_export_preset)
    prog="$1"; shift ;;
esac
names=$(env | sed -n 's/^FLAGS_\([A-Za-z0-9_]*\)=.*/\1/p' | sort | paste -sd, -)
if [ -n "$names" ]; then
  set -- "--fromenv=$names" "$@"
fi
exec "/usr/local/bin/$prog" "$@"
