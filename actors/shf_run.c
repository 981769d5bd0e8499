/*  shf_run.c - one run's mutable state as a C struct, and its codec.

    The stored form is the JSON layout the state had before it became a
    struct (see shf_run.h), so shf_run_from_json is strict about what the
    state machine relies on (types, known names, timers naming real steps)
    and lenient only where old states differ: closed_at, input, output,
    failure, timers, signals, last_signal and a timer's attempt may be
    absent. shf_run_encode writes exactly shf_run_to_json's object, member
    for member and in the same order, straight to msgpack: it runs on every
    commit, so it counts each map's members from the struct and writes each
    JSON value once, with no tree built and nothing allocated but the
    writer's buffer.

    Strings are C strings: a stored string or step id with a NUL byte in
    it is refused as corrupt rather than cut short.

    Called by the shard (cache, commit, recovery), shf_workflow, tools and
    tests.
*/
#include "shf_run.h"
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *s_run_status_names [SHF_RUN_STATUS_COUNT] = {
    "running", "completed", "failed", "canceled", "terminated", "timed_out"};

static const char *s_step_status_names [SHF_STEP_STATUS_COUNT] = {
    "pending", "scheduled", "started", "completed",
    "failed",  "skipped",   "canceled"};

static const char *s_timer_kind_names [SHF_TIMER_KIND_COUNT] = {
    "workflow",          "sleep",          "wait_signal",       "retry",
    "schedule_to_start", "start_to_close", "schedule_to_close", "heartbeat"};

const char *
shf_run_status_name (shf_run_status_t status)
{
    assert ((unsigned) status < SHF_RUN_STATUS_COUNT);
    return s_run_status_names [status];
}

const char *
shf_step_status_name (shf_step_status_t status)
{
    assert ((unsigned) status < SHF_STEP_STATUS_COUNT);
    return s_step_status_names [status];
}

const char *
shf_timer_kind_name (shf_timer_kind_t kind)
{
    assert ((unsigned) kind < SHF_TIMER_KIND_COUNT);
    return s_timer_kind_names [kind];
}

//  The index of name in names [0, count), or -1.
static int
s_name_index (const char *const *names, int count, const char *name)
{
    if (!name)
        return -1;
    for (int i = 0; i < count; i++)
        if (strcmp (names [i], name) == 0)
            return i;
    return -1;
}

bool
shf_run_status_parse (const char *name, shf_run_status_t *status_p)
{
    assert (status_p);
    int i = s_name_index (s_run_status_names, SHF_RUN_STATUS_COUNT, name);
    if (i < 0)
        return false;
    *status_p = (shf_run_status_t) i;
    return true;
}

bool
shf_step_status_parse (const char *name, shf_step_status_t *status_p)
{
    assert (status_p);
    int i = s_name_index (s_step_status_names, SHF_STEP_STATUS_COUNT, name);
    if (i < 0)
        return false;
    *status_p = (shf_step_status_t) i;
    return true;
}

bool
shf_timer_kind_parse (const char *name, shf_timer_kind_t *kind_p)
{
    assert (kind_p);
    int i = s_name_index (s_timer_kind_names, SHF_TIMER_KIND_COUNT, name);
    if (i < 0)
        return false;
    *kind_p = (shf_timer_kind_t) i;
    return true;
}


//  --- lifecycle ---------------------------------------------------------

shf_run_t *
shf_run_new (void)
{
    shf_run_t *self = calloc (1, sizeof *self);
    assert (self);  //  out of memory
    self->refs = 1;
    return self;
}

shf_run_t *
shf_run_incref (shf_run_t *self)
{
    assert (self && self->refs > 0);
    self->refs++;
    return self;
}

static void
s_step_free (shf_run_step_t *step)
{
    free (step->id);
    free (step->worker);
    json_decref (step->input);
    json_decref (step->output);
    json_decref (step->failure);
    json_decref (step->heartbeat_details);
}

void
shf_run_decref (shf_run_t *self)
{
    if (!self)
        return;
    assert (self->refs > 0);
    if (--self->refs > 0)
        return;
    free (self->ns);
    free (self->workflow_id);
    free (self->run_id);
    free (self->name);
    json_decref (self->input);
    json_decref (self->output);
    json_decref (self->failure);
    for (size_t i = 0; i < self->n_steps; i++)
        s_step_free (&self->steps [i]);
    free (self->steps);
    free (self->timers);
    json_decref (self->signals);
    json_decref (self->last_signal);
    free (self);
}

int
shf_run_step_index (const shf_run_t *self, const char *id)
{
    assert (self && id);
    for (size_t i = 0; i < self->n_steps; i++)
        if (strcmp (self->steps [i].id, id) == 0)
            return (int) i;
    return -1;
}

shf_run_timer_t *
shf_run_timer_push (shf_run_t *self)
{
    assert (self);
    if (self->n_timers == self->cap_timers) {
        size_t cap = self->cap_timers ? self->cap_timers * 2 : 4;
        shf_run_timer_t *grown = realloc (self->timers, cap * sizeof *grown);
        assert (grown);  //  out of memory
        self->timers = grown;
        self->cap_timers = cap;
    }
    shf_run_timer_t *timer = &self->timers [self->n_timers++];
    memset (timer, 0, sizeof *timer);
    return timer;
}

void
shf_run_timer_remove (shf_run_t *self, size_t pos)
{
    assert (self && pos < self->n_timers);
    memmove (&self->timers [pos], &self->timers [pos + 1],
             (self->n_timers - pos - 1) * sizeof self->timers [0]);
    self->n_timers--;
}


//  --- to and from JSON --------------------------------------------------

static void
s_set (json_t *object, const char *key, json_t *value)
{
    if (json_object_set_new_nocheck (object, key, value ? value : json_null ())
        != 0)
        abort ();  //  out of memory
}

static json_t *
s_ref (json_t *value)
{
    return value ? json_incref (value) : json_null ();
}

//  The signal queues as an object of their own whose arrays are new too
//  (the payloads in them are shared): the state machine appends to and
//  takes from a run's queues in place, so a run never shares them with
//  its caller, nor its caller with a run.
static json_t *
s_signals_copy (json_t *signals)
{
    json_t *copy = json_copy (signals);  //  shallow: the same arrays
    if (!copy)
        abort ();  //  out of memory
    for (void *it = json_object_iter (copy); it;
         it = json_object_iter_next (copy, it)) {
        json_t *queue = json_copy (json_object_iter_value (it));
        if (!queue || json_object_iter_set_new (copy, it, queue))
            abort ();  //  out of memory
    }
    return copy;
}

//  Signal queues as stored: an object of arrays.
static bool
s_signals_valid (json_t *signals)
{
    if (!json_is_object (signals))
        return false;
    for (void *it = json_object_iter (signals); it;
         it = json_object_iter_next (signals, it))
        if (!json_is_array (json_object_iter_value (it)))
            return false;
    return true;
}

static json_t *
s_step_to_json (const shf_run_step_t *step)
{
    json_t *rec = json_object ();
    if (!rec)
        abort ();
    s_set (rec, "status", json_string (shf_step_status_name (step->status)));
    s_set (rec, "attempt", json_integer (step->attempt));
    if (step->has & SHF_REC_SCHEDULED_AT)
        s_set (rec, "scheduled_at", json_integer (step->scheduled_at));
    if (step->has & SHF_REC_STARTED_AT)
        s_set (rec, "started_at", json_integer (step->started_at));
    if (step->has & SHF_REC_CLOSED_AT)
        s_set (rec, "closed_at", json_integer (step->closed_at));
    if (step->input)
        s_set (rec, "input", json_incref (step->input));
    if (step->output)
        s_set (rec, "output", json_incref (step->output));
    if (step->failure)
        s_set (rec, "failure", json_incref (step->failure));
    if (step->heartbeat_details)
        s_set (rec, "heartbeat_details", json_incref (step->heartbeat_details));
    if (step->has & SHF_REC_LAST_HEARTBEAT)
        s_set (rec, "last_heartbeat", json_integer (step->last_heartbeat));
    if (step->worker)
        s_set (rec, "worker", json_string (step->worker));
    if (step->has & SHF_REC_RETRY_DUE)
        s_set (rec, "retry_due", json_integer (step->retry_due));
    if (step->has & SHF_REC_SEQ)
        s_set (rec, "seq", json_integer (step->seq));
    if (step->has & SHF_REC_HANDBACKS)
        s_set (rec, "handbacks", json_integer (step->handbacks));
    return rec;
}

