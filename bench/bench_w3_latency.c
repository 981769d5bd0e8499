/*  bench_w3_latency.c - W3 latency: one workflow of three sequential
    trivial activities, started and awaited by a client, N times in a row
    over TCP loopback, fsync on.

    Starts what it needs itself: an embedded durable node in a temp dir
    and an in-process worker thread (the C SDK), so the worker side costs
    little. Prints one key=value line: p50/p90/p99 in milliseconds.

    bench_w3_latency [COUNT (default 200)]
*/
#include "shardflow.h"
#include "shf_clock.h"
#include "shf_node.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *s_def =
    "{\"name\":\"w3\",\"queue\":\"bench\",\"steps\":["
    "{\"id\":\"reserve\",\"activity\":\"reserve\"},"
    "{\"id\":\"charge\",\"activity\":\"charge\"},"
    "{\"id\":\"ship\",\"activity\":\"ship\"}]}";

static atomic_bool s_stop;

static void *
s_worker (void *arg)
{
    shf_worker_t *worker = NULL;
    if (shf_worker_open (&worker, arg, "bench", 16) != SHF_OK) {
        fprintf (stderr, "worker: cannot open\n");
        return NULL;
    }
    while (!atomic_load (&s_stop)) {
        shf_task_t *task = NULL;
        if (shf_worker_poll (worker, 100, &task) != SHF_OK)
            continue;
        if (shf_worker_complete (worker, &task, "{\"ok\":true}") != SHF_OK)
            fprintf (stderr, "worker: complete failed: %s\n",
                     shf_worker_errmsg (worker));
    }
    shf_worker_destroy (&worker);
    return NULL;
}

static int
s_cmp (const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return x < y ? -1 : x > y;
}

int
main (int argc, char **argv)
{
    int count = argc > 1 ? atoi (argv [1]) : 200;
    if (count < 1)
        count = 200;
    char dir [] = "/tmp/shf-bench-XXXXXX";
    if (!mkdtemp (dir))
        return 1;
    shf_node_config_t config = {.data_dir = dir,
                                .shards = 8,
                                .listen = "tcp://127.0.0.1:0",
                                .durable = true};
    shf_node_t *node = NULL;
    if (shf_node_open (&node, &config) != SHF_OK) {
        fprintf (stderr, "cannot start the node\n");
        return 1;
    }
    char endpoint [256];
    snprintf (endpoint, sizeof endpoint, "%s", shf_node_endpoint (node));
    pthread_t thread;
    pthread_create (&thread, NULL, s_worker, endpoint);

    shf_client_t *client = NULL;
    json_t *body = NULL;
    if (shf_client_open (&client, endpoint, NULL) != SHF_OK
        || shf_client_def_register (client, s_def, &body) != SHF_OK) {
        fprintf (stderr, "cannot register the definition\n");
        return 1;
    }
    json_decref (body);
    double *ms = calloc ((size_t) count, sizeof (double));
    int completed = 0;
    for (int i = 0; i < count; i++) {
        int64_t t0 = shf_clock_mono_us ();
        body = NULL;
        //  Start and await in one request (shf_client_execute).
        if (shf_client_execute (client, "w3", 0, NULL, NULL, NULL, 30000,
                                &body)
            != SHF_OK) {
            fprintf (stderr, "execute failed: %s\n",
                     shf_client_errmsg (client));
            break;
        }
        const char *status =
            json_string_value (json_object_get (body, "status"));
        if (status && strcmp (status, "completed") == 0)
            ms [completed++] = (double) (shf_clock_mono_us () - t0) / 1000.0;
        json_decref (body);
    }
    qsort (ms, (size_t) completed, sizeof (double), s_cmp);
    if (completed > 0)
        printf ("workload=w3_latency count=%d completed=%d p50_ms=%.2f "
                "p90_ms=%.2f p99_ms=%.2f\n",
                count, completed, ms [completed / 2],
                ms [(completed * 9) / 10],
                ms [(completed * 99) / 100 < completed
                        ? (completed * 99) / 100
                        : completed - 1]);
    free (ms);
    atomic_store (&s_stop, true);
    pthread_join (thread, NULL);
    shf_client_destroy (&client);
    shf_node_destroy (&node);
    char cmd [300];
    snprintf (cmd, sizeof cmd, "rm -rf %s", dir);
    if (system (cmd) != 0)
        fprintf (stderr, "could not remove %s\n", dir);
    return completed == count ? 0 : 1;
}
