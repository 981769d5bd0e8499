/*  shf_wlink_test.c - self-test of the worker's link, through the public
    worker API (shardflow.h), against a fake node.

    The fake node is an actor with a ROUTER on an ephemeral port: it logs
    every frame a worker sends (with its arrival time), answers heartbeats
    with {"canceled": [tokens it was told to cancel], "min_interval_ms"}
    and reports with ok, and sends tasks when the test asks. The test
    thread plays the application: it takes a task and then stays busy
    (calls nothing) to show that keepalives go on; it records heartbeats
    and checks how they were batched; it reports right after a heartbeat
    and checks the order on the wire. Then a flood of tasks that the
    application does not read: they wait in the actor's outbox while
    keepalives go on, come through whole and in order, and the ones still
    unread when the worker is destroyed are freed (the ASan build checks
    that tasks handed over as pointers do not leak). Then a storm of
    signals on the application's thread (a generic worker's SIGCHLD):
    tasks, reports and answers still come and go whole, and nothing waits
    on an empty pipe. Last, an inline handler (shf_worker_set_handler):
    a task taken in before it was set runs there too; tasks run on the
    link's thread and their outcomes (output, failure, output that is not
    JSON or too large) reach the wire; while the fake node holds its
    answers they are pending and a flush times out, once it answers (one
    refusal among them) the flush returns with the refusal counted and
    its code kept; the credit comes back; after a stop a task is handed
    back without running.
*/
#include "shf_wlink.h"
#include "shardflow.h"
#include "shf_msg.h"
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

//  ---------------------------------------------------------------------
//  The fake node

typedef struct {
    zsock_t *router;
    zframe_t *worker;  //  identity of the last sender
    json_t *log;       //  [{"t": ms, "msg": {...}}], taken by "LOG"
    zhashx_t *cancel;  //  tokens to list as canceled
    zhashx_t *refuse;  //  tokens whose reports are refused ("closed")
    bool hold;         //  reports wait in held until "RELEASE"
    json_t *held;      //  [{"id", "token"}] of reports not answered yet
    int64_t min_interval;
} s_fake_t;

static void
s_fake_send (s_fake_t *self, json_t *msg)
{
    char *data = NULL;
    size_t size = 0;
    shf_err_t rc = shf_msg_encode (msg, &data, &size);
    assert (rc == SHF_OK);
    zmsg_t *out = zmsg_new ();
    zframe_t *identity = zframe_dup (self->worker);
    zmsg_append (out, &identity);
    zmsg_addmem (out, data, size);
    free (data);
    zmsg_send (&out, self->router);
}

static json_t *
s_fake_report_reply (s_fake_t *self, uint64_t id, const char *token)
{
    if (token && zhashx_lookup (self->refuse, token))
        return shf_msg_reply_error (id, SHF_ECLOSED, "the run is closed");
    return shf_msg_reply_ok (id, json_object ());
}

static void
s_fake_frontend (s_fake_t *self)
{
    zmsg_t *in = zmsg_recv (self->router);
    zframe_t *identity = zmsg_pop (in);
    zframe_t *body = zmsg_pop (in);
    json_t *msg = NULL;
    shf_op_t op;
    uint64_t id = 0;
    char err [256];
    shf_err_t rc = shf_msg_decode (zframe_data (body), zframe_size (body), &msg,
                                   &op, &id, err, sizeof err);
    assert (rc == SHF_OK);
    zframe_destroy (&self->worker);
    self->worker = identity;
    json_array_append_new (
        self->log,
        json_pack ("{s:I, s:O}", "t", (json_int_t) zclock_mono (), "msg", msg));
    json_t *reply = NULL;
    if (op == SHF_OP_HEARTBEAT) {
        json_t *canceled = json_array ();
        size_t i;
        json_t *item;
        json_array_foreach (json_object_get (msg, "items"), i, item)
        {
            const char *token =
                json_string_value (json_object_get (item, "token"));
            if (zhashx_lookup (self->cancel, token))
                json_array_append_new (canceled, json_string (token));
        }
        reply = shf_msg_reply_ok (
            id, json_pack ("{s:o, s:I}", "canceled", canceled,
                           "min_interval_ms", (json_int_t) self->min_interval));
    }
    else if (op == SHF_OP_COMPLETE || op == SHF_OP_FAIL) {
        const char *token = json_string_value (json_object_get (msg, "token"));
        if (self->hold)
            json_array_append_new (self->held,
                                   json_pack ("{s:I, s:s}", "id",
                                              (json_int_t) id, "token", token));
        else
            reply = s_fake_report_reply (self, id, token);
    }
    if (reply) {
        s_fake_send (self, reply);
        json_decref (reply);
    }
    json_decref (msg);
    zframe_destroy (&body);
    zmsg_destroy (&in);
}

