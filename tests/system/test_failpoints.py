#!/usr/bin/env python3
"""test_failpoints.py - "nothing leaves before it is durable" and "all or
nothing", proven with SHF_FAILPOINTS on the node process.

(a) shard.before_commit=exit@N: the node _exit(137)s inside the first
    committing batch after start-up. The request that caused the batch got
    no success reply, and after a restart without failpoints its effect is
    absent; everything acknowledged before it is present.
(b) shard.after_commit=exit@N on a `wf start`: the node dies after the
    commit, before replying. The client gets no success reply; after a
    restart the run exists (it was committed), completes with a worker, and
    repeating the start with the same --request-id returns that run.

N is found by experiment, not assumed: N starts at 1 and is raised while
the node dies during start-up (i.e. start-up itself commits); the N used is
printed. The node is "ready" when its port accepts TCP connections (no
request is sent, so readiness cannot pass through a failpoint).
"""
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sfharness import Suite, Node, free_port, wait_for, tail, TestFailure  # noqa: E402,F401

S = Suite("test_failpoints")
E = S.new_env()
ctx = {}

DEF = {"name": "fpdef", "queue": "q_fp",
       "steps": [{"id": "x", "activity": "noop",
                  "input": {"v": "${input.v}"}}]}
MAX_N = 40
CLI_TIMEOUT = 60


def start_with_failpoint(data, spec):
    """Start a node on `data` with SHF_FAILPOINTS=spec(N), raising N while
    the node dies in start-up. Returns (node, N)."""
    port = free_port()
    for n in range(1, MAX_N + 1):
        node = Node(E, data, port)
        E.nodes.append(node)
        try:
            node.start(env={"SHF_FAILPOINTS": spec % n}, ready="tcp")
            return node, n
        except TestFailure:
            if node.alive() or node.proc.returncode != 137:
                raise
            print("   start-up with %s died (exit 137); raising N"
                  % (spec % n))
            if n == 1:
                print("   first death log:\n" + tail(node.log, 10))
    raise TestFailure("the node dies in start-up for every N <= %d with %s"
                      % (MAX_N, spec % MAX_N))


def died(node, timeout=10):
    """Wait briefly for the node to exit; returns its exit code or None."""
    return node.wait_exit(timeout)


def before_commit():
    data = E.path("data_a")
    node, n = start_with_failpoint(data, "shard.before_commit=exit@%d")
    print("   using shard.before_commit=exit@%d (start-up passed %d "
          "commits)" % (n, n - 1))
    f = E.write_json("fpdef.json", DEF)
    ops = [
        ("def register", ("def", "register", f)),
        ("wf start", ("wf", "start", "fpdef", "--id", "fp-a",
                      "--request-id", "req-a", "--input", '{"v": 1}')),
    ]
    acked = []
    killer = None
    for name, args in ops:
        r = node.cli(*args, timeout=CLI_TIMEOUT)
        alive = node.alive() if r.rc == 0 else (died(node, 5) is None)
        if alive and r.rc == 0:
            acked.append(name)
            print("   %s acknowledged; the node is alive" % name)
            continue
        if alive:
            S.check(False, "%s failed but the node is alive" % name,
                    r.describe())
            break
        killer = name
        code = node.proc.returncode
        S.eq(code, 137, "the node died with exit 137 during `%s`" % name)
        S.check(r.rc != 0, "`%s` got no success reply" % name, r.describe())
        S.check(r.rc == 4, "`%s` exits 4 (cannot reach the server)" % name,
                r.describe())
        break
    if killer is None:
        S.check(False, "shard.before_commit fired during register or start")
        node.kill9()
        return
    node.start(env={}, ready="cli")
    S.check(True, "restarted without failpoints")
    out = node.cli("def", "list").out
    names = [d.get("name") for d in (out or {}).get("definitions", [])] \
        if isinstance(out, dict) else None
    if "def register" in acked:
        S.eq(names, ["fpdef"], "the acknowledged definition is present")
    else:
        S.eq(names, [], "the unacknowledged definition was not stored "
             "(def list empty)")
        S.cli_err(node.cli("def", "show", "fpdef"), 3, "not_found",
                  "def show fpdef -> exit 3 not_found")
    r = node.cli("wf", "describe", "fp-a")
    if "wf start" in acked:
        S.check(r.rc == 0, "the acknowledged run is present", r.describe())
    elif killer == "def register":
        S.cli_err(r, 3, "not_found", "the start never sent is absent "
                  "(describe fp-a -> exit 3)")
    else:
        S.cli_err(r, 3, "not_found", "the unacknowledged start was not "
                  "stored (describe fp-a -> exit 3)")
        out = node.cli("wf", "list").out
        S.eq(out.get("workflows") if isinstance(out, dict) else out, [],
             "wf list is empty")
    # the node works normally afterwards
    node.cli("def", "register", f, check=0)
    r = node.cli("wf", "start", "fpdef", "--id", "fp-a", "--request-id",
                 "req-a", "--input", '{"v": 1}')
    S.check(r.rc == 0 and isinstance(r.out, dict)
            and r.out.get("workflow_id") == "fp-a",
            "after restart the same start (same request id) succeeds",
            r.describe())
    ctx["a_node"] = node


