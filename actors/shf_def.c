/*  shf_def.c - the definition compiler: JSON document -> checked DAG.

    shf_def_compile parses a definition (SPEC.md "Definitions") with
    jansson, checks every field SPEC.md promises is checked at
    registration, resolves `after` to step indexes, proves the graph
    acyclic, compiles every `when` and template, and computes each step's
    effective retry policy (step over definition over defaults). The
    registry calls it at registration; shards call it again when they load
    a definition; shf_workflow reads the result through the accessors.

    Invariants:
    - The first problem is reported, as "PATH: message" with PATH a JSON
      path into the document (`steps[2].after[0]: no step "chrage"`), or
      "line L, column C: ..." for a JSON syntax error.
    - A compiled def is immutable except for shf_def_set_version; every
      string an accessor returns is borrowed from the kept document, so it
      lives as long as the def.
    - Unknown keys are errors (at the top level, in steps, retry and
      timeouts): a typo never silently means "default".
    Pure: no I/O, no clock.
*/
#include "../common/shf_alloc.h"
#include "../proto/shf_mpack.h"
#include "shf_def.h"
#include "shf_duration.h"
#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define streq(a, b) (strcmp ((a), (b)) == 0)

#define S_MAX_DOCUMENT  (1024 * 1024)
#define S_QUEUE_MAX     255
#define S_DEFAULT_QUEUE "default"

typedef struct {
    const char *id;
    shf_step_kind_t kind;
    const char *activity;
    const char *queue;
    int64_t sleep;
    const char *signal;
    int64_t timeout;
    bool optional;
    size_t *after;
    size_t after_count;
    shf_expr_t *when;
    shf_template_t *input;
    int64_t schedule_to_start;
    int64_t start_to_close;
    int64_t schedule_to_close;
    int64_t heartbeat;
    shf_retry_t retry;
} s_step_t;

struct shf_def {
    json_t *doc;
    const char *name;
    int64_t version;
    char *canonical;
    const char *queue;
    int64_t timeout;
    shf_template_t *output;
    s_step_t *steps;
    size_t nsteps;
};

typedef struct {
    char *err;
    size_t errlen;
    shf_err_t rc;
} s_ctx_t;

static void s_fail (s_ctx_t *c, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));

//  Records the first problem only.
static void
s_fail (s_ctx_t *c, const char *format, ...)
{
    if (c->rc != SHF_OK)
        return;
    c->rc = SHF_EDEFINITION;
    if (!c->err || !c->errlen)
        return;
    va_list args;
    va_start (args, format);
    vsnprintf (c->err, c->errlen, format, args);
    va_end (args);
}


static bool
s_name_ok (const char *s, const char *extra, size_t max)
{
    size_t n = strlen (s);
    if (n == 0 || n > max)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')
              || (*s >= '0' && *s <= '9') || strchr (extra, *s)))
            return false;
    return true;
}

//  Every key of obj must be in the NULL-terminated list.
static bool
s_known_keys (s_ctx_t *c, const json_t *obj, const char *path,
              const char *const *keys)
{
    const char *key;
    json_t *value;
    json_object_foreach ((json_t *) obj, key, value)
    {
        const char *const *k = keys;
        while (*k && strcmp (*k, key) != 0)
            k++;
        if (!*k) {
            s_fail (c, "%s%s%s: unknown key", path, *path ? "." : "", key);
            return false;
        }
    }
    return true;
}

//  A duration field: absent leaves *ms_p alone. Timeouts must be > 0.
static bool
s_duration (s_ctx_t *c, const json_t *obj, const char *key, const char *path,
            bool positive, int64_t *ms_p)
{
    const json_t *value = json_object_get (obj, key);
    if (!value)
        return true;
    const char *dot = *path ? "." : "";
    if (!json_is_string (value)) {
        s_fail (c, "%s%s%s: must be a duration string like \"30s\"", path, dot,
                key);
        return false;
    }
    int64_t ms;
    if (shf_duration_parse (json_string_value (value), &ms) != SHF_OK) {
        s_fail (c, "%s%s%s: bad duration \"%.64s\"", path, dot, key,
                json_string_value (value));
        return false;
    }
    if (positive && ms == 0) {
        s_fail (c, "%s%s%s: must be more than 0", path, dot, key);
        return false;
    }
    *ms_p = ms;
    return true;
}

//  A retry object over a base policy: fields present replace the base.
static bool
s_retry (s_ctx_t *c, const json_t *obj, const char *path, shf_retry_t *retry,
         bool *max_set_p)
{
    if (!json_is_object (obj)) {
        s_fail (c, "%s: must be an object", path);
        return false;
    }
    static const char *const keys [] = {"max_attempts",  "initial_interval",
                                        "backoff",       "max_interval",
                                        "non_retryable", NULL};
    if (!s_known_keys (c, obj, path, keys))
        return false;
    const json_t *value = json_object_get (obj, "max_attempts");
    if (value) {
        if (!json_is_integer (value) || json_integer_value (value) < 0
            || json_integer_value (value) > UINT32_MAX) {
            s_fail (c, "%s.max_attempts: must be an integer from 0 to %u", path,
                    UINT32_MAX);
            return false;
        }
        retry->max_attempts = (uint32_t) json_integer_value (value);
    }
    if (!s_duration (c, obj, "initial_interval", path, false,
                     &retry->initial_interval))
        return false;
    if (json_object_get (obj, "max_interval")) {
        if (!s_duration (c, obj, "max_interval", path, false,
                         &retry->max_interval))
            return false;
        *max_set_p = true;
    }
    value = json_object_get (obj, "backoff");
    if (value) {
        if (!json_is_number (value) || !(json_number_value (value) >= 1.0)
            || !isfinite (json_number_value (value))) {
            s_fail (c, "%s.backoff: must be a number >= 1", path);
            return false;
        }
        retry->backoff = json_number_value (value);
    }
    value = json_object_get (obj, "non_retryable");
    if (value) {
        if (!json_is_array (value)) {
            s_fail (c, "%s.non_retryable: must be an array of error types",
                    path);
            return false;
        }
        for (size_t i = 0; i < json_array_size (value); i++)
            if (!json_is_string (json_array_get (value, i))) {
                s_fail (c, "%s.non_retryable[%zu]: must be a string", path, i);
                return false;
            }
        retry->non_retryable = value;
    }
    return true;
}

static bool
s_string (s_ctx_t *c, const json_t *value, const char *path, size_t max,
          const char **string_p)
{
    if (!json_is_string (value) || json_string_length (value) == 0
        || json_string_length (value) > max) {
        s_fail (c, "%s: must be a string of 1 to %zu bytes", path, max);
        return false;
    }
    *string_p = json_string_value (value);
    return true;
}

