#!/usr/bin/env python3
"""test_bad_input.py - bad input gets a stable error, the node keeps
serving, and no stored state changes.

Raw wire (a ZeroMQ DEALER, python3-zmq): random bytes, wrong field types,
a lying length (dd ff ff ff ff), a 3 MiB frame, 100000 nested arrays, an
unknown op, a wrong version, a non-string key, a truncated map. Each gets
one reply frame {"op":"reply","ok":false,"error":{"code":...}} (id 0 when
the id could not be read); after each, `wf list` still works and `def
list` / `wf list` are unchanged.

CLI: invalid definitions (syntax error with line and column, a cycle, an
unknown step in after, two kinds in one step, a bad duration, a bad when)
-> exit 1 invalid_definition and nothing registered; not found -> exit 3;
usage errors -> exit 2; unreachable server -> exit 4; signal to a closed
run -> exit 1 closed; a start of a running ID -> exit 1 already_running;
a repeated --request-id returns the first reply.
"""
import os
import random
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sfharness import (Suite, free_port, import_zmq, run_cli,  # noqa: E402
                       wait_for)
import mpack_min  # noqa: E402

zmq = import_zmq()

S = Suite("test_bad_input")
E = S.new_env()
ctx = {}


def setup():
    n = E.node()
    ctx["node"] = n
    tiny = {"name": "tiny", "steps": [{"id": "nap", "sleep": "1ms"}]}
    waiter = {"name": "waiter", "steps": [{"id": "w", "wait_signal": "go"}]}
    n.cli("def", "register", E.write_json("tiny.json", tiny), check=0)
    n.cli("def", "register", E.write_json("waiter.json", waiter), check=0)
    r = n.cli("wf", "start", "tiny", "--id", "t-1", "--wait", timeout=60)
    S.check(r.rc == 0 and r.out.get("status") == "completed",
            "a tiny workflow completes", r.describe())
    n.cli("wf", "start", "waiter", "--id", "w-1", check=0)
    ctx["state"] = snapshot()


def snapshot():
    n = ctx["node"]
    d = n.cli("def", "list", check=0).out
    w = n.cli("wf", "list", check=0).out
    return d, w


def state_unchanged(what):
    now = snapshot()
    S.eq(now, ctx["state"], "%s: def list and wf list unchanged" % what)


# ------------------------------------------------------------------ wire

def raw_cases():
    rng = random.Random(20261122)
    big = "A" * (3 * 1024 * 1024)
    return [
        ("random bytes", bytes(rng.getrandbits(8) for _ in range(64)),
         ("bad_request",), 0),
        ("wrong field type (ns: 5)",
         mpack_min.pack({"v": 1, "op": "wf_start", "id": 1, "ns": 5}),
         ("bad_request",), 1),
        ("lying str32 length dd ff ff ff ff", b"\xdd\xff\xff\xff\xff",
         ("bad_request",), 0),
        ("3 MiB frame",
         mpack_min.pack({"v": 1, "op": "wf_start", "id": 3, "ns": "default",
                         "name": "tiny", "input": big}),
         ("too_large",), (0, 3)),
        ("100000 nested arrays", b"\x91" * 100000 + b"\xc0",
         ("bad_request",), 0),
        ("unknown op",
         mpack_min.pack({"v": 1, "op": "frobnicate", "id": 6,
                         "ns": "default"}),
         ("bad_request",), 6),
        ("wrong version",
         mpack_min.pack({"v": 2, "op": "wf_list", "id": 7, "ns": "default"}),
         ("bad_request",), (0, 7)),
        ("non-string map key", b"\x81\x01\x02", ("bad_request",), 0),
        ("truncated map", b"\x83\xa1v\x01\xa2op", ("bad_request",), 0),
        ("not a map", mpack_min.pack([1, "wf_list", 9]), ("bad_request",), 0),
        ("missing required field (wf_start without name)",
         mpack_min.pack({"v": 1, "op": "wf_start", "id": 11,
                         "ns": "default"}),
         ("bad_request",), 11),
        ("wf_start of an invalid workflow id (control char)",
         mpack_min.pack({"v": 1, "op": "wf_start", "id": 12, "ns": "default",
                         "name": "tiny", "wf_id": "a\x01b"}),
         ("bad_request",), 12),
        ("wf_start with wait of the wrong type",
         mpack_min.pack({"v": 1, "op": "wf_start", "id": 13, "ns": "default",
                         "name": "tiny", "wait": "yes"}),
         ("bad_request",), 13),
        ("wf_start with a negative timeout_ms",
         mpack_min.pack({"v": 1, "op": "wf_start", "id": 14, "ns": "default",
                         "name": "tiny", "wait": True, "timeout_ms": -1}),
         ("bad_request",), 14),
        ("empty frame", b"", ("bad_request",), 0),
    ]


