/*  shf_worker.c - the worker half of libshardflow (shardflow.h).

    The connection lives in an actor (shf_wlink): it grants credit, sends
    keepalives and heartbeat batches and times reports out on its own
    thread, so none of that waits for the application. This side is the
    application's: it queues the tasks the actor hands over until
    shf_worker_poll takes them, remembers which tasks the node said were
    cancelled, and turns complete and fail into a REPORT that it awaits,
    or (the _async variants) counts as pending: the answers to those are
    collected by whatever call reads the pipe next, so one thread can keep
    its whole concurrency busy while results travel and commit.
    Heartbeats only hand the newest details to the actor and never wait.

    With an inline handler (shf_worker_set_handler) tasks run on the
    actor's thread and their answers are counted there, in a tally this
    side reads (shf_wlink.h): pending and failures add the tally's counts
    to ours, and the tally's last error becomes ours when service (or
    flush) notices a new one. The few tasks that reached this side before
    the handler was set, or were on their way in the pipe until the
    actor's HANDLING, go back to the actor to run. Flush asks the actor
    for FLUSHED, which it sends once every inline report made before has
    its answer: that also covers a task the actor ran before it read a
    STOP we sent.

    After shf_worker_stop every task that arrives, or still waits here,
    is handed back with type "WorkerShutdown" without waiting for the
    reply; destroying the worker gives those replies a moment so the
    frames are not dropped unsent.

    Tasks (shf_task_t, read from their frames by the actor) and report
    replies (json_t) come over the pipe as pointers, so destroying the
    worker first reads the pipe up to the actor's CLOSED: nothing that
    owns memory is left in it for zactor_destroy to drop.

    Signals land on the application's thread, which is this side's: all
    its pipe I/O goes through shf_wlink_send / _recv, which a signal
    cannot break (a worker forking commands gets SIGCHLD at any
    moment). CZMQ's own helpers would return a torn message, or
    uninitialised events and then wait on an empty pipe, on EINTR.
*/
#include "shardflow.h"
#include "shf_lasterr.h"
#include "shf_conn.h"
#include "shf_log.h"
#include "shf_msg.h"
#include "shf_token.h"
#include "shf_task.h"
#include "shf_wlink.h"
#include <assert.h>
#include <czmq.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct shf_worker {
    zactor_t *link;      //  shf_wlink: owns the connection
    zlistx_t *queued;    //  shf_task_t * not yet handed out
    zhashx_t *canceled;  //  tokens the node said were cancelled
    bool stopping;
    bool polled;        //  shf_worker_poll was called
    bool handler;       //  tasks run in an inline handler, on the actor
    uint32_t next_seq;  //  of reports
    size_t pending;     //  reports sent without waiting, not yet answered
    size_t failures;    //  of those, refused or never answered
    shf_lasterr_t err;
    shf_wlink_tally_t tally;  //  inline reports' answers (the actor's)
    unsigned tally_seen;      //  tally.errors when last read
    uint32_t flushes;         //  FLUSH requests sent
    uint32_t flushed;         //  the newest FLUSHED answer
};

static int64_t
s_now_ms (void)
{
    return zclock_mono ();
}

//  zactor_new and zactor_destroy talk over the pipe with CZMQ's helpers
//  (the start and $TERM handshakes); no signal may interrupt them. The
//  actor's thread is born with everything blocked, too.
static void
s_signals_block (sigset_t *saved)
{
    sigset_t all;
    sigfillset (&all);
    pthread_sigmask (SIG_BLOCK, &all, saved);
}

static void
s_signals_restore (const sigset_t *saved)
{
    pthread_sigmask (SIG_SETMASK, saved, NULL);
}

