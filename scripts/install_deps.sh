#!/usr/bin/env bash
# Installs the Debian 12 packages moe-serve needs to build and test.
# As root it runs apt-get; otherwise it prints the exact command to run.
#   --bench  also the benchmark's peer and charts (bench/run.sh): PyTorch
#            with OpenBLAS, numpy, matplotlib.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  libdnnl-dev ocl-icd-opencl-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libspdlog-dev libfmt-dev nlohmann-json3-dev libcpp-httplib-dev
  libgtest-dev libgmock-dev libbenchmark-dev openssl
  # Sanitizer and fuzzing build (clang, libFuzzer, ASan/UBSan/TSan runtimes).
  clang-14 libclang-rt-14-dev
  # The format and static-analysis checks (ctest format, clang_tidy).
  clang-format-14 clang-tidy-14
  # Manifest checks, the system tests' report parsing, and the Python
  # example client (examples/python: gRPC through python3-grpcio).
  python3 python3-yaml python3-grpcio
  # Container test: podman with runc, compose, container-name DNS, and
  # debootstrap for the base images when no registry is reachable.
  podman runc podman-compose golang-github-containernetworking-plugin-dnsname debootstrap
  # `podman kube play` builds its pods' pause image around catatonit.
  catatonit
)
if [ "${1:-}" = "--bench" ]; then
  PACKAGES+=(python3-torch python3-numpy python3-matplotlib libopenblas0-openmp)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# Optional: the npm package kubernetes-models lets deploy/check_manifests.py
# validate the Kubernetes manifests against the API schemas offline. Without
# npm (or if the install fails) the check runs without the schema part.
install_schema_validator() {
  if [ "$(id -u)" -eq 0 ] && command -v npm >/dev/null 2>&1 &&
     ! npm ls -g kubernetes-models >/dev/null 2>&1; then
    echo "install_deps: npm install -g kubernetes-models@5.1.0 (manifest schema check)"
    npm install -g --no-fund --no-audit kubernetes-models@5.1.0 >/dev/null 2>&1 ||
      echo "install_deps: warning: kubernetes-models did not install; the manifest check skips its schema part" >&2
  fi
}

if [ ${#missing[@]} -eq 0 ]; then
  echo "install_deps: all ${#PACKAGES[@]} Debian packages present"
  install_schema_validator
  exit 0
fi

cmd="apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "install_deps: missing packages; run as root:" >&2
  echo "  apt-get update && $cmd" >&2
  exit 1
fi

echo "install_deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
$cmd
install_schema_validator
