#!/usr/bin/env python3
"""test_dag.py - a DAG definition end to end against SPEC.md.

A sequence, a parallel branch (after []), a `when` that is false (skipped
step), input templates over earlier outputs (typed "${...}" and
interpolated text), an output template; `wf start --wait --json`, `wf
describe`, `wf history`, `wf list` (fields, newest first), human output;
`def register` (no-op for an identical document, version_exists for a
different one), `def list`, `def show`.
"""
import json
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mpack_min  # noqa: E402
from sfharness import (Suite, RFC3339_MS, events_of, steps_by_id,  # noqa: E402
                       find_value, import_zmq, wait_for)

zmq = import_zmq()

S = Suite("test_dag")
E = S.new_env()
ctx = {}

DEF = {
    "name": "dagtest",
    "version": 1,
    "queue": "q_dag",
    "steps": [
        {"id": "a", "activity": "echo",
         "input": {"x": "${input.n}", "tag": "a"}},
        {"id": "b", "activity": "echo",
         "input": {"x": "${steps.a.output.x}",
                   "msg": "a gave ${steps.a.output.x} for ${input.who}",
                   "flag": "flag=${input.flag}"}},
        {"id": "p", "activity": "echo", "after": [],
         "input": {"par": True, "items": "${input.items}",
                   "first": "${input.items[0].sku}"}},
        {"id": "skipme", "activity": "echo", "after": ["a"],
         "when": "steps.a.output.x > 100",
         "input": {"never": 1}},
        {"id": "join", "activity": "echo", "after": ["b", "p", "skipme"],
         "input": {"b": "${steps.b.output.msg}",
                   "p": "${steps.p.output.first}",
                   "skipped": "${steps.skipme.status}",
                   "sum": "${steps.a.output.x + 1}"}},
    ],
    "output": {"a": "${steps.a.output}",
               "join": "${steps.join.output}",
               "text": "wf ${workflow.id} got ${steps.b.output.x}",
               "skip": "${steps.skipme.status}"},
}
INPUT = {"n": 7, "who": "bob", "flag": True,
         "items": [{"sku": "s1", "qty": 1}, {"sku": "s2", "qty": 2}]}
WF_ID = "dag-1"
EXPECTED_OUTPUT = {
    "a": {"x": 7, "tag": "a"},
    "join": {"b": "a gave 7 for bob", "p": "s1", "skipped": "skipped",
             "sum": 8},
    "text": "wf dag-1 got 7",
    "skip": "skipped",
}
STEP_IDS = ["a", "b", "p", "skipme", "join"]


def setup():
    ctx["node"] = E.node()
    ctx["log"] = E.path("activity.log")
    # The activity echoes its input; it records the worker environment.
    ctx["script"] = E.script("echo.sh", """
echo "$SHARDFLOW_WORKFLOW_ID $SHARDFLOW_STEP $SHARDFLOW_ACTIVITY $SHARDFLOW_ATTEMPT $SHARDFLOW_RUN_ID" >> %s
cat
""" % ctx["log"])
    S.check(True, "node started on %s" % ctx["node"].endpoint)


def definitions():
    n = ctx["node"]
    f1 = E.write_json("dag.json", DEF)
    out = S.cli_ok(n.cli("def", "register", f1), "def register dag.json")
    S.eq(out, {"name": "dagtest", "version": 1},
         "def register --json prints {name, version}")
    out = S.cli_ok(n.cli("def", "register", f1),
                   "registering the identical document again succeeds")
    S.eq(out, {"name": "dagtest", "version": 1},
         "identical re-register is a no-op with the same version")
    other = dict(DEF)
    other["queue"] = "q_other"
    f2 = E.write_json("dag_other.json", other)
    r = n.cli("def", "register", f2)
    S.cli_err(r, 1, "version_exists",
              "a different document with an existing version -> exit 1 "
              "version_exists")
    S.check(isinstance(r.error_message(), str) and r.error_message() != "",
            "the version_exists error has a message", r.describe())
    out = S.cli_ok(n.cli("def", "list"), "def list")
    defs = out.get("definitions") if isinstance(out, dict) else None
    S.check(isinstance(defs, list) and len(defs) == 1,
            "def list has exactly one definition", out)
    if defs:
        d = defs[0]
        S.eq((d.get("name"), d.get("version")), ("dagtest", 1),
             "def list entry is dagtest v1")
        S.check(isinstance(d.get("registered_at"), str)
                and RFC3339_MS.match(d["registered_at"]),
                "def list registered_at is RFC 3339 with ms", d)
    out = S.cli_ok(n.cli("def", "show", "dagtest"), "def show dagtest")
    S.check(find_value(out, "name") == "dagtest"
            and find_value(out, "version") == 1
            and find_value(out, "steps") is not None,
            "def show names dagtest v1 and its steps", out)


