/*  shf_workflow_test.c - self-test of the workflow state machine.

    Table-driven: each case compiles a small definition and feeds a list of
    inputs at injected times, checking after each one the return code, the
    event types, a one-line summary of the effects and the run's status.
    Every rejected input must leave the state byte-for-byte unchanged with
    no events or effects. Every case also runs a second time with the state
    serialised and re-parsed between inputs (as the shard persists it), and
    both runs must give equal states and histories (replay).

    Effects read as TASK(step#attempt), TASK_CANCEL(step#attempt),
    TIMER(step@due), TIMER_CANCEL(step@due) and CLOSED, with dues relative
    to T0 and "-" for the workflow's own timer. A `fire` row names the
    timer as "step:kind" and must come exactly at its due time.
*/
#include "shf_workflow.h"
#include "../proto/shf_mpack.h"
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T0 INT64_C (1795363200123)  //  2026-11-22T16:00:00.123Z

typedef struct {
    const char *op;    //  start started complete fail fire fire_id signal
                       //  cancel terminate heartbeat handback
    int64_t at;        //  ms after T0
    const char *step;  //  step id; "step:kind" for fire; name for signal
    uint32_t attempt;  //  attempt; timer id for fire_id
    const char *arg;   //  JSON payload, error type or reason
    const char *arg2;  //  error message
    shf_err_t rc;
    const char *events;   //  expected event types, NULL: not checked
    const char *effects;  //  expected effect summary, NULL: not checked
    const char *status;   //  expected run status, NULL: not checked
} s_row_t;

typedef struct {
    const char *name;
    const char *def;
    const s_row_t *rows;  //  ends with op == NULL
} s_case_t;

typedef struct {
    const s_case_t *test;
    shf_def_t *def;
    shf_run_t *run;
    json_t *state;    //  the run as its stored JSON, after the last row
    json_t *history;  //  every event of the run
    shf_wf_output_t out;
    bool reload;  //  encode and decode the run between inputs
    bool verbose;
} s_harness_t;

static void
s_fail_check (const s_harness_t *h, size_t row, const char *what,
              const char *expected, const char *got)
{
    fprintf (stderr,
             "shf_workflow_test: case %s, row %zu%s: %s\n"
             "  expected: %s\n  got:      %s\n",
             h->test->name, row, h->reload ? " (reload)" : "", what, expected,
             got);
    char *dump = json_dumps (h->state, JSON_INDENT (1) | JSON_SORT_KEYS);
    fprintf (stderr, "state: %s\n", dump ? dump : "?");
    free (dump);
    abort ();
}

static json_t *
s_json (const char *text)
{
    if (!text)
        return NULL;
    json_error_t error;
    json_t *value = json_loads (text, JSON_DECODE_ANY, &error);
    if (!value) {
        fprintf (stderr, "bad test JSON: %s: %s\n", text, error.text);
        abort ();
    }
    return value;
}

static void
s_event_types (const json_t *events, char *buf, size_t size)
{
    buf [0] = 0;
    size_t i;
    const json_t *event;
    json_array_foreach (events, i, event)
    {
        size_t len = strlen (buf);
        snprintf (buf + len, size - len, "%s%s", i ? " " : "",
                  json_string_value (json_object_get (event, "type")));
    }
}

static void
s_effects (const shf_wf_output_t *out, char *buf, size_t size)
{
    static const char *names [] = {"TASK", "TASK_CANCEL", "TIMER",
                                   "TIMER_CANCEL", "CLOSED"};
    buf [0] = 0;
    for (size_t i = 0; i < out->n_effects; i++) {
        const shf_effect_t *e = &out->effects [i];
        size_t len = strlen (buf);
        const char *sep = i ? " " : "";
        if (e->kind == SHF_EFFECT_TASK || e->kind == SHF_EFFECT_TASK_CANCEL)
            snprintf (buf + len, size - len, "%s%s(%s#%u)", sep,
                      names [e->kind], e->step, e->attempt);
        else if (e->kind == SHF_EFFECT_CLOSED)
            snprintf (buf + len, size - len, "%sCLOSED", sep);
        else
            snprintf (buf + len, size - len, "%s%s(%s@%" PRId64 ")", sep,
                      names [e->kind], e->step ? e->step : "-", e->due - T0);
    }
}

//  Finds a live timer "step:kind" in the state.
static const json_t *
s_timer (const json_t *state, const char *spec)
{
    char step [128];
    const char *colon = strchr (spec, ':');
    assert (colon && (size_t) (colon - spec) < sizeof step);
    memcpy (step, spec, (size_t) (colon - spec));
    step [colon - spec] = 0;
    size_t i;
    const json_t *timer;
    json_array_foreach (json_object_get (state, "timers"), i, timer)
    {
        const char *kind = json_string_value (json_object_get (timer, "kind"));
        const json_t *id = json_object_get (timer, "step");
        const char *name = json_is_string (id) ? json_string_value (id) : "-";
        if (strcmp (name, step) == 0 && strcmp (kind, colon + 1) == 0)
            return timer;
    }
    return NULL;
}

static void
s_harness_init (s_harness_t *h, const s_case_t *test, bool reload, bool verbose)
{
    memset (h, 0, sizeof *h);
    h->test = test;
    h->reload = reload;
    h->verbose = verbose;
    char err [256];
    shf_err_t rc = shf_def_compile (test->def, strlen (test->def), &h->def, err,
                                    sizeof err);
    if (rc != SHF_OK) {
        fprintf (stderr, "case %s: definition: %s\n", test->name, err);
        abort ();
    }
    h->run = shf_run_new ();
    h->state = shf_run_to_json (h->run);
    h->history = json_array ();
    shf_wf_output_init (&h->out);
}

static void
s_harness_destroy (s_harness_t *h)
{
    shf_wf_output_free (&h->out);
    shf_run_decref (h->run);
    json_decref (h->state);
    json_decref (h->history);
    shf_def_destroy (&h->def);
}

//  h->state becomes the run as it is now.
static void
s_snapshot (s_harness_t *h)
{
    json_decref (h->state);
    h->state = shf_run_to_json (h->run);
}