//  Compiles a template; its own path goes in front of the message.
static bool
s_template (s_ctx_t *c, const json_t *value, const char *path,
            shf_template_t **tmpl_p)
{
    char msg [512];
    if (shf_template_compile (value, tmpl_p, msg, sizeof msg) != SHF_OK) {
        bool sub = msg [0] == '.' || msg [0] == '[';
        s_fail (c, "%s%s%s", path, sub ? "" : ": ", msg);
        return false;
    }
    return true;
}

static bool
s_compile_step (s_ctx_t *c, shf_def_t *self, size_t i, const json_t *obj,
                const shf_retry_t *def_retry, bool def_max_set)
{
    s_step_t *step = &self->steps [i];
    char path [64];
    snprintf (path, sizeof path, "steps[%zu]", i);
    char sub [128];
    if (!json_is_object (obj)) {
        s_fail (c, "%s: must be an object", path);
        return false;
    }
    static const char *const keys [] = {
        "id",   "activity", "sleep",   "wait_signal", "queue", "input", "after",
        "when", "optional", "timeout", "timeouts",    "retry", NULL};
    if (!s_known_keys (c, obj, path, keys))
        return false;

    const json_t *id = json_object_get (obj, "id");
    if (!id) {
        s_fail (c, "%s.id: missing", path);
        return false;
    }
    if (!json_is_string (id)
        || !s_name_ok (json_string_value (id), "_-", SHF_STEP_ID_MAX)) {
        s_fail (c, "%s.id: must match [A-Za-z0-9_-]{1,%d}", path,
                SHF_STEP_ID_MAX);
        return false;
    }
    step->id = json_string_value (id);
    for (size_t j = 0; j < i; j++)
        if (strcmp (self->steps [j].id, step->id) == 0) {
            s_fail (c, "%s.id: duplicate id \"%s\" (also steps[%zu])", path,
                    step->id, j);
            return false;
        }

    int kinds = !!json_object_get (obj, "activity")
                + !!json_object_get (obj, "sleep")
                + !!json_object_get (obj, "wait_signal");
    if (kinds != 1) {
        s_fail (c,
                "%s: a step has exactly one of activity, sleep, "
                "wait_signal",
                path);
        return false;
    }
    const json_t *value;
    if ((value = json_object_get (obj, "activity"))) {
        step->kind = SHF_STEP_ACTIVITY;
        snprintf (sub, sizeof sub, "%s.activity", path);
        if (!s_string (c, value, sub, SHF_DEF_NAME_MAX, &step->activity))
            return false;
    }
    else if ((value = json_object_get (obj, "wait_signal"))) {
        step->kind = SHF_STEP_WAIT_SIGNAL;
        snprintf (sub, sizeof sub, "%s.wait_signal", path);
        if (!s_string (c, value, sub, SHF_DEF_NAME_MAX, &step->signal))
            return false;
    }
    else {
        step->kind = SHF_STEP_SLEEP;
        if (!s_duration (c, obj, "sleep", path, false, &step->sleep))
            return false;
    }

    //  Fields that only make sense for some kinds.
    static const struct {
        const char *key;
        shf_step_kind_t kind;
        const char *message;
    } only [] = {
        {"queue", SHF_STEP_ACTIVITY, "only an activity step has a queue"},
        {"input", SHF_STEP_ACTIVITY, "only an activity step has an input"},
        {"timeouts", SHF_STEP_ACTIVITY, "only an activity step has timeouts"},
        {"retry", SHF_STEP_ACTIVITY, "only an activity step retries"},
        {"timeout", SHF_STEP_WAIT_SIGNAL,
         "only a wait_signal step has a timeout (an activity has timeouts)"},
    };
    for (size_t k = 0; k < sizeof only / sizeof only [0]; k++)
        if (json_object_get (obj, only [k].key)
            && step->kind != only [k].kind) {
            s_fail (c, "%s.%s: %s", path, only [k].key, only [k].message);
            return false;
        }

    step->queue = self->queue;
    if ((value = json_object_get (obj, "queue"))) {
        snprintf (sub, sizeof sub, "%s.queue", path);
        if (!s_string (c, value, sub, S_QUEUE_MAX, &step->queue))
            return false;
    }
    if (!s_duration (c, obj, "timeout", path, true, &step->timeout))
        return false;
    if ((value = json_object_get (obj, "optional"))) {
        if (!json_is_boolean (value)) {
            s_fail (c, "%s.optional: must be true or false", path);
            return false;
        }
        step->optional = json_is_true (value);
    }
    if ((value = json_object_get (obj, "when"))) {
        if (!json_is_string (value)) {
            s_fail (c, "%s.when: must be an expression string", path);
            return false;
        }
        char msg [256];
        if (shf_expr_compile (json_string_value (value),
                              json_string_length (value), &step->when, msg,
                              sizeof msg)
            != SHF_OK) {
            s_fail (c, "%s.when: %s", path, msg);
            return false;
        }
    }
    if ((value = json_object_get (obj, "input"))) {
        snprintf (sub, sizeof sub, "%s.input", path);
        if (!s_template (c, value, sub, &step->input))
            return false;
    }
    if ((value = json_object_get (obj, "timeouts"))) {
        snprintf (sub, sizeof sub, "%s.timeouts", path);
        if (!json_is_object (value)) {
            s_fail (c, "%s: must be an object", sub);
            return false;
        }
        static const char *const tkeys [] = {
            "schedule_to_start", "start_to_close", "schedule_to_close",
            "heartbeat", NULL};
        if (!s_known_keys (c, value, sub, tkeys)
            || !s_duration (c, value, "schedule_to_start", sub, true,
                            &step->schedule_to_start)
            || !s_duration (c, value, "start_to_close", sub, true,
                            &step->start_to_close)
            || !s_duration (c, value, "schedule_to_close", sub, true,
                            &step->schedule_to_close)
            || !s_duration (c, value, "heartbeat", sub, true, &step->heartbeat))
            return false;
    }
    step->retry = *def_retry;
    bool max_set = def_max_set;
    if ((value = json_object_get (obj, "retry"))) {
        snprintf (sub, sizeof sub, "%s.retry", path);
        if (!s_retry (c, value, sub, &step->retry, &max_set))
            return false;
    }
    if (!max_set
        && __builtin_mul_overflow (step->retry.initial_interval, 100,
                                   &step->retry.max_interval))
        step->retry.max_interval = INT64_MAX;
    return true;
}

