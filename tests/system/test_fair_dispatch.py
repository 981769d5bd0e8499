#!/usr/bin/env python3
"""test_fair_dispatch.py - five tasks over five idle workers go one each.

Five workers (`--concurrency 5` each, WORKER_NAME=w1..w5) poll one queue.
The activity sleeps 2 s, so none finishes before all five tasks are out,
then prints {"worker": "$WORKER_NAME"}. Five one-step workflows are started
at once; their outputs must name five distinct workers.

Stale credit: on the raw wire, a grant naming another connection
generation than the last reset grant (one queued in a worker's socket
before a reconnect) is not counted.

Readiness is deterministic: each worker process must hold an established
TCP connection to the node (it sends POLL right after connecting), and a
warm-up proves every worker is polling: rounds of five concurrent 0.5 s
tasks repeat until every worker name has been seen (at most six rounds).
"""
import concurrent.futures as cf
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mpack_min  # noqa: E402
from sfharness import Suite, wait_for, TestFailure, import_zmq  # noqa: E402

zmq = import_zmq()

S = Suite("test_fair_dispatch")
E = S.new_env()
ctx = {}
NAMES = ["w1", "w2", "w3", "w4", "w5"]


def setup():
    n = E.node()
    ctx["node"] = n
    script = E.script("act.sh", """
in=$(cat)
case "$in" in
  *warm*) sleep 0.5 ;;
  *) sleep 2 ;;
esac
printf '{"worker":"%s"}' "$WORKER_NAME"
""")
    d = {"name": "fair", "queue": "q_fair",
         "steps": [{"id": "one", "activity": "who",
                    "input": "${input}"}]}
    n.cli("def", "register", E.write_json("fair.json", d), check=0)
    ctx["workers"] = [E.worker(n, "q_fair", script, concurrency=5,
                               env={"WORKER_NAME": name})
                      for name in NAMES]
    for w in ctx["workers"]:
        w.wait_connected()
    S.check(True, "five workers connected")


def warm_up():
    """Short tasks until every worker has answered one (proves all five
    poll). With fair dispatch one round of five is enough."""
    n = ctx["node"]
    seen = set()
    k = 0
    for rnd in range(6):
        futs = []
        with cf.ThreadPoolExecutor(max_workers=5) as p:
            for _ in range(5):
                k += 1
                futs.append(p.submit(
                    n.cli, "wf", "start", "fair", "--id", "warm-%d" % k,
                    "--input", '{"warm": true}', "--wait", timeout=60))
            for f in futs:
                r = f.result()
                if r.rc == 0 and isinstance(r.out, dict) \
                        and isinstance(r.out.get("output"), dict):
                    seen.add(r.out["output"].get("worker"))
                else:
                    raise TestFailure("warm-up run failed:\n" + r.describe())
        if seen >= set(NAMES):
            break
    S.eq(sorted(seen), NAMES, "every worker took a warm-up task "
         "(%d warm-up runs)" % k)


def fair():
    n = ctx["node"]
    # all five start commands at once, then wait for the five outcomes
    with cf.ThreadPoolExecutor(max_workers=5) as p:
        starts = list(p.map(lambda i: n.cli("wf", "start", "fair", "--id",
                                            "fair-%d" % i, "--input",
                                            '{"i": %d}' % i),
                            range(5)))
    for r in starts:
        S.check(r.rc == 0, "start %s" % r.args[-3], r.describe())
    with cf.ThreadPoolExecutor(max_workers=5) as p:
        results = list(p.map(lambda i: n.cli("wf", "result", "fair-%d" % i,
                                             "--wait", timeout=60),
                             range(5)))
    names = []
    for r in results:
        if r.rc == 0 and isinstance(r.out, dict) \
                and r.out.get("status") == "completed":
            names.append((r.out.get("output") or {}).get("worker"))
        else:
            S.check(False, "a fair run completed", r.describe())
    S.eq(sorted(names), NAMES, "five tasks went to five distinct workers "
         "(one each)")


def _barrier(sock, rid):
    """Tasks the node pushed to sock before its reply to request rid. The
    router dispatches on a poll at once, and one DEALER's messages are
    handled in order, so a task caused by a poll sent before the request
    arrives before its reply."""
    tasks = []
    sock.send(mpack_min.pack({"v": 1, "op": "wf_describe", "id": rid,
                              "ns": "default", "wf_id": "stale-0"}))
    while True:
        if sock.poll(30000, zmq.POLLIN) == 0:
            raise TestFailure("no reply to request %d within 30 s" % rid)
        msg = mpack_min.unpack(sock.recv())
        if msg.get("op") == "task":
            tasks.append(msg)
        elif msg.get("id") == rid:
            return tasks


def stale_credit():
    if zmq is None:
        S.check(False, "python3-zmq is installed - stale credit not tested")
        return
    n = ctx["node"]
    d = {"name": "stale", "queue": "q_stale",
         "steps": [{"id": "one", "activity": "nobody"}]}
    S.cli_ok(n.cli("def", "register", E.write_json("stale.json", d)),
             "def register stale")
    for i in range(3):
        S.cli_ok(n.cli("wf", "start", "stale", "--id", "stale-%d" % i),
                 "start stale-%d" % i)
    sock = n.raw_socket()

    def poll(credit, gen, reset=False):
        msg = {"v": 1, "op": "poll", "queue": "q_stale", "credit": credit,
               "gen": gen}
        if reset:
            msg["reset"] = True
        sock.send(mpack_min.pack(msg))
    try:
        for bad, what in (({"gen": -1}, "a negative gen"),
                          ({"reset": "yes"}, "a reset that is not a bool")):
            msg = {"v": 1, "op": "poll", "queue": "q_stale", "credit": 1}
            msg.update(bad)
            sock.send(mpack_min.pack(msg))
            if sock.poll(30000, zmq.POLLIN) == 0:
                raise TestFailure("no answer to a bad poll within 30 s")
            r = mpack_min.unpack(sock.recv())
            S.eq((r.get("ok"), (r.get("error") or {}).get("code")),
                 (False, "bad_request"), "a poll with %s is a bad_request"
                 % what)
        poll(5, 7)
        S.eq(len(_barrier(sock, 1)), 0, "a grant of generation 7 before any "
             "reset gets no task")
        poll(1, 8, reset=True)
        S.eq(len(_barrier(sock, 2)), 1, "the reset grant of generation 8 "
             "(credit 1) gets one task")
        poll(5, 7)
        S.eq(len(_barrier(sock, 3)), 0, "a later grant of generation 7 is "
             "not added")
        poll(1, 8)
        S.eq(len(_barrier(sock, 4)), 1, "a grant of generation 8 is added: "
             "one more task")
        sock.send(mpack_min.pack({"v": 1, "op": "poll", "queue": "q_stale",
                                  "credit": 0, "stop": True}))
    finally:
        sock.close()


def shutdown():
    for w in ctx["workers"]:
        w.proc.send_signal(15)
    for w in ctx["workers"]:
        try:
            wait_for(lambda: not w.alive(), 5, what="idle worker to exit")
            S.eq(w.proc.returncode, 0, "idle worker %s exits 0 within a "
                 "second or so of SIGTERM" % w.extra_env["WORKER_NAME"])
        except TestFailure as e:
            S.check(False, str(e))


S.run([
    ("node, definition, five workers", setup, True),
    ("warm-up: every worker polls", warm_up),
    ("five tasks, five idle workers", fair),
    ("stale credit of another connection", stale_credit),
    ("idle workers stop on SIGTERM", shutdown),
])
