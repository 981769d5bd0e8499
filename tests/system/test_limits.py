#!/usr/bin/env python3
"""test_limits.py - limits that keep one bad request from harming a shard.

A payload nested too deeply, a namespace + workflow id too long for the
shard's keys, a definition nested too deeply: each gets a clear error and
the node keeps serving every workflow on every shard. A data directory
whose shards lost their cluster file is refused rather than re-keyed.
"""
import json
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sfharness import Suite  # noqa: E402

S = Suite("test_limits")
E = S.new_env()
ctx = {}


def nested(levels):
    value = 1
    for _ in range(levels):
        value = [value]
    return value


def setup():
    n = E.node()
    ctx["node"] = n
    d = {"name": "lim", "queue": "q_lim",
         "steps": [{"id": "w", "wait_signal": "go"},
                   {"id": "a", "activity": "echo",
                    "input": "${signals.go}"}]}
    S.cli_ok(n.cli("def", "register", E.write_json("lim.json", d)),
             "definition registered")
    S.cli_ok(n.cli("wf", "start", "lim", "--id", "l1"), "run l1 started")


def deep_payload():
    n = ctx["node"]
    r = n.cli("wf", "signal", "l1", "go", "--input", json.dumps(nested(21)))
    S.check(r.rc in (1, 2) and r.error_code() == "bad_request"
            and "nested deeper than 20" in (r.error_message() or ""),
            "a signal payload 21 levels deep -> bad_request", r.describe())
    r = n.cli("wf", "start", "lim", "--id", "l2",
              "--input", json.dumps(nested(30)))
    S.check(r.rc in (1, 2) and r.error_code() == "bad_request",
            "a start input 30 levels deep -> bad_request", r.describe())
    r = n.cli("wf", "signal", "l1", "go", "--input", json.dumps(nested(20)))
    S.cli_ok(r, "a signal payload 20 levels deep is taken")
    out = S.cli_ok(n.cli("wf", "describe", "l1"), "l1 still described")
    steps = {s["id"]: s for s in out.get("steps", [])}
    S.eq(steps.get("w", {}).get("status"), "completed",
         "the wait_signal step took the 20-level payload")
    S.eq(steps.get("a", {}).get("status"), "scheduled",
         "the activity rendered from it is scheduled")
    for i in range(16):
        S.check(n.cli("wf", "start", "lim", "--id", "probe-%d" % i).rc == 0,
                "the node still starts runs on every shard (probe-%d)" % i)


def long_ids():
    n = ctx["node"]
    r = n.cli("wf", "start", "lim", "--id", "x" * 255,
              "--namespace", "n" * 100)
    S.check(r.rc in (1, 2) and r.error_code() == "bad_request"
            and "320 bytes" in (r.error_message() or ""),
            "namespace + workflow id over 320 bytes -> bad_request",
            r.describe())
    S.cli_ok(n.cli("wf", "start", "lim", "--id", "y" * 200), "200 bytes fit")


def deep_definition():
    n = ctx["node"]
    d = {"name": "deepdef", "steps": [{"id": "a", "activity": "x",
                                        "input": nested(30)}]}
    r = n.cli("def", "register", E.write_json("deep.json", d))
    S.check(r.rc == 1 and r.error_code() == "invalid_definition"
            and "nested deeper than 32" in (r.error_message() or ""),
            "a definition nested over 32 levels deep -> invalid_definition",
            r.describe())
    out = S.cli_ok(n.cli("def", "list"), "def list works")
    names = [x["name"] for x in out.get("definitions", [])]
    S.check("deepdef" not in names, "the deep definition was not stored")


def lost_cluster_file():
    n = ctx["node"]
    S.eq(n.stop(), 0, "node stops cleanly")
    os.rename(os.path.join(n.data, "cluster.json"),
              os.path.join(n.data, "cluster.json.bak"))
    n.start(ready=None)
    code = n.wait_exit(15)
    S.check(code not in (None, 0),
            "a node whose shards lost their cluster file refuses to start",
            "exit %s" % code)
    S.check(not os.path.exists(os.path.join(n.data, "cluster.json")),
            "no new cluster file was made")
    os.rename(os.path.join(n.data, "cluster.json.bak"),
              os.path.join(n.data, "cluster.json"))
    n.start()
    out = S.cli_ok(n.cli("wf", "describe", "l1"),
                   "with the file restored every run is found again")
    S.eq(out.get("status"), "running", "l1 is still running")


S.run([
    ("node and a waiting run", setup, True),
    ("payload nesting limit", deep_payload),
    ("namespace + workflow id length", long_ids),
    ("definition nesting limit", deep_definition),
    ("a lost cluster file is refused", lost_cluster_file),
])
