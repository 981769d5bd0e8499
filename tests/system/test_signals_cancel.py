#!/usr/bin/env python3
"""test_signals_cancel.py - signals, cancel and terminate against SPEC.md.

- a signal sent before its wait_signal step is reached is buffered and
  taken when the step is reached;
- two signals of one name are taken in arrival order by two wait_signal
  steps; signals.NAME is the newest payload;
- `wf cancel --reason R` of a run whose activity is running -> canceled,
  failure {"type":"Canceled","message":R}, history CancelRequested then
  WorkflowCanceled, the open step canceled, the running command told to
  stop (SIGTERM to its process group);
- `wf terminate --reason T` -> terminated, failure type Terminated;
- a signal to a closed run -> exit 1 code closed, nothing changes;
- a wait_signal timeout fails the step with Timeout.
"""
import os
import sys
import threading

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sfharness import Suite, events_of, steps_by_id, wait_for  # noqa: E402

S = Suite("test_signals_cancel")
E = S.new_env()
ctx = {}

DEFS = [
    {"name": "buffered", "steps": [
        {"id": "nap", "sleep": "1500ms"},
        {"id": "w", "wait_signal": "go"}],
     "output": {"got": "${steps.w.output}", "sig": "${signals.go}"}},
    {"name": "twosig", "steps": [
        {"id": "w1", "wait_signal": "item"},
        {"id": "w2", "wait_signal": "item"}],
     "output": {"first": "${steps.w1.output}",
                "second": "${steps.w2.output}",
                "last": "${signals.item}"}},
    {"name": "longact", "queue": "q_long", "steps": [
        {"id": "slow", "activity": "slow",
         "timeouts": {"heartbeat": "10s"}},
        {"id": "never", "activity": "slow"}]},
    {"name": "sigtimeout", "steps": [
        {"id": "w", "wait_signal": "late", "timeout": "300ms"}]},
]


def setup():
    n = E.node()
    ctx["node"] = n
    E.register(n, DEFS)
    # a long activity: marks that it started, heartbeats on fd 3, and
    # records SIGTERM.
    ctx["marks"] = E.mkdir("marks")
    script = E.script("slow.sh", """
m=%s
trap 'touch "$m/termed.$SHARDFLOW_WORKFLOW_ID"; exit 143' TERM
touch "$m/started.$SHARDFLOW_WORKFLOW_ID"
for i in $(seq 1 600); do
  echo '{"beat":'$i'}' >&3
  sleep 0.1
done
echo '{"finished":true}'
""" % ctx["marks"])
    ctx["worker"] = E.worker(n, "q_long", script, concurrency=4)
    S.check(True, "node, definitions, worker")


def buffered():
    n = ctx["node"]
    n.cli("wf", "start", "buffered", "--id", "buf-1", check=0)
    r = n.cli("wf", "signal", "buf-1", "go", "--input", '{"k": 1}')
    S.cli_ok(r, "signal go while the run is still in its sleep step")
    d = n.cli("wf", "describe", "buf-1").out
    st = steps_by_id(d)
    S.eq((st.get("nap", {}).get("status"), st.get("w", {}).get("status")),
         ("started", "pending"),
         "when the signal arrived, nap was started and w still pending")
    r = n.cli("wf", "result", "buf-1", "--wait", timeout=30)
    S.check(r.rc == 0 and isinstance(r.out, dict)
            and r.out.get("status") == "completed",
            "the run completes without another signal", r.describe())
    S.eq(r.out.get("output") if isinstance(r.out, dict) else None,
         {"got": {"k": 1}, "sig": {"k": 1}},
         "the buffered signal's payload is the step output")
    evs = events_of(n.cli("wf", "history", "buf-1").out)
    types = [e.get("type") for e in evs]
    S.check("SignalReceived" in types and "TimerFired" in types
            and types.index("SignalReceived") < types.index("TimerFired"),
            "history: SignalReceived before the sleep's TimerFired", types)
    sig = [e for e in evs if e.get("type") == "SignalReceived"]
    S.check(len(sig) == 1, "one SignalReceived event", sig)
    w = steps_by_id(n.cli("wf", "describe", "buf-1").out).get("w", {})
    S.eq((w.get("status"), w.get("attempt"), w.get("output")),
         ("completed", 1, {"k": 1}),
         "wait_signal step completed, attempt 1, output = payload")


