#!/usr/bin/env python3
"""test_quickstart.py - the README quickstart pieces work together.

examples/order.json is registered, examples/order_worker.sh serves every
queue the definition uses through `shardflow worker --exec`, a `wf start
--wait` completes (every wait_signal step of the definition is signalled
while it waits). The input comes from scripts/quickstart.sh when it passes
one with --input '...', else {"amount": 42}.

If examples/ is not there yet, the SPEC.md order example and a stand-in
worker are exercised instead and the test fails, naming what is missing.
"""
import json
import os
import re
import sys
import threading

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sfharness import Suite, SRC, steps_by_id, wait_for  # noqa: E402

S = Suite("test_quickstart")
E = S.new_env()
ctx = {}

SPEC_ORDER = {
    "name": "order",
    "version": 1,
    "queue": "default",
    "timeout": "24h",
    "retry": {"max_attempts": 3, "initial_interval": "1s", "backoff": 2.0,
              "max_interval": "1m", "non_retryable": ["Declined"]},
    "steps": [
        {"id": "charge", "activity": "charge_card",
         "input": {"amount": "${input.amount}"},
         "timeouts": {"start_to_close": "30s", "heartbeat": "10s"}},
        {"id": "cool_off", "sleep": "100ms"},
        {"id": "approve", "wait_signal": "approved", "timeout": "2d"},
        {"id": "ship", "activity": "ship", "queue": "warehouse",
         "after": ["charge"], "when": "steps.charge.output.ok == true",
         "optional": True},
        {"id": "notify", "activity": "email", "after": ["approve", "ship"]},
    ],
    "output": {"charge": "${steps.charge.output}",
               "shipped": "${steps.ship.status}"},
}
STANDIN_WORKER = """
input=$(cat)
case "$SHARDFLOW_ACTIVITY" in
  charge_card) printf '{"ok":true,"charged":%s}' "$(echo "$input" | sed 's/.*"amount": *\\([0-9]*\\).*/\\1/')" ;;
  ship) echo '{"tracking":"T-1"}' ;;
  email) echo '{"sent":true}' ;;
  *) echo '{"error":{"type":"Unknown","message":"no such activity"}}'; exit 1 ;;
esac
"""


def locate():
    ex = os.path.join(SRC, "examples")
    d, w = os.path.join(ex, "order.json"), os.path.join(ex, "order_worker.sh")
    ctx["spec_copy"] = False
    S.check(os.path.exists(d), "examples/order.json exists")
    S.check(os.path.exists(w), "examples/order_worker.sh exists")
    if os.path.exists(d) and os.path.exists(w):
        ctx["def_path"], ctx["worker_cmd"] = d, "bash " + w
    else:
        print("   using the SPEC.md order example and a stand-in worker")
        ctx["spec_copy"] = True
        ctx["def_path"] = E.write_json("order.json", SPEC_ORDER)
        ctx["worker_cmd"] = E.script("order_worker.sh", STANDIN_WORKER)
    with open(ctx["def_path"]) as f:
        ctx["doc"] = json.load(f)
    S.check(isinstance(ctx["doc"].get("steps"), list),
            "the definition parses as JSON with steps")
    ctx["input"] = {"amount": 42}
    qs = os.path.join(SRC, "scripts", "quickstart.sh")
    if os.path.exists(qs):
        with open(qs) as f:
            m = re.search(r"--input\s+'([^']*)'", f.read())
        if m:
            try:
                ctx["input"] = json.loads(m.group(1))
            except ValueError:
                pass
    print("   input: %s" % json.dumps(ctx["input"]))


def run():
    doc = ctx["doc"]
    n = E.node()
    r = n.cli("def", "register", ctx["def_path"])
    out = S.cli_ok(r, "def register order.json")
    name = doc.get("name")
    S.check(isinstance(out, dict) and out.get("name") == name
            and isinstance(out.get("version"), int),
            "registered as {name, version}", out)
    queues = {doc.get("queue") or "default"}
    for st in doc["steps"]:
        if st.get("activity") and st.get("queue"):
            queues.add(st["queue"])
    for q in sorted(queues):
        E.worker(n, q, ctx["worker_cmd"], concurrency=2)
    print("   workers on queues %s" % sorted(queues))
    signals = [st["wait_signal"] for st in doc["steps"]
               if st.get("wait_signal")]
    wid = "order-1"
    box = {}

    def start():
        box["r"] = n.cli("wf", "start", name, "--id", wid, "--input",
                         json.dumps(ctx["input"]), "--wait", timeout=90)
    t = threading.Thread(target=start)
    t.start()
    # signal each wait_signal step once the run exists
    wait_for(lambda: n.cli("wf", "describe", wid).rc == 0, 30,
             what="the order run to exist")
    for s in signals:
        sid = [st["id"] for st in doc["steps"] if st.get("wait_signal") == s]
        S.cli_ok(n.cli("wf", "signal", wid, s, "--input", '{"by": "test"}'),
                 "signal %s" % s)
        wait_for(lambda: all(steps_by_id(n.cli("wf", "describe", wid).out)
                             .get(i, {}).get("status") not in
                             ("pending", "scheduled", "started")
                             for i in sid) or not t.is_alive(),
                 30, what="the %s step to finish" % s)
    t.join(95)
    r = box.get("r")
    S.check(r is not None and r.rc == 0 and isinstance(r.out, dict)
            and r.out.get("status") == "completed",
            "wf start --wait: the order workflow completes",
            r.describe() if r else "no reply")
    if r is not None and isinstance(r.out, dict):
        print("   output: %s" % json.dumps(r.out.get("output")))
        S.check(r.out.get("output") is not None, "it has an output")
        if ctx["spec_copy"]:
            S.eq(r.out.get("output"),
                 {"charge": {"ok": True, "charged": ctx["input"].get(
                     "amount")}, "shipped": "completed"},
                 "the SPEC order output")
    d = n.cli("wf", "describe", wid).out
    st = steps_by_id(d)
    S.check(all(v.get("status") in ("completed", "skipped")
                for v in st.values()) and st,
            "every step completed (or skipped)",
            {k: v.get("status") for k, v in st.items()})
    r = n.cli("wf", "result", wid, json=False)
    S.check(r.rc == 0 and "completed" in r.stdout,
            "human `wf result` says completed", r.describe())


S.run([
    ("examples/", locate, True),
    ("register, worker, start --wait", run),
])