json_t *
shf_run_to_json (const shf_run_t *self)
{
    assert (self);
    json_t *state = json_object ();
    if (!state)
        abort ();
    if (!self->started)
        return state;
    s_set (state, "ns", json_string (self->ns));
    s_set (state, "workflow_id", json_string (self->workflow_id));
    s_set (state, "run_id", json_string (self->run_id));
    s_set (state, "name", json_string (self->name));
    s_set (state, "version", json_integer (self->version));
    s_set (state, "status", json_string (shf_run_status_name (self->status)));
    s_set (state, "started_at", json_integer (self->started_at));
    s_set (state, "closed_at",
           self->has_closed_at ? json_integer (self->closed_at) : json_null ());
    s_set (state, "input", s_ref (self->input));
    s_set (state, "output", s_ref (self->output));
    s_set (state, "failure", s_ref (self->failure));
    s_set (state, "next_event_id", json_integer (self->next_event_id));
    s_set (state, "next_timer_id", json_integer (self->next_timer_id));
    json_t *steps = json_object ();
    for (size_t i = 0; i < self->n_steps; i++)
        s_set (steps, self->steps [i].id, s_step_to_json (&self->steps [i]));
    s_set (state, "steps", steps);
    json_t *timers = json_array ();
    for (size_t i = 0; i < self->n_timers; i++) {
        const shf_run_timer_t *timer = &self->timers [i];
        assert (timer->step >= -1 && timer->step < (int) self->n_steps);
        json_t *t = json_object ();
        s_set (t, "id", json_integer ((json_int_t) timer->id));
        s_set (t, "due", json_integer (timer->due));
        s_set (t, "step",
               timer->step >= 0 ? json_string (self->steps [timer->step].id)
                                : json_null ());
        s_set (t, "kind", json_string (shf_timer_kind_name (timer->kind)));
        s_set (t, "attempt", json_integer (timer->attempt));
        if (json_array_append_new (timers, t))
            abort ();
    }
    s_set (state, "timers", timers);
    //  Copies, not the run's own objects: the machine changes those in
    //  place, and the caller's object must not change under it. A run
    //  without them (built by hand) has none: {}.
    s_set (state, "signals",
           self->signals ? s_signals_copy (self->signals) : json_object ());
    s_set (state, "last_signal",
           self->last_signal ? json_copy (self->last_signal) : json_object ());
    return state;
}

//  A copy of a string member with no NUL byte in it, or NULL.
static char *
s_strdup_member (const json_t *object, const char *key)
{
    const json_t *value = json_object_get (object, key);
    if (!json_is_string (value))
        return NULL;
    const char *s = json_string_value (value);
    if (strlen (s) != json_string_length (value))
        return NULL;
    char *copy = strdup (s);
    assert (copy);  //  out of memory
    return copy;
}

//  An integer member into *value_p: true when it is one.
static bool
s_int_member (const json_t *object, const char *key, int64_t *value_p)
{
    const json_t *value = json_object_get (object, key);
    if (!json_is_integer (value))
        return false;
    *value_p = json_integer_value (value);
    return true;
}

//  An optional integer member: absent is fine, another type is not.
static bool
s_opt_int (const json_t *object, const char *key, unsigned bit, unsigned *has_p,
           int64_t *value_p)
{
    if (!json_object_get (object, key))
        return true;
    if (!s_int_member (object, key, value_p))
        return false;
    *has_p |= bit;
    return true;
}

//  An optional value of any type, shared; NULL when absent.
static json_t *
s_opt_json (const json_t *object, const char *key)
{
    json_t *value = json_object_get (object, key);
    return value ? json_incref (value) : NULL;
}

static bool
s_step_from_json (const char *id, const json_t *rec, shf_run_step_t *step)
{
    step->id = strdup (id);
    assert (step->id);
    if (!json_is_object (rec)
        || !shf_step_status_parse (
            json_string_value (json_object_get (rec, "status")), &step->status)
        || !s_int_member (rec, "attempt", &step->attempt))
        return false;
    unsigned *has = &step->has;
    if (!s_opt_int (rec, "scheduled_at", SHF_REC_SCHEDULED_AT, has,
                    &step->scheduled_at)
        || !s_opt_int (rec, "started_at", SHF_REC_STARTED_AT, has,
                       &step->started_at)
        || !s_opt_int (rec, "closed_at", SHF_REC_CLOSED_AT, has,
                       &step->closed_at)
        || !s_opt_int (rec, "last_heartbeat", SHF_REC_LAST_HEARTBEAT, has,
                       &step->last_heartbeat)
        || !s_opt_int (rec, "retry_due", SHF_REC_RETRY_DUE, has,
                       &step->retry_due)
        || !s_opt_int (rec, "seq", SHF_REC_SEQ, has, &step->seq)
        || !s_opt_int (rec, "handbacks", SHF_REC_HANDBACKS, has,
                       &step->handbacks))
        return false;
    if (json_object_get (rec, "worker")
        && !(step->worker = s_strdup_member (rec, "worker")))
        return false;
    step->input = s_opt_json (rec, "input");
    step->output = s_opt_json (rec, "output");
    step->failure = s_opt_json (rec, "failure");
    step->heartbeat_details = s_opt_json (rec, "heartbeat_details");
    return true;
}

//  count zeroed steps (none: no array), so that a read failing part way
//  frees what is there.
static void
s_steps_new (shf_run_t *run, size_t count)
{
    if (count == 0)
        return;
    run->steps = calloc (count, sizeof *run->steps);
    assert (run->steps);  //  out of memory
    run->n_steps = count;
}

static bool
s_steps_from_json (shf_run_t *run, const json_t *steps)
{
    if (!json_is_object (steps))
        return false;
    size_t count = json_object_size (steps);
    s_steps_new (run, count);
    json_t *object = (json_t *) steps;  //  jansson's iterators are not const
    size_t i = 0;
    for (void *it = json_object_iter (object); it;
         it = json_object_iter_next (object, it), i++) {
        const char *id = json_object_iter_key (it);
        if (strlen (id) != json_object_iter_key_len (it)
            || !s_step_from_json (id, json_object_iter_value (it),
                                  &run->steps [i]))
            return false;
    }
    return true;
}

static bool
s_timers_from_json (shf_run_t *run, const json_t *timers)
{
    if (!timers)
        return true;
    if (!json_is_array (timers))
        return false;
    size_t i;
    const json_t *t;
    json_array_foreach (timers, i, t)
    {
        shf_run_timer_t *timer = shf_run_timer_push (run);
        int64_t id;
        if (!json_is_object (t) || !s_int_member (t, "id", &id) || id < 0
            || !s_int_member (t, "due", &timer->due)
            || !shf_timer_kind_parse (
                json_string_value (json_object_get (t, "kind")), &timer->kind))
            return false;
        timer->id = (uint64_t) id;
        const json_t *step = json_object_get (t, "step");
        if (json_is_null (step))
            timer->step = -1;
        else if (json_is_string (step)
                 && strlen (json_string_value (step))
                        == json_string_length (step)) {
            timer->step = shf_run_step_index (run, json_string_value (step));
            if (timer->step < 0)
                return false;  //  no such step
        }
        else
            return false;
        if (json_object_get (t, "attempt")
            && !s_int_member (t, "attempt", &timer->attempt))
            return false;
    }
    return true;
}