//  Destroys the tasks not yet handed out.
static void
s_queue_clear (shf_worker_t *self)
{
    shf_task_t *task;
    while ((task = zlistx_detach (self->queued, NULL)))
        shf_task_destroy (&task);
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
    char err [256] = "";
    shf_conn_t *conn = NULL;
    shf_err_t rc = shf_conn_open (&conn, server, true, err, sizeof err);
    if (rc != SHF_OK)
        return rc;
    shf_worker_t *self = calloc (1, sizeof *self);
    assert (self);
    shf_wlink_tally_init (&self->tally);
    shf_wlink_args_t args = {.conn = conn,
                             .queue = queue,
                             .concurrency = concurrency,
                             .timeout_ms = SHF_DEFAULT_TIMEOUT_MS,
                             .tally = &self->tally};
    sigset_t saved;
    s_signals_block (&saved);
    self->link = zactor_new (shf_wlink, &args);
    s_signals_restore (&saved);
    assert (self->link);
    assert (args.conn == NULL);
    self->queued = zlistx_new ();
    self->canceled = zhashx_new ();
    assert (self->queued && self->canceled);
    zhashx_set_key_hasher (self->canceled, shf_token_hash);  //  by token
    *self_p = self;
    return SHF_OK;
}

static zmsg_t *s_take (shf_worker_t *self, zmsg_t *msg);
static void s_collect (shf_worker_t *self, zmsg_t **answer_p);

//  How long destroying a worker waits for answers to results sent without
//  waiting.
#define S_DESTROY_FLUSH_MS 2000

void
shf_worker_destroy (shf_worker_t **self_p)
{
    assert (self_p);
    shf_worker_t *self = *self_p;
    if (!self)
        return;
    //  Tasks still waiting here go back to the node now (not after the
    //  liveness timeout), and results sent without waiting get their
    //  answers: a result dropped with the socket would be redone.
    shf_worker_stop (self);
    if ((self->pending > 0 || self->handler)
        && shf_worker_flush (self, S_DESTROY_FLUSH_MS) != SHF_OK)
        shf_warn ("worker: %zu result(s) unanswered when destroyed",
                  shf_worker_pending (self));
    shf_wlink_close (self->link);
    zsock_t *pipe = zactor_sock (self->link);
    zmsg_t *msg;
    while ((msg = shf_wlink_recv (pipe, -1))) {
        msg = s_take (self, msg);
        shf_wlink_item_t item;
        bool closed = msg && !shf_wlink_item_peek (msg, &item)
                      && zframe_streq (zmsg_first (msg), "CLOSED");
        shf_wlink_discard (&msg);
        if (closed)
            break;
    }
    sigset_t saved;
    s_signals_block (&saved);
    zactor_destroy (&self->link);
    s_signals_restore (&saved);
    s_queue_clear (self);
    zlistx_destroy (&self->queued);
    zhashx_destroy (&self->canceled);
    shf_wlink_tally_fini (&self->tally);
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
    return zsock_resolve (zactor_sock (self->link));
}

//  Take a TASK or CANCELED message from the actor; returns any other
//  message (a REPORTED) to the caller, NULL when it was taken.
static zmsg_t *
s_take (shf_worker_t *self, zmsg_t *msg)
{
    if (!msg)
        return NULL;
    shf_wlink_item_t item;
    if (shf_wlink_item_peek (msg, &item)) {
        if (item.kind != SHF_WLINK_TASK)
            return msg;
        zmsg_destroy (&msg);
        shf_task_t *task = item.task;
        if (self->stopping) {
            shf_wlink_hand_back (self->link, shf_task_token (task));
            shf_task_destroy (&task);
        }
        else if (self->handler)  //  it was on its way when HANDLER went
            shf_wlink_run (self->link, &task);
        else
            zlistx_add_end (self->queued, task);
        return NULL;
    }
    char *command = zmsg_popstr (msg);
    if (!command)
        ;
    else if (streq (command, "CANCELED")) {
        char *token = zmsg_popstr (msg);
        if (token)
            zhashx_update (self->canceled, token, self);
        zstr_free (&token);
    }
    else if (streq (command, "FLUSHED")) {
        char *n = zmsg_popstr (msg);
        if (n)
            self->flushed = (uint32_t) strtoul (n, NULL, 10);
        zstr_free (&n);
    }
    else {
        zmsg_pushstr (msg, command);
        zstr_free (&command);
        return msg;
    }
    zstr_free (&command);
    zmsg_destroy (&msg);
    return NULL;
}

