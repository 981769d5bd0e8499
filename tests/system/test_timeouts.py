#!/usr/bin/env python3
"""test_timeouts.py - every timeout kind against SPEC.md.

A timeout is failure type "Timeout" with its kind in the message, recorded
as ActivityTimedOut (attempt, failure) in history and retried as far as the
step's retry policy allows:

- schedule_to_start: no worker polls the queue; each attempt times out,
  max_attempts 2 -> the step fails at attempt 2;
- start_to_close: the command sleeps too long; max_attempts 2 -> fails at
  attempt 2; a second definition whose attempt 2 is quick completes, and the
  late result of attempt 1 changes nothing;
- schedule_to_close: caps all attempts of a running command, and fires
  during a backoff (the step fails without waiting for the next attempt);
- heartbeat: a command silent on fd 3 times out; one that writes a line to
  fd 3 every 100 ms outlives its heartbeat timeout;
- workflow timeout: status timed_out, failure {Timeout, "workflow", step
  null}, open and pending steps canceled, WorkflowTimedOut last, the running
  command told to stop.
"""
import glob
import os
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sfharness import (Suite, events_of, kill_group_of,  # noqa: E402
                       pid_alive, rfc3339_to_epoch, step_events,
                       steps_by_id, wait_for)

S = Suite("test_timeouts")
E = S.new_env()
ctx = {}

FAST_RETRY2 = {"max_attempts": 2, "initial_interval": "100ms",
               "backoff": 2.0}

DEFS = [
    {"name": "to_s2s", "queue": "q_nobody", "retry": FAST_RETRY2,
     "steps": [{"id": "a", "activity": "never_polled",
                "timeouts": {"schedule_to_start": "300ms"}}]},
    {"name": "to_s2c", "queue": "q_to", "retry": FAST_RETRY2,
     "steps": [{"id": "a", "activity": "sleepy",
                "timeouts": {"start_to_close": "400ms"}}]},
    {"name": "to_s2c_retry", "queue": "q_to", "retry": FAST_RETRY2,
     "steps": [{"id": "a", "activity": "slow_then_ok",
                "timeouts": {"start_to_close": "1500ms"}}]},
    {"name": "to_cap_running", "queue": "q_to",
     "retry": {"max_attempts": 5, "initial_interval": "100ms"},
     "steps": [{"id": "a", "activity": "sleepy",
                "timeouts": {"schedule_to_close": "800ms"}}]},
    {"name": "to_cap_backoff", "queue": "q_to",
     "retry": {"max_attempts": 0, "initial_interval": "400ms",
               "backoff": 4.0},
     "steps": [{"id": "a", "activity": "fail",
                "timeouts": {"schedule_to_close": "1200ms"}}]},
    {"name": "to_hb", "queue": "q_to", "retry": FAST_RETRY2,
     "steps": [{"id": "a", "activity": "silent",
                "timeouts": {"heartbeat": "500ms"}}]},
    {"name": "to_hb_alive", "queue": "q_to", "retry": {"max_attempts": 1},
     "steps": [{"id": "a", "activity": "beating",
                "timeouts": {"heartbeat": "500ms"}}]},
    {"name": "to_wf", "queue": "q_to", "timeout": "1500ms",
     "steps": [{"id": "a", "activity": "hb_forever",
                "timeouts": {"heartbeat": "5s"}},
               {"id": "b", "activity": "fail"}]},
]

WORKER = r"""
m=%s
wid=$SHARDFLOW_WORKFLOW_ID
echo "$SHARDFLOW_ATTEMPT $$" >> "$m/$wid.attempts"
case "$SHARDFLOW_ACTIVITY" in
  sleepy)
    sleep 20 ;;
  slow_then_ok)
    if [ "$SHARDFLOW_ATTEMPT" = 1 ]; then
      sleep 2.2; echo '{"from":1}'
    else
      sleep 0.9; echo '{"from":2}'
    fi ;;
  fail)
    echo "fail $SHARDFLOW_ATTEMPT" >&2; exit 1 ;;
  silent)
    sleep 20 ;;
  beating)
    for i in $(seq 1 15); do echo '{"i":'$i'}' >&3; sleep 0.1; done
    echo '{"beats":15}' ;;
  hb_forever)
    trap 'touch "$m/$wid.term"; exit 143' TERM
    for i in $(seq 1 200); do echo '{"i":'$i'}' >&3; sleep 0.1; done ;;
  *)
    echo "unknown activity $SHARDFLOW_ACTIVITY" >&2; exit 1 ;;
esac
"""


