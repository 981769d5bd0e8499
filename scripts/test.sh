#!/usr/bin/env bash
# test.sh [BUILD_DIR] - install deps, build, and run the whole test suite
# (class self-tests, fuzz corpus replays, system tests with real nodes).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
bash "$here/scripts/build.sh" "$build"
cd "$build"
ctest --output-on-failure --timeout 600 -j 2
