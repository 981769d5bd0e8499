#!/usr/bin/env python3
"""test_corrupt_run.py - a run whose stored state cannot be read is one bad
run, not a dead shard.

- a node with one shard parks two workflows in a 2 s sleep; while it is
  stopped, their stored states are overwritten (sfharness.ShardFile):
  one with bytes that are not msgpack, one with a map that is not a run
  state (its "ns" an integer);
- after the restart both sleeps come due: the shard logs each timer it
  cannot fire and drops it, and goes on: a workflow started afterwards on
  the same shard completes, and describe of a damaged workflow answers an
  error (not a hang), while describe of a sound one still works;
- the node is still running at the end.
"""
import os
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sfharness import ShardFile, Suite, TestFailure, wait_for  # noqa: E402

S = Suite("test_corrupt_run")
E = S.new_env()
ctx = {}

DEFS = [
    {"name": "cr_sleep", "steps": [{"id": "nap", "sleep": "2s"}]},
    {"name": "cr_quick", "steps": [{"id": "nap", "sleep": "100ms"}]},
]

# What each damaged run's stored state becomes.
DAMAGE = {
    "bad-bytes": b"\xc1\xc1\xc1",          # not msgpack
    "bad-shape": b"\x81\xa2ns\x07",        # {"ns": 7}: no run state
}


def overwrite_states(shard_dir, damage):
    """Overwrite the stored state of each workflow id in damage with its
    value: exec maps the id (its key ends with the id's bytes) to the
    run's key in runs, which holds the state. The node must be stopped."""
    found = []
    with ShardFile(shard_dir) as f:
        current = dict(f.items("exec"))  # exec key -> the run's key in runs
        for wid, value in damage.items():
            for exec_key, key in current.items():
                if exec_key.endswith(wid.encode()):
                    f.put("runs", key, value)
                    found.append(wid)
    return found


def setup():
    n = E.node(shards=1)
    ctx["node"] = n
    E.register(n, DEFS)
    starts = {}
    for wid in list(DAMAGE) + ["sound"]:
        n.cli("wf", "start", "cr_sleep", "--id", wid, check=0)
        starts[wid] = time.time()
    ctx["starts"] = starts
    d = n.cli("wf", "describe", "bad-bytes").out or {}
    S.eq(d.get("status"), "running", "bad-bytes is parked in its sleep")


def damage():
    n = ctx["node"]
    S.eq(n.stop(), 0, "the node stops on SIGTERM")
    shard_dir = os.path.join(n.data, "shards", "0000")
    found = overwrite_states(shard_dir, DAMAGE)
    S.eq(sorted(found), sorted(DAMAGE),
         "both stored states overwritten in shard 0000")
    n.start()
    S.check(True, "the node is back")


def go_on():
    n = ctx["node"]
    due = max(ctx["starts"].values()) + 2.0

    def dropped():
        with open(n.log, "rb") as f:
            log = f.read().decode("utf-8", "replace")
        return all("timer of default/%s dropped" % w in log for w in DAMAGE)
    wait_for(lambda: time.time() >= due, 10, what="the sleeps due")
    try:
        wait_for(dropped, 10, what="both damaged timers dropped in the log")
        S.check(True, "the shard logged both timers it could not fire")
    except TestFailure as e:  # the checks below say what it did instead
        S.check(False, "the shard logged both timers it could not fire", e)
    r = n.cli("wf", "start", "cr_quick", "--id", "after-1", check=0)
    S.check(r.rc == 0, "a workflow starts on the same shard afterwards",
            r.describe())
    r = n.cli("wf", "result", "after-1", "--wait", timeout=30)
    out = r.out if isinstance(r.out, dict) else {}
    S.eq(out.get("status"), "completed", "and completes")
    r = n.cli("wf", "result", "sound", "--wait", timeout=30)
    out = r.out if isinstance(r.out, dict) else {}
    S.eq(out.get("status"), "completed", "the sound sleeper completed")
    for wid in DAMAGE:
        r = n.cli("wf", "describe", wid, timeout=15)
        S.check(r.rc not in (0, None),
                "describe %s answers an error (%s)" % (wid, r.error_code()),
                r.describe())
    S.check(n.alive(), "the node is still running")


S.run([
    ("two runs parked in a sleep on one shard", setup, True),
    ("their stored states overwritten while the node is down", damage, True),
    ("the shard drops their timers and goes on", go_on),
])
