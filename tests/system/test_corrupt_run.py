#!/usr/bin/env python3
"""test_corrupt_run.py - a run whose stored state cannot be read is one bad
run, not a dead shard.

- a node with one shard parks two workflows in a 2 s sleep; while it is
  stopped, their stored states are overwritten (liblmdb through ctypes):
  one with bytes that are not msgpack, one with a map that is not a run
  state (its "ns" an integer);
- after the restart both sleeps come due: the shard logs each timer it
  cannot fire and drops it, and goes on: a workflow started afterwards on
  the same shard completes, and describe of a damaged workflow answers an
  error (not a hang), while describe of a sound one still works;
- the node is still running at the end.
"""
import ctypes
import ctypes.util
import os
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sfharness import Suite, TestFailure, wait_for  # noqa: E402

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


class _Val(ctypes.Structure):
    _fields_ = [("mv_size", ctypes.c_size_t), ("mv_data", ctypes.c_void_p)]


def _lmdb():
    name = ctypes.util.find_library("lmdb") or "liblmdb.so.0"
    lib = ctypes.CDLL(name)
    lib.mdb_strerror.restype = ctypes.c_char_p
    return lib


def overwrite_states(shard_dir, damage):
    """Overwrite the stored state of each workflow id in damage with its
    value: exec maps the id (its key ends with the id's bytes) to the
    run's key in runs, which holds the state. The node must be stopped."""
    lib = _lmdb()

    def ok(rc, what):
        if rc != 0:
            raise TestFailure("%s: %s" % (what, lib.mdb_strerror(rc)))

    env = ctypes.c_void_p()
    ok(lib.mdb_env_create(ctypes.byref(env)), "mdb_env_create")
    ok(lib.mdb_env_set_maxdbs(env, 16), "mdb_env_set_maxdbs")
    ok(lib.mdb_env_set_mapsize(env, ctypes.c_size_t(1 << 30)),
       "mdb_env_set_mapsize")
    ok(lib.mdb_env_open(env, shard_dir.encode(), 0, 0o600), "mdb_env_open")
    txn = ctypes.c_void_p()
    ok(lib.mdb_txn_begin(env, None, 0, ctypes.byref(txn)), "mdb_txn_begin")
    dbi, runs = ctypes.c_uint(), ctypes.c_uint()
    ok(lib.mdb_dbi_open(txn, b"exec", 0, ctypes.byref(dbi)), "mdb_dbi_open")
    ok(lib.mdb_dbi_open(txn, b"runs", 0, ctypes.byref(runs)), "mdb_dbi_open")
    cur = ctypes.c_void_p()
    ok(lib.mdb_cursor_open(txn, dbi, ctypes.byref(cur)), "mdb_cursor_open")
    current = {}  # exec key -> the current run's key in runs
    k, v = _Val(), _Val()
    op = 0  # MDB_FIRST, then MDB_NEXT (8)
    while lib.mdb_cursor_get(cur, ctypes.byref(k), ctypes.byref(v), op) == 0:
        current[ctypes.string_at(k.mv_data, k.mv_size)] = \
            ctypes.string_at(v.mv_data, v.mv_size)
        op = 8
    lib.mdb_cursor_close(cur)
    found = []
    for wid, value in damage.items():
        for exec_key, key in current.items():
            if exec_key.endswith(wid.encode()):
                kb = ctypes.create_string_buffer(key, len(key))
                vb = ctypes.create_string_buffer(value, len(value))
                kv = _Val(len(key), ctypes.cast(kb, ctypes.c_void_p))
                vv = _Val(len(value), ctypes.cast(vb, ctypes.c_void_p))
                ok(lib.mdb_put(txn, runs, ctypes.byref(kv),
                               ctypes.byref(vv), 0), "mdb_put")
                found.append(wid)
    ok(lib.mdb_txn_commit(txn), "mdb_txn_commit")
    lib.mdb_env_close(env)
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
