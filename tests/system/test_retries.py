#!/usr/bin/env python3
"""test_retries.py - retry policies against SPEC.md.

- a flaky activity failing twice succeeds on attempt 3: the command sees
  SHARDFLOW_ATTEMPT 1, 2, 3, describe shows attempt 3 and keeps the last
  failure, and the gaps between attempts are at least
  initial_interval * backoff^(n-1) (lower bounds only: 200 ms, 400 ms);
- max_interval caps the backoff (100 ms * 10^n capped at 300 ms);
- retries exhausted: the step fails with the last error (ExitStatus, the
  last line of stderr) at attempt max_attempts, one ActivityFailed each;
- a non-retryable error type reported on stdout fails at attempt 1 with
  that type and message;
- an error type not in non_retryable is retried;
- max_attempts 1 does not retry;
- a step's retry overrides the definition's field by field;
- without a policy: max_attempts 3, 1 s then 2 s backoffs.
"""
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sfharness import (Suite, events_of, rfc3339_to_epoch,  # noqa: E402
                       step_events, steps_by_id)

S = Suite("test_retries")
E = S.new_env()
ctx = {}

DEFS = [
    {"name": "re_flaky", "queue": "q_re",
     "retry": {"max_attempts": 5, "initial_interval": "200ms",
               "backoff": 2.0},
     "steps": [{"id": "a", "activity": "flaky3"}]},
    {"name": "re_capped", "queue": "q_re",
     "retry": {"max_attempts": 4, "initial_interval": "100ms",
               "backoff": 10.0, "max_interval": "300ms"},
     "steps": [{"id": "a", "activity": "always_fail"}]},
    {"name": "re_exhaust", "queue": "q_re",
     "retry": {"max_attempts": 3, "initial_interval": "50ms"},
     "steps": [{"id": "a", "activity": "always_fail"},
               {"id": "b", "activity": "flaky3"}]},
    {"name": "re_declined", "queue": "q_re",
     "retry": {"max_attempts": 5, "initial_interval": "50ms",
               "non_retryable": ["Declined"]},
     "steps": [{"id": "charge", "activity": "declined"}]},
    {"name": "re_typed", "queue": "q_re",
     "retry": {"max_attempts": 3, "initial_interval": "50ms",
               "non_retryable": ["Declined"]},
     "steps": [{"id": "a", "activity": "transient_once"}]},
    {"name": "re_once", "queue": "q_re",
     "retry": {"max_attempts": 1, "initial_interval": "50ms"},
     "steps": [{"id": "a", "activity": "flaky3"}]},
    {"name": "re_override", "queue": "q_re",
     "retry": {"max_attempts": 5, "initial_interval": "150ms",
               "non_retryable": ["Declined"]},
     "steps": [{"id": "a", "activity": "always_fail",
                "retry": {"max_attempts": 2}},
               {"id": "b", "activity": "declined", "after": [],
                "retry": {"initial_interval": "50ms"}}]},
    {"name": "re_default", "queue": "q_re",
     "steps": [{"id": "a", "activity": "always_fail"}]},
    {"name": "re_override_a", "queue": "q_re",
     "retry": {"max_attempts": 5, "initial_interval": "150ms"},
     "steps": [{"id": "a", "activity": "always_fail",
                "retry": {"max_attempts": 2}}]},
]

WORKER = r"""
m=%s
wid=$SHARDFLOW_WORKFLOW_ID
echo "$SHARDFLOW_STEP $SHARDFLOW_ATTEMPT $(date +%%s.%%N)" \
  >> "$m/$wid.attempts"
case "$SHARDFLOW_ACTIVITY" in
  flaky3)
    if [ "$SHARDFLOW_ATTEMPT" -lt 3 ]; then
      echo "noise"  >&2
      echo "flaky attempt $SHARDFLOW_ATTEMPT" >&2
      exit 1
    fi
    echo '{"ok":true,"attempt":'$SHARDFLOW_ATTEMPT'}' ;;
  always_fail)
    echo "first line" >&2
    echo "broken $SHARDFLOW_ATTEMPT" >&2
    exit 3 ;;
  declined)
    echo '{"error":{"type":"Declined","message":"card declined"}}'
    exit 1 ;;
  transient_once)
    if [ "$SHARDFLOW_ATTEMPT" = 1 ]; then
      echo '{"error":{"type":"Transient","message":"try again"}}'
      exit 1
    fi
    echo '"fine"' ;;
  *)
    echo "unknown activity $SHARDFLOW_ACTIVITY" >&2; exit 1 ;;
esac
"""


def setup():
    n = E.node()
    ctx["node"] = n
    E.register(n, DEFS)
    ctx["marks"] = E.mkdir("marks")
    script = E.script("act.sh", WORKER % ctx["marks"])
    ctx["worker"] = E.worker(n, "q_re", script, concurrency=4,
                             extra=["--grace", "1s"])
    S.check(True, "node, %d definitions, worker on q_re" % len(DEFS))


