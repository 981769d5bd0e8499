/*  shf_workflow.c - the workflow state machine: (state, input) -> (events,
    effects).

    A run's whole mutable state is a shf_run_t (shf_run.h: the fields, and
    the stored layout the shard writes). A step's record is found by its
    definition index: shf_workflow_apply first lines the run's records up
    with the definition's steps (s_check_state).

    Invariants: a timer is in run->timers exactly while it is live, so a
    fired timer id that is not there is stale; every input is validated
    before anything is touched, so a rejected input changes nothing and
    appends nothing; JSON values shared between the run, the expression
    context and the output are never mutated after they are stored (a
    change replaces the reference).

    Called by the shard thread for every input of a run, and by describe
    and result readers (read-only). Pure: time comes from input->now.
*/
#include "shf_workflow.h"
#include "shf_event.h"
#include "../proto/shf_mpack.h"
#include "../proto/shf_msg.h"
#include "shf_retry.h"
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

//  One application of one input.
typedef struct {
    const shf_def_t *def;
    shf_run_t *run;
    const shf_wf_input_t *in;
    shf_wf_output_t *out;
    int64_t now;
    json_t *ctx;  //  cached expression context, NULL when stale
} s_run_t;


//  --------------------------------------------------------------------
//  Small helpers

//  Keys are literals, step ids of the compiled definition or a signal
//  name already checked: all valid UTF-8, so the setter that checks it
//  again is not used.
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
//  decoded), so the check json_string makes is skipped.
static json_t *
s_name (const char *name)
{
    json_t *value = json_string_nocheck (name);
    if (!value)
        abort ();
    return value;
}

static char *
s_strdup (const char *text)
{
    char *copy = strdup (text);
    if (!copy)
        abort ();
    return copy;
}

//  A copy of outside text that may not be valid UTF-8: bytes that break
//  it are replaced, so the run always serialises.
static char *
s_text_dup (const char *text)
{
    char *copy = s_strdup (text);
    if (!shf_mpack_utf8_valid (copy, strlen (copy)))
        for (char *p = copy; *p; p++)
            if ((unsigned char) *p >= 0x80)
                *p = '?';
    return copy;
}