//  Resolves `after` of every step (all ids are known by now).
static bool
s_resolve_after (s_ctx_t *c, shf_def_t *self, const json_t *steps)
{
    for (size_t i = 0; i < self->nsteps; i++) {
        s_step_t *step = &self->steps [i];
        const json_t *after =
            json_object_get (json_array_get (steps, i), "after");
        if (!after) {
            //  Omitted: the previous step in the list, so a plain list is
            //  a sequence.
            if (i > 0) {
                step->after = shf_alloc (sizeof *step->after);
                step->after [0] = i - 1;
                step->after_count = 1;
            }
            continue;
        }
        if (!json_is_array (after)) {
            s_fail (c, "steps[%zu].after: must be an array of step ids", i);
            return false;
        }
        step->after = shf_alloc (json_array_size (after) * sizeof *step->after);
        for (size_t k = 0; k < json_array_size (after); k++) {
            const json_t *ref = json_array_get (after, k);
            if (!json_is_string (ref)) {
                s_fail (c, "steps[%zu].after[%zu]: must be a step id string", i,
                        k);
                return false;
            }
            int index = shf_def_step_index (self, json_string_value (ref));
            if (index < 0) {
                s_fail (c, "steps[%zu].after[%zu]: no step \"%.128s\"", i, k,
                        json_string_value (ref));
                return false;
            }
            if ((size_t) index == i) {
                s_fail (c,
                        "steps[%zu].after[%zu]: a step cannot wait for "
                        "itself",
                        i, k);
                return false;
            }
            for (size_t m = 0; m < step->after_count; m++)
                if (step->after [m] == (size_t) index) {
                    s_fail (c, "steps[%zu].after[%zu]: \"%s\" is listed twice",
                            i, k, json_string_value (ref));
                    return false;
                }
            step->after [step->after_count++] = (size_t) index;
        }
    }
    return true;
}

//  Depth-first search over `after` edges with an explicit stack (no
//  recursion over user data). A step met again while still on the stack
//  closes a cycle, reported from that step: "a" -> "b" -> "a" reads "a
//  waits for b, which waits for a".
static bool
s_check_acyclic (s_ctx_t *c, const shf_def_t *self)
{
    enum { WHITE, GRAY, BLACK };
    size_t n = self->nsteps;
    int *color = shf_alloc (n * sizeof *color);
    size_t *stack = shf_alloc (n * sizeof *stack);  //  the path
    size_t *next = shf_alloc (n * sizeof *next);    //  next edge per node
    bool ok = true;
    for (size_t start = 0; start < n && ok; start++) {
        if (color [start] != WHITE)
            continue;
        size_t depth = 0;
        stack [depth++] = start;
        color [start] = GRAY;
        next [start] = 0;
        while (depth && ok) {
            size_t node = stack [depth - 1];
            const s_step_t *step = &self->steps [node];
            if (next [node] == step->after_count) {
                color [node] = BLACK;
                depth--;
                continue;
            }
            size_t dep = step->after [next [node]++];
            if (color [dep] == WHITE) {
                color [dep] = GRAY;
                next [dep] = 0;
                stack [depth++] = dep;
            }
            else if (color [dep] == GRAY) {
                size_t from = 0;
                while (stack [from] != dep)
                    from++;
                char cycle [1024] = "";
                size_t used = 0;
                for (size_t k = from; k <= depth; k++) {
                    const char *id =
                        self->steps [k < depth ? stack [k] : dep].id;
                    int w = snprintf (cycle + used, sizeof cycle - used,
                                      "%s\"%s\"", k > from ? " -> " : "", id);
                    if (w < 0 || (size_t) w >= sizeof cycle - used)
                        break;
                    used += (size_t) w;
                }
                s_fail (c, "steps[%zu].after: cycle through %s", dep, cycle);
                ok = false;
            }
        }
    }
    free (color);
    free (stack);
    free (next);
    return ok;
}

static shf_err_t
s_compile (s_ctx_t *c, shf_def_t *self)
{
    const json_t *doc = self->doc;
    static const char *const keys [] = {"name",  "version", "queue",  "timeout",
                                        "retry", "steps",   "output", NULL};
    if (!s_known_keys (c, doc, "", keys))
        return c->rc;

    const json_t *value = json_object_get (doc, "name");
    if (!value) {
        s_fail (c, "name: missing");
        return c->rc;
    }
    if (!json_is_string (value)
        || !s_name_ok (json_string_value (value), "_.-", SHF_DEF_NAME_MAX)) {
        s_fail (c, "name: must match [A-Za-z0-9_.-]{1,%d}", SHF_DEF_NAME_MAX);
        return c->rc;
    }
    self->name = json_string_value (value);
    if ((value = json_object_get (doc, "version"))) {
        if (!json_is_integer (value) || json_integer_value (value) < 1) {
            s_fail (c, "version: must be a positive integer");
            return c->rc;
        }
        self->version = json_integer_value (value);
    }
    self->queue = S_DEFAULT_QUEUE;
    if ((value = json_object_get (doc, "queue"))
        && !s_string (c, value, "queue", S_QUEUE_MAX, &self->queue))
        return c->rc;
    if (!s_duration (c, doc, "timeout", "", true, &self->timeout))
        return c->rc;

    shf_retry_t retry = {.max_attempts = 3,
                         .initial_interval = 1000,
                         .backoff = 2.0,
                         .max_interval = 0,
                         .non_retryable = NULL};
    bool max_set = false;
    if ((value = json_object_get (doc, "retry"))
        && !s_retry (c, value, "retry", &retry, &max_set))
        return c->rc;

    const json_t *steps = json_object_get (doc, "steps");
    if (!steps) {
        s_fail (c, "steps: missing");
        return c->rc;
    }
    if (!json_is_array (steps) || json_array_size (steps) == 0) {
        s_fail (c, "steps: must be a non-empty array");
        return c->rc;
    }
    if (json_array_size (steps) > SHF_DEF_MAX_STEPS) {
        s_fail (c, "steps: more than %d steps", SHF_DEF_MAX_STEPS);
        c->rc = SHF_ETOOLARGE;
        return c->rc;
    }
    self->nsteps = json_array_size (steps);
    self->steps = shf_alloc (self->nsteps * sizeof *self->steps);
    for (size_t i = 0; i < self->nsteps; i++)
        if (!s_compile_step (c, self, i, json_array_get (steps, i), &retry,
                             max_set))
            return c->rc;
    if (!s_resolve_after (c, self, steps) || !s_check_acyclic (c, self))
        return c->rc;
    if ((value = json_object_get (doc, "output"))
        && !s_template (c, value, "output", &self->output))
        return c->rc;

    json_t *copy = json_deep_copy (doc);
    json_object_del (copy, "version");
    self->canonical = json_dumps (copy, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref (copy);
    assert (self->canonical);
    return SHF_OK;
}

shf_err_t
shf_def_compile (const char *text, size_t len, shf_def_t **def_p, char *err,
                 size_t errlen)
{
    assert (def_p);
    *def_p = NULL;
    if (err && errlen)
        err [0] = 0;
    s_ctx_t c = {err, errlen, SHF_OK};
    if (len > S_MAX_DOCUMENT) {
        if (err && errlen)
            snprintf (err, errlen, "definition larger than %d bytes",
                      S_MAX_DOCUMENT);
        return SHF_ETOOLARGE;
    }
    json_error_t jerr;
    json_t *doc =
        json_loadb (text ? text : "", len, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc) {
        s_fail (&c, "line %d, column %d: %s", jerr.line, jerr.column,
                jerr.text);
        return c.rc;
    }
    if (!json_is_object (doc)) {
        json_decref (doc);
        s_fail (&c, "a definition must be a JSON object");
        return c.rc;
    }
    //  Templates are stored and rendered inside deeper values (run state,
    //  events, replies): keep the whole document shallow enough for them.
    if (shf_mpack_depth (doc) > SHF_DEF_MAX_DEPTH) {
        json_decref (doc);
        s_fail (&c, "the document is nested deeper than %d levels",
                SHF_DEF_MAX_DEPTH);
        return c.rc;
    }
    shf_def_t *self = shf_alloc (sizeof *self);
    self->doc = doc;
    if (s_compile (&c, self) != SHF_OK) {
        shf_def_destroy (&self);
        return c.rc;
    }
    *def_p = self;
    return SHF_OK;
}

void
shf_def_destroy (shf_def_t **self_p)
{
    assert (self_p);
    shf_def_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < self->nsteps; i++) {
        free (self->steps [i].after);
        shf_expr_destroy (&self->steps [i].when);
        shf_template_destroy (&self->steps [i].input);
    }
    free (self->steps);
    shf_template_destroy (&self->output);
    free (self->canonical);
    json_decref (self->doc);
    free (self);
    *self_p = NULL;
}