def run_to_end(wid, name, timeout=30):
    n = ctx["node"]
    n.cli("wf", "start", name, "--id", wid, check=0)
    r = n.cli("wf", "result", wid, "--wait", timeout=timeout)
    d = n.cli("wf", "describe", wid).out
    h = n.cli("wf", "history", wid).out
    return r, (d if isinstance(d, dict) else {}), h


def runs_seen(wid, step="a"):
    """[(attempt, start time)] of the command for step, as it saw them."""
    res = []
    try:
        with open(os.path.join(ctx["marks"], wid + ".attempts")) as f:
            for line in f:
                p = line.split()
                if len(p) == 3 and p[0] == step:
                    res.append((int(p[1]), float(p[2])))
    except OSError:
        pass
    return res


def gaps_from_history(h, step="a"):
    """Seconds from each failed attempt to the scheduling of the next."""
    evs = step_events(h, step, "ActivityFailed", "ActivityTimedOut",
                      "StepScheduled")
    gaps = []
    for prev, cur in zip(evs, evs[1:]):
        if (prev.get("type") != "StepScheduled"
                and cur.get("type") == "StepScheduled"):
            gaps.append(rfc3339_to_epoch(cur.get("time"))
                        - rfc3339_to_epoch(prev.get("time")))
    return gaps


def flaky():
    r, d, h = run_to_end("fl-1", "re_flaky")
    out = r.out if isinstance(r.out, dict) else {}
    S.check(r.rc == 0 and out.get("status") == "completed",
            "a flaky activity completes", r.describe())
    S.eq(out.get("output"), {"ok": True, "attempt": 3},
         "the output is attempt 3's")
    seen = runs_seen("fl-1")
    S.eq([a for a, _ in seen], [1, 2, 3],
         "the command saw SHARDFLOW_ATTEMPT 1, 2, 3")
    a = steps_by_id(d).get("a", {})
    S.eq((a.get("status"), a.get("attempt")), ("completed", 3),
         "describe: step a completed at attempt 3")
    S.eq(a.get("failure"), {"type": "ExitStatus",
                            "message": "flaky attempt 2"},
         "describe keeps the last failure (attempt 2, last stderr line)")
    fails = step_events(h, "a", "ActivityFailed")
    S.eq([(e.get("attempt"), (e.get("failure") or {}).get("type"))
          for e in fails], [(1, "ExitStatus"), (2, "ExitStatus")],
         "history: ActivityFailed for attempts 1 and 2")
    S.eq([e.get("attempt") for e in step_events(h, "a", "StepScheduled")],
         [1, 2, 3], "history: StepScheduled for attempts 1, 2, 3")
    # gaps between the attempts the command saw: backoff 200 ms, 400 ms
    if len(seen) == 3:
        g1, g2 = seen[1][1] - seen[0][1], seen[2][1] - seen[1][1]
        S.check(g1 >= 0.18, "attempt 1 -> 2 started %.3f s apart "
                "(>= 90%% of 200 ms)" % g1)
        S.check(g2 >= 0.36, "attempt 2 -> 3 started %.3f s apart "
                "(>= 90%% of 400 ms)" % g2)
        S.check(g2 > g1, "the second backoff is longer than the first")
    gaps = gaps_from_history(h)
    S.check(len(gaps) == 2 and gaps[0] >= 0.18 and gaps[1] >= 0.36,
            "history: failure -> next StepScheduled gaps %s (>= 0.18, "
            ">= 0.36)" % [round(g, 3) for g in gaps])


def capped():
    r, d, h = run_to_end("cap-1", "re_capped")
    out = r.out if isinstance(r.out, dict) else {}
    S.eq(out.get("status"), "failed", "four failing attempts: failed")
    gaps = gaps_from_history(h)
    S.check(len(gaps) == 3, "three backoffs", gaps)
    if len(gaps) == 3:
        S.check(gaps[0] >= 0.09, "backoff 1: %.3f s (>= 90%% of 100 ms)"
                % gaps[0])
        S.check(gaps[1] >= 0.27 and gaps[2] >= 0.27,
                "backoffs 2, 3: %.3f, %.3f s (>= 90%% of the 300 ms cap)"
                % (gaps[1], gaps[2]))
        S.check(gaps[2] < 3.0, "backoff 3 is capped by max_interval "
                "(%.3f s; uncapped it would be 10 s)" % gaps[2])


def exhausted():
    r, d, h = run_to_end("ex-1", "re_exhaust")
    out = r.out if isinstance(r.out, dict) else {}
    S.eq(r.rc, 1, "retries exhausted: wf result exits 1")
    S.eq(out.get("status"), "failed", "status failed")
    S.eq(out.get("failure"), {"type": "ExitStatus", "message": "broken 3",
                              "step": "a"},
         "failure: ExitStatus, last stderr line of attempt 3, step a")
    st = steps_by_id(d)
    a = st.get("a", {})
    S.eq((a.get("status"), a.get("attempt"), a.get("failure")),
         ("failed", 3, {"type": "ExitStatus", "message": "broken 3"}),
         "describe: step a failed at attempt 3 with its last failure")
    S.eq((st.get("b", {}).get("status"), st.get("b", {}).get("attempt")),
         ("canceled", 0), "the pending step b is canceled, never "
         "dispatched")
    S.eq([e.get("attempt") for e in step_events(h, "a", "ActivityFailed")],
         [1, 2, 3], "history: ActivityFailed for attempts 1, 2, 3")
    S.eq([e.get("type") for e in events_of(h)][-1:], ["WorkflowFailed"],
         "WorkflowFailed last")
    S.eq(len(runs_seen("ex-1")), 3, "the command ran 3 times")