def setup():
    n = E.node()
    ctx["node"] = n
    E.register(n, DEFS)
    ctx["marks"] = E.mkdir("marks")
    script = E.script("act.sh", WORKER % ctx["marks"])
    # many slots: attempts that timed out may keep sleeping for a while
    ctx["worker"] = E.worker(n, "q_to", script, concurrency=16,
                             extra=["--grace", "1s"])
    ctx["worker"].wait_connected()
    S.check(True, "node, %d definitions, worker on q_to" % len(DEFS))


def run_to_end(wid, name, timeout=30):
    """Start `name` as wid and wait for its outcome; returns (result,
    describe, history)."""
    n = ctx["node"]
    n.cli("wf", "start", name, "--id", wid, check=0)
    r = n.cli("wf", "result", wid, "--wait", timeout=timeout)
    d = n.cli("wf", "describe", wid).out
    h = n.cli("wf", "history", wid).out
    return r, (d if isinstance(d, dict) else {}), h


def attempts_seen(wid):
    try:
        with open(os.path.join(ctx["marks"], wid + ".attempts")) as f:
            return [int(line.split()[0]) for line in f if line.strip()]
    except OSError:
        return []


def attempt_pids(wid):
    res = {}
    try:
        with open(os.path.join(ctx["marks"], wid + ".attempts")) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2:
                    res[int(parts[0])] = int(parts[1])
    except OSError:
        pass
    return res


def check_timed_out_step(r, d, h, kind, attempts):
    """The run failed because step a timed out (kind) at attempt
    `attempts`, each attempt recorded as ActivityTimedOut."""
    out = r.out if isinstance(r.out, dict) else {}
    S.eq(r.rc, 1, "%s: wf result --wait exits 1" % kind)
    S.eq(out.get("status"), "failed", "%s: run failed" % kind)
    f = out.get("failure") or {}
    S.check(f.get("type") == "Timeout" and kind in str(f.get("message"))
            and f.get("step") == "a",
            "%s: run failure {Timeout, message names %s, step a}"
            % (kind, kind), out)
    a = steps_by_id(d).get("a", {})
    sf = a.get("failure") or {}
    S.check(a.get("status") == "failed" and sf.get("type") == "Timeout"
            and kind in str(sf.get("message")),
            "%s: describe step a failed with Timeout/%s" % (kind, kind), a)
    S.eq(a.get("attempt"), attempts,
         "%s: describe step a attempt %d" % (kind, attempts))
    tos = step_events(h, "a", "ActivityTimedOut")
    S.eq([e.get("attempt") for e in tos], list(range(1, attempts + 1)),
         "%s: one ActivityTimedOut per attempt" % kind)
    S.check(all((e.get("failure") or {}).get("type") == "Timeout"
                and kind in str((e.get("failure") or {}).get("message"))
                for e in tos),
            "%s: each ActivityTimedOut carries failure Timeout/%s"
            % (kind, kind), tos)
    types = [e.get("type") for e in events_of(h)]
    S.eq(types[-1:], ["WorkflowFailed"], "%s: WorkflowFailed last" % kind)


def schedule_to_start():
    t0 = time.monotonic()
    r, d, h = run_to_end("s2s-1", "to_s2s")
    took = time.monotonic() - t0
    check_timed_out_step(r, d, h, "schedule_to_start", 2)
    S.check(0.6 <= took < 10, "two 300 ms schedule_to_start timeouts + "
            "100 ms backoff took %.2f s" % took)
    types = [e.get("type") for e in events_of(h)]
    S.check("ActivityStarted" not in types, "no ActivityStarted (nobody "
            "polls q_nobody)", types)
    sched = step_events(h, "a", "StepScheduled")
    S.eq([e.get("attempt") for e in sched], [1, 2],
         "StepScheduled for attempts 1 and 2")


def start_to_close():
    r, d, h = run_to_end("s2c-1", "to_s2c")
    check_timed_out_step(r, d, h, "start_to_close", 2)
    S.eq(attempts_seen("s2c-1"), [1, 2],
         "the command ran for attempts 1 and 2 (SHARDFLOW_ATTEMPT)")
    started = step_events(h, "a", "ActivityStarted")
    tos = step_events(h, "a", "ActivityTimedOut")
    if len(started) == 2 and len(tos) == 2:
        for s_ev, t_ev in zip(started, tos):
            gap = (rfc3339_to_epoch(t_ev.get("time"))
                   - rfc3339_to_epoch(s_ev.get("time")))
            S.check(gap >= 0.36, "attempt %s timed out %.3f s after it "
                    "started (start_to_close 400ms)"
                    % (t_ev.get("attempt"), gap))


