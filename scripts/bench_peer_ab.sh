#!/usr/bin/env bash
# bench_peer_ab.sh HARNESS_DIR [ROUNDS] - BullMQ and shardflow's W3
# benchmarks in the same minutes, alternating, for a ratio from one run.
#
# The host's speed swings 3x within minutes, and BullMQ's with it, so a
# ratio to the peers' README figure (measured on another day) says little;
# ../shared/peers/README.md asks for ratios measured in one run.
# HARNESS_DIR is the peers' BullMQ harness (../shared/peers/harness/bullmq
# on the project's machines; it is not part of this repository). It is
# copied to a temp dir, where its npm packages are installed; redis-server
# comes from Debian. Each round runs the harness once with appendfsync
# always (its latency, throughput and timer phases) and
# bench_w3_throughput 5000 64 1 1 three times and bench_w3_latency 200
# once, the order turning every round. One line per result on stdout.
# Environment: SHF_BIN (the benchmarks' folder, default build/bin).
set -euo pipefail
if [[ $# -lt 1 || ! -f $1/run.sh ]]; then
    echo "usage: bench_peer_ab.sh HARNESS_DIR [ROUNDS]" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${SHF_BIN:-$here/build/bin}
rounds=${2:-4}
work=$(mktemp -d /tmp/shf-peer-XXXXXX)
trap 'rm -rf "$work"' EXIT
cp -r "$1" "$work/bullmq"
rm -rf "$work/bullmq/node_modules" "$work/bullmq/logs"
if ! command -v redis-server >/dev/null; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q >&2
    $SUDO apt-get install -y -q redis-server >&2
fi
(cd "$work/bullmq" && npm install --no-audit --no-fund >&2)

peer() {
    local line
    line=$(cd "$work/bullmq" && FSYNC_MODES=always QUIET_WAIT_S=1 ./run.sh \
        2>/dev/null | tail -n 1)
    python3 -c '
import json, sys
d = json.loads(sys.argv[1]); a = d.get("always", d)
print("bullmq wf_per_s=%s p50_ms=%s p99_ms=%s timer_wall_s=%s"
      % (a["wf_per_s"], a["lat_p50_ms"], a["lat_p99_ms"], a["timer_wall_s"]))
' "$line"
}

ours() {
    local i
    for i in 1 2 3; do
        echo "shardflow $("$bin/bench_w3_throughput" 5000 64 1 1 2>/dev/null \
            | grep -o 'wf_per_s=[0-9]*')"
    done
    echo "shardflow $("$bin/bench_w3_latency" 200 2>/dev/null \
        | grep -o ' p50_ms=[0-9.]* \| p99_ms=[0-9.]* \|ratio_chain=[0-9.]*' \
        | head -n 3 | tr -d '\n')"
}

cd /tmp
for round in $(seq 1 "$rounds"); do
    echo "round $round $(date -u +%H:%M:%S)"
    if ((round % 2)); then
        peer
        ours
    else
        ours
        peer
    fi
done
