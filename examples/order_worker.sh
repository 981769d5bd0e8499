#!/bin/sh
# order_worker.sh - the activities of examples/order.json, for the generic
# worker:
#
#   shardflow worker --queue default --exec examples/order_worker.sh
#
# The activity name is in $SHARDFLOW_ACTIVITY, its input (JSON) on stdin;
# whatever JSON is printed on stdout is the activity's output. A non-zero
# exit with {"error":{"type","message"}} on stdout fails the attempt with
# that error type ("Declined" is non-retryable in order.json). Lines
# written to fd 3 are heartbeats.

input=$(cat)

# The integer after "amount": in the input (no jq needed).
amount=$(printf '%s' "$input" | sed -n 's/.*"amount": *\([0-9][0-9]*\).*/\1/p')

heartbeat() {
    (printf '%s\n' "$1" >&3) 2>/dev/null || true
}

case "$SHARDFLOW_ACTIVITY" in
    charge_card)
        heartbeat '{"stage":"authorizing"}'
        if [ -z "$amount" ]; then
            printf '{"error":{"type":"Declined","message":"no amount in %s"}}\n' \
                "$(printf '%s' "$input" | tr -d '"')"
            exit 1
        fi
        if [ "$amount" -gt 1000 ]; then
            printf '{"error":{"type":"Declined","message":"amount %s over the limit"}}\n' "$amount"
            exit 1
        fi
        heartbeat '{"stage":"captured"}'
        printf '{"ok":true,"charge_id":"ch_%s_%s","amount":%s}\n' \
            "$SHARDFLOW_WORKFLOW_ID" "$SHARDFLOW_ATTEMPT" "$amount"
        ;;
    ship)
        printf '{"tracking":"trk_%s"}\n' "$SHARDFLOW_WORKFLOW_ID"
        ;;
    email)
        printf '{"sent":true}\n'
        ;;
    *)
        echo "order_worker.sh: unknown activity \"$SHARDFLOW_ACTIVITY\"" >&2
        exit 1
        ;;
esac
