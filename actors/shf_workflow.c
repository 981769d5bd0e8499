/*  shf_workflow.c - the workflow state machine: (state, input) -> (events,
    effects).

    A run's whole mutable state is one JSON object, persisted as-is by the
    shard:

      {"ns", "workflow_id", "run_id", "name", "version", "status",
       "started_at", "closed_at" (null while open), "input", "output",
       "failure", "next_event_id", "next_timer_id",
       "steps": {ID: {"status", "attempt", ...}},
       "timers": [{"id", "due", "step" (null: the workflow), "kind",
                   "attempt"}],
       "signals": {NAME: [payloads not yet taken, oldest first]},
       "last_signal": {NAME: newest payload}}

    A step record always has "status" and "attempt"; the other fields are
    present once set (missing reads as null): "scheduled_at", "started_at",
    "closed_at", "output", "failure" (the last one), "input" (the rendered
    activity input, reused by every retry), "heartbeat_details",
    "last_heartbeat", "worker", "retry_due" (set while waiting for a retry
    timer), "seq" (the event id at which a wait_signal step began waiting:
    signals go to the longest waiter first).

    Invariants: a timer is in "timers" exactly while it is live, so a fired
    timer id that is not there is stale; every input is validated before
    anything is touched, so a rejected input changes nothing and appends
    nothing; JSON values shared between the state, the expression context
    and the output are never mutated after they are stored.

    Called by the shard thread for every input of a run, and by describe
    and result readers (read-only). Pure: time comes from input->now.
*/
#include "shf_workflow.h"
#include "../proto/shf_mpack.h"
#include "../proto/shf_msg.h"
#include "shf_retry.h"
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define S_PENDING   "pending"
#define S_SCHEDULED "scheduled"
#define S_STARTED   "started"
#define S_COMPLETED "completed"
#define S_FAILED    "failed"
#define S_SKIPPED   "skipped"
#define S_CANCELED  "canceled"

//  Timer kinds
#define T_WORKFLOW          "workflow"
#define T_SLEEP             "sleep"
#define T_WAIT_SIGNAL       "wait_signal"
#define T_RETRY             "retry"
#define T_SCHEDULE_TO_START "schedule_to_start"
#define T_START_TO_CLOSE    "start_to_close"
#define T_SCHEDULE_TO_CLOSE "schedule_to_close"
#define T_HEARTBEAT         "heartbeat"

//  Steps whose records s_rec keeps at hand (more are looked up each time).
#define S_REC_CACHE 32

//  One application of one input.
typedef struct {
    const shf_def_t *def;
    json_t *state;
    json_t *steps;   //  state.steps (borrowed)
    json_t *timers;  //  state.timers (borrowed)
    const shf_wf_input_t *in;
    shf_wf_output_t *out;
    int64_t now;
    json_t *ctx;  //  cached expression context, NULL when stale
    //  Step records by definition index, looked up once per application
    //  (a step's record object is made at start and never replaced).
    json_t *recs [S_REC_CACHE];
} s_run_t;


//  --------------------------------------------------------------------
//  Small JSON helpers

static int64_t
s_int (const json_t *obj, const char *key)
{
    const json_t *value = json_object_get (obj, key);
    return json_is_integer (value) ? (int64_t) json_integer_value (value) : 0;
}

static const char *
s_str (const json_t *obj, const char *key)
{
    const json_t *value = json_object_get (obj, key);
    return json_is_string (value) ? json_string_value (value) : NULL;
}

static bool
s_is (const json_t *obj, const char *key, const char *value)
{
    const char *text = s_str (obj, key);
    return text && strcmp (text, value) == 0;
}

//  Keys are literals, step ids of the compiled definition or a signal
//  name already made into a JSON string: all valid UTF-8, so the setter
//  that checks it again is not used.
static void
s_set (json_t *obj, const char *key, json_t *value)
{
    if (json_object_set_new_nocheck (obj, key, value ? value : json_null ())
        != 0)
        abort ();  //  out of memory
}

static void
s_set_int (json_t *obj, const char *key, int64_t value)
{
    s_set (obj, key, json_integer (value));
}

//  A JSON string of a constant or a name from the compiled definition:
//  both are valid UTF-8 already (definitions are checked when they are
//  decoded), so the check json_string makes is skipped; ~11 strings per
//  transition are made this way.
static json_t *
s_name (const char *name)
{
    json_t *value = json_string_nocheck (name);
    if (!value)
        abort ();
    return value;
}

//  A JSON string from outside text that may not be valid UTF-8: bytes that
//  break it are replaced so the state always serialises.
static json_t *
s_text (const char *text)
{
    if (!text)
        return json_null ();
    json_t *value = json_string (text);
    if (value)
        return value;
    char *copy = strdup (text);
    if (!copy)
        abort ();
    for (char *p = copy; *p; p++)
        if ((unsigned char) *p >= 0x80)
            *p = '?';
    value = json_string (copy);
    free (copy);
    return value ? value : json_string ("?");
}

static void
s_set_text (json_t *obj, const char *key, const char *text)
{
    s_set (obj, key, s_text (text));
}

static json_t *
s_ref (json_t *value)
{
    return value ? json_incref (value) : json_null ();
}

//  A new reference to the input's payload: shared, not copied, as no
//  value the run stores is ever changed (shf_wf_input_t.payload).
static json_t *
s_payload (const shf_wf_input_t *in)
{
    if (!in->payload)
        return json_null ();
    return json_incref ((json_t *) in->payload);
}

static int64_t
s_add (int64_t now, int64_t ms)
{
    if (ms > 0 && now > INT64_MAX - ms)
        return INT64_MAX;
    return now + ms;
}

static json_t *
s_failure (const char *type, const char *message)
{
    json_t *failure = json_object ();
    s_set_text (failure, "type", type);
    s_set_text (failure, "message", message ? message : "");
    return failure;
}

static shf_err_t s_reject (s_run_t *r, shf_err_t rc, const char *format, ...)
    __attribute__ ((format (printf, 3, 4)));

static shf_err_t
s_reject (s_run_t *r, shf_err_t rc, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    vsnprintf (r->out->message, sizeof r->out->message, format, args);
    va_end (args);
    return rc;
}


//  --------------------------------------------------------------------
//  Output: events and effects

void
shf_wf_output_init (shf_wf_output_t *self)
{
    assert (self);
    memset (self, 0, sizeof *self);
    shf_mpack_seq_init (&self->history);
}

void
shf_wf_output_reset (shf_wf_output_t *self)
{
    assert (self);
    shf_mpack_seq_clear (&self->history);
    self->n_events = 0;
    self->history_failed = false;
    for (size_t i = 0; i < self->n_effects; i++) {
        json_decref (self->effects [i].input);
        json_decref (self->effects [i].heartbeat_details);
    }
    self->n_effects = 0;
}

