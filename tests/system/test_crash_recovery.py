#!/usr/bin/env python3
"""test_crash_recovery.py - kill -9 the node under load; nothing
acknowledged is lost, every step runs at least once and is recorded once.

~300 workflows of three sequential activity steps (start_to_close 5s) are
started from a thread pool (`wf start --id --request-id --json`) while a
worker (concurrency 8) runs them. When about a third have completed, the
node is killed with SIGKILL and restarted on the same data dir; the worker
keeps running and must reconnect. Starts that got no reply are retried with
the same request id (idempotent). Then: every acknowledged start exists
right after the restart, every run completes, the activity log shows each
step ran at least once, and each run's history has exactly one
ActivityCompleted per step.
"""
import concurrent.futures as cf
import os
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sfharness import Suite, events_of, wait_for, TestFailure  # noqa: E402

N = int(os.environ.get("SHF_CRASH_N", "300"))
S = Suite("test_crash_recovery")
E = S.new_env()
ctx = {}
STEPS = ["s1", "s2", "s3"]

DEF = {
    "name": "crash3",
    "queue": "q_crash",
    "retry": {"initial_interval": "200ms", "max_attempts": 0},
    "steps": [{"id": s, "activity": "work",
               "input": {"n": "${input.n}", "step": s},
               "timeouts": {"start_to_close": "5s"}} for s in STEPS],
}


def log_lines():
    try:
        with open(ctx["log"]) as f:
            return [l.split() for l in f.read().splitlines() if l.strip()]
    except OSError:
        return []


def setup():
    n = E.node()
    ctx["node"] = n
    ctx["log"] = E.path("activity.log")
    script = E.script("work.sh", """
echo "$SHARDFLOW_WORKFLOW_ID $SHARDFLOW_STEP $SHARDFLOW_ATTEMPT" >> %s
printf '{"step":"%%s","attempt":%%s}' "$SHARDFLOW_STEP" "$SHARDFLOW_ATTEMPT"
""" % ctx["log"])
    f = E.write_json("crash3.json", DEF)
    S.cli_ok(n.cli("def", "register", f, check=0), "def register crash3")
    ctx["worker"] = E.worker(n, "q_crash", script, concurrency=8)
    ctx["worker"].wait_connected()
    S.check(True, "node and worker (concurrency 8) up")


def start_one(i):
    wid = "crash-%d" % i
    r = ctx["node"].cli("wf", "start", "crash3", "--id", wid,
                        "--request-id", "req-%d" % i,
                        "--input", '{"n": %d}' % i, timeout=30)
    ok = (r.rc == 0 and isinstance(r.out, dict)
          and r.out.get("workflow_id") == wid)
    return i, ok, time.monotonic(), r


def crash_under_load():
    n = ctx["node"]
    acked = {}          # wid -> (ack time, run_id)
    unacked = []
    results = []
    # Two thirds are started first; once a third of all runs reached s3
    # the last third is started, and the node is killed while those
    # starts are in flight (some acknowledged, some not yet).
    pool = cf.ThreadPoolExecutor(max_workers=6)
    first = 2 * N // 3
    futs = [pool.submit(start_one, i) for i in range(first)]

    def s3_count():
        return sum(1 for l in log_lines() if len(l) >= 2 and l[1] == "s3")
    try:
        wait_for(lambda: s3_count() >= N // 3, 90, interval=0.02,
                 what="a third of the runs to reach s3")
        futs += [pool.submit(start_one, i) for i in range(first, N)]
        wait_for(lambda: sum(1 for fu in futs[first:] if fu.done()) >= 10,
                 60, interval=0.005,
                 what="ten starts of the last third to be answered")
    finally:
        kill_time = time.monotonic()
        n.kill9()
    starts_done = sum(1 for fu in futs if fu.done())
    print("   killed the node with %d/%d start commands answered, %d s3 runs"
          % (starts_done, N, s3_count()))
    t = threading.Thread(target=lambda: results.extend(
        fu.result() for fu in futs))
    t.start()
    n.start()
    S.check(True, "node restarted on the same data dir")
    t.join(timeout=200)
    pool.shutdown(wait=True)
    for i, ok, when, r in results:
        wid = "crash-%d" % i
        if ok:
            acked[wid] = (when, r.out.get("run_id"))
        else:
            unacked.append((i, r))
    ctx["acked"] = acked
    print("   %d starts acknowledged, %d got no success reply"
          % (len(acked), len(unacked)))
    bad = [r for i, r in unacked if r.rc not in (None, 1, 4)]
    S.check(not bad, "starts that failed exited 4 (unreachable) or 1",
            bad[0].describe() if bad else None)

    # every start acknowledged before the kill exists right after restart
    before = [w for w, (when, _) in acked.items() if when < kill_time]
    out = n.cli("wf", "list", "--limit", str(N + 10)).out
    listed = {w.get("workflow_id"): w for w in (out or {}).get("workflows", [])} \
        if isinstance(out, dict) else {}
    missing = [w for w in before if w not in listed]
    S.check(len(before) > 0, "some starts were acknowledged before the kill "
            "(%d)" % len(before))
    S.eq(missing, [], "every start acknowledged before the kill is listed "
         "after the restart")
    wrong_run = [w for w in before if w in listed
                 and listed[w].get("run_id") != acked[w][1]]
    S.eq(wrong_run, [], "with the acknowledged run_id")

    # retry the unacknowledged starts with the same request id
    def retry(item):
        i, _ = item
        wid = "crash-%d" % i
        for _attempt in range(3):
            r = n.cli("wf", "start", "crash3", "--id", wid, "--request-id",
                      "req-%d" % i, "--input", '{"n": %d}' % i, timeout=30)
            if r.rc == 0:
                return wid, r
        return wid, r
    with cf.ThreadPoolExecutor(max_workers=6) as p2:
        retried = list(p2.map(retry, unacked))
    bad = [r for wid, r in retried
           if r.rc != 0 or not isinstance(r.out, dict)
           or r.out.get("workflow_id") != wid]
    S.check(not bad, "retrying the %d unacknowledged starts with the same "
            "request id succeeds" % len(unacked),
            bad[0].describe() if bad else None)
    for wid, r in retried:
        if r.rc == 0 and isinstance(r.out, dict):
            acked[wid] = (time.monotonic(), r.out.get("run_id"))
    S.eq(len(acked), N, "all %d workflows acknowledged in the end" % N)


