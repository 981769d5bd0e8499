/*  test_worker_handler.c - end to end: activities run by an inline handler
    (shf_worker_set_handler) on the worker's background thread.

    Starts an embedded durable node (router/shf_node.h) on 127.0.0.1 with
    a port the OS picks, in a fresh temp dir, and drives it through the
    public SDK only. One worker (concurrency 32) on queue "th", opened and
    used on the main thread, which is also the client's; its handler
    answers by activity:

    - echo: 200 runs of a one-step and a two-step definition; every run
      completes with the output its steps computed, each history has one
      ActivityCompleted per step, the handler ran once per step and never
      on the main thread, and the flush leaves nothing pending or refused.
    - flaky: fails attempts 1 and 2 ("Flaky"), completes attempt 3: the
      step's retry policy (max_attempts 3, 10 ms) retries it to success.
    - decline: fails with "Declined", which the step lists as
      non-retryable (max_attempts 5): the run fails at once, with the
      handler's type and message.
    - bad: output that is not JSON fails the step ("BadOutput"); the
      worker's error is "bad_request" after a flush, and no failure is
      counted (the report itself was taken).
    - refuse: the handler terminates the task's run (through a client of
      its own) before it answers, so the node refuses the late result
      ("closed"): after a flush shf_worker_failures is 1 and the error
      code is "closed". (The handler blocks on purpose here, to order the
      terminate before the report.)
    - poll after set_handler is refused (SHF_EINVAL), and so is a handler
      on a worker that was polled.

    Every wait has a deadline (the SDK's timeouts or a loop bounded by
    one); no sleeps. Prints each check; exits 1 if any failed. Registered
    with ctest by tests/CMakeLists.txt (label "system").
*/
#include "shardflow.h"
#include "shf_node.h"
#include "test_util.h"
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static char *
s_strdup (const char *text)
{
    char *copy = strdup (text);
    if (!copy)
        abort ();
    return copy;
}

//  Starts wf_id of definition name and returns its outcome (the caller's),
//  or NULL when it did not close within 30 s.
static json_t *
s_run (shf_client_t *client, const char *name, const char *wf_id)
{
    json_t *body = NULL;
    shf_err_t rc = shf_client_start (client, name, 0, wf_id, NULL, NULL, &body);
    json_decref (body);
    if (rc != SHF_OK) {
        fprintf (stderr, "start %s: %s\n", wf_id, shf_client_errmsg (client));
        return NULL;
    }
    return s_outcome (client, wf_id, s_now_ms () + 30000);
}

//  ---------------------------------------------------------------------
//  The handler

typedef struct {
    pthread_t main_thread;
    atomic_long echoes;
    atomic_long calls;
    atomic_bool off_main;  //  no call ran on the main thread
    atomic_long bad_inputs;
    shf_client_t *terminator;  //  used by the handler only ("refuse")
    atomic_long terminated;
} s_handler_t;

static void
s_handler (shf_task_t *task, void *arg, shf_outcome_t *outcome)
{
    s_handler_t *self = arg;
    atomic_fetch_add (&self->calls, 1);
    if (pthread_equal (pthread_self (), self->main_thread))
        atomic_store (&self->off_main, false);
    const char *activity = shf_task_activity (task);
    char text [128];
    if (strcmp (activity, "echo") == 0) {
        json_t *input = json_loads (shf_task_input (task), 0, NULL);
        json_t *n = json_object_get (input, "n");
        if (!json_is_integer (n))
            atomic_fetch_add (&self->bad_inputs, 1);
        snprintf (text, sizeof text, "{\"n\": %lld}",
                  (long long) json_integer_value (n) + 1);
        json_decref (input);
        outcome->output = s_strdup (text);
        atomic_fetch_add (&self->echoes, 1);
    }
    else if (strcmp (activity, "flaky") == 0) {
        int64_t attempt = shf_task_attempt (task);
        if (attempt < 3) {
            snprintf (text, sizeof text, "attempt %lld", (long long) attempt);
            outcome->error_type = s_strdup ("Flaky");
            outcome->error_message = s_strdup (text);
        }
        else {
            snprintf (text, sizeof text, "{\"attempt\": %lld}",
                      (long long) attempt);
            outcome->output = s_strdup (text);
        }
    }
    else if (strcmp (activity, "decline") == 0) {
        outcome->error_type = s_strdup ("Declined");
        outcome->error_message = s_strdup ("no");
    }
    else if (strcmp (activity, "bad") == 0)
        outcome->output = s_strdup ("{not json");
    else if (strcmp (activity, "refuse") == 0) {
        if (shf_client_terminate (self->terminator, shf_task_workflow_id (task),
                                  "test", NULL)
            == SHF_OK)
            atomic_fetch_add (&self->terminated, 1);
        outcome->output = s_strdup ("{\"late\": true}");
    }
    else {
        outcome->error_type = s_strdup ("Unknown");
        outcome->error_message = s_strdup (activity);
    }
}

//  ---------------------------------------------------------------------
//  echo