static void
s_harness_row (s_harness_t *h, size_t index)
{
    const s_row_t *row = &h->test->rows [index];
    shf_wf_input_t in = {
        .now = T0 + row->at, .step = row->step, .attempt = row->attempt};
    json_t *payload = NULL;
    const char *op = row->op;
    if (strcmp (op, "start") == 0) {
        in.kind = SHF_WF_START;
        in.namespace_ = "default";
        in.workflow_id = "wf-1";
        in.run_id = "run-1";
        payload = s_json (row->arg);
    }
    else if (strcmp (op, "started") == 0) {
        in.kind = SHF_WF_ACTIVITY_STARTED;
        in.worker = "worker-1";
    }
    else if (strcmp (op, "complete") == 0) {
        in.kind = SHF_WF_ACTIVITY_COMPLETED;
        payload = s_json (row->arg);
    }
    else if (strcmp (op, "fail") == 0) {
        in.kind = SHF_WF_ACTIVITY_FAILED;
        in.error_type = row->arg;
        in.error_message = row->arg2;
    }
    else if (strcmp (op, "handback") == 0)
        in.kind = SHF_WF_ACTIVITY_HANDED_BACK;
    else if (strcmp (op, "heartbeat") == 0) {
        in.kind = SHF_WF_HEARTBEAT;
        payload = s_json (row->arg);
    }
    else if (strcmp (op, "fire") == 0) {
        in.kind = SHF_WF_TIMER_FIRED;
        in.step = NULL;
        const json_t *timer = s_timer (h->state, row->step);
        if (!timer)
            s_fail_check (h, index, "no such timer", row->step, "none");
        int64_t due = json_integer_value (json_object_get (timer, "due"));
        if (due != in.now) {
            char a [32], b [32];
            snprintf (a, sizeof a, "%" PRId64, row->at);
            snprintf (b, sizeof b, "%" PRId64, due - T0);
            s_fail_check (h, index, "timer due", a, b);
        }
        in.timer_id =
            (uint64_t) json_integer_value (json_object_get (timer, "id"));
    }
    else if (strcmp (op, "fire_id") == 0) {
        in.kind = SHF_WF_TIMER_FIRED;
        in.timer_id = row->attempt;
    }
    else if (strcmp (op, "signal") == 0) {
        in.kind = SHF_WF_SIGNAL;
        in.signal = row->step;
        in.step = NULL;
        payload = s_json (row->arg);
    }
    else if (strcmp (op, "cancel") == 0) {
        in.kind = SHF_WF_CANCEL;
        in.reason = row->arg;
    }
    else if (strcmp (op, "terminate") == 0) {
        in.kind = SHF_WF_TERMINATE;
        in.reason = row->arg;
    }
    else {
        fprintf (stderr, "unknown op %s\n", op);
        abort ();
    }
    in.payload = payload;

    json_t *before = json_deep_copy (h->state);
    shf_wf_output_reset (&h->out);
    shf_err_t rc = shf_workflow_apply (h->def, h->run, &in, &h->out);
    s_snapshot (h);
    json_decref (payload);
    char got [1024];
    if (h->verbose)
        printf ("   %s %s@%" PRId64 " -> %s %s\n", h->test->name, op, row->at,
                shf_err_code (rc), h->out.message);
    if (rc != row->rc)
        s_fail_check (h, index, "return code", shf_err_code (row->rc),
                      shf_err_code (rc));
    if (rc != SHF_OK) {
        if (!json_equal (before, h->state))
            s_fail_check (h, index, "rejected input changed the state", "", "");
        if (h->out.n_events || h->out.n_effects)
            s_fail_check (h, index, "rejected input has output", "", "");
        if (!h->out.message [0])
            s_fail_check (h, index, "rejected input has no message", "", "");
    }
    json_decref (before);

    //  Event ids run on without gaps across the whole history.
    assert (!h->out.history_failed);
    json_t *events = shf_wf_output_events (&h->out);
    size_t i;
    json_t *event;
    json_array_foreach (events, i, event)
    {
        if (json_integer_value (json_object_get (event, "id"))
            != h->out.events [i].id)
            s_fail_check (h, index, "event ids", "as listed", "other");
        int64_t id = json_integer_value (json_object_get (event, "id"));
        if (id != (int64_t) json_array_size (h->history) + 1)
            s_fail_check (h, index, "event ids", "contiguous", "gap");
        if (json_integer_value (json_object_get (event, "time")) != in.now)
            s_fail_check (h, index, "event time", "now", "other");
        json_array_append (h->history, event);
    }
    if (row->events) {
        s_event_types (events, got, sizeof got);
        if (strcmp (got, row->events) != 0)
            s_fail_check (h, index, "events", row->events, got);
    }
    json_decref (events);
    if (row->effects) {
        s_effects (&h->out, got, sizeof got);
        if (strcmp (got, row->effects) != 0)
            s_fail_check (h, index, "effects", row->effects, got);
    }
    if (row->status && strcmp (shf_workflow_status (h->run), row->status) != 0)
        s_fail_check (h, index, "status", row->status,
                      shf_workflow_status (h->run));
    if (h->reload) {
        shf_mpack_out_t bytes = {0};
        assert (shf_run_encode (h->run, &bytes) == SHF_OK);
        //  The IDs the shard's key would give back (empty run: none)
        char *ids_text [3] = {NULL, NULL, NULL};
        shf_run_ids_t ids = {NULL, NULL, NULL, h->run->started_at};
        if (h->run->started) {
            ids.ns = ids_text [0] = strdup (h->run->ns);
            ids.workflow_id = ids_text [1] = strdup (h->run->workflow_id);
            ids.run_id = ids_text [2] = strdup (h->run->run_id);
        }
        shf_run_decref (h->run);
        assert (shf_run_decode (bytes.data, bytes.size, &ids, &h->run)
                == SHF_OK);
        for (int t = 0; t < 3; t++)
            free (ids_text [t]);
        shf_mpack_out_free (&bytes);
        json_t *back = shf_run_to_json (h->run);
        if (!json_equal (back, h->state))
            s_fail_check (h, index, "reloaded run", "equal", "other");
        json_decref (back);
    }
}

//  Runs every row. The harness is left for the caller's extra checks.
static void
s_case_run (s_harness_t *h, const s_case_t *test, bool reload, bool verbose)
{
    s_harness_init (h, test, reload, verbose);
    for (size_t i = 0; test->rows [i].op; i++)
        s_harness_row (h, i);
}

//  A step's field from the state.
static const json_t *
s_step (const s_harness_t *h, const char *id, const char *field)
{
    return json_object_get (
        json_object_get (json_object_get (h->state, "steps"), id), field);
}

static const char *
s_step_status (const s_harness_t *h, const char *id)
{
    return json_string_value (s_step (h, id, "status"));
}

static bool
s_equal_text (const json_t *value, const char *text)
{
    json_t *expected = s_json (text);
    bool equal = json_equal ((json_t *) value, expected);
    if (!equal) {
        char *dump = json_dumps (value, JSON_ENCODE_ANY | JSON_SORT_KEYS);
        fprintf (stderr, "expected %s, got %s\n", text, dump ? dump : "NULL");
        free (dump);
    }
    json_decref (expected);
    return equal;
}

//  The TASK effect of the last output for step, or NULL.
static const shf_effect_t *
s_task (const s_harness_t *h, const char *step)
{
    for (size_t i = 0; i < h->out.n_effects; i++)
        if (h->out.effects [i].kind == SHF_EFFECT_TASK
            && strcmp (h->out.effects [i].step, step) == 0)
            return &h->out.effects [i];
    return NULL;
}

#define OK SHF_OK


//  --------------------------------------------------------------------
//  The cases

static const s_row_t s_sequence [] = {
    {"start", 0, NULL, 0, "{\"n\":1}", NULL, OK,
     "WorkflowStarted StepScheduled", "TASK(a#1)", "running"},
    {"started", 5, "a", 1, NULL, NULL, OK, "ActivityStarted", "", "running"},
    {"complete", 10, "a", 1, "{\"x\":1}", NULL, OK,
     "ActivityCompleted StepScheduled", "TASK(b#1)", "running"},
    {"complete", 20, "b", 1, "\"done\"", NULL, OK,
     "ActivityStarted ActivityCompleted WorkflowCompleted", "CLOSED",
     "completed"},
    {"signal", 30, "late", 0, "1", NULL, SHF_ECLOSED, "", "", "completed"},
    {"complete", 30, "b", 1, "2", NULL, SHF_ECLOSED, "", "", "completed"},
    {.op = NULL}};

static const s_row_t s_parallel [] = {
    {"start", 0, NULL, 0, "{\"n\":1}", NULL, OK,
     "WorkflowStarted StepScheduled StepScheduled", "TASK(a#1) TASK(b#1)",
     "running"},
    {"complete", 10, "b", 1, "{\"v\":2}", NULL, OK,
     "ActivityStarted ActivityCompleted", "", "running"},
    {"complete", 20, "a", 1, "{\"v\":40}", NULL, OK,
     "ActivityStarted ActivityCompleted StepScheduled", "TASK(c#1)", "running"},
    {"complete", 30, "c", 1, "42", NULL, OK, NULL, "CLOSED", "completed"},
    {.op = NULL}};

static const s_row_t s_when [] = {
    {"start", 0, NULL, 0, "{}", NULL, OK, NULL, "TASK(a#1)", "running"},
    {"complete", 10, "a", 1, "{\"ok\":false}", NULL, OK,
     "ActivityStarted ActivityCompleted StepSkipped StepScheduled", "TASK(c#1)",
     "running"},
    {"complete", 20, "c", 1, "3", NULL, OK, NULL, "CLOSED", "completed"},
    {.op = NULL}};