def all_complete():
    n = ctx["node"]
    acked = ctx["acked"]

    def count_completed():
        out = n.cli("wf", "list", "--status", "completed", "--limit",
                    str(N + 10), timeout=30).out
        if not isinstance(out, dict):
            return False
        done = {w.get("workflow_id") for w in out.get("workflows", [])}
        ctx["done"] = done
        return all(w in done for w in acked)
    try:
        wait_for(count_completed, 150, interval=0.5,
                 what="every acknowledged run to complete")
        S.check(True, "all %d runs completed (wf list --status completed)"
                % len(acked))
    except TestFailure as e:
        left = sorted(w for w in acked if w not in ctx.get("done", set()))
        S.check(False, "all runs completed: %d not completed, e.g. %s"
                % (len(left), left[:5]), str(e))
        if left:
            r = n.cli("wf", "describe", left[0])
            print("   describe %s: %s" % (left[0], r.stdout[:1500]))

    def result(wid):
        return wid, n.cli("wf", "result", wid, "--wait", timeout=30)
    with cf.ThreadPoolExecutor(max_workers=6) as p:
        res = list(p.map(result, sorted(acked)))
    bad = [(w, r) for w, r in res
           if r.rc != 0 or not isinstance(r.out, dict)
           or r.out.get("status") != "completed"
           or r.out.get("run_id") != acked[w][1]]
    S.check(not bad, "wf result --wait: every acknowledged run completed "
            "with its acknowledged run_id (%d bad)" % len(bad),
            bad[0][1].describe() if bad else None)
    sample = [r.out for w, r in res if r.rc == 0][:1]
    if sample:
        S.eq(sample[0].get("output", {}).get("step")
             if isinstance(sample[0].get("output"), dict) else None, "s3",
             "the output of a run is the last step's output")


def exactly_once():
    n = ctx["node"]
    lines = log_lines()
    ran = {}
    for l in lines:
        if len(l) >= 3:
            ran.setdefault((l[0], l[1]), []).append(l[2])
    never = [(w, s) for w in ctx["acked"] for s in STEPS if (w, s) not in ran]
    S.eq(never[:5], [], "every step of every run ran at least once "
         "(activity log; %d missing)" % len(never))
    reruns = sum(1 for v in ran.values() if len(v) > 1)
    print("   %d step executions, %d steps ran more than once (allowed)"
          % (len(lines), reruns))

    def hist(wid):
        return wid, n.cli("wf", "history", wid, timeout=30)
    with cf.ThreadPoolExecutor(max_workers=6) as p:
        hs = list(p.map(hist, sorted(ctx["acked"])))
    bad = []
    for wid, r in hs:
        evs = events_of(r.out)
        if r.rc != 0 or not evs:
            bad.append((wid, "history failed: " + r.describe()))
            continue
        for s in STEPS:
            c = [e for e in evs if e.get("type") == "ActivityCompleted"
                 and e.get("step") == s]
            if len(c) != 1:
                bad.append((wid, "%d ActivityCompleted for %s" % (len(c), s)))
        ends = [e.get("type") for e in evs if e.get("type", "").startswith(
            "Workflow") and e.get("type") != "WorkflowStarted"]
        if ends != ["WorkflowCompleted"]:
            bad.append((wid, "closing events %s" % ends))
        st = [e for e in evs if e.get("type") == "WorkflowStarted"]
        if len(st) != 1:
            bad.append((wid, "%d WorkflowStarted" % len(st)))
    S.check(not bad, "each run: one WorkflowStarted, exactly one "
            "ActivityCompleted per step, one WorkflowCompleted "
            "(%d problems)" % len(bad), bad[:5])


def worker_still_alive():
    w = ctx["worker"]
    S.check(w.alive(), "the worker survived the node's crash (reconnected)")
    rc = w.stop(timeout=15)
    S.eq(rc, 0, "worker exits 0 on SIGTERM")


S.run([
    ("node, definition, worker", setup, True),
    ("start %d workflows, kill -9 the node mid-way, restart" % N,
     crash_under_load, True),
    ("every acknowledged run completes", all_complete),
    ("at-least-once execution, exactly-once recording", exactly_once),
    ("worker", worker_still_alive),
])
