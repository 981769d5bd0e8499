/*  shf_wlink.c - a worker's link to its node (shf_wlink.h).

    One loop over three sockets: the pipe (commands from the worker's
    thread), the DEALER (tasks and replies from the node) and the DEALER's
    monitor (the connection going up or down). Each pass does the upkeep
    that must not wait for the application: credit and keepalives,
    the heartbeat batch that is due, reports whose reply is late.

    Credit on the wire: {"op":"poll","credit":N,"gen":G} grants N more
    task slots; with "reset":true it says "N slots" instead. The actor
    keeps held = tasks handed to the worker and not yet reported, and
    keeps the node's view equal to concurrency - held: all free slots, as
    a reset, when a connection comes up (a restarted node, or a new
    connection after a network failure, knows nothing of us), one more
    after each report. G counts our connections: a grant decided on one
    connection but still queued in the socket when it dropped reaches the
    next one ahead of its reset, and the node drops it for its G. While
    the connection is down nothing is granted.

    The slots freed by the reports of one pass are granted in one poll at
    the end of the pass, under the same rule.

    Inline handlers (shf_worker_set_handler): once HANDLER came, a task is
    run here the moment it is read, its outcome checked and reported as
    the worker's _async reports are, and the answer is counted in the
    tally the worker reads (shf_wlink.h) instead of being told over the
    pipe: no message crosses to the worker's thread per task. These
    reports carry seq 0. The slots they free go in the pass's one grant
    like the others, so the node pushes the next tasks at the end of the
    pass that ran the last ones.

    Messages to the worker's thread never block the loop: when the pipe
    is full (the application has not read it for a while), they wait in
    an outbox, so keepalives keep going out whatever the application does.

    The loop sleeps in poll() on the sockets' ZMQ_FDs rather than in
    zmq_poll, which asks every socket for ZMQ_EVENTS before and after it
    sleeps, and each ask is a system call. A ZMQ_FD only says that the
    socket's command mailbox has something new, so each socket is read
    until it has nothing before the loop sleeps again ("dirty"), and so is
    one we sent on: libzmq may process that socket's commands inside a
    send, taking the fd's signal while a message becomes readable. A sleep
    that ends in silence reads them all anyway, so should a signal ever be
    missed, a message waits 200 ms at most.
*/
#include "shf_wlink.h"
#include "shardflow.h"
#include "shf_hbman.h"
#include "shf_log.h"
#include "shf_mpack.h"
#include "shf_msg.h"
#include "shf_task.h"
#include "shf_thread.h"
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

//  How long $TERM waits for hand-backs to be answered.
#define S_TERM_WAIT_MS 2000
//  Commands read from the pipe per pass of the loop.
#define S_PIPE_BATCH 1000
//  The longest sleep. A sleep that ends in silence reads every socket
//  once, so a message whose fd signal was missed waits that long at most,
//  not for ever.
#define S_SILENCE_MS 200

typedef struct {
    uint32_t seq;  //  the worker's number for it; 0: an inline report
    uint64_t id;   //  request id on the wire
    json_t *msg;
    int64_t deadline;
    unsigned downs;  //  connection losses seen when it was sent
    int attempt;
} s_report_t;

//  The sockets the loop waits on, by index.
enum { S_MONITOR, S_PIPE, S_NODE, S_SOCKETS };

typedef struct {
    zsock_t *pipe;
    shf_conn_t *conn;
    char *queue;
    int concurrency;
    int timeout_ms;
    int held;              //  tasks handed to the worker, not reported
    int freed;             //  slots reported this pass, not yet granted
    unsigned granted_ups;  //  connection count when credit was last reset
    int64_t last_keepalive;
    bool stopping;
    bool closed;  //  CLOSE came: the worker reads the pipe no more
    bool terminated;
    int fds [S_SOCKETS];     //  ZMQ_FD of each socket, -1 if none
    bool dirty [S_SOCKETS];  //  may hold what its fd does not show
    bool skipped_poll;       //  the last pass read dirty sockets only
    int64_t last_sweep;      //  when every socket was last read (ms)
    shf_hbman_t *hbman;
    zlistx_t *reports;        //  s_report_t *, waiting for their reply
    zlistx_t *unacked;        //  ids of hand-backs not yet answered
    zlistx_t *outbox;         //  zmsg_t * for the pipe, when it was full
    shf_handler_fn *handler;  //  inline handler, or NULL
    void *handler_arg;
    shf_wlink_tally_t *tally;  //  the worker's: inline reports' answers
    uint32_t flush_wanted;     //  FLUSH n to answer when none waits; 0
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
    shf_wlink_discard (&msg);
    *item = NULL;
}

