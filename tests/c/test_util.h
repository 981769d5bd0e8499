/*  test_util.h - what the C system tests of the worker SDK share: checks
    printed as they run, a monotonic clock, removing a temp tree, and a
    run's outcome, events and definitions through the client. Each test
    is one file, so these are statics.
*/
#ifndef TEST_UTIL_H_INCLUDED
#define TEST_UTIL_H_INCLUDED
#include "shardflow.h"
#include <ftw.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RUNS        200
#define CONCURRENCY 32
//  Bound on the whole echo phase (starts, results, histories).
#define ECHO_DEADLINE_MS 90000

static int s_checks;
static int s_failed;

static void
s_check (bool ok, const char *what)
{
    s_checks++;
    if (!ok)
        s_failed++;
    printf ("%s - %s\n", ok ? "ok" : "FAIL", what);
    fflush (stdout);
}

static int64_t
s_now_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
s_rm_entry (const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) st;
    (void) flag;
    (void) ftw;
    return remove (path);
}

static int
s_rm_tree (const char *dir)
{
    return nftw (dir, s_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static const char *
s_str (const json_t *object, const char *key)
{
    const char *value = json_string_value (json_object_get (object, key));
    return value ? value : "";
}

//  How many events of type the history of wf_id has; -1 if it cannot be
//  read.
static int
s_count_events (shf_client_t *client, const char *wf_id, const char *type)
{
    json_t *body = NULL;
    if (shf_client_history (client, wf_id, &body) != SHF_OK) {
        fprintf (stderr, "history %s: %s\n", wf_id, shf_client_errmsg (client));
        return -1;
    }
    int count = 0;
    size_t i;
    json_t *event;
    json_array_foreach (json_object_get (body, "events"), i, event)
    {
        if (strcmp (s_str (event, "type"), type) == 0)
            count++;
    }
    json_decref (body);
    return count;
}

//  The outcome of wf_id once it closed (the caller's), or NULL when it
//  did not close by deadline_ms (monotonic).
static json_t *
s_outcome (shf_client_t *client, const char *wf_id, int64_t deadline_ms)
{
    while (true) {
        int64_t left = deadline_ms - s_now_ms ();
        if (left <= 0)
            return NULL;
        json_t *body = NULL;
        if (shf_client_result (client, wf_id, true, (int) left, &body)
            != SHF_OK) {
            fprintf (stderr, "result %s: %s\n", wf_id,
                     shf_client_errmsg (client));
            return NULL;
        }
        if (strcmp (s_str (body, "status"), "running") != 0)
            return body;
        json_decref (body);
    }
}

static bool
s_register (shf_client_t *client, const char *doc)
{
    json_t *body = NULL;
    shf_err_t rc = shf_client_def_register (client, doc, &body);
    json_decref (body);
    if (rc != SHF_OK)
        fprintf (stderr, "register: %s\n", shf_client_errmsg (client));
    return rc == SHF_OK;
}

//  Run i uses PREFIX_two when i is odd (2 steps, output n = i + 2), else
//  PREFIX_one (1 step, output n = i + 1).
static int
s_steps_of (int i)
{
    return i % 2 ? 2 : 1;
}

//  The echo runs PREFIX-echo-I: starts those before first_execute at once
//  (so tasks pile up to the worker's concurrency), starts and awaits the
//  others in one request each, then checks that every run closed by the
//  deadline, completed with output n = input.n + its steps, and has one
//  ActivityCompleted per step and no ActivityFailed.
static void
s_check_echoes (shf_client_t *client, const char *prefix, int first_execute,
                int64_t deadline)
{
    int wrong = 0, unclosed = 0, history_errors = 0;
    char wf_id [64], one [32], two [32];
    snprintf (one, sizeof one, "%s_one", prefix);
    snprintf (two, sizeof two, "%s_two", prefix);
    int start_errors = 0;
    for (int i = 0; i < first_execute; i++) {
        snprintf (wf_id, sizeof wf_id, "%s-echo-%d", prefix, i);
        char input [32];
        snprintf (input, sizeof input, "{\"n\": %d}", i);
        json_t *body = NULL;
        if (shf_client_start (client, s_steps_of (i) == 2 ? two : one, 0, wf_id,
                              input, NULL, &body)
            != SHF_OK) {
            if (start_errors++ < 3)
                fprintf (stderr, "start %s: %s\n", wf_id,
                         shf_client_errmsg (client));
        }
        json_decref (body);
    }
    char what [64];
    snprintf (what, sizeof what, "shf_client_start of the first %d runs",
              first_execute);
    s_check (start_errors == 0, what);
    json_t *outcomes [RUNS] = {NULL};
    for (int i = first_execute; i < RUNS; i++) {
        snprintf (wf_id, sizeof wf_id, "%s-echo-%d", prefix, i);
        char input [32];
        snprintf (input, sizeof input, "{\"n\": %d}", i);
        int64_t left = deadline - s_now_ms ();
        json_t *body = NULL;
        if (left > 0
            && shf_client_execute (client, s_steps_of (i) == 2 ? two : one, 0,
                                   wf_id, input, NULL, (int) left, &body)
                   == SHF_OK
            && strcmp (s_str (body, "status"), "running") != 0)
            outcomes [i] = body;
        else {
            json_decref (body);
            outcomes [i] = s_outcome (client, wf_id, deadline);
        }
    }
    for (int i = 0; i < first_execute; i++) {
        snprintf (wf_id, sizeof wf_id, "%s-echo-%d", prefix, i);
        outcomes [i] = s_outcome (client, wf_id, deadline);
    }
    for (int i = 0; i < RUNS; i++) {
        if (!outcomes [i]) {
            unclosed++;
            continue;
        }
        json_t *expected =
            json_pack ("{s:I}", "n", (json_int_t) i + s_steps_of (i));
        bool right =
            strcmp (s_str (outcomes [i], "status"), "completed") == 0
            && json_equal (json_object_get (outcomes [i], "output"), expected);
        if (!right && wrong++ < 3) {
            char *text = json_dumps (outcomes [i], JSON_COMPACT);
            fprintf (stderr, "run %d: %s\n", i, text);
            free (text);
        }
        json_decref (expected);
        json_decref (outcomes [i]);
    }
    s_check (unclosed == 0, "every run closed before the deadline");
    s_check (wrong == 0,
             "every run completed with output n = input.n + its steps");
    int read = 0;
    for (int i = 0; i < RUNS && s_now_ms () < deadline; i++) {
        snprintf (wf_id, sizeof wf_id, "%s-echo-%d", prefix, i);
        int completed = s_count_events (client, wf_id, "ActivityCompleted");
        int failed = s_count_events (client, wf_id, "ActivityFailed");
        if ((completed != s_steps_of (i) || failed != 0)
            && history_errors++ < 3)
            fprintf (stderr,
                     "history of %s: %d ActivityCompleted (want %d), "
                     "%d ActivityFailed\n",
                     wf_id, completed, s_steps_of (i), failed);
        read++;
    }
    s_check (read == RUNS, "every history read before the deadline");
    s_check (history_errors == 0,
             "each history has one ActivityCompleted per step and no "
             "ActivityFailed");
}

#endif