//  Commands: TASK json -> sent to the worker; CANCEL token; MIN ms;
//  LOG -> answers the log as JSON text and clears it; REFUSE token;
//  HOLD: reports wait for RELEASE, which answers them.
static void
s_fake_node (zsock_t *pipe, void *args)
{
    (void) args;
    s_fake_t self = {.log = json_array (),
                     .cancel = zhashx_new (),
                     .refuse = zhashx_new (),
                     .held = json_array ()};
    self.router = zsock_new (ZMQ_ROUTER);
    assert (self.router);
    //  No send limit, as the real router's frontend: a ROUTER drops what
    //  exceeds it, and the flood test's burst of 3,000 tasks can pass the
    //  default 1,000 queued messages when the machine is busy.
    zsock_set_sndhwm (self.router, 0);
    int port = zsock_bind (self.router, "tcp://127.0.0.1:*");
    assert (port > 0);
    zsock_signal (pipe, 0);
    zstr_sendf (pipe, "tcp://127.0.0.1:%d", port);
    zpoller_t *poller = zpoller_new (pipe, self.router, NULL);
    while (true) {
        void *which = zpoller_wait (poller, -1);
        if (which == self.router) {
            s_fake_frontend (&self);
            continue;
        }
        if (which != pipe)
            break;
        char *command = NULL, *arg = NULL;
        zstr_recvx (pipe, &command, &arg, NULL);
        if (!command || streq (command, "$TERM")) {
            zstr_free (&command);
            zstr_free (&arg);
            break;
        }
        if (streq (command, "TASK")) {
            assert (self.worker);
            json_t *task = json_loads (arg, 0, NULL);
            assert (task);
            s_fake_send (&self, task);
            json_decref (task);
        }
        else if (streq (command, "CANCEL"))
            zhashx_update (self.cancel, arg, &self);
        else if (streq (command, "REFUSE"))
            zhashx_update (self.refuse, arg, &self);
        else if (streq (command, "HOLD"))
            self.hold = true;
        else if (streq (command, "RELEASE")) {
            self.hold = false;
            size_t i;
            json_t *held;
            json_array_foreach (self.held, i, held)
            {
                json_t *reply = s_fake_report_reply (
                    &self,
                    (uint64_t) json_integer_value (
                        json_object_get (held, "id")),
                    json_string_value (json_object_get (held, "token")));
                s_fake_send (&self, reply);
                json_decref (reply);
            }
            json_array_clear (self.held);
        }
        else if (streq (command, "MIN"))
            self.min_interval = atoll (arg);
        else if (streq (command, "LOG")) {
            char *text = json_dumps (self.log, JSON_COMPACT);
            zstr_send (pipe, text);
            free (text);
            json_array_clear (self.log);
        }
        zstr_free (&command);
        zstr_free (&arg);
    }
    zpoller_destroy (&poller);
    zframe_destroy (&self.worker);
    json_decref (self.log);
    json_decref (self.held);
    zhashx_destroy (&self.cancel);
    zhashx_destroy (&self.refuse);
    zsock_destroy (&self.router);
}

//  ---------------------------------------------------------------------
//  Helpers

//  Everything logged since the last call: [{"t", "msg"}] (the caller's).
static json_t *
s_log (zactor_t *fake)
{
    zstr_send (fake, "LOG");
    char *text = zstr_recv (fake);
    json_t *log = json_loads (text, 0, NULL);
    assert (log);
    zstr_free (&text);
    return log;
}

static const char *
s_op (const json_t *entry)
{
    return json_string_value (
        json_object_get (json_object_get (entry, "msg"), "op"));
}

static int64_t
s_int (const json_t *object, const char *path_a, const char *path_b)
{
    const json_t *value = json_object_get (object, path_a);
    if (path_b)
        value = json_object_get (value, path_b);
    return json_integer_value (value);
}

//  Heartbeats that carry items, of the log.
static json_t *
s_beats (const json_t *log)
{
    json_t *beats = json_array ();
    size_t i;
    json_t *entry;
    json_array_foreach (log, i, entry)
    {
        if (streq (s_op (entry), "heartbeat")
            && json_array_size (
                json_object_get (json_object_get (entry, "msg"), "items")))
            json_array_append (beats, entry);
    }
    return beats;
}

//  Details of the n-th item of a heartbeat entry.
static const json_t *
s_item_details (const json_t *entry, size_t n)
{
    return json_object_get (
        json_array_get (
            json_object_get (json_object_get (entry, "msg"), "items"), n),
        "details");
}

