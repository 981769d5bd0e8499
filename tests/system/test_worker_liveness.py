#!/usr/bin/env python3
"""test_worker_liveness.py - workers that die or stop (SPEC.md).

- a worker killed with SIGKILL while running two tasks: the node notices
  its connection is gone within seconds and fails those attempts with
  failure type WorkerLost; they are retried per the retry policy and
  complete on a second worker well within the steps' 60 s start_to_close
  (so only liveness can explain it);
- graceful stop (SIGTERM to `worker --grace 1s`): the worker stops
  polling, a command still running after the grace is stopped and its task
  handed back: rescheduled at once as a new attempt on another worker
  (the retry policy's 10 s backoff is not waited for) and not counted
  against max_attempts 1; the worker exits 0;
- a worker that stopped gracefully is handed no further task: a run
  started right after it left runs on the next worker, at attempt 1;
- a command that finishes within --grace completes normally on the
  stopping worker; an idle worker exits within about a second;
- a report the node refuses as malformed (raw wire: a complete whose
  output nests too deep) leaves the attempt with its worker: when that
  worker then falls silent it is lost like any other (WorkerLost, retried
  on another worker), not left to its 60 s start_to_close.
"""
import os
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mpack_min  # noqa: E402
from sfharness import (Suite, TestFailure, import_zmq,  # noqa: E402
                       kill_group_of, rfc3339_to_epoch, step_events,
                       steps_by_id, wait_for)

S = Suite("test_worker_liveness")
E = S.new_env()
ctx = {}

DEFS = [
    {"name": "lv_kill", "queue": "q_live",
     "retry": {"max_attempts": 3, "initial_interval": "100ms"},
     "steps": [{"id": "work", "activity": "job",
                "timeouts": {"start_to_close": "60s"}}]},
    {"name": "lv_stop", "queue": "q_stop",
     "retry": {"max_attempts": 1, "initial_interval": "10s"},
     "steps": [{"id": "work", "activity": "job",
                "timeouts": {"start_to_close": "60s"}}]},
    {"name": "lv_raw", "queue": "q_raw",
     "retry": {"max_attempts": 3, "initial_interval": "100ms"},
     "steps": [{"id": "work", "activity": "job",
                "timeouts": {"start_to_close": "60s"}}]},
    {"name": "lv_short", "queue": "q_short",
     "retry": {"max_attempts": 1},
     "steps": [{"id": "work", "activity": "short"}]},
]

# Worker "w1" instances hold on to `job` (60 s, no heartbeats); any other
# worker does it at once. Each run is noted as "WNAME ATTEMPT PID".
WORKER = r"""
m=%s
wid=$SHARDFLOW_WORKFLOW_ID
echo "$WNAME $SHARDFLOW_ATTEMPT $$" >> "$m/$wid.runs"
case "$SHARDFLOW_ACTIVITY" in
  job)
    if [ "$WNAME" = w1 ]; then
      trap 'touch "$m/$wid.term.$WNAME"; exit 143' TERM
      sleep 60 & wait $!
      exit 0
    fi
    echo '{"worker":"'$WNAME'","attempt":'$SHARDFLOW_ATTEMPT'}' ;;
  short)
    trap 'touch "$m/$wid.term.$WNAME"' TERM
    sleep 1.5
    echo '{"worker":"'$WNAME'","finished":true}' ;;
  *)
    echo "unknown activity $SHARDFLOW_ACTIVITY" >&2; exit 1 ;;
esac
"""


def runs(wid):
    """[(worker name, attempt, pid)] as the command noted them."""
    res = []
    try:
        with open(os.path.join(ctx["marks"], wid + ".runs")) as f:
            for line in f:
                p = line.split()
                if len(p) == 3:
                    res.append((p[0], int(p[1]), int(p[2])))
    except OSError:
        pass
    return res