static int
s_zmq_fd (void *handle)
{
    int fd = -1;
    size_t size = sizeof fd;
    if (!handle || zmq_getsockopt (handle, ZMQ_FD, &fd, &size) != 0)
        return -1;
    return fd;
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
    self->tally = args->tally;
    assert (self->tally);
    self->timeout_ms =
        args->timeout_ms > 0 ? args->timeout_ms : SHF_DEFAULT_TIMEOUT_MS;
    self->hbman = shf_hbman_new ();
    self->reports = zlistx_new ();
    self->unacked = zlistx_new ();
    self->outbox = zlistx_new ();
    assert (self->queue && self->reports && self->unacked && self->outbox);
    zlistx_set_destructor (self->reports, s_report_free);
    zlistx_set_destructor (self->outbox, s_zmsg_free);
    self->fds [S_MONITOR] = s_zmq_fd (shf_conn_monitor_handle (self->conn));
    self->fds [S_PIPE] = s_zmq_fd (zsock_resolve (pipe));
    self->fds [S_NODE] = s_zmq_fd (shf_conn_handle (self->conn));
    for (int i = 0; i < S_SOCKETS; i++)
        self->dirty [i] = self->fds [i] >= 0;
    assert (self->fds [S_PIPE] >= 0 && self->fds [S_NODE] >= 0);
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

//  Send msg whole. Without wait, a full pipe leaves it with the caller
//  (1); the first part is the only one that can find it full, as a
//  pipe counts whole messages against its high-water mark. 0 when sent
//  (msg destroyed), -1 once the socket is closed (msg destroyed).
static int
s_send_msg (void *handle, zmsg_t **msg_p, bool wait)
{
    zmsg_t *msg = *msg_p;
    int rc = 0;
    size_t left = zmsg_size (msg);
    for (zframe_t *frame = zmsg_first (msg); frame && rc == 0;
         frame = zmsg_next (msg)) {
        bool first = left == zmsg_size (msg);
        int flags = --left > 0 ? ZMQ_SNDMORE : 0;
        if (first && !wait)
            flags |= ZMQ_DONTWAIT;
        zmq_msg_t part;
        rc = zmq_msg_init_size (&part, zframe_size (frame));
        assert (rc == 0);
        if (zframe_size (frame))
            memcpy (zmq_msg_data (&part), zframe_data (frame),
                    zframe_size (frame));
        //  A failed send leaves the part with us: EINTR is only retried.
        while ((rc = zmq_msg_send (&part, handle, flags)) < 0
               && zmq_errno () == EINTR)
            ;
        if (rc < 0) {
            int err = zmq_errno ();
            zmq_msg_close (&part);
            if (first && err == EAGAIN && !wait)
                return 1;
            rc = -1;
        }
        else
            rc = 0;
    }
    if (rc == 0)
        zmsg_destroy (msg_p);
    else
        shf_wlink_discard (msg_p);
    return rc;
}

int
shf_wlink_send (void *sock, zmsg_t **msg_p)
{
    assert (msg_p);
    if (!*msg_p)
        return -1;
    return s_send_msg (zsock_resolve (sock), msg_p, true);
}

zmsg_t *
shf_wlink_recv (void *sock, int timeout_ms)
{
    void *handle = zsock_resolve (sock);
    int64_t deadline = timeout_ms > 0 ? zclock_mono () + timeout_ms : 0;
    zmsg_t *msg = NULL;
    bool more = true;
    while (more) {
        zmq_msg_t part;
        zmq_msg_init (&part);
        //  Only the first part may be waited for: the others are there.
        //  A timed wait sets the socket's receive timeout for the call
        //  and restores "forever", which zactor_destroy's wait needs.
        int flags = msg || timeout_ms != 0 ? 0 : ZMQ_DONTWAIT;
        int rc;
        while (true) {
            int left = -1;
            if (!msg && timeout_ms > 0) {
                int64_t ms = deadline - zclock_mono ();
                left = ms > 0 ? (int) ms : 0;
                zmq_setsockopt (handle, ZMQ_RCVTIMEO, &left, sizeof left);
            }
            rc = zmq_msg_recv (&part, handle, flags);
            int err = zmq_errno ();
            if (left >= 0) {
                int forever = -1;
                zmq_setsockopt (handle, ZMQ_RCVTIMEO, &forever, sizeof forever);
            }
            if (rc >= 0 || err != EINTR) {
                errno = err;
                break;
            }
        }
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

//  A json_t * that a message hands over travels as the bytes of the
//  pointer, in the message's last frame.
static void
s_add_ptr (zmsg_t *msg, void *ptr)
{
    zmsg_addmem (msg, &ptr, sizeof ptr);
}

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

zmsg_t *
shf_wlink_item_msg (const shf_wlink_item_t *item)
{
    assert (item && item->kind);
    zmsg_t *msg = zmsg_new ();
    assert (msg);
    zmsg_addmem (msg, item, sizeof *item);
    return msg;
}

const shf_wlink_item_t *
shf_wlink_item_peek (zmsg_t *msg, shf_wlink_item_t *copy)
{
    zframe_t *frame = msg && zmsg_size (msg) == 1 ? zmsg_first (msg) : NULL;
    if (!frame || zframe_size (frame) != sizeof *copy)
        return NULL;
    memcpy (copy, zframe_data (frame), sizeof *copy);
    bool item =
        copy->kind >= SHF_WLINK_TASK && copy->kind <= SHF_WLINK_REPORTED;
    return item ? copy : NULL;
}

bool
shf_wlink_item_take (zmsg_t **msg_p, shf_wlink_item_t *item)
{
    assert (msg_p && item);
    if (!shf_wlink_item_peek (*msg_p, item))
        return false;
    zmsg_destroy (msg_p);
    return true;
}

//  Frees what an item hands over.
static void
s_item_free (shf_wlink_item_t *item)
{
    if (item->kind == SHF_WLINK_TASK)
        shf_task_destroy (&item->task);
    else
        json_decref (item->json);
    free (item->message);
}

void
shf_wlink_discard (zmsg_t **msg_p)
{
    assert (msg_p);
    zmsg_t *msg = *msg_p;
    if (!msg)
        return;
    shf_wlink_item_t item;
    if (shf_wlink_item_take (msg_p, &item)) {
        s_item_free (&item);
        return;
    }
    zframe_t *first = zmsg_first (msg);
    if (first && zframe_streq (first, "HB")) {
        zframe_t *last = zmsg_last (msg);
        json_t *json = NULL;
        if (last != first && zframe_size (last) == sizeof json) {
            memcpy (&json, zframe_data (last), sizeof json);
            json_decref (json);
        }
    }
    zmsg_destroy (msg_p);
}

//  ---------------------------------------------------------------------
//  Report requests and the tally (shf_wlink.h): both ends use them.

json_t *
shf_wlink_fail_request (const char *type, const char *message)
{
    //  Text that is not UTF-8 cannot go in a message: say so instead.
    json_t *jtype = json_string (type && *type ? type : "Error");
    json_t *jmessage = json_string (message ? message : "");
    json_t *error = json_object ();
    assert (error);
    json_object_set_new (error, "type", jtype ? jtype : json_string ("Error"));
    json_object_set_new (error, "message",
                         jmessage ? jmessage : json_string ("(not UTF-8)"));
    json_t *msg = json_pack ("{s:s, s:o}", "op", "fail", "error", error);
    assert (msg);
    return msg;
}

json_t *
shf_wlink_complete_request (const char *output, shf_err_t *rc_p, char *err,
                            size_t errlen)
{
    assert (rc_p);
    *rc_p = SHF_OK;
    json_t *value = json_null ();
    if (output) {
        json_error_t jerr;
        value = json_loads (output, JSON_DECODE_ANY, &jerr);
        if (!value) {
            *rc_p = SHF_EINVAL;
            snprintf (err, errlen, "output is not JSON: %s", jerr.text);
            return shf_wlink_fail_request ("BadOutput", err);
        }
    }
    //  Check the size here, so an oversized output fails the step rather
    //  than the whole report (counted, not encoded: the link encodes it).
    size_t size = 0;
    if (shf_mpack_size (value, &size) == SHF_OK && size > SHF_MSG_MAX_PAYLOAD) {
        json_decref (value);
        *rc_p = SHF_ETOOLARGE;
        snprintf (err, errlen, "the output is larger than 2 MiB");
        return shf_wlink_fail_request ("TooLarge", err);
    }
    json_t *msg = json_object ();
    assert (msg);
    json_object_set_new_nocheck (msg, "op", json_string_nocheck ("complete"));
    json_object_set_new_nocheck (msg, "output", value);
    return msg;
}

void
shf_wlink_tally_init (shf_wlink_tally_t *self)
{
    memset (&self->err, 0, sizeof self->err);
    atomic_init (&self->pending, 0);
    atomic_init (&self->failures, 0);
    atomic_init (&self->errors, 0);
    int rc = pthread_mutex_init (&self->lock, NULL);
    assert (rc == 0);
}

void
shf_wlink_tally_fini (shf_wlink_tally_t *self)
{
    pthread_mutex_destroy (&self->lock);
}

bool
shf_wlink_tally_error (shf_wlink_tally_t *self, unsigned *seen,
                       shf_lasterr_t *err)
{
    if (atomic_load (&self->errors) == *seen)
        return false;
    pthread_mutex_lock (&self->lock);
    *err = self->err;
    *seen = atomic_load (&self->errors);
    pthread_mutex_unlock (&self->lock);
    return true;
}

//  The actor's side: a new last error.
static void
s_tally_error (shf_wlink_tally_t *self, const shf_lasterr_t *err)
{
    pthread_mutex_lock (&self->lock);
    self->err = *err;
    atomic_fetch_add (&self->errors, 1);
    pthread_mutex_unlock (&self->lock);
}

//  ---------------------------------------------------------------------
//  To the worker's thread

//  One message to the worker's thread without waiting: 1 when the pipe is
//  full (the message stays with the caller), else as s_send_msg.
static int
s_pipe_send (self_t *self, zmsg_t **msg_p)
{
    int rc = s_send_msg (zsock_resolve (self->pipe), msg_p, false);
    //  Even a send that finds the pipe full may take in the pipe's pending
    //  commands, and with them the edge of a command waiting for us: read
    //  the pipe again whatever the send did.
    self->dirty [S_PIPE] = true;
    return rc;
}

//  Sent from the outbox in order until the pipe is full again. A full
//  pipe signals our fd once the worker has read enough of it.
static void
s_flush_outbox (self_t *self)
{
    zmsg_t *msg;
    while ((msg = zlistx_first (self->outbox)) && s_pipe_send (self, &msg) != 1)
        zlistx_detach (self->outbox, NULL);
}

//  After CLOSE the worker reads nothing but the CLOSED answer: anything
//  else is dropped here, with the json it would have handed over.
static void
s_tell (self_t *self, zmsg_t **msg_p)
{
    if (self->closed)
        shf_wlink_discard (msg_p);
    else if (zlistx_size (self->outbox) > 0 || s_pipe_send (self, msg_p) == 1) {
        zlistx_add_end (self->outbox, *msg_p);
        *msg_p = NULL;
    }
}

//  reply: the node's (stolen), or NULL.
static void
s_answer (self_t *self, uint32_t seq, shf_err_t rc, const char *message,
          json_t *reply)
{
    shf_wlink_item_t item = {.kind = SHF_WLINK_REPORTED,
                             .seq = seq,
                             .status = (int32_t) rc,
                             .json = reply,
                             .message =
                                 message && *message ? strdup (message) : NULL};
    zmsg_t *msg = shf_wlink_item_msg (&item);
    s_tell (self, &msg);
}

static void
s_tell_flushed (self_t *self, uint32_t n)
{
    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, "FLUSHED");
    zmsg_addstrf (msg, "%" PRIu32, n);
    s_tell (self, &msg);
}

//  A report has its outcome: the node's reply (borrowed), or a local
//  failure rc with a message. The worker's thread is told of a report it
//  made; an inline report's outcome goes to the tally, in the order the
//  tally's reader relies on (shf_wlink.h): error, failures, pending.
static void
s_answered (self_t *self, uint32_t seq, shf_err_t rc, const char *message,
            json_t *reply)
{
    if (seq) {
        s_answer (self, seq, rc, message, reply ? json_incref (reply) : NULL);
        return;
    }
    if (!reply || !json_is_true (json_object_get (reply, "ok"))) {
        shf_lasterr_t err;
        if (reply)
            shf_lasterr_reply (&err, reply, NULL);
        else
            shf_lasterr_fail (&err, rc, "%s", message ? message : "");
        s_tally_error (self->tally, &err);
        atomic_fetch_add (&self->tally->failures, 1);
    }
    if (atomic_fetch_sub (&self->tally->pending, 1) == 1
        && self->flush_wanted) {
        s_tell_flushed (self, self->flush_wanted);
        self->flush_wanted = 0;
    }
}

//  ---------------------------------------------------------------------
//  To the node

static shf_err_t
s_send (self_t *self, json_t *msg, uint64_t *id_p)
{
    uint64_t id = shf_conn_next_id (self->conn);
    json_object_set_new (msg, "id", json_integer ((json_int_t) id));
    shf_err_t rc = shf_conn_send (self->conn, msg);
    self->dirty [S_NODE] = true;
    if (id_p)
        *id_p = rc == SHF_OK ? id : 0;
    return rc;
}

//  Every grant names the connection it was decided for (gen); the one
//  that opens a connection (reset) sets the node's count rather than
//  adding to it, so a grant that was still queued in the socket when the
//  connection dropped is not counted on top of it (shf_matcher_poll).
static void
s_send_poll (self_t *self, int credit, bool reset)
{
    json_t *msg = json_pack ("{s:s, s:s, s:i, s:b, s:I}", "op", "poll", "queue",
                             self->queue, "credit", credit, "reset", reset,
                             "gen", (json_int_t) self->granted_ups);
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
        s_send_poll (self, 0, false);
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
    if (!shf_conn_connected (self->conn))
        return;
    unsigned ups = shf_conn_ups (self->conn);
    if (!self->stopping && ups != self->granted_ups) {
        self->granted_ups = ups;
        int free_slots = self->concurrency - self->held;
        s_send_poll (self, free_slots > 0 ? free_slots : 0, true);
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
                s_answered (self, report->seq, SHF_ETIMEOUT, message, NULL);
                zlistx_delete (self->reports, cursor);
            }
        }
        report = next;
    }
}

