/*  shf_worker.c - the worker half of libshardflow (shardflow.h).

    Credit is additive on the wire: {"op":"poll","credit":N} grants N more
    task slots. The worker keeps one number, held = tasks received and not
    yet reported, and keeps the node's view equal to concurrency - held:
    all free slots when a connection comes up (a restarted node, or a new
    connection after a network failure, knows nothing of us), one more
    after each report. While the connection is down nothing is granted, so
    a grant queued in the socket cannot be counted twice after the
    reconnect. A poll with credit 0 once a second tells the node we are
    still here.

    Tasks are pushed by the node at any time, also while we wait for the
    reply to a report; they queue here in arrival order until
    shf_worker_poll hands them out. After shf_worker_stop every task that
    arrives, or still waits here, is handed back with type
    "WorkerShutdown" without waiting for the reply; destroy then gives
    those replies a moment so the frames are not dropped unsent.
*/
#include "shardflow.h"
#include "shf_lasterr.h"
#include "shf_conn.h"
#include <assert.h>
#include <czmq.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEEPALIVE_MS 1000

struct shf_task {
    json_t *msg;    //  the task frame as received
    char *input;    //  compact JSON text of msg.input
    char *details;  //  compact JSON text of msg.heartbeat_details, or NULL
};

struct shf_worker {
    shf_conn_t *conn;
    char *queue;
    int concurrency;
    int held;              //  tasks received, not yet reported
    json_t *queued;        //  array of task frames not yet handed out
    unsigned granted_ups;  //  connection count when credit was last reset
    int64_t last_poll_ms;  //  when a poll (grant or keepalive) was sent
    bool stopping;
    int timeout_ms;
    zlistx_t *unacked;  //  ids of hand-backs whose reply has not come
    shf_lasterr_t err;
};


static int64_t
s_now_ms (void)
{
    return zclock_mono ();
}

shf_err_t
shf_worker_open (shf_worker_t **self_p, const char *server, const char *queue,
                 int concurrency)
{
    assert (self_p);
    *self_p = NULL;
    if (!queue || !shf_msg_valid_name (queue) || concurrency < 1
        || concurrency > 10000)
        return SHF_EINVAL;
    shf_worker_t *self = calloc (1, sizeof *self);
    assert (self);
    char err [256] = "";
    shf_err_t rc = shf_conn_open (&self->conn, server, true, err, sizeof err);
    if (rc != SHF_OK) {
        free (self);
        return rc;
    }
    self->queue = strdup (queue);
    self->concurrency = concurrency;
    self->queued = json_array ();
    self->timeout_ms = SHF_DEFAULT_TIMEOUT_MS;
    self->unacked = zlistx_new ();
    assert (self->queue && self->queued && self->unacked);
    *self_p = self;
    return SHF_OK;
}

static void s_handle (shf_worker_t *self, json_t *msg, shf_op_t op,
                      uint64_t id);

void
shf_worker_destroy (shf_worker_t **self_p)
{
    assert (self_p);
    shf_worker_t *self = *self_p;
    if (!self)
        return;
    //  Let queued hand-backs leave and be answered, briefly.
    int64_t deadline = s_now_ms () + 2000;
    while (zlistx_size (self->unacked) > 0 && s_now_ms () < deadline) {
        json_t *msg = NULL;
        shf_op_t op;
        uint64_t id;
        if (shf_conn_recv (self->conn, (int) (deadline - s_now_ms ()), &msg,
                           &op, &id)
            != SHF_OK)
            break;
        s_handle (self, msg, op, id);
    }
    shf_conn_destroy (&self->conn);
    json_decref (self->queued);
    zlistx_destroy (&self->unacked);
    free (self->queue);
    free (self);
    *self_p = NULL;
}

const char *
shf_worker_errcode (shf_worker_t *self)
{
    return shf_lasterr_code (&self->err);
}

const char *
shf_worker_errmsg (shf_worker_t *self)
{
    return self->err.message;
}

void *
shf_worker_handle (shf_worker_t *self)
{
    return shf_conn_handle (self->conn);
}

