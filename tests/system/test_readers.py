#!/usr/bin/env python3
"""test_readers.py - reads (describe, history, lists, definitions) are
answered by each shard's reader from read-only transactions and never
block the shard's writer (ARCHITECTURE.md, "One writer per environment").

One node with one shard, so every workflow, completion and read meets the
same shard. The failpoint reader.history=sleep:MS holds the first history
read's snapshot open; meanwhile workflows start and complete on that shard,
and must all be done before the held read answers - which it then does,
correctly. Also: the answers' shapes, not_found for unknown ids, a start and
a read sent back to back without waiting (the read sees the start), long
histories read a page at a time (by count and by bytes), and reads after
kill -9 and a restart.
"""
import os
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mpack_min  # noqa: E402
from sfharness import (Suite, RFC3339_MS, events_of, event_types,  # noqa: E402
                       import_zmq, wait_for, TestFailure)

zmq = import_zmq()

S = Suite("test_readers")
E = S.new_env()
ctx = {}

HOLD_MS = 5000
N_WRITES = 6
DEF = {"name": "rd", "version": 1, "queue": "q_rd",
       "steps": [{"id": "a", "activity": "echo", "input": "${input}"}]}


def setup():
    node = E.node(shards=1, env={
        "SHF_FAILPOINTS": "reader.history=sleep:%d@1" % HOLD_MS})
    ctx["node"] = node
    E.register(node, [DEF])
    ctx["worker"] = E.worker(node, "q_rd", E.script("echo.sh", "cat\n"),
                             concurrency=4)
    out = S.cli_ok(node.cli("wf", "start", "rd", "--id", "rd-0", "--input",
                            '{"n": 0}', "--wait", timeout=60),
                   "wf start rd-0 --wait")
    S.eq(out.get("status") if isinstance(out, dict) else out, "completed",
         "rd-0 completed")
    ctx["run0"] = out.get("run_id") if isinstance(out, dict) else None


def shapes():
    n = ctx["node"]
    out = S.cli_ok(n.cli("wf", "describe", "rd-0"), "wf describe rd-0")
    if isinstance(out, dict):
        S.eq((out.get("workflow_id"), out.get("run_id"), out.get("status"),
              out.get("shard")), ("rd-0", ctx["run0"], "completed", 0),
             "describe names the run, its status and shard 0")
        S.check(isinstance(out.get("steps"), list) and out["steps"]
                and out["steps"][0].get("id") == "a",
                "describe lists step a", out)
    # (the first history read is held by the failpoint: see held_read)
    out = S.cli_ok(n.cli("wf", "list"), "wf list")
    wfs = out.get("workflows") if isinstance(out, dict) else None
    S.check(isinstance(wfs, list) and any(
        w.get("workflow_id") == "rd-0" and w.get("status") == "completed"
        and RFC3339_MS.match(w.get("started_at") or "")
        and RFC3339_MS.match(w.get("closed_at") or "") for w in wfs),
        "wf list has rd-0, completed, with RFC 3339 times", out)
    out = S.cli_ok(n.cli("wf", "list", "--status", "running"),
                   "wf list --status running")
    S.eq(out.get("workflows") if isinstance(out, dict) else out, [],
         "no running workflow listed")
    out = S.cli_ok(n.cli("def", "list"), "def list")
    S.check(isinstance(out, dict) and [
        (d.get("name"), d.get("version")) for d in out.get("definitions", [])]
        == [("rd", 1)], "def list has rd v1", out)
    out = S.cli_ok(n.cli("def", "show", "rd"), "def show rd")
    S.check(isinstance(out, dict) and out.get("name") == "rd"
            and out.get("version") == 1
            and isinstance(out.get("definition"), dict),
            "def show rd has its document", out)
    not_found(n)


def not_found(n):
    S.cli_err(n.cli("wf", "describe", "nosuch"), 3, "not_found",
              "wf describe nosuch -> exit 3 not_found")
    S.cli_err(n.cli("wf", "history", "nosuch"), 3, "not_found",
              "wf history nosuch -> exit 3 not_found")
    S.cli_err(n.cli("def", "show", "nosuch"), 3, "not_found",
              "def show nosuch -> exit 3 not_found")