def raw_wire():
    if zmq is None:
        S.check(False, "python3-zmq is installed (apt-get install "
                "python3-zmq; run with /usr/bin/python3) - raw wire tests "
                "not run")
        return
    n = ctx["node"]
    for title, frame, codes, want_id in raw_cases():
        sock = n.raw_socket()
        try:
            sock.send(frame)
            if sock.poll(10000, zmq.POLLIN) == 0:
                S.check(False, "%s: a reply within 10 s" % title)
            else:
                parts = sock.recv_multipart()
                try:
                    rep = mpack_min.unpack(parts[-1])
                except Exception as e:
                    rep = "undecodable reply %r: %s" % (parts[-1][:80], e)
                err = rep.get("error") if isinstance(rep, dict) else None
                ok = (len(parts) == 1 and isinstance(rep, dict)
                      and rep.get("op") == "reply" and rep.get("ok") is False
                      and isinstance(err, dict) and err.get("code") in codes
                      and isinstance(err.get("message"), str)
                      and err.get("message") != ""
                      and rep.get("id") in (want_id if isinstance(
                          want_id, tuple) else (want_id,)))
                S.check(ok, "%s -> one reply frame, ok false, code %s, id %s,"
                        " a message" % (title, "|".join(codes), want_id),
                        "got %d frame(s): %r" % (len(parts), rep))
        finally:
            sock.close()
        r = n.cli("wf", "list", timeout=15)
        S.check(r.rc == 0 and n.alive(), "%s: the node keeps serving" % title,
                r.describe())
        state_unchanged(title)
    # a well-formed raw request works on the same kind of socket
    sock = n.raw_socket()
    try:
        sock.send(mpack_min.pack({"v": 1, "op": "wf_describe", "id": 42,
                                  "ns": "default", "wf_id": "t-1"}))
        if sock.poll(10000, zmq.POLLIN):
            rep = mpack_min.unpack(sock.recv())
            S.check(isinstance(rep, dict) and rep.get("id") == 42
                    and rep.get("ok") is True
                    and isinstance(rep.get("body"), dict)
                    and rep["body"].get("status") == "completed",
                    "a raw wf_describe gets ok:true and the body", rep)
        else:
            S.check(False, "a raw wf_describe gets a reply")
        # many bad frames in a burst, then a good one on the same socket
        for i in range(200):
            sock.send(b"\xc1" + bytes([i % 256]))
        sock.send(mpack_min.pack({"v": 1, "op": "wf_list", "id": 99,
                                  "ns": "default"}))
        got = []

        def drain():
            while sock.poll(0, zmq.POLLIN):
                got.append(mpack_min.unpack(sock.recv()))
            return any(isinstance(g, dict) and g.get("id") == 99 for g in got)
        wait_for(drain, 15, what="the reply to a good request after 200 bad")
        errs = [g for g in got if isinstance(g, dict) and g.get("ok") is False]
        S.eq(len(errs), 200, "200 bad frames -> 200 error replies, then the "
             "good one is served")
    finally:
        sock.close()
    state_unchanged("after the raw wire cases")


# ------------------------------------------------------------------ CLI