shf_err_t
shf_run_from_json (const json_t *state, shf_run_t **run_p)
{
    assert (run_p);
    *run_p = NULL;
    if (!json_is_object (state))
        return SHF_ECORRUPT;
    shf_run_t *run = shf_run_new ();
    if (json_object_size (state) == 0) {
        *run_p = run;
        return SHF_OK;
    }
    run->started = true;
    if (!(run->ns = s_strdup_member (state, "ns"))
        || !(run->workflow_id = s_strdup_member (state, "workflow_id"))
        || !(run->run_id = s_strdup_member (state, "run_id"))
        || !(run->name = s_strdup_member (state, "name"))
        || !shf_run_status_parse (
            json_string_value (json_object_get (state, "status")), &run->status)
        || !s_int_member (state, "version", &run->version)
        || !s_int_member (state, "started_at", &run->started_at)
        || !s_int_member (state, "next_event_id", &run->next_event_id)
        || !s_int_member (state, "next_timer_id", &run->next_timer_id))
        goto fail;
    const json_t *closed_at = json_object_get (state, "closed_at");
    if (closed_at && !json_is_null (closed_at)) {
        if (!s_int_member (state, "closed_at", &run->closed_at))
            goto fail;
        run->has_closed_at = true;
    }
    run->input = s_opt_json (state, "input");
    run->output = s_opt_json (state, "output");
    run->failure = s_opt_json (state, "failure");
    if (!run->input)
        run->input = json_null ();
    if (!run->output)
        run->output = json_null ();
    if (!run->failure)
        run->failure = json_null ();
    if (!s_steps_from_json (run, json_object_get (state, "steps"))
        || !s_timers_from_json (run, json_object_get (state, "timers")))
        goto fail;
    //  The machine changes both objects in place (a run's own copies): the
    //  queues are copied too; the newest payloads are only replaced, so
    //  last_signal's values can stay shared.
    json_t *signals = json_object_get (state, "signals");
    json_t *last_signal = json_object_get (state, "last_signal");
    if ((signals && !s_signals_valid (signals))
        || (last_signal && !json_is_object (last_signal)))
        goto fail;
    run->signals = signals ? s_signals_copy (signals) : json_object ();
    run->last_signal = last_signal ? json_copy (last_signal) : json_object ();
    if (!run->signals || !run->last_signal)
        abort ();  //  out of memory
    *run_p = run;
    return SHF_OK;
fail:
    shf_run_decref (run);
    return SHF_ECORRUPT;
}


//  --- msgpack -----------------------------------------------------------

static void
s_put_cstr (shf_mpack_out_t *out, const char *s)
{
    shf_mpack_put_short (out, s, strlen (s));
}

#define S_REC_ALL                                                              \
    (SHF_REC_SCHEDULED_AT | SHF_REC_STARTED_AT | SHF_REC_CLOSED_AT             \
     | SHF_REC_LAST_HEARTBEAT | SHF_REC_RETRY_DUE | SHF_REC_SEQ                \
     | SHF_REC_HANDBACKS)

//  --- the packed form -----------------------------------------------------
//
//  What shf_run_encode writes: one array, positions instead of names,
//  enums as their numbers, times after started_at as the difference from
//  it (a few bytes instead of nine), a timer as five integers in the
//  timers array, and nothing the key says (shf_run_ids_t). 126 bytes for
//  a finished three-step run where the map took ~650: a batch dirties
//  fewer LMDB pages, and a parked run costs less disk and cache. The enum
//  numbers are stored: new values go last.
//
//    [2, nil, nil, nil, name, version, status, nil,
//     closed_at - started_at (nil while open), input, output, failure,
//     next_event_id, next_timer_id, [step...], [timer fields...],
//     signals, last_signal]
//    (the first packed form, 1, held ns, workflow_id, run_id and
//    started_at where the nils are; it still reads, without the key's)
//    step: [id, status, attempt, present, the integers of the SHF_REC_*
//           bits set in present in bit order (times as differences),
//           then input, output, failure, heartbeat_details, worker for
//           the S_PACK_* bits set]
//    timer: id, due - started_at, step index (-1: the workflow's), kind,
//           attempt

#define S_PACKED_FORM    2  //  the IDs and start time left to the key
#define S_PACKED_FULL    1  //  the first packed form: they are in it
#define S_PACKED_MEMBERS 18
#define S_STEP_MEMBERS   4
#define S_TIMER_FIELDS   5
//  Stored-only bits of a packed step's "present", above the SHF_REC_* ones
#define S_PACK_INPUT     (1u << 8)
#define S_PACK_OUTPUT    (1u << 9)
#define S_PACK_FAILURE   (1u << 10)
#define S_PACK_HEARTBEAT (1u << 11)
#define S_PACK_WORKER    (1u << 12)
#define S_PACK_ALL                                                             \
    (S_REC_ALL | S_PACK_INPUT | S_PACK_OUTPUT | S_PACK_FAILURE                 \
     | S_PACK_HEARTBEAT | S_PACK_WORKER)
//  The SHF_REC_* integers that are times (stored as differences)
#define S_REC_TIMES                                                            \
    (SHF_REC_SCHEDULED_AT | SHF_REC_STARTED_AT | SHF_REC_CLOSED_AT             \
     | SHF_REC_LAST_HEARTBEAT | SHF_REC_RETRY_DUE)

//  Differences wrap instead of overflowing: any int64 goes there and back.
static int64_t
s_diff (int64_t value, int64_t base)
{
    return (int64_t) ((uint64_t) value - (uint64_t) base);
}

static int64_t
s_undiff (int64_t diff, int64_t base)
{
    return (int64_t) ((uint64_t) base + (uint64_t) diff);
}

//  A step's integers in bit order, as pointers into the step.
static int64_t *
s_step_int (shf_run_step_t *step, unsigned bit)
{
    switch (bit) {
        case SHF_REC_SCHEDULED_AT:
            return &step->scheduled_at;
        case SHF_REC_STARTED_AT:
            return &step->started_at;
        case SHF_REC_CLOSED_AT:
            return &step->closed_at;
        case SHF_REC_LAST_HEARTBEAT:
            return &step->last_heartbeat;
        case SHF_REC_RETRY_DUE:
            return &step->retry_due;
        case SHF_REC_SEQ:
            return &step->seq;
        default:
            assert (bit == SHF_REC_HANDBACKS);
            return &step->handbacks;
    }
}

static unsigned
s_step_present (const shf_run_step_t *step)
{
    return (step->has & S_REC_ALL) | (step->input ? S_PACK_INPUT : 0)
           | (step->output ? S_PACK_OUTPUT : 0)
           | (step->failure ? S_PACK_FAILURE : 0)
           | (step->heartbeat_details ? S_PACK_HEARTBEAT : 0)
           | (step->worker ? S_PACK_WORKER : 0);
}

//  A packed step, its values at depth 3 (run, steps, the step).
static shf_err_t
s_pack_step (shf_mpack_out_t *out, const shf_run_step_t *step, int64_t base)
{
    unsigned present = s_step_present (step);
    shf_mpack_put_array (out, S_STEP_MEMBERS
                                  + (size_t) __builtin_popcount (present));
    s_put_cstr (out, step->id);
    shf_mpack_put_int (out, step->status);
    shf_mpack_put_int (out, step->attempt);
    shf_mpack_put_int (out, present);
    for (unsigned bit = 1; bit <= SHF_REC_HANDBACKS; bit <<= 1)
        if (present & bit) {
            int64_t value = *s_step_int ((shf_run_step_t *) step, bit);
            shf_mpack_put_int (out, bit & S_REC_TIMES ? s_diff (value, base)
                                                      : value);
        }
    const json_t *values [] = {step->input, step->output, step->failure,
                               step->heartbeat_details};
    for (size_t i = 0; i < 4; i++)
        if (values [i] && shf_mpack_put_json (out, values [i], 3))
            return SHF_EINVAL;
    if (step->worker)
        s_put_cstr (out, step->worker);
    return SHF_OK;
}