const char *
shf_def_name (const shf_def_t *self)
{
    assert (self);
    return self->name;
}

int64_t
shf_def_version (const shf_def_t *self)
{
    assert (self);
    return self->version;
}

void
shf_def_set_version (shf_def_t *self, int64_t version)
{
    assert (self);
    assert (version > 0);
    self->version = version;
    //  "name" and the other borrowed strings are other members: setting
    //  "version" does not move them.
    json_object_set_new (self->doc, "version", json_integer (version));
}

const char *
shf_def_canonical (const shf_def_t *self)
{
    assert (self);
    return self->canonical;
}

const json_t *
shf_def_document (const shf_def_t *self)
{
    assert (self);
    return self->doc;
}

size_t
shf_def_step_count (const shf_def_t *self)
{
    assert (self);
    return self->nsteps;
}

int
shf_def_step_index (const shf_def_t *self, const char *id)
{
    assert (self);
    //  Linear: at most 1024 steps, and ids are checked while compiling.
    for (size_t i = 0; id && i < self->nsteps; i++)
        if (self->steps [i].id && strcmp (self->steps [i].id, id) == 0)
            return (int) i;
    return -1;
}

static const s_step_t *
s_step (const shf_def_t *self, size_t index)
{
    assert (self);
    assert (index < self->nsteps);
    return &self->steps [index];
}

const char *
shf_def_step_id (const shf_def_t *self, size_t index)
{
    return s_step (self, index)->id;
}

shf_step_kind_t
shf_def_step_kind (const shf_def_t *self, size_t index)
{
    return s_step (self, index)->kind;
}

const shf_retry_t *
shf_def_step_retry (const shf_def_t *self, size_t index)
{
    return &s_step (self, index)->retry;
}

const char *
shf_def_step_activity (const shf_def_t *self, size_t index)
{
    return s_step (self, index)->activity;
}

const char *
shf_def_step_queue (const shf_def_t *self, size_t index)
{
    return s_step (self, index)->queue;
}

int64_t
shf_def_step_sleep (const shf_def_t *self, size_t index)
{
    return s_step (self, index)->sleep;
}

const char *
shf_def_step_signal (const shf_def_t *self, size_t index)
{
    return s_step (self, index)->signal;
}

int64_t
shf_def_step_timeout (const shf_def_t *self, size_t index)
{
    return s_step (self, index)->timeout;
}

bool
shf_def_step_optional (const shf_def_t *self, size_t index)
{
    return s_step (self, index)->optional;
}

size_t
shf_def_step_after_count (const shf_def_t *self, size_t index)
{
    return s_step (self, index)->after_count;
}

size_t
shf_def_step_after (const shf_def_t *self, size_t index, size_t i)
{
    const s_step_t *step = s_step (self, index);
    assert (i < step->after_count);
    return step->after [i];
}

const shf_expr_t *
shf_def_step_when (const shf_def_t *self, size_t index)
{
    return s_step (self, index)->when;
}

const shf_template_t *
shf_def_step_input (const shf_def_t *self, size_t index)
{
    return s_step (self, index)->input;
}

int64_t
shf_def_step_start_to_close (const shf_def_t *self, size_t index)
{
    return s_step (self, index)->start_to_close;
}

int64_t
shf_def_step_schedule_to_start (const shf_def_t *self, size_t index)
{
    return s_step (self, index)->schedule_to_start;
}

int64_t
shf_def_step_schedule_to_close (const shf_def_t *self, size_t index)
{
    return s_step (self, index)->schedule_to_close;
}

int64_t
shf_def_step_heartbeat (const shf_def_t *self, size_t index)
{
    return s_step (self, index)->heartbeat;
}

int64_t
shf_def_timeout (const shf_def_t *self)
{
    assert (self);
    return self->timeout;
}

const shf_template_t *
shf_def_output (const shf_def_t *self)
{
    assert (self);
    return self->output;
}


//  --------------------------------------------------------------------
//  Self-test

