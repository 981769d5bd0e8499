#!/usr/bin/env python3
"""test_schema_upgrade.py - moving a shard from schema 1 to schema 2 at
open loses nothing (shard/shf_runs.h, docs/operations.md "Storage").

A node with one shard makes runs in several situations:
- "done" (two activities, completed by a worker; started with a request
  id) and "reused" (one activity, completed; its ID is started again
  after the upgrade);
- "park", parked in a 6 s durable sleep (then one activity);
- "pending", its first activity's task on a queue no worker serves;
- "waiting", parked on a signal.
What describe, history and list say of each is recorded. The node is
stopped and its shard rewritten to schema 1 (sfharness.ShardFile), the
exact inverse of the schema-2 layout: exec holds the state itself, history
and tasks are keyed by the run key (no start time in front), the runs
database does not exist, meta "schema" is 1.

At the next start the node logs "moving its runs to schema 2" and "5 runs
moved to schema 2", and then:
- every run describes, lists and has the history it had before;
- history pages (page_size 2 on the raw wire) chain through an upgraded
  run, and a page token of the schema-1 form (RUN_ID.EVENT_ID) continues
  it;
- the start's request id still answers the same run;
- the sleep fires after the restart and "park" completes; the signal
  completes "waiting"; a worker started on the queue of "pending" is given
  the recovered task (attempt 1, once) and "pending" completes;
- a run of a reused ID and a new workflow complete;
- stopped again, the shard's records are all in the schema-2 layout
  (checked through liblmdb), meta "schema" is 2, and the next start does
  not move anything and describes everything the same; it stops with
  exit 0 and no log has a sanitizer report.
"""
import os
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mpack_min  # noqa: E402
from sfharness import (ShardFile, Suite, TestFailure,  # noqa: E402
                       event_types, events_of, import_zmq, read_marks,
                       rfc3339_to_epoch, step_events, wait_for)

zmq = import_zmq()

S = Suite("test_schema_upgrade")
E = S.new_env()
ctx = {}

PARK_S = 6.0
DEFS = [
    {"name": "up_done", "queue": "q_up",
     "steps": [{"id": "a", "activity": "work", "input": "${input}"},
               {"id": "b", "activity": "work"}],
     "output": {"a": "${steps.a.output}", "b": "${steps.b.output}"}},
    {"name": "up_quick", "queue": "q_up",
     "steps": [{"id": "a", "activity": "work"}]},
    {"name": "up_park", "queue": "q_up",
     "steps": [{"id": "nap", "sleep": "%dms" % int(PARK_S * 1000)},
               {"id": "after", "activity": "work"}]},
    {"name": "up_pending", "queue": "q_late",
     "steps": [{"id": "a", "activity": "work"},
               {"id": "b", "activity": "work"}]},
    {"name": "up_signal", "queue": "q_up",
     "steps": [{"id": "w", "wait_signal": "go"},
               {"id": "c", "activity": "work"}]},
]
RUNS = ("done", "reused", "park", "pending", "waiting")

# Each attempt appends "WF STEP ATTEMPT" to the marks file.
WORKER = r"""
input=$(cat)
echo "$SHARDFLOW_WORKFLOW_ID $SHARDFLOW_STEP $SHARDFLOW_ATTEMPT" >> %s
printf '{"wf":"%%s","step":"%%s","attempt":%%s}\n' \
  "$SHARDFLOW_WORKFLOW_ID" "$SHARDFLOW_STEP" "$SHARDFLOW_ATTEMPT"
"""

def is_placed(b):
    """A placed key: start time (8 bytes) then ns, wf_id, run_id, each
    NUL-terminated, and nothing after."""
    return len(b) > 8 and b[8:].count(b"\0") == 3 and b.endswith(b"\0")


def wf_of_exec_key(k):
    return k.split(b"\0", 1)[1].decode()


def with_ids(state, placed):
    """A state as schema 1 could hold it: one that carries its IDs. The
    packed form the node writes now (2) leaves them to the placed key;
    the first packed form (1) has them where it has nils."""
    st = mpack_min.unpack(state)
    if not (isinstance(st, list) and st and st[0] == 2):
        return state
    ns, wf_id, run_id = (b.decode() for b in placed[8:-1].split(b"\0"))
    st[0], st[1], st[2], st[3] = 1, ns, wf_id, run_id
    st[7] = int.from_bytes(placed[:8], "big")
    return mpack_min.pack(st)


