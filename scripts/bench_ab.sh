#!/usr/bin/env bash
# bench_ab.sh REV_A REV_B [ROUNDS] - compare two revisions on the W3
# benchmarks, alternating them in the same minutes.
#
# This machine's speed drifts by 15% and more within an hour, so a figure
# is only worth comparing with one measured beside it. Both revisions are
# checked out (git worktree) and built under ${SHF_AB_DIR:-/tmp/shf-ab};
# then each round runs W3 throughput with 1 shard / 1 worker thread, 1
# shard / 2 worker threads, 2 / 2, the default 8 / 8, and W3 latency, each
# for A and B back to back (B first in even rounds). Every result line
# goes to stderr as it comes; the summary on stdout gives, per benchmark
# and revision, the median and range of each figure.
# ROUNDS defaults to 3 (about 1 minute a round).
# Each revision runs its own benchmarks: before 4d12ad3 they named
# workflows by counting (tp-0, tp-1, ...), since then in no particular
# order, which costs schema 1 twice the page writes; against an older
# revision, compare with SHF_BENCH_SEQ_IDS=1 set (HEAD counts too).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
if [[ $# -lt 2 ]]; then
    echo "usage: bench_ab.sh REV_A REV_B [ROUNDS]" >&2
    exit 2
fi
rounds=${3:-3}
dir=${SHF_AB_DIR:-/tmp/shf-ab}
mkdir -p "$dir"
results=$dir/results.txt
: >"$results"

declare -A bin
for rev in "$1" "$2"; do
    sha=$(git -C "$here" rev-parse --short "$rev")
    tree=$dir/src-$sha
    if [[ ! -d $tree ]]; then
        git -C "$here" worktree add --detach -f "$tree" "$sha" >/dev/null
    fi
    bash "$tree/scripts/build.sh" "$dir/build-$sha" >&2
    bin[$rev]=$dir/build-$sha/bin
done

# Each benchmark runs for A and B back to back, and the pair's order turns
# every round: the host's phase can change within a round, and this way a
# change lands on both revisions alike.
for ((round = 1; round <= rounds; round++)); do
    order=("$1" "$2")
    ((round % 2 == 0)) && order=("$2" "$1")
    for args in "5000 64 1 1" "5000 64 2 1" "5000 64 2 2" "5000 64 8 8" \
        latency; do
        for rev in "${order[@]}"; do
            b=${bin[$rev]}
            if [[ $args == latency ]]; then
                line=$("$b/bench_w3_latency" 200 2>/dev/null | tail -1)
            else
                # shellcheck disable=SC2086
                line=$("$b/bench_w3_throughput" $args 2>/dev/null | tail -1)
            fi
            echo "rev=$rev round=$round $line" | tee -a "$results" >&2
        done
    done
done

python3 - "$results" "$1" "$2" <<'EOF'
import statistics, sys
path, rev_a, rev_b = sys.argv[1:4]
rows = []
for line in open(path):
    kv = dict(f.split("=", 1) for f in line.split() if "=" in f)
    rows.append(kv)
def bench(kv):
    if kv.get("workload") == "w3_throughput":
        return "w3_throughput %s shards / %s workers" % (kv["shards"], kv["workers"])
    return kv.get("workload", "?")
figures = {"w3_throughput": ["wf_per_s", "cpu_ms_per_wf"],
           "w3_latency": ["p50_ms", "p99_ms", "ratio", "ratio_chain"]}
for name in sorted({bench(r) for r in rows}):
    print(name)
    for rev in (rev_a, rev_b):
        mine = [r for r in rows if bench(r) == name and r["rev"] == rev]
        if not mine:
            continue
        parts = []
        for f in figures[mine[0]["workload"]]:
            v = sorted(float(r[f]) for r in mine if f in r)
            if not v:  # a revision whose benchmark does not print it
                continue
            parts.append("%s median %g (%g-%g)" % (f, statistics.median(v), v[0], v[-1]))
        print("  %-12s n=%d  %s" % (rev, len(mine), ";  ".join(parts)))
EOF