//  Send a report (msg taken) and free its slot. seq 0: an inline report,
//  whose task was never tracked for heartbeats (it runs within one call).
static void
s_report (self_t *self, uint32_t seq, json_t *msg)
{
    const char *token = json_string_value (json_object_get (msg, "token"));
    assert (token);
    //  Details not yet delivered go first, on the same socket: the node
    //  reads a connection in order, so the result cannot overtake them.
    json_t *details = seq ? shf_hbman_take (self->hbman, token) : NULL;
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
    if (!seq)
        atomic_fetch_add (&self->tally->pending, 1);
    shf_err_t rc = s_send (self, msg, &report->id);
    if (seq)
        shf_hbman_forget (self->hbman, token);  //  token is msg's: valid
    if (rc == SHF_OK)
        zlistx_add_end (self->reports, report);
    else {
        s_answered (self, seq, rc,
                    rc == SHF_ETOOLARGE ? "the report is too large to send"
                                        : "cannot send to the server",
                    NULL);
        s_report_free ((void **) &report);
    }
    //  The slot is free again: s_grant tells the node.
    self->held--;
    self->freed++;
}

//  The connection's newest state, when the monitor may have news of it.
static void
s_read_monitor (self_t *self)
{
    if (self->dirty [S_MONITOR]) {
        shf_conn_check (self->conn);
        self->dirty [S_MONITOR] = false;
    }
}