def declined():
    r, d, h = run_to_end("dec-1", "re_declined")
    out = r.out if isinstance(r.out, dict) else {}
    S.eq(out.get("status"), "failed", "a non-retryable error: failed")
    S.eq(out.get("failure"), {"type": "Declined", "message": "card declined",
                              "step": "charge"},
         "failure: the reported type and message, step charge")
    c = steps_by_id(d).get("charge", {})
    S.eq((c.get("status"), c.get("attempt"), c.get("failure")),
         ("failed", 1, {"type": "Declined", "message": "card declined"}),
         "describe: failed at attempt 1 (max_attempts 5)")
    S.eq([e.get("attempt")
          for e in step_events(h, "charge", "StepScheduled")], [1],
         "history: no second StepScheduled")
    S.eq(len(runs_seen("dec-1", "charge")), 1, "the command ran once")


def typed_retryable():
    r, d, h = run_to_end("typ-1", "re_typed")
    out = r.out if isinstance(r.out, dict) else {}
    S.check(r.rc == 0 and out.get("output") == "fine",
            "an error type not in non_retryable is retried", r.describe())
    a = steps_by_id(d).get("a", {})
    S.eq((a.get("attempt"), a.get("failure")),
         (2, {"type": "Transient", "message": "try again"}),
         "describe: attempt 2, last failure Transient")
    f = step_events(h, "a", "ActivityFailed")
    S.eq([(e.get("attempt"), e.get("failure")) for e in f],
         [(1, {"type": "Transient", "message": "try again"})],
         "history: ActivityFailed(1) with the reported error")


def once():
    r, d, h = run_to_end("one-1", "re_once")
    out = r.out if isinstance(r.out, dict) else {}
    S.eq((out.get("status"), (out.get("failure") or {}).get("type")),
         ("failed", "ExitStatus"), "max_attempts 1: fails at once")
    S.eq(steps_by_id(d).get("a", {}).get("attempt"), 1, "attempt 1")
    S.eq(len(runs_seen("one-1")), 1, "the command ran once")


def override():
    r, d, h = run_to_end("ov-1", "re_override")
    st = steps_by_id(d)
    a, b = st.get("a", {}), st.get("b", {})
    # b: inherits non_retryable from the definition -> fails at attempt 1
    S.eq((b.get("status"), b.get("attempt"),
          (b.get("failure") or {}).get("type")),
         ("failed", 1, "Declined"),
         "step b keeps the definition's non_retryable: Declined at attempt 1")
    # a: max_attempts 2 from the step; ran either to attempt 2 or was
    # canceled when b failed the run; it never exceeds 2 attempts
    S.check(a.get("attempt") in (1, 2), "step a: at most its own "
            "max_attempts (2) dispatches", a)
    r2, d2, h2 = run_to_end("ov-2", "re_override_a")
    a = steps_by_id(d2).get("a", {})
    S.eq((a.get("status"), a.get("attempt")), ("failed", 2),
         "a step's max_attempts 2 overrides the definition's 5")
    gaps = gaps_from_history(h2)
    S.check(len(gaps) == 1 and gaps[0] >= 0.135,
            "its backoff comes from the definition's initial_interval "
            "150ms: %s" % [round(g, 3) for g in gaps])


def defaults():
    r, d, h = run_to_end("def-1", "re_default")
    a = steps_by_id(d).get("a", {})
    S.eq((a.get("status"), a.get("attempt")), ("failed", 3),
         "no retry policy: the default max_attempts 3")
    gaps = gaps_from_history(h)
    S.check(len(gaps) == 2 and gaps[0] >= 0.9 and gaps[1] >= 1.8,
            "default initial_interval 1s, backoff 2.0: gaps %s (>= 0.9, "
            ">= 1.8)" % [round(g, 3) for g in gaps])


def shutdown():
    rc = ctx["worker"].stop(timeout=15)
    S.eq(rc, 0, "worker exits 0 on SIGTERM")


S.run([
    ("node, definitions, worker", setup, True),
    ("flaky: succeeds on attempt 3 with backoff", flaky),
    ("max_interval caps the backoff", capped),
    ("retries exhausted", exhausted),
    ("non-retryable error type", declined),
    ("a reported type that is retryable", typed_retryable),
    ("max_attempts 1", once),
    ("step retry overrides the definition's field by field", override),
    ("the default policy", defaults),
    ("worker stop", shutdown),
])
