#!/usr/bin/env python3
"""test_task_recovery.py - a task record is packed (run, step and attempt in
its key, no token: actors/shf_taskrec.h); after kill -9 the recovered task
is the very message the node sent before, token included.

A raw worker (pyzmq DEALER) takes tr-1's task and holds it; the node is
killed with SIGKILL and restarted. A new raw worker polls the queue: the
task it gets is field for field the one the first got (the token sealed
again from the key equals the one sent), the node's log counts the
recovered tasks, and completing with the token from before the crash is
accepted: tr-1 completes with that output, one ActivityCompleted in its
history. tr-2's task, never taken, is recovered too; cancelling tr-2 after
the restart withdraws it (the cancel finds the task by its sealed token):
a poll on its queue gets nothing.

A task record that does not read is one bad run, not a shard that cannot
open: with tr-3 and tr-4 waiting on a queue nobody polls, the node is
killed and tr-3's record overwritten with bytes that are not msgpack
(sfharness.ShardFile). After the restart the log names tr-3's task as not
offered, tr-4's task is recovered, taken and completed, and tr-3 is still
running; cancelling it deletes the record, so the next restart recovers
nothing and logs nothing about it.
"""
import os
import re
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mpack_min  # noqa: E402
from sfharness import (ShardFile, Suite, TestFailure, import_zmq,  # noqa: E402
                       step_events)

zmq = import_zmq()
S = Suite("test_task_recovery")
E = S.new_env()
ctx = {}


