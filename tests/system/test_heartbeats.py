#!/usr/bin/env python3
"""test_heartbeats.py - heartbeats through the generic worker (SPEC.md).

- lines written to fd 3 are heartbeats: describe shows the step's last
  heartbeat_details while it runs; a command that stops heartbeating is
  timed out after its heartbeat timeout and retried, and the new attempt
  gets the last details in SHARDFLOW_HEARTBEAT_DETAILS (attempt 1 gets
  none); details written just before exit are delivered before the
  result; heartbeats are not history events;
- cancelling a workflow reaches a running, heartbeating command: the
  worker sends its process group SIGTERM (the command traps it, writes a
  marker, exits), and a command that survives SIGTERM is SIGKILLed after
  --grace (1s): its process is gone, no sooner than ~grace after the TERM;
- the worker keeps serving afterwards.
"""
import os
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sfharness import (Suite, event_types, kill_group_of,  # noqa: E402
                       pid_alive, step_events, steps_by_id, wait_for)

S = Suite("test_heartbeats")
E = S.new_env()
ctx = {}

DEFS = [
    {"name": "hb_resume", "queue": "q_hb",
     "retry": {"max_attempts": 3, "initial_interval": "100ms"},
     "steps": [{"id": "work", "activity": "resumable",
                "timeouts": {"heartbeat": "700ms"}}]},
    {"name": "hb_cancel", "queue": "q_hb",
     "steps": [{"id": "work", "activity": "polite",
                "timeouts": {"heartbeat": "5s"}}]},
    {"name": "hb_stubborn", "queue": "q_hb",
     "steps": [{"id": "work", "activity": "stubborn",
                "timeouts": {"heartbeat": "5s"}}]},
    {"name": "hb_quick", "queue": "q_hb",
     "steps": [{"id": "work", "activity": "quick"}]},
]

WORKER = r"""
m=%s
wid=$SHARDFLOW_WORKFLOW_ID
echo $$ > "$m/$wid.pid.$SHARDFLOW_ATTEMPT"
printf '%%s' "${SHARDFLOW_HEARTBEAT_DETAILS-UNSET}" \
  > "$m/$wid.details.$SHARDFLOW_ATTEMPT"
case "$SHARDFLOW_ACTIVITY" in
  resumable)
    if [ -z "$SHARDFLOW_HEARTBEAT_DETAILS" ]; then
      for i in 1 2 3; do echo '{"progress":'$i'}' >&3; sleep 0.1; done
      touch "$m/$wid.silent"
      sleep 20            # silent on fd 3 from now on
    else
      echo '{"progress":4}' >&3
      echo '{"resumed_from":'"$SHARDFLOW_HEARTBEAT_DETAILS"'}'
    fi ;;
  polite)
    trap 'touch "$m/$wid.term"; exit 143' TERM
    for i in $(seq 1 300); do echo '{"beat":'$i'}' >&3; sleep 0.1; done ;;
  stubborn)
    # survives SIGTERM: notes it and carries on (also past SIGPIPE, in
    # case the worker closed fd 3 once it told the command to stop)
    trap 'touch "$m/$wid.term"' TERM
    trap '' PIPE
    for i in $(seq 1 300); do
      echo '{"beat":'$i'}' >&3 2>/dev/null
      sleep 0.1
    done ;;
  quick)
    echo '{"quick":true}' ;;
  *)
    echo "unknown activity $SHARDFLOW_ACTIVITY" >&2; exit 1 ;;
esac
"""


def mark(name):
    return os.path.join(ctx["marks"], name)


def read(name):
    try:
        with open(mark(name)) as f:
            return f.read()
    except OSError:
        return None


def setup():
    n = E.node()
    ctx["node"] = n
    E.register(n, DEFS)
    ctx["marks"] = E.mkdir("marks")
    ctx["pids"] = []
    script = E.script("act.sh", WORKER % ctx["marks"])
    ctx["worker"] = E.worker(n, "q_hb", script, concurrency=4,
                             extra=["--grace", "1s"])
    S.check(True, "node, definitions, worker --grace 1s on q_hb")