def held_read():
    n = ctx["node"]
    held = {}

    def history():
        t = time.monotonic()
        # the CLI gives up on an answer after 5 s by default: this one is
        # held for HOLD_MS on purpose
        held["r"] = n.cli("wf", "history", "rd-0", timeout=60,
                          env={"SHARDFLOW_TIMEOUT_MS": "30000"})
        held["secs"] = time.monotonic() - t

    reader = threading.Thread(target=history)
    reader.start()
    wait_for(lambda: "failpoint reader.history: sleep"
             in ctx["node"].log_text(), 15,
             what="the history read holding its snapshot")
    t0 = time.monotonic()
    done = {}

    def start(i):
        r = n.cli("wf", "start", "rd", "--id", "rd-w%d" % i, "--input",
                  '{"n": %d}' % i, "--wait", timeout=60)
        done[i] = r

    writers = [threading.Thread(target=start, args=(i,))
               for i in range(1, N_WRITES + 1)]
    for w in writers:
        w.start()
    # Every start commits, dispatches, completes and closes on the shard
    # whose reader is held: all within the hold.
    wait_for(lambda: len(done) == N_WRITES, HOLD_MS / 1000.0 - 0.5,
             interval=0.02,
             what="%d workflows started and completed while the read is "
                  "held" % N_WRITES)
    elapsed = time.monotonic() - t0
    still_held = reader.is_alive() and "reader.history: slept" not in \
        ctx["node"].log_text()
    print("   %d workflows completed in %.2f s, read still held: %s"
          % (N_WRITES, elapsed, still_held))
    S.check(still_held, "the writes completed before the held read answered")
    S.check(all(isinstance(r.out, dict) and r.out.get("status") == "completed"
                for r in done.values()),
            "every workflow started during the hold completed",
            [r.describe() for r in done.values()
             if not (isinstance(r.out, dict)
                     and r.out.get("status") == "completed")])
    for w in writers:
        w.join()
    reader.join(60)
    r = held.get("r")
    S.check(r is not None and r.rc == 0, "the held history read answers",
            r.describe() if r else "no answer")
    S.check(held.get("secs", 0) >= HOLD_MS / 1000.0 - 0.5,
            "it answered after the hold (%.2f s)" % held.get("secs", 0))
    fresh = S.cli_ok(n.cli("wf", "history", "rd-0"), "wf history rd-0 again")
    types = event_types(r.out if r else None)
    S.check(types and types[0] == "WorkflowStarted"
            and types[-1] == "WorkflowCompleted",
            "the held answer is rd-0's whole history", types)
    S.eq(r.out if r else None, fresh,
         "the held answer equals a fresh read of the closed run")
    S.check(all(RFC3339_MS.match(e.get("time") or "")
                for e in events_of(fresh)),
            "event times are RFC 3339 with ms", fresh)
    out = S.cli_ok(n.cli("wf", "list", "--limit", "100"), "wf list")
    ids = {w.get("workflow_id") for w in out.get("workflows", [])} \
        if isinstance(out, dict) else set()
    S.check(all("rd-w%d" % i in ids for i in range(1, N_WRITES + 1)),
            "the workflows of the hold are listed", out)


