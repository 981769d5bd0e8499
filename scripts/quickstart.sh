#!/usr/bin/env bash
# quickstart.sh - install, build, start `shardflow dev` with the example
# order workflow and its worker, run one workflow to completion, and keep
# the node and worker running until Ctrl-C (QUICKSTART_EXIT=1: stop after
# the workflow completes).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bash "$here/scripts/build.sh" "$here/build"
sf="$here/build/bin/shardflow"
data=${SHARDFLOW_DATA:-$here/shardflow-data}
port=${SHARDFLOW_PORT:-7400}
export SHARDFLOW_SERVER="tcp://127.0.0.1:$port"
"$sf" dev --data "$data" --listen "$SHARDFLOW_SERVER" &
node=$!
worker=""
cleanup() {
    [ -n "$worker" ] && kill $worker 2>/dev/null || true
    kill "$node" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM
# Wait (bounded) until the node answers.
for _ in $(seq 1 100); do
    "$sf" wf list >/dev/null 2>&1 && break
    sleep 0.1
done
"$sf" def register "$here/examples/order.json"
"$sf" worker --queue default --exec "$here/examples/order_worker.sh" &
worker=$!
"$sf" worker --queue warehouse --exec "$here/examples/order_worker.sh" &
worker="$worker $!"
"$sf" wf start order --input '{"amount": 42, "email": "ada@example.com"}' --wait
echo
echo "Workflow completed. Try: $sf wf list; $sf wf describe <ID>; $sf wf history <ID>"
if [ "${QUICKSTART_EXIT:-0}" = 1 ]; then
    exit 0
fi
echo "Node and worker are running; Ctrl-C stops them."
wait "$node"
