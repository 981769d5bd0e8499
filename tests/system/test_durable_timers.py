#!/usr/bin/env python3
"""test_durable_timers.py - deadlines are durable and absolute (SPEC.md).

- a 3 s sleep, a workflow timeout of 3 s and a wait_signal timeout of 3 s
  keep their absolute deadlines across a kill -9 of the node at ~1 s and a
  restart: each fires at about the original deadline (not 3 s after the
  restart): closed no earlier than the deadline and less than 0.5 s after
  it (or after the node is back, if the restart outlasted it) - a deadline
  counted again from the restart would be >= restart + 3 s;
  describe shows the same sleep timer due_at before and after the restart;
  so do a retry backoff (3 s) and a start_to_close (3 s) of activities;
- a 30-day sleep fires when the node's clock jumps: the node runs with
  SHF_CLOCK_OFFSET_FILE (offset 0), describe shows timers[] due ~30 days
  ahead, the timer survives a kill -9 and restart, and once the offset
  becomes 30 days + 1 minute the run completes within seconds.
"""
import os
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sfharness import (Suite, event_types, kill_group_of,  # noqa: E402
                       rfc3339_to_epoch, step_events, steps_by_id,
                       wait_for)

S = Suite("test_durable_timers")
E = S.new_env()
ctx = {}

DAY_MS = 24 * 3600 * 1000

DEFS = [
    {"name": "dt_sleep", "steps": [{"id": "nap", "sleep": "3s"}]},
    {"name": "dt_wftimeout", "timeout": "3s",
     "steps": [{"id": "w", "wait_signal": "never"}]},
    {"name": "dt_sigtimeout",
     "steps": [{"id": "w", "wait_signal": "never", "timeout": "3s"}]},
    {"name": "dt_backoff", "queue": "q_dt",
     "retry": {"max_attempts": 2, "initial_interval": "3s"},
     "steps": [{"id": "a", "activity": "fail_once"}]},
    {"name": "dt_s2c", "queue": "q_dt", "retry": {"max_attempts": 1},
     "steps": [{"id": "a", "activity": "hang",
                "timeouts": {"start_to_close": "3s"}}]},
    {"name": "dt_month", "steps": [{"id": "nap", "sleep": "30d"},
                                   {"id": "after", "sleep": "100ms"}]},
]

SHORT = [("ds-1", "dt_sleep"), ("dw-1", "dt_wftimeout"),
         ("dg-1", "dt_sigtimeout")]
ACTS = [("db-1", "dt_backoff"), ("dc-1", "dt_s2c")]

WORKER = r"""
m=%s
echo $$ >> "$m/pids"
case "$SHARDFLOW_ACTIVITY" in
  fail_once)
    if [ "$SHARDFLOW_ATTEMPT" = 1 ]; then echo "once" >&2; exit 1; fi
    echo '{"attempt":'$SHARDFLOW_ATTEMPT'}' ;;
  hang)
    sleep 15 ;;
esac
"""


def register(n):
    E.register(n, DEFS)


def timer_due(d, step):
    for t in (d or {}).get("timers") or []:
        if isinstance(t, dict) and t.get("step") == step:
            return t.get("due_at")
    return None


def setup():
    n = E.node()
    ctx["node"] = n
    register(n)
    ctx["marks"] = E.mkdir("marks")
    ctx["worker"] = E.worker(n, "q_dt", E.script("act.sh", WORKER
                                                 % ctx["marks"]),
                             extra=["--grace", "1s"])
    ctx["worker"].wait_connected()
    S.check(True, "node, definitions, worker on q_dt")