BAD_DEFS = [
    ("syntax error", '{"name": "bad1",\n "steps": [\n  {"id": "a", '
     '"activity": "x",}\n ]\n}\n', ["line", "column"]),
    ("a cycle", {"name": "bad2", "steps": [
        {"id": "a", "activity": "x", "after": ["b"]},
        {"id": "b", "activity": "x", "after": ["a"]}]}, ["steps["]),
    ("an unknown step in after", {"name": "bad3", "steps": [
        {"id": "charge", "activity": "x"},
        {"id": "ship", "activity": "x"},
        {"id": "notify", "activity": "x", "after": ["chrage"]}]},
     ['steps[2].after[0]: no step "chrage"']),
    ("two kinds in one step", {"name": "bad4", "steps": [
        {"id": "a", "activity": "x", "sleep": "1s"}]}, ["steps[0]"]),
    ("a bad duration", {"name": "bad5", "steps": [
        {"id": "a", "sleep": "10 parsecs"}]}, ["steps[0].sleep"]),
    ("a bad when", {"name": "bad6", "steps": [
        {"id": "a", "activity": "x"},
        {"id": "b", "activity": "x", "when": "steps.a.output.x =="}]},
     ["steps[1].when"]),
    ("a duplicate step id", {"name": "bad7", "steps": [
        {"id": "a", "activity": "x"}, {"id": "a", "activity": "y"}]},
     ["steps[1]"]),
    ("a bad name", {"name": "bad name!", "steps": [
        {"id": "a", "activity": "x"}]}, ["name"]),
    ("no steps kind", {"name": "bad8", "steps": [{"id": "a"}]},
     ["steps[0]"]),
]


def bad_definitions():
    n = ctx["node"]
    before = n.cli("def", "list", check=0).out
    for i, (title, doc, needles) in enumerate(BAD_DEFS):
        if isinstance(doc, str):
            f = E.write("bad%d.json" % i, doc)
        else:
            f = E.write_json("bad%d.json" % i, doc)
        r = n.cli("def", "register", f)
        if not S.cli_err(r, 1, "invalid_definition",
                         "def register with %s -> exit 1 invalid_definition"
                         % title):
            continue
        msg = r.error_message()
        S.check(all(x in msg for x in needles),
                "%s: message mentions %s" % (title, needles), msg)
        h = n.cli("def", "register", f, json=False)
        S.check(h.rc == 1 and all(x in (h.stderr + h.stdout)
                                  for x in needles),
                "%s: human output exits 1 and says %s" % (title, needles),
                h.describe())
    S.eq(n.cli("def", "list", check=0).out, before,
         "def list unchanged by invalid definitions")
    r = n.cli("def", "register", E.path("no-such-file.json"))
    S.check(r.rc in (1, 2) and r.rc != 0,
            "def register of a missing file fails", r.describe())


def cli_errors():
    n = ctx["node"]
    S.cli_err(n.cli("wf", "describe", "nosuch"), 3, "not_found",
              "wf describe nosuch -> exit 3 not_found")
    S.cli_err(n.cli("wf", "history", "nosuch"), 3, "not_found",
              "wf history nosuch -> exit 3 not_found")
    S.cli_err(n.cli("wf", "result", "nosuch"), 3, "not_found",
              "wf result nosuch -> exit 3 not_found")
    S.cli_err(n.cli("wf", "signal", "nosuch", "go"), 3, "not_found",
              "wf signal nosuch -> exit 3 not_found")
    S.cli_err(n.cli("wf", "start", "nosuchdef"), 3, "not_found",
              "wf start nosuchdef -> exit 3 not_found")
    S.cli_err(n.cli("wf", "start", "tiny@9"), 3, "not_found",
              "wf start tiny@9 (no such version) -> exit 3 not_found")
    S.cli_err(n.cli("def", "show", "nosuchdef"), 3, "not_found",
              "def show nosuchdef -> exit 3 not_found")
    r = n.cli("bogus")
    S.eq(r.rc, 2, "shardflow bogus -> exit 2")
    r = n.cli("wf", "bogus")
    S.eq(r.rc, 2, "shardflow wf bogus -> exit 2")
    r = n.cli("wf", "start")
    S.eq(r.rc, 2, "wf start without NAME -> exit 2")
    r = n.cli("wf", "start", "tiny", "--input", "{not json")
    S.check(r.rc in (1, 2), "wf start --input with bad JSON -> exit 2 (or 1)",
            r.describe())
    r = n.cli("wf", "list", "--limit", "banana")
    S.eq(r.rc, 2, "wf list --limit banana -> exit 2")
    r = run_cli(None, "--help", json=False)
    S.check(r.rc == 0 and "wf" in r.stdout, "shardflow --help exits 0",
            r.describe())
    r = run_cli(None, "wf", "start", "--help", json=False)
    S.check(r.rc == 0 and "--request-id" in r.stdout,
            "shardflow wf start --help exits 0 and lists --request-id",
            r.describe())
    closed = "tcp://127.0.0.1:%d" % free_port()
    r = run_cli(closed, "wf", "list", timeout=60)
    S.cli_err(r, 4, None, "--server <closed port> wf list -> exit 4")
    S.check(r.error_code() in ("unavailable", None),
            "unreachable error code is unavailable", r.describe())
    state_unchanged("after the CLI error cases")