def worker(name, queue="q_live", grace="1s", concurrency=2):
    w = E.worker(ctx["node"], queue, ctx["script"], concurrency=concurrency,
                 env={"WNAME": name}, extra=["--grace", grace])
    w.wait_connected()
    return w


def setup():
    n = E.node()
    ctx["node"] = n
    E.register(n, DEFS)
    ctx["marks"] = E.mkdir("marks")
    ctx["script"] = E.script("act.sh", WORKER % ctx["marks"])
    S.check(True, "node and definitions")


def killed_worker():
    n = ctx["node"]
    w1 = worker("w1")
    for wid in ("kill-1", "kill-2"):
        n.cli("wf", "start", "lv_kill", "--id", wid, check=0)
    wait_for(lambda: runs("kill-1") and runs("kill-2"), 15,
             what="worker w1 to start both tasks")
    S.eq([r[:2] for r in runs("kill-1") + runs("kill-2")],
         [("w1", 1), ("w1", 1)], "w1 runs attempt 1 of both")
    ctx["leftovers"] = [r[2] for r in runs("kill-1") + runs("kill-2")]
    worker("w2")
    t_kill = time.time()
    w1.kill9()
    S.check(True, "w1 killed with SIGKILL; w2 polling")
    for wid in ("kill-1", "kill-2"):
        r = n.cli("wf", "result", wid, "--wait", timeout=30)
        took = time.time() - t_kill
        out = r.out if isinstance(r.out, dict) else {}
        S.check(r.rc == 0 and out.get("output") == {"worker": "w2",
                                                    "attempt": 2},
                "%s completed by w2 at attempt 2" % wid, r.describe())
        S.check(took < 15, "%s completed %.1f s after the kill (< 15 s; "
                "start_to_close is 60 s)" % (wid, took))
        h = n.cli("wf", "history", wid).out
        ends = step_events(h, "work", "ActivityFailed", "ActivityTimedOut")
        S.check(len(ends) == 1 and ends[0].get("type") == "ActivityFailed"
                and ends[0].get("attempt") == 1
                and (ends[0].get("failure") or {}).get("type")
                == "WorkerLost",
                "%s: attempt 1 ended with ActivityFailed, failure type "
                "WorkerLost" % wid, ends)
        if ends:
            lost_at = rfc3339_to_epoch(ends[0].get("time"))
            if lost_at is not None:
                print("       (%s: WorkerLost recorded %.1f s after the "
                      "kill)" % (wid, lost_at - t_kill))
                S.check(lost_at - t_kill < 10, "%s: the loss was noticed "
                        "within 10 s (%.1f s)" % (wid, lost_at - t_kill))
        st = step_events(h, "work", "ActivityStarted")
        S.check(len(st) == 2 and st[0].get("worker") != st[1].get("worker"),
                "%s: attempts 1 and 2 started on different workers" % wid,
                st)
        d = n.cli("wf", "describe", wid).out
        w = steps_by_id(d).get("work", {})
        S.eq((w.get("status"), w.get("attempt"),
              (w.get("failure") or {}).get("type")),
             ("completed", 2, "WorkerLost"),
             "%s: describe: completed at attempt 2, last failure "
             "WorkerLost" % wid)