static const s_row_t s_when_error [] = {{"start", 0, NULL, 0, "{}", NULL, OK,
                                         "WorkflowStarted WorkflowFailed",
                                         "CLOSED", "failed"},
                                        {.op = NULL}};

static const s_row_t s_retry [] = {
    {"start", 0, NULL, 0, "{\"id\":7}", NULL, OK, NULL, "TASK(a#1)", "running"},
    {"started", 10, "a", 1, NULL, NULL, OK, "ActivityStarted", "", NULL},
    {"fail", 20, "a", 1, "Boom", "first", OK, "ActivityFailed", "TIMER(a@1020)",
     "running"},
    {"complete", 21, "a", 1, "1", NULL, SHF_ENOTFOUND, "", "", NULL},
    {"started", 22, "a", 1, NULL, NULL, SHF_ENOTFOUND, "", "", NULL},
    {"fire", 1020, "a:retry", 0, NULL, NULL, OK, "StepScheduled", "TASK(a#2)",
     "running"},
    {"fail", 1100, "a", 2, "Boom", "second", OK,
     "ActivityStarted ActivityFailed", "TIMER(a@3100)", "running"},
    {"fire", 3100, "a:retry", 0, NULL, NULL, OK, "StepScheduled", "TASK(a#3)",
     NULL},
    {"complete", 3200, "a", 2, "1", NULL, SHF_ENOTFOUND, "", "", NULL},
    {"complete", 3300, "a", 3, "{\"ok\":true}", NULL, OK,
     "ActivityStarted ActivityCompleted WorkflowCompleted", "CLOSED",
     "completed"},
    {.op = NULL}};

static const s_row_t s_exhausted [] = {
    {"start", 0, NULL, 0, "{}", NULL, OK, NULL, "TASK(a#1)", NULL},
    {"fail", 10, "a", 1, "Boom", "1", OK, NULL, "TIMER(a@510)", NULL},
    {"fire", 510, "a:retry", 0, NULL, NULL, OK, NULL, "TASK(a#2)", NULL},
    {"fail", 600, "a", 2, "Boom", "2", OK,
     "ActivityStarted ActivityFailed WorkflowFailed", "CLOSED", "failed"},
    {.op = NULL}};

static const s_row_t s_non_retryable [] = {
    {"start", 0, NULL, 0, "{}", NULL, OK, NULL, "TASK(a#1)", NULL},
    {"fail", 10, "a", 1, "Declined", "card declined", OK,
     "ActivityStarted ActivityFailed WorkflowFailed", "CLOSED", "failed"},
    {.op = NULL}};

static const s_row_t s_optional [] = {
    {"start", 0, NULL, 0, "{}", NULL, OK, NULL, "TASK(a#1)", NULL},
    {"fail", 10, "a", 1, "Boom", "x", OK,
     "ActivityStarted ActivityFailed StepScheduled", "TASK(b#1)", "running"},
    {"complete", 20, "b", 1, "\"b\"", NULL, OK, NULL, "CLOSED", "completed"},
    {.op = NULL}};

static const s_row_t s_start_to_close [] = {
    {"start", 0, NULL, 0, "{}", NULL, OK, NULL, "TASK(a#1)", NULL},
    {"started", 100, "a", 1, NULL, NULL, OK, "ActivityStarted", "TIMER(a@5100)",
     NULL},
    {"fire", 5100, "a:start_to_close", 0, NULL, NULL, OK, "ActivityTimedOut",
     "TASK_CANCEL(a#1) TIMER(a@6100)", "running"},
    {"complete", 5200, "a", 1, "1", NULL, SHF_ENOTFOUND, "", "", NULL},
    {"fire", 6100, "a:retry", 0, NULL, NULL, OK, "StepScheduled", "TASK(a#2)",
     NULL},
    {"started", 6200, "a", 2, NULL, NULL, OK, NULL, "TIMER(a@11200)", NULL},
    {"fire", 11200, "a:start_to_close", 0, NULL, NULL, OK,
     "ActivityTimedOut WorkflowFailed", "TASK_CANCEL(a#2) CLOSED", "failed"},
    {.op = NULL}};

//  A hand-back ends the attempt and dispatches the next at once; it does
//  not count against max_attempts (1 here), so a failure of the new
//  attempt is still judged as the first.
static const s_row_t s_handback [] = {
    {"start", 0, NULL, 0, "{}", NULL, OK, NULL, "TASK(a#1)", NULL},
    {"started", 100, "a", 1, NULL, NULL, OK, "ActivityStarted", "TIMER(a@5100)",
     NULL},
    {"handback", 200, "a", 1, NULL, NULL, OK, "StepScheduled",
     "TIMER_CANCEL(a@5100) TASK_CANCEL(a#1) TASK(a#2)", "running"},
    {"handback", 210, "a", 1, NULL, NULL, SHF_ENOTFOUND, "", "", NULL},
    {"started", 300, "a", 2, NULL, NULL, OK, "ActivityStarted", "TIMER(a@5300)",
     NULL},
    {"complete", 400, "a", 2, "1", NULL, OK,
     "ActivityCompleted WorkflowCompleted", "TIMER_CANCEL(a@5300) CLOSED",
     "completed"},
    {.op = NULL}};

//  With max_attempts 2, a failure after a hand-back is the first counted
//  one: it is retried after the first backoff, not given up.
static const s_row_t s_handback_retry [] = {
    {"start", 0, NULL, 0, "{}", NULL, OK, NULL, "TASK(a#1)", NULL},
    {"handback", 100, "a", 1, NULL, NULL, OK, "StepScheduled",
     "TASK_CANCEL(a#1) TASK(a#2)", NULL},
    {"fail", 200, "a", 2, "Boom", "x", OK, "ActivityStarted ActivityFailed",
     "TIMER(a@1200)", "running"},
    {"fire", 1200, "a:retry", 0, NULL, NULL, OK, "StepScheduled", "TASK(a#3)",
     NULL},
    {"fail", 1300, "a", 3, "Boom", "y", OK,
     "ActivityStarted ActivityFailed WorkflowFailed", "CLOSED", "failed"},
    {.op = NULL}};

//  A rendered input too deep to store (49 levels > 48) fails the step
//  with TooLarge instead of poisoning the run state.
static const s_row_t s_input_too_deep [] = {
    {"start", 0, NULL, 0,
     "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]"
     "]]]]]]]]]]]]]]]]]]]]]]]]]]",
     NULL, OK, NULL, "CLOSED", "failed"},
    {.op = NULL}};

static const s_row_t s_signal_buffered [] = {
    {"start", 0, NULL, 0, "{}", NULL, OK, NULL, "TASK(a#1)", NULL},
    {"signal", 5, "go", 0, "{\"n\":1}", NULL, OK, "SignalReceived", "",
     "running"},
    {"complete", 10, "a", 1, "null", NULL, OK,
     "ActivityStarted ActivityCompleted StepScheduled WorkflowCompleted",
     "CLOSED", "completed"},
    {.op = NULL}};

static const s_row_t s_signals_ordered [] = {
    {"start", 0, NULL, 0, "{}", NULL, OK,
     "WorkflowStarted StepScheduled "
     "StepScheduled",
     "", NULL},
    {"signal", 5, "go", 0, "\"first\"", NULL, OK, "SignalReceived", "", NULL},
    {"signal", 6, "go", 0, "\"second\"", NULL, OK,
     "SignalReceived StepScheduled", "TASK(c#1)", NULL},
    {"signal", 7, "go", 0, "\"third\"", NULL, OK, "SignalReceived", "", NULL},
    {"complete", 8, "c", 1, "0", NULL, OK, NULL, "CLOSED", "completed"},
    {.op = NULL}};