void
shf_wf_output_free (shf_wf_output_t *self)
{
    assert (self);
    shf_wf_output_reset (self);
    shf_mpack_seq_free (&self->history);
    free (self->events);
    free (self->effects);
    shf_wf_output_init (self);
}

json_t *
shf_wf_output_events (const shf_wf_output_t *self)
{
    assert (self);
    json_t *events = json_array ();
    if (!events)
        abort ();
    for (size_t i = 0; i < self->n_events && !self->history_failed; i++) {
        const shf_wf_event_t *e = &self->events [i];
        json_t *event;
        if (shf_mpack_decode (self->history.out.data + e->at, e->size, &event,
                              NULL, 0)
                != SHF_OK
            || json_array_append_new (events, event) != 0)
            abort ();  //  we wrote it: it decodes
    }
    return events;
}

//  A rendered value must travel in a task or a reply: within the payload
//  size limit and shallow enough to be stored inside a run state and
//  wrapped in a reply (codec limit 64; wrappers take up to ~5 levels).
#define S_MAX_VALUE_DEPTH 48
static bool
s_fits (const json_t *value)
{
    if (!value)
        return true;  //  no input: null
    size_t size;
    return shf_mpack_size (value, &size) == SHF_OK
           && size <= SHF_MSG_MAX_PAYLOAD
           && shf_mpack_depth (value) <= S_MAX_VALUE_DEPTH;
}

//  Closes the event being written, if one is.
static void
s_event_end (s_run_t *r)
{
    shf_wf_output_t *out = r->out;
    if (out->history.is_open
        && shf_mpack_seq_end (&out->history,
                              &out->events [out->n_events - 1].size)
               != SHF_OK)
        out->history_failed = true;
}

//  Starts the next event, numbered from the state's counter (closing the
//  one before): its attributes follow with s_ev_*, before any other event
//  is started. Returns its id.
static int64_t
s_event (s_run_t *r, const char *type)
{
    s_event_end (r);
    int64_t id = s_int (r->state, "next_event_id");
    s_set_int (r->state, "next_event_id", id + 1);
    shf_wf_output_t *out = r->out;
    if (out->n_events == out->cap_events) {
        size_t cap = out->cap_events ? out->cap_events * 2 : 8;
        shf_wf_event_t *events = realloc (out->events, cap * sizeof *events);
        if (!events)
            abort ();
        out->events = events;
        out->cap_events = cap;
    }
    shf_wf_event_t *event = &out->events [out->n_events++];
    event->id = id;
    event->size = 0;
    event->at = shf_mpack_seq_begin (&out->history);
    shf_mpack_seq_int (&out->history, "id", id);
    shf_mpack_seq_str (&out->history, "type", type);
    shf_mpack_seq_int (&out->history, "time", r->now);
    return id;
}

//  Attributes of the event being written. Strings given to s_ev_str are
//  valid UTF-8 already (constants, names from the definition); NULL
//  values are written as null.
static void
s_ev_str (s_run_t *r, const char *key, const char *value)
{
    if (value)
        shf_mpack_seq_str (&r->out->history, key, value);
    else
        shf_mpack_seq_json (&r->out->history, key, NULL);
}

static void
s_ev_int (s_run_t *r, const char *key, int64_t value)
{
    shf_mpack_seq_int (&r->out->history, key, value);
}

static void
s_ev_json (s_run_t *r, const char *key, const json_t *value)
{
    shf_mpack_seq_json (&r->out->history, key, value);
}

//  A value made for the event alone.
static void
s_ev_json_new (s_run_t *r, const char *key, json_t *value)
{
    s_ev_json (r, key, value);
    json_decref (value);
}

static int64_t
s_step_event (s_run_t *r, const char *type, size_t idx)
{
    int64_t id = s_event (r, type);
    s_ev_str (r, "step", shf_def_step_id (r->def, idx));
    return id;
}

static shf_effect_t *
s_effect (s_run_t *r, shf_effect_kind_t kind)
{
    shf_wf_output_t *out = r->out;
    if (out->n_effects == out->cap) {
        size_t cap = out->cap ? out->cap * 2 : 8;
        shf_effect_t *effects = realloc (out->effects, cap * sizeof *effects);
        if (!effects)
            abort ();
        out->effects = effects;
        out->cap = cap;
    }
    shf_effect_t *effect = &out->effects [out->n_effects++];
    memset (effect, 0, sizeof *effect);
    effect->kind = kind;
    return effect;
}


//  --------------------------------------------------------------------
//  Steps, timers and the expression context

static json_t *
s_rec (s_run_t *r, size_t idx)
{
    if (idx >= S_REC_CACHE)
        return json_object_get (r->steps, shf_def_step_id (r->def, idx));
    if (!r->recs [idx])
        r->recs [idx] =
            json_object_get (r->steps, shf_def_step_id (r->def, idx));
    return r->recs [idx];
}

static bool
s_rec_is (s_run_t *r, size_t idx, const char *status)
{
    return s_is (s_rec (r, idx), "status", status);
}

static void
s_dirty (s_run_t *r)
{
    json_decref (r->ctx);
    r->ctx = NULL;
}

static void
s_set_status (s_run_t *r, json_t *rec, const char *status)
{
    s_set (rec, "status", s_name (status));
    s_dirty (r);
}

static bool
s_is_open (const json_t *state)
{
    return s_is (state, "status", "running");
}

//  The context of SPEC.md expressions. Containers of the state that are
//  mutated later are copied, so a template that returns one (for example
//  "${signals}") cannot alias live state.
static json_t *
s_context (s_run_t *r)
{
    if (r->ctx)
        return r->ctx;
    json_t *ctx = json_object ();
    s_set (ctx, "input", s_ref (json_object_get (r->state, "input")));
    json_t *steps = json_object ();
    size_t count = shf_def_step_count (r->def);
    for (size_t i = 0; i < count; i++) {
        json_t *rec = s_rec (r, i);
        json_t *entry = json_object ();
        s_set (entry, "output", s_ref (json_object_get (rec, "output")));
        s_set (entry, "status", s_ref (json_object_get (rec, "status")));
        s_set (entry, "attempt", s_ref (json_object_get (rec, "attempt")));
        s_set (steps, shf_def_step_id (r->def, i), entry);
    }
    s_set (ctx, "steps", steps);
    json_t *signals = json_copy (json_object_get (r->state, "last_signal"));
    s_set (ctx, "signals", signals ? signals : json_object ());
    json_t *workflow = json_object ();
    s_set (workflow, "id", s_ref (json_object_get (r->state, "workflow_id")));
    s_set (workflow, "run_id", s_ref (json_object_get (r->state, "run_id")));
    s_set (ctx, "workflow", workflow);
    r->ctx = ctx;
    return ctx;
}