static shf_err_t
s_pack_run (const shf_run_t *self, shf_mpack_out_t *out)
{
    int64_t base = self->started_at;
    shf_mpack_put_array (out, S_PACKED_MEMBERS);
    shf_mpack_put_int (out, S_PACKED_FORM);
    //  ns, workflow_id, run_id: the key's (shf_run_ids_t)
    shf_mpack_put_nil (out);
    shf_mpack_put_nil (out);
    shf_mpack_put_nil (out);
    s_put_cstr (out, self->name);
    shf_mpack_put_int (out, self->version);
    shf_mpack_put_int (out, self->status);
    shf_mpack_put_nil (out);  //  started_at: the key's
    if (self->has_closed_at)
        shf_mpack_put_int (out, s_diff (self->closed_at, base));
    else
        shf_mpack_put_nil (out);
    //  The run array's members are at depth 1.
    if (shf_mpack_put_json (out, self->input, 1)
        || shf_mpack_put_json (out, self->output, 1)
        || shf_mpack_put_json (out, self->failure, 1))
        return SHF_EINVAL;
    shf_mpack_put_int (out, self->next_event_id);
    shf_mpack_put_int (out, self->next_timer_id);
    shf_mpack_put_array (out, self->n_steps);
    for (size_t i = 0; i < self->n_steps; i++)
        if (s_pack_step (out, &self->steps [i], base))
            return SHF_EINVAL;
    shf_mpack_put_array (out, self->n_timers * S_TIMER_FIELDS);
    for (size_t i = 0; i < self->n_timers; i++) {
        const shf_run_timer_t *timer = &self->timers [i];
        assert (timer->step >= -1 && timer->step < (int) self->n_steps);
        shf_mpack_put_int (out, (int64_t) timer->id);
        shf_mpack_put_int (out, s_diff (timer->due, base));
        shf_mpack_put_int (out, timer->step);
        shf_mpack_put_int (out, timer->kind);
        shf_mpack_put_int (out, timer->attempt);
    }
    //  No signals object (a run built by hand) is {}, as in to_json.
    if (!self->signals)
        shf_mpack_put_map (out, 0);
    else if (shf_mpack_put_json (out, self->signals, 1))
        return SHF_EINVAL;
    if (!self->last_signal)
        shf_mpack_put_map (out, 0);
    else if (shf_mpack_put_json (out, self->last_signal, 1))
        return SHF_EINVAL;
    return SHF_OK;
}

//  An integer element of a packed array, into *value_p.
static bool
s_at_int (const json_t *array, size_t *pos, int64_t *value_p)
{
    const json_t *value = json_array_get (array, (*pos)++);
    if (!json_is_integer (value))
        return false;
    *value_p = json_integer_value (value);
    return true;
}

//  A string element with no NUL byte in it, copied; NULL if not one.
static char *
s_at_str (const json_t *array, size_t *pos)
{
    const json_t *value = json_array_get (array, (*pos)++);
    if (!json_is_string (value)
        || strlen (json_string_value (value)) != json_string_length (value))
        return NULL;
    char *copy = strdup (json_string_value (value));
    assert (copy);  //  out of memory
    return copy;
}

//  A value element, shared; NULL past the end.
static json_t *
s_at_json (const json_t *array, size_t *pos)
{
    json_t *value = json_array_get (array, (*pos)++);
    return value ? json_incref (value) : NULL;
}

static bool
s_unpack_step (const json_t *packed, shf_run_step_t *step, int64_t base)
{
    size_t pos = 0;
    int64_t status, present;
    if (!json_is_array (packed) || !(step->id = s_at_str (packed, &pos))
        || !s_at_int (packed, &pos, &status) || status < 0
        || status >= SHF_STEP_STATUS_COUNT
        || !s_at_int (packed, &pos, &step->attempt)
        || !s_at_int (packed, &pos, &present) || present < 0
        || (present & ~(int64_t) S_PACK_ALL)
        || json_array_size (packed)
               != S_STEP_MEMBERS + (size_t) __builtin_popcountll (present))
        return false;
    step->status = (shf_step_status_t) status;
    step->has = (unsigned) present & S_REC_ALL;
    for (unsigned bit = 1; bit <= SHF_REC_HANDBACKS; bit <<= 1)
        if (present & bit) {
            int64_t value;
            if (!s_at_int (packed, &pos, &value))
                return false;
            *s_step_int (step, bit) =
                bit & S_REC_TIMES ? s_undiff (value, base) : value;
        }
    json_t **values [] = {&step->input, &step->output, &step->failure,
                          &step->heartbeat_details};
    const unsigned bits [] = {S_PACK_INPUT, S_PACK_OUTPUT, S_PACK_FAILURE,
                              S_PACK_HEARTBEAT};
    for (size_t i = 0; i < 4; i++)
        if (present & bits [i])
            *values [i] = s_at_json (packed, &pos);
    if ((present & S_PACK_WORKER) && !(step->worker = s_at_str (packed, &pos)))
        return false;
    return true;
}

static bool
s_unpack_steps (shf_run_t *run, const json_t *steps)
{
    if (!json_is_array (steps))
        return false;
    size_t count = json_array_size (steps);
    s_steps_new (run, count);
    for (size_t i = 0; i < count; i++)
        if (!s_unpack_step (json_array_get (steps, i), &run->steps [i],
                            run->started_at))
            return false;
    return true;
}

static bool
s_unpack_timers (shf_run_t *run, const json_t *timers)
{
    if (!json_is_array (timers) || json_array_size (timers) % S_TIMER_FIELDS)
        return false;
    size_t pos = 0;
    while (pos < json_array_size (timers)) {
        shf_run_timer_t *timer = shf_run_timer_push (run);
        int64_t id, due, step, kind;
        if (!s_at_int (timers, &pos, &id) || id < 0
            || !s_at_int (timers, &pos, &due) || !s_at_int (timers, &pos, &step)
            || step < -1 || step >= (int64_t) run->n_steps
            || !s_at_int (timers, &pos, &kind) || kind < 0
            || kind >= SHF_TIMER_KIND_COUNT
            || !s_at_int (timers, &pos, &timer->attempt))
            return false;
        timer->id = (uint64_t) id;
        timer->due = s_undiff (due, run->started_at);
        timer->step = (int) step;
        timer->kind = (shf_timer_kind_t) kind;
    }
    return true;
}

//  A run from the packed array (shf_run_from_json's checks, by position).
static shf_err_t
s_unpack_run (const json_t *packed, const shf_run_ids_t *ids, shf_run_t **run_p)
{
    size_t pos = 0;
    int64_t form, status;
    if (json_array_size (packed) != S_PACKED_MEMBERS
        || !s_at_int (packed, &pos, &form)
        || (form != S_PACKED_FORM && form != S_PACKED_FULL))
        return SHF_ECORRUPT;
    bool keyed = form == S_PACKED_FORM;
    if (keyed
        && (!ids || !ids->ns || !ids->workflow_id || !ids->run_id
            || !json_is_null (json_array_get (packed, 1))
            || !json_is_null (json_array_get (packed, 2))
            || !json_is_null (json_array_get (packed, 3))
            || !json_is_null (json_array_get (packed, 7))))
        return SHF_ECORRUPT;
    shf_run_t *run = shf_run_new ();
    run->started = true;
    if (keyed) {
        run->ns = strdup (ids->ns);
        run->workflow_id = strdup (ids->workflow_id);
        run->run_id = strdup (ids->run_id);
        assert (run->ns && run->workflow_id && run->run_id);  //  memory
        run->started_at = ids->started_at;
        pos = 4;
    }
    else if (!(run->ns = s_at_str (packed, &pos))
             || !(run->workflow_id = s_at_str (packed, &pos))
             || !(run->run_id = s_at_str (packed, &pos)))
        goto fail;
    if (!(run->name = s_at_str (packed, &pos))
        || !s_at_int (packed, &pos, &run->version)
        || !s_at_int (packed, &pos, &status) || status < 0
        || status >= SHF_RUN_STATUS_COUNT)
        goto fail;
    if (keyed)
        pos++;
    else if (!s_at_int (packed, &pos, &run->started_at))
        goto fail;
    run->status = (shf_run_status_t) status;
    const json_t *closed_at = json_array_get (packed, pos);
    if (!json_is_null (closed_at)) {
        int64_t diff;
        if (!s_at_int (packed, &pos, &diff))
            goto fail;
        run->closed_at = s_undiff (diff, run->started_at);
        run->has_closed_at = true;
    }
    else
        pos++;
    run->input = s_at_json (packed, &pos);
    run->output = s_at_json (packed, &pos);
    run->failure = s_at_json (packed, &pos);
    if (!s_at_int (packed, &pos, &run->next_event_id)
        || !s_at_int (packed, &pos, &run->next_timer_id)
        || !s_unpack_steps (run, json_array_get (packed, pos++))
        || !s_unpack_timers (run, json_array_get (packed, pos++)))
        goto fail;
    json_t *signals = json_array_get (packed, pos++);
    json_t *last_signal = json_array_get (packed, pos++);
    if (!s_signals_valid (signals) || !json_is_object (last_signal))
        goto fail;
    run->signals = s_signals_copy (signals);
    run->last_signal = json_copy (last_signal);
    if (!run->signals || !run->last_signal)
        abort ();  //  out of memory
    *run_p = run;
    return SHF_OK;
fail:
    shf_run_decref (run);
    return SHF_ECORRUPT;
}