static const s_row_t s_signals_queued [] = {
    {"start", 0, NULL, 0, "{}", NULL, OK, NULL, "TASK(a#1)", NULL},
    {"signal", 1, "go", 0, "1", NULL, OK, NULL, "", NULL},
    {"signal", 2, "go", 0, "2", NULL, OK, NULL, "", NULL},
    {"signal", 3, "go", 0, "3", NULL, OK, NULL, "", NULL},
    {"complete", 10, "a", 1, "null", NULL, OK,
     "ActivityStarted ActivityCompleted StepScheduled StepScheduled "
     "WorkflowCompleted",
     "CLOSED", "completed"},
    {.op = NULL}};

static const s_row_t s_cancel [] = {
    {"start", 0, NULL, 0, "{}", NULL, OK,
     "WorkflowStarted StepScheduled TimerStarted", "TASK(a#1) TIMER(s@60000)",
     NULL},
    {"cancel", 10, NULL, 0, "user asked", NULL, OK,
     "CancelRequested StepCanceled StepCanceled WorkflowCanceled",
     "TASK_CANCEL(a#1) TIMER_CANCEL(s@60000) CLOSED", "canceled"},
    {"cancel", 20, NULL, 0, NULL, NULL, SHF_ECLOSED, "", "", "canceled"},
    {"signal", 20, "go", 0, "1", NULL, SHF_ECLOSED, "", "", NULL},
    {"complete", 20, "a", 1, "1", NULL, SHF_ECLOSED, "", "", NULL},
    {"terminate", 20, NULL, 0, NULL, NULL, SHF_ECLOSED, "", "", "canceled"},
    {.op = NULL}};

static const s_row_t s_terminate [] = {
    {"start", 0, NULL, 0, "{}", NULL, OK, NULL, "TASK(a#1) TIMER(s@60000)",
     NULL},
    {"started", 5, "a", 1, NULL, NULL, OK, NULL, "", NULL},
    {"terminate", 10, NULL, 0, NULL, NULL, OK,
     "StepCanceled StepCanceled WorkflowTerminated",
     "TASK_CANCEL(a#1) TIMER_CANCEL(s@60000) CLOSED", "terminated"},
    {"fail", 20, "a", 1, "Boom", "late", SHF_ECLOSED, "", "", "terminated"},
    {.op = NULL}};

static const s_row_t s_stale [] = {
    {"start", 0, NULL, 0, "{}", NULL, OK, NULL, "TASK(a#1)", NULL},
    {"complete", 1, "a", 2, "1", NULL, SHF_ENOTFOUND, "", "", NULL},
    {"complete", 1, "nope", 1, "1", NULL, SHF_ENOTFOUND, "", "", NULL},
    {"complete", 1, "s", 1, "1", NULL, SHF_EINVAL, "", "", NULL},
    {"fire_id", 1, NULL, 999, NULL, NULL, SHF_ENOTFOUND, "", "", NULL},
    {"started", 2, "a", 1, NULL, NULL, OK, "ActivityStarted", "", NULL},
    {"started", 3, "a", 1, NULL, NULL, SHF_ENOTFOUND, "", "", NULL},
    {"complete", 4, "a", 1, "1", NULL, OK, "ActivityCompleted TimerStarted",
     "TIMER(s@104)", NULL},
    {"complete", 5, "a", 1, "1", NULL, SHF_ENOTFOUND, "", "", NULL},
    {"fail", 5, "a", 1, "Boom", NULL, SHF_ENOTFOUND, "", "", NULL},
    {"heartbeat", 5, "a", 1, "{}", NULL, SHF_ENOTFOUND, "", "", NULL},
    {"start", 6, NULL, 0, "{}", NULL, SHF_EINVAL, "", "", NULL},
    {"fire", 104, "s:sleep", 0, NULL, NULL, OK, "TimerFired WorkflowCompleted",
     "CLOSED", "completed"},
    {.op = NULL}};

static const s_row_t s_workflow_timeout [] = {
    {"start", 0, NULL, 0, "{}", NULL, OK, NULL, "TIMER(-@3600000) TASK(a#1)",
     NULL},
    {"started", 10, "a", 1, NULL, NULL, OK, NULL, "TIMER(a@30010)", NULL},
    {"fire", 3600000, "-:workflow", 0, NULL, NULL, OK,
     "StepCanceled WorkflowTimedOut",
     "TASK_CANCEL(a#1) TIMER_CANCEL(a@30010) CLOSED", "timed_out"},
    {"fire_id", 3600001, NULL, 1, NULL, NULL, SHF_ECLOSED, "", "", NULL},
    {.op = NULL}};

static const s_row_t s_wait_timeout [] = {
    {"start", 0, NULL, 0, "{}", NULL, OK, "WorkflowStarted StepScheduled",
     "TIMER(w@5000)", NULL},
    {"fire", 5000, "w:wait_signal", 0, NULL, NULL, OK,
     "TimerFired WorkflowFailed", "CLOSED", "failed"},
    {.op = NULL}};

static const s_row_t s_heartbeat [] = {
    {"start", 0, NULL, 0, "{}", NULL, OK, NULL, "TASK(a#1)", NULL},
    {"heartbeat", 100, "a", 1, "{\"p\":1}", NULL, OK, "ActivityStarted",
     "TIMER(a@10100)", NULL},
    {"heartbeat", 5000, "a", 1, "{\"p\":2}", NULL, OK, "", "", NULL},
    {"fire", 10100, "a:heartbeat", 0, NULL, NULL, OK, "", "TIMER(a@15000)",
     "running"},
    {"fire", 15000, "a:heartbeat", 0, NULL, NULL, OK, "ActivityTimedOut",
     "TASK_CANCEL(a#1) TIMER(a@16000)", "running"},
    {"heartbeat", 15001, "a", 1, "{}", NULL, SHF_ENOTFOUND, "", "", NULL},
    {"fire", 16000, "a:retry", 0, NULL, NULL, OK, "StepScheduled", "TASK(a#2)",
     NULL},
    {"complete", 16100, "a", 2, "true", NULL, OK, NULL, "CLOSED", "completed"},
    {.op = NULL}};

static const s_row_t s_schedule_to_start [] = {
    {"start", 0, NULL, 0, "{}", NULL, OK, NULL, "TASK(a#1) TIMER(a@2000)",
     NULL},
    {"fire", 2000, "a:schedule_to_start", 0, NULL, NULL, OK, "ActivityTimedOut",
     "TASK_CANCEL(a#1) TIMER(a@3000)", NULL},
    {"fire", 3000, "a:retry", 0, NULL, NULL, OK, "StepScheduled",
     "TASK(a#2) TIMER(a@5000)", NULL},
    {"started", 3100, "a", 2, NULL, NULL, OK, "ActivityStarted",
     "TIMER_CANCEL(a@5000)", NULL},
    {"complete", 3200, "a", 2, "1", NULL, OK, NULL, "CLOSED", "completed"},
    {.op = NULL}};

static const s_row_t s_schedule_to_close [] = {
    {"start", 0, NULL, 0, "{}", NULL, OK, NULL, "TASK(a#1) TIMER(a@3000)",
     NULL},
    {"fail", 500, "a", 1, "Boom", NULL, OK, NULL, "TIMER(a@1500)", NULL},
    {"fire", 1500, "a:retry", 0, NULL, NULL, OK, NULL, "TASK(a#2)", NULL},
    {"fail", 2000, "a", 2, "Boom", NULL, OK, NULL, "TIMER(a@4000)", NULL},
    {"fire", 3000, "a:schedule_to_close", 0, NULL, NULL, OK,
     "ActivityTimedOut WorkflowFailed", "TIMER_CANCEL(a@4000) CLOSED",
     "failed"},
    {.op = NULL}};