static uint64_t
s_send (shf_worker_t *self, json_t *msg)
{
    uint64_t id = shf_conn_next_id (self->conn);
    json_object_set_new (msg, "id", json_integer ((json_int_t) id));
    shf_err_t rc = shf_conn_send (self->conn, msg);
    if (rc != SHF_OK)
        shf_lasterr_fail (&self->err, rc, "cannot send to the server: %s",
                          shf_strerror (rc));
    return rc == SHF_OK ? id : 0;
}

static void
s_send_poll (shf_worker_t *self, int credit)
{
    json_t *msg = json_pack ("{s:s, s:s, s:i}", "op", "poll", "queue",
                             self->queue, "credit", credit);
    assert (msg);
    s_send (self, msg);
    json_decref (msg);
    self->last_poll_ms = s_now_ms ();
}

static void
s_hand_back (shf_worker_t *self, json_t *task_msg)
{
    const char *token = json_string_value (json_object_get (task_msg, "token"));
    if (!token)
        return;
    json_t *msg = json_pack ("{s:s, s:s, s:{s:s, s:s}}", "op", "fail", "token",
                             token, "error", "type", "WorkerShutdown",
                             "message", "the worker is shutting down");
    assert (msg);
    uint64_t id = s_send (self, msg);
    json_decref (msg);
    if (id)
        zlistx_add_end (self->unacked, (void *) (uintptr_t) id);
}

//  Take a frame that is not the reply somebody waits for.
static void
s_handle (shf_worker_t *self, json_t *msg, shf_op_t op, uint64_t id)
{
    if (op == SHF_OP_TASK) {
        if (self->stopping) {
            s_hand_back (self, msg);
            json_decref (msg);
        }
        else {
            self->held++;
            json_array_append_new (self->queued, msg);
        }
        return;
    }
    if (op == SHF_OP_REPLY && id) {
        void *handle = zlistx_find (self->unacked, (void *) (uintptr_t) id);
        if (handle)
            zlistx_delete (self->unacked, handle);
    }
    json_decref (msg);  //  a late reply, or a poll's
}

//  Credit and keepalive bookkeeping; see the banner.
static void
s_upkeep (shf_worker_t *self)
{
    shf_conn_check (self->conn);
    if (self->stopping || !shf_conn_connected (self->conn))
        return;
    unsigned ups = shf_conn_ups (self->conn);
    if (ups != self->granted_ups) {
        self->granted_ups = ups;
        int free_slots = self->concurrency - self->held;
        s_send_poll (self, free_slots > 0 ? free_slots : 0);
    }
    else if (s_now_ms () - self->last_poll_ms >= KEEPALIVE_MS)
        s_send_poll (self, 0);
}

void
shf_worker_service (shf_worker_t *self)
{
    assert (self);
    s_upkeep (self);
    json_t *msg;
    shf_op_t op;
    uint64_t id;
    while (shf_conn_recv (self->conn, 0, &msg, &op, &id) == SHF_OK)
        s_handle (self, msg, op, id);
    s_upkeep (self);
}

static char *
s_dump (const json_t *value)
{
    char *text = json_dumps (value ? value : json_null (),
                             JSON_COMPACT | JSON_ENCODE_ANY);
    assert (text);
    return text;
}

shf_err_t
shf_worker_poll (shf_worker_t *self, int timeout_ms, shf_task_t **task_p)
{
    assert (self);
    assert (task_p);
    *task_p = NULL;
    int64_t deadline = s_now_ms () + (timeout_ms > 0 ? timeout_ms : 0);
    while (true) {
        shf_worker_service (self);
        if (self->stopping)
            break;
        if (json_array_size (self->queued) > 0) {
            json_t *msg = json_incref (json_array_get (self->queued, 0));
            json_array_remove (self->queued, 0);
            shf_task_t *task = calloc (1, sizeof *task);
            assert (task);
            task->msg = msg;
            task->input = s_dump (json_object_get (msg, "input"));
            json_t *details = json_object_get (msg, "heartbeat_details");
            if (details && !json_is_null (details))
                task->details = s_dump (details);
            *task_p = task;
            return SHF_OK;
        }
        int64_t left = deadline - s_now_ms ();
        if (left <= 0)
            break;
        int64_t until_keepalive =
            self->last_poll_ms + KEEPALIVE_MS - s_now_ms ();
        if (until_keepalive < left)
            left = until_keepalive > 10 ? until_keepalive : 10;
        if (left > 250)
            left = 250;  //  follow reconnects promptly
        json_t *msg;
        shf_op_t op;
        uint64_t id;
        if (shf_conn_recv (self->conn, (int) left, &msg, &op, &id) == SHF_OK)
            s_handle (self, msg, op, id);
    }
    shf_lasterr_fail (&self->err, SHF_ETIMEOUT, "no task");
    return SHF_ETIMEOUT;
}