//  A step id named in the state, as the def's borrowed string.
static const char *
s_def_step_name (s_run_t *r, const char *id, int *idx_p)
{
    int idx = id ? shf_def_step_index (r->def, id) : -1;
    if (idx_p)
        *idx_p = idx;
    return idx >= 0 ? shf_def_step_id (r->def, (size_t) idx) : NULL;
}

static uint64_t
s_timer_add (s_run_t *r, int idx, const char *kind, int64_t due)
{
    uint64_t id = (uint64_t) s_int (r->state, "next_timer_id");
    s_set_int (r->state, "next_timer_id", (int64_t) id + 1);
    uint32_t attempt =
        idx >= 0 ? (uint32_t) s_int (s_rec (r, (size_t) idx), "attempt") : 0;
    json_t *timer = json_object ();
    s_set_int (timer, "id", (int64_t) id);
    s_set_int (timer, "due", due);
    s_set (timer, "step",
           idx >= 0 ? s_name (shf_def_step_id (r->def, (size_t) idx))
                    : json_null ());
    s_set (timer, "kind", s_name (kind));
    s_set_int (timer, "attempt", attempt);
    if (json_array_append_new (r->timers, timer) != 0)
        abort ();
    shf_effect_t *effect = s_effect (r, SHF_EFFECT_TIMER);
    effect->step = idx >= 0 ? shf_def_step_id (r->def, (size_t) idx) : NULL;
    effect->attempt = attempt;
    effect->timer_id = id;
    effect->due = due;
    return id;
}

//  Drops the live timer at position pos and tells the shard.
static void
s_timer_cancel_at (s_run_t *r, size_t pos)
{
    json_t *timer = json_array_get (r->timers, pos);
    shf_effect_t *effect = s_effect (r, SHF_EFFECT_TIMER_CANCEL);
    effect->step = s_def_step_name (r, s_str (timer, "step"), NULL);
    effect->attempt = (uint32_t) s_int (timer, "attempt");
    effect->timer_id = (uint64_t) s_int (timer, "id");
    effect->due = s_int (timer, "due");
    json_array_remove (r->timers, pos);
}

//  Drops the step's timers: all of them, or those of one kind, or all but
//  one kind (except != NULL).
static void
s_timers_drop (s_run_t *r, size_t idx, const char *only, const char *except)
{
    const char *id = shf_def_step_id (r->def, idx);
    size_t pos = 0;
    while (pos < json_array_size (r->timers)) {
        json_t *timer = json_array_get (r->timers, pos);
        bool match = s_is (timer, "step", id)
                     && (!only || s_is (timer, "kind", only))
                     && (!except || !s_is (timer, "kind", except));
        if (match)
            s_timer_cancel_at (r, pos);
        else
            pos++;
    }
}

static bool
s_timer_find (s_run_t *r, uint64_t id, size_t *pos_p)
{
    for (size_t pos = 0; pos < json_array_size (r->timers); pos++)
        if ((uint64_t) s_int (json_array_get (r->timers, pos), "id") == id) {
            *pos_p = pos;
            return true;
        }
    return false;
}

//  An activity attempt is open (a task exists) while the step is scheduled
//  or started and not waiting for a retry timer.
static bool
s_task_open (s_run_t *r, size_t idx)
{
    json_t *rec = s_rec (r, idx);
    return shf_def_step_kind (r->def, idx) == SHF_STEP_ACTIVITY
           && (s_is (rec, "status", S_SCHEDULED)
               || s_is (rec, "status", S_STARTED))
           && !json_object_get (rec, "retry_due");
}

static void
s_task_cancel (s_run_t *r, size_t idx)
{
    shf_effect_t *effect = s_effect (r, SHF_EFFECT_TASK_CANCEL);
    effect->step = shf_def_step_id (r->def, idx);
    effect->attempt = (uint32_t) s_int (s_rec (r, idx), "attempt");
}

//  Completed, skipped, or failed but optional: dependents may go on.
static bool
s_step_done (s_run_t *r, size_t idx)
{
    const char *status = s_str (s_rec (r, idx), "status");
    return status
           && (strcmp (status, S_COMPLETED) == 0
               || strcmp (status, S_SKIPPED) == 0
               || (strcmp (status, S_FAILED) == 0
                   && shf_def_step_optional (r->def, idx)));
}

static bool
s_step_ready (s_run_t *r, size_t idx)
{
    if (!s_rec_is (r, idx, S_PENDING))
        return false;
    size_t deps = shf_def_step_after_count (r->def, idx);
    for (size_t i = 0; i < deps; i++)
        if (!s_step_done (r, shf_def_step_after (r->def, idx, i)))
            return false;
    return true;
}


//  --------------------------------------------------------------------
//  Closing the run

//  Closes the run: unfinished steps become canceled (open ones get a
//  StepCanceled event and their tasks are dropped), every timer is dropped,
//  then the closing event (type, with attrs, owned) and the CLOSED effect.
static void
s_close (s_run_t *r, const char *status, json_t *failure, const char *type,
         json_t *attrs)
{
    size_t count = shf_def_step_count (r->def);
    for (size_t i = 0; i < count; i++) {
        json_t *rec = s_rec (r, i);
        bool pending = s_is (rec, "status", S_PENDING);
        bool open = s_is (rec, "status", S_SCHEDULED)
                    || s_is (rec, "status", S_STARTED);
        if (!pending && !open)
            continue;
        if (s_task_open (r, i))
            s_task_cancel (r, i);
        if (open) {
            s_step_event (r, "StepCanceled", i);
            s_ev_json (r, "attempt", json_object_get (rec, "attempt"));
        }
        json_object_del (rec, "retry_due");
        s_set_status (r, rec, S_CANCELED);
        s_set_int (rec, "closed_at", r->now);
    }
    while (json_array_size (r->timers) > 0)
        s_timer_cancel_at (r, 0);
    s_event (r, type);
    if (attrs) {
        const char *key;
        json_t *value;
        json_object_foreach (attrs, key, value)
        {
            s_ev_json (r, key, value);
        }
        json_decref (attrs);
    }
    s_set (r->state, "status", s_name (status));
    s_set_int (r->state, "closed_at", r->now);
    s_set (r->state, "failure", failure);
    s_effect (r, SHF_EFFECT_CLOSED);
    s_dirty (r);
}

static void
s_fail_workflow (s_run_t *r, const char *type, const char *message, int idx)
{
    json_t *failure = s_failure (type, message);
    s_set (failure, "step",
           idx >= 0 ? s_name (shf_def_step_id (r->def, (size_t) idx))
                    : json_null ());
    json_t *attrs = json_object ();
    s_set (attrs, "failure", json_incref (failure));
    s_close (r, "failed", failure, "WorkflowFailed", attrs);
}