static const s_row_t s_templates [] = {
    {"start", 0, NULL, 0, "{\"amount\":5,\"who\":\"ann\"}", NULL, OK, NULL,
     "TASK(a#1)", NULL},
    {"complete", 10, "a", 1, "{\"id\":\"tx9\",\"ok\":true}", NULL, OK, NULL,
     "TASK(b#1)", NULL},
    {"complete", 20, "b", 1, "null", NULL, OK, NULL, "CLOSED", "completed"},
    {.op = NULL}};

static const s_row_t s_input_error [] = {
    {"start", 0, NULL, 0, "{\"n\":\"x\"}", NULL, OK, NULL, "TASK(b#1)",
     "running"},
    {"complete", 10, "b", 1, "1", NULL, OK, NULL, "CLOSED", "completed"},
    {.op = NULL}};

#define RETRY_FAST "\"retry\":{\"max_attempts\":3,\"initial_interval\":\"1s\""

static const s_case_t s_cases [] = {
    {"sequence",
     "{\"name\":\"seq\",\"version\":1,\"steps\":[{\"id\":\"a\","
     "\"activity\":\"A\"},{\"id\":\"b\",\"activity\":\"B\"}]}",
     s_sequence},
    {"parallel",
     "{\"name\":\"par\",\"version\":1,\"steps\":["
     "{\"id\":\"a\",\"activity\":\"A\",\"after\":[]},"
     "{\"id\":\"b\",\"activity\":\"B\",\"after\":[]},"
     "{\"id\":\"c\",\"activity\":\"C\",\"after\":[\"a\",\"b\"],"
     "\"input\":\"${steps.a.output.v + steps.b.output.v}\"}],"
     "\"output\":{\"sum\":\"${steps.c.output}\","
     "\"text\":\"a=${steps.a.output.v}\"}}",
     s_parallel},
    {"when",
     "{\"name\":\"when\",\"version\":1,\"steps\":["
     "{\"id\":\"a\",\"activity\":\"A\"},"
     "{\"id\":\"b\",\"activity\":\"B\",\"when\":\"steps.a.output.ok == "
     "true\"},"
     "{\"id\":\"c\",\"activity\":\"C\",\"input\":\"${steps.b.status}\"}]}",
     s_when},
    {"when_error",
     "{\"name\":\"whenerr\",\"version\":1,\"steps\":["
     "{\"id\":\"d\",\"activity\":\"D\",\"when\":\"1 / 0 == 1\"},"
     "{\"id\":\"e\",\"activity\":\"E\"}]}",
     s_when_error},
    {"retry",
     "{\"name\":\"retry\",\"version\":1," RETRY_FAST
     ",\"backoff\":2},\"steps\":[{\"id\":\"a\",\"activity\":\"A\","
     "\"input\":\"${input.id}\"}]}",
     s_retry},
    {"exhausted",
     "{\"name\":\"exh\",\"version\":1,\"steps\":[{\"id\":\"a\","
     "\"activity\":\"A\",\"retry\":{\"max_attempts\":2,"
     "\"initial_interval\":\"500ms\"}},{\"id\":\"b\",\"activity\":\"B\"}]}",
     s_exhausted},
    {"non_retryable",
     "{\"name\":\"nr\",\"version\":1," RETRY_FAST
     ",\"non_retryable\":[\"Declined\"]},\"steps\":[{\"id\":\"a\","
     "\"activity\":\"A\"},{\"id\":\"b\",\"activity\":\"B\"}]}",
     s_non_retryable},
    {"optional",
     "{\"name\":\"opt\",\"version\":1,\"steps\":[{\"id\":\"a\","
     "\"activity\":\"A\",\"optional\":true,\"retry\":{\"max_attempts\":1}},"
     "{\"id\":\"b\",\"activity\":\"B\"}]}",
     s_optional},
    {"start_to_close",
     "{\"name\":\"stc\",\"version\":1,\"steps\":[{\"id\":\"a\","
     "\"activity\":\"A\",\"timeouts\":{\"start_to_close\":\"5s\"},"
     "\"retry\":{\"max_attempts\":2,\"initial_interval\":\"1s\"}}]}",
     s_start_to_close},
    {"handback",
     "{\"name\":\"hb\",\"version\":1,\"steps\":[{\"id\":\"a\","
     "\"activity\":\"A\",\"timeouts\":{\"start_to_close\":\"5s\"},"
     "\"retry\":{\"max_attempts\":1}}]}",
     s_handback},
    {"handback_retry",
     "{\"name\":\"hbr\",\"version\":1,\"steps\":[{\"id\":\"a\","
     "\"activity\":\"A\",\"retry\":{\"max_attempts\":2,"
     "\"initial_interval\":\"1s\"}}]}",
     s_handback_retry},
    {"input_too_deep",
     "{\"name\":\"deep\",\"version\":1,\"steps\":[{\"id\":\"a\","
     "\"activity\":\"A\",\"input\":\"${input}\"}]}",
     s_input_too_deep},
    {"signal_buffered",
     "{\"name\":\"sig\",\"version\":1,\"steps\":[{\"id\":\"a\","
     "\"activity\":\"A\"},{\"id\":\"w\",\"wait_signal\":\"go\"}]}",
     s_signal_buffered},
    {"signals_ordered",
     "{\"name\":\"sig2\",\"version\":1,\"steps\":["
     "{\"id\":\"w1\",\"wait_signal\":\"go\",\"after\":[]},"
     "{\"id\":\"w2\",\"wait_signal\":\"go\",\"after\":[]},"
     "{\"id\":\"c\",\"activity\":\"C\",\"after\":[\"w1\",\"w2\"],"
     "\"input\":\"${steps.w1.output}-${steps.w2.output}-${signals.go}\"}]}",
     s_signals_ordered},
    {"signals_queued",
     "{\"name\":\"sig3\",\"version\":1,\"steps\":["
     "{\"id\":\"a\",\"activity\":\"A\"},"
     "{\"id\":\"w1\",\"wait_signal\":\"go\"},"
     "{\"id\":\"w2\",\"wait_signal\":\"go\"}],"
     "\"output\":[\"${steps.w1.output}\",\"${steps.w2.output}\","
     "\"${signals.go}\"]}",
     s_signals_queued},
    {"cancel",
     "{\"name\":\"cancel\",\"version\":1,\"steps\":["
     "{\"id\":\"a\",\"activity\":\"A\",\"after\":[]},"
     "{\"id\":\"s\",\"sleep\":\"1m\",\"after\":[]},"
     "{\"id\":\"z\",\"activity\":\"Z\",\"after\":[\"a\",\"s\"]}]}",
     s_cancel},
    {"terminate",
     "{\"name\":\"term\",\"version\":1,\"steps\":["
     "{\"id\":\"a\",\"activity\":\"A\",\"after\":[]},"
     "{\"id\":\"s\",\"sleep\":\"1m\",\"after\":[]}]}",
     s_terminate},
    {"stale",
     "{\"name\":\"stale\",\"version\":1,\"steps\":["
     "{\"id\":\"a\",\"activity\":\"A\"},{\"id\":\"s\",\"sleep\":\"100ms\"}]}",
     s_stale},
    {"workflow_timeout",
     "{\"name\":\"wto\",\"version\":1,\"timeout\":\"1h\",\"steps\":["
     "{\"id\":\"a\",\"activity\":\"A\",\"timeouts\":{\"start_to_close\":"
     "\"30s\"}}]}",
     s_workflow_timeout},
    {"wait_timeout",
     "{\"name\":\"wt\",\"version\":1,\"steps\":["
     "{\"id\":\"w\",\"wait_signal\":\"approved\",\"timeout\":\"5s\"}]}",
     s_wait_timeout},
    {"heartbeat",
     "{\"name\":\"hb\",\"version\":1,\"steps\":[{\"id\":\"a\","
     "\"activity\":\"A\",\"timeouts\":{\"heartbeat\":\"10s\"},"
     "\"retry\":{\"initial_interval\":\"1s\"}}]}",
     s_heartbeat},
    {"schedule_to_start",
     "{\"name\":\"sts\",\"version\":1,\"steps\":[{\"id\":\"a\","
     "\"activity\":\"A\",\"timeouts\":{\"schedule_to_start\":\"2s\"},"
     "\"retry\":{\"initial_interval\":\"1s\"}}]}",
     s_schedule_to_start},
    {"schedule_to_close",
     "{\"name\":\"stcl\",\"version\":1,\"steps\":[{\"id\":\"a\","
     "\"activity\":\"A\",\"timeouts\":{\"schedule_to_close\":\"3s\"},"
     "\"retry\":{\"max_attempts\":0,\"initial_interval\":\"1s\"}}]}",
     s_schedule_to_close},
    {"templates",
     "{\"name\":\"tpl\",\"version\":1,\"steps\":["
     "{\"id\":\"a\",\"activity\":\"charge\",\"queue\":\"pay\","
     "\"input\":{\"amount\":\"${input.amount}\",\"who\":\"to ${input.who}\"}},"
     "{\"id\":\"b\",\"activity\":\"ship\","
     "\"input\":{\"tx\":\"${steps.a.output.id}\","
     "\"line\":\"tx=${steps.a.output.id} ok=${steps.a.output.ok}\"}}],"
     "\"output\":{\"charge\":\"${steps.a.output}\","
     "\"shipped\":\"${steps.b.status}\",\"wf\":\"${workflow.id}\"}}",
     s_templates},
    {"input_error",
     "{\"name\":\"inerr\",\"version\":1,\"steps\":["
     "{\"id\":\"a\",\"activity\":\"A\",\"optional\":true,\"after\":[],"
     "\"input\":\"${input.n * 2}\"},"
     "{\"id\":\"b\",\"activity\":\"B\",\"after\":[\"a\"]}]}",
     s_input_error},
    {.name = NULL}};