#define DEF_ONE                                                                \
    "{\"name\": \"th_one\", \"version\": 1, \"queue\": \"th\","                \
    " \"steps\": [{\"id\": \"a\", \"activity\": \"echo\","                     \
    " \"input\": {\"n\": \"${input.n}\"}}]}"

#define DEF_TWO                                                                \
    "{\"name\": \"th_two\", \"version\": 1, \"queue\": \"th\","                \
    " \"steps\": [{\"id\": \"a\", \"activity\": \"echo\","                     \
    " \"input\": {\"n\": \"${input.n}\"}},"                                    \
    " {\"id\": \"b\", \"activity\": \"echo\","                                 \
    " \"input\": {\"n\": \"${steps.a.output.n}\"}}]}"


static void
s_test_echo (shf_client_t *client, shf_worker_t *worker, s_handler_t *handler)
{
    printf ("# echo: %d runs, one worker of concurrency %d, inline handler\n",
            RUNS, CONCURRENCY);
    s_check (s_register (client, DEF_ONE) && s_register (client, DEF_TWO),
             "register th_one (1 step) and th_two (2 sequential steps)");
    //  The first half started at once, the rest started and awaited
    s_check_echoes (client, "th", RUNS / 2, s_now_ms () + ECHO_DEADLINE_MS);
    long echoes = atomic_load (&handler->echoes);
    s_check (echoes == RUNS / 2 * 3,
             "the handler ran once per step (300) and no more");
    if (echoes != RUNS / 2 * 3)
        fprintf (stderr, "handler calls: %ld\n", echoes);
    s_check (atomic_load (&handler->bad_inputs) == 0,
             "every task input had an integer n");
    s_check (atomic_load (&handler->off_main),
             "no handler call ran on the application's thread");
    s_check (shf_worker_flush (worker, 10000) == SHF_OK,
             "shf_worker_flush (10000) == SHF_OK");
    s_check (shf_worker_pending (worker) == 0
                 && shf_worker_failures (worker) == 0,
             "pending 0 and failures 0 after the flush");
    if (shf_worker_failures (worker))
        fprintf (stderr, "failures %zu: %s: %s\n", shf_worker_failures (worker),
                 shf_worker_errcode (worker), shf_worker_errmsg (worker));
}

//  ---------------------------------------------------------------------
//  Failures and the retry policy

#define DEF_FLAKY                                                              \
    "{\"name\": \"th_flaky\", \"version\": 1, \"queue\": \"th\","              \
    " \"steps\": [{\"id\": \"s\", \"activity\": \"flaky\","                    \
    " \"retry\": {\"max_attempts\": 3, \"initial_interval\": \"10ms\"}}]}"

#define DEF_DECLINE                                                            \
    "{\"name\": \"th_decline\", \"version\": 1, \"queue\": \"th\","            \
    " \"steps\": [{\"id\": \"charge\", \"activity\": \"decline\","             \
    " \"retry\": {\"max_attempts\": 5, \"initial_interval\": \"10ms\","        \
    " \"non_retryable\": [\"Declined\"]}}]}"

#define DEF_BAD                                                                \
    "{\"name\": \"th_bad\", \"version\": 1, \"queue\": \"th\","                \
    " \"steps\": [{\"id\": \"s\", \"activity\": \"bad\","                      \
    " \"retry\": {\"max_attempts\": 1}}]}"

#define DEF_REFUSE                                                             \
    "{\"name\": \"th_refuse\", \"version\": 1, \"queue\": \"th\","             \
    " \"steps\": [{\"id\": \"s\", \"activity\": \"refuse\"}]}"