def run_dag():
    n = ctx["node"]
    w = E.worker(n, "q_dag", ctx["script"], concurrency=4)
    ctx["worker"] = w
    f = E.write_json("input.json", INPUT)
    r = n.cli("wf", "start", "dagtest", "--id", WF_ID, "--input", "@" + f,
              "--wait", timeout=60)
    out = S.cli_ok(r, "wf start dagtest --wait --json")
    if not isinstance(out, dict):
        S.check(False, "start --wait prints a JSON object", r.describe())
        return
    S.eq([k for k in ("workflow_id", "run_id", "status", "output",
                      "failure") if k not in out], [],
         "start --wait has workflow_id, run_id, status, output, failure")
    S.eq(out.get("workflow_id"), WF_ID, "workflow_id is the --id given")
    S.eq(out.get("status"), "completed", "status completed")
    S.eq(out.get("failure"), None, "failure null")
    S.eq(out.get("output"), EXPECTED_OUTPUT,
         "output (typed templates, interpolation, skipped status, "
         "arithmetic, workflow.id)")
    ctx["run_id"] = out.get("run_id")
    S.check(isinstance(ctx["run_id"], str) and ctx["run_id"] != "",
            "run_id is a non-empty string", out)

    # wf result agrees
    out2 = S.cli_ok(n.cli("wf", "result", WF_ID), "wf result")
    keys = ("workflow_id", "run_id", "status", "output", "failure")
    S.eq({k: out2.get(k) for k in keys} if isinstance(out2, dict) else out2,
         {k: out.get(k) for k in keys},
         "wf result --json agrees with the start --wait reply")

    # worker environment
    with open(ctx["log"]) as fh:
        lines = [l.split() for l in fh.read().splitlines() if l.strip()]
    ran = sorted(l[1] for l in lines if l)
    S.eq(ran, sorted(["a", "b", "p", "join"]),
         "the worker ran a, b, p, join once each (not the skipped step)")
    S.check(all(len(l) == 5 and l[0] == WF_ID and l[2] == "echo"
                and l[3] == "1" and l[4] == ctx["run_id"] for l in lines),
            "SHARDFLOW_WORKFLOW_ID/STEP/ACTIVITY/ATTEMPT/RUN_ID are set",
            lines)


def start_waiting(sock, rid, ns, name, wf_id, timeout_ms, **extra):
    """One wf_start with wait on the raw wire: its decoded reply, or None
    when none comes within 60 s."""
    req = {"v": 1, "op": "wf_start", "id": rid, "ns": ns, "name": name,
           "wf_id": wf_id, "wait": True, "timeout_ms": timeout_ms}
    req.update(extra)
    sock.send(mpack_min.pack(req))
    if sock.poll(60000, zmq.POLLIN) == 0:
        return None
    return mpack_min.unpack(sock.recv())