//  The same as a JSON string; null for no text.
static json_t *
s_text (const char *text)
{
    if (!text)
        return json_null ();
    char *copy = s_text_dup (text);
    json_t *value = json_string_nocheck (copy);
    free (copy);
    if (!value)
        abort ();
    return value;
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

//  Replaces a held reference (value is taken; NULL stores null).
static void
s_put (json_t **slot, json_t *value)
{
    json_decref (*slot);
    *slot = value ? value : json_null ();
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
    json_t *packed = json_array ();
    if (!packed)
        abort ();
    for (size_t i = 0; i < self->n_events && !self->history_failed; i++) {
        const shf_wf_event_t *e = &self->events [i];
        json_t *event;
        if (shf_mpack_decode (self->history.out.data + e->at, e->size, &event,
                              NULL, 0)
                != SHF_OK
            || json_array_append_new (packed, event) != 0)
            abort ();  //  we wrote it: it decodes
    }
    json_t *events =
        self->n_events
            ? shf_event_unpack (packed, self->events [0].id, &self->ids)
            : json_incref (packed);
    json_decref (packed);
    if (!events)
        abort ();  //  nor is it anything but packed events
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
    int64_t id = r->run->next_event_id++;
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
    //  Packed (shf_event.h): [type, time - started_at, name, value, ...]
    event->at = shf_mpack_seq_begin_array (&out->history);
    out->ids = (shf_run_ids_t){r->run->ns, r->run->workflow_id, r->run->run_id,
                               r->run->started_at};
    int code = shf_event_type_code (type);
    if (code >= 0)
        shf_mpack_seq_item_int (&out->history, code);
    else
        shf_mpack_seq_item_str (&out->history, type);
    shf_mpack_seq_item_int (
        &out->history,
        (int64_t) ((uint64_t) r->now - (uint64_t) r->run->started_at));
    return id;
}

//  An attribute's name: its stored number, or itself.
static void
s_ev_name (s_run_t *r, const char *key)
{
    int code = shf_event_attr_code (key);
    if (code >= 0)
        shf_mpack_seq_item_int (&r->out->history, code);
    else
        shf_mpack_seq_item_str (&r->out->history, key);
}

//  Attributes of the event being written. Strings given to s_ev_str are
//  valid UTF-8 already (constants, names from the definition); NULL
//  values are written as null.
static void
s_ev_str (s_run_t *r, const char *key, const char *value)
{
    s_ev_name (r, key);
    if (value)
        shf_mpack_seq_item_str (&r->out->history, value);
    else
        shf_mpack_seq_item_json (&r->out->history, NULL);
}

static void
s_ev_int (s_run_t *r, const char *key, int64_t value)
{
    s_ev_name (r, key);
    shf_mpack_seq_item_int (&r->out->history, value);
}

static void
s_ev_json (s_run_t *r, const char *key, const json_t *value)
{
    s_ev_name (r, key);
    shf_mpack_seq_item_json (&r->out->history, value);
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

static shf_run_step_t *
s_rec (s_run_t *r, size_t idx)
{
    return &r->run->steps [idx];
}

static bool
s_rec_is (s_run_t *r, size_t idx, shf_step_status_t status)
{
    return r->run->steps [idx].status == status;
}

static void
s_dirty (s_run_t *r)
{
    json_decref (r->ctx);
    r->ctx = NULL;
}

static void
s_set_status (s_run_t *r, shf_run_step_t *rec, shf_step_status_t status)
{
    rec->status = status;
    s_dirty (r);
}

static void
s_set_worker (shf_run_step_t *rec, const char *worker)
{
    free (rec->worker);
    rec->worker = worker ? s_text_dup (worker) : NULL;
}

static bool
s_is_open (const shf_run_t *run)
{
    return run->started && run->status == SHF_RUN_RUNNING;
}

//  The context of SPEC.md expressions, built from the run. Containers that
//  are changed later are copied, so a template that returns one (for
//  example "${signals}") cannot alias live state.
static json_t *
s_context (s_run_t *r)
{
    if (r->ctx)
        return r->ctx;
    const shf_run_t *run = r->run;
    json_t *ctx = json_object ();
    s_set (ctx, "input", s_ref (run->input));
    json_t *steps = json_object ();
    size_t count = shf_def_step_count (r->def);
    for (size_t i = 0; i < count; i++) {
        const shf_run_step_t *rec = &run->steps [i];
        json_t *entry = json_object ();
        s_set (entry, "output", s_ref (rec->output));
        s_set (entry, "status", s_name (shf_step_status_name (rec->status)));
        s_set_int (entry, "attempt", rec->attempt);
        s_set (steps, shf_def_step_id (r->def, i), entry);
    }
    s_set (ctx, "steps", steps);
    json_t *signals = json_copy (run->last_signal);
    s_set (ctx, "signals", signals ? signals : json_object ());
    json_t *workflow = json_object ();
    s_set (workflow, "id", s_name (run->workflow_id));
    s_set (workflow, "run_id", s_name (run->run_id));
    s_set (ctx, "workflow", workflow);
    r->ctx = ctx;
    return ctx;
}

//  A timer's step as the def's borrowed id (NULL: the workflow's).
static const char *
s_timer_step (s_run_t *r, const shf_run_timer_t *timer)
{
    if (timer->step < 0)
        return NULL;
    if ((size_t) timer->step < shf_def_step_count (r->def))
        return shf_def_step_id (r->def, (size_t) timer->step);
    return r->run->steps [timer->step].id;
}

static uint64_t
s_timer_add (s_run_t *r, int idx, shf_timer_kind_t kind, int64_t due)
{
    shf_run_t *run = r->run;
    uint64_t id = (uint64_t) run->next_timer_id++;
    int64_t attempt = idx >= 0 ? run->steps [idx].attempt : 0;
    shf_run_timer_t *timer = shf_run_timer_push (run);
    timer->id = id;
    timer->due = due;
    timer->step = idx;
    timer->kind = kind;
    timer->attempt = attempt;
    shf_effect_t *effect = s_effect (r, SHF_EFFECT_TIMER);
    effect->step = idx >= 0 ? shf_def_step_id (r->def, (size_t) idx) : NULL;
    effect->attempt = (uint32_t) attempt;
    effect->timer_id = id;
    effect->due = due;
    return id;
}

//  Drops the live timer at position pos and tells the shard.
static void
s_timer_cancel_at (s_run_t *r, size_t pos)
{
    const shf_run_timer_t *timer = &r->run->timers [pos];
    shf_effect_t *effect = s_effect (r, SHF_EFFECT_TIMER_CANCEL);
    effect->step = s_timer_step (r, timer);
    effect->attempt = (uint32_t) timer->attempt;
    effect->timer_id = timer->id;
    effect->due = timer->due;
    shf_run_timer_remove (r->run, pos);
}

//  Drops the step's timers: all of them, or those of one kind (only >= 0),
//  or all but one kind (except >= 0).
static void
s_timers_drop (s_run_t *r, size_t idx, int only, int except)
{
    size_t pos = 0;
    while (pos < r->run->n_timers) {
        const shf_run_timer_t *timer = &r->run->timers [pos];
        bool match = timer->step == (int) idx
                     && (only < 0 || (int) timer->kind == only)
                     && (except < 0 || (int) timer->kind != except);
        if (match)
            s_timer_cancel_at (r, pos);
        else
            pos++;
    }
}

static bool
s_timer_find (s_run_t *r, uint64_t id, size_t *pos_p)
{
    for (size_t pos = 0; pos < r->run->n_timers; pos++)
        if (r->run->timers [pos].id == id) {
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
    const shf_run_step_t *rec = s_rec (r, idx);
    return shf_def_step_kind (r->def, idx) == SHF_STEP_ACTIVITY
           && (rec->status == SHF_STEP_SCHEDULED
               || rec->status == SHF_STEP_STARTED)
           && !(rec->has & SHF_REC_RETRY_DUE);
}

static void
s_task_cancel (s_run_t *r, size_t idx)
{
    shf_effect_t *effect = s_effect (r, SHF_EFFECT_TASK_CANCEL);
    effect->step = shf_def_step_id (r->def, idx);
    effect->attempt = (uint32_t) s_rec (r, idx)->attempt;
}

//  Completed, skipped, or failed but optional: dependents may go on.
static bool
s_step_done (s_run_t *r, size_t idx)
{
    shf_step_status_t status = s_rec (r, idx)->status;
    return status == SHF_STEP_COMPLETED || status == SHF_STEP_SKIPPED
           || (status == SHF_STEP_FAILED
               && shf_def_step_optional (r->def, idx));
}

static bool
s_step_ready (s_run_t *r, size_t idx)
{
    if (!s_rec_is (r, idx, SHF_STEP_PENDING))
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
s_close (s_run_t *r, shf_run_status_t status, json_t *failure, const char *type,
         json_t *attrs)
{
    size_t count = shf_def_step_count (r->def);
    for (size_t i = 0; i < count; i++) {
        shf_run_step_t *rec = s_rec (r, i);
        bool pending = rec->status == SHF_STEP_PENDING;
        bool open = rec->status == SHF_STEP_SCHEDULED
                    || rec->status == SHF_STEP_STARTED;
        if (!pending && !open)
            continue;
        if (s_task_open (r, i))
            s_task_cancel (r, i);
        if (open) {
            s_step_event (r, "StepCanceled", i);
            s_ev_int (r, "attempt", rec->attempt);
        }
        rec->has &= ~(unsigned) SHF_REC_RETRY_DUE;
        s_set_status (r, rec, SHF_STEP_CANCELED);
        rec->has |= SHF_REC_CLOSED_AT;
        rec->closed_at = r->now;
    }
    while (r->run->n_timers > 0)
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
    r->run->status = status;
    r->run->has_closed_at = true;
    r->run->closed_at = r->now;
    s_put (&r->run->failure, failure);
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
    s_close (r, SHF_RUN_FAILED, failure, "WorkflowFailed", attrs);
}


//  --------------------------------------------------------------------
//  Step transitions

static void
s_closed_now (s_run_t *r, shf_run_step_t *rec)
{
    rec->has |= SHF_REC_CLOSED_AT;
    rec->closed_at = r->now;
}

//  output is taken.
static void
s_step_complete (s_run_t *r, size_t idx, json_t *output)
{
    shf_run_step_t *rec = s_rec (r, idx);
    rec->has &= ~(unsigned) SHF_REC_RETRY_DUE;
    s_put (&rec->output, output);
    s_closed_now (r, rec);
    s_set_status (r, rec, SHF_STEP_COMPLETED);
    s_timers_drop (r, idx, -1, -1);
}

//  The step gives up; cancel_task: its attempt still has a task to drop.
//  A non-optional failure fails the run at once.
static void
s_step_fail (s_run_t *r, size_t idx, const char *type, const char *message,
             bool cancel_task)
{
    shf_run_step_t *rec = s_rec (r, idx);
    if (cancel_task && s_task_open (r, idx))
        s_task_cancel (r, idx);
    rec->has &= ~(unsigned) SHF_REC_RETRY_DUE;
    s_put (&rec->failure, s_failure (type, message));
    s_closed_now (r, rec);
    s_set_status (r, rec, SHF_STEP_FAILED);
    s_timers_drop (r, idx, -1, -1);
    if (!shf_def_step_optional (r->def, idx))
        s_fail_workflow (r, type, message, (int) idx);
}

//  Dispatches attempt `attempt` of an activity step: a TASK effect and its
//  deadlines. The input was rendered once, when the step was reached.
static void
s_dispatch (s_run_t *r, size_t idx, int64_t attempt)
{
    shf_run_step_t *rec = s_rec (r, idx);
    rec->attempt = attempt;
    rec->has |= SHF_REC_SCHEDULED_AT;
    rec->scheduled_at = r->now;
    rec->has &= ~(unsigned) (SHF_REC_STARTED_AT | SHF_REC_RETRY_DUE
                             | SHF_REC_LAST_HEARTBEAT);
    s_set_worker (rec, NULL);
    s_set_status (r, rec, SHF_STEP_SCHEDULED);

    s_step_event (r, "StepScheduled", idx);
    s_ev_int (r, "attempt", attempt);
    s_ev_str (r, "activity", shf_def_step_activity (r->def, idx));
    s_ev_str (r, "queue", shf_def_step_queue (r->def, idx));
    if (attempt == 1)
        s_ev_json (r, "input", rec->input);

    shf_effect_t *task = s_effect (r, SHF_EFFECT_TASK);
    task->step = shf_def_step_id (r->def, idx);
    task->attempt = (uint32_t) attempt;
    task->activity = shf_def_step_activity (r->def, idx);
    task->queue = shf_def_step_queue (r->def, idx);
    task->input = s_ref (rec->input);
    task->heartbeat_details =
        rec->heartbeat_details ? json_incref (rec->heartbeat_details) : NULL;
    task->start_to_close = shf_def_step_start_to_close (r->def, idx);
    task->heartbeat_timeout = shf_def_step_heartbeat (r->def, idx);

    int64_t to_close = shf_def_step_schedule_to_close (r->def, idx);
    if (attempt == 1 && to_close > 0)
        s_timer_add (r, (int) idx, SHF_TIMER_SCHEDULE_TO_CLOSE,
                     s_add (r->now, to_close));
    int64_t to_start = shf_def_step_schedule_to_start (r->def, idx);
    if (to_start > 0)
        s_timer_add (r, (int) idx, SHF_TIMER_SCHEDULE_TO_START,
                     s_add (r->now, to_start));
}

//  The open attempt is running. arm: start its start_to_close and heartbeat
//  deadlines (not needed when a completion implies the start).
static void
s_activity_started (s_run_t *r, size_t idx, const char *worker, bool arm)
{
    shf_run_step_t *rec = s_rec (r, idx);
    rec->has |= SHF_REC_STARTED_AT;
    rec->started_at = r->now;
    if (worker)
        s_set_worker (rec, worker);
    s_set_status (r, rec, SHF_STEP_STARTED);
    s_step_event (r, "ActivityStarted", idx);
    s_ev_int (r, "attempt", rec->attempt);
    //  the record's copy: made valid UTF-8 by s_set_worker
    s_ev_str (r, "worker", worker ? rec->worker : NULL);
    s_timers_drop (r, idx, SHF_TIMER_SCHEDULE_TO_START, -1);
    if (!arm)
        return;
    int64_t to_close = shf_def_step_start_to_close (r->def, idx);
    if (to_close > 0)
        s_timer_add (r, (int) idx, SHF_TIMER_START_TO_CLOSE,
                     s_add (r->now, to_close));
    int64_t heartbeat = shf_def_step_heartbeat (r->def, idx);
    if (heartbeat > 0)
        s_timer_add (r, (int) idx, SHF_TIMER_HEARTBEAT,
                     s_add (r->now, heartbeat));
}

//  The open attempt failed (rec->failure is set): retry after the backoff,
//  or give up.
static void
s_attempt_failed (s_run_t *r, size_t idx, const char *type, const char *message)
{
    shf_run_step_t *rec = s_rec (r, idx);
    const shf_retry_t *policy = shf_def_step_retry (r->def, idx);
    int64_t handbacks = rec->has & SHF_REC_HANDBACKS ? rec->handbacks : 0;
    uint32_t attempt = (uint32_t) (rec->attempt - handbacks);
    if (shf_retry_non_retryable (policy, type)
        || shf_retry_exhausted (policy, attempt)) {
        s_step_fail (r, idx, type, message, false);
        return;
    }
    s_timers_drop (r, idx, -1, SHF_TIMER_SCHEDULE_TO_CLOSE);
    int64_t due = s_add (r->now, shf_retry_backoff (policy, attempt));
    s_set_status (r, rec, SHF_STEP_SCHEDULED);
    rec->has |= SHF_REC_RETRY_DUE;
    rec->retry_due = due;
    s_timer_add (r, (int) idx, SHF_TIMER_RETRY, due);
}

//  An activity deadline passed: the attempt is over and its task dropped.
static void
s_activity_timed_out (s_run_t *r, size_t idx, shf_timer_kind_t kind)
{
    shf_run_step_t *rec = s_rec (r, idx);
    const char *name = shf_timer_kind_name (kind);
    s_step_event (r, "ActivityTimedOut", idx);
    s_ev_int (r, "attempt", rec->attempt);
    s_ev_json_new (r, "failure", s_failure ("Timeout", name));
    if (kind == SHF_TIMER_SCHEDULE_TO_CLOSE) {
        s_step_fail (r, idx, "Timeout", name, true);  //  caps every retry
        return;
    }
    s_task_cancel (r, idx);
    s_put (&rec->failure, s_failure ("Timeout", name));
    s_attempt_failed (r, idx, "Timeout", name);
}

//  Takes the oldest buffered signal of that name, or NULL.
static json_t *
s_signal_take (s_run_t *r, const char *name)
{
    json_t *signals = r->run->signals;
    json_t *queue = json_object_get (signals, name);
    if (json_array_size (queue) == 0)
        return NULL;
    json_t *payload = json_incref (json_array_get (queue, 0));
    json_array_remove (queue, 0);
    if (json_array_size (queue) == 0)
        json_object_del (signals, name);
    return payload;
}

//  A wait or a sleep begins at once: its one attempt is running.
static void
s_step_begin (s_run_t *r, shf_run_step_t *rec)
{
    rec->attempt = 1;
    rec->has |= SHF_REC_SCHEDULED_AT | SHF_REC_STARTED_AT;
    rec->scheduled_at = r->now;
    rec->started_at = r->now;
    s_set_status (r, rec, SHF_STEP_STARTED);
}

//  The step's dependencies are done: evaluate `when`, then start it.
static void
s_step_reach (s_run_t *r, size_t idx)
{
    shf_run_step_t *rec = s_rec (r, idx);
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
            s_closed_now (r, rec);
            s_set_status (r, rec, SHF_STEP_SKIPPED);
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
            s_put (&rec->input, input);
            s_dispatch (r, idx, 1);
            break;
        }
        case SHF_STEP_SLEEP: {
            s_step_begin (r, rec);
            int64_t due = s_add (r->now, shf_def_step_sleep (r->def, idx));
            s_step_event (r, "TimerStarted", idx);
            uint64_t id = s_timer_add (r, (int) idx, SHF_TIMER_SLEEP, due);
            s_ev_int (r, "timer_id", (int64_t) id);
            s_ev_int (r, "due", due);
            break;
        }
        case SHF_STEP_WAIT_SIGNAL: {
            const char *name = shf_def_step_signal (r->def, idx);
            s_step_begin (r, rec);
            int64_t seq = s_step_event (r, "StepScheduled", idx);
            s_ev_int (r, "attempt", 1);
            s_ev_str (r, "signal", name);
            rec->has |= SHF_REC_SEQ;
            rec->seq = seq;
            json_t *payload = s_signal_take (r, name);
            if (payload) {
                s_ev_json (r, "signal_taken", json_true ());
                s_step_complete (r, idx, payload);
                break;
            }
            int64_t timeout = shf_def_step_timeout (r->def, idx);
            if (timeout > 0)
                s_timer_add (r, (int) idx, SHF_TIMER_WAIT_SIGNAL,
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
    if (!s_is_open (r->run))
        return;
    //  Only reaching a step can close the run, so that is when to look.
    bool progress = true;
    while (progress) {
        progress = false;
        for (size_t i = 0; i < count; i++)
            if (s_step_ready (r, i)) {
                s_step_reach (r, i);
                progress = true;
                if (!s_is_open (r->run))
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
        output = s_ref (s_rec (r, count - 1)->output);
    else
        output = json_null ();
    json_t *attrs = json_object ();
    s_set (attrs, "output", json_incref (output));
    s_put (&r->run->output, output);
    s_close (r, SHF_RUN_COMPLETED, NULL, "WorkflowCompleted", attrs);
}


//  --------------------------------------------------------------------
//  Inputs

static bool
s_utf8 (const char *text)
{
    return shf_mpack_utf8_valid (text, strlen (text));
}

static shf_err_t
s_on_start (s_run_t *r)
{
    const shf_wf_input_t *in = r->in;
    shf_run_t *run = r->run;
    if (run->started)
        return s_reject (r, SHF_EINVAL, "start needs an empty state");
    if (!in->workflow_id || !*in->workflow_id || !in->run_id || !*in->run_id)
        return s_reject (r, SHF_EINVAL, "start needs a workflow_id and run_id");
    const char *ns = in->namespace_ ? in->namespace_ : "default";
    if (!s_utf8 (in->workflow_id) || !s_utf8 (in->run_id) || !s_utf8 (ns))
        return s_reject (r, SHF_EINVAL, "ids must be UTF-8");
    size_t count = shf_def_step_count (r->def);
    run->started = true;
    run->ns = s_strdup (ns);
    run->workflow_id = s_strdup (in->workflow_id);
    run->run_id = s_strdup (in->run_id);
    run->name = s_strdup (shf_def_name (r->def));
    run->version = shf_def_version (r->def);
    run->status = SHF_RUN_RUNNING;
    run->started_at = r->now;
    run->has_closed_at = false;
    s_put (&run->input, s_payload (in));
    s_put (&run->output, NULL);
    s_put (&run->failure, NULL);
    run->next_event_id = 1;
    run->next_timer_id = 1;
    run->steps = calloc (count ? count : 1, sizeof *run->steps);
    if (!run->steps)
        abort ();
    run->n_steps = count;
    for (size_t i = 0; i < count; i++) {
        run->steps [i].id = s_strdup (shf_def_step_id (r->def, i));
        run->steps [i].status = SHF_STEP_PENDING;
    }
    s_put (&run->signals, json_object ());
    s_put (&run->last_signal, json_object ());

    s_event (r, "WorkflowStarted");  //  its IDs are the key's (shf_event.h)
    s_ev_str (r, "name", shf_def_name (r->def));
    s_ev_int (r, "version", shf_def_version (r->def));
    s_ev_json (r, "input", run->input);
    int64_t timeout = shf_def_timeout (r->def);
    if (timeout > 0)
        s_timer_add (r, -1, SHF_TIMER_WORKFLOW, s_add (r->now, timeout));
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
    const shf_run_step_t *rec = s_rec (r, (size_t) idx);
    if (!s_task_open (r, (size_t) idx) || rec->attempt != (int64_t) in->attempt)
        return s_reject (r, SHF_ENOTFOUND,
                         "step \"%.100s\" attempt %u is not open (%s, "
                         "attempt %lld)",
                         in->step, in->attempt,
                         shf_step_status_name (rec->status),
                         (long long) rec->attempt);
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
    if (!s_rec_is (r, idx, SHF_STEP_SCHEDULED))
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
    if (s_rec_is (r, idx, SHF_STEP_SCHEDULED))
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
    if (s_rec_is (r, idx, SHF_STEP_SCHEDULED))
        s_activity_started (r, idx, r->in->worker, false);
    const char *type = r->in->error_type ? r->in->error_type : "Error";
    json_t *failure = s_failure (type, r->in->error_message);
    s_step_event (r, "ActivityFailed", idx);
    s_ev_int (r, "attempt", r->in->attempt);
    s_ev_json (r, "failure", failure);
    s_put (&s_rec (r, idx)->failure, json_incref (failure));
    //  the sanitised copies in the failure, kept alive here while a failed
    //  step's record gets a new failure
    s_attempt_failed (r, idx,
                      json_string_value (json_object_get (failure, "type")),
                      json_string_value (json_object_get (failure, "message")));
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
    if (s_rec_is (r, idx, SHF_STEP_SCHEDULED))
        s_activity_started (r, idx, r->in->worker, true);
    shf_run_step_t *rec = s_rec (r, idx);
    s_put (&rec->heartbeat_details, s_payload (r->in));
    rec->has |= SHF_REC_LAST_HEARTBEAT;
    rec->last_heartbeat = r->now;
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
    shf_run_step_t *rec = s_rec (r, idx);
    s_timers_drop (r, idx, SHF_TIMER_START_TO_CLOSE, -1);
    s_timers_drop (r, idx, SHF_TIMER_HEARTBEAT, -1);
    s_timers_drop (r, idx, SHF_TIMER_SCHEDULE_TO_START, -1);
    rec->handbacks = (rec->has & SHF_REC_HANDBACKS ? rec->handbacks : 0) + 1;
    rec->has |= SHF_REC_HANDBACKS;
    s_task_cancel (r, idx);
    s_dispatch (r, idx, rec->attempt + 1);
    return SHF_OK;
}

static shf_err_t
s_on_timer_fired (s_run_t *r)
{
    size_t pos;
    if (!s_timer_find (r, r->in->timer_id, &pos))
        return s_reject (r, SHF_ENOTFOUND, "no live timer %llu",
                         (unsigned long long) r->in->timer_id);
    shf_run_timer_t timer = r->run->timers [pos];
    if (timer.kind != SHF_TIMER_WORKFLOW
        && (timer.step < 0
            || (size_t) timer.step >= shf_def_step_count (r->def)))
        return s_reject (r, SHF_EINTERNAL, "timer %llu is malformed",
                         (unsigned long long) r->in->timer_id);
    shf_run_timer_remove (r->run, pos);  //  fired: no TIMER_CANCEL
    size_t step = (size_t) timer.step;
    const char *kind = shf_timer_kind_name (timer.kind);
    switch (timer.kind) {
        case SHF_TIMER_WORKFLOW: {
            json_t *failure = s_failure ("Timeout", "workflow");
            s_set (failure, "step", json_null ());
            json_t *attrs = json_object ();
            s_set (attrs, "failure", json_incref (failure));
            s_close (r, SHF_RUN_TIMED_OUT, failure, "WorkflowTimedOut", attrs);
            break;
        }
        case SHF_TIMER_SLEEP:
            s_step_event (r, "TimerFired", step);
            s_ev_int (r, "timer_id", (int64_t) r->in->timer_id);
            s_step_complete (r, step, json_null ());
            break;
        case SHF_TIMER_WAIT_SIGNAL:
            s_step_event (r, "TimerFired", step);
            s_ev_int (r, "timer_id", (int64_t) r->in->timer_id);
            s_ev_str (r, "kind", kind);
            s_step_fail (r, step, "Timeout", "wait_signal", false);
            break;
        case SHF_TIMER_RETRY:
            s_dispatch (r, step, s_rec (r, step)->attempt + 1);
            break;
        case SHF_TIMER_HEARTBEAT: {
            //  Heartbeats only move a deadline in the state; the timer is
            //  re-armed lazily here, so a heartbeat costs no timer write.
            const shf_run_step_t *rec = s_rec (r, step);
            int64_t last = rec->has & SHF_REC_STARTED_AT ? rec->started_at : 0;
            if ((rec->has & SHF_REC_LAST_HEARTBEAT)
                && rec->last_heartbeat > last)
                last = rec->last_heartbeat;
            int64_t deadline =
                s_add (last, shf_def_step_heartbeat (r->def, step));
            if (r->now < deadline)
                s_timer_add (r, (int) step, SHF_TIMER_HEARTBEAT, deadline);
            else
                s_activity_timed_out (r, step, timer.kind);
            break;
        }
        default:
            s_activity_timed_out (r, step, timer.kind);
            break;
    }
    s_advance (r);
    return SHF_OK;
}

static shf_err_t
s_on_signal (s_run_t *r)
{
    const char *name = r->in->signal;
    if (!name || !*name)
        return s_reject (r, SHF_EINVAL, "no signal name given");
    if (!s_utf8 (name))
        return s_reject (r, SHF_EINVAL, "signal name must be UTF-8");
    json_t *payload = s_payload (r->in);
    s_event (r, "SignalReceived");
    s_ev_str (r, "signal", name);
    s_ev_json (r, "input", payload);
    s_set (r->run->last_signal, name, json_incref (payload));
    s_dirty (r);

    //  The longest-waiting wait_signal step of that name takes it.
    int waiter = -1;
    int64_t waiter_seq = 0;
    size_t count = shf_def_step_count (r->def);
    for (size_t i = 0; i < count; i++) {
        if (shf_def_step_kind (r->def, i) != SHF_STEP_WAIT_SIGNAL
            || strcmp (shf_def_step_signal (r->def, i), name) != 0
            || !s_rec_is (r, i, SHF_STEP_STARTED))
            continue;
        const shf_run_step_t *rec = s_rec (r, i);
        int64_t seq = rec->has & SHF_REC_SEQ ? rec->seq : 0;
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
    json_t *queue = json_object_get (r->run->signals, name);
    if (!queue) {
        queue = json_array ();
        s_set (r->run->signals, name, queue);
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
    s_close (r, terminate ? SHF_RUN_TERMINATED : SHF_RUN_CANCELED, failure,
             terminate ? "WorkflowTerminated" : "WorkflowCanceled", attrs);
    return SHF_OK;
}

//  Swaps two step records, and the timers that point at them.
static void
s_swap_steps (shf_run_t *run, size_t a, size_t b)
{
    shf_run_step_t rec = run->steps [a];
    run->steps [a] = run->steps [b];
    run->steps [b] = rec;
    for (size_t i = 0; i < run->n_timers; i++)
        if (run->timers [i].step == (int) a)
            run->timers [i].step = (int) b;
        else if (run->timers [i].step == (int) b)
            run->timers [i].step = (int) a;
}

//  The run must be a started run of this definition. Its step records are
//  then lined up with the definition's steps (a record's index is its
//  step's): runs the machine started already are; a reordered one is put
//  in order, which changes nothing it stores.
static shf_err_t
s_check_state (s_run_t *r)
{
    shf_run_t *run = r->run;
    if (!run->started)
        return s_reject (r, SHF_EINVAL, "the run has not started");
    if (strcmp (run->name, shf_def_name (r->def)) != 0
        || (shf_def_version (r->def) && run->version
            && shf_def_version (r->def) != run->version))
        return s_reject (r, SHF_EINVAL, "the run is pinned to %s@%lld",
                         run->name, (long long) run->version);
    size_t count = shf_def_step_count (r->def);
    bool aligned = run->n_steps >= count;
    for (size_t i = 0; i < count && aligned; i++)
        aligned = strcmp (run->steps [i].id, shf_def_step_id (r->def, i)) == 0;
    if (aligned)
        return SHF_OK;
    for (size_t i = 0; i < count; i++)
        if (shf_run_step_index (run, shf_def_step_id (r->def, i)) < 0)
            return s_reject (r, SHF_EINVAL, "the run has no step \"%s\"",
                             shf_def_step_id (r->def, i));
    for (size_t i = 0; i < count; i++) {
        int at = shf_run_step_index (run, shf_def_step_id (r->def, i));
        if ((size_t) at != i)
            s_swap_steps (run, i, (size_t) at);
    }
    return SHF_OK;
}

shf_err_t
shf_workflow_apply (const shf_def_t *def, shf_run_t *run,
                    const shf_wf_input_t *input, shf_wf_output_t *out)
{
    assert (def && run && input && out);
    s_run_t state = {.def = def,
                     .run = run,
                     .in = input,
                     .out = out,
                     .now = input->now,
                     .ctx = NULL};
    s_run_t *r = &state;
    out->message [0] = 0;
    shf_err_t rc;
    if (input->kind == SHF_WF_START)
        rc = s_on_start (r);
    else if ((rc = s_check_state (r)) != SHF_OK)
        ;
    else if (!s_is_open (run))
        rc = s_reject (r, SHF_ECLOSED, "the run is %s",
                       shf_run_status_name (run->status));
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
shf_workflow_status (const shf_run_t *run)
{
    return run->started ? shf_run_status_name (run->status) : "";
}

bool
shf_workflow_is_open (const shf_run_t *run)
{
    return s_is_open (run);
}

const char *
shf_workflow_ns (const shf_run_t *run)
{
    return run->ns;
}

const char *
shf_workflow_id (const shf_run_t *run)
{
    return run->workflow_id;
}

const char *
shf_workflow_run_id (const shf_run_t *run)
{
    return run->run_id;
}

const char *
shf_workflow_def_name (const shf_run_t *run)
{
    return run->name;
}

int64_t
shf_workflow_def_version (const shf_run_t *run)
{
    return run->version;
}

int64_t
shf_workflow_started_at (const shf_run_t *run)
{
    return run->started_at;
}

int64_t
shf_workflow_closed_at (const shf_run_t *run)
{
    return run->has_closed_at ? run->closed_at : 0;
}

//  RFC 3339 UTC with milliseconds, or null for a missing time.
static json_t *
s_time (bool present, int64_t ms)
{
    if (!present)
        return json_null ();
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
s_copy (const json_t *value)
{
    json_t *copy = value ? json_deep_copy (value) : json_null ();
    if (!copy)
        abort ();
    return copy;
}

static json_t *
s_describe_step (const shf_run_step_t *rec)
{
    json_t *step = json_object ();
    s_set (step, "id", json_string (rec->id));
    s_set (step, "status", s_name (shf_step_status_name (rec->status)));
    s_set_int (step, "attempt", rec->attempt);
    s_set (step, "scheduled_at",
           s_time (rec->has & SHF_REC_SCHEDULED_AT, rec->scheduled_at));
    s_set (step, "started_at",
           s_time (rec->has & SHF_REC_STARTED_AT, rec->started_at));
    s_set (step, "closed_at",
           s_time (rec->has & SHF_REC_CLOSED_AT, rec->closed_at));
    s_set (step, "output", s_copy (rec->output));
    s_set (step, "failure", s_copy (rec->failure));
    s_set (step, "heartbeat_details", s_copy (rec->heartbeat_details));
    return step;
}

json_t *
shf_workflow_describe (const shf_def_t *def, const shf_run_t *run)
{
    assert (run);
    json_t *self = json_object ();
    if (!run->started)
        return self;
    s_set (self, "workflow_id", json_string (run->workflow_id));
    s_set (self, "run_id", json_string (run->run_id));
    s_set (self, "namespace", json_string (run->ns));
    s_set (self, "name", json_string (run->name));
    s_set_int (self, "version", run->version);
    s_set (self, "status", s_name (shf_run_status_name (run->status)));
    s_set (self, "started_at", s_time (true, run->started_at));
    s_set (self, "closed_at", s_time (run->has_closed_at, run->closed_at));
    s_set (self, "input", s_copy (run->input));
    s_set (self, "output", s_copy (run->output));
    s_set (self, "failure", s_copy (run->failure));

    //  Steps in definition order (or stored order without a def).
    json_t *steps = json_array ();
    if (def) {
        for (size_t i = 0; i < shf_def_step_count (def); i++) {
            int at = shf_run_step_index (run, shf_def_step_id (def, i));
            if (at >= 0)
                json_array_append_new (steps,
                                       s_describe_step (&run->steps [at]));
        }
    }
    else
        for (size_t i = 0; i < run->n_steps; i++)
            json_array_append_new (steps, s_describe_step (&run->steps [i]));
    s_set (self, "steps", steps);

    //  Open timers, soonest first (stable: equal dues keep their order).
    json_t *timers = json_array ();
    int64_t *dues = calloc (run->n_timers + 1, sizeof *dues);
    if (!dues)
        abort ();
    for (size_t i = 0; i < run->n_timers; i++) {
        const shf_run_timer_t *timer = &run->timers [i];
        json_t *entry = json_object ();
        s_set (entry, "step",
               timer->step >= 0 ? json_string (run->steps [timer->step].id)
                                : json_null ());
        s_set (entry, "kind", s_name (shf_timer_kind_name (timer->kind)));
        s_set (entry, "due_at", s_time (true, timer->due));
        size_t at = i;
        while (at > 0 && dues [at - 1] > timer->due) {
            dues [at] = dues [at - 1];
            at--;
        }
        dues [at] = timer->due;
        json_array_insert_new (timers, at, entry);
    }
    free (dues);
    s_set (self, "timers", timers);
    return self;
}

json_t *
shf_workflow_result (const shf_run_t *run)
{
    assert (run);
    json_t *self = json_object ();
    s_set (self, "workflow_id",
           run->workflow_id ? json_string (run->workflow_id) : json_null ());
    s_set (self, "run_id",
           run->run_id ? json_string (run->run_id) : json_null ());
    s_set (self, "status",
           run->started ? s_name (shf_run_status_name (run->status))
                        : json_null ());
    s_set (self, "output", s_copy (run->output));
    s_set (self, "failure", s_copy (run->failure));
    return self;
}

//  A string member, or nil for NULL.
static void
s_pack_str (shf_mpack_out_t *out, const char *key, const char *value)
{
    shf_mpack_put_short (out, key, strlen (key));
    if (value)
        shf_mpack_put_str (out, value, strlen (value));
    else
        shf_mpack_put_nil (out);
}

shf_err_t
shf_workflow_result_pack (const shf_run_t *run, shf_mpack_out_t *out)
{
    assert (run);
    size_t mark = out->size;
    shf_mpack_put_map (out, 5);
    s_pack_str (out, "workflow_id", run->workflow_id);
    s_pack_str (out, "run_id", run->run_id);
    s_pack_str (out, "status",
                run->started ? shf_run_status_name (run->status) : NULL);
    //  in a reply, the body is a member of the top-level map: its members
    //  start at depth 2
    shf_mpack_put_short (out, "output", 6);
    shf_err_t rc = shf_mpack_put_json (out, run->output, 2);
    if (rc == SHF_OK) {
        shf_mpack_put_short (out, "failure", 7);
        rc = shf_mpack_put_json (out, run->failure, 2);
    }
    if (rc != SHF_OK)
        out->size = mark;
    return rc;
}
