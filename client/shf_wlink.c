/*  shf_wlink.c - a worker's link to its node (shf_wlink.h).

    One loop over three sockets: the pipe (commands from the worker's
    thread), the DEALER (tasks and replies from the node) and the DEALER's
    monitor (the connection going up or down). Each pass does the upkeep
    that must not wait for the application: credit and keepalives,
    the heartbeat batch that is due, reports whose reply is late.

    Credit is additive on the wire: {"op":"poll","credit":N} grants N more
    task slots. The actor keeps held = tasks handed to the worker and not
    yet reported, and keeps the node's view equal to concurrency - held:
    all free slots when a connection comes up (a restarted node, or a new
    connection after a network failure, knows nothing of us), one more
    after each report. While the connection is down nothing is granted,
    so a grant queued in the socket cannot be counted twice after the
    reconnect.

    Messages to the worker's thread never block the loop: when the pipe
    is full (the application has not read it for a while), they wait in
    an outbox, so keepalives keep going out whatever the application does.
*/
#include "shf_wlink.h"
#include "shardflow.h"
#include "shf_hbman.h"
#include "shf_log.h"
#include "shf_msg.h"
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

//  How long $TERM waits for hand-backs to be answered.
#define S_TERM_WAIT_MS 2000
//  Commands read from the pipe per pass of the loop.
#define S_PIPE_BATCH 1000

typedef struct {
    uint32_t seq;  //  the worker's number for it
    uint64_t id;   //  request id on the wire
    json_t *msg;
    int64_t deadline;
    unsigned downs;  //  connection losses seen when it was sent
    int attempt;
} s_report_t;

typedef struct {
    zsock_t *pipe;
    shf_conn_t *conn;
    char *queue;
    int concurrency;
    int timeout_ms;
    int held;              //  tasks handed to the worker, not reported
    unsigned granted_ups;  //  connection count when credit was last reset
    int64_t last_keepalive;
    bool stopping;
    bool terminated;
    shf_hbman_t *hbman;
    zlistx_t *reports;  //  s_report_t *, waiting for their reply
    zlistx_t *unacked;  //  ids of hand-backs not yet answered
    zlistx_t *outbox;   //  zmsg_t * for the pipe, when it was full
} self_t;

static int64_t
s_now (void)
{
    return zclock_mono ();
}

static void
s_report_free (void **item)
{
    s_report_t *report = *item;
    if (report) {
        json_decref (report->msg);
        free (report);
        *item = NULL;
    }
}

static void
s_zmsg_free (void **item)
{
    zmsg_t *msg = *item;
    zmsg_destroy (&msg);
    *item = NULL;
}

static self_t *
s_self_new (zsock_t *pipe, shf_wlink_args_t *args)
{
    self_t *self = calloc (1, sizeof *self);
    assert (self);
    self->pipe = pipe;
    self->conn = args->conn;
    args->conn = NULL;
    self->queue = strdup (args->queue);
    self->concurrency = args->concurrency;
    self->timeout_ms =
        args->timeout_ms > 0 ? args->timeout_ms : SHF_DEFAULT_TIMEOUT_MS;
    self->hbman = shf_hbman_new ();
    self->reports = zlistx_new ();
    self->unacked = zlistx_new ();
    self->outbox = zlistx_new ();
    assert (self->queue && self->reports && self->unacked && self->outbox);
    zlistx_set_destructor (self->reports, s_report_free);
    zlistx_set_destructor (self->outbox, s_zmsg_free);
    return self;
}

static void
s_self_destroy (self_t **self_p)
{
    self_t *self = *self_p;
    shf_conn_destroy (&self->conn);
    shf_hbman_destroy (&self->hbman);
    zlistx_destroy (&self->reports);
    zlistx_destroy (&self->unacked);
    zlistx_destroy (&self->outbox);
    free (self->queue);
    free (self);
    *self_p = NULL;
}

