#!/usr/bin/env bash
# Prepares this machine to build and run moe-serve's container image with
# podman, and does nothing that is already done (repeated runs are fast):
#   1. /etc/containers/containers.conf with the two settings podman needs on
#      these VMs (no ulimit overrides, runc as the runtime);
#   2. the base images debian:bookworm and debian:bookworm-slim, made with
#      debootstrap when no registry is reachable and they are not present.
# Where a registry is reachable (or with Docker), none of this is needed:
# `docker build -f deploy/Dockerfile .` pulls the official base images.
#
# Usage: deploy/container_setup.sh            (as root)
# Env:   MOE_DEBIAN_MIRROR  mirror for debootstrap (default deb.debian.org)
set -euo pipefail

log() { echo "container_setup: $*" >&2; }

if ! command -v podman >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1 \
   || ! command -v catatonit >/dev/null 2>&1; then
  log "podman and debootstrap are needed; run as root:"
  log "  apt-get update && apt-get install -y --no-install-recommends podman runc debootstrap podman-compose catatonit"
  exit 1
fi

conf=/etc/containers/containers.conf
if [ ! -f "$conf" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    log "$conf is missing; as root create it with:"
    log '  [containers] default_ulimits = []   and   [engine] runtime = "runc"'
    exit 1
  fi
  mkdir -p /etc/containers
  cat > "$conf" <<'CONF'
# Written by moe-serve's deploy/container_setup.sh.
[containers]
default_ulimits = []

[engine]
runtime = "runc"

[network]
# CNI with the dnsname plugin (installed by scripts/install_deps.sh) gives
# compose's containers name resolution; pinned so that installing netavark
# later does not switch an initialised machine's backend under it.
network_backend = "cni"
CONF
  log "wrote $conf"
elif ! grep -q '^default_ulimits *= *\[\]' "$conf" || ! grep -q '^runtime *= *"runc"' "$conf"; then
  log "warning: $conf exists but lacks 'default_ulimits = []' under [containers]"
  log "         or 'runtime = \"runc\"' under [engine]; podman may fail here"
fi

mirror="${MOE_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
make_base() {
  local tag="$1"
  if podman image exists "$tag"; then
    return 0
  fi
  # Both tags come from one debootstrap: the minbase variant is already
  # slimmer than the official bookworm-slim, and the build stage installs
  # the compilers it needs with apt-get.
  local other="debian:bookworm"
  [ "$tag" = "debian:bookworm" ] && other="debian:bookworm-slim"
  if podman image exists "$other"; then
    podman tag "$other" "$tag"
    log "tagged $other as $tag"
    return 0
  fi
  local dir
  dir="$(mktemp -d /var/tmp/moe-bookworm.XXXXXX)"
  log "debootstrap --variant=minbase bookworm ($mirror) -> $dir; takes a few minutes"
  debootstrap --variant=minbase bookworm "$dir" "$mirror" >"$dir.log" 2>&1 || {
    log "debootstrap failed; last lines of $dir.log:"; tail -20 "$dir.log" >&2; exit 1; }
  # Keep the image small, like the official slim image.
  rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
  tar -C "$dir" -c . | podman import -q --change 'CMD ["/bin/bash"]' - "$tag" >/dev/null
  rm -rf "$dir" "$dir.log"
  log "imported $tag"
}
make_base debian:bookworm-slim
make_base debian:bookworm
