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

static bool
s_steps_from_json (shf_run_t *run, const json_t *steps)
{
    if (!json_is_object (steps))
        return false;
    size_t count = json_object_size (steps);
    if (count == 0)
        return true;
    //  All zero first, so a failure part way frees what is there.
    run->steps = calloc (count, sizeof *run->steps);
    assert (run->steps);
    run->n_steps = count;
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

//  A key of the stored layout: a literal, its length known at compile time.
#define S_KEY(out, key) shf_mpack_put_short ((out), key, sizeof key - 1)

static void
s_put_cstr (shf_mpack_out_t *out, const char *s)
{
    shf_mpack_put_short (out, s, strlen (s));
}

#define S_REC_ALL                                                              \
    (SHF_REC_SCHEDULED_AT | SHF_REC_STARTED_AT | SHF_REC_CLOSED_AT             \
     | SHF_REC_LAST_HEARTBEAT | SHF_REC_RETRY_DUE | SHF_REC_SEQ                \
     | SHF_REC_HANDBACKS)

//  Members of a step record: the two always there, one per bit set, one
//  per value present.
static size_t
s_step_members (const shf_run_step_t *step)
{
    return 2 + (size_t) __builtin_popcount (step->has & S_REC_ALL)
           + (step->input != NULL) + (step->output != NULL)
           + (step->failure != NULL) + (step->heartbeat_details != NULL)
           + (step->worker != NULL);
}

//  A step record, its values at depth 3 (run map, "steps", the record).
static shf_err_t
s_put_step (shf_mpack_out_t *out, const shf_run_step_t *step)
{
    const int depth = 3;
    shf_mpack_put_map (out, s_step_members (step));
    S_KEY (out, "status");
    s_put_cstr (out, shf_step_status_name (step->status));
    S_KEY (out, "attempt");
    shf_mpack_put_int (out, step->attempt);
    if (step->has & SHF_REC_SCHEDULED_AT) {
        S_KEY (out, "scheduled_at");
        shf_mpack_put_int (out, step->scheduled_at);
    }
    if (step->has & SHF_REC_STARTED_AT) {
        S_KEY (out, "started_at");
        shf_mpack_put_int (out, step->started_at);
    }
    if (step->has & SHF_REC_CLOSED_AT) {
        S_KEY (out, "closed_at");
        shf_mpack_put_int (out, step->closed_at);
    }
    if (step->input) {
        S_KEY (out, "input");
        if (shf_mpack_put_json (out, step->input, depth))
            return SHF_EINVAL;
    }
    if (step->output) {
        S_KEY (out, "output");
        if (shf_mpack_put_json (out, step->output, depth))
            return SHF_EINVAL;
    }
    if (step->failure) {
        S_KEY (out, "failure");
        if (shf_mpack_put_json (out, step->failure, depth))
            return SHF_EINVAL;
    }
    if (step->heartbeat_details) {
        S_KEY (out, "heartbeat_details");
        if (shf_mpack_put_json (out, step->heartbeat_details, depth))
            return SHF_EINVAL;
    }
    if (step->has & SHF_REC_LAST_HEARTBEAT) {
        S_KEY (out, "last_heartbeat");
        shf_mpack_put_int (out, step->last_heartbeat);
    }
    if (step->worker) {
        S_KEY (out, "worker");
        s_put_cstr (out, step->worker);
    }
    if (step->has & SHF_REC_RETRY_DUE) {
        S_KEY (out, "retry_due");
        shf_mpack_put_int (out, step->retry_due);
    }
    if (step->has & SHF_REC_SEQ) {
        S_KEY (out, "seq");
        shf_mpack_put_int (out, step->seq);
    }
    if (step->has & SHF_REC_HANDBACKS) {
        S_KEY (out, "handbacks");
        shf_mpack_put_int (out, step->handbacks);
    }
    return SHF_OK;
}

static shf_err_t
s_put_run (const shf_run_t *self, shf_mpack_out_t *out)
{
    shf_mpack_put_map (out, 17);
    S_KEY (out, "ns");
    s_put_cstr (out, self->ns);
    S_KEY (out, "workflow_id");
    s_put_cstr (out, self->workflow_id);
    S_KEY (out, "run_id");
    s_put_cstr (out, self->run_id);
    S_KEY (out, "name");
    s_put_cstr (out, self->name);
    S_KEY (out, "version");
    shf_mpack_put_int (out, self->version);
    S_KEY (out, "status");
    s_put_cstr (out, shf_run_status_name (self->status));
    S_KEY (out, "started_at");
    shf_mpack_put_int (out, self->started_at);
    S_KEY (out, "closed_at");
    if (self->has_closed_at)
        shf_mpack_put_int (out, self->closed_at);
    else
        shf_mpack_put_nil (out);
    //  The run map's members are at depth 1.
    S_KEY (out, "input");
    if (shf_mpack_put_json (out, self->input, 1))
        return SHF_EINVAL;
    S_KEY (out, "output");
    if (shf_mpack_put_json (out, self->output, 1))
        return SHF_EINVAL;
    S_KEY (out, "failure");
    if (shf_mpack_put_json (out, self->failure, 1))
        return SHF_EINVAL;
    S_KEY (out, "next_event_id");
    shf_mpack_put_int (out, self->next_event_id);
    S_KEY (out, "next_timer_id");
    shf_mpack_put_int (out, self->next_timer_id);
    S_KEY (out, "steps");
    shf_mpack_put_map (out, self->n_steps);
    for (size_t i = 0; i < self->n_steps; i++) {
        s_put_cstr (out, self->steps [i].id);
        if (s_put_step (out, &self->steps [i]))
            return SHF_EINVAL;
    }
    S_KEY (out, "timers");
    shf_mpack_put_array (out, self->n_timers);
    for (size_t i = 0; i < self->n_timers; i++) {
        const shf_run_timer_t *timer = &self->timers [i];
        assert (timer->step >= -1 && timer->step < (int) self->n_steps);
        shf_mpack_put_map (out, 5);
        S_KEY (out, "id");
        shf_mpack_put_int (out, (int64_t) timer->id);
        S_KEY (out, "due");
        shf_mpack_put_int (out, timer->due);
        S_KEY (out, "step");
        if (timer->step >= 0)
            s_put_cstr (out, self->steps [timer->step].id);
        else
            shf_mpack_put_nil (out);
        S_KEY (out, "kind");
        s_put_cstr (out, shf_timer_kind_name (timer->kind));
        S_KEY (out, "attempt");
        shf_mpack_put_int (out, timer->attempt);
    }
    //  No signals object (a run built by hand) is {}, as in to_json.
    S_KEY (out, "signals");
    if (!self->signals)
        shf_mpack_put_map (out, 0);
    else if (shf_mpack_put_json (out, self->signals, 1))
        return SHF_EINVAL;
    S_KEY (out, "last_signal");
    if (!self->last_signal)
        shf_mpack_put_map (out, 0);
    else if (shf_mpack_put_json (out, self->last_signal, 1))
        return SHF_EINVAL;
    return SHF_OK;
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
    shf_err_t rc = s_put_run (self, out);
    if (rc)
        out->size = before;
    return rc;
}

shf_err_t
shf_run_decode (const void *data, size_t size, shf_run_t **run_p)
{
    assert (run_p);
    *run_p = NULL;
    json_t *state;
    if (shf_mpack_decode (data, size, &state, NULL, 0) != SHF_OK)
        return SHF_ECORRUPT;
    shf_err_t rc = shf_run_from_json (state, run_p);
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
//  that JSON gives the same JSON; its msgpack is that JSON's, decodes back
//  to it, and is the bytes shf_mpack_encode writes for it (same order).
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
    assert (json_equal (tree, state));
    json_decref (tree);
    char *data;
    size_t size;
    assert (shf_mpack_encode (state, &data, &size) == SHF_OK);
    assert (size == out.size - 1 && memcmp (data, out.data + 1, size) == 0);
    free (data);

    assert (shf_run_decode (out.data + 1, out.size - 1, &back) == SHF_OK);
    again = shf_run_to_json (back);
    assert (json_equal (again, state));
    json_decref (again);
    shf_run_decref (back);
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
    assert (shf_run_decode (data, size, &run) == SHF_ECORRUPT && !run);
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
    assert (shf_run_decode (out.data, out.size, &back) == SHF_OK);
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
        assert (shf_run_decode (data, size, &run) == SHF_OK);
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
    s_expect_corrupt ("[]", "a non-map top level", verbose);
    s_expect_corrupt ("7", "an integer top level", verbose);
    {
        //  A string with a NUL in it would be cut short: corrupt.
        json_t *bad = s_load (S_RUNNING_JSON);
        json_object_set_new (bad, "ns", json_stringn ("a\0b", 3));
        assert (shf_run_from_json (bad, &run) == SHF_ECORRUPT && !run);
        json_decref (bad);
        const uint8_t garbage [] = {0xc1, 0x00, 0xff};
        run = (shf_run_t *) 1;
        assert (shf_run_decode (garbage, sizeof garbage, &run) == SHF_ECORRUPT
                && !run);
        const uint8_t truncated [] = {0x81, 0xa2, 'n', 's'};
        assert (shf_run_decode (truncated, sizeof truncated, &run)
                    == SHF_ECORRUPT
                && !run);
        assert (shf_run_decode (NULL, 0, &run) == SHF_ECORRUPT && !run);
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
        assert (out.size == (expect == SHF_OK ? 1 + size : 1));
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
