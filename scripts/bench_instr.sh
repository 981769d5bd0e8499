#!/usr/bin/env bash
# bench_instr.sh BUILD_DIR... - user-space instructions per W3 workflow,
# counted by valgrind (callgrind), for each build given.
#
# Wall time and CPU time on this machine drift by 15% and more, so a
# change of a few per cent cannot be seen in them; instruction counts
# repeat to 0.01%. Each build runs bench_w3_throughput (2 shards, 2 worker
# threads, 64 in flight) under callgrind with N1 and N2 workflows; the
# difference over N2 - N1 is the count per workflow, node, workers and
# client together, start-up excluded, and the history read-back after
# the clock stops skipped (SHF_BENCH_EVENTS=0). The kernel's share (fsync, page
# writes, wake-ups) is not counted. About a minute per build.
# Environment: SHF_INSTR_N1 (1000), SHF_INSTR_N2 (3000).
set -euo pipefail
if [[ $# -lt 1 ]]; then
    echo "usage: bench_instr.sh BUILD_DIR..." >&2
    exit 2
fi
if ! command -v valgrind >/dev/null; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q >&2
    $SUDO apt-get install -y -q valgrind >&2
fi
n1=${SHF_INSTR_N1:-1000}
n2=${SHF_INSTR_N2:-3000}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
count() {  # build n -> total instructions
    SHF_BENCH_EVENTS=0 valgrind --tool=callgrind --callgrind-out-file="$out/cg" \
        "$1/bin/bench_w3_throughput" "$2" 64 2 2 >/dev/null 2>&1
    awk '/^summary:/ {print $2}' "$out/cg"
}
for build in "$@"; do
    c1=$(count "$build" "$n1")
    c2=$(count "$build" "$n2")
    echo "build=$build instr_per_wf=$(((c2 - c1) / (n2 - n1)))"
done
