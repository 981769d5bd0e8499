#!/usr/bin/env bash
# build.sh [BUILD_DIR] - configure and build shardflow (deps installed first).
# SHF_SANITIZER=address,undefined selects a sanitizer build.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
bash "$here/scripts/deps.sh"
cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DSHF_SANITIZER="${SHF_SANITIZER:-}" >/dev/null
cmake --build "$build" -j "$(nproc)"