def survive_kill9():
    n = ctx["node"]
    starts = {}
    for wid, name in SHORT:
        n.cli("wf", "start", name, "--id", wid, check=0)
        d = n.cli("wf", "describe", wid).out or {}
        starts[wid] = rfc3339_to_epoch(d.get("started_at"))
    d = n.cli("wf", "describe", "ds-1").out or {}
    nap = steps_by_id(d).get("nap", {})
    S.eq((nap.get("status"), nap.get("attempt")), ("started", 1),
         "the sleep step is started, attempt 1")
    due = timer_due(d, "nap")
    due_s = rfc3339_to_epoch(due)
    S.check(due_s is not None and starts["ds-1"] is not None
            and abs(due_s - (starts["ds-1"] + 3.0)) < 0.5,
            "describe: timers[] has nap due_at ~ started_at + 3 s",
            d.get("timers"))
    for wid, name in ACTS:
        n.cli("wf", "start", name, "--id", wid, check=0)
    # deadlines of the activities: attempt 1's failure + 3 s backoff;
    # attempt 1's start + 3 s start_to_close
    ends = {}

    def act_times():
        hb = n.cli("wf", "history", "db-1").out
        hc = n.cli("wf", "history", "dc-1").out
        f = step_events(hb, "a", "ActivityFailed")
        st = step_events(hc, "a", "ActivityStarted")
        if f and st:
            ends["db-1"] = rfc3339_to_epoch(f[0].get("time")) + 3.0
            ends["dc-1"] = rfc3339_to_epoch(st[0].get("time")) + 3.0
            return True
        return False
    wait_for(act_times, 5, what="db-1 attempt 1 failed, dc-1 started")
    # let about a second of every deadline pass, then kill -9 and restart:
    # each deadline is then at most restart + 2 s. When the runs started
    # far apart (a slow machine: every start is a CLI process), kill
    # sooner, so that the earliest deadline is still 1 s away.
    anchors = [v for v in starts.values() if v is not None] + \
        [v - 3.0 for v in ends.values()]
    t0 = max(anchors)
    t_kill = min(t0 + 1.0, min(anchors) + 2.0)
    wait_for(lambda: time.time() >= t_kill, 5, what="1 s into the "
             "deadlines")
    n.kill9()
    t_restart = time.time()
    S.check(t_restart < min(anchors) + 2.5, "node killed with SIGKILL "
            "%.2f-%.2f s into the 3 s deadlines"
            % (t_restart - t0, t_restart - min(anchors)))
    ctx["t_restart"] = t_restart
    ctx["ends"] = ends
    n.start()
    ctx["t_ready"] = t_ready = time.time()
    print("       (the node was back %.2f s after the kill)"
          % (t_ready - t_restart))
    d2 = n.cli("wf", "describe", "ds-1").out or {}
    if d2.get("status") == "running":
        S.eq(timer_due(d2, "nap"), due,
             "after the restart the sleep's due_at is unchanged")
    for wid, name in SHORT:
        r = n.cli("wf", "result", wid, "--wait", timeout=30)
        out = r.out if isinstance(r.out, dict) else {}
        d = n.cli("wf", "describe", wid).out or {}
        closed = rfc3339_to_epoch(d.get("closed_at"))
        deadline = (starts[wid] or 0) + 3.0
        if closed is None:
            S.check(False, "%s closed" % wid, d)
            continue
        S.check(closed >= deadline - 0.01,
                "%s (%s) closed %.2f s after its start, not before its 3 s "
                "deadline" % (wid, name, closed - starts[wid]))
        S.check(closed < max(deadline, t_ready) + 0.5,
                "%s closed %.2f s after the restart, %.2f s after its "
                "deadline: the original deadline was kept"
                % (wid, closed - t_restart, closed - deadline))
        if name == "dt_sleep":
            S.eq(out.get("status"), "completed", "ds-1: the sleep completed")
            types = event_types(n.cli("wf", "history", wid).out)
            S.check("TimerStarted" in types and "TimerFired" in types,
                    "ds-1: history TimerStarted, TimerFired", types)
        elif name == "dt_wftimeout":
            S.eq((out.get("status"), (out.get("failure") or {}).get("type"),
                  (out.get("failure") or {}).get("message")),
                 ("timed_out", "Timeout", "workflow"),
                 "dw-1: the workflow timeout fired: timed_out, Timeout "
                 "workflow")
            S.eq(steps_by_id(d).get("w", {}).get("status"), "canceled",
                 "dw-1: the open wait_signal step is canceled")
        else:
            f = out.get("failure") or {}
            S.check(out.get("status") == "failed"
                    and f.get("type") == "Timeout"
                    and "wait_signal" in str(f.get("message"))
                    and f.get("step") == "w",
                    "dg-1: the wait_signal timeout fired: failed, Timeout "
                    "wait_signal, step w", out)