def graceful_stop():
    n = ctx["node"]
    # a queue of its own: only w1 polls it when the task is scheduled
    w1 = worker("w1", queue="q_stop", concurrency=1)
    n.cli("wf", "start", "lv_stop", "--id", "stop-1", check=0)
    wait_for(lambda: runs("stop-1"), 15, what="w1 to start stop-1")
    S.eq([r[:2] for r in runs("stop-1")], [("w1", 1)],
         "w1 runs attempt 1 (max_attempts 1)")
    ctx["leftovers"] = ctx.get("leftovers", []) + [runs("stop-1")[0][2]]
    worker("w2", queue="q_stop")
    t_stop = time.time()
    rc = w1.stop(timeout=15)
    t_exit = time.time()
    S.eq(rc, 0, "w1 exits 0 on SIGTERM")
    S.check(t_exit - t_stop < 6, "w1 exited %.1f s after SIGTERM "
            "(--grace 1s)" % (t_exit - t_stop))
    S.check(os.path.exists(os.path.join(ctx["marks"], "stop-1.term.w1")),
            "the command still running after the grace got SIGTERM")
    r = n.cli("wf", "result", "stop-1", "--wait", timeout=30)
    took = time.time() - t_stop
    out = r.out if isinstance(r.out, dict) else {}
    S.check(r.rc == 0 and (out.get("output") or {}).get("worker") == "w2",
            "handed back and completed on w2 though max_attempts is 1",
            r.describe())
    S.check(took < 6, "completed %.1f s after the SIGTERM (at once after "
            "the 1 s grace; no 10 s backoff, no 60 s start_to_close)"
            % took)
    d = n.cli("wf", "describe", "stop-1").out
    w = steps_by_id(d).get("work", {})
    S.eq((w.get("status"), w.get("attempt")), ("completed", 2),
         "describe: completed at attempt 2 (SPEC: the hand-back is "
         "rescheduled as a new attempt; attempt counts dispatches)")
    h = n.cli("wf", "history", "stop-1").out
    st = step_events(h, "work", "ActivityStarted")
    S.check(len(st) == 2 and st[0].get("worker") != st[1].get("worker"),
            "two dispatches, on different workers", st)
    done = step_events(h, "work", "ActivityCompleted")
    S.check(len(done) == 1 and done[0].get("attempt") == w.get("attempt")
            == (out.get("output") or {}).get("attempt"),
            "one ActivityCompleted; its attempt = describe's = the "
            "SHARDFLOW_ATTEMPT w2 saw", (done, w.get("attempt"),
                                         out.get("output")))
    S.eq(step_events(h, "work", "ActivityTimedOut"), [],
         "no timeout was involved")


def finish_within_grace():
    n = ctx["node"]
    w3 = worker("w3", queue="q_short", grace="5s", concurrency=1)
    n.cli("wf", "start", "lv_short", "--id", "short-1", check=0)
    wait_for(lambda: runs("short-1"), 15, what="w3 to start short-1")
    t_stop = time.time()
    rc = w3.stop(timeout=15)
    t_exit = time.time()
    S.eq(rc, 0, "w3 exits 0 on SIGTERM")
    S.check(t_exit - t_stop < 4.5, "w3 exited %.1f s after SIGTERM, once "
            "its command finished (grace 5s)" % (t_exit - t_stop))
    S.check(not os.path.exists(os.path.join(ctx["marks"],
                                            "short-1.term.w3")),
            "the command finishing within the grace got no SIGTERM")
    r = n.cli("wf", "result", "short-1", "--wait", timeout=30)
    out = r.out if isinstance(r.out, dict) else {}
    S.check(r.rc == 0 and out.get("output") == {"worker": "w3",
                                                "finished": True},
            "the run completed with the stopping worker's output",
            r.describe())
    d = n.cli("wf", "describe", "short-1").out
    S.eq(steps_by_id(d).get("work", {}).get("attempt"), 1, "at attempt 1")


def stopped_gets_nothing():
    """A worker that stopped gracefully gets no more tasks: a run started
    right after it left waits for the next worker and runs there at
    attempt 1."""
    n = ctx["node"]
    w2 = [w for w in E.workers if w.alive() and w.queue == "q_live"]
    S.check(len(w2) == 1, "w2 is idle on q_live")
    t = time.time()
    rc = w2[0].stop(timeout=15)
    S.check(rc == 0 and time.time() - t < 1.5, "the idle worker w2 exits "
            "0 within about a second (%.2f s, exit %s)"
            % (time.time() - t, rc))
    # the run starts while no worker polls q_live; w4 comes after
    t = time.time()
    n.cli("wf", "start", "lv_kill", "--id", "after-1", check=0)
    worker("w4")
    r = n.cli("wf", "result", "after-1", "--wait", timeout=30)
    took = time.time() - t
    out = r.out if isinstance(r.out, dict) else {}
    S.eq(out.get("output"), {"worker": "w4", "attempt": 1},
         "the run went to w4 at attempt 1")
    S.check(took < 3, "completed %.1f s after it started" % took)
    h = n.cli("wf", "history", "after-1").out
    st = step_events(h, "work", "ActivityStarted", "ActivityFailed")
    S.check(len(st) == 1, "history: one ActivityStarted, no failure (no "
            "task was handed to the stopped w2)", st)