//  --------------------------------------------------------------------
//  Extra checks per case, on the harness after its last row

static void
s_check_case (const s_harness_t *h)
{
    const char *name = h->test->name;
    const json_t *state = h->state;
    const shf_run_t *run = h->run;
    const json_t *failure = json_object_get (state, "failure");
    if (strcmp (name, "sequence") == 0) {
        assert (s_equal_text (json_object_get (state, "output"), "\"done\""));
        assert (json_is_null (failure));
        assert (s_equal_text (s_step (h, "a", "output"), "{\"x\":1}"));
        assert (shf_workflow_closed_at (run) == T0 + 20);
        assert (shf_workflow_started_at (run) == T0);
        assert (!shf_workflow_is_open (run));
        assert (strcmp (shf_workflow_id (run), "wf-1") == 0);
        assert (strcmp (shf_workflow_run_id (run), "run-1") == 0);
        assert (strcmp (shf_workflow_def_name (run), "seq") == 0);
        assert (shf_workflow_def_version (run) == 1);
        const json_t *first = json_array_get (h->history, 0);
        assert (s_equal_text (json_object_get (first, "input"), "{\"n\":1}"));
        assert (s_equal_text (json_object_get (first, "name"), "\"seq\""));
    }
    else if (strcmp (name, "parallel") == 0)
        assert (s_equal_text (json_object_get (state, "output"),
                              "{\"sum\":42,\"text\":\"a=40\"}"));
    else if (strcmp (name, "when") == 0) {
        assert (strcmp (s_step_status (h, "b"), "skipped") == 0);
        assert (s_equal_text (s_step (h, "c", "input"), "\"skipped\""));
        assert (s_equal_text (json_object_get (state, "output"), "3"));
    }
    else if (strcmp (name, "when_error") == 0) {
        assert (s_equal_text (json_object_get (failure, "type"),
                              "\"ExpressionError\""));
        assert (s_equal_text (json_object_get (failure, "step"), "\"d\""));
        assert (strcmp (s_step_status (h, "d"), "failed") == 0);
        assert (strcmp (s_step_status (h, "e"), "canceled") == 0);
    }
    else if (strcmp (name, "retry") == 0) {
        assert (s_equal_text (s_step (h, "a", "attempt"), "3"));
        assert (strcmp (s_step_status (h, "a"), "completed") == 0);
        //  the rendered input is reused by every attempt
        assert (s_equal_text (s_step (h, "a", "input"), "7"));
    }
    else if (strcmp (name, "exhausted") == 0) {
        assert (s_equal_text (failure, "{\"type\":\"Boom\",\"message\":\"2\","
                                       "\"step\":\"a\"}"));
        assert (strcmp (s_step_status (h, "b"), "canceled") == 0);
        assert (s_equal_text (s_step (h, "b", "attempt"), "0"));
    }
    else if (strcmp (name, "non_retryable") == 0) {
        assert (s_equal_text (failure,
                              "{\"type\":\"Declined\",\"message\":\"card "
                              "declined\",\"step\":\"a\"}"));
        assert (s_equal_text (s_step (h, "a", "attempt"), "1"));
        assert (strcmp (s_step_status (h, "b"), "canceled") == 0);
    }
    else if (strcmp (name, "optional") == 0) {
        assert (strcmp (s_step_status (h, "a"), "failed") == 0);
        assert (json_is_null (failure));
        assert (s_equal_text (json_object_get (state, "output"), "\"b\""));
    }
    else if (strcmp (name, "start_to_close") == 0) {
        assert (s_equal_text (failure, "{\"type\":\"Timeout\",\"message\":"
                                       "\"start_to_close\",\"step\":\"a\"}"));
        assert (json_array_size (json_object_get (state, "timers")) == 0);
    }
    else if (strcmp (name, "signal_buffered") == 0) {
        assert (s_equal_text (json_object_get (state, "output"), "{\"n\":1}"));
        assert (json_object_size (json_object_get (state, "signals")) == 0);
    }
    else if (strcmp (name, "signals_ordered") == 0) {
        assert (s_equal_text (s_step (h, "w1", "output"), "\"first\""));
        assert (s_equal_text (s_step (h, "w2", "output"), "\"second\""));
        assert (
            s_equal_text (s_step (h, "c", "input"), "\"first-second-second\""));
        assert (s_equal_text (json_object_get (state, "signals"),
                              "{\"go\":[\"third\"]}"));
    }
    else if (strcmp (name, "signals_queued") == 0) {
        assert (s_equal_text (json_object_get (state, "output"), "[1,2,3]"));
        assert (
            s_equal_text (json_object_get (state, "signals"), "{\"go\":[3]}"));
    }
    else if (strcmp (name, "cancel") == 0) {
        assert (s_equal_text (failure, "{\"type\":\"Canceled\",\"message\":"
                                       "\"user asked\",\"step\":null}"));
        assert (strcmp (s_step_status (h, "z"), "canceled") == 0);
        assert (strcmp (s_step_status (h, "s"), "canceled") == 0);
        const json_t *last =
            json_array_get (h->history, json_array_size (h->history) - 1);
        assert (
            s_equal_text (json_object_get (last, "reason"), "\"user asked\""));
    }
    else if (strcmp (name, "terminate") == 0)
        assert (s_equal_text (failure, "{\"type\":\"Terminated\",\"message\":"
                                       "\"terminated\",\"step\":null}"));
    else if (strcmp (name, "workflow_timeout") == 0) {
        assert (s_equal_text (failure, "{\"type\":\"Timeout\",\"message\":"
                                       "\"workflow\",\"step\":null}"));
        assert (strcmp (s_step_status (h, "a"), "canceled") == 0);
    }
    else if (strcmp (name, "wait_timeout") == 0)
        assert (s_equal_text (failure, "{\"type\":\"Timeout\",\"message\":"
                                       "\"wait_signal\",\"step\":\"w\"}"));
    else if (strcmp (name, "heartbeat") == 0) {
        assert (
            s_equal_text (s_step (h, "a", "heartbeat_details"), "{\"p\":2}"));
        assert (s_equal_text (s_step (h, "a", "attempt"), "2"));
    }
    else if (strcmp (name, "schedule_to_close") == 0)
        assert (s_equal_text (failure, "{\"type\":\"Timeout\",\"message\":"
                                       "\"schedule_to_close\",\"step\":"
                                       "\"a\"}"));
    else if (strcmp (name, "templates") == 0) {
        assert (s_equal_text (s_step (h, "a", "input"),
                              "{\"amount\":5,\"who\":\"to ann\"}"));
        assert (s_equal_text (s_step (h, "b", "input"),
                              "{\"tx\":\"tx9\",\"line\":\"tx=tx9 ok=true\"}"));
        assert (s_equal_text (json_object_get (state, "output"),
                              "{\"charge\":{\"id\":\"tx9\",\"ok\":true},"
                              "\"shipped\":\"completed\",\"wf\":\"wf-1\"}"));
    }
    else if (strcmp (name, "input_error") == 0) {
        assert (strcmp (s_step_status (h, "a"), "failed") == 0);
        assert (
            s_equal_text (json_object_get (s_step (h, "a", "failure"), "type"),
                          "\"ExpressionError\""));
    }
}