//  Reads a REPORTED answer (destroyed): the report's seq (0 for another
//  message) and its outcome, with the error set when it failed (and
//  cleared when it succeeded, unless quiet_ok: the last refused async
//  result stays readable).
static shf_err_t
s_reported (shf_worker_t *self, zmsg_t **answer_p, uint32_t *seq_p,
            bool quiet_ok)
{
    *seq_p = 0;
    shf_wlink_item_t item;
    if (!shf_wlink_item_peek (*answer_p, &item)
        || item.kind != SHF_WLINK_REPORTED) {
        shf_wlink_discard (answer_p);
        return SHF_OK;
    }
    shf_wlink_item_take (answer_p, &item);
    char *message = item.message;
    json_t *reply = item.json;
    *seq_p = item.seq;
    shf_err_t rc = (shf_err_t) item.status;
    if (reply && quiet_ok && json_is_true (json_object_get (reply, "ok")))
        rc = SHF_OK;  //  an accepted async result leaves the error alone
    else if (reply)
        rc = shf_lasterr_reply (&self->err, reply, NULL);
    else if (rc != SHF_OK)
        shf_lasterr_fail (&self->err, rc, "%s", message ? message : "");
    json_decref (reply);
    free (message);
    return rc;
}

//  The answer to a report sent without waiting: one fewer pending.
static void
s_collect (shf_worker_t *self, zmsg_t **answer_p)
{
    if (!*answer_p)
        return;
    uint32_t seq;
    shf_err_t rc = s_reported (self, answer_p, &seq, true);
    if (seq == 0 || self->pending == 0)
        return;
    self->pending--;
    if (rc != SHF_OK)
        self->failures++;
}

void
shf_worker_service (shf_worker_t *self)
{
    assert (self);
    zsock_t *pipe = zactor_sock (self->link);
    zmsg_t *msg;
    while ((msg = shf_wlink_recv (pipe, 0))) {
        msg = s_take (self, msg);
        s_collect (self, &msg);
    }
    //  An inline report's error, when a newer one came.
    shf_wlink_tally_error (&self->tally, &self->tally_seen, &self->err);
}

shf_err_t
shf_worker_set_handler (shf_worker_t *self, shf_handler_fn *handler, void *arg)
{
    assert (self);
    if (!handler || self->handler || self->polled || self->stopping)
        return shf_lasterr_fail (&self->err, SHF_EINVAL, "%s",
                                 !handler        ? "no handler"
                                 : self->handler ? "a handler is set already"
                                 : self->polled  ? "the worker has been polled"
                                                 : "the worker is stopping");
    self->handler = true;
    shf_wlink_set_handler (self->link, handler, arg);
    //  Tasks taken in before, and those on their way until the actor's
    //  HANDLING, run there too: nothing may stay in the pipe, which an
    //  application with a handler need never read again.
    shf_task_t *task;
    while ((task = zlistx_detach (self->queued, NULL)))
        shf_wlink_run (self->link, &task);
    zsock_t *pipe = zactor_sock (self->link);
    while (true) {
        zmsg_t *msg = shf_wlink_recv (pipe, -1);
        if (!msg)  //  the context is ending: no answer will come
            return shf_lasterr_fail (&self->err, SHF_EUNAVAIL,
                                     "the worker's connection has ended");
        msg = s_take (self, msg);  //  a TASK goes back to the actor
        bool handling = msg && zframe_streq (zmsg_first (msg), "HANDLING");
        s_collect (self, &msg);
        if (handling)
            return SHF_OK;
    }
}

static void
s_hand_back_queued (shf_worker_t *self)
{
    for (shf_task_t *task = zlistx_first (self->queued); task;
         task = zlistx_next (self->queued))
        shf_wlink_hand_back (self->link, shf_task_token (task));
    s_queue_clear (self);
}