shf_err_t
shf_run_encode (const shf_run_t *self, shf_mpack_out_t *out)
{
    assert (self && out);
    if (!self->started) {
        shf_mpack_put_map (out, 0);
        return SHF_OK;
    }
    //  A run that cannot be written whole is taken back: out holds what it
    //  held before, never part of a map.
    size_t before = out->size;
    shf_err_t rc = s_pack_run (self, out);
    if (rc)
        out->size = before;
    return rc;
}

shf_err_t
shf_run_decode (const void *data, size_t size, const shf_run_ids_t *ids,
                shf_run_t **run_p)
{
    assert (run_p);
    *run_p = NULL;
    json_t *state;
    if (shf_mpack_decode (data, size, &state, NULL, 0) != SHF_OK)
        return SHF_ECORRUPT;
    //  The packed array, or the map runs were stored as before it.
    shf_err_t rc = json_is_array (state) ? s_unpack_run (state, ids, run_p)
                                         : shf_run_from_json (state, run_p);
    json_decref (state);
    return rc;
}


//  --------------------------------------------------------------------
//  Self-test

//  A JSON text of the test's own, as a tree.
static json_t *
s_load (const char *text)
{
    json_error_t error;
    json_t *value = json_loads (text, JSON_DECODE_ANY, &error);
    if (!value)
        fprintf (stderr, "bad test JSON: %s\n", error.text);
    assert (value);
    return value;
}

static json_t *
s_decode_tree (const void *data, size_t size)
{
    json_t *tree = NULL;
    char err [256];
    shf_err_t rc = shf_mpack_decode (data, size, &tree, err, sizeof err);
    if (rc)
        fprintf (stderr, "decode: %s\n", err);
    assert (rc == SHF_OK);
    return tree;
}

//  Checks a run every way: its JSON is expect (when given); from_json of
//  that JSON gives the same JSON; its packed form decodes back to it, and
//  so does the map form runs had before (that JSON's msgpack).
static void
s_check_run (const shf_run_t *run, const char *expect_text)
{
    json_t *state = shf_run_to_json (run);
    if (expect_text) {
        json_t *expect = s_load (expect_text);
        if (!json_equal (state, expect)) {
            char *got = json_dumps (state, JSON_SORT_KEYS);
            fprintf (stderr, "to_json gave %s\n", got);
            free (got);
        }
        assert (json_equal (state, expect));
        json_decref (expect);
    }
    shf_run_t *back;
    assert (shf_run_from_json (state, &back) == SHF_OK);
    json_t *again = shf_run_to_json (back);
    assert (json_equal (again, state));
    json_decref (again);
    shf_run_decref (back);

    shf_mpack_out_t out = {0};
    shf_mpack_put_int (&out, 5);  //  encode appends after what is there
    assert (shf_run_encode (run, &out) == SHF_OK);
    json_t *tree = s_decode_tree (out.data + 1, out.size - 1);
    assert (json_is_array (tree) == run->started);
    shf_run_ids_t ids = {run->ns, run->workflow_id, run->run_id,
                         run->started_at};
    if (run->started) {
        //  Without the key's IDs the packed form is no run; with them in
        //  it (the first packed form) it needs none.
        assert (shf_run_decode (out.data + 1, out.size - 1, NULL, &back)
                    == SHF_ECORRUPT
                && !back);
        json_array_set_new (tree, 0, json_integer (S_PACKED_FULL));
        json_array_set_new (tree, 1, json_string (run->ns));
        json_array_set_new (tree, 2, json_string (run->workflow_id));
        json_array_set_new (tree, 3, json_string (run->run_id));
        json_array_set_new (tree, 7, json_integer (run->started_at));
        char *full;
        size_t full_size;
        assert (shf_mpack_encode (tree, &full, &full_size) == SHF_OK);
        assert (shf_run_decode (full, full_size, NULL, &back) == SHF_OK);
        again = shf_run_to_json (back);
        assert (json_equal (again, state));
        json_decref (again);
        shf_run_decref (back);
        free (full);
    }
    json_decref (tree);
    assert (shf_run_decode (out.data + 1, out.size - 1, &ids, &back) == SHF_OK);
    again = shf_run_to_json (back);
    assert (json_equal (again, state));
    json_decref (again);
    //  Encoding the decoded run gives the same bytes.
    shf_mpack_out_t twice = {0};
    assert (shf_run_encode (back, &twice) == SHF_OK);
    assert (twice.size == out.size - 1
            && memcmp (twice.data, out.data + 1, twice.size) == 0);
    shf_mpack_out_free (&twice);
    shf_run_decref (back);

    char *data;
    size_t size;
    assert (shf_mpack_encode (state, &data, &size) == SHF_OK);
    if (run->started)
        assert (size > out.size - 1);  //  the packed form is the smaller
    assert (shf_run_decode (data, size, NULL, &back) == SHF_OK);
    again = shf_run_to_json (back);
    assert (json_equal (again, state));
    json_decref (again);
    shf_run_decref (back);
    free (data);
    shf_mpack_out_free (&out);
    json_decref (state);
}

static char *
s_dup (const char *s)
{
    char *copy = strdup (s);
    assert (copy);
    return copy;
}

//  A started run with its ids, no steps.
static shf_run_t *
s_started (shf_run_status_t status)
{
    shf_run_t *run = shf_run_new ();
    run->started = true;
    run->ns = s_dup ("default");
    run->workflow_id = s_dup ("order-42");
    run->run_id = s_dup ("r-1");
    run->name = s_dup ("orders");
    run->version = 3;
    run->status = status;
    run->started_at = 1000;
    run->input = s_load ("{\"qty\": 2}");
    run->output = json_null ();
    run->failure = json_null ();
    run->next_event_id = 9;
    run->next_timer_id = 3;
    run->signals = json_object ();
    run->last_signal = json_object ();
    return run;
}