def start_to_close_retried():
    r, d, h = run_to_end("s2c-2", "to_s2c_retry")
    out = r.out if isinstance(r.out, dict) else {}
    S.check(r.rc == 0 and out.get("status") == "completed",
            "attempt 1 timed out, attempt 2 completed the run", r.describe())
    S.eq(out.get("output"), {"from": 2},
         "the output is attempt 2's; attempt 1's late result is ignored")
    a = steps_by_id(d).get("a", {})
    S.eq((a.get("status"), a.get("attempt")), ("completed", 2),
         "describe: step a completed at attempt 2")
    S.eq((a.get("failure") or {}).get("type"), "Timeout",
         "describe keeps the last failure (attempt 1's Timeout)")
    evs = [(e.get("type"), e.get("attempt"))
           for e in step_events(h, "a", "ActivityTimedOut",
                                "ActivityCompleted", "ActivityFailed")]
    S.eq(evs, [("ActivityTimedOut", 1), ("ActivityCompleted", 2)],
         "history: ActivityTimedOut(1), ActivityCompleted(2), nothing from "
         "the late attempt 1")
    # attempt 1 (2.2 s) ended before attempt 2 (started after 1.6 s, runs
    # 0.9 s) could: its late result reached the node while attempt 2 ran,
    # and the output above is still attempt 2's.
    pids = attempt_pids("s2c-2")
    S.check(1 in pids and not pid_alive(pids[1]),
            "attempt 1's command had exited before the run completed", pids)


def schedule_to_close_running():
    t0 = time.monotonic()
    r, d, h = run_to_end("stc-1", "to_cap_running")
    took = time.monotonic() - t0
    out = r.out if isinstance(r.out, dict) else {}
    f = out.get("failure") or {}
    S.check(out.get("status") == "failed" and f.get("type") == "Timeout"
            and "schedule_to_close" in str(f.get("message"))
            and f.get("step") == "a",
            "a running attempt is capped: failed Timeout/schedule_to_close",
            out)
    a = steps_by_id(d).get("a", {})
    S.eq((a.get("status"), a.get("attempt")), ("failed", 1),
         "step a failed at attempt 1 though max_attempts is 5")
    tos = step_events(h, "a", "ActivityTimedOut")
    S.check(len(tos) == 1 and "schedule_to_close"
            in str((tos[0].get("failure") or {}).get("message")),
            "one ActivityTimedOut naming schedule_to_close", tos)
    S.check(0.75 <= took < 8, "gave up after %.2f s (schedule_to_close "
            "800ms)" % took)
    S.eq(len(step_events(h, "a", "StepScheduled")), 1,
         "no further attempt was scheduled")


def schedule_to_close_backoff():
    # attempt 1 fails at once; backoff 400ms; attempt 2 fails at ~0.4 s;
    # the next backoff is 1.6 s, so schedule_to_close (1.2 s) expires
    # during it: the step fails then, without an attempt 3.
    r, d, h = run_to_end("stc-2", "to_cap_backoff")
    out = r.out if isinstance(r.out, dict) else {}
    f = out.get("failure") or {}
    S.check(out.get("status") == "failed" and f.get("type") == "Timeout"
            and "schedule_to_close" in str(f.get("message"))
            and f.get("step") == "a",
            "during a backoff: failed Timeout/schedule_to_close", out)
    evs = [(e.get("type"), e.get("attempt"))
           for e in step_events(h, "a", "StepScheduled", "ActivityFailed",
                                "ActivityTimedOut")]
    S.eq(evs, [("StepScheduled", 1), ("ActivityFailed", 1),
               ("StepScheduled", 2), ("ActivityFailed", 2),
               ("ActivityTimedOut", 2)],
         "history: two failed attempts, then the schedule_to_close timeout "
         "(no attempt 3)")
    first = step_events(h, "a", "StepScheduled")
    tos = step_events(h, "a", "ActivityTimedOut")
    if first and tos:
        span = (rfc3339_to_epoch(tos[-1].get("time"))
                - rfc3339_to_epoch(first[0].get("time")))
        S.check(1.1 <= span < 2.0, "timed out %.3f s after the first "
                "schedule (1.2 s; attempt 3 would be due at 2.0 s)" % span)
    S.eq(attempts_seen("stc-2"), [1, 2], "the command ran twice")
    a = steps_by_id(d).get("a", {})
    S.eq((a.get("status"), a.get("attempt"),
          (a.get("failure") or {}).get("type")),
         ("failed", 2, "Timeout"),
         "describe: step a failed, attempt 2, failure Timeout")