shf_err_t
shf_worker_poll (shf_worker_t *self, int timeout_ms, shf_task_t **task_p)
{
    assert (self);
    assert (task_p);
    *task_p = NULL;
    if (self->handler)
        return shf_lasterr_fail (&self->err, SHF_EINVAL,
                                 "tasks go to the handler");
    self->polled = true;
    int64_t deadline = s_now_ms () + (timeout_ms > 0 ? timeout_ms : 0);
    while (true) {
        if (self->stopping)
            //  A task that reached us after the stop goes back at once,
            //  and keeps doing so while the caller waits here.
            s_hand_back_queued (self);
        else if (zlistx_size (self->queued) > 0) {
            *task_p = zlistx_detach (self->queued, NULL);
            return SHF_OK;
        }
        //  One message at a time, waiting in the receive itself: in
        //  libzmq each look at an empty pipe is a system call, and
        //  zmq_poll then reading the pipe dry makes several.
        int64_t left = deadline - s_now_ms ();
        zmsg_t *msg = shf_wlink_recv (zactor_sock (self->link),
                                      left > 0 ? (int) left : 0);
        if (!msg)
            break;  //  none came in time, or the context is ending
        msg = s_take (self, msg);
        s_collect (self, &msg);
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
    shf_wlink_stop (self->link);
    s_hand_back_queued (self);
}

//  Hand a report to the actor. With wait, wait for its answer (the actor
//  always answers, within twice the reply timeout at most), keeping the
//  tasks and cancellations that arrive meanwhile and collecting answers
//  to reports sent without waiting. Destroys the task.
static shf_err_t
s_report (shf_worker_t *self, shf_task_t **task_p, json_t *msg, bool wait)
{
    shf_task_t *task = *task_p;
    const char *token = shf_task_token (task);
    //  The token came from the node in a decoded (UTF-8 checked) message.
    json_object_set_new_nocheck (msg, "token", json_string_nocheck (token));
    uint32_t seq = ++self->next_seq;
    if (seq == 0)  //  0 means "not an answer"
        seq = ++self->next_seq;
    shf_wlink_report (self->link, seq, &msg);
    char *own_token = strdup (token);
    assert (own_token);
    shf_task_destroy (task_p);
    //  A cancellation of this task no longer matters (nor one that
    //  arrives while we wait).
    zhashx_delete (self->canceled, own_token);
    if (!wait) {
        self->pending++;
        free (own_token);
        return SHF_OK;
    }
    zsock_t *pipe = zactor_sock (self->link);
    while (true) {
        zmsg_t *raw = shf_wlink_recv (pipe, -1);
        if (!raw) {  //  the context is ending: no answer will come
            free (own_token);
            return shf_lasterr_fail (&self->err, SHF_EUNAVAIL,
                                     "the worker's connection has ended");
        }
        zmsg_t *answer = s_take (self, raw);
        if (!answer)
            continue;
        shf_wlink_item_t item;
        bool mine = shf_wlink_item_peek (answer, &item)
                    && item.kind == SHF_WLINK_REPORTED && item.seq == seq;
        if (!mine) {
            s_collect (self, &answer);
            continue;
        }
        uint32_t got;
        shf_err_t rc = s_reported (self, &answer, &got, false);
        zhashx_delete (self->canceled, own_token);
        free (own_token);
        return rc;
    }
}

static shf_err_t
s_fail (shf_worker_t *self, shf_task_t **task_p, const char *type,
        const char *message, bool wait)
{
    assert (self);
    assert (task_p && *task_p);
    return s_report (self, task_p, shf_wlink_fail_request (type, message),
                     wait);
}

static shf_err_t
s_complete (shf_worker_t *self, shf_task_t **task_p, const char *output,
            bool wait)
{
    assert (self);
    assert (task_p && *task_p);
    //  Output the report cannot carry makes it a failure of the task
    //  ("BadOutput", "TooLarge"): the call says so once that is reported.
    shf_err_t why_rc;
    char why [256];
    json_t *msg = shf_wlink_complete_request (output, &why_rc, why, sizeof why);
    shf_err_t rc = s_report (self, task_p, msg, wait);
    if (rc != SHF_OK || why_rc == SHF_OK)
        return rc;
    return shf_lasterr_fail (&self->err, why_rc, "%s", why);
}

shf_err_t
shf_worker_complete (shf_worker_t *self, shf_task_t **task_p,
                     const char *output)
{
    return s_complete (self, task_p, output, true);
}

shf_err_t
shf_worker_complete_async (shf_worker_t *self, shf_task_t **task_p,
                           const char *output)
{
    return s_complete (self, task_p, output, false);
}

shf_err_t
shf_worker_fail (shf_worker_t *self, shf_task_t **task_p, const char *type,
                 const char *message)
{
    return s_fail (self, task_p, type, message, true);
}

shf_err_t
shf_worker_fail_async (shf_worker_t *self, shf_task_t **task_p,
                       const char *type, const char *message)
{
    return s_fail (self, task_p, type, message, false);
}

size_t
shf_worker_pending (shf_worker_t *self)
{
    assert (self);
    return self->pending + atomic_load (&self->tally.pending);
}

size_t
shf_worker_failures (shf_worker_t *self)
{
    assert (self);
    return self->failures + atomic_load (&self->tally.failures);
}

shf_err_t
shf_worker_flush (shf_worker_t *self, int timeout_ms)
{
    assert (self);
    int64_t deadline = s_now_ms () + (timeout_ms > 0 ? timeout_ms : 0);
    zsock_t *pipe = zactor_sock (self->link);
    //  With a handler, the actor's FLUSHED is the barrier (see the
    //  banner); the counts alone answer a flush that may not wait.
    uint32_t asked = 0;
    if (self->handler) {
        asked = ++self->flushes;
        if (asked == 0)  //  0 means "none asked"
            asked = ++self->flushes;
        shf_wlink_flush (self->link, asked);
    }
    while (true) {
        //  pending first: an error counted before it fell is then read by
        //  the service (shf_wlink.h, the tally).
        size_t inline_pending = atomic_load (&self->tally.pending);
        shf_worker_service (self);
        bool answered = self->flushed == asked;
        if (self->pending == 0 && inline_pending == 0 && answered)
            return SHF_OK;
        int64_t left = deadline - s_now_ms ();
        if (left <= 0 && self->pending == 0 && inline_pending == 0)
            return SHF_OK;
        if (left <= 0)
            return shf_lasterr_fail (&self->err, SHF_ETIMEOUT,
                                     "%zu reports still unanswered",
                                     self->pending + inline_pending);
        zmsg_t *msg = shf_wlink_recv (pipe, (int) left);
        if (!msg && zmq_errno () != EAGAIN)
            return shf_lasterr_fail (&self->err, SHF_EUNAVAIL,
                                     "the worker's connection has ended");
        msg = s_take (self, msg);
        s_collect (self, &msg);
    }
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
    size_t size = 4;
    if (details) {
        size = strlen (details);
        if (size > SHF_MSG_MAX_PAYLOAD)
            return shf_lasterr_fail (&self->err, SHF_ETOOLARGE,
                                     "details are larger than 2 MiB");
        json_error_t jerr;
        value = json_loads (details, JSON_DECODE_ANY, &jerr);
        if (!value)
            return shf_lasterr_fail (&self->err, SHF_EINVAL,
                                     "details are not JSON: %s", jerr.text);
    }
    shf_wlink_heartbeat (self->link, shf_task_token (task), &value, size);
    if (canceled_p)
        *canceled_p = shf_worker_canceled (self, task);
    return SHF_OK;
}

bool
shf_worker_canceled (shf_worker_t *self, shf_task_t *task)
{
    assert (self);
    assert (task);
    shf_worker_service (self);
    return zhashx_lookup (self->canceled, shf_task_token (task)) != NULL;
}