def execute():
    """wf_start with wait: one request starts the run and answers with its
    outcome; repeated with the same request_id it answers for the same run."""
    if zmq is None:
        S.check(False, "python3-zmq is installed - execute not tested")
        return
    n = ctx["node"]
    # a run that closes in its own start transition (its only step is
    # skipped), and one that is still open when the wait runs out (in
    # namespace "exec", so the listings checked later stay as they are)
    for doc in ({"name": "instant", "steps": [
                    {"id": "x", "activity": "never", "queue": "q_none",
                     "when": "false"}]},
                {"name": "waiter", "steps": [
                    {"id": "w", "wait_signal": "go"}]}):
        S.cli_ok(n.cli("--namespace", "exec", "def", "register",
                       E.write_json(doc["name"] + ".json", doc)),
                 "def register " + doc["name"])
    sock = n.raw_socket()
    try:
        replies = [start_waiting(sock, rid, "default", "dagtest", "exec-1",
                                 30000, input=INPUT, request_id="rq-exec-1")
                   for rid in (1, 2)]
        if None in replies:
            S.check(False, "wf_start with wait answers within 60 s")
            return
        first, again = replies
        body = first.get("body") or {}
        S.check(first.get("ok") is True and first.get("id") == 1,
                "wf_start with wait: ok reply to request 1", first)
        S.eq(body.get("workflow_id"), "exec-1", "its body names the workflow")
        S.eq(body.get("status"), "completed", "its body is the outcome")
        S.eq(body.get("output"),
             dict(EXPECTED_OUTPUT, text=EXPECTED_OUTPUT["text"].replace(
                 WF_ID, "exec-1")), "with the run's output")
        S.check(isinstance(body.get("run_id"), str) and body["run_id"],
                "and its run_id", body)
        S.eq((again.get("id"), (again.get("body") or {}).get("run_id"),
              (again.get("body") or {}).get("status")),
             (2, body.get("run_id"), "completed"),
             "the same start again (same request_id) answers for the same "
             "run, closed")
        got = {}
        for rid, name, timeout in ((3, "instant", 30000), (4, "waiter", 300)):
            got[name] = start_waiting(sock, rid, "exec", name, "exec-" + name,
                                      timeout)
            if got[name] is None:
                S.check(False, "wf_start with wait (%s) answers" % name)
                return
        S.eq((got["instant"].get("id"),
              (got["instant"].get("body") or {}).get("status")),
             (3, "completed"),
             "a run closed by its start transition is answered at once")
        S.eq((got["waiter"].get("id"),
              (got["waiter"].get("body") or {}).get("status"),
              (got["waiter"].get("body") or {}).get("workflow_id")),
             (4, "running", "exec-waiter"),
             "a wait that runs out answers status running")
    finally:
        sock.close()
    S.cli_ok(n.cli("--namespace", "exec", "wf", "signal", "exec-waiter", "go"),
             "signal exec-waiter")
    out = S.cli_ok(n.cli("--namespace", "exec", "wf", "result", "exec-waiter",
                         "--wait", timeout=30),
                   "wf result exec-waiter --wait")
    S.eq(isinstance(out, dict) and out.get("status"), "completed",
         "exec-waiter completes once signalled")
    out = S.cli_ok(n.cli("wf", "history", "exec-1"), "wf history exec-1")
    kinds = [e.get("type") for e in events_of(out)]
    S.eq(kinds.count("WorkflowStarted"), 1, "exec-1 started once")
    S.eq(kinds.count("WorkflowCompleted"), 1, "exec-1 completed once")