//  A running run: 3 steps (one done with output, one started with a
//  worker and heartbeat, one waiting for a signal), 2 timers (one the
//  workflow's), a queued signal and a newest one.
static shf_run_t *
s_running (void)
{
    shf_run_t *run = s_started (SHF_RUN_RUNNING);
    run->n_steps = 3;
    run->steps = calloc (3, sizeof *run->steps);
    assert (run->steps);
    shf_run_step_t *charge = &run->steps [0];
    charge->id = s_dup ("charge");
    charge->status = SHF_STEP_COMPLETED;
    charge->attempt = 2;
    charge->has = SHF_REC_SCHEDULED_AT | SHF_REC_STARTED_AT | SHF_REC_CLOSED_AT
                  | SHF_REC_HANDBACKS;
    charge->scheduled_at = 1001;
    charge->started_at = 1002;
    charge->closed_at = 1500;
    charge->handbacks = 1;
    charge->input = s_load ("{\"amount\": 10.5}");
    charge->output = s_load ("{\"receipt\": \"R1\", \"ok\": true}");
    charge->failure = s_load ("{\"type\": \"Timeout\"}");
    shf_run_step_t *ship = &run->steps [1];
    ship->id = s_dup ("ship");
    ship->status = SHF_STEP_STARTED;
    ship->attempt = 1;
    ship->has = SHF_REC_SCHEDULED_AT | SHF_REC_STARTED_AT
                | SHF_REC_LAST_HEARTBEAT | SHF_REC_RETRY_DUE;
    ship->scheduled_at = 1501;
    ship->started_at = 1502;
    ship->last_heartbeat = 1600;
    ship->retry_due = 0;
    ship->worker = s_dup ("w-\xc3\xa9t\xc3\xa9");
    ship->heartbeat_details = s_load ("[1, null, \"x\"]");
    ship->input = json_null ();  //  present, null
    shf_run_step_t *approve = &run->steps [2];
    approve->id = s_dup ("approve");
    approve->status = SHF_STEP_STARTED;
    approve->has = SHF_REC_SEQ;
    approve->seq = 7;
    shf_run_timer_t *timer = shf_run_timer_push (run);
    *timer = (shf_run_timer_t){1, 90000, -1, SHF_TIMER_WORKFLOW, 0};
    timer = shf_run_timer_push (run);
    *timer = (shf_run_timer_t){2, 2600, 1, SHF_TIMER_HEARTBEAT, 1};
    json_decref (run->signals);
    json_decref (run->last_signal);
    run->signals = s_load ("{\"approved\": [{\"by\": \"ann\"}, 2]}");
    run->last_signal = s_load ("{\"approved\": 2, \"other\": null}");
    return run;
}

//  A closed run with a failure, its steps in the other states.
static shf_run_t *
s_failed (void)
{
    shf_run_t *run = s_started (SHF_RUN_FAILED);
    run->has_closed_at = true;
    run->closed_at = 5000;
    json_decref (run->failure);
    run->failure = s_load ("{\"type\": \"ActivityFailed\", \"message\": "
                           "\"card declined\", \"step\": \"pay\"}");
    run->n_steps = 4;
    run->steps = calloc (4, sizeof *run->steps);
    assert (run->steps);
    const char *ids [4] = {"pay", "wait", "skip", "undo"};
    shf_step_status_t states [4] = {SHF_STEP_FAILED, SHF_STEP_CANCELED,
                                    SHF_STEP_SKIPPED, SHF_STEP_PENDING};
    for (int i = 0; i < 4; i++) {
        run->steps [i].id = s_dup (ids [i]);
        run->steps [i].status = states [i];
    }
    run->steps [0].attempt = 3;
    run->steps [0].failure = json_incref (run->failure);
    run->steps [1].has = SHF_REC_CLOSED_AT;
    run->steps [1].closed_at = -7;
    return run;
}

#define S_RUNNING_JSON                                                         \
    "{\"ns\": \"default\", \"workflow_id\": \"order-42\", \"run_id\": "        \
    "\"r-1\", \"name\": \"orders\", \"version\": 3, \"status\": "              \
    "\"running\", \"started_at\": 1000, \"closed_at\": null, \"input\": "      \
    "{\"qty\": 2}, \"output\": null, \"failure\": null, \"next_event_id\": "   \
    "9, \"next_timer_id\": 3, \"steps\": {"                                    \
    "\"charge\": {\"status\": \"completed\", \"attempt\": 2, "                 \
    "\"scheduled_at\": 1001, \"started_at\": 1002, \"closed_at\": 1500, "      \
    "\"input\": {\"amount\": 10.5}, \"output\": {\"receipt\": \"R1\", "        \
    "\"ok\": true}, \"failure\": {\"type\": \"Timeout\"}, \"handbacks\": 1}, " \
    "\"ship\": {\"status\": \"started\", \"attempt\": 1, \"scheduled_at\": "   \
    "1501, \"started_at\": 1502, \"input\": null, \"heartbeat_details\": "     \
    "[1, null, \"x\"], \"last_heartbeat\": 1600, \"worker\": "                 \
    "\"w-\xc3\xa9t\xc3\xa9\", \"retry_due\": 0}, "                             \
    "\"approve\": {\"status\": \"started\", \"attempt\": 0, \"seq\": 7}}, "    \
    "\"timers\": [{\"id\": 1, \"due\": 90000, \"step\": null, \"kind\": "      \
    "\"workflow\", \"attempt\": 0}, {\"id\": 2, \"due\": 2600, \"step\": "     \
    "\"ship\", \"kind\": \"heartbeat\", \"attempt\": 1}], \"signals\": "       \
    "{\"approved\": [{\"by\": \"ann\"}, 2]}, \"last_signal\": "                \
    "{\"approved\": 2, \"other\": null}}"

//  text is not a run: from_json and decode of its msgpack say corrupt.
//  The IDs a stored test run's key would give.
static const shf_run_ids_t s_test_ids = {"default", "w", "r", 100};

static void
s_expect_corrupt (const char *text, const char *why, bool verbose)
{
    if (verbose)
        printf ("  corrupt: %s\n", why);
    json_t *state = s_load (text);
    shf_run_t *run = (shf_run_t *) 1;
    assert (shf_run_from_json (state, &run) == SHF_ECORRUPT && !run);
    char *data;
    size_t size;
    assert (shf_mpack_encode (state, &data, &size) == SHF_OK);
    run = (shf_run_t *) 1;
    assert (shf_run_decode (data, size, &s_test_ids, &run) == SHF_ECORRUPT
            && !run);
    free (data);
    json_decref (state);
}

//  The running state with one member replaced (text: "key": value).
static void
s_expect_corrupt_with (const char *key, const char *value_text, const char *why,
                       bool verbose)
{
    json_t *state = s_load (S_RUNNING_JSON);
    json_object_set_new (state, key, s_load (value_text));
    char *text = json_dumps (state, 0);
    s_expect_corrupt (text, why, verbose);
    free (text);
    json_decref (state);
}

//  The packed form of the running test run with the element at path
//  (indexes into nested arrays, -1 ending it) replaced by value_text.
static void
s_expect_packed_corrupt (const int *path, const char *value_text,
                         const char *why, bool verbose)
{
    shf_run_t *run = s_running ();
    shf_mpack_out_t out = {0};
    assert (shf_run_encode (run, &out) == SHF_OK);
    shf_run_decref (run);
    json_t *tree = s_decode_tree (out.data, out.size);
    shf_mpack_out_free (&out);
    json_t *parent = tree;
    for (; path [1] >= 0; path++)
        parent = json_array_get (parent, (size_t) path [0]);
    assert (json_is_array (parent));
    if (value_text)
        assert (
            json_array_set_new (parent, (size_t) path [0], s_load (value_text))
            == 0);
    else
        assert (json_array_remove (parent, (size_t) path [0]) == 0);
    char *text = json_dumps (tree, JSON_ENCODE_ANY);
    s_expect_corrupt (text, why, verbose);
    free (text);
    json_decref (tree);
}