void
shf_worker_stop (shf_worker_t *self)
{
    assert (self);
    if (self->stopping)
        return;
    self->stopping = true;
    for (size_t i = 0; i < json_array_size (self->queued); i++) {
        s_hand_back (self, json_array_get (self->queued, i));
        self->held--;
    }
    json_array_clear (self->queued);
}

//  Send a request and wait for its reply; reports are idempotent on the
//  node (a repeat is recorded once), so a request that lost its
//  connection while waiting is sent once more.
static shf_err_t
s_request (shf_worker_t *self, json_t *msg, json_t **body_p)
{
    for (int attempt = 0;; attempt++) {
        unsigned downs = shf_conn_downs (self->conn);
        uint64_t id = s_send (self, msg);
        if (!id)
            return SHF_EUNAVAIL;
        int64_t deadline = s_now_ms () + self->timeout_ms;
        while (true) {
            int64_t left = deadline - s_now_ms ();
            json_t *reply;
            shf_op_t op;
            uint64_t got;
            if (left <= 0
                || shf_conn_recv (self->conn, (int) left, &reply, &op, &got)
                       != SHF_OK)
                break;
            if (op != SHF_OP_REPLY || got != id) {
                s_handle (self, reply, op, got);
                continue;
            }
            shf_err_t rc = shf_lasterr_reply (&self->err, reply, body_p);
            json_decref (reply);
            return rc;
        }
        if (attempt > 0 || shf_conn_downs (self->conn) == downs)
            return shf_lasterr_fail (&self->err, SHF_ETIMEOUT,
                                     "no answer from the server within %d ms",
                                     self->timeout_ms);
    }
}

//  The slot of a reported task is free again: tell the node.
static void
s_release (shf_worker_t *self)
{
    self->held--;
    shf_conn_check (self->conn);
    if (!self->stopping && shf_conn_connected (self->conn)
        && shf_conn_ups (self->conn) == self->granted_ups)
        s_send_poll (self, 1);
}

static shf_err_t
s_report (shf_worker_t *self, shf_task_t **task_p, json_t *msg)
{
    shf_task_t *task = *task_p;
    json_object_set_new (msg, "token",
                         json_incref (json_object_get (task->msg, "token")));
    shf_err_t rc = s_request (self, msg, NULL);
    json_decref (msg);
    s_release (self);
    shf_task_destroy (task_p);
    return rc;
}

shf_err_t
shf_worker_fail (shf_worker_t *self, shf_task_t **task_p, const char *type,
                 const char *message)
{
    assert (self);
    assert (task_p && *task_p);
    json_t *error = json_object ();
    json_t *jtype = json_string (type && *type ? type : "Error");
    json_t *jmessage = json_string (message ? message : "");
    json_object_set_new (error, "type", jtype ? jtype : json_string ("Error"));
    json_object_set_new (error, "message",
                         jmessage ? jmessage : json_string ("(not UTF-8)"));
    json_t *msg = json_pack ("{s:s, s:o}", "op", "fail", "error", error);
    assert (msg);
    return s_report (self, task_p, msg);
}