//  ---------------------------------------------------------------------
//  Pipe I/O (shf_wlink.h): both ends use it. This thread blocks signals,
//  the worker's thread cannot.

int
shf_wlink_events (void *sock)
{
    void *handle = zsock_resolve (sock);
    while (true) {
        int events = 0;
        size_t size = sizeof events;
        if (zmq_getsockopt (handle, ZMQ_EVENTS, &events, &size) == 0)
            return events;
        if (zmq_errno () != EINTR)
            return 0;
    }
}

int
shf_wlink_send (void *sock, zmsg_t **msg_p)
{
    assert (msg_p);
    zmsg_t *msg = *msg_p;
    if (!msg)
        return -1;
    void *handle = zsock_resolve (sock);
    int rc = 0;
    zframe_t *frame;
    while (rc == 0 && (frame = zmsg_pop (msg))) {
        bool more = zmsg_size (msg) > 0;
        zmq_msg_t part;
        rc = zmq_msg_init_size (&part, zframe_size (frame));
        assert (rc == 0);
        if (zframe_size (frame))
            memcpy (zmq_msg_data (&part), zframe_data (frame),
                    zframe_size (frame));
        zframe_destroy (&frame);
        //  A failed send leaves the part with us: EINTR is only retried.
        while ((rc = zmq_msg_send (&part, handle, more ? ZMQ_SNDMORE : 0)) < 0
               && zmq_errno () == EINTR)
            ;
        if (rc < 0)
            zmq_msg_close (&part);
        rc = rc < 0 ? -1 : 0;
    }
    zmsg_destroy (msg_p);
    return rc;
}

zmsg_t *
shf_wlink_recv (void *sock, bool wait)
{
    void *handle = zsock_resolve (sock);
    zmsg_t *msg = NULL;
    bool more = true;
    while (more) {
        zmq_msg_t part;
        zmq_msg_init (&part);
        //  Only the first part may be waited for: the others are there.
        int flags = msg || wait ? 0 : ZMQ_DONTWAIT;
        int rc;
        while ((rc = zmq_msg_recv (&part, handle, flags)) < 0
               && zmq_errno () == EINTR)
            ;
        if (rc < 0) {
            int err = zmq_errno ();
            zmq_msg_close (&part);
            zmsg_destroy (&msg);
            errno = err;
            return NULL;
        }
        if (!msg)
            msg = zmsg_new ();
        assert (msg);
        zmsg_addmem (msg, zmq_msg_data (&part), zmq_msg_size (&part));
        more = zmq_msg_more (&part);
        zmq_msg_close (&part);
    }
    return msg;
}

//  ---------------------------------------------------------------------
//  To the worker's thread

static bool
s_pipe_writable (self_t *self)
{
    return (shf_wlink_events (self->pipe) & ZMQ_POLLOUT) != 0;
}

static void
s_flush_outbox (self_t *self)
{
    while (zlistx_size (self->outbox) > 0 && s_pipe_writable (self)) {
        zmsg_t *msg = zlistx_detach (self->outbox, NULL);
        shf_wlink_send (self->pipe, &msg);
    }
}

static void
s_tell (self_t *self, zmsg_t **msg_p)
{
    if (zlistx_size (self->outbox) == 0 && s_pipe_writable (self))
        shf_wlink_send (self->pipe, msg_p);
    else {
        zlistx_add_end (self->outbox, *msg_p);
        *msg_p = NULL;
    }
}

static void
s_answer (self_t *self, uint32_t seq, shf_err_t rc, const char *message,
          const json_t *reply)
{
    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, "REPORTED");
    zmsg_addstrf (msg, "%" PRIu32, seq);
    zmsg_addstrf (msg, "%d", (int) rc);
    zmsg_addstr (msg, message ? message : "");
    char *text = reply ? json_dumps (reply, JSON_COMPACT) : NULL;
    zmsg_addstr (msg, text ? text : "");
    free (text);
    s_tell (self, &msg);
}