static void
s_packed_corrupt_tests (bool verbose)
{
    //  Positions: 0 form, 1-3 and 7 nil (the key's), 4 name, 6 status,
    //  8 closed_at, 14 steps,
    //  15 timers, 16 signals, 17 last_signal; a step: 0 id, 1 status,
    //  2 attempt, 3 present.
    s_expect_packed_corrupt ((int []){0, -1}, "3", "unknown packed form",
                             verbose);
    s_expect_packed_corrupt ((int []){17, -1}, NULL, "a member short", verbose);
    s_expect_packed_corrupt ((int []){6, -1}, "6", "status out of range",
                             verbose);
    s_expect_packed_corrupt ((int []){6, -1}, "\"running\"", "status a name",
                             verbose);
    s_expect_packed_corrupt ((int []){7, -1}, "5",
                             "a start time where the key's goes", verbose);
    s_expect_packed_corrupt ((int []){1, -1}, "\"default\"",
                             "a namespace where the key's goes", verbose);
    s_expect_packed_corrupt ((int []){4, -1}, "null", "no name", verbose);
    s_expect_packed_corrupt ((int []){8, -1}, "0.5", "closed_at a float",
                             verbose);
    s_expect_packed_corrupt ((int []){14, -1}, "{}", "steps not an array",
                             verbose);
    s_expect_packed_corrupt ((int []){14, 0, 1, -1}, "99",
                             "step status out of range", verbose);
    s_expect_packed_corrupt ((int []){14, 0, 3, -1}, "1048576",
                             "step with an unknown present bit", verbose);
    s_expect_packed_corrupt ((int []){14, 0, 3, -1}, "127",
                             "step present bits without their values", verbose);
    s_expect_packed_corrupt ((int []){14, 0, 0, -1}, "7", "step id a number",
                             verbose);
    s_expect_packed_corrupt ((int []){15, -1}, "[1, 2, 3]",
                             "timers not in fives", verbose);
    s_expect_packed_corrupt ((int []){15, -1}, "[1, 2, 9, 1, 0]",
                             "timer step out of range", verbose);
    s_expect_packed_corrupt ((int []){15, -1}, "[1, 2, -1, 42, 0]",
                             "timer kind out of range", verbose);
    s_expect_packed_corrupt ((int []){15, -1}, "[-1, 2, -1, 1, 0]",
                             "timer id negative", verbose);
    s_expect_packed_corrupt ((int []){16, -1}, "{\"a\": 1}",
                             "signal queue not an array", verbose);
    s_expect_packed_corrupt ((int []){17, -1}, "[]",
                             "last_signal not an object", verbose);
}