def to_schema_1(shard_dir):
    """Rewrites a stopped node's schema-2 shard to schema 1. Returns
    {wf_id: (placed key, history records moved, tasks moved)}."""
    db = ShardFile(shard_dir)
    commit = False
    try:
        moved = {}
        history, tasks = db.items("history"), db.items("tasks")
        for k, placed in db.items("exec"):
            if not is_placed(placed):
                raise TestFailure("exec %r holds %r, not a placed key"
                                  % (k, placed))
            state = db.get("runs", placed)
            if state is None:
                raise TestFailure("exec %r: no run at %r" % (k, placed))
            db.put("exec", k, with_ids(state, placed))
            db.delete("runs", placed)
            counts = []
            for name, records in (("history", history), ("tasks", tasks)):
                n = 0
                for hk, hv in records:
                    if hk.startswith(placed):
                        db.delete(name, hk)
                        db.put(name, hk[8:], hv)
                        n += 1
                counts.append(n)
            moved[wf_of_exec_key(k)] = (placed, counts[0], counts[1])
        left = db.items("runs")
        if left:
            raise TestFailure("runs not current for any workflow ID: %r"
                              % [k for k, _ in left])
        db.drop("runs")  # schema 1 had no runs database
        meta = mpack_min.unpack(db.get("meta", b"shard"))
        if meta.get("schema") != 2:
            raise TestFailure("meta before the rewrite: %r" % (meta,))
        meta["schema"] = 1
        db.put("meta", b"shard", mpack_min.pack(meta))
        commit = True
        return moved
    finally:
        db.close(commit)


def check_schema_2(shard_dir):
    """What a stopped node's shard holds: a list of what is not in the
    schema-2 layout (empty when all is), meta, and the number of runs."""
    db = ShardFile(shard_dir)
    try:
        bad = []
        meta = mpack_min.unpack(db.get("meta", b"shard"))
        if meta.get("schema") != 2:
            bad.append("meta %r" % (meta,))
        placed = set()
        for k, v in db.items("exec"):
            if not is_placed(v):
                bad.append("exec %r -> %r" % (k, v[:16]))
            elif db.get("runs", v) is None:
                bad.append("exec %r -> %r: no run there" % (k, v))
        runs = db.items("runs")
        for k, v in runs:
            placed.add(k)
            try:
                st = mpack_min.unpack(v)
            except ValueError as e:
                bad.append("runs %r: %s" % (k, e))
                continue
            # packed: form 2 leaves the IDs to the key (nils in their
            # place), form 1 has them at 1-3; or the map states were
            # written as before
            if isinstance(st, list) and len(st) > 3 and st[0] == 2:
                ids = (k[8:-1].decode().split("\0")
                       if st[1:4] == [None] * 3 else None)
            elif isinstance(st, list) and len(st) > 3:
                ids = st[1:4]
            elif isinstance(st, dict):
                ids = [st.get("ns", ""), st.get("workflow_id", ""),
                       st.get("run_id", "")]
            else:
                ids = None
            want = ("\0".join(ids) + "\0").encode() if ids else None
            if want is None or k[8:] != want:
                bad.append("runs %r holds the state of %r" % (k, want))
        for name, rest in (("history", 8), ("tasks", None)):
            for k, _ in db.items(name):
                if not any(k.startswith(p) and (rest is None
                                                or len(k) == len(p) + rest)
                           for p in placed):
                    bad.append("%s %r is not behind a run's placed key"
                               % (name, k))
        return bad, meta, len(runs)
    finally:
        db.close(False)


# ---------------------------------------------------------------- helpers

def node():
    return ctx["node"]


def describe(wid):
    r = node().cli("wf", "describe", wid, timeout=15)
    return r.out if r.rc == 0 and isinstance(r.out, dict) else r.describe()


def history(wid):
    r = node().cli("wf", "history", wid, timeout=15)
    return r.out if r.rc == 0 and isinstance(r.out, dict) else r.describe()


def listing():
    r = node().cli("wf", "list", "--limit", "1000", timeout=15)
    if r.rc != 0 or not isinstance(r.out, dict):
        return r.describe()
    return sorted((w.get("workflow_id"), w.get("run_id"), w.get("status"),
                   w.get("started_at"), w.get("closed_at"))
                  for w in r.out.get("workflows") or [])