def two_signals():
    n = ctx["node"]
    n.cli("wf", "start", "twosig", "--id", "two-1", check=0)
    S.cli_ok(n.cli("wf", "signal", "two-1", "item", "--input", '{"n": 1}'),
             "signal item #1")
    S.cli_ok(n.cli("wf", "signal", "two-1", "item", "--input", '{"n": 2}'),
             "signal item #2")
    r = n.cli("wf", "result", "two-1", "--wait", timeout=30)
    S.check(r.rc == 0 and isinstance(r.out, dict)
            and r.out.get("status") == "completed",
            "two-signal run completes", r.describe())
    S.eq(r.out.get("output") if isinstance(r.out, dict) else None,
         {"first": {"n": 1}, "second": {"n": 2}, "last": {"n": 2}},
         "signals taken in arrival order; signals.item is the newest")
    # a signal with no input: payload null
    n.cli("wf", "start", "twosig", "--id", "two-2", check=0)
    S.cli_ok(n.cli("wf", "signal", "two-2", "item"), "signal without input")
    S.cli_ok(n.cli("wf", "signal", "two-2", "item", "--input", '"x"'),
             "signal with a string payload")
    r = n.cli("wf", "result", "two-2", "--wait", timeout=30)
    S.eq(r.out.get("output") if isinstance(r.out, dict) else r.describe(),
         {"first": None, "second": "x", "last": "x"},
         "a signal without --input carries null")


def cancel():
    n = ctx["node"]
    n.cli("wf", "start", "longact", "--id", "can-1", check=0)
    wait_for(lambda: os.path.exists(os.path.join(ctx["marks"],
                                                 "started.can-1")),
             20, what="the long activity to start")
    d = n.cli("wf", "describe", "can-1").out
    S.eq(steps_by_id(d).get("slow", {}).get("status"), "started",
         "describe: the activity step is started")
    S.cli_ok(n.cli("wf", "cancel", "can-1", "--reason", "R"),
             "wf cancel can-1 --reason R")
    r = n.cli("wf", "result", "can-1", "--wait", timeout=30)
    S.eq(r.rc, 1, "wf result of a canceled run exits 1 (did not complete)")
    out = r.out if isinstance(r.out, dict) else {}
    S.eq(out.get("status"), "canceled", "status canceled")
    f = out.get("failure") or {}
    S.eq((f.get("type"), f.get("message")), ("Canceled", "R"),
         "failure {type: Canceled, message: R}")
    S.eq(f.get("step", "absent"), None, "failure step null for a cancel")
    S.eq(out.get("output"), None, "output null")
    d = n.cli("wf", "describe", "can-1").out or {}
    st = steps_by_id(d)
    S.eq((d.get("status"), st.get("slow", {}).get("status"),
          st.get("never", {}).get("status")),
         ("canceled", "canceled", "canceled"),
         "describe: run canceled, open and pending steps canceled")
    S.check(isinstance(d.get("closed_at"), str),
            "closed_at set", d.get("closed_at"))
    evs = events_of(n.cli("wf", "history", "can-1").out)
    types = [e.get("type") for e in evs]
    S.check("CancelRequested" in types and "WorkflowCanceled" in types
            and types.index("CancelRequested")
            < types.index("WorkflowCanceled"),
            "history: CancelRequested then WorkflowCanceled", types)
    S.eq(types[-1:], ["WorkflowCanceled"], "WorkflowCanceled is last")
    closing = [e for e in evs if e.get("type") == "WorkflowCanceled"]
    S.check(closing and any(v == "R" for v in closing[0].values()),
            "the reason R is in the closing event", closing)
    S.check("ActivityCompleted" not in types,
            "no ActivityCompleted recorded", types)
    wait_for(lambda: os.path.exists(os.path.join(ctx["marks"],
                                                 "termed.can-1")),
             20, what="the running command to get SIGTERM after cancel")
    S.check(True, "the running command got SIGTERM")
    # its late result changes nothing
    d2 = n.cli("wf", "describe", "can-1").out
    S.eq(d2, d, "describe unchanged after the command stopped")