void
shf_run_test (bool verbose)
{
    printf (" * shf_run: ");
    if (verbose)
        printf ("\n");

    //  Names both ways
    for (int i = 0; i < SHF_RUN_STATUS_COUNT; i++) {
        shf_run_status_t status;
        assert (shf_run_status_parse (shf_run_status_name (i), &status)
                && (int) status == i);
    }
    for (int i = 0; i < SHF_STEP_STATUS_COUNT; i++) {
        shf_step_status_t status;
        assert (shf_step_status_parse (shf_step_status_name (i), &status)
                && (int) status == i);
    }
    for (int i = 0; i < SHF_TIMER_KIND_COUNT; i++) {
        shf_timer_kind_t kind;
        assert (shf_timer_kind_parse (shf_timer_kind_name (i), &kind)
                && (int) kind == i);
    }
    assert (strcmp (shf_run_status_name (SHF_RUN_TIMED_OUT), "timed_out") == 0);
    assert (strcmp (shf_step_status_name (SHF_STEP_SKIPPED), "skipped") == 0);
    assert (strcmp (shf_timer_kind_name (SHF_TIMER_START_TO_CLOSE),
                    "start_to_close")
            == 0);
    shf_run_status_t status;
    assert (!shf_run_status_parse ("Running", &status));
    assert (!shf_run_status_parse (NULL, &status));

    //  An empty run: {}, one byte of msgpack, and back.
    shf_run_t *run = shf_run_new ();
    assert (run->refs == 1 && !run->started);
    s_check_run (run, "{}");
    shf_mpack_out_t out = {0};
    assert (shf_run_encode (run, &out) == SHF_OK);
    assert (out.size == 1 && out.data [0] == 0x80);
    shf_run_t *back;
    assert (shf_run_decode (out.data, out.size, NULL, &back) == SHF_OK);
    assert (!back->started && back->n_steps == 0);
    shf_run_decref (back);
    //  Reference counting
    assert (shf_run_incref (run) == run && run->refs == 2);
    shf_run_decref (run);
    assert (run->refs == 1);
    shf_run_decref (run);
    shf_run_decref (NULL);

    //  A running run with every kind of field
    run = s_running ();
    assert (shf_run_step_index (run, "ship") == 1);
    assert (shf_run_step_index (run, "nope") == -1);
    s_check_run (run, S_RUNNING_JSON);
    //  Its signal queues are its own after from_json and in to_json: a
    //  queue taken from in place does not change the other side.
    json_t *state = shf_run_to_json (run);
    assert (shf_run_from_json (state, &back) == SHF_OK);
    assert (json_array_remove (json_object_get (back->signals, "approved"), 0)
            == 0);
    json_t *queue =
        json_object_get (json_object_get (state, "signals"), "approved");
    assert (json_array_size (queue) == 2);
    assert (json_array_size (json_object_get (run->signals, "approved")) == 2);
    //  Step order is the object's
    assert (back->n_steps == 3 && strcmp (back->steps [2].id, "approve") == 0);
    assert (back->timers [1].step == 1 && back->steps [1].worker);
    //  Payloads are shared, not copied
    assert (back->steps [0].output
            == json_object_get (
                json_object_get (json_object_get (state, "steps"), "charge"),
                "output"));
    shf_run_decref (back);
    json_decref (state);

    //  Timers: pushed past the first growth, removed keeping order
    for (int i = 0; i < 7; i++) {
        shf_run_timer_t *timer = shf_run_timer_push (run);
        assert (timer->id == 0 && timer->due == 0);
        timer->id = (uint64_t) (10 + i);
        timer->step = i % 2 ? 2 : -1;
        timer->kind = SHF_TIMER_SLEEP;
    }
    assert (run->n_timers == 9 && run->cap_timers == 16);
    shf_run_timer_remove (run, 0);
    shf_run_timer_remove (run, 7);
    assert (run->n_timers == 7 && run->timers [0].id == 2
            && run->timers [6].id == 15);
    s_check_run (run, NULL);
    shf_run_decref (run);

    //  A closed run with a failure, its steps in the other states
    run = s_failed ();
    s_check_run (
        run, "{\"ns\": \"default\", \"workflow_id\": \"order-42\", \"run_id\": "
             "\"r-1\", \"name\": \"orders\", \"version\": 3, \"status\": "
             "\"failed\", \"started_at\": 1000, \"closed_at\": 5000, "
             "\"input\": {\"qty\": 2}, \"output\": null, \"failure\": "
             "{\"type\": \"ActivityFailed\", \"message\": \"card declined\", "
             "\"step\": \"pay\"}, \"next_event_id\": 9, \"next_timer_id\": 3, "
             "\"steps\": {\"pay\": {\"status\": \"failed\", \"attempt\": 3, "
             "\"failure\": {\"type\": \"ActivityFailed\", \"message\": "
             "\"card declined\", \"step\": \"pay\"}}, \"wait\": {\"status\": "
             "\"canceled\", \"attempt\": 0, \"closed_at\": -7}, \"skip\": "
             "{\"status\": \"skipped\", \"attempt\": 0}, \"undo\": "
             "{\"status\": \"pending\", \"attempt\": 0}}, \"timers\": [], "
             "\"signals\": {}, \"last_signal\": {}}");
    shf_run_decref (run);

    //  A state as it was stored when it was a JSON object: members in
    //  another order, closed_at null, steps with status and attempt only.
    {
        const char *old_text =
            "{\"steps\": {\"a\": {\"attempt\": 0, \"status\": \"pending\"}, "
            "\"b\": {\"status\": \"scheduled\", \"attempt\": 1}}, "
            "\"timers\": [{\"step\": \"b\", \"kind\": \"schedule_to_start\", "
            "\"attempt\": 1, \"due\": 700, \"id\": 1}], \"signals\": {}, "
            "\"last_signal\": {}, \"status\": \"running\", \"closed_at\": "
            "null, \"next_timer_id\": 2, \"next_event_id\": 4, \"ns\": "
            "\"default\", \"workflow_id\": \"w\", \"run_id\": \"r\", "
            "\"name\": \"n\", \"version\": 1, \"started_at\": 100, "
            "\"input\": [1, 2], \"output\": null, \"failure\": null}";
        json_t *old = s_load (old_text);
        char *data;
        size_t size;
        assert (shf_mpack_encode (old, &data, &size) == SHF_OK);
        assert (shf_run_decode (data, size, NULL, &run) == SHF_OK);
        free (data);
        assert (run->started && run->n_steps == 2 && run->n_timers == 1
                && run->timers [0].step == 1 && !run->has_closed_at
                && strcmp (run->steps [0].id, "a") == 0);
        s_check_run (run, old_text);
        shf_run_decref (run);
        json_decref (old);
        //  Members absent from old states read as their empty values.
        json_t *lean = s_load (
            "{\"ns\": \"d\", \"workflow_id\": \"w\", \"run_id\": \"r\", "
            "\"name\": \"n\", \"version\": 1, \"status\": \"completed\", "
            "\"started_at\": 1, \"next_event_id\": 1, \"next_timer_id\": 1, "
            "\"steps\": {}, \"extra\": [1], \"timers\": [{\"id\": 1, "
            "\"due\": 5, \"step\": null, \"kind\": \"sleep\"}]}");
        assert (shf_run_from_json (lean, &run) == SHF_OK);
        json_decref (lean);
        s_check_run (
            run, "{\"ns\": \"d\", \"workflow_id\": \"w\", \"run_id\": \"r\", "
                 "\"name\": \"n\", \"version\": 1, \"status\": \"completed\", "
                 "\"started_at\": 1, \"closed_at\": null, \"input\": null, "
                 "\"output\": null, \"failure\": null, \"next_event_id\": 1, "
                 "\"next_timer_id\": 1, \"steps\": {}, \"timers\": [{\"id\": "
                 "1, \"due\": 5, \"step\": null, \"kind\": \"sleep\", "
                 "\"attempt\": 0}], \"signals\": {}, \"last_signal\": {}}");
        shf_run_decref (run);
    }

    //  Not runs
    s_expect_corrupt_with ("status", "\"paused\"", "unknown status", verbose);
    s_expect_corrupt_with ("status", "1", "status not a string", verbose);
    s_expect_corrupt_with ("steps", "[]", "steps not an object", verbose);
    s_expect_corrupt_with ("steps", "{\"a\": {\"status\": \"pending\"}}",
                           "step without attempt", verbose);
    s_expect_corrupt_with ("steps", "{\"a\": 1}", "step not an object",
                           verbose);
    s_expect_corrupt_with (
        "steps", "{\"a\": {\"status\": \"pending\", \"attempt\": 0.5}}",
        "step attempt a float", verbose);
    s_expect_corrupt_with ("steps",
                           "{\"a\": {\"status\": \"pending\", \"attempt\": 0, "
                           "\"worker\": 3}}",
                           "step worker not a string", verbose);
    s_expect_corrupt_with ("steps",
                           "{\"a\": {\"status\": \"pending\", \"attempt\": 0, "
                           "\"seq\": null}}",
                           "step seq null", verbose);
    s_expect_corrupt_with ("steps",
                           "{\"a\": {\"status\": \"late\", "
                           "\"attempt\": 0}}",
                           "unknown step status", verbose);
    s_expect_corrupt_with ("timers",
                           "[{\"id\": 1, \"due\": 2, \"step\": null, "
                           "\"kind\": \"alarm\", \"attempt\": 0}]",
                           "timer with unknown kind", verbose);
    s_expect_corrupt_with ("timers",
                           "[{\"id\": 1, \"due\": 2, \"step\": \"nope\", "
                           "\"kind\": \"sleep\", \"attempt\": 0}]",
                           "timer step naming no step", verbose);
    s_expect_corrupt_with ("timers",
                           "[{\"id\": -1, \"due\": 2, \"step\": null, "
                           "\"kind\": \"sleep\"}]",
                           "timer id negative", verbose);
    s_expect_corrupt_with ("timers", "{}", "timers not an array", verbose);
    s_expect_corrupt_with ("ns", "5", "ns not a string", verbose);
    s_expect_corrupt_with ("version", "\"3\"", "version a string", verbose);
    s_expect_corrupt_with ("closed_at", "\"later\"", "closed_at a string",
                           verbose);
    s_expect_corrupt_with ("signals", "{\"a\": 1}", "signal queue not an array",
                           verbose);
    s_expect_corrupt_with ("last_signal", "[]", "last_signal not an object",
                           verbose);
    s_expect_corrupt ("{\"ns\": \"x\"}", "most members missing", verbose);
    s_expect_corrupt ("[]", "an empty array top level", verbose);
    s_packed_corrupt_tests (verbose);
    s_expect_corrupt ("7", "an integer top level", verbose);
    {
        //  A string with a NUL in it would be cut short: corrupt.
        json_t *bad = s_load (S_RUNNING_JSON);
        json_object_set_new (bad, "ns", json_stringn ("a\0b", 3));
        assert (shf_run_from_json (bad, &run) == SHF_ECORRUPT && !run);
        json_decref (bad);
        const uint8_t garbage [] = {0xc1, 0x00, 0xff};
        run = (shf_run_t *) 1;
        assert (shf_run_decode (garbage, sizeof garbage, &s_test_ids, &run)
                    == SHF_ECORRUPT
                && !run);
        const uint8_t truncated [] = {0x81, 0xa2, 'n', 's'};
        assert (shf_run_decode (truncated, sizeof truncated, NULL, &run)
                    == SHF_ECORRUPT
                && !run);
        assert (shf_run_decode (NULL, 0, NULL, &run) == SHF_ECORRUPT && !run);
        assert (shf_run_from_json (NULL, &run) == SHF_ECORRUPT && !run);
    }

    //  Depth: a payload is refused exactly when shf_mpack_encode would
    //  refuse the state, and the writer is left as it was. A step output
    //  starts at depth 3, so 61 levels fit and 62 do not (nor 70).
    const int levels [3] = {61, 62, 70};
    for (int l = 0; l < 3; l++) {
        run = s_running ();
        json_t *deep = json_array ();
        for (int i = 1; i < levels [l]; i++) {
            json_t *outer = json_array ();
            json_array_append_new (outer, deep);
            deep = outer;
        }
        json_decref (run->steps [2].output);
        run->steps [2].output = deep;
        state = shf_run_to_json (run);
        char *data;
        size_t size;
        shf_err_t expect = shf_mpack_encode (state, &data, &size);
        if (expect == SHF_OK)
            free (data);
        assert (expect == (levels [l] == 61 ? SHF_OK : SHF_EINVAL));
        out.size = 0;
        shf_mpack_put_int (&out, 1);
        assert (shf_run_encode (run, &out) == expect);
        //  packed: smaller than the map, or nothing of it left
        assert (expect == SHF_OK ? out.size > 1 && out.size < 1 + size
                                 : out.size == 1);
        json_decref (state);
        shf_run_decref (run);
    }
    shf_mpack_out_free (&out);

    //  Seeds for fuzz_run: SHF_RUN_CORPUS=DIR writes the test's runs there
    //  as shf_run_encode writes them.
    const char *corpus = getenv ("SHF_RUN_CORPUS");
    if (corpus) {
        const char *names [6] = {"empty",     "running",  "failed",
                                 "timed_out", "canceled", "many_timers"};
        shf_run_t *runs [6] = {shf_run_new (), s_running (),
                               s_failed (),    s_started (SHF_RUN_TIMED_OUT),
                               s_running (),   s_running ()};
        runs [4]->status = SHF_RUN_CANCELED;
        runs [4]->has_closed_at = true;
        runs [4]->closed_at = 99;
        shf_run_timer_remove (runs [4], 0);
        for (int i = 0; i < 10; i++) {  //  past the first growth
            shf_run_timer_t *timer = shf_run_timer_push (runs [5]);
            timer->id = (uint64_t) (3 + i);
            timer->due = 3000 + i;
            timer->step = i % 3;
            timer->kind = (shf_timer_kind_t) (i % SHF_TIMER_KIND_COUNT);
            timer->attempt = i;
        }
        for (int i = 0; i < 6; i++) {
            out.size = 0;
            assert (shf_run_encode (runs [i], &out) == SHF_OK);
            char path [4096];
            snprintf (path, sizeof path, "%s/%s", corpus, names [i]);
            FILE *file = fopen (path, "wb");
            assert (file);
            assert (fwrite (out.data, 1, out.size, file) == out.size);
            fclose (file);
            shf_run_decref (runs [i]);
        }
        shf_mpack_out_free (&out);
    }

    printf ("OK\n");
}