def raw_call(sock, req):
    sock.send(mpack_min.pack(req))
    if sock.poll(15000, zmq.POLLIN) == 0:
        raise TestFailure("no reply to %r within 15 s" % (req,))
    return mpack_min.unpack(sock.recv())


def history_pages(sock, wid, page_size, token=None, rid=1000):
    """Every page of wid's history from token on (raw wire)."""
    pages, tokens = [], []
    while True:
        rid += 1
        req = {"v": 1, "op": "wf_history", "id": rid, "ns": "default",
               "wf_id": wid, "page_size": page_size}
        if token:
            req["page_token"] = token
        r = raw_call(sock, req)
        if not r.get("ok"):
            raise TestFailure("history page refused: %r" % (r,))
        pages.append(r["body"]["events"])
        token = r["body"].get("next_page_token")
        if not token or len(pages) > 50:
            return pages, tokens
        tokens.append(token)


# ---------------------------------------------------------------- cases

def setup():
    n = E.node(shards=1)
    ctx["node"] = n
    E.register(n, DEFS)
    ctx["marks"] = E.path("marks.txt")
    ctx["script"] = E.script("work.sh", WORKER % ctx["marks"])
    w = E.worker(n, "q_up", ctx["script"], concurrency=2)
    out = S.cli_ok(n.cli("wf", "start", "up_done", "--id", "done", "--input",
                         '{"n": 1}', "--request-id", "req-done", "--wait",
                         timeout=30), "done: started and waited for")
    S.eq(out.get("status") if isinstance(out, dict) else out, "completed",
         "done completed before the upgrade")
    out = S.cli_ok(n.cli("wf", "start", "up_quick", "--id", "reused",
                         "--wait", timeout=30), "reused: started, waited for")
    S.eq(out.get("status") if isinstance(out, dict) else out, "completed",
         "reused completed before the upgrade")
    S.cli_ok(n.cli("wf", "start", "up_pending", "--id", "pending"),
             "pending started (no worker on q_late)")
    S.cli_ok(n.cli("wf", "start", "up_signal", "--id", "waiting"),
             "waiting started")
    # the worker is stopped before the node: every task of the runs kept
    # from here on is in the node's hands
    S.eq(w.stop(), 0, "the q_up worker stops on SIGTERM")
    S.cli_ok(n.cli("wf", "start", "up_park", "--id", "park"), "park started")

    d = {wid: describe(wid) for wid in RUNS}
    h = {wid: history(wid) for wid in RUNS}
    ctx["before_describe"], ctx["before_history"] = d, h
    ctx["before_list"] = listing()
    S.check(all(isinstance(d[w], dict) for w in RUNS)
            and all(isinstance(h[w], dict) for w in RUNS),
            "describe and history of every run answered", (d, h))
    S.eq(event_types(h["done"]),
         ["WorkflowStarted", "StepScheduled", "ActivityStarted",
          "ActivityCompleted", "StepScheduled", "ActivityStarted",
          "ActivityCompleted", "WorkflowCompleted"],
         "done: its history before the upgrade")
    S.eq(d["park"].get("status"), "running", "park is running (asleep)")
    S.eq([(s.get("id"), s.get("status")) for s in d["pending"]["steps"]],
         [("a", "scheduled"), ("b", "pending")],
         "pending: step a scheduled, its task not delivered")
    S.eq(d["waiting"].get("status"), "running", "waiting is running")
    ctx["runs"] = {w: d[w].get("run_id") for w in RUNS}
    # the sleep is due PARK_S after the run's start (the node's clock)
    ctx["park_due"] = rfc3339_to_epoch(d["park"].get("started_at")) + PARK_S


def downgrade():
    n = node()
    S.eq(n.stop(), 0, "the node stops on SIGTERM")
    ctx["stopped_at"] = time.time()
    shard_dir = os.path.join(n.data, "shards", "0000")
    moved = to_schema_1(shard_dir)
    S.eq(sorted(moved), sorted(RUNS),
         "shard 0000 rewritten to schema 1: the %d runs" % len(RUNS))
    S.check(all(moved[w][1] > 0 for w in RUNS),
            "every run had history records to move",
            {w: moved[w][1:] for w in moved})
    S.eq(moved["pending"][2], 1, "pending: its one task re-keyed")
    S.eq(sum(moved[w][2] for w in RUNS), 1, "and no other run has a task")
    S.check(all(moved[w][0][8:].split(b"\0")[2].decode() == ctx["runs"][w]
                for w in RUNS), "each exec pointed at the run described")
    t = time.monotonic()
    n.start()
    S.check(True, "the node is back (%.1f s)" % (time.monotonic() - t))