def semantics_errors():
    n = ctx["node"]
    # signal to a closed run
    h0 = n.cli("wf", "history", "t-1", check=0).out
    old_run = n.cli("wf", "describe", "t-1", check=0).out.get("run_id")
    S.cli_err(n.cli("wf", "signal", "t-1", "go", "--input", '{"a":1}'), 1,
              "closed", "wf signal to a completed run -> exit 1 closed")
    S.eq(n.cli("wf", "history", "t-1", check=0).out, h0,
         "the closed run's history is unchanged")
    S.cli_err(n.cli("wf", "cancel", "t-1"), 1, "closed",
              "wf cancel of a completed run -> exit 1 closed")
    # start of a running ID
    d0 = n.cli("wf", "describe", "w-1", check=0).out
    S.cli_err(n.cli("wf", "start", "waiter", "--id", "w-1"), 1,
              "already_running", "wf start of a running ID -> exit 1 "
              "already_running")
    S.cli_err(n.cli("wf", "start", "tiny", "--id", "w-1"), 1,
              "already_running", "even with another definition")
    S.eq(n.cli("wf", "describe", "w-1", check=0).out, d0,
         "the running run is unchanged")
    # request id: a repeat returns the first reply, whatever name/input
    r1 = n.cli("wf", "start", "waiter", "--request-id", "rq-1", "--input",
               '{"n": 1}')
    S.check(r1.rc == 0 and isinstance(r1.out, dict)
            and all(k in r1.out for k in ("workflow_id", "run_id", "shard")),
            "start with --request-id -> {workflow_id, run_id, shard}",
            r1.describe())
    r2 = n.cli("wf", "start", "waiter", "--request-id", "rq-1", "--input",
               '{"n": 1}')
    S.check(r2.rc == 0 and r2.out == r1.out,
            "the same start repeated returns the first reply", r2.describe())
    r3 = n.cli("wf", "start", "tiny", "--request-id", "rq-1", "--input",
               '{"other": true}')
    S.check(r3.rc == 0 and r3.out == r1.out,
            "a repeat with another name and input returns the first reply",
            r3.describe())
    if isinstance(r1.out, dict):
        d = n.cli("wf", "describe", r1.out.get("workflow_id")).out
        S.check(isinstance(d, dict) and d.get("name") == "waiter"
                and d.get("input") == {"n": 1} and d.get("status") == "running",
                "only the first start took effect", d)
    # a restart: the request id is still remembered (durable dedup)
    n.restart()
    r4 = n.cli("wf", "start", "waiter", "--request-id", "rq-1")
    S.check(r4.rc == 0 and r4.out == r1.out,
            "after a kill -9 and restart the request id still returns the "
            "first reply", r4.describe())
    r5 = n.cli("wf", "start", "tiny", "--id", "t-1", "--wait", timeout=60)
    S.check(r5.rc == 0 and r5.out.get("status") == "completed"
            and r5.out.get("run_id") != old_run,
            "starting a closed ID creates a new run", r5.describe())
    d = n.cli("wf", "describe", "t-1").out
    S.check(isinstance(d, dict) and isinstance(r5.out, dict)
            and d.get("run_id") == r5.out.get("run_id"),
            "describe shows the new run", d)


def payload_limit():
    n = ctx["node"]
    big = E.write("big.json", '{"blob": "%s"}' % ("B" * (2 * 1024 * 1024 + 10)))
    before = snapshot()
    r = n.cli("wf", "start", "tiny", "--id", "big-1", "--input", "@" + big,
              timeout=60)
    S.cli_err(r, 1, "too_large", "wf start with a 2 MiB+ input -> exit 1 "
              "too_large")
    S.cli_err(n.cli("wf", "describe", "big-1"), 3, "not_found",
              "nothing was started")
    S.eq(snapshot(), before, "state unchanged by the oversize start")


S.run([
    ("node with a definition and two runs", setup, True),
    ("raw wire: malformed frames", raw_wire),
    ("CLI: invalid definitions", bad_definitions),
    ("CLI: not found, usage, unreachable", cli_errors),
    ("CLI: closed, already_running, request ids", semantics_errors),
    ("payload limit", payload_limit),
])