static void
s_send_task (zactor_t *fake, const char *token, int64_t heartbeat_timeout)
{
    json_t *task = json_pack (
        "{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:{s:i}, s:I}", "op",
        "task", "token", token, "ns", "default", "wf_id", "wf-1", "run_id",
        "run-1", "step", "a", "activity", "act", "queue", "q", "attempt", 1,
        "input", "x", 1, "heartbeat_timeout_ms",
        (json_int_t) heartbeat_timeout);
    assert (task);
    char *text = json_dumps (task, JSON_COMPACT);
    zstr_sendx (fake, "TASK", text, NULL);
    free (text);
    json_decref (task);
}

static void
s_wait_log (zactor_t *fake, json_t *into, const char *op, int64_t credit,
            int timeout_ms)
{
    int64_t deadline = zclock_mono () + timeout_ms;
    while (zclock_mono () < deadline) {
        json_t *log = s_log (fake);
        json_array_extend (into, log);
        json_decref (log);
        size_t i;
        json_t *entry;
        json_array_foreach (into, i, entry)
        {
            if (streq (s_op (entry), op)
                && (credit < 0 || s_int (entry, "msg", "credit") == credit))
                return;
        }
        zclock_sleep (20);
    }
    fprintf (stderr, "shf_wlink: no %s (credit %lld) within %d ms\n", op,
             (long long) credit, timeout_ms);
    assert (false);
}

static void
s_heartbeat (shf_worker_t *worker, shf_task_t *task, const char *details,
             bool *canceled_p)
{
    shf_err_t rc = shf_worker_heartbeat (worker, task, details, canceled_p);
    assert (rc == SHF_OK);
}

//  ---------------------------------------------------------------------
//  The flood: more tasks than the pipe holds (its high-water marks are
//  1000 a side).

//  A worker of the given concurrency on queue "q" of the fake node.
static shf_worker_t *
s_worker_on (zactor_t *fake, int concurrency)
{
    char *endpoint = zstr_recv (fake);
    assert (endpoint);
    shf_worker_t *worker = NULL;
    shf_err_t rc = shf_worker_open (&worker, endpoint, "q", concurrency);
    assert (rc == SHF_OK);
    zstr_free (&endpoint);
    return worker;
}

#define S_FLOOD 3000

static void
s_flood_test (bool verbose)
{
    zactor_t *fake = zactor_new (s_fake_node, NULL);
    assert (fake);
    shf_worker_t *worker = s_worker_on (fake, 8);
    shf_err_t rc;
    json_t *log = json_array ();
    s_wait_log (fake, log, "poll", 8, 5000);
    //  The grant that opens the connection sets the credit (reset) and
    //  names the connection; later grants add to it under the same name.
    int64_t gen = -1;
    size_t i;
    json_t *entry;
    json_array_foreach (log, i, entry)
    {
        if (streq (s_op (entry), "poll")
            && s_int (entry, "msg", "credit") == 8) {
            json_t *msg = json_object_get (entry, "msg");
            assert (json_is_true (json_object_get (msg, "reset")));
            assert (json_is_integer (json_object_get (msg, "gen")));
            gen = s_int (entry, "msg", "gen");
        }
    }
    assert (gen >= 1);
    json_decref (log);

    //  The application reads nothing while the tasks arrive.
    int64_t busy_from = zclock_mono ();
    for (int n = 0; n < S_FLOOD; n++) {
        char token [32];
        snprintf (token, sizeof token, "flood-%d", n);
        s_send_task (fake, token, 0);
    }
    zclock_sleep (2300);
    log = s_log (fake);
    int keepalives = 0;
    json_array_foreach (log, i, entry)
    {
        if (streq (s_op (entry), "poll") && s_int (entry, "msg", "credit") == 0
            && s_int (entry, "t", NULL) >= busy_from)
            keepalives++;
    }
    json_decref (log);
    if (verbose)
        printf ("  %d keepalives while %d tasks waited for the application\n",
                keepalives, S_FLOOD);
    assert (keepalives >= 2);

    //  Every task once, in order; each report gives a slot back.
    int reported = 0;
    for (int n = 0; n < S_FLOOD; n++) {
        shf_task_t *task = NULL;
        rc = shf_worker_poll (worker, 5000, &task);
        assert (rc == SHF_OK);
        char token [32];
        snprintf (token, sizeof token, "flood-%d", n);
        assert (streq (shf_task_token (task), token));
        if (n % 100 == 0) {
            rc = shf_worker_complete (worker, &task, "1");
            assert (rc == SHF_OK);
            reported++;
        }
        else
            shf_task_destroy (&task);
    }
    int64_t deadline = zclock_mono () + 3000;
    int credit = 0;
    while (credit < reported && zclock_mono () < deadline) {
        json_t *more = s_log (fake);
        json_array_foreach (more, i, entry)
        {
            if (streq (s_op (entry), "poll")) {
                credit += (int) s_int (entry, "msg", "credit");
                json_t *msg = json_object_get (entry, "msg");
                assert (!json_is_true (json_object_get (msg, "reset")));
                assert (s_int (entry, "msg", "gen") == gen);
            }
        }
        json_decref (more);
        zclock_sleep (20);
    }
    if (verbose)
        printf ("  %d reports gave back %d credit\n", reported, credit);
    assert (credit == reported);

    //  Tasks still in the pipe and the outbox when the worker goes.
    for (int n = 0; n < S_FLOOD; n++) {
        char token [32];
        snprintf (token, sizeof token, "left-%d", n);
        s_send_task (fake, token, 0);
    }
    shf_task_t *task = NULL;
    rc = shf_worker_poll (worker, 5000, &task);
    assert (rc == SHF_OK);
    shf_task_destroy (&task);
    zclock_sleep (300);
    shf_worker_destroy (&worker);
    zactor_destroy (&fake);
}