def resume():
    n = ctx["node"]
    n.cli("wf", "start", "hb_resume", "--id", "res-1", check=0)
    wait_for(lambda: os.path.exists(mark("res-1.silent")), 15,
             what="attempt 1 to write three heartbeats and fall silent")
    ctx["pids"].append(int(read("res-1.pid.1") or 0))

    def shows_progress3():
        d = n.cli("wf", "describe", "res-1").out
        w = steps_by_id(d).get("work", {})
        if w.get("heartbeat_details") == {"progress": 3}:
            return w
        return None
    w = wait_for(shows_progress3, 10, what="describe to show "
                 "heartbeat_details {progress: 3}")
    S.check(True, "describe: step heartbeat_details {progress: 3} while "
            "attempt %s runs" % w.get("attempt"))
    S.eq((w.get("status"), w.get("attempt")), ("started", 1),
         "the step is started, attempt 1")
    r = n.cli("wf", "result", "res-1", "--wait", timeout=30)
    out = r.out if isinstance(r.out, dict) else {}
    S.check(r.rc == 0 and out.get("status") == "completed",
            "the silent attempt is timed out and attempt 2 completes",
            r.describe())
    S.eq(out.get("output"), {"resumed_from": {"progress": 3}},
         "attempt 2 got SHARDFLOW_HEARTBEAT_DETAILS = the last details")
    S.check(read("res-1.details.1") in ("", "UNSET"),
            "attempt 1 got no SHARDFLOW_HEARTBEAT_DETAILS (%r)"
            % read("res-1.details.1"))
    d = n.cli("wf", "describe", "res-1").out
    w = steps_by_id(d).get("work", {})
    S.eq((w.get("status"), w.get("attempt"), w.get("heartbeat_details")),
         ("completed", 2, {"progress": 4}),
         "describe: completed at attempt 2; details written just before "
         "exit arrived before the result")
    h = n.cli("wf", "history", "res-1").out
    tos = step_events(h, "work", "ActivityTimedOut")
    S.check(len(tos) == 1 and tos[0].get("attempt") == 1
            and (tos[0].get("failure") or {}).get("message") == "heartbeat",
            "history: ActivityTimedOut(attempt 1, heartbeat)", tos)
    S.check(not any("eartbeat" in str(t) for t in event_types(h)),
            "no heartbeat events in history", event_types(h))


def cancel_polite():
    n = ctx["node"]
    n.cli("wf", "start", "hb_cancel", "--id", "can-1", check=0)
    wait_for(lambda: read("can-1.pid.1"), 15,
             what="the polite command to start")
    pid = int(read("can-1.pid.1"))
    ctx["pids"].append(pid)
    S.check(pid_alive(pid), "the command (pid %d) runs" % pid)
    S.cli_ok(n.cli("wf", "cancel", "can-1", "--reason", "stop it"),
             "wf cancel can-1")
    wait_for(lambda: os.path.exists(mark("can-1.term")), 10,
             what="the command to get SIGTERM (its trap's marker)")
    S.check(True, "the cancel reached the command: SIGTERM trapped")
    wait_for(lambda: not pid_alive(pid), 10, what="pid %d to exit" % pid)
    S.check(True, "the command exited")
    d = n.cli("wf", "describe", "can-1").out or {}
    S.eq((d.get("status"), steps_by_id(d).get("work", {}).get("status")),
         ("canceled", "canceled"), "run and step canceled")
    S.check("ActivityCompleted" not in event_types(
        n.cli("wf", "history", "can-1").out),
        "no ActivityCompleted recorded")


def cancel_stubborn():
    n = ctx["node"]
    n.cli("wf", "start", "hb_stubborn", "--id", "stub-1", check=0)
    wait_for(lambda: read("stub-1.pid.1"), 15,
             what="the stubborn command to start")
    pid = int(read("stub-1.pid.1"))
    ctx["pids"].append(pid)
    S.cli_ok(n.cli("wf", "cancel", "stub-1"), "wf cancel stub-1")
    wait_for(lambda: os.path.exists(mark("stub-1.term")), 10,
             what="the stubborn command to get SIGTERM")
    term_at = os.stat(mark("stub-1.term")).st_mtime
    S.check(True, "SIGTERM came first (the trap noted it and carried on)")
    wait_for(lambda: not pid_alive(pid), 10,
             what="pid %d to be SIGKILLed after --grace 1s" % pid)
    gone_at = time.time()
    S.check(gone_at - term_at >= 0.8,
            "the process is gone %.2f s after its SIGTERM (grace 1s)"
            % (gone_at - term_at))
    S.eq((n.cli("wf", "describe", "stub-1").out or {}).get("status"),
         "canceled", "the run is canceled")


def still_serving():
    r = ctx["node"].cli("wf", "start", "hb_quick", "--id", "q-1", "--wait",
                        timeout=30)
    out = r.out if isinstance(r.out, dict) else {}
    S.check(r.rc == 0 and out.get("output") == {"quick": True},
            "the worker still runs tasks", r.describe())
    S.check(ctx["worker"].alive(), "the worker is alive")


def shutdown():
    rc = ctx["worker"].stop(timeout=15)
    S.eq(rc, 0, "worker exits 0 on SIGTERM")
    for pid in ctx["pids"]:
        if pid:
            kill_group_of(pid)


S.run([
    ("node, definitions, worker", setup, True),
    ("a silent attempt is retried with the last details", resume),
    ("cancel reaches a heartbeating command (SIGTERM)", cancel_polite),
    ("a command ignoring SIGTERM is killed after --grace", cancel_stubborn),
    ("the worker keeps serving", still_serving),
    ("worker stop", shutdown),
])