def terminate():
    n = ctx["node"]
    n.cli("wf", "start", "longact", "--id", "term-1", check=0)
    wait_for(lambda: os.path.exists(os.path.join(ctx["marks"],
                                                 "started.term-1")),
             20, what="the long activity to start")
    S.cli_ok(n.cli("wf", "terminate", "term-1", "--reason", "T2"),
             "wf terminate term-1 --reason T2")
    r = n.cli("wf", "result", "term-1", "--wait", timeout=30)
    out = r.out if isinstance(r.out, dict) else {}
    S.eq(r.rc, 1, "wf result of a terminated run exits 1")
    S.eq(out.get("status"), "terminated", "status terminated")
    f = out.get("failure") or {}
    S.eq((f.get("type"), f.get("message")), ("Terminated", "T2"),
         "failure {type: Terminated, message: T2}")
    evs = events_of(n.cli("wf", "history", "term-1").out)
    types = [e.get("type") for e in evs]
    S.eq(types[-1:], ["WorkflowTerminated"], "last event WorkflowTerminated")
    S.check(any(v == "T2" for v in (evs[-1] if evs else {}).values()),
            "the reason T2 is in WorkflowTerminated", evs[-1:])
    wait_for(lambda: os.path.exists(os.path.join(ctx["marks"],
                                                 "termed.term-1")),
             20, what="the running command to get SIGTERM after terminate")
    S.check(True, "the running command got SIGTERM")
    # terminate of a closed run
    S.cli_err(n.cli("wf", "terminate", "term-1"), 1, "closed",
              "terminate of a closed run -> exit 1 closed")


def closed_signal():
    n = ctx["node"]
    for wid in ("can-1", "term-1", "two-1"):
        h0 = n.cli("wf", "history", wid).out
        r = n.cli("wf", "signal", wid, "go", "--input", "1")
        S.cli_err(r, 1, "closed", "signal to closed %s -> exit 1 closed"
                  % wid)
        S.check(bool(r.error_message()), "with a message", r.describe())
        S.eq(n.cli("wf", "history", wid).out, h0,
             "history of %s unchanged" % wid)
    r = n.cli("wf", "signal", "can-1", "go", json=False)
    S.check(r.rc == 1 and r.stderr.strip() != "",
            "human: exit 1 and a message on stderr", r.describe())


def signal_timeout():
    n = ctx["node"]
    r = n.cli("wf", "start", "sigtimeout", "--id", "st-1", "--wait",
              timeout=30)
    out = r.out if isinstance(r.out, dict) else {}
    S.eq(r.rc, 1, "a run whose wait_signal times out: exit 1")
    S.eq(out.get("status"), "failed", "status failed")
    f = out.get("failure") or {}
    S.check(f.get("type") == "Timeout" and "wait_signal" in
            str(f.get("message")) and f.get("step") == "w",
            "failure Timeout naming wait_signal, step w", out)


def wait_unblocks():
    """`wf result --wait` on a running run returns when it is canceled."""
    n = ctx["node"]
    n.cli("wf", "start", "twosig", "--id", "wb-1", check=0)
    box = {}
    t = threading.Thread(target=lambda: box.setdefault(
        "r", n.cli("wf", "result", "wb-1", "--wait", timeout=30)))
    t.start()
    n.cli("wf", "cancel", "wb-1", "--reason", "bye", check=0)
    t.join(35)
    r = box.get("r")
    S.check(r is not None and r.rc == 1 and isinstance(r.out, dict)
            and r.out.get("status") == "canceled",
            "a waiting `wf result --wait` returns canceled",
            r.describe() if r else "no result")


def shutdown():
    rc = ctx["worker"].stop(timeout=15)
    S.eq(rc, 0, "worker exits 0 on SIGTERM")


S.run([
    ("node, definitions, worker", setup, True),
    ("a signal before its step is buffered", buffered),
    ("two signals taken in order", two_signals),
    ("cancel a running activity", cancel),
    ("terminate", terminate),
    ("signals to closed runs", closed_signal),
    ("wait_signal timeout", signal_timeout),
    ("result --wait returns on cancel", wait_unblocks),
    ("worker stop", shutdown),
])