static void
s_test_failures (shf_client_t *client, shf_worker_t *worker,
                 s_handler_t *handler)
{
    printf ("# failures: retried, non-retryable, bad output, refused\n");
    s_check (s_register (client, DEF_FLAKY) && s_register (client, DEF_DECLINE)
                 && s_register (client, DEF_BAD)
                 && s_register (client, DEF_REFUSE),
             "register th_flaky, th_decline, th_bad, th_refuse");

    json_t *outcome = s_run (client, "th_flaky", "th-flaky-1");
    json_t *expected = json_pack ("{s:i}", "attempt", 3);
    s_check (outcome && strcmp (s_str (outcome, "status"), "completed") == 0
                 && json_equal (json_object_get (outcome, "output"), expected),
             "th_flaky completed with the output of attempt 3");
    json_decref (expected);
    json_decref (outcome);
    s_check (s_count_events (client, "th-flaky-1", "ActivityFailed") == 2
                 && s_count_events (client, "th-flaky-1", "ActivityCompleted")
                        == 1,
             "history: two ActivityFailed (Flaky), one ActivityCompleted");

    outcome = s_run (client, "th_decline", "th-decline-1");
    json_t *failure = json_object_get (outcome, "failure");
    s_check (outcome && strcmp (s_str (outcome, "status"), "failed") == 0
                 && strcmp (s_str (failure, "type"), "Declined") == 0
                 && strcmp (s_str (failure, "message"), "no") == 0
                 && strcmp (s_str (failure, "step"), "charge") == 0,
             "th_decline failed: {type Declined, message no, step charge}");
    json_decref (outcome);
    s_check (s_count_events (client, "th-decline-1", "ActivityFailed") == 1,
             "history: one ActivityFailed (Declined is not retried)");

    outcome = s_run (client, "th_bad", "th-bad-1");
    failure = json_object_get (outcome, "failure");
    s_check (outcome && strcmp (s_str (outcome, "status"), "failed") == 0
                 && strcmp (s_str (failure, "type"), "BadOutput") == 0,
             "output that is not JSON failed the step with BadOutput");
    if (outcome) {
        char *text = json_dumps (outcome, JSON_COMPACT);
        printf ("#   outcome %s\n", text);
        free (text);
    }
    json_decref (outcome);
    s_check (shf_worker_flush (worker, 10000) == SHF_OK
                 && strcmp (shf_worker_errcode (worker), "bad_request") == 0
                 && shf_worker_failures (worker) == 0,
             "after a flush: errcode bad_request, no failure counted");
    printf ("#   errcode %s, errmsg %s\n", shf_worker_errcode (worker),
            shf_worker_errmsg (worker));

    outcome = s_run (client, "th_refuse", "th-refuse-1");
    s_check (outcome && strcmp (s_str (outcome, "status"), "terminated") == 0,
             "th-refuse-1 is terminated");
    json_decref (outcome);
    s_check (shf_worker_flush (worker, 10000) == SHF_OK
                 && shf_worker_pending (worker) == 0,
             "shf_worker_flush waited for the refusal");
    //  Read after the flush: the handler has returned by then.
    s_check (atomic_load (&handler->terminated) == 1,
             "the handler terminated its own run before answering");
    s_check (shf_worker_failures (worker) == 1,
             "shf_worker_failures == 1 (the late result was refused)");
    s_check (strcmp (shf_worker_errcode (worker), "closed") == 0,
             "shf_worker_errcode == \"closed\"");
    printf ("#   failures %zu, errcode %s, errmsg %s\n",
            shf_worker_failures (worker), shf_worker_errcode (worker),
            shf_worker_errmsg (worker));
    s_check (s_count_events (client, "th-refuse-1", "ActivityCompleted") == 0,
             "the refused result left no ActivityCompleted");
}

int
main (void)
{
    char dir [] = "/tmp/shf-test-worker-handler-XXXXXX";
    if (!mkdtemp (dir)) {
        perror ("mkdtemp");
        return 1;
    }
    shf_node_config_t config = {.data_dir = dir,
                                .shards = 4,
                                .listen = "tcp://127.0.0.1:0",
                                .durable = true};
    shf_node_t *node = NULL;
    shf_client_t *client = NULL;
    shf_worker_t *worker = NULL;
    s_handler_t handler = {.main_thread = pthread_self ()};
    atomic_init (&handler.off_main, true);
    if (shf_node_open (&node, &config) != SHF_OK) {
        s_check (false, "start the embedded node");
        goto done;
    }
    char endpoint [256];
    snprintf (endpoint, sizeof endpoint, "%s", shf_node_endpoint (node));
    printf ("# node at %s, data in %s\n", endpoint, dir);
    if (shf_client_open (&client, endpoint, NULL) != SHF_OK
        || shf_client_open (&handler.terminator, endpoint, NULL) != SHF_OK) {
        s_check (false, "shf_client_open");
        goto done;
    }
    shf_client_set_timeout (client, 10000);

    //  A worker that was polled takes no handler.
    if (shf_worker_open (&worker, endpoint, "th_unused", 1) != SHF_OK) {
        s_check (false, "shf_worker_open th_unused");
        goto done;
    }
    shf_task_t *task = NULL;
    s_check (shf_worker_poll (worker, 0, &task) == SHF_ETIMEOUT
                 && shf_worker_set_handler (worker, s_handler, &handler)
                        == SHF_EINVAL,
             "set_handler after a poll == SHF_EINVAL");
    shf_worker_destroy (&worker);

    if (shf_worker_open (&worker, endpoint, "th", CONCURRENCY) != SHF_OK) {
        s_check (false, "shf_worker_open th");
        goto done;
    }
    s_check (shf_worker_set_handler (worker, s_handler, &handler) == SHF_OK,
             "shf_worker_set_handler == SHF_OK");
    s_check (shf_worker_poll (worker, 0, &task) == SHF_EINVAL && task == NULL,
             "shf_worker_poll after set_handler == SHF_EINVAL");

    s_test_echo (client, worker, &handler);
    s_test_failures (client, worker, &handler);

done:
    shf_worker_destroy (&worker);
    shf_client_destroy (&handler.terminator);
    shf_client_destroy (&client);
    shf_node_destroy (&node);
    if (s_rm_tree (dir) != 0)
        s_check (false, "remove the temp dir");
    printf ("%d checks, %d failed\n", s_checks, s_failed);
    return s_failed ? 1 : 0;
}
