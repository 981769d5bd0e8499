/*  shf_client.c - the application half of libshardflow (shardflow.h).

    Every call builds one request object, sends it over the client's
    connection and waits for the reply that carries its id; replies with
    other ids are late answers to requests that already timed out and are
    dropped. Reads that are safe to repeat are sent once more when the
    connection dropped while they waited (a node restart loses what it
    had not answered). Errors keep the server's code string verbatim.
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

struct shf_client {
    shf_conn_t *conn;
    char *ns;
    int timeout_ms;
    shf_lasterr_t err;
};


shf_err_t
shf_client_open (shf_client_t **self_p, const char *server, const char *ns)
{
    assert (self_p);
    *self_p = NULL;
    if (!ns)
        ns = SHF_DEFAULT_NAMESPACE;
    if (!shf_msg_valid_name (ns))
        return SHF_EINVAL;
    shf_client_t *self = calloc (1, sizeof *self);
    assert (self);
    char err [256] = "";
    shf_err_t rc = shf_conn_open (&self->conn, server, false, err, sizeof err);
    if (rc != SHF_OK) {
        free (self);
        return rc;
    }
    self->ns = strdup (ns);
    assert (self->ns);
    self->timeout_ms = SHF_DEFAULT_TIMEOUT_MS;
    *self_p = self;
    return SHF_OK;
}

void
shf_client_destroy (shf_client_t **self_p)
{
    assert (self_p);
    shf_client_t *self = *self_p;
    if (!self)
        return;
    shf_conn_destroy (&self->conn);
    free (self->ns);
    free (self);
    *self_p = NULL;
}

void
shf_client_set_timeout (shf_client_t *self, int timeout_ms)
{
    assert (self);
    self->timeout_ms = timeout_ms > 0 ? timeout_ms : SHF_DEFAULT_TIMEOUT_MS;
}

const char *
shf_client_errcode (shf_client_t *self)
{
    return shf_lasterr_code (&self->err);
}

const char *
shf_client_errmsg (shf_client_t *self)
{
    return self->err.message;
}

//  Turn a reply object into a status and body.
static shf_err_t
s_take_reply (shf_client_t *self, json_t *reply, json_t **body_p)
{
    return shf_lasterr_reply (&self->err, reply, body_p);
}

//  Copy the request, give it an id and a namespace, and queue it.
static shf_err_t
s_send (shf_client_t *self, const json_t *request, uint64_t *id_p)
{
    if (!json_is_object (request)
        || !json_is_string (json_object_get (request, "op")))
        return shf_lasterr_fail (&self->err, SHF_EINVAL,
                                 "a request needs an \"op\"");
    json_t *msg = json_copy ((json_t *) request);
    assert (msg);
    uint64_t id = shf_conn_next_id (self->conn);
    json_object_set_new (msg, "id", json_integer ((json_int_t) id));
    if (!json_object_get (msg, "ns"))
        json_object_set_new (msg, "ns", json_string (self->ns));
    shf_err_t rc = shf_conn_send (self->conn, msg);
    json_decref (msg);
    if (rc == SHF_ETOOLARGE)
        return shf_lasterr_fail (&self->err, rc,
                                 "request is larger than %u bytes",
                                 (unsigned) SHF_MSG_MAX_FRAME);
    if (rc != SHF_OK)
        return shf_lasterr_fail (&self->err, rc,
                                 "cannot send to the server (queue full)");
    *id_p = id;
    return SHF_OK;
}

//  Wait for the reply to id for up to timeout_ms.
static shf_err_t
s_wait (shf_client_t *self, uint64_t id, int timeout_ms, json_t **body_p)
{
    int64_t deadline = zclock_mono () + timeout_ms;
    while (true) {
        int64_t left = deadline - zclock_mono ();
        if (left < 0)
            left = 0;
        json_t *msg = NULL;
        shf_op_t op;
        uint64_t got = 0;
        shf_err_t rc = shf_conn_recv (self->conn, (int) left, &msg, &op, &got);
        if (rc == SHF_ETIMEOUT)
            return shf_lasterr_fail (&self->err, rc,
                                     "no answer from the server within %d ms "
                                     "(is it running?)",
                                     timeout_ms);
        if (op == SHF_OP_REPLY && got == id) {
            rc = s_take_reply (self, msg, body_p);
            json_decref (msg);
            return rc;
        }
        json_decref (msg);  //  stale reply or stray push
    }
}

static bool
s_idempotent (const char *op)
{
    static const char *reads [] = {"def_list",    "def_show",   "wf_result",
                                   "wf_describe", "wf_history", "wf_list",
                                   NULL};
    for (int i = 0; reads [i]; i++)
        if (strcmp (op, reads [i]) == 0)
            return true;
    return false;
}

//  Send, wait, and for reads that lost their connection meanwhile, once
//  more.
static shf_err_t
s_call (shf_client_t *self, const json_t *request, int timeout_ms,
        json_t **body_p)
{
    const char *op = json_string_value (json_object_get (request, "op"));
    bool may_retry = op && s_idempotent (op);
    for (int attempt = 0;; attempt++) {
        unsigned downs = shf_conn_downs (self->conn);
        uint64_t id = 0;
        shf_err_t rc = s_send (self, request, &id);
        if (rc != SHF_OK)
            return rc;
        rc = s_wait (self, id, timeout_ms, body_p);
        if (rc != SHF_ETIMEOUT || !may_retry || attempt > 0
            || shf_conn_downs (self->conn) == downs)
            return rc;
    }
}

shf_err_t
shf_client_call (shf_client_t *self, const json_t *request, json_t **body_p)
{
    assert (self);
    if (body_p)
        *body_p = NULL;
    return s_call (self, request, self->timeout_ms, body_p);
}

shf_err_t
shf_client_send (shf_client_t *self, const json_t *request, uint64_t *id_p)
{
    assert (self);
    assert (id_p);
    return s_send (self, request, id_p);
}

shf_err_t
shf_client_recv (shf_client_t *self, int timeout_ms, uint64_t *id_p,
                 json_t **body_p)
{
    assert (self);
    if (body_p)
        *body_p = NULL;
    int64_t deadline = zclock_mono () + (timeout_ms > 0 ? timeout_ms : 0);
    while (true) {
        int64_t left = deadline - zclock_mono ();
        json_t *msg = NULL;
        shf_op_t op;
        uint64_t id = 0;
        shf_err_t rc = shf_conn_recv (self->conn, left > 0 ? (int) left : 0,
                                      &msg, &op, &id);
        if (rc != SHF_OK)
            return shf_lasterr_fail (&self->err, rc,
                                     "no answer from the server within %d ms",
                                     timeout_ms);
        if (op != SHF_OP_REPLY) {
            json_decref (msg);
            continue;
        }
        if (id_p)
            *id_p = id;
        rc = s_take_reply (self, msg, body_p);
        json_decref (msg);
        return rc;
    }
}

//  Parse a payload given as JSON text (NULL: null) into msg[field].
static shf_err_t
s_set_payload (shf_client_t *self, json_t *msg, const char *field,
               const char *text)
{
    if (!text) {
        json_object_set_new (msg, field, json_null ());
        return SHF_OK;
    }
    json_error_t jerr;
    json_t *value = json_loads (text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (!value)
        return shf_lasterr_fail (
            &self->err, SHF_EINVAL,
            "%s is not valid JSON: %s (line %d, column %d)", field, jerr.text,
            jerr.line, jerr.column);
    json_object_set_new (msg, field, value);
    return SHF_OK;
}

static json_t *
s_request (const char *op)
{
    json_t *msg = json_object ();
    assert (msg);
    json_object_set_new (msg, "op", json_string (op));
    return msg;
}

//  Set msg[field] to a string; text that is not UTF-8 is refused here.
static shf_err_t
s_put_str (shf_client_t *self, json_t *msg, const char *field,
           const char *value)
{
    json_t *string = json_string (value);
    if (!string)
        return shf_lasterr_fail (&self->err, SHF_EINVAL,
                                 "%s is not valid UTF-8", field);
    json_object_set_new (msg, field, string);
    return SHF_OK;
}

static shf_err_t
s_drop (json_t *msg)
{
    json_decref (msg);
    return SHF_EINVAL;
}

static shf_err_t
s_call_owned (shf_client_t *self, json_t *request, json_t **body_p)
{
    if (body_p)
        *body_p = NULL;
    shf_err_t rc = s_call (self, request, self->timeout_ms, body_p);
    json_decref (request);
    return rc;
}

static shf_err_t
s_need (shf_client_t *self, const char *value, const char *what)
{
    if (!value || !*value)
        return shf_lasterr_fail (&self->err, SHF_EINVAL, "%s is required",
                                 what);
    return SHF_OK;
}

shf_err_t
shf_client_def_register (shf_client_t *self, const char *doc, json_t **body_p)
{
    if (s_need (self, doc, "the definition document"))
        return SHF_EINVAL;
    json_t *msg = s_request ("def_register");
    if (s_put_str (self, msg, "doc", doc) != SHF_OK)
        return s_drop (msg);
    return s_call_owned (self, msg, body_p);
}

shf_err_t
shf_client_def_list (shf_client_t *self, json_t **body_p)
{
    return s_call_owned (self, s_request ("def_list"), body_p);
}

shf_err_t
shf_client_def_show (shf_client_t *self, const char *name, int64_t version,
                     json_t **body_p)
{
    if (s_need (self, name, "a definition name"))
        return SHF_EINVAL;
    json_t *msg = s_request ("def_show");
    if (s_put_str (self, msg, "name", name) != SHF_OK)
        return s_drop (msg);
    if (version > 0)
        json_object_set_new (msg, "version", json_integer (version));
    return s_call_owned (self, msg, body_p);
}

//  The wf_start request of start and execute; NULL when an argument is
//  refused (the error is set).
static json_t *
s_start_request (shf_client_t *self, const char *name, int64_t version,
                 const char *wf_id, const char *input, const char *request_id)
{
    if (s_need (self, name, "a definition name"))
        return NULL;
    json_t *msg = s_request ("wf_start");
    if (s_put_str (self, msg, "name", name) != SHF_OK
        || (wf_id && s_put_str (self, msg, "wf_id", wf_id) != SHF_OK)
        || (request_id
            && s_put_str (self, msg, "request_id", request_id) != SHF_OK)
        || s_set_payload (self, msg, "input", input) != SHF_OK) {
        json_decref (msg);
        return NULL;
    }
    if (version > 0)
        json_object_set_new (msg, "version", json_integer (version));
    return msg;
}

shf_err_t
shf_client_start (shf_client_t *self, const char *name, int64_t version,
                  const char *wf_id, const char *input, const char *request_id,
                  json_t **body_p)
{
    if (body_p)
        *body_p = NULL;
    json_t *msg =
        s_start_request (self, name, version, wf_id, input, request_id);
    if (!msg)
        return SHF_EINVAL;
    return s_call_owned (self, msg, body_p);
}

shf_err_t
shf_client_execute (shf_client_t *self, const char *name, int64_t version,
                    const char *wf_id, const char *input,
                    const char *request_id, int timeout_ms, json_t **body_p)
{
    if (body_p)
        *body_p = NULL;
    json_t *msg =
        s_start_request (self, name, version, wf_id, input, request_id);
    if (!msg)
        return SHF_EINVAL;
    if (timeout_ms <= 0)
        timeout_ms = 30000;
    json_object_set_new (msg, "wait", json_true ());
    json_object_set_new (msg, "timeout_ms", json_integer (timeout_ms));
    shf_err_t rc = s_call (self, msg, self->timeout_ms + timeout_ms, body_p);
    json_decref (msg);
    return rc;
}

shf_err_t
shf_client_result (shf_client_t *self, const char *wf_id, bool wait,
                   int timeout_ms, json_t **body_p)
{
    if (body_p)
        *body_p = NULL;
    if (s_need (self, wf_id, "a workflow ID"))
        return SHF_EINVAL;
    json_t *msg = s_request ("wf_result");
    if (s_put_str (self, msg, "wf_id", wf_id) != SHF_OK)
        return s_drop (msg);
    int wait_ms = self->timeout_ms;
    if (wait) {
        if (timeout_ms <= 0)
            timeout_ms = 30000;
        json_object_set_new (msg, "wait", json_true ());
        json_object_set_new (msg, "timeout_ms", json_integer (timeout_ms));
        wait_ms += timeout_ms;
    }
    shf_err_t rc = s_call (self, msg, wait_ms, body_p);
    json_decref (msg);
    return rc;
}

static shf_err_t
s_wf_op (shf_client_t *self, const char *op, const char *wf_id, json_t **body_p)
{
    if (s_need (self, wf_id, "a workflow ID"))
        return SHF_EINVAL;
    json_t *msg = s_request (op);
    if (s_put_str (self, msg, "wf_id", wf_id) != SHF_OK)
        return s_drop (msg);
    return s_call_owned (self, msg, body_p);
}

shf_err_t
shf_client_describe (shf_client_t *self, const char *wf_id, json_t **body_p)
{
    return s_wf_op (self, "wf_describe", wf_id, body_p);
}

shf_err_t
shf_client_history_page (shf_client_t *self, const char *wf_id, int page_size,
                         const char *page_token, json_t **body_p)
{
    if (s_need (self, wf_id, "a workflow ID"))
        return SHF_EINVAL;
    json_t *msg = s_request ("wf_history");
    if (s_put_str (self, msg, "wf_id", wf_id) != SHF_OK
        || (page_token
            && s_put_str (self, msg, "page_token", page_token) != SHF_OK))
        return s_drop (msg);
    if (page_size > 0)
        json_object_set_new (msg, "page_size", json_integer (page_size));
    return s_call_owned (self, msg, body_p);
}

//  Every page, one after the other: the node answers at most a page per
//  request, so a long history never needs one huge frame.
shf_err_t
shf_client_history (shf_client_t *self, const char *wf_id, json_t **body_p)
{
    json_t *page = NULL;
    shf_err_t rc = shf_client_history_page (self, wf_id, 0, NULL, &page);
    //  The next page continues from the token of the one before, which
    //  also holds the pages' events; a page without events that points on
    //  would never end.
    json_t *last = json_incref (page);
    while (rc == SHF_OK
           && json_array_size (json_object_get (last, "events")) > 0) {
        const char *token =
            json_string_value (json_object_get (last, "next_page_token"));
        if (!token)
            break;
        json_t *more = NULL;
        rc = shf_client_history_page (self, wf_id, 0, token, &more);
        if (rc == SHF_OK)
            json_array_extend (json_object_get (page, "events"),
                               json_object_get (more, "events"));
        json_decref (last);
        last = more;
    }
    json_decref (last);
    if (page)
        json_object_del (page, "next_page_token");
    if (rc != SHF_OK) {
        json_decref (page);
        page = NULL;
    }
    if (body_p)
        *body_p = page;
    else
        json_decref (page);
    return rc;
}

shf_err_t
shf_client_list (shf_client_t *self, const char *status, const char *name,
                 int64_t limit, json_t **body_p)
{
    json_t *msg = s_request ("wf_list");
    if (status)
        if (s_put_str (self, msg, "status", status) != SHF_OK)
            return s_drop (msg);
    if (name)
        if (s_put_str (self, msg, "name", name) != SHF_OK)
            return s_drop (msg);
    if (limit > 0)
        json_object_set_new (msg, "limit", json_integer (limit));
    return s_call_owned (self, msg, body_p);
}

shf_err_t
shf_client_signal (shf_client_t *self, const char *wf_id, const char *signal,
                   const char *input, json_t **body_p)
{
    if (s_need (self, wf_id, "a workflow ID")
        || s_need (self, signal, "a signal name"))
        return SHF_EINVAL;
    json_t *msg = s_request ("wf_signal");
    if (s_put_str (self, msg, "wf_id", wf_id) != SHF_OK)
        return s_drop (msg);
    if (s_put_str (self, msg, "signal", signal) != SHF_OK)
        return s_drop (msg);
    if (s_set_payload (self, msg, "input", input) != SHF_OK) {
        json_decref (msg);
        return SHF_EINVAL;
    }
    return s_call_owned (self, msg, body_p);
}

static shf_err_t
s_close_op (shf_client_t *self, const char *op, const char *wf_id,
            const char *reason, json_t **body_p)
{
    if (s_need (self, wf_id, "a workflow ID"))
        return SHF_EINVAL;
    json_t *msg = s_request (op);
    if (s_put_str (self, msg, "wf_id", wf_id) != SHF_OK)
        return s_drop (msg);
    if (reason)
        if (s_put_str (self, msg, "reason", reason) != SHF_OK)
            return s_drop (msg);
    return s_call_owned (self, msg, body_p);
}

shf_err_t
shf_client_cancel (shf_client_t *self, const char *wf_id, const char *reason,
                   json_t **body_p)
{
    return s_close_op (self, "wf_cancel", wf_id, reason, body_p);
}

shf_err_t
shf_client_terminate (shf_client_t *self, const char *wf_id, const char *reason,
                      json_t **body_p)
{
    return s_close_op (self, "wf_terminate", wf_id, reason, body_p);
}