static s_case_t
s_case (const char *name)
{
    for (const s_case_t *test = s_cases; test->name; test++)
        if (strcmp (test->name, name) == 0)
            return *test;
    abort ();
}

//  Inputs of the TASK effects, the workflow timeout, and describe/result,
//  driven by hand.
static void
s_test_by_hand (bool verbose)
{
    static const s_row_t rows [] = {{"start", 0, NULL, 0,
                                     "{\"amount\":5,\"who\":\"ann\"}", NULL, OK,
                                     NULL, "TASK(a#1)", NULL},
                                    {.op = NULL}};
    s_case_t test = s_case ("templates");
    test.rows = rows;
    s_harness_t h;
    s_case_run (&h, &test, false, verbose);
    const shf_effect_t *task = s_task (&h, "a");
    assert (task && task->attempt == 1);
    assert (strcmp (task->activity, "charge") == 0);
    assert (strcmp (task->queue, "pay") == 0);
    assert (s_equal_text (task->input, "{\"amount\":5,\"who\":\"to ann\"}"));
    assert (task->heartbeat_details == NULL);

    //  describe and result while open
    json_t *describe = shf_workflow_describe (h.def, h.run);
    assert (s_equal_text (json_object_get (describe, "started_at"),
                          "\"2026-11-22T16:00:00.123Z\""));
    assert (json_is_null (json_object_get (describe, "closed_at")));
    assert (s_equal_text (json_object_get (describe, "status"), "\"running\""));
    assert (s_equal_text (json_object_get (describe, "version"), "1"));
    const json_t *steps = json_object_get (describe, "steps");
    assert (json_array_size (steps) == 2);
    assert (s_equal_text (json_array_get (steps, 0),
                          "{\"id\":\"a\",\"status\":\"scheduled\","
                          "\"attempt\":1,\"scheduled_at\":"
                          "\"2026-11-22T16:00:00.123Z\",\"started_at\":null,"
                          "\"closed_at\":null,\"output\":null,\"failure\":"
                          "null,\"heartbeat_details\":null}"));
    assert (s_equal_text (json_object_get (json_array_get (steps, 1), "id"),
                          "\"b\""));
    assert (json_array_size (json_object_get (describe, "timers")) == 0);
    json_decref (describe);
    json_t *result = shf_workflow_result (h.run);
    assert (s_equal_text (result, "{\"workflow_id\":\"wf-1\",\"run_id\":"
                                  "\"run-1\",\"status\":\"running\","
                                  "\"output\":null,\"failure\":null}"));
    json_decref (result);
    {
        //  Packed, the bytes shf_mpack_encode gives for the object.
        shf_mpack_out_t out = {0};
        assert (shf_workflow_result_pack (h.run, &out) == SHF_OK);
        result = shf_workflow_result (h.run);
        char *want;
        size_t want_size;
        assert (shf_mpack_encode (result, &want, &want_size) == SHF_OK);
        assert (out.size == want_size
                && memcmp (out.data, want, want_size) == 0);
        free (want);
        json_decref (result);
        shf_mpack_out_free (&out);
    }
    s_harness_destroy (&h);

    //  workflow timeout: fire the workflow timer at its due time
    s_case_t wto = s_case ("workflow_timeout");
    static const s_row_t wto_rows [] = {
        {"start", 0, NULL, 0, "{}", NULL, OK, NULL,
         "TIMER(-@3600000) TASK(a#1)", NULL},
        {"started", 10, "a", 1, NULL, NULL, OK, NULL, "TIMER(a@30010)", NULL},
        {"fire", 30010, "a:start_to_close", 0, NULL, NULL, OK, NULL,
         "TASK_CANCEL(a#1) TIMER(a@31010)", NULL},
        {"fire", 31010, "a:retry", 0, NULL, NULL, OK, NULL, "TASK(a#2)", NULL},
        {"started", 31020, "a", 2, NULL, NULL, OK, NULL, "TIMER(a@61020)",
         NULL},
        {"fire", 61020, "a:start_to_close", 0, NULL, NULL, OK, NULL,
         "TASK_CANCEL(a#2) TIMER(a@63020)", NULL},
        {"fire", 63020, "a:retry", 0, NULL, NULL, OK, NULL, "TASK(a#3)", NULL},
        {"started", 63030, "a", 3, NULL, NULL, OK, NULL, "TIMER(a@93030)",
         NULL},
        {"fire", 93030, "a:start_to_close", 0, NULL, NULL, OK,
         "ActivityTimedOut WorkflowFailed",
         "TASK_CANCEL(a#3) "
         "TIMER_CANCEL(-@3600000) CLOSED",
         "failed"},
        {.op = NULL}};
    wto.rows = wto_rows;
    s_case_run (&h, &wto, false, verbose);
    s_harness_destroy (&h);
    static const s_row_t wto_rows2 [] = {
        {"start", 0, NULL, 0, "{}", NULL, OK, NULL,
         "TIMER(-@3600000) TASK(a#1)", NULL},
        {"fire", 3600000, "-:workflow", 0, NULL, NULL, OK,
         "StepCanceled WorkflowTimedOut", "TASK_CANCEL(a#1) CLOSED",
         "timed_out"},
        {.op = NULL}};
    wto.rows = wto_rows2;
    s_case_run (&h, &wto, false, verbose);
    assert (s_equal_text (json_object_get (h.state, "failure"),
                          "{\"type\":\"Timeout\",\"message\":\"workflow\","
                          "\"step\":null}"));
    s_harness_destroy (&h);

    //  heartbeat details of an earlier attempt travel with the next task
    s_case_t hb = s_case ("heartbeat");
    s_harness_init (&h, &hb, false, verbose);
    for (size_t i = 0; i < 7; i++)
        s_harness_row (&h, i);
    task = s_task (&h, "a");
    assert (task && task->attempt == 2);
    assert (s_equal_text (task->heartbeat_details, "{\"p\":2}"));
    json_t *timers = shf_workflow_describe (h.def, h.run);
    assert (s_equal_text (
        json_object_get (json_array_get (json_object_get (timers, "steps"), 0),
                         "heartbeat_details"),
        "{\"p\":2}"));
    json_decref (timers);
    s_harness_destroy (&h);

    //  describe lists open timers soonest first; closed_at once closed
    s_case_t cancel = s_case ("cancel");
    s_harness_init (&h, &cancel, false, verbose);
    s_harness_row (&h, 0);
    describe = shf_workflow_describe (h.def, h.run);
    assert (s_equal_text (json_object_get (describe, "timers"),
                          "[{\"step\":\"s\",\"kind\":\"sleep\",\"due_at\":"
                          "\"2026-11-22T16:01:00.123Z\"}]"));
    json_decref (describe);
    s_harness_row (&h, 1);
    describe = shf_workflow_describe (NULL, h.run);  //  stored order
    assert (json_array_size (json_object_get (describe, "timers")) == 0);
    assert (s_equal_text (json_object_get (describe, "closed_at"),
                          "\"2026-11-22T16:00:00.133Z\""));
    assert (json_array_size (json_object_get (describe, "steps")) == 3);
    json_decref (describe);
    s_harness_destroy (&h);
}

