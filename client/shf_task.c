/*  shf_task.c - a task read from its frame (shf_task.h), and the task
    accessors of shardflow.h.

    One allocation holds the task and its seven strings; the input (and
    the details of an earlier attempt's last heartbeat) are turned into
    compact JSON text here, once, since that is what the application
    reads.
*/
#include "shf_task.h"
#include "shf_mpack.h"
#include "shf_taskmsg.h"
#include <assert.h>
#include <stdlib.h>
#include <string.h>

struct shf_task {
    const char *token, *activity, *ns, *wf_id, *run_id, *step, *queue;
    int64_t attempt;
    int64_t start_to_close_ms;
    int64_t heartbeat_timeout_ms;
    char *input;    //  compact JSON text of the input ("null" when none)
    char *details;  //  compact JSON text of heartbeat_details, or NULL
    char strings [];
};

//  Compact JSON text of a payload's msgpack bytes; "null" for none. The
//  frame's reader checked the bytes by the decoder's rules: they decode.
static char *
s_text (const uint8_t *data, size_t size)
{
    if (!data)
        return strdup ("null");
    json_t *value = NULL;
    if (shf_mpack_decode (data, size, &value, NULL, 0) != SHF_OK)
        return NULL;
    char *text = json_dumps (value, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref (value);
    return text;
}

//  Copies str behind *at as a C string; returns it.
static const char *
s_copy (char **at, shf_envelope_str_t str)
{
    char *copy = *at;
    if (str.len)
        memcpy (copy, str.ptr, str.len);
    copy [str.len] = 0;
    *at += str.len + 1;
    return copy;
}

shf_err_t
shf_task_read (const void *data, size_t size, shf_task_t **task_p, char *err,
               size_t errlen)
{
    assert (task_p);
    *task_p = NULL;
    shf_taskmsg_t msg;
    shf_err_t rc = shf_taskmsg_read (data, size, &msg, err, errlen);
    if (rc != SHF_OK)
        return rc;
    const shf_envelope_str_t *strs [] = {&msg.token, &msg.activity, &msg.ns,
                                         &msg.wf_id, &msg.run_id,   &msg.step,
                                         &msg.queue};
    size_t bytes = 0;
    for (size_t i = 0; i < sizeof strs / sizeof strs [0]; i++)
        bytes += strs [i]->len + 1;
    shf_task_t *self = malloc (sizeof *self + bytes);
    assert (self);
    char *at = self->strings;
    self->token = s_copy (&at, msg.token);
    self->activity = s_copy (&at, msg.activity);
    self->ns = s_copy (&at, msg.ns);
    self->wf_id = s_copy (&at, msg.wf_id);
    self->run_id = s_copy (&at, msg.run_id);
    self->step = s_copy (&at, msg.step);
    self->queue = s_copy (&at, msg.queue);
    self->attempt = msg.attempt;
    self->start_to_close_ms = msg.start_to_close_ms;
    self->heartbeat_timeout_ms = msg.heartbeat_timeout_ms;
    self->input = s_text (msg.input, msg.input_size);
    self->details = msg.details ? s_text (msg.details, msg.details_size) : NULL;
    assert (self->input && (self->details || !msg.details));
    *task_p = self;
    return SHF_OK;
}

const char *
shf_task_token (shf_task_t *self)
{
    assert (self);
    return self->token;
}

const char *
shf_task_activity (shf_task_t *self)
{
    assert (self);
    return self->activity;
}

const char *
shf_task_namespace (shf_task_t *self)
{
    assert (self);
    return self->ns;
}

const char *
shf_task_workflow_id (shf_task_t *self)
{
    assert (self);
    return self->wf_id;
}

const char *
shf_task_run_id (shf_task_t *self)
{
    assert (self);
    return self->run_id;
}

const char *
shf_task_step (shf_task_t *self)
{
    assert (self);
    return self->step;
}

const char *
shf_task_queue (shf_task_t *self)
{
    assert (self);
    return self->queue;
}

int64_t
shf_task_attempt (shf_task_t *self)
{
    assert (self);
    return self->attempt;
}

int64_t
shf_task_start_to_close_ms (shf_task_t *self)
{
    assert (self);
    return self->start_to_close_ms;
}

int64_t
shf_task_heartbeat_timeout_ms (shf_task_t *self)
{
    assert (self);
    return self->heartbeat_timeout_ms;
}

const char *
shf_task_input (shf_task_t *self)
{
    assert (self);
    return self->input;
}

const char *
shf_task_heartbeat_details (shf_task_t *self)
{
    assert (self);
    return self->details;
}

void
shf_task_destroy (shf_task_t **self_p)
{
    assert (self_p);
    shf_task_t *self = *self_p;
    if (!self)
        return;
    free (self->input);
    free (self->details);
    free (self);
    *self_p = NULL;
}