//  ---------------------------------------------------------------------
//  The storm: SIGALRM every 50 us, on the test's thread only (the fake
//  node's is born with signals blocked, as the worker's actor is).

static volatile sig_atomic_t s_alarms;

static void
s_on_alarm (int sig)
{
    (void) sig;
    s_alarms++;
}

//  Echoes every message back, until $TERM.
static void
s_echo (zsock_t *pipe, void *args)
{
    (void) args;
    zsock_signal (pipe, 0);
    zmsg_t *msg;
    while ((msg = shf_wlink_recv (pipe, -1))) {
        char *first = zmsg_popstr (msg);
        bool term = !first || streq (first, "$TERM");
        if (!term) {
            zmsg_pushstr (msg, first);
            shf_wlink_send (pipe, &msg);
        }
        zstr_free (&first);
        zmsg_destroy (&msg);
        if (term)
            break;
    }
}

static void
s_storm_test (bool verbose)
{
    sigset_t all, saved;
    sigfillset (&all);
    pthread_sigmask (SIG_BLOCK, &all, &saved);
    zactor_t *fake = zactor_new (s_fake_node, NULL);
    zactor_t *echo = zactor_new (s_echo, NULL);
    pthread_sigmask (SIG_SETMASK, &saved, NULL);
    assert (fake && echo);
    shf_worker_t *worker = s_worker_on (fake, 4);
    shf_err_t rc;
    json_t *log = json_array ();
    s_wait_log (fake, log, "poll", 4, 5000);
    json_decref (log);
    zsock_t *back = NULL;
    zsock_t *front = zsys_create_pipe (&back);

    struct sigaction action, old;
    memset (&action, 0, sizeof action);
    action.sa_handler = s_on_alarm;
    sigemptyset (&action.sa_mask);
    action.sa_flags = SA_RESTART;
    sigaction (SIGALRM, &action, &old);
    struct itimerval storm = {{0, 50}, {0, 50}}, calm = {{0, 0}, {0, 0}};
    setitimer (ITIMER_REAL, &storm, NULL);

    //  An idle pipe never shows events that are not there.
    int64_t end = zclock_mono () + 200;
    while (zclock_mono () < end)
        assert ((shf_wlink_events (front) & ZMQ_POLLIN) == 0);

    //  Multipart messages never tear.
    int echoes = 0;
    end = zclock_mono () + 1000;
    while (zclock_mono () < end) {
        zmsg_t *msg = zmsg_new ();
        zmsg_addstr (msg, "ECHO");
        zmsg_addstrf (msg, "%d", echoes);
        zmsg_addstr (msg, "c");
        zmsg_addstr (msg, "d");
        zmsg_addstr (msg, "e");
        assert (shf_wlink_send (echo, &msg) == 0);
        msg = shf_wlink_recv (echo, -1);
        assert (msg && zmsg_size (msg) == 5);
        char *first = zmsg_popstr (msg);
        char *seq = zmsg_popstr (msg);
        assert (streq (first, "ECHO") && atoi (seq) == echoes);
        zstr_free (&first);
        zstr_free (&seq);
        zmsg_destroy (&msg);
        echoes++;
    }

    //  Round trips: TASK in, heartbeats, REPORT out, REPORTED back. The
    //  test's own commands to the fake node must not tear either.
    int rounds = 0;
    end = zclock_mono () + 1500;
    while (zclock_mono () < end) {
        char token [32];
        snprintf (token, sizeof token, "storm-%d", rounds);
        json_t *task = json_pack (
            "{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:{s:i}, s:i}", "op",
            "task", "token", token, "ns", "default", "wf_id", "wf", "run_id",
            "run", "step", "a", "activity", "act", "queue", "q", "attempt", 1,
            "input", "x", rounds, "heartbeat_timeout_ms", 0);
        assert (task);
        char *text = json_dumps (task, JSON_COMPACT);
        json_decref (task);
        zmsg_t *msg = zmsg_new ();
        zmsg_addstr (msg, "TASK");
        zmsg_addstr (msg, text);
        free (text);
        assert (shf_wlink_send (fake, &msg) == 0);
        shf_task_t *got = NULL;
        rc = shf_worker_poll (worker, 5000, &got);
        assert (rc == SHF_OK);
        assert (streq (shf_task_token (got), token));
        for (int n = 0; n < 10; n++) {
            s_heartbeat (worker, got, "{\"storm\":true}", NULL);
            assert (!shf_worker_canceled (worker, got));
        }
        rc = rounds % 2 ? shf_worker_fail (worker, &got, "Storm", "x")
                        : shf_worker_complete (worker, &got, "1");
        assert (rc == SHF_OK);
        rounds++;
    }
    setitimer (ITIMER_REAL, &calm, NULL);
    sigaction (SIGALRM, &old, NULL);
    if (verbose)
        printf ("  %d echoes, %d tasks run and reported through %d "
                "signals\n",
                echoes, rounds, (int) s_alarms);
    assert (rounds > 0 && s_alarms > 0);
    zsock_destroy (&front);
    zsock_destroy (&back);
    shf_worker_destroy (&worker);
    zactor_destroy (&fake);
    zactor_destroy (&echo);
}