//  --------------------------------------------------------------------
//  Step transitions

static void
s_step_complete (s_run_t *r, size_t idx, json_t *output)
{
    json_t *rec = s_rec (r, idx);
    json_object_del (rec, "retry_due");
    s_set (rec, "output", output);
    s_set_int (rec, "closed_at", r->now);
    s_set_status (r, rec, S_COMPLETED);
    s_timers_drop (r, idx, NULL, NULL);
}

//  The step gives up; cancel_task: its attempt still has a task to drop.
//  A non-optional failure fails the run at once.
static void
s_step_fail (s_run_t *r, size_t idx, const char *type, const char *message,
             bool cancel_task)
{
    json_t *rec = s_rec (r, idx);
    if (cancel_task && s_task_open (r, idx))
        s_task_cancel (r, idx);
    json_object_del (rec, "retry_due");
    s_set (rec, "failure", s_failure (type, message));
    s_set_int (rec, "closed_at", r->now);
    s_set_status (r, rec, S_FAILED);
    s_timers_drop (r, idx, NULL, NULL);
    if (!shf_def_step_optional (r->def, idx))
        s_fail_workflow (r, type, message, (int) idx);
}

//  Dispatches attempt `attempt` of an activity step: a TASK effect and its
//  deadlines. The input was rendered once, when the step was reached.
static void
s_dispatch (s_run_t *r, size_t idx, uint32_t attempt)
{
    json_t *rec = s_rec (r, idx);
    s_set_int (rec, "attempt", attempt);
    s_set_int (rec, "scheduled_at", r->now);
    json_object_del (rec, "started_at");
    json_object_del (rec, "worker");
    json_object_del (rec, "retry_due");
    json_object_del (rec, "last_heartbeat");
    s_set_status (r, rec, S_SCHEDULED);

    json_t *input = json_object_get (rec, "input");
    s_step_event (r, "StepScheduled", idx);
    s_ev_int (r, "attempt", attempt);
    s_ev_str (r, "activity", shf_def_step_activity (r->def, idx));
    s_ev_str (r, "queue", shf_def_step_queue (r->def, idx));
    if (attempt == 1)
        s_ev_json (r, "input", input);

    shf_effect_t *task = s_effect (r, SHF_EFFECT_TASK);
    task->step = shf_def_step_id (r->def, idx);
    task->attempt = attempt;
    task->activity = shf_def_step_activity (r->def, idx);
    task->queue = shf_def_step_queue (r->def, idx);
    task->input = s_ref (input);
    json_t *details = json_object_get (rec, "heartbeat_details");
    task->heartbeat_details = details ? json_incref (details) : NULL;
    task->start_to_close = shf_def_step_start_to_close (r->def, idx);
    task->heartbeat_timeout = shf_def_step_heartbeat (r->def, idx);

    int64_t to_close = shf_def_step_schedule_to_close (r->def, idx);
    if (attempt == 1 && to_close > 0)
        s_timer_add (r, (int) idx, T_SCHEDULE_TO_CLOSE,
                     s_add (r->now, to_close));
    int64_t to_start = shf_def_step_schedule_to_start (r->def, idx);
    if (to_start > 0)
        s_timer_add (r, (int) idx, T_SCHEDULE_TO_START,
                     s_add (r->now, to_start));
}

//  The open attempt is running. arm: start its start_to_close and heartbeat
//  deadlines (not needed when a completion implies the start).
static void
s_activity_started (s_run_t *r, size_t idx, const char *worker, bool arm)
{
    json_t *rec = s_rec (r, idx);
    s_set_int (rec, "started_at", r->now);
    if (worker)
        s_set_text (rec, "worker", worker);
    s_set_status (r, rec, S_STARTED);
    s_step_event (r, "ActivityStarted", idx);
    s_ev_json (r, "attempt", json_object_get (rec, "attempt"));
    //  the record's copy: made valid UTF-8 by s_set_text
    s_ev_json (r, "worker", worker ? json_object_get (rec, "worker") : NULL);
    s_timers_drop (r, idx, T_SCHEDULE_TO_START, NULL);
    if (!arm)
        return;
    int64_t to_close = shf_def_step_start_to_close (r->def, idx);
    if (to_close > 0)
        s_timer_add (r, (int) idx, T_START_TO_CLOSE, s_add (r->now, to_close));
    int64_t heartbeat = shf_def_step_heartbeat (r->def, idx);
    if (heartbeat > 0)
        s_timer_add (r, (int) idx, T_HEARTBEAT, s_add (r->now, heartbeat));
}

//  The open attempt failed (rec.failure is set): retry after the backoff,
//  or give up.
static void
s_attempt_failed (s_run_t *r, size_t idx, const char *type, const char *message)
{
    json_t *rec = s_rec (r, idx);
    const shf_retry_t *policy = shf_def_step_retry (r->def, idx);
    uint32_t attempt =
        (uint32_t) (s_int (rec, "attempt") - s_int (rec, "handbacks"));
    if (shf_retry_non_retryable (policy, type)
        || shf_retry_exhausted (policy, attempt)) {
        s_step_fail (r, idx, type, message, false);
        return;
    }
    s_timers_drop (r, idx, NULL, T_SCHEDULE_TO_CLOSE);
    int64_t due = s_add (r->now, shf_retry_backoff (policy, attempt));
    s_set_status (r, rec, S_SCHEDULED);
    s_set_int (rec, "retry_due", due);
    s_timer_add (r, (int) idx, T_RETRY, due);
}

//  An activity deadline passed: the attempt is over and its task dropped.
static void
s_activity_timed_out (s_run_t *r, size_t idx, const char *kind)
{
    json_t *rec = s_rec (r, idx);
    s_step_event (r, "ActivityTimedOut", idx);
    s_ev_json (r, "attempt", json_object_get (rec, "attempt"));
    s_ev_json_new (r, "failure", s_failure ("Timeout", kind));
    if (strcmp (kind, T_SCHEDULE_TO_CLOSE) == 0) {
        s_step_fail (r, idx, "Timeout", kind, true);  //  caps every retry
        return;
    }
    s_task_cancel (r, idx);
    s_set (rec, "failure", s_failure ("Timeout", kind));
    s_attempt_failed (r, idx, "Timeout", kind);
}

//  Takes the oldest buffered signal of that name, or NULL.
static json_t *
s_signal_take (s_run_t *r, const char *name)
{
    json_t *signals = json_object_get (r->state, "signals");
    json_t *queue = json_object_get (signals, name);
    if (json_array_size (queue) == 0)
        return NULL;
    json_t *payload = json_incref (json_array_get (queue, 0));
    json_array_remove (queue, 0);
    if (json_array_size (queue) == 0)
        json_object_del (signals, name);
    return payload;
}