//  The example of SPEC.md, "Definitions", verbatim.
static const char *s_spec_example =
    "{\n"
    "  \"name\": \"order\",\n"
    "  \"version\": 1,\n"
    "  \"queue\": \"default\",\n"
    "  \"timeout\": \"24h\",\n"
    "  \"retry\": {\"max_attempts\": 3, \"initial_interval\": \"1s\", "
    "\"backoff\": 2.0,\n"
    "            \"max_interval\": \"1m\", \"non_retryable\": "
    "[\"Declined\"]},\n"
    "  \"steps\": [\n"
    "    {\"id\": \"charge\", \"activity\": \"charge_card\", \"input\": "
    "{\"amount\": \"${input.amount}\"},\n"
    "     \"timeouts\": {\"start_to_close\": \"30s\", \"heartbeat\": "
    "\"10s\"}},\n"
    "    {\"id\": \"cool_off\", \"sleep\": \"100ms\"},\n"
    "    {\"id\": \"approve\", \"wait_signal\": \"approved\", \"timeout\": "
    "\"2d\"},\n"
    "    {\"id\": \"ship\", \"activity\": \"ship\", \"queue\": "
    "\"warehouse\", \"after\": [\"charge\"],\n"
    "     \"when\": \"steps.charge.output.ok == true\", \"optional\": "
    "true},\n"
    "    {\"id\": \"notify\", \"activity\": \"email\", \"after\": "
    "[\"approve\", \"ship\"]}\n"
    "  ],\n"
    "  \"output\": {\"charge\": \"${steps.charge.output}\", \"shipped\": "
    "\"${steps.ship.status}\"}\n"
    "}\n";

static shf_def_t *
s_test_compile (const char *text)
{
    shf_def_t *def = NULL;
    char err [512];
    shf_err_t rc = shf_def_compile (text, strlen (text), &def, err, sizeof err);
    if (rc != SHF_OK)
        fprintf (stderr, "%s\n-> %s\n", text, err);
    assert (rc == SHF_OK);
    assert (def);
    return def;
}

static void
s_test_spec_example (bool verbose)
{
    shf_def_t *def = s_test_compile (s_spec_example);
    assert (streq (shf_def_name (def), "order"));
    assert (shf_def_version (def) == 1);
    assert (shf_def_timeout (def) == 24 * 3600 * 1000);
    assert (shf_def_step_count (def) == 5);
    assert (shf_def_step_index (def, "charge") == 0);
    assert (shf_def_step_index (def, "notify") == 4);
    assert (shf_def_step_index (def, "nope") == -1);
    assert (shf_def_step_index (def, NULL) == -1);
    //  charge
    assert (streq (shf_def_step_id (def, 0), "charge"));
    assert (shf_def_step_kind (def, 0) == SHF_STEP_ACTIVITY);
    assert (streq (shf_def_step_activity (def, 0), "charge_card"));
    assert (streq (shf_def_step_queue (def, 0), "default"));
    assert (shf_def_step_after_count (def, 0) == 0);
    assert (shf_def_step_when (def, 0) == NULL);
    assert (shf_def_step_input (def, 0) != NULL);
    assert (shf_def_step_start_to_close (def, 0) == 30000);
    assert (shf_def_step_heartbeat (def, 0) == 10000);
    assert (shf_def_step_schedule_to_start (def, 0) == 0);
    assert (shf_def_step_schedule_to_close (def, 0) == 0);
    assert (!shf_def_step_optional (def, 0));
    const shf_retry_t *retry = shf_def_step_retry (def, 0);
    assert (retry->max_attempts == 3);
    assert (retry->initial_interval == 1000);
    assert (retry->backoff == 2.0);
    assert (retry->max_interval == 60000);
    assert (json_array_size (retry->non_retryable) == 1);
    assert (streq (json_string_value (json_array_get (retry->non_retryable, 0)),
                   "Declined"));
    //  cool_off: after the previous step
    assert (shf_def_step_kind (def, 1) == SHF_STEP_SLEEP);
    assert (shf_def_step_sleep (def, 1) == 100);
    assert (shf_def_step_activity (def, 1) == NULL);
    assert (shf_def_step_input (def, 1) == NULL);
    assert (shf_def_step_after_count (def, 1) == 1);
    assert (shf_def_step_after (def, 1, 0) == 0);
    //  approve
    assert (shf_def_step_kind (def, 2) == SHF_STEP_WAIT_SIGNAL);
    assert (streq (shf_def_step_signal (def, 2), "approved"));
    assert (shf_def_step_timeout (def, 2) == 2 * 86400000LL);
    assert (shf_def_step_after_count (def, 2) == 1);
    assert (shf_def_step_after (def, 2, 0) == 1);
    //  ship
    assert (streq (shf_def_step_queue (def, 3), "warehouse"));
    assert (shf_def_step_optional (def, 3));
    assert (shf_def_step_when (def, 3) != NULL);
    assert (shf_def_step_after_count (def, 3) == 1);
    assert (shf_def_step_after (def, 3, 0) == 0);
    //  notify
    assert (shf_def_step_after_count (def, 4) == 2);
    assert (shf_def_step_after (def, 4, 0) == 2);
    assert (shf_def_step_after (def, 4, 1) == 3);
    assert (shf_def_output (def) != NULL);

    //  The compiled pieces work together.
    json_error_t jerr;
    json_t *context = json_loads (
        "{\"input\": {\"amount\": 12}, \"steps\": {\"charge\": {\"output\":"
        " {\"ok\": true}, \"status\": \"completed\"}}}",
        0, &jerr);
    assert (context);
    json_t *value = NULL;
    assert (shf_template_render (shf_def_step_input (def, 0), context, &value,
                                 NULL, 0)
            == SHF_OK);
    char *text = json_dumps (value, JSON_COMPACT);
    assert (streq (text, "{\"amount\":12}"));
    free (text);
    json_decref (value);
    assert (shf_expr_eval (shf_def_step_when (def, 3), context, &value, NULL, 0)
            == SHF_OK);
    assert (json_is_true (value));
    json_decref (value);
    json_decref (context);

    //  Canonical text: sorted, compact, without "version".
    const char *canonical = shf_def_canonical (def);
    assert (strstr (canonical, "\"version\"") == NULL);
    assert (strncmp (canonical, "{\"name\":\"order\",\"output\":", 25) == 0);
    char *before = strdup (canonical);
    assert (
        json_integer_value (json_object_get (shf_def_document (def), "version"))
        == 1);
    shf_def_set_version (def, 7);
    assert (shf_def_version (def) == 7);
    assert (
        json_integer_value (json_object_get (shf_def_document (def), "version"))
        == 7);
    assert (streq (shf_def_canonical (def), before));
    assert (streq (shf_def_name (def), "order"));
    if (verbose)
        printf ("\n   canonical: %s\n", before);
    free (before);
    shf_def_destroy (&def);
    assert (def == NULL);
    shf_def_destroy (&def);
}