//  ---------------------------------------------------------------------
//  To the node

static shf_err_t
s_send (self_t *self, json_t *msg, uint64_t *id_p)
{
    uint64_t id = shf_conn_next_id (self->conn);
    json_object_set_new (msg, "id", json_integer ((json_int_t) id));
    shf_err_t rc = shf_conn_send (self->conn, msg);
    if (id_p)
        *id_p = rc == SHF_OK ? id : 0;
    return rc;
}

static void
s_send_poll (self_t *self, int credit)
{
    json_t *msg = json_pack ("{s:s, s:s, s:i}", "op", "poll", "queue",
                             self->queue, "credit", credit);
    assert (msg);
    if (s_send (self, msg, NULL) != SHF_OK)
        shf_warn ("worker: cannot send a poll to the server");
    json_decref (msg);
    self->last_keepalive = s_now ();
}

//  After STOP a keepalive must not ask for work: an empty heartbeat says
//  "still here" without renewing the subscription.
static void
s_send_keepalive (self_t *self)
{
    if (!self->stopping) {
        s_send_poll (self, 0);
        return;
    }
    json_t *msg = json_pack ("{s:s, s:[]}", "op", "heartbeat", "items");
    assert (msg);
    if (s_send (self, msg, NULL) != SHF_OK)
        shf_warn ("worker: cannot send a keepalive to the server");
    json_decref (msg);
    self->last_keepalive = s_now ();
}

static void
s_hand_back (self_t *self, const char *token)
{
    json_t *msg = json_pack ("{s:s, s:s, s:{s:s, s:s}}", "op", "fail", "token",
                             token, "error", "type", "WorkerShutdown",
                             "message", "the worker is shutting down");
    assert (msg);
    uint64_t id;
    if (s_send (self, msg, &id) == SHF_OK)
        zlistx_add_end (self->unacked, (void *) (uintptr_t) id);
    else
        shf_warn ("worker: cannot hand a task back to the server");
    json_decref (msg);
}

//  Credit and keepalive bookkeeping; see the banner.
static void
s_upkeep (self_t *self)
{
    shf_conn_check (self->conn);
    if (!shf_conn_connected (self->conn))
        return;
    unsigned ups = shf_conn_ups (self->conn);
    if (!self->stopping && ups != self->granted_ups) {
        self->granted_ups = ups;
        int free_slots = self->concurrency - self->held;
        s_send_poll (self, free_slots > 0 ? free_slots : 0);
    }
    else if (s_now () - self->last_keepalive >= SHF_WLINK_KEEPALIVE_MS)
        s_send_keepalive (self);
}

//  Send the heartbeat batch that is due, if any. Nothing goes while the
//  connection is down: the batch would only wait in the socket, and the
//  details may be newer once it is back.
static void
s_heartbeats (self_t *self)
{
    if (!shf_conn_connected (self->conn))
        return;
    int64_t now = s_now ();
    json_t *items = shf_hbman_batch (self->hbman, now);
    if (!items)
        return;
    json_t *msg = json_pack ("{s:s, s:o}", "op", "heartbeat", "items", items);
    assert (msg);
    uint64_t id;
    shf_err_t rc = s_send (self, msg, &id);
    json_decref (msg);
    if (rc == SHF_OK)
        shf_hbman_sent (self->hbman, id, now);
    else {
        shf_warn ("worker: cannot send heartbeats: %s", shf_strerror (rc));
        shf_hbman_failed (self->hbman, rc != SHF_ETOOLARGE, now);
    }
}