//  The step's dependencies are done: evaluate `when`, then start it.
static void
s_step_reach (s_run_t *r, size_t idx)
{
    json_t *rec = s_rec (r, idx);
    char err [200];
    const shf_expr_t *when = shf_def_step_when (r->def, idx);
    if (when) {
        json_t *value = NULL;
        if (shf_expr_eval (when, s_context (r), &value, err, sizeof err)
            != SHF_OK) {
            char message [256];
            snprintf (message, sizeof message, "when: %s", err);
            s_step_fail (r, idx, "ExpressionError", message, false);
            return;
        }
        bool go = shf_expr_truthy (value);
        json_decref (value);
        if (!go) {
            s_set_int (rec, "closed_at", r->now);
            s_set_status (r, rec, S_SKIPPED);
            s_step_event (r, "StepSkipped", idx);
            return;
        }
    }
    switch (shf_def_step_kind (r->def, idx)) {
        case SHF_STEP_ACTIVITY: {
            const shf_template_t *tpl = shf_def_step_input (r->def, idx);
            json_t *input = NULL;
            if (tpl
                && shf_template_render (tpl, s_context (r), &input, err,
                                        sizeof err)
                       != SHF_OK) {
                char message [256];
                snprintf (message, sizeof message, "input: %s", err);
                s_step_fail (r, idx, "ExpressionError", message, false);
                return;
            }
            if (!s_fits (input)) {
                json_decref (input);
                s_step_fail (r, idx, "TooLarge",
                             "input: the rendered input is over the payload "
                             "limit",
                             false);
                return;
            }
            s_set (rec, "input", input);
            s_dispatch (r, idx, 1);
            break;
        }
        case SHF_STEP_SLEEP: {
            s_set_int (rec, "attempt", 1);
            s_set_int (rec, "scheduled_at", r->now);
            s_set_int (rec, "started_at", r->now);
            s_set_status (r, rec, S_STARTED);
            int64_t due = s_add (r->now, shf_def_step_sleep (r->def, idx));
            s_step_event (r, "TimerStarted", idx);
            uint64_t id = s_timer_add (r, (int) idx, T_SLEEP, due);
            s_ev_int (r, "timer_id", (int64_t) id);
            s_ev_int (r, "due", due);
            break;
        }
        case SHF_STEP_WAIT_SIGNAL: {
            const char *name = shf_def_step_signal (r->def, idx);
            s_set_int (rec, "attempt", 1);
            s_set_int (rec, "scheduled_at", r->now);
            s_set_int (rec, "started_at", r->now);
            s_set_status (r, rec, S_STARTED);
            int64_t seq = s_step_event (r, "StepScheduled", idx);
            s_ev_int (r, "attempt", 1);
            s_ev_str (r, "signal", name);
            s_set_int (rec, "seq", seq);
            json_t *payload = s_signal_take (r, name);
            if (payload) {
                s_ev_json (r, "signal_taken", json_true ());
                s_step_complete (r, idx, payload);
                break;
            }
            int64_t timeout = shf_def_step_timeout (r->def, idx);
            if (timeout > 0)
                s_timer_add (r, (int) idx, T_WAIT_SIGNAL,
                             s_add (r->now, timeout));
            break;
        }
    }
}

//  Moves the run forward after any change: reach every step whose
//  dependencies are done (repeatedly: a skip or an instant signal may free
//  more), then complete the run once every step is done.
static void
s_advance (s_run_t *r)
{
    size_t count = shf_def_step_count (r->def);
    if (!s_is_open (r->state))
        return;
    //  Only reaching a step can close the run, so that is when to look.
    bool progress = true;
    while (progress) {
        progress = false;
        for (size_t i = 0; i < count; i++)
            if (s_step_ready (r, i)) {
                s_step_reach (r, i);
                progress = true;
                if (!s_is_open (r->state))
                    return;
            }
    }
    for (size_t i = 0; i < count; i++)
        if (!s_step_done (r, i))
            return;
    json_t *output = NULL;
    const shf_template_t *tpl = shf_def_output (r->def);
    if (tpl) {
        char err [200];
        if (shf_template_render (tpl, s_context (r), &output, err, sizeof err)
            != SHF_OK) {
            char message [256];
            snprintf (message, sizeof message, "output: %s", err);
            s_fail_workflow (r, "ExpressionError", message, -1);
            return;
        }
        if (!s_fits (output)) {
            json_decref (output);
            s_fail_workflow (r, "TooLarge",
                             "output: the rendered output is over the payload "
                             "limit",
                             -1);
            return;
        }
    }
    else if (count > 0)
        output = s_ref (json_object_get (s_rec (r, count - 1), "output"));
    else
        output = json_null ();
    json_t *attrs = json_object ();
    s_set (attrs, "output", json_incref (output));
    s_set (r->state, "output", output);
    s_close (r, "completed", NULL, "WorkflowCompleted", attrs);
}


//  --------------------------------------------------------------------
//  Inputs

static shf_err_t
s_on_start (s_run_t *r)
{
    const shf_wf_input_t *in = r->in;
    if (json_object_size (r->state) != 0)
        return s_reject (r, SHF_EINVAL, "start needs an empty state");
    if (!in->workflow_id || !*in->workflow_id || !in->run_id || !*in->run_id)
        return s_reject (r, SHF_EINVAL, "start needs a workflow_id and run_id");
    json_t *wf_id = json_string (in->workflow_id);
    json_t *run_id = json_string (in->run_id);
    json_t *ns = json_string (in->namespace_ ? in->namespace_ : "default");
    if (!wf_id || !run_id || !ns) {
        json_decref (wf_id);
        json_decref (run_id);
        json_decref (ns);
        return s_reject (r, SHF_EINVAL, "ids must be UTF-8");
    }
    json_t *state = r->state;
    s_set (state, "ns", ns);
    s_set (state, "workflow_id", wf_id);
    s_set (state, "run_id", run_id);
    s_set (state, "name", s_name (shf_def_name (r->def)));
    s_set_int (state, "version", shf_def_version (r->def));
    s_set (state, "status", s_name ("running"));
    s_set_int (state, "started_at", r->now);
    s_set (state, "closed_at", json_null ());
    s_set (state, "input", s_payload (in));
    s_set (state, "output", json_null ());
    s_set (state, "failure", json_null ());
    s_set_int (state, "next_event_id", 1);
    s_set_int (state, "next_timer_id", 1);
    json_t *steps = json_object ();
    size_t count = shf_def_step_count (r->def);
    for (size_t i = 0; i < count; i++) {
        json_t *rec = json_object ();
        s_set (rec, "status", s_name (S_PENDING));
        s_set_int (rec, "attempt", 0);
        s_set (steps, shf_def_step_id (r->def, i), rec);
    }
    s_set (state, "steps", steps);
    s_set (state, "timers", json_array ());
    s_set (state, "signals", json_object ());
    s_set (state, "last_signal", json_object ());
    r->steps = steps;
    r->timers = json_object_get (state, "timers");

    s_event (r, "WorkflowStarted");
    s_ev_json (r, "workflow_id", wf_id);
    s_ev_json (r, "run_id", run_id);
    s_ev_json (r, "namespace", ns);
    s_ev_str (r, "name", shf_def_name (r->def));
    s_ev_int (r, "version", shf_def_version (r->def));
    s_ev_json (r, "input", json_object_get (state, "input"));
    int64_t timeout = shf_def_timeout (r->def);
    if (timeout > 0)
        s_timer_add (r, -1, T_WORKFLOW, s_add (r->now, timeout));
    s_advance (r);
    return SHF_OK;
}