def after_commit():
    data = E.path("data_b")
    port = free_port()
    clean = Node(E, data, port)
    E.nodes.append(clean)
    clean.start()
    f = E.write_json("fpdef.json", DEF)
    clean.cli("def", "register", f, check=0)
    S.eq(clean.stop(), 0, "definition registered; node stopped cleanly")

    node, n = start_with_failpoint(data, "shard.after_commit=exit@%d")
    print("   using shard.after_commit=exit@%d" % n)
    r = node.cli("wf", "start", "fpdef", "--id", "fp-b", "--request-id",
                 "req-b", "--input", '{"v": 2}', timeout=CLI_TIMEOUT)
    code = died(node, 10)
    if code is None:
        S.check(False, "shard.after_commit fired during wf start (the node "
                "is still alive)", r.describe())
        node.kill9()
        return
    S.eq(code, 137, "the node died with exit 137 after committing the start")
    S.check(r.rc != 0, "the start got no success reply", r.describe())
    S.check(r.rc == 4, "the start exits 4 (cannot reach the server)",
            r.describe())
    node.start(env={}, ready="cli")
    r = node.cli("wf", "describe", "fp-b")
    S.check(r.rc == 0 and isinstance(r.out, dict)
            and r.out.get("status") == "running",
            "after restart the committed run exists and is running",
            r.describe())
    run_id = r.out.get("run_id") if isinstance(r.out, dict) else None
    r = node.cli("wf", "start", "fpdef", "--id", "fp-b", "--request-id",
                 "req-b", "--input", '{"v": 2}')
    S.check(r.rc == 0 and isinstance(r.out, dict)
            and r.out.get("workflow_id") == "fp-b"
            and r.out.get("run_id") == run_id,
            "repeating the start with its request id returns the committed "
            "run (%s)" % run_id, r.describe())
    script = E.script("noop.sh", 'printf \'{"done":true}\'\n')
    E.worker(node, "q_fp", script, concurrency=2)
    r = node.cli("wf", "result", "fp-b", "--wait", timeout=60)
    S.check(r.rc == 0 and isinstance(r.out, dict)
            and r.out.get("status") == "completed"
            and r.out.get("output") == {"done": True},
            "with a worker the recovered run completes", r.describe())
    r = node.cli("wf", "history", "fp-b")
    types = [e.get("type") for e in (r.out or {}).get("events", [])] \
        if isinstance(r.out, dict) else []
    S.eq(types.count("WorkflowStarted"), 1,
         "exactly one WorkflowStarted in the history")
    ctx["b_node"] = node


def after_commit_sequence():
    """after_commit=exit@K in the middle of a sequence of starts: every
    acknowledged start and the one in flight are present."""
    data = E.path("data_c")
    port = free_port()
    clean = Node(E, data, port)
    E.nodes.append(clean)
    clean.start()
    f = E.write_json("fpdef.json", DEF)
    clean.cli("def", "register", f, check=0)
    clean.stop()
    node, n = start_with_failpoint(data, "shard.after_commit=exit@%d")
    k = n + 2   # the third commit after start-up
    node.kill9()
    node.start(env={"SHF_FAILPOINTS": "shard.after_commit=exit@%d" % k},
               ready="tcp")
    acked, inflight = [], None
    for i in range(10):
        wid = "seq-%d" % i
        r = node.cli("wf", "start", "fpdef", "--id", wid, "--request-id",
                     "rs-%d" % i, "--input", '{"v": %d}' % i,
                     timeout=CLI_TIMEOUT)
        if r.rc == 0:
            acked.append(wid)
        else:
            inflight = wid
            break
    code = died(node, 10)
    S.eq(code, 137, "the node died (exit 137) at the %d-th commit" % k)
    print("   %d starts acknowledged, %s in flight" % (len(acked), inflight))
    S.check(inflight is not None and len(acked) >= 1,
            "at least one start acknowledged before the death, one in "
            "flight", (acked, inflight))
    node.start(env={}, ready="cli")
    for wid in acked + ([inflight] if inflight else []):
        r = node.cli("wf", "describe", wid)
        S.check(r.rc == 0, "%s present after restart (%s)"
                % (wid, "acknowledged" if wid in acked else
                   "committed, not acknowledged"), r.describe())


S.run([
    ("shard.before_commit: died before commit => absent", before_commit),
    ("shard.after_commit on wf start: committed => present", after_commit),
    ("shard.after_commit mid-sequence: acknowledged => present",
     after_commit_sequence),
])