//  A report's reply is late: resend it once if the connection was lost
//  meanwhile (reports are idempotent on the node), else give up.
static void
s_expire_reports (self_t *self)
{
    int64_t now = s_now ();
    s_report_t *report = zlistx_first (self->reports);
    while (report) {
        void *cursor = zlistx_cursor (self->reports);
        s_report_t *next = zlistx_next (self->reports);
        if (now >= report->deadline) {
            unsigned downs = shf_conn_downs (self->conn);
            if (report->attempt == 0 && downs != report->downs
                && s_send (self, report->msg, &report->id) == SHF_OK) {
                report->attempt = 1;
                report->downs = downs;
                report->deadline = now + self->timeout_ms;
            }
            else {
                char message [96];
                snprintf (message, sizeof message,
                          "no answer from the server within %d ms",
                          self->timeout_ms);
                s_answer (self, report->seq, SHF_ETIMEOUT, message, NULL);
                zlistx_delete (self->reports, cursor);
            }
        }
        report = next;
    }
}

static void
s_report (self_t *self, uint32_t seq, json_t *msg)
{
    const char *token = json_string_value (json_object_get (msg, "token"));
    assert (token);
    //  Details not yet delivered go first, on the same socket: the node
    //  reads a connection in order, so the result cannot overtake them.
    json_t *details = shf_hbman_take (self->hbman, token);
    if (details) {
        json_t *hb = json_pack ("{s:s, s:[{s:s, s:o}]}", "op", "heartbeat",
                                "items", "token", token, "details", details);
        assert (hb);
        if (s_send (self, hb, NULL) != SHF_OK)
            shf_warn ("worker: cannot send the last heartbeat of a task");
        json_decref (hb);
    }
    s_report_t *report = calloc (1, sizeof *report);
    assert (report);
    report->seq = seq;
    report->msg = msg;
    report->downs = shf_conn_downs (self->conn);
    report->deadline = s_now () + self->timeout_ms;
    shf_err_t rc = s_send (self, msg, &report->id);
    shf_hbman_forget (self->hbman, token);  //  token is msg's: still valid
    if (rc == SHF_OK)
        zlistx_add_end (self->reports, report);
    else {
        s_answer (self, seq, rc,
                  rc == SHF_ETOOLARGE ? "the report is too large to send"
                                      : "cannot send to the server",
                  NULL);
        s_report_free ((void **) &report);
    }
    //  The slot is free again: tell the node.
    self->held--;
    shf_conn_check (self->conn);
    if (!self->stopping && shf_conn_connected (self->conn)
        && shf_conn_ups (self->conn) == self->granted_ups)
        s_send_poll (self, 1);
}

//  ---------------------------------------------------------------------
//  From the node

static void
s_task (self_t *self, json_t *msg)
{
    const char *token = json_string_value (json_object_get (msg, "token"));
    if (self->stopping) {
        s_hand_back (self, token);
        return;
    }
    self->held++;
    shf_hbman_track (self->hbman, token,
                     shf_msg_int (msg, "heartbeat_timeout_ms", 0));
    char *text = json_dumps (msg, JSON_COMPACT);
    assert (text);
    zmsg_t *out = zmsg_new ();
    zmsg_addstr (out, "TASK");
    zmsg_addstr (out, text);
    free (text);
    s_tell (self, &out);
}

static void
s_reply (self_t *self, json_t *msg, uint64_t id)
{
    for (s_report_t *report = zlistx_first (self->reports); report;
         report = zlistx_next (self->reports))
        if (report->id == id) {
            s_answer (self, report->seq, SHF_OK, "", msg);
            zlistx_delete (self->reports, zlistx_cursor (self->reports));
            return;
        }
    void *handle = zlistx_find (self->unacked, (void *) (uintptr_t) id);
    if (handle) {
        zlistx_delete (self->unacked, handle);
        return;
    }
    //  A heartbeat's (or a keepalive's) reply.
    bool ok = shf_msg_bool (msg, "ok", false);
    if (!ok)
        shf_warn ("worker: the server refused heartbeats: %s",
                  json_string_value (json_object_get (
                      json_object_get (msg, "error"), "message")));
    json_t *canceled = shf_hbman_reply (
        self->hbman, id, ok ? json_object_get (msg, "body") : NULL, s_now ());
    size_t i;
    json_t *token;
    json_array_foreach (canceled, i, token)
    {
        zmsg_t *out = zmsg_new ();
        zmsg_addstr (out, "CANCELED");
        zmsg_addstr (out, json_string_value (token));
        s_tell (self, &out);
    }
    json_decref (canceled);
}

