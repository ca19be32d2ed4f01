#!/usr/bin/env bash
# Installs every Debian package that building, testing and validating vramsim need.
# Idempotent: does nothing when all are present.
set -euo pipefail
packages=(
  build-essential cmake ninja-build clang-format
  libonnx-dev libonnx-testdata libprotobuf-dev protobuf-compiler
  libboost-graph-dev libbenchmark-dev libgtest-dev libgmock-dev
  libcli11-dev nlohmann-json3-dev libfmt-dev
  # checkpoint planning: CBC (MILP) and CLP (LP relaxation)
  coinor-libcbc-dev coinor-libclp-dev pkg-config
  # fuzzing (fuzz/, scripts/fuzz.sh): clang with libFuzzer and the sanitizer runtimes
  clang-14 libclang-rt-14-dev
  # headless browser for the HTML report test (tests/report_browser_test.sh)
  chromium
  # validation against real PyTorch (CPU); openblas-pthread or matmuls run ~50x slower
  python3 python3-torch python3-torchvision python3-onnx libopenblas0-pthread
  # the Python package: bindings (bindings/) and its tests (python/tests)
  python3-dev pybind11-dev python3-pytest
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}"
else
  echo "setup: all packages present"
fi