def describe():
    n = ctx["node"]
    out = S.cli_ok(n.cli("wf", "describe", WF_ID), "wf describe --json")
    if not isinstance(out, dict):
        return
    ctx["describe"] = out
    fields = ["workflow_id", "run_id", "name", "version", "status", "shard",
              "started_at", "closed_at", "input", "output", "failure",
              "steps"]
    missing = [k for k in fields if k not in out]
    S.eq(missing, [], "describe has every SPEC field")
    S.eq((out.get("workflow_id"), out.get("run_id"), out.get("name"),
          out.get("version"), out.get("status")),
         (WF_ID, ctx.get("run_id"), "dagtest", 1, "completed"),
         "describe ids, name, version, status")
    S.check(isinstance(out.get("shard"), int) and 0 <= out["shard"] < 8,
            "describe shard is an int in [0, 8)", out.get("shard"))
    for k in ("started_at", "closed_at"):
        S.check(isinstance(out.get(k), str) and RFC3339_MS.match(out[k]),
                "describe %s is RFC 3339 UTC with ms" % k, out.get(k))
    S.check(str(out.get("started_at")) <= str(out.get("closed_at")),
            "started_at <= closed_at", out)
    S.eq(out.get("input"), INPUT, "describe input")
    S.eq(out.get("output"), EXPECTED_OUTPUT, "describe output")
    S.eq(out.get("failure"), None, "describe failure null")
    steps = steps_by_id(out)
    S.eq(sorted(steps.keys(), key=str), sorted(STEP_IDS),
         "describe lists every step")
    sfields = ["id", "status", "attempt", "scheduled_at", "started_at",
               "closed_at", "output", "failure"]
    for sid, st in sorted(steps.items(), key=lambda kv: str(kv[0])):
        miss = [k for k in sfields if k not in st]
        S.eq(miss, [], "step %s has every SPEC field" % sid)
    for sid in ("a", "b", "p", "join"):
        st = steps.get(sid, {})
        S.eq((st.get("status"), st.get("attempt"), st.get("failure")),
             ("completed", 1, None),
             "step %s completed, attempt 1, failure null" % sid)
        times = [st.get(k) for k in ("scheduled_at", "started_at",
                                     "closed_at")]
        S.check(all(isinstance(t, str) and RFC3339_MS.match(t)
                    for t in times) and times == sorted(times),
                "step %s scheduled_at <= started_at <= closed_at, RFC 3339"
                % sid, times)
    S.eq(steps.get("a", {}).get("output"), {"x": 7, "tag": "a"},
         "step a output")
    S.eq(steps.get("b", {}).get("output"),
         {"x": 7, "msg": "a gave 7 for bob", "flag": "flag=true"},
         "step b output (typed path, interpolated string and bool)")
    S.eq(steps.get("p", {}).get("output"),
         {"par": True, "items": INPUT["items"], "first": "s1"},
         "step p output (whole array, array index path)")
    sk = steps.get("skipme", {})
    S.eq(sk.get("status"), "skipped", "step skipme is skipped")
    S.eq(sk.get("output"), None, "skipped step output null")
    S.eq(sk.get("attempt"), 0, "skipped step attempt 0 (never dispatched)")
    S.check(out.get("timers", []) == [],
            "describe timers empty for a closed run", out.get("timers"))