//  ---------------------------------------------------------------------
//  Inline handlers

typedef struct {
    atomic_int calls;
    atomic_bool on_link;  //  every call ran off the test's thread
    pthread_t test_thread;
} s_handled_t;

static char *
s_strdup (const char *text)
{
    char *copy = strdup (text);
    assert (copy);
    return copy;
}

//  The outcome by the token's prefix: "ok" echoes the token, "no"
//  declines, "bad" is not JSON, "big" is over the payload limit.
static void
s_handler (shf_task_t *task, void *arg, shf_outcome_t *outcome)
{
    s_handled_t *handled = arg;
    if (pthread_equal (pthread_self (), handled->test_thread))
        atomic_store (&handled->on_link, false);
    const char *token = shf_task_token (task);
    assert (streq (shf_task_activity (task), "act"));
    if (strncmp (token, "no", 2) == 0) {
        outcome->error_type = s_strdup ("Declined");
        outcome->error_message = s_strdup ("no");
    }
    else if (strncmp (token, "bad", 3) == 0)
        outcome->output = s_strdup ("{bad");
    else if (strncmp (token, "big", 3) == 0) {
        size_t size = SHF_MSG_MAX_PAYLOAD + 16;
        char *big = malloc (size + 3);
        assert (big);
        memset (big, 'x', size + 2);
        big [0] = big [size + 1] = '"';
        big [size + 2] = 0;
        outcome->output = big;
    }
    else {
        char output [128];
        snprintf (output, sizeof output, "{\"token\":\"%s\"}", token);
        outcome->output = s_strdup (output);
    }
    atomic_fetch_add (&handled->calls, 1);
}

//  The entry of the log whose message has op and token (borrowed), or
//  NULL.
static json_t *
s_find (const json_t *log, const char *op, const char *token)
{
    size_t i;
    json_t *entry;
    json_array_foreach (log, i, entry)
    {
        json_t *msg = json_object_get (entry, "msg");
        const char *its = json_string_value (json_object_get (msg, "token"));
        if (streq (s_op (entry), op) && its && streq (its, token))
            return msg;
    }
    return NULL;
}

//  Reads the log into into until it has a report (op) of token.
static json_t *
s_wait_report (zactor_t *fake, json_t *into, const char *op, const char *token)
{
    int64_t deadline = zclock_mono () + 5000;
    while (zclock_mono () < deadline) {
        json_t *log = s_log (fake);
        json_array_extend (into, log);
        json_decref (log);
        json_t *msg = s_find (into, op, token);
        if (msg)
            return msg;
        zclock_sleep (10);
    }
    fprintf (stderr, "shf_wlink: no %s of %s within 5 s\n", op, token);
    assert (false);
    return NULL;
}

static const char *
s_error_type (const json_t *msg)
{
    return json_string_value (
        json_object_get (json_object_get (msg, "error"), "type"));
}

//  Waits until the handler ran calls times and pending is pending.
static void
s_wait_handled (shf_worker_t *worker, s_handled_t *handled, int calls,
                size_t pending)
{
    int64_t deadline = zclock_mono () + 5000;
    while ((atomic_load (&handled->calls) < calls
            || shf_worker_pending (worker) != pending)
           && zclock_mono () < deadline)
        zclock_sleep (5);
    assert (atomic_load (&handled->calls) == calls);
    assert (shf_worker_pending (worker) == pending);
}