def back_to_back():
    """A start and a read sent without waiting for the start's answer: the
    read is served after the start commits, so it sees the run."""
    if zmq is None:
        S.check(False, "python3-zmq is installed - back to back not tested")
        return
    sock = ctx["node"].raw_socket()
    bad = []
    try:
        for i in range(20):
            wf = "bb-%d" % i
            base = 100 + 10 * i
            sock.send(mpack_min.pack({"v": 1, "op": "wf_start", "id": base,
                                      "ns": "default", "name": "rd",
                                      "wf_id": wf, "input": {"n": i}}))
            sock.send(mpack_min.pack({"v": 1, "op": "wf_describe",
                                      "id": base + 1, "ns": "default",
                                      "wf_id": wf}))
            sock.send(mpack_min.pack({"v": 1, "op": "wf_history",
                                      "id": base + 2, "ns": "default",
                                      "wf_id": wf}))
            sock.send(mpack_min.pack({"v": 1, "op": "wf_list",
                                      "id": base + 3, "ns": "default",
                                      "limit": 1000}))
            replies = {}
            while len(replies) < 4:
                if sock.poll(30000, zmq.POLLIN) == 0:
                    break
                m = mpack_min.unpack(sock.recv())
                replies[m.get("id")] = m
            start = replies.get(base, {})
            run = (start.get("body") or {}).get("run_id")
            desc = replies.get(base + 1, {})
            hist = replies.get(base + 2, {})
            lst = replies.get(base + 3, {})
            listed = [w for w in (lst.get("body") or {}).get("workflows", [])
                      if w.get("workflow_id") == wf]
            if not (start.get("ok") and desc.get("ok")
                    and (desc.get("body") or {}).get("run_id") == run
                    and hist.get("ok")
                    and event_types(hist.get("body"))[:1]
                    == ["WorkflowStarted"]
                    and len(listed) == 1 and listed[0].get("run_id") == run):
                bad.append(replies)
    finally:
        sock.close()
    S.check(not bad, "20 x start + describe + history + list back to back: "
            "each read sees the start", bad[:1])


SIG_DEF = {"name": "sig", "queue": "q_none",
           "steps": [{"id": "w", "wait_signal": "go"}]}
N_SIGNALS = 2500
LONG_WFS = ("long-count", "long-bytes")


def _raw_call(sock, msgs):
    """Sends every request at once; returns the replies by id."""
    for m in msgs:
        sock.send(mpack_min.pack(m))
    replies = {}
    while len(replies) < len(msgs):
        if sock.poll(30000, zmq.POLLIN) == 0:
            raise TestFailure("%d of %d replies within 30 s"
                              % (len(replies), len(msgs)))
        m = mpack_min.unpack(sock.recv())
        replies[m.get("id")] = m
    return replies


def _pages(sock, wf_id, page_size=None):
    """Every page of wf_id's history on the raw wire."""
    pages, token, rid = [], None, 9000000
    while True:
        rid += 1
        req = {"v": 1, "op": "wf_history", "id": rid, "ns": "default",
               "wf_id": wf_id}
        if page_size:
            req["page_size"] = page_size
        if token:
            req["page_token"] = token
        r = _raw_call(sock, [req])[rid]
        if not r.get("ok"):
            raise TestFailure("history page refused: %r" % (r,))
        pages.append(r["body"]["events"])
        token = r["body"].get("next_page_token")
        if not token or len(pages) > 100:
            return pages