def upgraded():
    wait_for(lambda: "runs moved to schema 2" in node().log_text(), 10,
             what="the upgrade's end in the log")
    log = node().log_text()
    S.check("shard 0: moving its runs to schema 2" in log,
            "log: shard 0: moving its runs to schema 2")
    S.check("shard 0: %d runs moved to schema 2" % len(RUNS) in log,
            "log: shard 0: %d runs moved to schema 2" % len(RUNS),
            "\n".join(line for line in log.splitlines()
                      if "schema" in line or "runs:" in line))
    bad = [line for line in log.splitlines()
           if "runs:" in line or "does not decode" in line
           or "failed" in line or "corrupt" in line.lower()]
    S.eq(bad, [], "no run reported unreadable or missing in the log")
    S.check("recovered 1 pending tasks" in log,
            "log: the task of pending is recovered",
            "\n".join(log.splitlines()[-20:]))


def nothing_lost():
    before_d, before_h = ctx["before_describe"], ctx["before_history"]
    asleep = time.time() < ctx["park_due"] - 0.5
    for wid in RUNS:
        if wid == "park" and not asleep:
            print("   (park's sleep came due before this check: its describe"
                  " is compared below, after it completes)")
            continue
        S.eq(describe(wid), before_d[wid],
             "%s: describe answers what it did before the upgrade" % wid)
        S.eq(history(wid), before_h[wid],
             "%s: history is the same %d events" % (
                 wid, len(events_of(before_h[wid]))))
    S.eq(listing(), ctx["before_list"], "wf list lists the same runs")
    if asleep:
        S.check(True, "park still asleep after the upgrade (%.1f s left)"
                % (ctx["park_due"] - time.time()))


def paging():
    if zmq is None:
        S.check(False, "python3-zmq is installed - paging not tested")
        return
    want = events_of(ctx["before_history"]["done"])
    run_id = ctx["runs"]["done"]
    sock = node().raw_socket()
    try:
        pages, tokens = history_pages(sock, "done", 2)
        S.eq([len(p) for p in pages], [2, 2, 2, 2],
             "done: four pages of two events (page_size 2)")
        S.eq([e for p in pages for e in p], want,
             "the pages chain into its whole history")
        started = rfc3339_to_epoch(ctx["before_describe"]["done"]
                                   .get("started_at"))
        S.check(tokens and tokens[0] == "%s.%d.3" % (
            run_id, int(round(started * 1000))),
            "the page token names the run, its start (ms) and the next "
            "event", tokens)
        # a token as a node of schema 1 gave it: RUN_ID.EVENT_ID
        old_pages, _ = history_pages(sock, "done", 2,
                                     token="%s.5" % run_id, rid=2000)
        S.eq([e for p in old_pages for e in p], want[4:],
             "a schema-1 token (RUN_ID.5) continues the upgraded run")
    finally:
        sock.close()


def dedup():
    out = S.cli_ok(node().cli("wf", "start", "up_done", "--id", "done",
                              "--request-id", "req-done", "--wait",
                              timeout=30),
                   "the start of done repeated with its request id")
    out = out if isinstance(out, dict) else {}
    S.eq((out.get("run_id"), out.get("status")),
         (ctx["runs"]["done"], "completed"),
         "answers the run it started, completed")