def _recv(sock, what, timeout_ms=15000):
    if sock.poll(timeout_ms, zmq.POLLIN) == 0:
        raise TestFailure("no %s within %d s" % (what, timeout_ms // 1000))
    return mpack_min.unpack(sock.recv())


def _poll(sock, queue):
    sock.send(mpack_min.pack({"v": 1, "op": "poll", "queue": queue,
                              "credit": 1, "gen": 1, "reset": True}))


def _until_reply(sock, rid):
    """Tasks pushed to sock before the reply to a describe sent now: the
    node handles one DEALER's messages in order."""
    sock.send(mpack_min.pack({"v": 1, "op": "wf_describe", "id": rid,
                              "ns": "default", "wf_id": "tr-1"}))
    tasks = []
    while True:
        msg = _recv(sock, "reply to request %d" % rid)
        if msg.get("op") == "task":
            tasks.append(msg)
        elif msg.get("id") == rid:
            return tasks


def _status(n, wf_id):
    """The status describe gives, or None when it gives no object."""
    r = n.cli("wf", "describe", wf_id)
    return r.out.get("status") if isinstance(r.out, dict) else None


def setup():
    if zmq is None:
        raise TestFailure("python3-zmq is not installed")
    n = E.node(shards=2)
    ctx["node"] = n
    for name, queue in (("tr", "q_tr"), ("tr_idle", "q_idle")):
        d = {"name": name, "queue": queue,
             "steps": [{"id": "work", "activity": "act",
                        "input": {"k": "${input.k}", "tag": "x"},
                        "timeouts": {"start_to_close": "60s"}}]}
        S.cli_ok(n.cli("def", "register", E.write_json(name + ".json", d)),
                 "def register " + name)
    S.cli_ok(n.cli("wf", "start", "tr", "--id", "tr-1", "--input",
                   '{"k": 7}'), "start tr-1")
    S.cli_ok(n.cli("wf", "start", "tr_idle", "--id", "tr-2", "--input",
                   '{"k": 8}'), "start tr-2 (its queue has no worker)")


def take_then_crash():
    n = ctx["node"]
    sock = n.raw_socket()
    try:
        _poll(sock, "q_tr")
        task = _recv(sock, "tr-1's task")
    finally:
        sock.close()
    S.eq((task.get("op"), task.get("wf_id"), task.get("step"),
          task.get("attempt"), task.get("input")),
         ("task", "tr-1", "work", 1, {"k": 7, "tag": "x"}),
         "the raw worker holds tr-1's attempt 1")
    ctx["task"] = task
    n.kill9()
    n.restart()
    counts = re.findall(r"recovered (\d+) pending tasks", n.log_text())
    S.eq(sum(int(c) for c in counts), 2, "log: both pending tasks are "
         "recovered")


def same_task_again():
    n = ctx["node"]
    sock = n.raw_socket()
    try:
        _poll(sock, "q_tr")
        again = _recv(sock, "tr-1's task after the restart")
        S.eq(again, ctx["task"], "the recovered task is the message sent "
             "before the crash, token included")
        sock.send(mpack_min.pack({"v": 1, "op": "complete", "id": 5,
                                  "token": ctx["task"]["token"],
                                  "output": {"done": 7}}))
        r = _recv(sock, "answer to the complete")
        S.eq((r.get("id"), r.get("ok")), (5, True),
             "completing with the token from before the crash is accepted")
    finally:
        sock.close()
    out = n.result_wait("tr-1")
    S.eq((out.get("status"), out.get("output")), ("completed", {"done": 7}),
         "tr-1 completed with that output")
    done = step_events(n.cli("wf", "history", "tr-1").out, "work",
                       "ActivityCompleted")
    S.eq(len(done), 1, "one ActivityCompleted in tr-1's history")


def cancel_recovered():
    n = ctx["node"]
    S.cli_ok(n.cli("wf", "cancel", "tr-2"), "cancel tr-2 after the restart")
    sock = n.raw_socket()
    try:
        _poll(sock, "q_idle")
        S.eq(_until_reply(sock, 1), [], "a poll on tr-2's queue gets no "
             "task: the cancel withdrew the recovered one")
    finally:
        sock.close()
    S.eq(_status(n, "tr-2"), "canceled", "tr-2 is canceled")


def damaged_task():
    n = ctx["node"]
    for wid in ("tr-3", "tr-4"):
        S.cli_ok(n.cli("wf", "start", "tr_idle", "--id", wid, "--input",
                       '{"k": 9}'), "start " + wid)
    n.kill9()
    damaged = []
    for shard in sorted(os.listdir(os.path.join(n.data, "shards"))):
        with ShardFile(os.path.join(n.data, "shards", shard)) as f:
            for key, _ in f.items("tasks"):
                if b"\0tr-3\0" in key:
                    f.put("tasks", key, b"\xc1\xc1")
                    damaged.append(key)
    S.eq(len(damaged), 1, "tr-3's task record overwritten while the node "
         "is down")
    n.restart()
    log = n.log_text()
    S.check("the pending task of default/tr-3 (run " in log,
            "log: tr-3's task is named as not offered", log[-2000:])
    counts = re.findall(r"recovered (\d+) pending tasks", log)
    S.eq(sum(int(c) for c in counts), 1, "log: tr-4's task alone is "
         "recovered")
    sock = n.raw_socket()
    try:
        _poll(sock, "q_idle")
        task = _recv(sock, "tr-4's task after the restart")
        S.eq((task.get("wf_id"), task.get("step")), ("tr-4", "work"),
             "a worker gets tr-4's task")
        S.eq(_until_reply(sock, 2), [], "and no other")
        sock.send(mpack_min.pack({"v": 1, "op": "complete", "id": 6,
                                  "token": task["token"],
                                  "output": {"done": 4}}))
        r = _recv(sock, "answer to the complete")
        S.eq((r.get("id"), r.get("ok")), (6, True), "tr-4's task completes")
    finally:
        sock.close()
    out = n.result_wait("tr-4")
    S.eq(out.get("status"), "completed", "tr-4 completed")
    S.eq(_status(n, "tr-3"), "running",
         "tr-3 is still running, waiting at its step")
    S.cli_ok(n.cli("wf", "cancel", "tr-3"), "cancel tr-3")
    S.eq(_status(n, "tr-3"), "canceled", "tr-3 is canceled")
    n.kill9()
    n.restart()
    log = n.log_text()
    S.check("tr-3" not in log and "could not be read" not in log,
            "after the cancel a restart finds no unreadable task",
            log[-2000:])
    S.check(not re.search(r"recovered \d+ pending tasks", log),
            "and recovers none")


S.run([
    ("node, definitions, two runs", setup, True),
    ("a raw worker takes tr-1's task; kill -9; restart", take_then_crash,
     True),
    ("the same task comes back, and its old token completes it",
     same_task_again),
    ("a recovered task is withdrawn by a cancel", cancel_recovered),
    ("a task record that does not read costs only its run", damaged_task),
])