shf_err_t
shf_worker_complete (shf_worker_t *self, shf_task_t **task_p,
                     const char *output)
{
    assert (self);
    assert (task_p && *task_p);
    json_t *value = json_null ();
    if (output) {
        json_error_t jerr;
        value = json_loads (output, JSON_DECODE_ANY, &jerr);
        if (!value) {
            char message [256];
            snprintf (message, sizeof message, "output is not JSON: %s",
                      jerr.text);
            shf_err_t rc = shf_worker_fail (self, task_p, "BadOutput", message);
            if (rc != SHF_OK)
                return rc;
            return shf_lasterr_fail (&self->err, SHF_EINVAL, "%s", message);
        }
    }
    json_t *msg = json_pack ("{s:s, s:o}", "op", "complete", "output", value);
    assert (msg);
    char *data = NULL;
    size_t size = 0;
    //  Check the size here, so an oversized output fails the step rather
    //  than the whole report.
    if (shf_msg_encode (msg, &data, &size) == SHF_ETOOLARGE
        || (data && size > SHF_MSG_MAX_PAYLOAD + 4096)) {
        free (data);
        json_decref (msg);
        shf_err_t rc = shf_worker_fail (self, task_p, "TooLarge",
                                        "the output is larger than 2 MiB");
        if (rc != SHF_OK)
            return rc;
        return shf_lasterr_fail (&self->err, SHF_ETOOLARGE,
                                 "the output is larger than 2 MiB");
    }
    free (data);
    return s_report (self, task_p, msg);
}

shf_err_t
shf_worker_heartbeat (shf_worker_t *self, shf_task_t *task, const char *details,
                      bool *canceled_p)
{
    assert (self);
    assert (task);
    if (canceled_p)
        *canceled_p = false;
    json_t *value = json_null ();
    if (details) {
        json_error_t jerr;
        value = json_loads (details, JSON_DECODE_ANY, &jerr);
        if (!value)
            return shf_lasterr_fail (&self->err, SHF_EINVAL,
                                     "details are not JSON: %s", jerr.text);
    }
    const char *token = shf_task_token (task);
    json_t *msg = json_pack ("{s:s, s:[{s:s, s:o}]}", "op", "heartbeat",
                             "items", "token", token, "details", value);
    assert (msg);
    json_t *body = NULL;
    shf_err_t rc = s_request (self, msg, &body);
    json_decref (msg);
    if (rc == SHF_OK && canceled_p) {
        json_t *canceled = json_object_get (body, "canceled");
        size_t i;
        json_t *item;
        json_array_foreach (canceled, i, item)
        {
            if (json_is_string (item)
                && strcmp (json_string_value (item), token) == 0)
                *canceled_p = true;
        }
    }
    json_decref (body);
    return rc;
}

//  ---------------------------------------------------------------------
//  Task accessors

static const char *
s_field (shf_task_t *self, const char *name)
{
    assert (self);
    const char *value = json_string_value (json_object_get (self->msg, name));
    return value ? value : "";
}

const char *
shf_task_token (shf_task_t *self)
{
    return s_field (self, "token");
}

const char *
shf_task_activity (shf_task_t *self)
{
    return s_field (self, "activity");
}

const char *
shf_task_namespace (shf_task_t *self)
{
    return s_field (self, "ns");
}

const char *
shf_task_workflow_id (shf_task_t *self)
{
    return s_field (self, "wf_id");
}

const char *
shf_task_run_id (shf_task_t *self)
{
    return s_field (self, "run_id");
}

const char *
shf_task_step (shf_task_t *self)
{
    return s_field (self, "step");
}

const char *
shf_task_queue (shf_task_t *self)
{
    return s_field (self, "queue");
}

int64_t
shf_task_attempt (shf_task_t *self)
{
    return json_integer_value (json_object_get (self->msg, "attempt"));
}

int64_t
shf_task_start_to_close_ms (shf_task_t *self)
{
    return json_integer_value (
        json_object_get (self->msg, "start_to_close_ms"));
}

const char *
shf_task_input (shf_task_t *self)
{
    return self->input;
}

const char *
shf_task_heartbeat_details (shf_task_t *self)
{
    return self->details;
}

void
shf_task_destroy (shf_task_t **self_p)
{
    assert (self_p);
    shf_task_t *self = *self_p;
    if (!self)
        return;
    json_decref (self->msg);
    free (self->input);
    free (self->details);
    free (self);
    *self_p = NULL;
}