def go_on():
    n = node()
    E.worker(n, "q_up", ctx["script"], concurrency=2)
    # park: its sleep fires after the restart
    out = node().result_wait("park", timeout=PARK_S + 30)
    S.eq(out.get("status"), "completed", "park completed")
    h = history("park")
    fired = step_events(h, "nap", "TimerFired")
    at = rfc3339_to_epoch(fired[0].get("time")) if fired else None
    S.check(at is not None and at > ctx["stopped_at"],
            "park: the sleep fired after the restart", fired)
    S.check(at is not None and at >= ctx["park_due"] - 0.001,
            "not before it was due (%.1f s after the start)" % PARK_S,
            (at, ctx["park_due"]))
    before = events_of(ctx["before_history"]["park"])
    S.eq(events_of(h)[:len(before)], before,
         "park: the history before the upgrade is the start of its history")
    d = describe("park")
    S.eq(d.get("status") if isinstance(d, dict) else d, "completed",
         "describe park: completed")

    # waiting: the signal is taken
    S.cli_ok(n.cli("wf", "signal", "waiting", "go", "--input", '{"ok": 1}'),
             "signal go to waiting")
    out = node().result_wait("waiting")
    S.eq(out.get("status"), "completed", "waiting completed")
    h = history("waiting")
    before = events_of(ctx["before_history"]["waiting"])
    S.eq(events_of(h)[:len(before)], before,
         "waiting: the history before the upgrade is the start of its "
         "history")

    # pending: a worker on q_late now gets the recovered task
    S.check(("pending", "a", "1") not in read_marks(ctx["marks"]),
            "pending: step a not run before its worker starts")
    E.worker(n, "q_late", ctx["script"], concurrency=2)
    out = node().result_wait("pending")
    S.eq(out.get("status"), "completed", "pending completed")
    S.eq([m for m in read_marks(ctx["marks"]) if m[0] == "pending"],
         [("pending", "a", "1"), ("pending", "b", "1")],
         "pending: the recovered task delivered once (attempt 1), then b")
    h = history("pending")
    before = events_of(ctx["before_history"]["pending"])
    S.eq(events_of(h)[:len(before)], before,
         "pending: the history before the upgrade is the start of its "
         "history")

    # a reused ID and a new workflow
    out = S.cli_ok(n.cli("wf", "start", "up_quick", "--id", "reused",
                         "--wait", timeout=30),
                   "reused: a second run of the ID")
    out = out if isinstance(out, dict) else {}
    S.check(out.get("status") == "completed"
            and out.get("run_id") not in (None, ctx["runs"]["reused"]),
            "a new run, completed", out)
    ctx["reused_run"] = out.get("run_id")
    out = S.cli_ok(n.cli("wf", "start", "up_done", "--id", "fresh",
                         "--input", '{"n": 2}', "--wait", timeout=30),
                   "fresh: a new workflow after the upgrade")
    S.eq(out.get("status") if isinstance(out, dict) else out, "completed",
         "fresh completed")
    S.eq(describe("done"), ctx["before_describe"]["done"],
         "done still describes the same")
    ctx["final"] = {w: (describe(w), history(w))
                    for w in RUNS + ("fresh",)}
    ctx["final_list"] = listing()
    S.check(n.alive(), "the node is still running")


def once_more():
    n = node()
    for w in E.workers:
        w.stop()
    S.eq(n.stop(), 0, "the node stops on SIGTERM")
    bad, meta, runs = check_schema_2(os.path.join(n.data, "shards", "0000"))
    S.eq(bad, [], "every record of shard 0000 is in the schema-2 layout")
    S.eq(meta.get("schema"), 2, "meta says schema 2")
    S.eq(runs, len(RUNS) + 2, "runs holds %d runs (reused's two)"
         % (len(RUNS) + 2))
    n.start()
    log = node().log_text()
    S.check("moving its runs" not in log and "moved to schema 2" not in log,
            "the next start moves nothing",
            "\n".join(line for line in log.splitlines() if "schema" in line))
    for w in RUNS + ("fresh",):
        S.eq((describe(w), history(w)), ctx["final"][w],
             "%s: describe and history the same after the restart" % w)
    S.eq(listing(), ctx["final_list"], "wf list the same")
    d = ctx["final"]["reused"][0]
    S.eq(d.get("run_id") if isinstance(d, dict) else d, ctx["reused_run"],
         "reused describes its second run")
    S.eq(n.stop(), 0, "the node stops on SIGTERM, exit 0")
    S.eq(E.sanitizer_reports(), [],
         "no sanitizer report in any node or worker log")


S.run([
    ("runs done, parked, pending and waiting on one shard", setup, True),
    ("the node stopped, its shard rewritten to schema 1", downgrade, True),
    ("the node moves them to schema 2 at open", upgraded),
    ("describe, history and list answer what they did", nothing_lost),
    ("history pages of an upgraded run, old and new tokens", paging),
    ("a start's request id still answers its run", dedup),
    ("the runs go on: sleep, signal, recovered task, new runs", go_on),
    ("stopped again: all schema 2, the next start moves nothing", once_more),
])