//  The slots freed by this pass's reports, in one poll (see the banner).
//  Dropped while the connection is down or before the upkeep has granted
//  a new connection its credit: that grant counts these slots.
static void
s_grant (self_t *self)
{
    int freed = self->freed;
    self->freed = 0;
    //  The connection may have dropped since the pass began: a grant queued
    //  now would reach the next connection on top of its full grant.
    if (freed > 0 && self->fds [S_MONITOR] >= 0) {
        struct pollfd fd = {self->fds [S_MONITOR], POLLIN, 0};
        if (poll (&fd, 1, 0) > 0)
            self->dirty [S_MONITOR] = true;
        s_read_monitor (self);
    }
    if (freed > 0 && !self->stopping && shf_conn_connected (self->conn)
        && shf_conn_ups (self->conn) == self->granted_ups)
        s_send_poll (self, freed, false);
}

//  ---------------------------------------------------------------------
//  From the node

//  Run a task in the inline handler and report its outcome (task taken;
//  its slot is counted). Output the report cannot carry fails the task,
//  as shf_worker_complete_async does, and its error is kept as that
//  call's return would be, without counting a failure: the report goes.
static void
s_run (self_t *self, shf_task_t **task_p)
{
    shf_outcome_t outcome = {NULL, NULL, NULL};
    self->handler (*task_p, self->handler_arg, &outcome);
    json_t *msg;
    if (outcome.error_type)
        msg =
            shf_wlink_fail_request (outcome.error_type, outcome.error_message);
    else {
        shf_err_t rc;
        char why [256];
        msg = shf_wlink_complete_request (outcome.output, &rc, why, sizeof why);
        if (rc != SHF_OK) {
            shf_lasterr_t err;
            shf_lasterr_fail (&err, rc, "%s", why);
            s_tally_error (self->tally, &err);
        }
    }
    free (outcome.output);
    free (outcome.error_type);
    free (outcome.error_message);
    //  The token came from the node in a checked frame: valid UTF-8.
    json_object_set_new_nocheck (
        msg, "token", json_string_nocheck (shf_task_token (*task_p)));
    shf_task_destroy (task_p);
    s_report (self, 0, msg);
}