static void
s_from_node (self_t *self)
{
    json_t *msg;
    shf_op_t op;
    uint64_t id;
    while (shf_conn_recv (self->conn, 0, &msg, &op, &id) == SHF_OK) {
        if (op == SHF_OP_TASK)
            s_task (self, msg);
        else if (op == SHF_OP_REPLY && id)
            s_reply (self, msg, id);
        json_decref (msg);
    }
}

//  ---------------------------------------------------------------------
//  From the worker's thread

static void *
s_pop_ptr (zmsg_t *msg)
{
    zframe_t *frame = zmsg_pop (msg);
    void *ptr = NULL;
    if (frame && zframe_size (frame) == sizeof ptr)
        memcpy (&ptr, zframe_data (frame), sizeof ptr);
    zframe_destroy (&frame);
    return ptr;
}

//  Handle one command; false when none was waiting.
static bool
s_from_api (self_t *self)
{
    zmsg_t *msg = shf_wlink_recv (self->pipe, false);
    if (!msg) {
        if (zmq_errno () != EAGAIN)
            self->terminated = true;  //  the context is ending
        return false;
    }
    char *command = zmsg_popstr (msg);
    char *token = NULL;
    if (!command)
        ;
    else if (streq (command, "$TERM"))
        self->terminated = true;
    else if (streq (command, "HB")) {
        token = zmsg_popstr (msg);
        json_t *details = s_pop_ptr (msg);
        char *size = zmsg_popstr (msg);
        assert (token && details && size);
        shf_hbman_record (self->hbman, token, &details,
                          (size_t) strtoull (size, NULL, 10), s_now ());
        zstr_free (&size);
    }
    else if (streq (command, "REPORT")) {
        char *seq = zmsg_popstr (msg);
        json_t *report = s_pop_ptr (msg);
        assert (seq && report);
        s_report (self, (uint32_t) strtoul (seq, NULL, 10), report);
        zstr_free (&seq);
    }
    else if (streq (command, "HANDBACK")) {
        token = zmsg_popstr (msg);
        assert (token);
        s_hand_back (self, token);
        shf_hbman_forget (self->hbman, token);
        self->held--;
    }
    else if (streq (command, "STOP")) {
        self->stopping = true;
        //  Take back the credit granted, so nothing more is pushed here.
        json_t *stop = json_pack ("{s:s, s:s, s:i, s:b}", "op", "poll", "queue",
                                  self->queue, "credit", 0, "stop", 1);
        if (s_send (self, stop, NULL) != SHF_OK)
            shf_warn ("worker: cannot tell the server it stops");
        json_decref (stop);
    }
    zstr_free (&token);
    zstr_free (&command);
    zmsg_destroy (&msg);
    return true;
}

//  ---------------------------------------------------------------------
//  The actor

//  How long the loop may sleep.
static long
s_wait_ms (self_t *self)
{
    int64_t now = s_now ();
    int64_t wake = now + SHF_WLINK_KEEPALIVE_MS;
    if (shf_conn_connected (self->conn)) {
        int64_t keepalive = self->last_keepalive + SHF_WLINK_KEEPALIVE_MS;
        if (keepalive < wake)
            wake = keepalive;
        int64_t due = shf_hbman_next_due (self->hbman);
        if (due < wake)
            wake = due;
    }
    for (s_report_t *report = zlistx_first (self->reports); report;
         report = zlistx_next (self->reports))
        if (report->deadline < wake)
            wake = report->deadline;
    return wake > now ? (long) (wake - now) : 0;
}

