#!/usr/bin/env bash
# bench.sh [BUILD_DIR] - build shardflow and run every benchmark (bench/),
# printing each one's key=value result line on stdout (progress and node
# logs go to stderr). Durable (fsync on) throughout; each benchmark starts
# what it needs itself. Environment knobs (defaults in brackets):
#   SHF_BENCH_SCALE_N   workflows parked by bench_scale [100000]
#                       (1000000 is the issue-4 figure; ~1 min to start here)
#   SHF_BENCH_ONLY      run only benchmarks whose name contains this word
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
bash "$here/scripts/build.sh" "$build" >&2
bin=$build/bin
scale_n=${SHF_BENCH_SCALE_N:-100000}
only=${SHF_BENCH_ONLY:-}
run() {
    local name=$1
    shift
    if [[ -n $only && $name != *$only* ]]; then
        return 0
    fi
    echo "# $name $*" >&2
    "$bin/$name" "$@" || echo "bench=$name status=failed rc=$?"
}
run bench_w3_latency 200
run bench_w3_throughput 5000 64 8 8   # 8 shards (dev's default on 8 cores)
run bench_w3_throughput 5000 64 2 8   # 8 shards, 2 worker threads (links)
run bench_w3_throughput 5000 64 2 2   # 2 shards, 2 worker threads (2 cores)
run bench_w3_throughput 5000 64 1 1   # 1 shard, 1 worker thread: fewest hand-overs
run bench_w3_throughput 5000 64 2 1   # 1 shard, 2 worker threads
run bench_timers 1000 10000 5000 1
run bench_timers 1000 10000 5000 0
run bench_fairness 2000 8 64
run bench_scale "$scale_n" 2000
run bench_fsync_growth                # the disk: fdatasync of a growing file