static void
s_test_defaults (void)
{
    shf_def_t *def = s_test_compile (
        "{\"name\": \"a.b-c_1\", \"steps\": [{\"id\": \"x\", \"activity\": "
        "\"y\"}, {\"id\": \"z\", \"activity\": \"y\", \"after\": []}]}");
    assert (shf_def_version (def) == 0);
    assert (shf_def_timeout (def) == 0);
    assert (shf_def_output (def) == NULL);
    assert (streq (shf_def_step_queue (def, 0), "default"));
    assert (shf_def_step_after_count (def, 0) == 0);
    assert (shf_def_step_after_count (def, 1) == 0);
    const shf_retry_t *retry = shf_def_step_retry (def, 0);
    assert (retry->max_attempts == 3);
    assert (retry->initial_interval == 1000);
    assert (retry->backoff == 2.0);
    assert (retry->max_interval == 100000);
    assert (retry->non_retryable == NULL);
    //  Same document in another layout and with a version: same canonical.
    shf_def_t *other = s_test_compile (
        "{\"steps\":[{\"activity\":\"y\",\"id\":\"x\"},{\"after\":[],"
        "\"activity\":\"y\",\"id\":\"z\"}],\n  \"version\": 3, "
        "\"name\":\"a.b-c_1\"}");
    assert (streq (shf_def_canonical (def), shf_def_canonical (other)));
    assert (json_object_get (shf_def_document (def), "version") == NULL);
    shf_def_destroy (&other);
    //  A different document: a different canonical text.
    other = s_test_compile (
        "{\"name\": \"a.b-c_1\", \"steps\": [{\"id\": \"x\", \"activity\": "
        "\"y\"}, {\"id\": \"z\", \"activity\": \"y\"}]}");
    assert (!streq (shf_def_canonical (def), shf_def_canonical (other)));
    shf_def_destroy (&other);
    shf_def_destroy (&def);

    //  Retry: step over definition over defaults, field by field.
    def = s_test_compile (
        "{\"name\": \"r\", \"queue\": \"main\", \"retry\": "
        "{\"initial_interval\": \"2s\", \"backoff\": 3,"
        " \"non_retryable\": [\"A\", \"B\"]},"
        " \"steps\": [{\"id\": \"a\", \"activity\": \"x\"},"
        "  {\"id\": \"b\", \"activity\": \"x\", \"retry\": {\"max_attempts\":"
        "   0, \"initial_interval\": \"10ms\", \"non_retryable\": []}},"
        "  {\"id\": \"c\", \"activity\": \"x\", \"retry\": {\"max_interval\":"
        "   \"5s\", \"backoff\": 1.5}}]}");
    assert (streq (shf_def_step_queue (def, 0), "main"));
    retry = shf_def_step_retry (def, 0);
    assert (retry->max_attempts == 3);
    assert (retry->initial_interval == 2000);
    assert (retry->backoff == 3.0);
    assert (retry->max_interval == 200000);
    assert (json_array_size (retry->non_retryable) == 2);
    retry = shf_def_step_retry (def, 1);
    assert (retry->max_attempts == 0);
    assert (retry->initial_interval == 10);
    assert (retry->backoff == 3.0);
    assert (retry->max_interval == 1000);
    assert (json_array_size (retry->non_retryable) == 0);
    retry = shf_def_step_retry (def, 2);
    assert (retry->initial_interval == 2000);
    assert (retry->backoff == 1.5);
    assert (retry->max_interval == 5000);
    shf_def_destroy (&def);
    //  A definition's max_interval is inherited as is.
    def = s_test_compile (
        "{\"name\": \"r\", \"retry\": {\"max_interval\": \"1m\"}, \"steps\":"
        " [{\"id\": \"a\", \"activity\": \"x\", \"retry\": "
        "{\"initial_interval\": \"10ms\"}}]}");
    assert (shf_def_step_retry (def, 0)->max_interval == 60000);
    shf_def_destroy (&def);
}