def idle_exit():
    idle = [w for w in E.workers if w.alive()]
    S.check(idle, "an idle worker is running")
    for w in idle:
        t = time.time()
        rc = w.stop(timeout=15)
        took = time.time() - t
        S.eq(rc, 0, "idle worker %s exits 0" % w.extra_env.get("WNAME"))
        S.check(took < 1.5, "it exited %.2f s after SIGTERM (about a "
                "second at most)" % took)


def malformed_report():
    zmq = import_zmq()
    if zmq is None:
        S.check(False, "python3-zmq is installed - malformed report not "
                "tested")
        return
    n = ctx["node"]
    sock = n.raw_socket()

    def recv(what):
        if sock.poll(15000, zmq.POLLIN) == 0:
            raise TestFailure("no %s within 15 s" % what)
        return mpack_min.unpack(sock.recv())
    try:
        sock.send(mpack_min.pack({"v": 1, "op": "poll", "queue": "q_raw",
                                  "credit": 1, "gen": 1, "reset": True}))
        n.cli("wf", "start", "lv_raw", "--id", "raw-1", check=0)
        task = recv("task")
        S.eq((task.get("op"), task.get("wf_id"), task.get("attempt")),
             ("task", "raw-1", 1), "the raw worker got raw-1's attempt 1")
        worker("w5", queue="q_raw")
        deep = 0
        for _ in range(40):
            deep = [deep]
        sock.send(mpack_min.pack({"v": 1, "op": "complete", "id": 9,
                                  "token": task.get("token"),
                                  "output": deep}))
        r = recv("answer to the malformed complete")
        S.eq((r.get("id"), r.get("ok"), (r.get("error") or {}).get("code")),
             (9, False, "bad_request"), "a complete whose output nests 40 "
             "deep is refused as bad_request")
    finally:
        sock.close()
    t_quiet = time.time()
    r = n.cli("wf", "result", "raw-1", "--wait", timeout=30)
    took = time.time() - t_quiet
    out = r.out if isinstance(r.out, dict) else {}
    S.check(r.rc == 0 and out.get("output") == {"worker": "w5",
                                                "attempt": 2},
            "raw-1 completed by w5 at attempt 2", r.describe())
    S.check(took < 15, "completed %.1f s after the raw worker fell silent "
            "(< 15 s; start_to_close is 60 s)" % took)
    ends = step_events(n.cli("wf", "history", "raw-1").out, "work",
                       "ActivityFailed", "ActivityCompleted")
    S.eq([(e.get("type"), e.get("attempt"),
           (e.get("failure") or {}).get("type")) for e in ends],
         [("ActivityFailed", 1, "WorkerLost"),
          ("ActivityCompleted", 2, None)],
         "history: attempt 1 lost with its worker, attempt 2 completed")


def cleanup():
    for pid in ctx.get("leftovers", []):
        kill_group_of(pid)
    S.check(True, "commands left behind by the killed worker removed")


S.run([
    ("node and definitions", setup, True),
    ("a worker killed with SIGKILL", killed_worker),
    ("graceful stop hands tasks back", graceful_stop),
    ("a command finishing within the grace", finish_within_grace),
    ("a stopped worker gets no tasks", stopped_gets_nothing),
    ("a malformed report leaves the attempt its worker's",
     malformed_report),
    ("an idle worker exits at once", idle_exit),
    ("leftovers", cleanup),
])
