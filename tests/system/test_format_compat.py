#!/usr/bin/env python3
"""Records written in the map layouts before they were packed still serve.

fixtures/map_records.tar.gz is a stopped node's data directory written by
shardflow at commit dc93d6e (fixtures/make_map_records.py says how), when
run states, history events, index entries and timers were msgpack maps.
One shard holds "done" (completed, request id "req-done"), "park" (a 2 s
sleep, long due), "pending" (its first task on q_late, never served) and
"waiting" (parked on signal "go").

The node of this build opens that directory as it is, and:
- describes, lists and gives the history of every run as the old node
  did (WorkflowStarted with its IDs, times as RFC 3339 text, ids 1..n);
- the old timer fires (park completes), the old task record is delivered
  once to a worker on q_late (pending completes), the signal completes
  waiting, and the start's request id still answers done's run;
- each of those histories is the old events followed by new ones, ids in
  a row, whatever form each record has;
- stopped and started again, everything describes and lists the same
  (their states are now packed), and no log speaks of a corrupt record or
  has a sanitizer report.
"""
import os
import subprocess
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from sfharness import (Suite, event_types, events_of,  # noqa: E402
                       read_marks, rfc3339_to_epoch)

S = Suite("test_format_compat")
E = S.new_env()
ctx = {}

FIXTURE = os.path.join(HERE, "fixtures", "map_records.tar.gz")
RUNS = ("done", "park", "pending", "waiting")
WORKER = r"""
input=$(cat)
echo "$SHARDFLOW_WORKFLOW_ID $SHARDFLOW_STEP $SHARDFLOW_ATTEMPT" >> %s
printf '{"wf":"%%s","step":"%%s"}\n' "$SHARDFLOW_WORKFLOW_ID" \
  "$SHARDFLOW_STEP"
"""


def node():
    return ctx["node"]


def cli_out(*args, **kw):
    r = node().cli(*args, timeout=kw.get("timeout", 15))
    return r.out if r.rc == 0 and isinstance(r.out, dict) else r.describe()


def describe(wid):
    return cli_out("wf", "describe", wid)


def history(wid):
    return cli_out("wf", "history", wid)


def listing():
    out = cli_out("wf", "list", "--limit", "100")
    if not isinstance(out, dict):
        return out
    return sorted((w.get("workflow_id"), w.get("status"))
                  for w in out.get("workflows") or [])


def ids_in_a_row(h):
    return [e.get("id") for e in events_of(h)] == list(
        range(1, len(events_of(h)) + 1))


# ---------------------------------------------------------------- cases

def setup():
    data = E.mkdir("data")
    subprocess.check_call(["tar", "-C", data, "-xzf", FIXTURE])
    ctx["node"] = E.node(data=data, shards=1)
    ctx["marks"] = E.path("marks.txt")
    ctx["script"] = E.script("work.sh", WORKER % ctx["marks"])
    S.check(node().alive(), "the node serves the old data directory")


def read_as_before():
    d = {w: describe(w) for w in RUNS}
    h = {w: history(w) for w in RUNS}
    ctx["before"] = (d, h)
    S.check(all(isinstance(d[w], dict) for w in RUNS),
            "every run describes", d)
    S.eq(d["done"].get("status"), "completed", "done: completed")
    S.eq(d["done"].get("output"),
         {"a": {"wf": "done", "step": "a"}, "b": {"wf": "done", "step": "b"}},
         "done: its output")
    S.eq([(s.get("id"), s.get("status")) for s in d["pending"]["steps"]],
         [("a", "scheduled")], "pending: its step scheduled")
    S.eq(event_types(h["done"]),
         ["WorkflowStarted", "StepScheduled", "ActivityStarted",
          "ActivityCompleted", "StepScheduled", "ActivityStarted",
          "ActivityCompleted", "WorkflowCompleted"],
         "done: its history, event by event")
    first = events_of(h["done"])[0] if events_of(h["done"]) else {}
    S.eq((first.get("workflow_id"), first.get("run_id"),
          first.get("namespace"), first.get("input")),
         ("done", d["done"].get("run_id"), "default", {"n": 1}),
         "done: WorkflowStarted as the old node wrote it")
    S.check(rfc3339_to_epoch(first.get("time")) is not None,
            "times are RFC 3339 text", first)
    S.check(all(ids_in_a_row(h[w]) for w in RUNS), "ids 1..n in every "
            "history")
    S.eq(listing(), [("done", "completed"), ("park", "running"),
                     ("pending", "running"), ("waiting", "running")],
         "wf list: the four runs and their statuses")
    log = node().log_text()
    S.check("recovered 1 pending tasks" in log,
            "log: the old task record is recovered")


def runs_go_on():
    n = node()
    E.worker(n, "q_up", ctx["script"], concurrency=2)
    out = node().result_wait("park")
    S.eq(out.get("status"), "completed", "park: the old timer fired, "
         "completed")
    S.cli_ok(n.cli("wf", "signal", "waiting", "go", "--input", '{"ok": 1}'),
             "signal go to waiting")
    S.eq(node().result_wait("waiting").get("status"), "completed",
         "waiting completed")
    E.worker(n, "q_late", ctx["script"], concurrency=2)
    S.eq(node().result_wait("pending").get("status"), "completed",
         "pending completed")
    S.eq([m for m in read_marks(ctx["marks"]) if m[0] == "pending"],
         [("pending", "a", "1")],
         "pending: the old task delivered once")
    before = ctx["before"][1]
    for w in ("park", "waiting", "pending"):
        h = history(w)
        S.eq(events_of(h)[:len(events_of(before[w]))],
             events_of(before[w]),
             "%s: the old events start its history" % w)
        S.check(len(events_of(h)) > len(events_of(before[w]))
                and ids_in_a_row(h),
                "%s: new events follow, ids in a row" % w, event_types(h))
    out = S.cli_ok(n.cli("wf", "start", "mr_done", "--id", "done",
                         "--request-id", "req-done", "--wait", timeout=30),
                   "the start of done repeated with its request id")
    out = out if isinstance(out, dict) else {}
    S.eq((out.get("run_id"), out.get("status")),
         (ctx["before"][0]["done"].get("run_id"), "completed"),
         "answers the old run")
    ctx["final"] = {w: (describe(w), history(w)) for w in RUNS}
    ctx["final_list"] = listing()


def once_more():
    n = node()
    for w in E.workers:
        w.stop()
    S.eq(n.stop(), 0, "the node stops on SIGTERM")
    n.start()
    for w in RUNS:
        S.eq((describe(w), history(w)), ctx["final"][w],
             "%s: the same after a restart" % w)
    S.eq(listing(), ctx["final_list"], "wf list the same")
    S.eq(n.stop(), 0, "the node stops on SIGTERM, exit 0")
    log = node().log_text()
    bad = [line for line in log.splitlines()
           if "corrupt" in line.lower() or "does not decode" in line
           or "not one" in line]
    S.eq(bad, [], "no record reported unreadable")
    S.eq(E.sanitizer_reports(), [],
         "no sanitizer report in any node or worker log")


S.run([
    ("a data directory of map records, opened as it is", setup, True),
    ("describe, history and list as the old node answered", read_as_before),
    ("the runs go on: old timer, old task, signal, request id", runs_go_on),
    ("stopped and started: the same", once_more),
])