def activity_deadlines():
    """The retry backoff and the start_to_close of activities started
    before the crash fire at their original deadlines too."""
    n = ctx["node"]
    t_restart, t_ready = ctx["t_restart"], ctx["t_ready"]
    sched = wait_for(lambda: step_events(
        n.cli("wf", "history", "db-1").out, "a", "StepScheduled")[1:], 10,
        what="db-1 attempt 2 to be scheduled")
    at = rfc3339_to_epoch(sched[0].get("time"))
    due = ctx["ends"]["db-1"]
    S.check(due - 0.01 <= at < max(due, t_ready) + 0.5,
            "db-1: attempt 2 scheduled %.2f s after attempt 1 failed "
            "(backoff 3s), %.2f s after the restart"
            % (at - (due - 3.0), at - t_restart))
    r = n.cli("wf", "result", "db-1", "--wait", timeout=30)
    S.check(r.rc == 0 and isinstance(r.out, dict)
            and r.out.get("output") == {"attempt": 2},
            "db-1: attempt 2 completed (the worker reconnected)",
            r.describe())
    r = n.cli("wf", "result", "dc-1", "--wait", timeout=30)
    out = r.out if isinstance(r.out, dict) else {}
    f = out.get("failure") or {}
    S.check(out.get("status") == "failed" and f.get("type") == "Timeout"
            and "start_to_close" in str(f.get("message")),
            "dc-1: failed Timeout/start_to_close", out)
    h = n.cli("wf", "history", "dc-1").out
    tos = step_events(h, "a", "ActivityTimedOut")
    due = ctx["ends"]["dc-1"]
    at = rfc3339_to_epoch(tos[0].get("time")) if tos else None
    S.check(at is not None and due - 0.01 <= at < max(due, t_ready) + 0.5,
            "dc-1: timed out at the original start_to_close deadline "
            "(%s s after it, %s s after the restart)"
            % tuple(None if at is None else round(at - x, 2)
                    for x in (due, t_restart)))


def month_sleep():
    offset = E.write("clock_offset", "0")
    n = E.node(env={"SHF_CLOCK_OFFSET_FILE": offset})
    ctx["month_node"] = n
    register(n)
    before = time.time()
    n.cli("wf", "start", "dt_month", "--id", "month-1", check=0)
    d = n.cli("wf", "describe", "month-1").out or {}
    nap = steps_by_id(d).get("nap", {})
    S.eq((d.get("status"), nap.get("status"), nap.get("attempt")),
         ("running", "started", 1), "running; the 30d sleep step started")
    due = timer_due(d, "nap")
    due_s = rfc3339_to_epoch(due)
    want = before + 30 * 86400
    S.check(due_s is not None and abs(due_s - want) < 60,
            "describe: timers[] nap due_at ~30 days ahead (%s)" % due,
            d.get("timers"))
    # the long timer is durable too
    n.restart()
    d = n.cli("wf", "describe", "month-1").out or {}
    S.eq((d.get("status"), timer_due(d, "nap")), ("running", due),
         "after kill -9 and restart: still running, same due_at")
    # jump the node's clock 30 days + 1 minute ahead
    with open(offset, "w") as f:
        f.write("%d\n" % (30 * DAY_MS + 60000))
    t_jump = time.time()
    r = n.cli("wf", "result", "month-1", "--wait", timeout=20)
    took = time.time() - t_jump
    out = r.out if isinstance(r.out, dict) else {}
    S.check(r.rc == 0 and out.get("status") == "completed",
            "the 30-day sleep fired after the clock jump", r.describe())
    S.check(took < 10, "completed %.1f s after the jump (< 10 s)" % took)
    d = n.cli("wf", "describe", "month-1").out or {}
    closed = rfc3339_to_epoch(d.get("closed_at"))
    S.check(closed is not None and due_s is not None and closed >= due_s,
            "closed_at %s is at or after the due_at %s"
            % (d.get("closed_at"), due))
    st = steps_by_id(d)
    S.eq((st.get("nap", {}).get("status"), st.get("after", {}).get("status")),
         ("completed", "completed"), "both sleep steps completed")
    types = event_types(n.cli("wf", "history", "month-1").out)
    S.eq(types.count("TimerFired"), 2, "history: two TimerFired")


def cleanup():
    rc = ctx["worker"].stop(timeout=15)
    S.eq(rc, 0, "worker exits 0 on SIGTERM")
    try:
        with open(os.path.join(ctx["marks"], "pids")) as f:
            for line in f:
                if line.strip():
                    kill_group_of(int(line))
    except OSError:
        pass


S.run([
    ("node and definitions", setup, True),
    ("3 s deadlines across kill -9", survive_kill9),
    ("activity deadlines across kill -9", activity_deadlines),
    ("a 30-day sleep and a clock jump", month_sleep),
    ("worker stop", cleanup),
])