def heartbeat():
    r, d, h = run_to_end("hb-1", "to_hb")
    check_timed_out_step(r, d, h, "heartbeat", 2)
    S.eq(attempts_seen("hb-1"), [1, 2],
         "the silent command ran for attempts 1 and 2")


def heartbeat_alive():
    r, d, h = run_to_end("hb-2", "to_hb_alive")
    out = r.out if isinstance(r.out, dict) else {}
    S.check(r.rc == 0 and out.get("output") == {"beats": 15},
            "a command beating every 100 ms runs 1.5 s past a 500ms "
            "heartbeat timeout and completes", r.describe())
    S.eq(step_events(h, "a", "ActivityTimedOut"), [],
         "no ActivityTimedOut")
    a = steps_by_id(d).get("a", {})
    S.eq(a.get("heartbeat_details"), {"i": 15},
         "describe: heartbeat_details is the last line written to fd 3")


def workflow_timeout():
    n = ctx["node"]
    t0 = time.monotonic()
    n.cli("wf", "start", "to_wf", "--id", "wft-1", check=0)
    wait_for(lambda: attempts_seen("wft-1"), 10,
             what="the activity of wft-1 to start")
    r = n.cli("wf", "result", "wft-1", "--wait", timeout=30)
    took = time.monotonic() - t0
    out = r.out if isinstance(r.out, dict) else {}
    S.eq(r.rc, 1, "wf result of a timed-out run exits 1")
    S.eq(out.get("status"), "timed_out", "status timed_out")
    f = out.get("failure") or {}
    S.eq((f.get("type"), f.get("message"), f.get("step", "absent")),
         ("Timeout", "workflow", None),
         "failure {type Timeout, message workflow, step null}")
    S.check(1.4 <= took < 10, "timed out after %.2f s (timeout 1500ms)"
            % took)
    d = n.cli("wf", "describe", "wft-1").out or {}
    st = steps_by_id(d)
    S.eq((d.get("status"), st.get("a", {}).get("status"),
          st.get("b", {}).get("status")),
         ("timed_out", "canceled", "canceled"),
         "describe: timed_out; the running and the pending step canceled")
    s0, s1 = (rfc3339_to_epoch(d.get("started_at")),
              rfc3339_to_epoch(d.get("closed_at")))
    S.check(s0 is not None and s1 is not None and 1.45 <= s1 - s0 < 5,
            "closed_at - started_at = %s s" % (
                None if s0 is None or s1 is None else round(s1 - s0, 3)))
    h = n.cli("wf", "history", "wft-1").out
    evs = events_of(h)
    S.eq([e.get("type") for e in evs][-1:], ["WorkflowTimedOut"],
         "WorkflowTimedOut is the last event")
    last = evs[-1] if evs else {}
    S.check((last.get("failure") or {}).get("type") == "Timeout",
            "WorkflowTimedOut carries failure Timeout", last)
    wait_for(lambda: os.path.exists(os.path.join(ctx["marks"],
                                                 "wft-1.term")),
             15, what="the running command to get SIGTERM after the "
             "workflow timeout")
    S.check(True, "the running command was told to stop (SIGTERM)")


def cleanup():
    rc = ctx["worker"].stop(timeout=15)
    S.eq(rc, 0, "worker exits 0 on SIGTERM")
    # attempts that timed out may still be sleeping in their own groups
    for path in glob.glob(os.path.join(ctx["marks"], "*.attempts")):
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2:
                    kill_group_of(int(parts[1]))


S.run([
    ("node, definitions, worker", setup, True),
    ("schedule_to_start: nobody polls", schedule_to_start),
    ("start_to_close: too slow twice", start_to_close),
    ("start_to_close: retried, attempt 2 completes", start_to_close_retried),
    ("schedule_to_close caps a running attempt", schedule_to_close_running),
    ("schedule_to_close during a backoff", schedule_to_close_backoff),
    ("heartbeat: silent on fd 3", heartbeat),
    ("heartbeat: beating keeps it alive", heartbeat_alive),
    ("workflow timeout", workflow_timeout),
    ("worker stop and leftovers", cleanup),
])