static void
s_task (self_t *self, shf_task_t *task)
{
    const char *token = shf_task_token (task);
    if (self->stopping || self->closed) {
        s_hand_back (self, token);
        shf_task_destroy (&task);
        return;
    }
    self->held++;
    if (self->handler) {
        s_run (self, &task);
        return;
    }
    shf_hbman_track (self->hbman, token, shf_task_heartbeat_timeout_ms (task));
    shf_wlink_item_t item = {.kind = SHF_WLINK_TASK, .task = task};
    zmsg_t *out = shf_wlink_item_msg (&item);
    s_tell (self, &out);
}

static void
s_reply (self_t *self, json_t *msg, uint64_t id)
{
    for (s_report_t *report = zlistx_first (self->reports); report;
         report = zlistx_next (self->reports))
        if (report->id == id) {
            s_answered (self, report->seq, SHF_OK, "", msg);
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
    shf_task_t *task;
    shf_op_t op;
    uint64_t id;
    while (shf_conn_recv_work (self->conn, 0, &msg, &task, &op, &id)
           == SHF_OK) {
        if (task)
            s_task (self, task);
        else if (op == SHF_OP_REPLY && id)
            s_reply (self, msg, id);
        json_decref (msg);
    }
}

//  ---------------------------------------------------------------------
//  From the worker's thread

//  Handle one command; false when none was waiting.
static bool
s_from_api (self_t *self)
{
    zmsg_t *msg = shf_wlink_recv (self->pipe, 0);
    if (!msg) {
        if (zmq_errno () != EAGAIN)
            self->terminated = true;  //  the context is ending
        return false;
    }
    shf_wlink_item_t item;
    if (shf_wlink_item_take (&msg, &item)) {
        if (item.kind == SHF_WLINK_REPORT && item.json)
            s_report (self, item.seq, item.json);
        else if (item.kind == SHF_WLINK_TASK && item.task && self->handler
                 && !self->stopping)
            s_run (self, &item.task);
        else if (item.kind == SHF_WLINK_TASK && item.task) {
            //  Stopped meanwhile: back to the node, as the worker would.
            s_hand_back (self, shf_task_token (item.task));
            shf_task_destroy (&item.task);
            self->held--;
        }
        else
            s_item_free (&item);
        return true;
    }
    char *command = zmsg_popstr (msg);
    char *token = NULL;
    if (!command)
        ;
    else if (streq (command, "$TERM"))
        self->terminated = true;
    else if (streq (command, "HB")) {
        token = zmsg_popstr (msg);
        char *size = zmsg_popstr (msg);
        json_t *details = s_pop_ptr (msg);
        assert (token && details && size);
        shf_hbman_record (self->hbman, token, &details,
                          (size_t) strtoull (size, NULL, 10), s_now ());
        zstr_free (&size);
    }
    else if (streq (command, "HANDBACK")) {
        token = zmsg_popstr (msg);
        assert (token);
        s_hand_back (self, token);
        shf_hbman_forget (self->hbman, token);
        self->held--;
    }
    else if (streq (command, "HANDLER")) {
        zframe_t *fn = zmsg_pop (msg);
        zframe_t *arg = zmsg_pop (msg);
        assert (fn && zframe_size (fn) == sizeof self->handler);
        assert (arg && zframe_size (arg) == sizeof self->handler_arg);
        memcpy (&self->handler, zframe_data (fn), sizeof self->handler);
        memcpy (&self->handler_arg, zframe_data (arg),
                sizeof self->handler_arg);
        zframe_destroy (&fn);
        zframe_destroy (&arg);
        //  Every task told before this answer was told without the
        //  handler: the worker sends those back to run here.
        zmsg_t *handling = zmsg_new ();
        zmsg_addstr (handling, "HANDLING");
        s_tell (self, &handling);
    }
    else if (streq (command, "FLUSH")) {
        char *n = zmsg_popstr (msg);
        assert (n);
        uint32_t asked = (uint32_t) strtoul (n, NULL, 10);
        if (atomic_load (&self->tally->pending) == 0)
            s_tell_flushed (self, asked);
        else
            self->flush_wanted = asked;
        zstr_free (&n);
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
    else if (streq (command, "CLOSE")) {
        zmsg_t *closed = zmsg_new ();
        zmsg_addstr (closed, "CLOSED");
        s_tell (self, &closed);
        self->closed = true;
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

//  Sleep until a socket's fd is readable or the upkeep is due, and mark
//  those sockets dirty; all of them after a silent sleep. While
//  one is dirty already, every other pass reads it without asking the
//  kernel first: that saves a system call where a pass sent something,
//  and a socket that stays dirty (a flood of commands) still cannot hide
//  the fds of the others.
static void
s_wait (self_t *self)
{
    bool dirty = false;
    for (int i = 0; i < S_SOCKETS; i++)
        dirty = dirty || self->dirty [i];
    if (dirty && !self->skipped_poll) {
        self->skipped_poll = true;
        return;
    }
    self->skipped_poll = false;
    struct pollfd fds [S_SOCKETS];
    int which [S_SOCKETS];
    int nfds = 0;
    for (int i = 0; i < S_SOCKETS; i++)
        if (self->fds [i] >= 0) {
            fds [nfds] = (struct pollfd){self->fds [i], POLLIN, 0};
            which [nfds++] = i;
        }
    long wait_ms = dirty ? 0 : s_wait_ms (self);
    if (wait_ms > S_SILENCE_MS)
        wait_ms = S_SILENCE_MS;
    //  A failed poll (EINTR) is a wake-up with nothing new.
    int n = poll (fds, (nfds_t) nfds, (int) wait_ms);
    //  Every S_SILENCE_MS, busy or not, every socket is read once: should
    //  an edge ever be missed, a command waits that long, not for the
    //  next edge.
    int64_t now = s_now ();
    bool sweep = now - self->last_sweep >= S_SILENCE_MS;
    if (sweep)
        self->last_sweep = now;
    for (int i = 0; i < nfds; i++)
        if ((n > 0 && fds [i].revents) || sweep)
            self->dirty [which [i]] = true;
}

void
shf_wlink (zsock_t *pipe, void *args)
{
    shf_thread_enter ("shf-wlink");
    self_t *self = s_self_new (pipe, args);
    zsock_signal (pipe, 0);
    while (!self->terminated) {
        s_upkeep (self);
        s_heartbeats (self);
        s_expire_reports (self);
        s_flush_outbox (self);
        s_wait (self);
        //  The connection's state first, so credit is decided on the
        //  newest one.
        s_read_monitor (self);
        //  The application's commands next: a task that arrives together
        //  with a STOP must meet the stop (and be handed back here).
        //  Bounded, so a flood of heartbeats cannot starve the upkeep.
        //  The receive that finds the pipe empty also takes in whatever
        //  our sends before it let libzmq postpone, so it stays clean.
        if (self->dirty [S_PIPE]) {
            bool more = true;
            for (int n = 0; n < S_PIPE_BATCH && more && !self->terminated; n++)
                more = s_from_api (self);
            if (!more)
                self->dirty [S_PIPE] = false;
        }
        if (!self->terminated && self->dirty [S_NODE]) {
            s_from_node (self);
            self->dirty [S_NODE] = false;
        }
        //  The slots freed this pass, by the application's reports and
        //  by inline ones, in one grant.
        if (!self->terminated)
            s_grant (self);
    }
    //  Let hand-backs leave and be answered, briefly; a task that still
    //  arrives is handed back too.
    self->stopping = true;
    int64_t deadline = s_now () + S_TERM_WAIT_MS;
    while (zlistx_size (self->unacked) > 0 && s_now () < deadline) {
        json_t *msg;
        shf_task_t *task;
        shf_op_t op;
        uint64_t id;
        if (shf_conn_recv_work (self->conn, (int) (deadline - s_now ()), &msg,
                                &task, &op, &id)
            != SHF_OK)
            break;
        if (task)
            s_task (self, task);  //  handed back: stopping
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

void
shf_wlink_heartbeat (zactor_t *link, const char *token, json_t **details_p,
                     size_t size)
{
    assert (link && token && details_p);
    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, "HB");
    zmsg_addstr (msg, token);
    zmsg_addstrf (msg, "%zu", size);
    s_add_ptr (msg, *details_p ? *details_p : json_null ());
    *details_p = NULL;
    shf_wlink_send (link, &msg);
}

void
shf_wlink_report (zactor_t *link, uint32_t seq, json_t **msg_p)
{
    assert (link && msg_p && *msg_p);
    assert (json_is_string (json_object_get (*msg_p, "token")));
    shf_wlink_item_t item = {
        .kind = SHF_WLINK_REPORT, .seq = seq, .json = *msg_p};
    *msg_p = NULL;
    zmsg_t *msg = shf_wlink_item_msg (&item);
    shf_wlink_send (link, &msg);
}

//  A command of one word, with one argument or none.
static void
s_command (zactor_t *link, const char *word, const char *arg)
{
    assert (link);
    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, word);
    if (arg)
        zmsg_addstr (msg, arg);
    shf_wlink_send (link, &msg);
}

void
shf_wlink_hand_back (zactor_t *link, const char *token)
{
    assert (token);
    s_command (link, "HANDBACK", token);
}

void
shf_wlink_set_handler (zactor_t *link, shf_handler_fn *handler, void *arg)
{
    assert (link && handler);
    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, "HANDLER");
    zmsg_addmem (msg, &handler, sizeof handler);
    zmsg_addmem (msg, &arg, sizeof arg);
    shf_wlink_send (link, &msg);
}

void
shf_wlink_run (zactor_t *link, shf_task_t **task_p)
{
    assert (link && task_p && *task_p);
    shf_wlink_item_t item = {.kind = SHF_WLINK_TASK, .task = *task_p};
    *task_p = NULL;
    zmsg_t *msg = shf_wlink_item_msg (&item);
    shf_wlink_send (link, &msg);
}

void
shf_wlink_flush (zactor_t *link, uint32_t n)
{
    assert (link && n);
    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, "FLUSH");
    zmsg_addstrf (msg, "%" PRIu32, n);
    shf_wlink_send (link, &msg);
}

void
shf_wlink_stop (zactor_t *link)
{
    s_command (link, "STOP", NULL);
}

void
shf_wlink_close (zactor_t *link)
{
    s_command (link, "CLOSE", NULL);
}