//  A stored run whose step records are in another order than the
//  definition's (written by hand, or by a version that ordered them
//  otherwise): the machine lines them up, its timers with them.
static void
s_test_stored_order (bool verbose)
{
    (void) verbose;
    const char *text = "{\"name\":\"ord\",\"version\":1,\"steps\":["
                       "{\"id\":\"a\",\"activity\":\"A\",\"timeouts\":"
                       "{\"start_to_close\":\"30s\"}},"
                       "{\"id\":\"b\",\"activity\":\"B\"}]}";
    shf_def_t *def;
    char err [200];
    assert (shf_def_compile (text, strlen (text), &def, err, sizeof err)
            == SHF_OK);
    shf_wf_output_t out;
    shf_wf_output_init (&out);
    shf_run_t *run = shf_run_new ();
    shf_wf_input_t in = {.kind = SHF_WF_START,
                         .now = T0,
                         .workflow_id = "wf-o",
                         .run_id = "run-o"};
    assert (shf_workflow_apply (def, run, &in, &out) == SHF_OK);
    shf_wf_output_reset (&out);
    in = (shf_wf_input_t){.kind = SHF_WF_ACTIVITY_STARTED,
                          .now = T0 + 1,
                          .step = "a",
                          .attempt = 1};
    assert (shf_workflow_apply (def, run, &in, &out) == SHF_OK);
    assert (run->n_timers == 1 && run->timers [0].step == 0);

    //  The same run with "b" stored before "a".
    json_t *state = shf_run_to_json (run);
    json_t *steps = json_object ();
    json_object_set (steps, "b",
                     json_object_get (json_object_get (state, "steps"), "b"));
    json_object_set (steps, "a",
                     json_object_get (json_object_get (state, "steps"), "a"));
    json_object_set_new (state, "steps", steps);
    shf_run_t *stored;
    assert (shf_run_from_json (state, &stored) == SHF_OK);
    assert (strcmp (stored->steps [0].id, "b") == 0);
    assert (stored->timers [0].step == 1);

    //  a completes: its timer is dropped and b dispatched, as in the run
    //  that was never stored.
    shf_wf_output_reset (&out);
    in = (shf_wf_input_t){.kind = SHF_WF_ACTIVITY_COMPLETED,
                          .now = T0 + 2,
                          .step = "a",
                          .attempt = 1};
    assert (shf_workflow_apply (def, stored, &in, &out) == SHF_OK);
    assert (strcmp (stored->steps [0].id, "a") == 0);
    assert (out.n_effects == 2);
    assert (out.effects [0].kind == SHF_EFFECT_TIMER_CANCEL
            && strcmp (out.effects [0].step, "a") == 0
            && out.effects [0].due == T0 + 1 + 30000);
    assert (out.effects [1].kind == SHF_EFFECT_TASK
            && strcmp (out.effects [1].step, "b") == 0);
    assert (stored->n_timers == 0);
    assert (stored->steps [0].status == SHF_STEP_COMPLETED
            && stored->steps [1].status == SHF_STEP_SCHEDULED);
    json_decref (state);
    shf_run_decref (stored);
    shf_run_decref (run);
    shf_wf_output_free (&out);
    shf_def_destroy (&def);
}

//  Inputs from outside that are malformed: rejected without change, or
//  (bad UTF-8, a missing error type) made safe.
static void
s_test_bad_inputs (bool verbose)
{
    static const s_row_t rows [] = {
        {"start", 0, NULL, 0, "{}", NULL, OK, NULL, "TASK(a#1)", NULL},
        {.op = NULL}};
    s_case_t test = s_case ("sequence");
    test.rows = rows;
    s_harness_t h;
    s_case_run (&h, &test, false, verbose);

    shf_wf_output_t out;
    shf_wf_output_init (&out);
    json_t *before = json_deep_copy (h.state);
    shf_wf_input_t in = {.kind = SHF_WF_SIGNAL, .now = T0 + 1};
    assert (shf_workflow_apply (h.def, h.run, &in, &out) == SHF_EINVAL);
    in.signal = "\xff";
    assert (shf_workflow_apply (h.def, h.run, &in, &out) == SHF_EINVAL);
    in = (shf_wf_input_t){.kind = SHF_WF_ACTIVITY_COMPLETED, .now = T0 + 1};
    assert (shf_workflow_apply (h.def, h.run, &in, &out) == SHF_EINVAL);
    in = (shf_wf_input_t){.kind = (shf_wf_input_kind_t) 99, .now = T0 + 1};
    assert (shf_workflow_apply (h.def, h.run, &in, &out) == SHF_EINVAL);
    s_snapshot (&h);
    assert (json_equal (before, h.state));
    assert (out.n_events == 0 && out.n_effects == 0);
    json_decref (before);

    //  a run of another definition, and a run that never started
    shf_run_t *empty = shf_run_new ();
    in = (shf_wf_input_t){.kind = SHF_WF_CANCEL, .now = T0 + 1};
    assert (shf_workflow_apply (h.def, empty, &in, &out) == SHF_EINVAL);
    assert (!empty->started);
    shf_run_decref (empty);
    shf_def_t *other;
    char err [200];
    const char *text = "{\"name\":\"other\",\"version\":1,\"steps\":["
                       "{\"id\":\"a\",\"activity\":\"A\"}]}";
    assert (shf_def_compile (text, strlen (text), &other, err, sizeof err)
            == SHF_OK);
    assert (shf_workflow_apply (other, h.run, &in, &out) == SHF_EINVAL);
    shf_def_destroy (&other);

    //  no error type, a message that is not UTF-8
    in = (shf_wf_input_t){.kind = SHF_WF_ACTIVITY_FAILED,
                          .now = T0 + 2,
                          .step = "a",
                          .attempt = 1,
                          .error_message = "\xff bad"};
    assert (shf_workflow_apply (h.def, h.run, &in, &out) == SHF_OK);
    s_snapshot (&h);
    assert (s_equal_text (s_step (&h, "a", "failure"),
                          "{\"type\":\"Error\",\"message\":\"? bad\"}"));
    char *dump = json_dumps (h.state, JSON_COMPACT);
    assert (dump);
    free (dump);
    shf_wf_output_free (&out);
    s_harness_destroy (&h);
}

void
shf_workflow_test (bool verbose)
{
    printf (" * shf_workflow: ");
    if (verbose)
        printf ("\n");
    size_t count = 0;
    for (const s_case_t *test = s_cases; test->name; test++) {
        //  Replay: plain, and with the state persisted between inputs;
        //  both must agree on the state and on every event.
        s_harness_t plain, reload;
        s_case_run (&plain, test, false, verbose);
        s_check_case (&plain);
        s_case_run (&reload, test, true, verbose);
        s_check_case (&reload);
        assert (json_equal (plain.state, reload.state));
        assert (json_equal (plain.history, reload.history));
        s_harness_t again;
        s_case_run (&again, test, false, false);
        assert (json_equal (plain.state, again.state));
        assert (json_equal (plain.history, again.history));
        s_harness_destroy (&again);
        s_harness_destroy (&plain);
        s_harness_destroy (&reload);
        count++;
    }
    s_test_by_hand (verbose);
    s_test_bad_inputs (verbose);
    s_test_stored_order (verbose);
    printf ("OK (%zu cases)\n", count);
}