def history():
    n = ctx["node"]
    out = S.cli_ok(n.cli("wf", "history", WF_ID), "wf history --json")
    evs = events_of(out)
    S.check(len(evs) > 0, "history has events", out)
    if not evs:
        return
    S.check(all(isinstance(e, dict) and "id" in e and "type" in e
                and "time" in e for e in evs),
            "every event has id, type, time", evs[:3])
    ids = [e.get("id") for e in evs]
    S.check(all(isinstance(i, int) for i in ids) and ids == sorted(ids)
            and len(set(ids)) == len(ids),
            "event ids are increasing integers", ids)
    S.check(all(isinstance(e.get("time"), str)
                and RFC3339_MS.match(e["time"]) for e in evs),
            "event times are RFC 3339 with ms", [e.get("time") for e in evs])
    types = [e.get("type") for e in evs]
    S.eq(types[0], "WorkflowStarted", "first event WorkflowStarted")
    S.eq(types[-1], "WorkflowCompleted", "last event WorkflowCompleted")
    for t in ("StepScheduled", "ActivityCompleted", "StepSkipped"):
        S.check(t in types, "history has %s" % t, types)

    def pos(t, step):
        for i, e in enumerate(evs):
            if e.get("type") == t and e.get("step") == step:
                return i
        return None

    for sid in ("a", "b", "p", "join"):
        ps, pc = pos("StepScheduled", sid), pos("ActivityCompleted", sid)
        S.check(ps is not None and pc is not None and ps < pc,
                "StepScheduled(%s) before ActivityCompleted(%s)"
                % (sid, sid), types)
        comp = [e for e in evs if e.get("type") == "ActivityCompleted"
                and e.get("step") == sid]
        S.check(len(comp) == 1 and comp[0].get("attempt") == 1,
                "one ActivityCompleted(%s) carrying attempt 1" % sid, comp)
        # The start is recorded once, between them, whether the shard
        # applied the dispatch on its own or with the result it met.
        started = [i for i, e in enumerate(evs)
                   if e.get("type") == "ActivityStarted"
                   and e.get("step") == sid]
        S.check(len(started) == 1 and ps is not None and pc is not None
                and ps < started[0] < pc
                and evs[started[0]].get("attempt") == 1
                and isinstance(evs[started[0]].get("worker"), str)
                and evs[started[0]]["worker"] != "",
                "one ActivityStarted(%s), after its schedule and before its "
                "result, with attempt 1 and the worker" % sid,
                [evs[i] for i in started])
    a_done, sk = pos("ActivityCompleted", "a"), pos("StepSkipped", "skipme")
    S.check(sk is not None and a_done is not None and a_done < sk,
            "StepSkipped(skipme) after ActivityCompleted(a)", types)
    S.check(pos("StepScheduled", "skipme") is None,
            "the skipped step was never scheduled", types)
    j = pos("StepScheduled", "join")
    S.check(j is not None and all(
        (pos("ActivityCompleted", s) or 1 << 30) < j for s in ("b", "p"))
        and (sk or 1 << 30) < j,
        "join scheduled after b, p completed and skipme skipped", types)


def listing():
    n = ctx["node"]
    # a second, newer run (no worker needed: one short sleep step)
    tiny = {"name": "tiny", "steps": [{"id": "nap", "sleep": "1ms"}]}
    f = E.write_json("tiny.json", tiny)
    out = S.cli_ok(n.cli("def", "register", f), "def register tiny "
                   "(no version: the next one)")
    S.eq(out, {"name": "tiny", "version": 1}, "tiny registered as version 1")
    r = n.cli("wf", "start", "tiny", "--id", "dag-2", "--wait", timeout=60)
    out = S.cli_ok(r, "wf start tiny --wait")
    S.eq(isinstance(out, dict) and (out.get("status"), out.get("output")),
         ("completed", None),
         "a sleep-only workflow completes with output null")
    out = S.cli_ok(n.cli("wf", "list"), "wf list --json")
    wfs = out.get("workflows") if isinstance(out, dict) else None
    S.check(isinstance(wfs, list), "wf list has a workflows array", out)
    if not isinstance(wfs, list):
        return
    S.eq([w.get("workflow_id") for w in wfs], ["dag-2", WF_ID],
         "wf list is newest first")
    fields = ["workflow_id", "run_id", "name", "status", "started_at",
              "closed_at"]
    S.check(all(all(k in w for k in fields) for w in wfs),
            "wf list entries have every SPEC field", wfs)
    mine = [w for w in wfs if w.get("workflow_id") == WF_ID]
    if mine:
        S.eq((mine[0].get("run_id"), mine[0].get("name"),
              mine[0].get("status"), mine[0].get("started_at"),
              mine[0].get("closed_at")),
             (ctx.get("run_id"), "dagtest", "completed",
              ctx.get("describe", {}).get("started_at"),
              ctx.get("describe", {}).get("closed_at")),
             "wf list entry agrees with describe")
    out = S.cli_ok(n.cli("wf", "list", "--name", "tiny"),
                   "wf list --name tiny")
    S.eq([w.get("workflow_id") for w in (out or {}).get("workflows", [])]
         if isinstance(out, dict) else out, ["dag-2"],
         "wf list --name filters by definition name")
    out = S.cli_ok(n.cli("wf", "list", "--limit", "1"), "wf list --limit 1")
    S.eq([w.get("workflow_id") for w in (out or {}).get("workflows", [])]
         if isinstance(out, dict) else out, ["dag-2"],
         "wf list --limit 1 gives the newest")
    out = S.cli_ok(n.cli("wf", "list", "--status", "running"),
                   "wf list --status running")
    S.eq(out.get("workflows") if isinstance(out, dict) else out, [],
         "no running workflows")