//  Checks that (step, attempt) names the open attempt of an activity.
static shf_err_t
s_open_attempt (s_run_t *r, size_t *idx_p)
{
    const shf_wf_input_t *in = r->in;
    if (!in->step)
        return s_reject (r, SHF_EINVAL, "no step given");
    int idx = shf_def_step_index (r->def, in->step);
    if (idx < 0)
        return s_reject (r, SHF_ENOTFOUND, "no step \"%.100s\"", in->step);
    if (shf_def_step_kind (r->def, (size_t) idx) != SHF_STEP_ACTIVITY)
        return s_reject (r, SHF_EINVAL, "step \"%.100s\" is not an activity",
                         in->step);
    json_t *rec = s_rec (r, (size_t) idx);
    if (!s_task_open (r, (size_t) idx)
        || s_int (rec, "attempt") != (int64_t) in->attempt)
        return s_reject (r, SHF_ENOTFOUND,
                         "step \"%.100s\" attempt %u is not open (%s, "
                         "attempt %lld)",
                         in->step, in->attempt, s_str (rec, "status"),
                         (long long) s_int (rec, "attempt"));
    *idx_p = (size_t) idx;
    return SHF_OK;
}

static shf_err_t
s_on_activity_started (s_run_t *r)
{
    size_t idx;
    shf_err_t rc = s_open_attempt (r, &idx);
    if (rc != SHF_OK)
        return rc;
    if (!s_rec_is (r, idx, S_SCHEDULED))
        return s_reject (r, SHF_ENOTFOUND, "attempt %u already started",
                         r->in->attempt);
    s_activity_started (r, idx, r->in->worker, true);
    return SHF_OK;
}

static shf_err_t
s_on_activity_completed (s_run_t *r)
{
    size_t idx;
    shf_err_t rc = s_open_attempt (r, &idx);
    if (rc != SHF_OK)
        return rc;
    if (s_rec_is (r, idx, S_SCHEDULED))
        s_activity_started (r, idx, r->in->worker, false);
    json_t *output = s_payload (r->in);
    s_step_event (r, "ActivityCompleted", idx);
    s_ev_int (r, "attempt", r->in->attempt);
    s_ev_json (r, "output", output);
    s_step_complete (r, idx, output);
    s_advance (r);
    return SHF_OK;
}

static shf_err_t
s_on_activity_failed (s_run_t *r)
{
    size_t idx;
    shf_err_t rc = s_open_attempt (r, &idx);
    if (rc != SHF_OK)
        return rc;
    if (s_rec_is (r, idx, S_SCHEDULED))
        s_activity_started (r, idx, r->in->worker, false);
    const char *type = r->in->error_type ? r->in->error_type : "Error";
    json_t *failure = s_failure (type, r->in->error_message);
    s_step_event (r, "ActivityFailed", idx);
    s_ev_int (r, "attempt", r->in->attempt);
    s_ev_json (r, "failure", failure);
    json_t *rec = s_rec (r, idx);
    s_set (rec, "failure", json_incref (failure));
    //  the strings now live in the state: use those (sanitised) copies,
    //  kept alive here while a failed step's record gets a new failure
    s_attempt_failed (r, idx, s_str (failure, "type"),
                      s_str (failure, "message"));
    json_decref (failure);
    s_advance (r);
    return SHF_OK;
}

static shf_err_t
s_on_heartbeat (s_run_t *r)
{
    size_t idx;
    shf_err_t rc = s_open_attempt (r, &idx);
    if (rc != SHF_OK)
        return rc;
    if (s_rec_is (r, idx, S_SCHEDULED))
        s_activity_started (r, idx, r->in->worker, true);
    json_t *rec = s_rec (r, idx);
    s_set (rec, "heartbeat_details", s_payload (r->in));
    s_set_int (rec, "last_heartbeat", r->now);
    return SHF_OK;
}

//  The worker stopped before finishing: the attempt ends without a
//  verdict and the next one is dispatched at once. Hand-backs are counted
//  apart so they never use up max_attempts or lengthen the backoff.
static shf_err_t
s_on_activity_handed_back (s_run_t *r)
{
    size_t idx;
    shf_err_t rc = s_open_attempt (r, &idx);
    if (rc != SHF_OK)
        return rc;
    json_t *rec = s_rec (r, idx);
    s_timers_drop (r, idx, T_START_TO_CLOSE, NULL);
    s_timers_drop (r, idx, T_HEARTBEAT, NULL);
    s_timers_drop (r, idx, T_SCHEDULE_TO_START, NULL);
    s_set_int (rec, "handbacks", s_int (rec, "handbacks") + 1);
    s_task_cancel (r, idx);
    s_dispatch (r, idx, (uint32_t) s_int (rec, "attempt") + 1);
    return SHF_OK;
}