def long_history():
    """Histories are answered a page at a time: at most page_size events
    (1,000 by default) and about 1 MiB, so a long history neither holds a
    read transaction long nor outgrows a frame; the CLI (the SDK) follows
    the pages."""
    if zmq is None:
        S.check(False, "python3-zmq is installed - paging not tested")
        return
    n = ctx["node"]
    E.register(n, [SIG_DEF])
    for wf in LONG_WFS:
        S.cli_ok(n.cli("wf", "start", "sig", "--id", wf), "start " + wf)
    sock = n.raw_socket()
    try:
        sigs = [{"v": 1, "op": "wf_signal", "id": 1000 + i, "ns": "default",
                 "wf_id": "long-count", "signal": "noise", "input": i}
                for i in range(N_SIGNALS)]
        replies = _raw_call(sock, sigs)
        S.check(all(r.get("ok") for r in replies.values()),
                "%d signals recorded" % N_SIGNALS)
        pages = _pages(sock, "long-count", page_size=1000)
        ids = [e.get("id") for p in pages for e in p]
        S.eq([len(p) for p in pages][:-1], [1000] * (len(pages) - 1),
             "every page but the last has page_size (1000) events")
        S.check(len(ids) >= N_SIGNALS + 1
                and ids == list(range(1, len(ids) + 1)),
                "the pages hold events 1..%d in order, none twice or "
                "missing" % len(ids), ids[:5])
        out = S.cli_ok(n.cli("wf", "history", "long-count"),
                       "wf history long-count")
        S.eq([e.get("id") for e in events_of(out)], ids,
             "wf history (the SDK follows the pages) prints them all")
        # three signals of 700 KB: 2.1 MB of history, more than a frame
        big = "x" * (700 * 1024)
        replies = _raw_call(sock, [
            {"v": 1, "op": "wf_signal", "id": 2000 + i, "ns": "default",
             "wf_id": "long-bytes", "signal": "noise", "input": big}
            for i in range(3)])
        S.check(all(r.get("ok") for r in replies.values()),
                "three 700 KB signals recorded")
        pages = _pages(sock, "long-bytes")
        S.check(len(pages) >= 3 and all(
            sum(1 for e in p if e.get("type") == "SignalReceived") <= 1
            for p in pages), "pages stop at about 1 MiB: one big signal "
            "per page (%d pages)" % len(pages), [len(p) for p in pages])
        out = S.cli_ok(n.cli("wf", "history", "long-bytes", timeout=60),
                       "wf history long-bytes (2.1 MB)")
        S.eq(sum(1 for e in events_of(out) if e.get("type")
                 == "SignalReceived" and e.get("input") == big), 3,
             "its whole history, all three signals")
        bad = _raw_call(sock, [
            {"v": 1, "op": "wf_history", "id": 3001, "ns": "default",
             "wf_id": "long-count", "page_token": "not-a-token"},
            {"v": 1, "op": "wf_history", "id": 3002, "ns": "default",
             "wf_id": "long-count", "page_size": 0}])
        S.eq([(bad[i].get("ok"), (bad[i].get("error") or {}).get("code"))
              for i in (3001, 3002)], [(False, "bad_request")] * 2,
             "a bad page_token or page_size is a bad_request")
    finally:
        sock.close()


def restart():
    n = ctx["node"]
    before = S.cli_ok(n.cli("wf", "history", "rd-w1"), "history before kill")
    n.restart(env={})  # kill -9, start without failpoints
    S.check(True, "node killed (-9) and restarted")
    out = S.cli_ok(n.cli("wf", "describe", "rd-0"), "describe after restart")
    S.eq((out or {}).get("status") if isinstance(out, dict) else out,
         "completed", "rd-0 still completed")
    S.eq(S.cli_ok(n.cli("wf", "history", "rd-w1"), "history after restart"),
         before, "rd-w1's history is unchanged")
    out = S.cli_ok(n.cli("wf", "list", "--limit", "100"),
                   "wf list after restart")
    S.eq(len(out.get("workflows", [])) if isinstance(out, dict) else out,
         1 + N_WRITES + 20 + len(LONG_WFS), "every workflow is listed")
    S.cli_ok(n.cli("def", "show", "rd"), "def show after restart")
    not_found(n)
    # the node still writes, and reads see it
    S.cli_ok(n.cli("wf", "start", "rd", "--id", "rd-after", "--input", "{}",
                   "--wait", timeout=60), "a workflow completes after restart")
    out = S.cli_ok(n.cli("wf", "describe", "rd-after"), "and describes")
    S.eq(out.get("status") if isinstance(out, dict) else out, "completed",
         "rd-after completed")
    # the shards stop their readers before closing their stores
    S.eq(n.stop(), 0, "the node stops cleanly (exit 0)")


S.run([
    ("one shard, a definition, a worker, one workflow", setup, True),
    ("describe, list, definitions: shapes and not_found", shapes),
    ("a held history read does not block the writer", held_read),
    ("start and reads back to back: the reads see the start", back_to_back),
    ("long histories are read a page at a time", long_history),
    ("kill -9 and restart: reads still answer", restart),
])