static void
s_handler_test (bool verbose)
{
    zactor_t *fake = zactor_new (s_fake_node, NULL);
    assert (fake);
    shf_worker_t *worker = s_worker_on (fake, 8);
    s_handled_t handled = {.test_thread = pthread_self ()};
    atomic_init (&handled.calls, 0);
    atomic_init (&handled.on_link, true);
    json_t *log = json_array ();
    s_wait_log (fake, log, "poll", 8, 5000);
    int64_t gen = -1;
    size_t i;
    json_t *entry;
    json_array_foreach (log, i, entry)
    {
        if (streq (s_op (entry), "poll") && s_int (entry, "msg", "credit") == 8)
            gen = s_int (entry, "msg", "gen");
    }
    json_decref (log);

    //  A task taken in on this thread before the handler is set runs in
    //  the handler too.
    s_send_task (fake, "ok-early", 0);
    zmq_pollitem_t item = {shf_worker_handle (worker), 0, ZMQ_POLLIN, 0};
    assert (zmq_poll (&item, 1, 5000) == 1);
    shf_worker_service (worker);
    assert (shf_worker_set_handler (worker, NULL, NULL) == SHF_EINVAL);
    assert (shf_worker_set_handler (worker, s_handler, &handled) == SHF_OK);
    assert (shf_worker_set_handler (worker, s_handler, &handled) == SHF_EINVAL);
    shf_task_t *task = NULL;
    assert (shf_worker_poll (worker, 0, &task) == SHF_EINVAL);
    assert (task == NULL);
    log = json_array ();
    json_t *msg = s_wait_report (fake, log, "complete", "ok-early");
    assert (streq (json_string_value (json_object_get (
                       json_object_get (msg, "output"), "token")),
                   "ok-early"));
    assert (shf_worker_flush (worker, 5000) == SHF_OK);
    assert (shf_worker_pending (worker) == 0);
    assert (shf_worker_failures (worker) == 0);

    //  The node holds its answers: reports are pending, a flush waits
    //  and gives up; then it answers, refusing one.
    zstr_send (fake, "HOLD");
    zstr_sendx (fake, "REFUSE", "ok-2", NULL);
    const char *tokens [] = {"ok-1", "ok-2", "no-1", "bad-1", "big-1"};
    for (i = 0; i < 5; i++)
        s_send_task (fake, tokens [i], 0);
    s_wait_handled (worker, &handled, 6, 5);
    assert (atomic_load (&handled.on_link));
    //  The outputs that could not go failed their tasks; the last one's
    //  error is kept.
    shf_worker_service (worker);
    assert (streq (shf_worker_errcode (worker), "too_large"));
    int64_t t0 = zclock_mono ();
    assert (shf_worker_flush (worker, 200) == SHF_ETIMEOUT);
    assert (zclock_mono () - t0 >= 190);
    assert (shf_worker_pending (worker) == 5);
    assert (shf_worker_failures (worker) == 0);
    zstr_send (fake, "RELEASE");
    assert (shf_worker_flush (worker, 5000) == SHF_OK);
    assert (shf_worker_pending (worker) == 0);
    assert (shf_worker_failures (worker) == 1);
    if (verbose)
        printf ("  held answers: flush timed out with 5 pending; released: "
                "%zu refused, %s (%s)\n",
                shf_worker_failures (worker), shf_worker_errcode (worker),
                shf_worker_errmsg (worker));
    assert (streq (shf_worker_errcode (worker), "closed"));
    for (i = 0; i < 5; i++)
        s_wait_report (fake, log,
                       strncmp (tokens [i], "ok", 2) == 0 ? "complete" : "fail",
                       tokens [i]);
    msg = s_find (log, "fail", "no-1");
    assert (streq (s_error_type (msg), "Declined"));
    assert (streq (json_string_value (json_object_get (
                       json_object_get (msg, "error"), "message")),
                   "no"));
    assert (streq (s_error_type (s_find (log, "fail", "bad-1")), "BadOutput"));
    assert (streq (s_error_type (s_find (log, "fail", "big-1")), "TooLarge"));

    //  Output that is not JSON keeps its error, without a failure (the
    //  report went and was taken).
    s_send_task (fake, "bad-2", 0);
    s_wait_report (fake, log, "fail", "bad-2");
    assert (shf_worker_flush (worker, 5000) == SHF_OK);
    assert (streq (shf_worker_errcode (worker), "bad_request"));
    assert (shf_worker_failures (worker) == 1);

    //  Every slot came back, in grants on the same connection.
    int reported = 7;
    int64_t deadline = zclock_mono () + 3000;
    int credit = 0, polls = 0;
    while (zclock_mono () < deadline) {
        credit = polls = 0;
        json_t *more = s_log (fake);
        json_array_extend (log, more);
        json_decref (more);
        json_array_foreach (log, i, entry)
        {
            if (streq (s_op (entry), "poll")
                && s_int (entry, "msg", "credit") > 0) {
                json_t *poll = json_object_get (entry, "msg");
                assert (!json_is_true (json_object_get (poll, "reset")));
                assert (s_int (entry, "msg", "gen") == gen);
                credit += (int) s_int (entry, "msg", "credit");
                polls++;
            }
        }
        if (credit >= reported)
            break;
        zclock_sleep (10);
    }
    if (verbose)
        printf ("  %d inline reports gave back %d credit in %d polls\n",
                reported, credit, polls);
    assert (credit == reported);

    //  After a stop a task goes back without running.
    shf_worker_stop (worker);
    s_send_task (fake, "ok-late", 0);
    msg = s_wait_report (fake, log, "fail", "ok-late");
    assert (streq (s_error_type (msg), "WorkerShutdown"));
    assert (atomic_load (&handled.calls) == 7);
    json_decref (log);
    shf_worker_destroy (&worker);
    zactor_destroy (&fake);

    //  A worker that was polled takes no handler.
    fake = zactor_new (s_fake_node, NULL);
    worker = s_worker_on (fake, 1);
    assert (shf_worker_poll (worker, 0, &task) == SHF_ETIMEOUT);
    assert (shf_worker_set_handler (worker, s_handler, &handled) == SHF_EINVAL);
    shf_worker_destroy (&worker);
    zactor_destroy (&fake);
}