static shf_err_t
s_on_timer_fired (s_run_t *r)
{
    size_t pos;
    if (!s_timer_find (r, r->in->timer_id, &pos))
        return s_reject (r, SHF_ENOTFOUND, "no live timer %llu",
                         (unsigned long long) r->in->timer_id);
    json_t *timer = json_incref (json_array_get (r->timers, pos));
    const char *kind = s_str (timer, "kind");
    int idx = -1;
    s_def_step_name (r, s_str (timer, "step"), &idx);
    bool known = kind
                 && (strcmp (kind, T_WORKFLOW) == 0
                     || (idx >= 0
                         && (strcmp (kind, T_SLEEP) == 0
                             || strcmp (kind, T_WAIT_SIGNAL) == 0
                             || strcmp (kind, T_RETRY) == 0
                             || strcmp (kind, T_SCHEDULE_TO_START) == 0
                             || strcmp (kind, T_START_TO_CLOSE) == 0
                             || strcmp (kind, T_SCHEDULE_TO_CLOSE) == 0
                             || strcmp (kind, T_HEARTBEAT) == 0)));
    if (!known) {
        json_decref (timer);
        return s_reject (r, SHF_EINTERNAL, "timer %llu is malformed",
                         (unsigned long long) r->in->timer_id);
    }
    json_array_remove (r->timers, pos);  //  fired: no TIMER_CANCEL
    size_t step = (size_t) idx;
    json_t *rec = idx >= 0 ? s_rec (r, step) : NULL;

    if (strcmp (kind, T_WORKFLOW) == 0) {
        json_t *failure = s_failure ("Timeout", "workflow");
        s_set (failure, "step", json_null ());
        json_t *attrs = json_object ();
        s_set (attrs, "failure", json_incref (failure));
        s_close (r, "timed_out", failure, "WorkflowTimedOut", attrs);
    }
    else if (strcmp (kind, T_SLEEP) == 0) {
        s_step_event (r, "TimerFired", step);
        s_ev_int (r, "timer_id", (int64_t) r->in->timer_id);
        s_step_complete (r, step, json_null ());
    }
    else if (strcmp (kind, T_WAIT_SIGNAL) == 0) {
        s_step_event (r, "TimerFired", step);
        s_ev_int (r, "timer_id", (int64_t) r->in->timer_id);
        s_ev_str (r, "kind", kind);
        s_step_fail (r, step, "Timeout", "wait_signal", false);
    }
    else if (strcmp (kind, T_RETRY) == 0)
        s_dispatch (r, step, (uint32_t) s_int (rec, "attempt") + 1);
    else if (strcmp (kind, T_HEARTBEAT) == 0) {
        //  Heartbeats only move a deadline in the state; the timer is
        //  re-armed lazily here, so a heartbeat costs no timer write.
        int64_t last = s_int (rec, "started_at");
        if (s_int (rec, "last_heartbeat") > last)
            last = s_int (rec, "last_heartbeat");
        int64_t deadline = s_add (last, shf_def_step_heartbeat (r->def, step));
        if (r->now < deadline)
            s_timer_add (r, idx, T_HEARTBEAT, deadline);
        else
            s_activity_timed_out (r, step, kind);
    }
    else
        s_activity_timed_out (r, step, kind);
    json_decref (timer);
    s_advance (r);
    return SHF_OK;
}

static shf_err_t
s_on_signal (s_run_t *r)
{
    const char *name = r->in->signal;
    if (!name || !*name)
        return s_reject (r, SHF_EINVAL, "no signal name given");
    json_t *name_json = json_string (name);
    if (!name_json)
        return s_reject (r, SHF_EINVAL, "signal name must be UTF-8");
    json_t *payload = s_payload (r->in);
    s_event (r, "SignalReceived");
    s_ev_json_new (r, "signal", name_json);
    s_ev_json (r, "input", payload);
    s_set (json_object_get (r->state, "last_signal"), name,
           json_incref (payload));
    s_dirty (r);

    //  The longest-waiting wait_signal step of that name takes it.
    int waiter = -1;
    int64_t waiter_seq = 0;
    size_t count = shf_def_step_count (r->def);
    for (size_t i = 0; i < count; i++) {
        if (shf_def_step_kind (r->def, i) != SHF_STEP_WAIT_SIGNAL
            || strcmp (shf_def_step_signal (r->def, i), name) != 0
            || !s_rec_is (r, i, S_STARTED))
            continue;
        int64_t seq = s_int (s_rec (r, i), "seq");
        if (waiter < 0 || seq < waiter_seq) {
            waiter = (int) i;
            waiter_seq = seq;
        }
    }
    if (waiter >= 0) {
        s_ev_str (r, "step", shf_def_step_id (r->def, (size_t) waiter));
        s_step_complete (r, (size_t) waiter, payload);
        s_advance (r);
        return SHF_OK;
    }
    json_t *signals = json_object_get (r->state, "signals");
    json_t *queue = json_object_get (signals, name);
    if (!queue) {
        queue = json_array ();
        s_set (signals, name, queue);
    }
    if (json_array_append_new (queue, payload) != 0)
        abort ();
    return SHF_OK;
}

static shf_err_t
s_on_cancel (s_run_t *r, bool terminate)
{
    const char *reason = r->in->reason;
    json_t *failure =
        terminate ? s_failure ("Terminated", reason ? reason : "terminated")
                  : s_failure ("Canceled", reason ? reason : "canceled");
    s_set (failure, "step", json_null ());
    if (!terminate) {
        s_event (r, "CancelRequested");
        s_ev_json_new (r, "reason", s_text (reason));
    }
    json_t *attrs = json_object ();
    s_set_text (attrs, "reason", reason);
    s_close (r, terminate ? "terminated" : "canceled", failure,
             terminate ? "WorkflowTerminated" : "WorkflowCanceled", attrs);
    return SHF_OK;
}

//  The state must be a started run of this definition.
static shf_err_t
s_check_state (s_run_t *r)
{
    json_t *state = r->state;
    if (!s_str (state, "status") || !json_is_object (r->steps)
        || !json_is_array (r->timers)
        || !json_is_object (json_object_get (state, "signals"))
        || !json_is_object (json_object_get (state, "last_signal")))
        return s_reject (r, SHF_EINVAL, "the run has not started");
    if (!s_is (state, "name", shf_def_name (r->def))
        || (shf_def_version (r->def) && s_int (state, "version")
            && shf_def_version (r->def) != s_int (state, "version")))
        return s_reject (r, SHF_EINVAL, "the run is pinned to %s@%lld",
                         s_str (state, "name") ? s_str (state, "name") : "?",
                         (long long) s_int (state, "version"));
    size_t count = shf_def_step_count (r->def);
    for (size_t i = 0; i < count; i++)
        if (!json_is_object (s_rec (r, i)))
            return s_reject (r, SHF_EINVAL, "the run has no step \"%s\"",
                             shf_def_step_id (r->def, i));
    return SHF_OK;
}