def versions():
    n = ctx["node"]
    v2 = dict(DEF)
    del v2["version"]
    v2["output"] = {"v": 2}
    f = E.write_json("dag_v2.json", v2)
    out = S.cli_ok(n.cli("def", "register", f),
                   "register a changed dagtest without version")
    S.eq(out, {"name": "dagtest", "version": 2}, "it becomes version 2")
    out = S.cli_ok(n.cli("def", "show", "dagtest"), "def show dagtest")
    S.eq(find_value(out, "version"), 2, "def show NAME is the newest")
    out = S.cli_ok(n.cli("def", "show", "dagtest@1"), "def show dagtest@1")
    S.eq(find_value(out, "version"), 1, "def show NAME@1 is version 1")
    out = S.cli_ok(n.cli("def", "list"), "def list")
    got = sorted((d.get("name"), d.get("version"))
                 for d in (out or {}).get("definitions", [])) \
        if isinstance(out, dict) else out
    S.eq(got, [("dagtest", 1), ("dagtest", 2), ("tiny", 1)],
         "def list has dagtest v1, v2 and tiny v1")
    out = S.cli_ok(n.cli("wf", "describe", WF_ID), "describe the old run")
    S.eq(out.get("version") if isinstance(out, dict) else out, 1,
         "the finished run stays pinned to version 1")
    # a start without a version takes the newest (the shard found version
    # 1 newest before and keeps it compiled)
    out = S.cli_ok(n.cli("wf", "start", "dagtest", "--id", "dag-v2",
                         "--input", json.dumps(INPUT), "--wait", timeout=60),
                   "start dagtest without a version")
    S.eq(out.get("output") if isinstance(out, dict) else out, {"v": 2},
         "it runs version 2 (its output)")
    out = S.cli_ok(n.cli("wf", "describe", "dag-v2"), "describe dag-v2")
    S.eq(out.get("version") if isinstance(out, dict) else out, 2,
         "and describe says version 2")


def human():
    n = ctx["node"]
    r = n.cli("wf", "describe", WF_ID, json=False)
    S.check(r.rc == 0 and "completed" in r.stdout,
            "human `wf describe` exits 0 and mentions completed",
            r.describe())
    r = n.cli("wf", "list", json=False)
    S.check(r.rc == 0 and WF_ID in r.stdout and "completed" in r.stdout,
            "human `wf list` exits 0 and shows the run and its status",
            r.describe())
    r = n.cli("wf", "result", WF_ID, json=False)
    S.check(r.rc == 0 and "completed" in r.stdout,
            "human `wf result` exits 0 and mentions completed", r.describe())
    r = n.cli("wf", "history", WF_ID, json=False)
    S.check(r.rc == 0 and "WorkflowCompleted" in r.stdout,
            "human `wf history` exits 0 and names the events", r.describe())
    r = n.cli("def", "list", json=False)
    S.check(r.rc == 0 and "dagtest" in r.stdout,
            "human `def list` exits 0 and names dagtest", r.describe())


def shutdown():
    w = ctx.get("worker")
    if w:
        rc = w.stop(timeout=10)
        S.eq(rc, 0, "an idle worker exits 0 on SIGTERM")
    rc = ctx["node"].stop(timeout=20)
    S.eq(rc, 0, "the dev node exits 0 on SIGTERM")


S.run([
    ("start a node", setup, True),
    ("def register / list / show", definitions, True),
    ("run the DAG with a --exec worker", run_dag),
    ("wf describe", describe),
    ("wf history", history),
    ("wf list", listing),
    ("start and wait in one request", execute),
    ("versions", versions),
    ("human output", human),
    ("clean shutdown", shutdown),
])