//  Bad documents: the exact message of every class of problem.
static void
s_test_errors (void)
{
#define S_STEPS      "\"steps\": [{\"id\": \"a\", \"activity\": \"x\"}]"
#define S_DEF(extra) "{\"name\": \"n\", " extra "}"
#define S_STEP(body) "{\"name\": \"n\", \"steps\": [" body "]}"
    static const struct {
        const char *text;
        const char *message;
    } cases [] = {
        //  JSON syntax
        {"", "line 1, column 0: '[' or '{' expected near end of file"},
        {"{\"name\": \"n\",\n \"steps\": [}",
         "line 2, column 12: unexpected token near '}'"},
        {"{\"name\": \"n\", \"name\": \"m\"}",
         "line 1, column 20: duplicate object key near '\"name\"'"},
        {"[1]", "a definition must be a JSON object"},
        //  top level
        {"{\"nmae\": \"n\"}", "nmae: unknown key"},
        {"{" S_STEPS "}", "name: missing"},
        {"{\"name\": 5, " S_STEPS "}",
         "name: must match [A-Za-z0-9_.-]{1,128}"},
        {"{\"name\": \"a b\", " S_STEPS "}",
         "name: must match [A-Za-z0-9_.-]{1,128}"},
        {"{\"name\": \"\", " S_STEPS "}",
         "name: must match [A-Za-z0-9_.-]{1,128}"},
        {S_DEF ("\"version\": 0, " S_STEPS),
         "version: must be a positive integer"},
        {S_DEF ("\"version\": 1.0, " S_STEPS),
         "version: must be a positive integer"},
        {S_DEF ("\"version\": \"1\", " S_STEPS),
         "version: must be a positive integer"},
        {S_DEF ("\"queue\": \"\", " S_STEPS),
         "queue: must be a string of 1 to 255 bytes"},
        {S_DEF ("\"timeout\": \"5x\", " S_STEPS),
         "timeout: bad duration \"5x\""},
        {S_DEF ("\"timeout\": 5, " S_STEPS),
         "timeout: must be a duration string like \"30s\""},
        {S_DEF ("\"timeout\": \"0s\", " S_STEPS),
         "timeout: must be more than 0"},
        {S_DEF ("\"retry\": [], " S_STEPS), "retry: must be an object"},
        {S_DEF ("\"retry\": {\"max_attempt\": 1}, " S_STEPS),
         "retry.max_attempt: unknown key"},
        {S_DEF ("\"retry\": {\"max_attempts\": -1}, " S_STEPS),
         "retry.max_attempts: must be an integer from 0 to 4294967295"},
        {S_DEF ("\"retry\": {\"max_attempts\": 4294967296}, " S_STEPS),
         "retry.max_attempts: must be an integer from 0 to 4294967295"},
        {S_DEF ("\"retry\": {\"backoff\": 0.5}, " S_STEPS),
         "retry.backoff: must be a number >= 1"},
        {S_DEF ("\"retry\": {\"backoff\": \"2\"}, " S_STEPS),
         "retry.backoff: must be a number >= 1"},
        {S_DEF ("\"retry\": {\"initial_interval\": \"1.5s\"}, " S_STEPS),
         "retry.initial_interval: bad duration \"1.5s\""},
        {S_DEF ("\"retry\": {\"max_interval\": \"-1s\"}, " S_STEPS),
         "retry.max_interval: bad duration \"-1s\""},
        {S_DEF ("\"retry\": {\"non_retryable\": \"X\"}, " S_STEPS),
         "retry.non_retryable: must be an array of error types"},
        {S_DEF ("\"retry\": {\"non_retryable\": [\"X\", 1]}, " S_STEPS),
         "retry.non_retryable[1]: must be a string"},
        {S_DEF ("\"version\": 1"), "steps: missing"},
        {S_DEF ("\"steps\": []"), "steps: must be a non-empty array"},
        {S_DEF ("\"steps\": {}"), "steps: must be a non-empty array"},
        {S_DEF (S_STEPS ", \"output\": \"${steps.a.output +}\""),
         "output: column 17: unexpected end of expression"},
        {S_DEF (S_STEPS ", \"output\": {\"x\": [\"${1 +* 2}\"]}"),
         "output.x[0]: column 4: unexpected token \"*\""},
        //  steps
        {S_STEP ("5"), "steps[0]: must be an object"},
        {S_STEP ("{\"activity\": \"x\"}"), "steps[0].id: missing"},
        {S_STEP ("{\"id\": \"a.b\", \"activity\": \"x\"}"),
         "steps[0].id: must match [A-Za-z0-9_-]{1,128}"},
        {S_STEP ("{\"id\": \"a\", \"activity\": \"x\"}, {\"id\": \"a\", "
                 "\"sleep\": \"1s\"}"),
         "steps[1].id: duplicate id \"a\" (also steps[0])"},
        {S_STEP ("{\"id\": \"a\", \"activty\": \"x\"}"),
         "steps[0].activty: unknown key"},
        {S_STEP ("{\"id\": \"a\", \"activity\": \"x\"}, {\"id\": \"b\"}"),
         "steps[1]: a step has exactly one of activity, sleep, wait_signal"},
        {S_STEP ("{\"id\": \"a\", \"activity\": \"x\", \"sleep\": \"1s\"}"),
         "steps[0]: a step has exactly one of activity, sleep, wait_signal"},
        {S_STEP ("{\"id\": \"a\", \"activity\": 5}"),
         "steps[0].activity: must be a string of 1 to 128 bytes"},
        {S_STEP ("{\"id\": \"a\", \"wait_signal\": \"\"}"),
         "steps[0].wait_signal: must be a string of 1 to 128 bytes"},
        {S_STEP ("{\"id\": \"a\", \"sleep\": \"1 s\"}"),
         "steps[0].sleep: bad duration \"1 s\""},
        {S_STEP ("{\"id\": \"a\", \"sleep\": \"1s\", \"queue\": \"q\"}"),
         "steps[0].queue: only an activity step has a queue"},
        {S_STEP ("{\"id\": \"a\", \"sleep\": \"1s\", \"input\": 1}"),
         "steps[0].input: only an activity step has an input"},
        {S_STEP ("{\"id\": \"a\", \"wait_signal\": \"s\", \"retry\": {}}"),
         "steps[0].retry: only an activity step retries"},
        {S_STEP ("{\"id\": \"a\", \"wait_signal\": \"s\", \"timeouts\": {}}"),
         "steps[0].timeouts: only an activity step has timeouts"},
        {S_STEP ("{\"id\": \"a\", \"activity\": \"x\", \"timeout\": \"1s\"}"),
         "steps[0].timeout: only a wait_signal step has a timeout (an "
         "activity has timeouts)"},
        {S_STEP ("{\"id\": \"a\", \"wait_signal\": \"s\", \"timeout\": "
                 "\"soon\"}"),
         "steps[0].timeout: bad duration \"soon\""},
        {S_STEP ("{\"id\": \"a\", \"activity\": \"x\", \"queue\": 1}"),
         "steps[0].queue: must be a string of 1 to 255 bytes"},
        {S_STEP ("{\"id\": \"a\", \"activity\": \"x\", \"optional\": 1}"),
         "steps[0].optional: must be true or false"},
        {S_STEP ("{\"id\": \"a\", \"activity\": \"x\", \"when\": true}"),
         "steps[0].when: must be an expression string"},
        {S_STEP ("{\"id\": \"a\", \"activity\": \"x\"}, {\"id\": \"b\", "
                 "\"activity\": \"x\"}, {\"id\": \"c\", \"activity\": \"x\"},"
                 " {\"id\": \"d\", \"activity\": \"x\", \"when\": "
                 "\"input.a == = 1\"}"),
         "steps[3].when: column 12: unexpected '=' (use == to compare)"},
        {S_STEP ("{\"id\": \"a\", \"activity\": \"x\", \"when\": \"(1\"}"),
         "steps[0].when: column 3: expected ')'"},
        {S_STEP ("{\"id\": \"a\", \"activity\": \"x\", \"input\": "
                 "{\"amount\": \"${1 * }\"}}"),
         "steps[0].input.amount: column 5: unexpected end of expression"},
        {S_STEP ("{\"id\": \"a\", \"activity\": \"x\", \"input\": "
                 "\"${nope}\"}"),
         "steps[0].input: column 1: unknown name \"nope\" (a path starts "
         "with input, steps, signals or workflow)"},
        {S_STEP ("{\"id\": \"a\", \"activity\": \"x\", \"timeouts\": "
                 "{\"start_to_close\": \"5x\"}}"),
         "steps[0].timeouts.start_to_close: bad duration \"5x\""},
        {S_STEP ("{\"id\": \"a\", \"activity\": \"x\", \"timeouts\": "
                 "{\"heartbeat\": \"0ms\"}}"),
         "steps[0].timeouts.heartbeat: must be more than 0"},
        {S_STEP ("{\"id\": \"a\", \"activity\": \"x\", \"timeouts\": "
                 "{\"start_to_clos\": \"5s\"}}"),
         "steps[0].timeouts.start_to_clos: unknown key"},
        {S_STEP ("{\"id\": \"a\", \"activity\": \"x\", \"timeouts\": 5}"),
         "steps[0].timeouts: must be an object"},
        {S_STEP ("{\"id\": \"a\", \"activity\": \"x\", \"retry\": "
                 "{\"backoff\": 0}}"),
         "steps[0].retry.backoff: must be a number >= 1"},
        //  after and the graph
        {S_STEP ("{\"id\": \"charge\", \"activity\": \"x\"}, {\"id\": \"b\", "
                 "\"activity\": \"x\"}, {\"id\": \"c\", \"activity\": \"x\", "
                 "\"after\": [\"chrage\"]}"),
         "steps[2].after[0]: no step \"chrage\""},
        {S_STEP ("{\"id\": \"a\", \"activity\": \"x\", \"after\": \"b\"}"),
         "steps[0].after: must be an array of step ids"},
        {S_STEP ("{\"id\": \"a\", \"activity\": \"x\", \"after\": [1]}"),
         "steps[0].after[0]: must be a step id string"},
        {S_STEP ("{\"id\": \"a\", \"activity\": \"x\", \"after\": [\"a\"]}"),
         "steps[0].after[0]: a step cannot wait for itself"},
        {S_STEP ("{\"id\": \"a\", \"activity\": \"x\"}, {\"id\": \"b\", "
                 "\"activity\": \"x\", \"after\": [\"a\", \"a\"]}"),
         "steps[1].after[1]: \"a\" is listed twice"},
        {S_STEP ("{\"id\": \"a\", \"activity\": \"x\", \"after\": [\"b\"]},"
                 " {\"id\": \"b\", \"activity\": \"x\", \"after\": [\"a\"]}"),
         "steps[0].after: cycle through \"a\" -> \"b\" -> \"a\""},
        //  The implicit "previous step" edge can close a cycle too.
        {S_STEP ("{\"id\": \"a\", \"activity\": \"x\", \"after\": [\"c\"]},"
                 " {\"id\": \"b\", \"activity\": \"x\"},"
                 " {\"id\": \"c\", \"activity\": \"x\"}"),
         "steps[0].after: cycle through \"a\" -> \"c\" -> \"b\" -> \"a\""},
        {S_STEP ("{\"id\": \"s\", \"activity\": \"x\", \"after\": []},"
                 " {\"id\": \"a\", \"activity\": \"x\", \"after\": [\"s\", "
                 "\"b\"]},"
                 " {\"id\": \"b\", \"activity\": \"x\", \"after\": [\"c\"]},"
                 " {\"id\": \"c\", \"activity\": \"x\", \"after\": [\"b\"]}"),
         "steps[2].after: cycle through \"b\" -> \"c\" -> \"b\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        if (!cases [i].message)
            continue;
        shf_def_t *def = NULL;
        char err [512] = "untouched";
        shf_err_t rc = shf_def_compile (cases [i].text, strlen (cases [i].text),
                                        &def, err, sizeof err);
        if (rc != SHF_EDEFINITION || !streq (err, cases [i].message))
            fprintf (stderr, "%s\n-> %d %s\n", cases [i].text, rc, err);
        assert (rc == SHF_EDEFINITION);
        assert (def == NULL);
        assert (streq (err, cases [i].message));
    }
#undef S_STEPS
#undef S_DEF
#undef S_STEP
}

static void
s_test_limits (void)
{
    char err [256];
    shf_def_t *def = NULL;
    //  Over 1 MiB: refused before parsing.
    size_t size = 1024 * 1024 + 1;
    char *text = malloc (size);
    assert (text);
    memset (text, ' ', size);
    assert (shf_def_compile (text, size, &def, err, sizeof err)
            == SHF_ETOOLARGE);
    assert (def == NULL);
    assert (streq (err, "definition larger than 1048576 bytes"));
    free (text);
    //  Up to 1024 steps; a long chain is fine (no recursion over steps).
    for (size_t count = SHF_DEF_MAX_STEPS; count <= SHF_DEF_MAX_STEPS + 1;
         count++) {
        size_t cap = 64 + count * 48;
        text = malloc (cap);
        assert (text);
        size_t n = (size_t) snprintf (text, cap,
                                      "{\"name\": \"big\", "
                                      "\"steps\": [");
        for (size_t i = 0; i < count; i++)
            n += (size_t) snprintf (text + n, cap - n,
                                    "%s{\"id\": \"s%zu\", \"sleep\": \"1s\"}",
                                    i ? "," : "", i);
        n += (size_t) snprintf (text + n, cap - n, "]}");
        assert (n < cap);
        shf_err_t rc = shf_def_compile (text, n, &def, err, sizeof err);
        if (count == SHF_DEF_MAX_STEPS) {
            assert (rc == SHF_OK);
            assert (shf_def_step_count (def) == count);
            assert (shf_def_step_index (def, "s1023") == 1023);
            assert (shf_def_step_after (def, 1023, 0) == 1022);
            shf_def_destroy (&def);
        }
        else {
            assert (rc == SHF_ETOOLARGE);
            assert (def == NULL);
            assert (streq (err, "steps: more than 1024 steps"));
        }
        free (text);
    }
    //  A long cycle is reported with a cut message, never an overflow.
    size_t count = 600;
    size_t cap = 64 + count * 64;
    text = malloc (cap);
    assert (text);
    size_t n =
        (size_t) snprintf (text, cap, "{\"name\": \"cyc\", \"steps\": [");
    for (size_t i = 0; i < count; i++)
        n += (size_t) snprintf (
            text + n, cap - n, "%s{\"id\": \"step_%zu\", \"sleep\": \"1s\"%s}",
            i ? "," : "", i, i ? "" : ", \"after\": [\"step_599\"]");
    n += (size_t) snprintf (text + n, cap - n, "]}");
    assert (shf_def_compile (text, n, &def, err, sizeof err)
            == SHF_EDEFINITION);
    assert (strncmp (err,
                     "steps[0].after: cycle through \"step_0\" -> "
                     "\"step_599\" -> \"step_598\"",
                     60)
            == 0);
    free (text);
    //  Not NUL-terminated: only len bytes count.
    const char *ok = "{\"name\": \"n\", \"steps\": [{\"id\": \"a\", \"sleep\": "
                     "\"1s\"}]}trailing";
    assert (shf_def_compile (ok, strlen (ok) - 8, &def, err, sizeof err)
            == SHF_OK);
    shf_def_destroy (&def);
    assert (shf_def_compile (ok, strlen (ok), &def, err, sizeof err)
            == SHF_EDEFINITION);
    assert (strstr (err, "end of file expected"));
    //  A NULL err buffer is fine.
    assert (shf_def_compile ("{", 1, &def, NULL, 0) == SHF_EDEFINITION);
}

void
shf_def_test (bool verbose)
{
    if (verbose)
        printf (" * shf_def: ");
    s_test_spec_example (verbose);
    s_test_defaults ();
    s_test_errors ();
    s_test_limits ();
    if (verbose)
        printf ("OK\n");
}