//  ---------------------------------------------------------------------

void
shf_wlink_test (bool verbose)
{
    printf (" * shf_wlink: ");
    if (verbose)
        printf ("\n");
    zactor_t *fake = zactor_new (s_fake_node, NULL);
    assert (fake);
    shf_worker_t *worker = s_worker_on (fake, 2);
    shf_err_t rc;

    //  Credit for every slot once connected.
    json_t *log = json_array ();
    s_wait_log (fake, log, "poll", 2, 5000);
    json_decref (log);
    s_send_task (fake, "tok-1", 0);
    shf_task_t *task = NULL;
    rc = shf_worker_poll (worker, 5000, &task);
    assert (rc == SHF_OK);
    assert (streq (shf_task_token (task), "tok-1"));
    assert (streq (shf_task_input (task), "{\"x\":1}"));
    assert (shf_task_heartbeat_timeout_ms (task) == 0);

    //  Busy inside the activity, calling nothing: keepalives go on.
    int64_t busy_from = zclock_mono ();
    zclock_sleep (2600);
    log = s_log (fake);
    int keepalives = 0;
    size_t i;
    json_t *entry;
    json_array_foreach (log, i, entry)
    {
        if (streq (s_op (entry), "poll") && s_int (entry, "msg", "credit") == 0
            && s_int (entry, "t", NULL) >= busy_from)
            keepalives++;
    }
    if (verbose)
        printf ("  %d keepalives in 2.6 s of a busy application\n", keepalives);
    assert (keepalives >= 2);
    json_decref (log);

    //  Heartbeats never wait; a burst makes one batch at once, then one
    //  with the newest details an interval later.
    int64_t start = zclock_mono ();
    bool canceled = true;
    s_heartbeat (worker, task, "{\"i\":1}", &canceled);
    assert (!canceled);
    zclock_sleep (50);
    s_heartbeat (worker, task, "{\"i\":2}", NULL);
    s_heartbeat (worker, task, "{\"i\":3}", NULL);
    assert (zclock_mono () - start < 500);
    assert (shf_worker_heartbeat (worker, task, "{bad", NULL) == SHF_EINVAL);
    assert (streq (shf_worker_errcode (worker), "bad_request"));
    zclock_sleep (1500);
    log = s_log (fake);
    json_t *beats = s_beats (log);
    if (verbose) {
        char *text = json_dumps (beats, JSON_COMPACT);
        printf ("  burst: %s\n", text);
        free (text);
    }
    assert (json_array_size (beats) == 2);
    assert (s_int (s_item_details (json_array_get (beats, 0), 0), "i", NULL)
            == 1);
    assert (s_int (s_item_details (json_array_get (beats, 1), 0), "i", NULL)
            == 3);
    int64_t gap = s_int (json_array_get (beats, 1), "t", NULL)
                  - s_int (json_array_get (beats, 0), "t", NULL);
    assert (gap >= 800 && gap <= 1400);
    json_decref (beats);
    json_decref (log);

    //  Silence sends no heartbeats.
    zclock_sleep (1200);
    log = s_log (fake);
    beats = s_beats (log);
    assert (json_array_size (beats) == 0);
    json_decref (beats);
    json_decref (log);

    //  Cancellation comes with a heartbeat reply.
    zstr_sendx (fake, "CANCEL", "tok-1", NULL);
    s_heartbeat (worker, task, "{\"i\":4}", &canceled);
    int64_t deadline = zclock_mono () + 3000;
    while (!shf_worker_canceled (worker, task) && zclock_mono () < deadline)
        zclock_sleep (10);
    assert (shf_worker_canceled (worker, task));
    s_heartbeat (worker, task, "{\"i\":5}", &canceled);
    assert (canceled);

    //  The last details go before the result, though the interval has
    //  not passed; then the slot's credit comes back.
    rc = shf_worker_complete (worker, &task, "{\"done\":true}");
    assert (rc == SHF_OK);
    assert (task == NULL);
    log = json_array ();
    s_wait_log (fake, log, "poll", 1, 3000);
    int64_t last_i = 0;
    bool completed = false;
    json_array_foreach (log, i, entry)
    {
        const char *op = s_op (entry);
        if (streq (op, "heartbeat") && !completed) {
            const json_t *details = s_item_details (entry, 0);
            if (details)
                last_i = s_int (details, "i", NULL);
        }
        if (streq (op, "complete"))
            completed = true;
    }
    assert (completed && last_i == 5);
    json_decref (log);

    //  The node's minimum interval throttles; a short heartbeat timeout
    //  shortens the interval.
    zstr_sendx (fake, "MIN", "600", NULL);
    s_send_task (fake, "tok-2", 200);
    rc = shf_worker_poll (worker, 5000, &task);
    assert (rc == SHF_OK);
    assert (shf_task_heartbeat_timeout_ms (task) == 200);
    json_decref (s_log (fake));
    for (int n = 0; n < 30; n++) {
        char details [32];
        snprintf (details, sizeof details, "{\"n\":%d}", n);
        s_heartbeat (worker, task, details, NULL);
        zclock_sleep (50);
    }
    log = s_log (fake);
    beats = s_beats (log);
    if (verbose)
        printf ("  %zu batches in 1.5 s with min_interval_ms 600\n",
                json_array_size (beats));
    //  The first goes at once; its reply carries the minimum.
    for (i = 1; i < json_array_size (beats); i++)
        assert (s_int (json_array_get (beats, i), "t", NULL)
                    - s_int (json_array_get (beats, i - 1), "t", NULL)
                >= 550);
    assert (json_array_size (beats) >= 2 && json_array_size (beats) <= 4);
    json_decref (beats);
    json_decref (log);
    zstr_sendx (fake, "MIN", "0", NULL);
    for (int n = 0; n < 10; n++) {
        s_heartbeat (worker, task, "{}", NULL);
        zclock_sleep (50);
    }
    zclock_sleep (700);  //  a batch at 600 ms learns the new minimum
    json_decref (s_log (fake));
    for (int n = 0; n < 20; n++) {
        s_heartbeat (worker, task, "{}", NULL);
        zclock_sleep (50);
    }
    log = s_log (fake);
    beats = s_beats (log);
    if (verbose)
        printf ("  %zu batches in 1 s with a 200 ms heartbeat timeout\n",
                json_array_size (beats));
    assert (json_array_size (beats) >= 7);  //  every 100 ms
    json_decref (beats);
    json_decref (log);

    //  Stop: tasks that still arrive are handed back; keepalives go on
    //  without asking for work; the task held can still be reported.
    shf_worker_stop (worker);
    s_send_task (fake, "tok-3", 0);
    shf_task_t *none = NULL;
    assert (shf_worker_poll (worker, 100, &none) == SHF_ETIMEOUT);
    log = json_array ();
    s_wait_log (fake, log, "fail", -1, 3000);
    json_decref (log);
    zclock_sleep (1200);
    log = s_log (fake);
    int empty = 0;
    json_array_foreach (log, i, entry)
    {
        assert (!streq (s_op (entry), "poll"));
        if (streq (s_op (entry), "heartbeat")
            && json_array_size (
                   json_object_get (json_object_get (entry, "msg"), "items"))
                   == 0)
            empty++;
    }
    assert (empty >= 1);
    json_decref (log);
    rc = shf_worker_fail (worker, &task, "Oops", "failed on purpose");
    assert (rc == SHF_OK);

    shf_worker_destroy (&worker);
    shf_worker_destroy (&worker);
    zactor_destroy (&fake);

    s_flood_test (verbose);
    s_storm_test (verbose);
    s_handler_test (verbose);
    printf ("OK\n");
}
