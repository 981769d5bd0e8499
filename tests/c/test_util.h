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

#endif