void
shf_wlink (zsock_t *pipe, void *args)
{
    //  Signals are the application's: delivered here they would only
    //  interrupt our calls (and a worker forking commands gets SIGCHLD
    //  all the time).
    sigset_t all;
    sigfillset (&all);
    pthread_sigmask (SIG_BLOCK, &all, NULL);
    self_t *self = s_self_new (pipe, args);
    zsock_signal (pipe, 0);
    void *monitor = shf_conn_monitor_handle (self->conn);
    while (!self->terminated) {
        s_upkeep (self);
        s_heartbeats (self);
        s_expire_reports (self);
        s_flush_outbox (self);
        zmq_pollitem_t items [3] = {
            {zsock_resolve (pipe), 0,
             ZMQ_POLLIN | (zlistx_size (self->outbox) ? ZMQ_POLLOUT : 0), 0},
            {shf_conn_handle (self->conn), 0, ZMQ_POLLIN, 0},
            {monitor, 0, ZMQ_POLLIN, 0}};
        if (zmq_poll (items, monitor ? 3 : 2, s_wait_ms (self)) < 0) {
            if (zmq_errno () == ETERM)
                break;
            continue;  //  EINTR
        }
        //  The application's commands first: a task that arrives together
        //  with a STOP must meet the stop (and be handed back here).
        //  Bounded, so a flood of heartbeats cannot starve the upkeep.
        for (int n = 0; n < S_PIPE_BATCH && !self->terminated; n++)
            if (!s_from_api (self))
                break;
        if (!self->terminated && (items [1].revents & ZMQ_POLLIN))
            s_from_node (self);
    }
    //  Let hand-backs leave and be answered, briefly; a task that still
    //  arrives is handed back too.
    self->stopping = true;
    int64_t deadline = s_now () + S_TERM_WAIT_MS;
    while (zlistx_size (self->unacked) > 0 && s_now () < deadline) {
        json_t *msg;
        shf_op_t op;
        uint64_t id;
        if (shf_conn_recv (self->conn, (int) (deadline - s_now ()), &msg, &op,
                           &id)
            != SHF_OK)
            break;
        if (op == SHF_OP_TASK)
            s_task (self, msg);
        else if (op == SHF_OP_REPLY && id) {
            void *handle = zlistx_find (self->unacked, (void *) (uintptr_t) id);
            if (handle)
                zlistx_delete (self->unacked, handle);
        }
        json_decref (msg);
    }
    s_self_destroy (&self);
}

//  ---------------------------------------------------------------------
//  Commands

static void
s_add_ptr (zmsg_t *msg, void *ptr)
{
    zmsg_addmem (msg, &ptr, sizeof ptr);
}

void
shf_wlink_heartbeat (zactor_t *link, const char *token, json_t **details_p,
                     size_t size)
{
    assert (link && token && details_p);
    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, "HB");
    zmsg_addstr (msg, token);
    s_add_ptr (msg, *details_p ? *details_p : json_null ());
    zmsg_addstrf (msg, "%zu", size);
    *details_p = NULL;
    shf_wlink_send (link, &msg);
}

void
shf_wlink_report (zactor_t *link, uint32_t seq, json_t **msg_p)
{
    assert (link && msg_p && *msg_p);
    assert (json_is_string (json_object_get (*msg_p, "token")));
    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, "REPORT");
    zmsg_addstrf (msg, "%" PRIu32, seq);
    s_add_ptr (msg, *msg_p);
    *msg_p = NULL;
    shf_wlink_send (link, &msg);
}

void
shf_wlink_hand_back (zactor_t *link, const char *token)
{
    assert (link && token);
    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, "HANDBACK");
    zmsg_addstr (msg, token);
    shf_wlink_send (link, &msg);
}

void
shf_wlink_stop (zactor_t *link)
{
    assert (link);
    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, "STOP");
    shf_wlink_send (link, &msg);
}