shf_err_t
shf_workflow_apply (const shf_def_t *def, json_t *state,
                    const shf_wf_input_t *input, shf_wf_output_t *out)
{
    assert (def && state && input && out);
    s_run_t run = {.def = def,
                   .state = state,
                   .steps = json_object_get (state, "steps"),
                   .timers = json_object_get (state, "timers"),
                   .in = input,
                   .out = out,
                   .now = input->now,
                   .ctx = NULL};
    s_run_t *r = &run;
    out->message [0] = 0;
    if (!json_is_object (state))
        return s_reject (r, SHF_EINVAL, "state is not an object");
    shf_err_t rc;
    if (input->kind == SHF_WF_START)
        rc = s_on_start (r);
    else if ((rc = s_check_state (r)) != SHF_OK)
        ;
    else if (!s_is_open (state))
        rc =
            s_reject (r, SHF_ECLOSED, "the run is %s", s_str (state, "status"));
    else
        switch (input->kind) {
            case SHF_WF_ACTIVITY_STARTED:
                rc = s_on_activity_started (r);
                break;
            case SHF_WF_ACTIVITY_COMPLETED:
                rc = s_on_activity_completed (r);
                break;
            case SHF_WF_ACTIVITY_FAILED:
                rc = s_on_activity_failed (r);
                break;
            case SHF_WF_TIMER_FIRED:
                rc = s_on_timer_fired (r);
                break;
            case SHF_WF_SIGNAL:
                rc = s_on_signal (r);
                break;
            case SHF_WF_CANCEL:
                rc = s_on_cancel (r, false);
                break;
            case SHF_WF_TERMINATE:
                rc = s_on_cancel (r, true);
                break;
            case SHF_WF_HEARTBEAT:
                rc = s_on_heartbeat (r);
                break;
            case SHF_WF_ACTIVITY_HANDED_BACK:
                rc = s_on_activity_handed_back (r);
                break;
            case SHF_WF_START:
            default:
                rc = s_reject (r, SHF_EINVAL, "unknown input kind %d",
                               (int) input->kind);
                break;
        }
    s_event_end (r);
    s_dirty (r);
    return rc;
}


//  --------------------------------------------------------------------
//  Readers

const char *
shf_workflow_status (const json_t *state)
{
    const char *status = s_str (state, "status");
    return status ? status : "";
}

bool
shf_workflow_is_open (const json_t *state)
{
    return s_is_open (state);
}

const char *
shf_workflow_id (const json_t *state)
{
    return s_str (state, "workflow_id");
}

const char *
shf_workflow_run_id (const json_t *state)
{
    return s_str (state, "run_id");
}

const char *
shf_workflow_def_name (const json_t *state)
{
    return s_str (state, "name");
}

int64_t
shf_workflow_def_version (const json_t *state)
{
    return s_int (state, "version");
}

int64_t
shf_workflow_started_at (const json_t *state)
{
    return s_int (state, "started_at");
}

int64_t
shf_workflow_closed_at (const json_t *state)
{
    return s_int (state, "closed_at");
}

//  RFC 3339 UTC with milliseconds, or null for a missing time.
static json_t *
s_time (const json_t *obj, const char *key)
{
    const json_t *value = json_object_get (obj, key);
    if (!json_is_integer (value))
        return json_null ();
    int64_t ms = (int64_t) json_integer_value (value);
    int64_t secs = ms / 1000;
    int64_t rem = ms % 1000;
    if (rem < 0) {
        rem += 1000;
        secs--;
    }
    time_t t = (time_t) secs;
    struct tm tm;
    if (!gmtime_r (&t, &tm))
        return json_null ();
    char buf [64];
    snprintf (buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
              tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
              tm.tm_min, tm.tm_sec, (int) rem);
    return json_string (buf);
}

static json_t *
s_copy (const json_t *obj, const char *key)
{
    json_t *value = json_object_get (obj, key);
    json_t *copy = value ? json_deep_copy (value) : json_null ();
    if (!copy)
        abort ();
    return copy;
}

static json_t *
s_describe_step (const char *id, const json_t *rec)
{
    json_t *step = json_object ();
    s_set (step, "id", json_string (id));
    s_set (step, "status", s_copy (rec, "status"));
    s_set_int (step, "attempt", s_int (rec, "attempt"));
    s_set (step, "scheduled_at", s_time (rec, "scheduled_at"));
    s_set (step, "started_at", s_time (rec, "started_at"));
    s_set (step, "closed_at", s_time (rec, "closed_at"));
    s_set (step, "output", s_copy (rec, "output"));
    s_set (step, "failure", s_copy (rec, "failure"));
    s_set (step, "heartbeat_details", s_copy (rec, "heartbeat_details"));
    return step;
}

json_t *
shf_workflow_describe (const shf_def_t *def, const json_t *state)
{
    assert (state);
    json_t *self = json_object ();
    s_set (self, "workflow_id", s_copy (state, "workflow_id"));
    s_set (self, "run_id", s_copy (state, "run_id"));
    s_set (self, "namespace", s_copy (state, "ns"));
    s_set (self, "name", s_copy (state, "name"));
    s_set (self, "version", s_copy (state, "version"));
    s_set (self, "status", s_copy (state, "status"));
    s_set (self, "started_at", s_time (state, "started_at"));
    s_set (self, "closed_at", s_time (state, "closed_at"));
    s_set (self, "input", s_copy (state, "input"));
    s_set (self, "output", s_copy (state, "output"));
    s_set (self, "failure", s_copy (state, "failure"));

    //  Steps in definition order (or stored order without a def).
    json_t *steps = json_array ();
    const json_t *recs = json_object_get (state, "steps");
    if (def) {
        for (size_t i = 0; i < shf_def_step_count (def); i++) {
            const char *id = shf_def_step_id (def, i);
            const json_t *rec = json_object_get (recs, id);
            if (rec)
                json_array_append_new (steps, s_describe_step (id, rec));
        }
    }
    else {
        const char *id;
        const json_t *rec;
        json_object_foreach ((json_t *) recs, id, rec)
            json_array_append_new (steps, s_describe_step (id, rec));
    }
    s_set (self, "steps", steps);

    //  Open timers, soonest first.
    const json_t *live = json_object_get (state, "timers");
    size_t n = json_array_size (live);
    json_t *timers = json_array ();
    for (size_t i = 0; i < n; i++) {
        const json_t *timer = json_array_get (live, i);
        json_t *entry = json_object ();
        s_set (entry, "step", s_copy (timer, "step"));
        s_set (entry, "kind", s_copy (timer, "kind"));
        s_set (entry, "due_at", s_time (timer, "due"));
        s_set_int (entry, "due", s_int (timer, "due"));
        size_t at = json_array_size (timers);
        while (at > 0
               && s_int (json_array_get (timers, at - 1), "due")
                      > s_int (timer, "due"))
            at--;
        json_array_insert_new (timers, at, entry);
    }
    for (size_t i = 0; i < n; i++)
        json_object_del (json_array_get (timers, i), "due");
    s_set (self, "timers", timers);
    return self;
}

json_t *
shf_workflow_result (const json_t *state)
{
    assert (state);
    json_t *self = json_object ();
    s_set (self, "workflow_id", s_copy (state, "workflow_id"));
    s_set (self, "run_id", s_copy (state, "run_id"));
    s_set (self, "status", s_copy (state, "status"));
    s_set (self, "output", s_copy (state, "output"));
    s_set (self, "failure", s_copy (state, "failure"));
    return self;
}
