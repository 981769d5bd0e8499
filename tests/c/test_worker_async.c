/*  test_worker_async.c - end to end: the SDK's results without waiting.

    Starts an embedded durable node (router/shf_node.h) on 127.0.0.1 with
    a port the OS picks, in a fresh temp dir, and drives it through the
    public SDK only: shf_worker_complete_async / _fail_async / _pending /
    _failures / _flush.

    - echo: 200 runs of a one-step and a two-step definition, answered by
      one worker (concurrency 32) in its own thread with complete_async
      only; every run completes with the output its steps computed, the
      worker's flush leaves nothing pending and nothing refused, and each
      history has exactly one ActivityCompleted per step.
    - decline: fail_async on a step with max_attempts 1 fails the run
      with the reported type and message.
    - refused: a result for a terminated run (the node answers "closed")
      and for a run replaced by a new run of the same ID ("not_found")
      returns SHF_OK at once, and is counted by shf_worker_failures once
      flushed, its code in shf_worker_errcode.

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

//  ---------------------------------------------------------------------
//  The echo worker: its own thread and shf_worker_t; answers every task
//  with {"n": input.n + 1} through complete_async only.

typedef struct {
    const char *endpoint;
    const char *queue;
    atomic_bool stop;
    atomic_bool opened;
    atomic_long tasks;
    atomic_long report_errors;  //  complete_async that did not return OK
    atomic_long bad_inputs;
    //  after the stop, read by the main thread once joined
    size_t most_pending;  //  reports in flight at once, at most
    shf_err_t flush_rc;
    size_t pending;
    size_t failures;
    char errmsg [256];
} s_echo_t;

static void *
s_echo_thread (void *arg)
{
    s_echo_t *echo = arg;
    shf_worker_t *worker = NULL;
    if (shf_worker_open (&worker, echo->endpoint, echo->queue, CONCURRENCY)
        != SHF_OK)
        return NULL;
    atomic_store (&echo->opened, true);
    while (!atomic_load (&echo->stop)) {
        shf_task_t *task = NULL;
        if (shf_worker_poll (worker, 100, &task) != SHF_OK)
            continue;
        atomic_fetch_add (&echo->tasks, 1);
        json_t *input = json_loads (shf_task_input (task), 0, NULL);
        json_t *n = json_object_get (input, "n");
        if (!json_is_integer (n))
            atomic_fetch_add (&echo->bad_inputs, 1);
        char output [64];
        snprintf (output, sizeof output, "{\"n\": %lld}",
                  (long long) json_integer_value (n) + 1);
        json_decref (input);
        if (shf_worker_complete_async (worker, &task, output) != SHF_OK
            || task != NULL)
            atomic_fetch_add (&echo->report_errors, 1);
        size_t pending = shf_worker_pending (worker);
        if (pending > echo->most_pending)
            echo->most_pending = pending;
    }
    echo->flush_rc = shf_worker_flush (worker, 10000);
    echo->pending = shf_worker_pending (worker);
    echo->failures = shf_worker_failures (worker);
    snprintf (echo->errmsg, sizeof echo->errmsg, "%s: %s",
              shf_worker_errcode (worker), shf_worker_errmsg (worker));
    shf_worker_destroy (&worker);
    return NULL;
}

#define DEF_ONE                                                                \
    "{\"name\": \"tw_one\", \"version\": 1, \"queue\": \"tw_echo\","           \
    " \"steps\": [{\"id\": \"a\", \"activity\": \"echo\","                     \
    " \"input\": {\"n\": \"${input.n}\"}}]}"

#define DEF_TWO                                                                \
    "{\"name\": \"tw_two\", \"version\": 1, \"queue\": \"tw_echo\","           \
    " \"steps\": [{\"id\": \"a\", \"activity\": \"echo\","                     \
    " \"input\": {\"n\": \"${input.n}\"}},"                                    \
    " {\"id\": \"b\", \"activity\": \"echo\","                                 \
    " \"input\": {\"n\": \"${steps.a.output.n}\"}}]}"


static void
s_test_echo (shf_client_t *client, const char *endpoint)
{
    printf ("# echo: %d runs, one worker of concurrency %d, complete_async\n",
            RUNS, CONCURRENCY);
    s_check (s_register (client, DEF_ONE) && s_register (client, DEF_TWO),
             "register tw_one (1 step) and tw_two (2 sequential steps)");
    s_echo_t echo = {.endpoint = endpoint, .queue = "tw_echo"};
    pthread_t tid;
    bool thread_ok = pthread_create (&tid, NULL, s_echo_thread, &echo) == 0;
    s_check (thread_ok, "worker thread started");
    if (!thread_ok)
        return;
    //  The first 3/4 started at once, the rest started and awaited
    s_check_echoes (client, "tw", RUNS * 3 / 4, s_now_ms () + ECHO_DEADLINE_MS);

    atomic_store (&echo.stop, true);
    pthread_join (tid, NULL);
    s_check (atomic_load (&echo.opened), "shf_worker_open in the thread");
    long tasks = atomic_load (&echo.tasks);
    s_check (tasks == RUNS / 2 * 3,
             "the worker took one task per step (300) and no more");
    if (tasks != RUNS / 2 * 3)
        fprintf (stderr, "tasks taken: %ld\n", tasks);
    s_check (atomic_load (&echo.bad_inputs) == 0,
             "every task input had an integer n");
    s_check (atomic_load (&echo.report_errors) == 0,
             "every shf_worker_complete_async returned SHF_OK and nulled "
             "the task");
    printf ("#   at most %zu results in flight at once\n", echo.most_pending);
    s_check (echo.flush_rc == SHF_OK, "shf_worker_flush (10000) == SHF_OK");
    s_check (echo.pending == 0, "shf_worker_pending == 0 after the flush");
    s_check (echo.failures == 0, "shf_worker_failures == 0 after the flush");
    if (echo.flush_rc != SHF_OK || echo.pending || echo.failures)
        fprintf (stderr, "worker: pending %zu failures %zu last error %s\n",
                 echo.pending, echo.failures, echo.errmsg);
}

//  ---------------------------------------------------------------------
//  fail_async

#define DEF_DECLINE                                                            \
    "{\"name\": \"tw_decline\", \"version\": 1, \"queue\": \"tw_decline\","    \
    " \"steps\": [{\"id\": \"charge\", \"activity\": \"charge\","              \
    " \"retry\": {\"max_attempts\": 1}}]}"

static void
s_test_decline (shf_client_t *client, const char *endpoint)
{
    printf ("# decline: fail_async on a step without retries\n");
    s_check (s_register (client, DEF_DECLINE),
             "register tw_decline (retry max_attempts 1)");
    shf_worker_t *worker = NULL;
    if (shf_worker_open (&worker, endpoint, "tw_decline", 4) != SHF_OK) {
        s_check (false, "shf_worker_open tw_decline");
        return;
    }
    json_t *body = NULL;
    s_check (shf_client_start (client, "tw_decline", 0, "tw-decline-1", NULL,
                               NULL, &body)
                 == SHF_OK,
             "start tw-decline-1");
    json_decref (body);
    shf_task_t *task = NULL;
    bool got = shf_worker_poll (worker, 10000, &task) == SHF_OK;
    s_check (got && strcmp (shf_task_workflow_id (task), "tw-decline-1") == 0
                 && shf_task_attempt (task) == 1,
             "its task (attempt 1) reached the worker");
    if (got)
        s_check (shf_worker_fail_async (worker, &task, "Declined", "no")
                         == SHF_OK
                     && task == NULL,
                 "shf_worker_fail_async (Declined, no) == SHF_OK");
    json_t *outcome = s_outcome (client, "tw-decline-1", s_now_ms () + 30000);
    json_t *failure = json_object_get (outcome, "failure");
    s_check (outcome && strcmp (s_str (outcome, "status"), "failed") == 0,
             "the run failed");
    s_check (strcmp (s_str (failure, "type"), "Declined") == 0
                 && strcmp (s_str (failure, "message"), "no") == 0
                 && strcmp (s_str (failure, "step"), "charge") == 0,
             "its failure is {type Declined, message no, step charge}");
    if (outcome) {
        char *text = json_dumps (outcome, JSON_COMPACT);
        printf ("#   outcome %s\n", text);
        free (text);
    }
    json_decref (outcome);
    s_check (
        s_count_events (client, "tw-decline-1", "ActivityFailed") == 1
            && s_count_events (client, "tw-decline-1", "ActivityCompleted") == 0
            && s_count_events (client, "tw-decline-1", "WorkflowFailed") == 1,
        "history: one ActivityFailed, no ActivityCompleted, "
        "WorkflowFailed");
    s_check (shf_worker_flush (worker, 10000) == SHF_OK
                 && shf_worker_pending (worker) == 0
                 && shf_worker_failures (worker) == 0,
             "flush OK, pending 0, failures 0 (the node took the failure)");
    shf_worker_destroy (&worker);
}

//  ---------------------------------------------------------------------
//  Results the node refuses

#define DEF_REFUSE                                                             \
    "{\"name\": \"tw_refuse\", \"version\": 1, \"queue\": \"tw_refuse\","      \
    " \"steps\": [{\"id\": \"a\", \"activity\": \"slow\"}]}"

//  Starts wf_id and takes its task (the caller's), NULL on failure.
static shf_task_t *
s_start_and_take (shf_client_t *client, shf_worker_t *worker, const char *wf_id)
{
    json_t *body = NULL;
    shf_err_t rc =
        shf_client_start (client, "tw_refuse", 0, wf_id, NULL, NULL, &body);
    json_decref (body);
    if (rc != SHF_OK) {
        fprintf (stderr, "start %s: %s\n", wf_id, shf_client_errmsg (client));
        return NULL;
    }
    shf_task_t *task = NULL;
    if (shf_worker_poll (worker, 10000, &task) != SHF_OK)
        return NULL;
    if (strcmp (shf_task_workflow_id (task), wf_id) != 0)
        shf_task_destroy (&task);
    return task;
}

//  Reports task (complete_async), checks it returned SHF_OK at once,
//  flushes, and checks failures became `failures` with code `code`.
static void
s_refused (shf_worker_t *worker, shf_task_t **task_p, size_t failures,
           const char *code)
{
    char what [160];
    int64_t t0 = s_now_ms ();
    shf_err_t rc = shf_worker_complete_async (worker, task_p, "{\"late\":1}");
    int64_t took = s_now_ms () - t0;
    printf ("#   complete_async returned in %lld ms\n", (long long) took);
    s_check (rc == SHF_OK && *task_p == NULL,
             "shf_worker_complete_async == SHF_OK, task nulled");
    s_check (took < 1000, "it returned at once (under 1 s)");
    s_check (shf_worker_flush (worker, 10000) == SHF_OK,
             "shf_worker_flush (10000) == SHF_OK");
    s_check (shf_worker_pending (worker) == 0, "shf_worker_pending == 0");
    size_t got = shf_worker_failures (worker);
    snprintf (what, sizeof what, "shf_worker_failures == %zu", failures);
    s_check (got == failures, what);
    printf ("#   failures %zu, errcode %s, errmsg %s\n", got,
            shf_worker_errcode (worker), shf_worker_errmsg (worker));
    snprintf (what, sizeof what, "shf_worker_errcode == \"%s\"", code);
    s_check (strcmp (shf_worker_errcode (worker), code) == 0, what);
}

static void
s_test_refused (shf_client_t *client, const char *endpoint)
{
    printf ("# refused: results for runs that are closed or gone\n");
    s_check (s_register (client, DEF_REFUSE), "register tw_refuse");
    shf_worker_t *worker = NULL;
    if (shf_worker_open (&worker, endpoint, "tw_refuse", 4) != SHF_OK) {
        s_check (false, "shf_worker_open tw_refuse");
        return;
    }

    //  A terminated run: its state is kept, closed, and the node refuses
    //  the late result with "closed" (SPEC: a report after cancel or
    //  terminate changes nothing).
    shf_task_t *task = s_start_and_take (client, worker, "tw-refuse-1");
    s_check (task != NULL, "tw-refuse-1 started, its task taken, unanswered");
    s_check (shf_client_terminate (client, "tw-refuse-1", "test", NULL)
                 == SHF_OK,
             "shf_client_terminate tw-refuse-1");
    json_t *outcome = s_outcome (client, "tw-refuse-1", s_now_ms () + 10000);
    s_check (outcome && strcmp (s_str (outcome, "status"), "terminated") == 0,
             "tw-refuse-1 is terminated");
    json_decref (outcome);
    if (task)
        s_refused (worker, &task, 1, "closed");
    s_check (s_count_events (client, "tw-refuse-1", "ActivityCompleted") == 0,
             "the refused result left no ActivityCompleted");

    //  A run replaced by a new run of the same ID: the task's run is gone
    //  and the node answers "not_found".
    task = s_start_and_take (client, worker, "tw-refuse-2");
    s_check (task != NULL, "tw-refuse-2 started, its task taken, unanswered");
    char old_run [128] = "";
    if (task)
        snprintf (old_run, sizeof old_run, "%s", shf_task_run_id (task));
    s_check (shf_client_terminate (client, "tw-refuse-2", "test", NULL)
                 == SHF_OK,
             "shf_client_terminate tw-refuse-2");
    shf_task_t *fresh = s_start_and_take (client, worker, "tw-refuse-2");
    s_check (fresh && strcmp (shf_task_run_id (fresh), old_run) != 0,
             "a new run of tw-refuse-2 started, its task taken");
    //  The old task's result (refused) and the new run's (accepted) go
    //  together: the refusal is counted and its error is still readable
    //  after the accepted answer.
    if (task && fresh) {
        s_check (
            shf_worker_complete_async (worker, &task, "{\"late\":1}") == SHF_OK
                && shf_worker_complete_async (worker, &fresh, "{\"ok\":true}")
                       == SHF_OK,
            "complete_async of the old run's task, then the new one's");
        s_check (shf_worker_flush (worker, 10000) == SHF_OK
                     && shf_worker_pending (worker) == 0,
                 "flushed, nothing pending");
        s_check (shf_worker_failures (worker) == 2,
                 "shf_worker_failures == 2 (the old run's result)");
        s_check (strcmp (shf_worker_errcode (worker), "not_found") == 0,
                 "shf_worker_errcode == \"not_found\", kept after the "
                 "accepted answer");
    }
    outcome = s_outcome (client, "tw-refuse-2", s_now_ms () + 10000);
    s_check (outcome && strcmp (s_str (outcome, "status"), "completed") == 0,
             "the new run of tw-refuse-2 completed");
    json_decref (outcome);

    //  A blocking complete is answered and not counted.
    task = s_start_and_take (client, worker, "tw-refuse-3");
    s_check (task != NULL, "tw-refuse-3 started, its task taken");
    if (task)
        s_check (shf_worker_complete (worker, &task, "{\"ok\":true}") == SHF_OK,
                 "shf_worker_complete (blocking) == SHF_OK");
    outcome = s_outcome (client, "tw-refuse-3", s_now_ms () + 10000);
    s_check (outcome && strcmp (s_str (outcome, "status"), "completed") == 0,
             "tw-refuse-3 completed");
    json_decref (outcome);
    s_check (shf_worker_failures (worker) == 2,
             "shf_worker_failures still 2 (blocking reports not counted)");
    shf_worker_destroy (&worker);
}

int
main (void)
{
    char dir [] = "/tmp/shf-test-worker-async-XXXXXX";
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
    if (shf_node_open (&node, &config) != SHF_OK) {
        s_check (false, "start the embedded node");
        goto done;
    }
    char endpoint [256];
    snprintf (endpoint, sizeof endpoint, "%s", shf_node_endpoint (node));
    printf ("# node at %s, data in %s\n", endpoint, dir);
    if (shf_client_open (&client, endpoint, NULL) != SHF_OK) {
        s_check (false, "shf_client_open");
        goto done;
    }
    shf_client_set_timeout (client, 10000);

    s_test_echo (client, endpoint);
    s_test_decline (client, endpoint);
    s_test_refused (client, endpoint);

done:
    shf_client_destroy (&client);
    shf_node_destroy (&node);
    if (s_rm_tree (dir) != 0)
        s_check (false, "remove the temp dir");
    printf ("%d checks, %d failed\n", s_checks, s_failed);
    return s_failed ? 1 : 0;
}
