/*  bench_util.h - what the benchmarks share (header only, bench/ only).

    An embedded durable node in a temp dir, a pool of in-process SDK worker
    threads that complete every task at once (counting tasks per thread):
    in an inline handler on each worker's own background thread
    (shf_worker_set_handler), or, with SHF_BENCH_POLL=1 in the environment
    (the A/B of the two) or in BENCH_POOL_BLOCKING mode, by polling on the
    pool's thread and reporting from there,
    and a pipelined driver that keeps W workflows in flight on one client
    connection: wf_start, then wf_result with wait, then the next one; or
    (execute) wf_start with wait, whose answer is the run's outcome (a
    wf_result with wait follows only if it says "running").
    Replies are matched to workflows by request id through a small open-
    addressing table. Progress lines go to stderr every 5 s; results are
    the caller's one key=value line on stdout.

    Every function is static inline so a benchmark may use any subset
    without unused-function warnings.
*/
#ifndef BENCH_UTIL_H_INCLUDED
#define BENCH_UTIL_H_INCLUDED
#include "shardflow.h"
#include "shf_clock.h"
#include "shf_node.h"
#include <assert.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

//  ---------------------------------------------------------------------
//  Small things

static inline double
bench_secs (int64_t us)
{
    return (double) us / 1e6;
}

//  Wall time in ms since the epoch (the node's clock without offsets).
static inline int64_t
bench_wall_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

//  CPU seconds (user + system) used by this process so far.
static inline double
bench_cpu_secs (void)
{
    struct rusage ru;
    getrusage (RUSAGE_SELF, &ru);
    return (double) ru.ru_utime.tv_sec + (double) ru.ru_utime.tv_usec / 1e6
           + (double) ru.ru_stime.tv_sec + (double) ru.ru_stime.tv_usec / 1e6;
}

static inline int
bench_cmp_double (const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return x < y ? -1 : x > y;
}

//  Percentile p (0..100) of n sorted values.
static inline double
bench_pct (const double *sorted, int n, double p)
{
    if (n <= 0)
        return 0;
    int i = (int) ((double) n * p / 100.0);
    return sorted [i < n ? i : n - 1];
}

static void
bench_watchdog_fired (int sig)
{
    (void) sig;
    static const char msg [] = "benchmark: deadline passed; giving up\n";
    ssize_t n = write (2, msg, sizeof msg - 1);
    (void) n;
    _exit (3);
}

//  Ends the process (exit status 3) if the benchmark is still running after
//  its deadline: a node or worker that stops answering must not keep a
//  core busy for good. SHF_BENCH_DEADLINE_S overrides the default (30
//  minutes, well above the one-million-workflow scale run). Call first in
//  main: the node's threads block signals, so the alarm reaches the main
//  thread.
static inline void
bench_watchdog (void)
{
    const char *env = getenv ("SHF_BENCH_DEADLINE_S");
    unsigned seconds = env ? (unsigned) atoi (env) : 1800;
    signal (SIGALRM, bench_watchdog_fired);
    alarm (seconds);
}

static inline void
bench_rm_rf (const char *dir)
{
    char cmd [600];
    snprintf (cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system (cmd) != 0)
        fprintf (stderr, "could not remove %s\n", dir);
}

//  Parse "2026-11-22T16:00:00.123Z" into ms since the epoch (-1: bad).
static inline int64_t
bench_parse_time (const char *text)
{
    struct tm tm;
    memset (&tm, 0, sizeof tm);
    int ms = 0;
    if (!text
        || sscanf (text, "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon,
                   &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms)
               != 7)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t) timegm (&tm) * 1000 + ms;
}

//  ---------------------------------------------------------------------
//  Embedded node

//  Creates a temp dir in dir (at least 32 bytes) and opens a durable node
//  there. Returns NULL on failure.
static inline shf_node_t *
bench_node_start (char *dir, size_t size, int shards)
{
    snprintf (dir, size, "/tmp/shf-bench-XXXXXX");
    if (!mkdtemp (dir))
        return NULL;
    shf_node_config_t config = {.data_dir = dir,
                                .shards = shards,
                                .listen = "tcp://127.0.0.1:0",
                                .durable = true};
    shf_node_t *node = NULL;
    if (shf_node_open (&node, &config) != SHF_OK) {
        fprintf (stderr, "cannot start the node\n");
        return NULL;
    }
    return node;
}

static inline shf_client_t *
bench_client (const char *endpoint, const char *def)
{
    shf_client_t *client = NULL;
    if (shf_client_open (&client, endpoint, NULL) != SHF_OK)
        return NULL;
    shf_client_set_timeout (client, 30000);
    if (def) {
        json_t *body = NULL;
        if (shf_client_def_register (client, def, &body) != SHF_OK) {
            fprintf (stderr, "cannot register the definition: %s\n",
                     shf_client_errmsg (client));
            shf_client_destroy (&client);
            return NULL;
        }
        json_decref (body);
    }
    return client;
}

//  ---------------------------------------------------------------------
//  Worker pool: threads x (one shf_worker_t of concurrency c each)

#define BENCH_MAX_WORKERS 256

//  How the pool's workers run tasks.
typedef enum {
    //  In a handler on the worker's background thread; SHF_BENCH_POLL=1:
    //  polled, and reported with shf_worker_complete_async.
    BENCH_POOL_INLINE = 0,
    //  Polled, and reported with shf_worker_complete (each result waits
    //  for its commit), whatever SHF_BENCH_POLL says: every worker's pace
    //  is then one round trip, which bench_fairness measures the spread by.
    BENCH_POOL_BLOCKING = 1,
    //  In a handler; SHF_BENCH_POLL=1: as BENCH_POOL_BLOCKING.
    BENCH_POOL_INLINE_OR_BLOCKING = 2
} bench_pool_mode_t;

typedef struct {
    char endpoint [256];
    const char *queue;
    int threads;
    int concurrency;
    bool inline_handler;  //  tasks run in a handler
    bool blocking;        //  else: shf_worker_complete instead of _async
    bool joined;          //  stopped already
    atomic_bool stop;
    pthread_mutex_t lock;  //  with wake: the inline pool threads wait for
    pthread_cond_t wake;   //  stop on it
    atomic_long tasks [BENCH_MAX_WORKERS];
    atomic_long errors;
    pthread_t tid [BENCH_MAX_WORKERS];
    int index [BENCH_MAX_WORKERS];
} bench_pool_t;

typedef struct {
    bench_pool_t *pool;
    int index;
} bench_pool_arg_t;

//  The inline handler: counts the task and completes it.
static inline void
bench_pool_handler (shf_task_t *task, void *varg, shf_outcome_t *outcome)
{
    (void) task;
    bench_pool_arg_t *arg = varg;
    outcome->output = strdup ("{\"ok\":true}");
    assert (outcome->output);
    atomic_fetch_add (&arg->pool->tasks [arg->index], 1);
}

static inline void *
bench_pool_thread (void *varg)
{
    //  The handler's arg: on this stack until the worker is destroyed.
    bench_pool_arg_t arg = *(bench_pool_arg_t *) varg;
    free (varg);
    bench_pool_t *pool = arg.pool;
    int me = arg.index;
    //  Named so a profile tells the worker side from the node.
    pthread_setname_np (pthread_self (), "bench-worker");
    shf_worker_t *worker = NULL;
    if (shf_worker_open (&worker, pool->endpoint, pool->queue,
                         pool->concurrency)
        != SHF_OK) {
        fprintf (stderr, "worker: cannot open\n");
        return NULL;
    }
    if (pool->inline_handler) {
        if (shf_worker_set_handler (worker, bench_pool_handler, &arg)
            != SHF_OK) {
            atomic_fetch_add (&pool->errors, 1);
            fprintf (stderr, "worker: cannot set the handler: %s\n",
                     shf_worker_errmsg (worker));
        }
        //  Nothing to do here: the tasks run on the worker's thread.
        pthread_mutex_lock (&pool->lock);
        while (!atomic_load (&pool->stop))
            pthread_cond_wait (&pool->wake, &pool->lock);
        pthread_mutex_unlock (&pool->lock);
    }
    //  Results go without waiting for the node's answer, so one thread
    //  keeps its whole concurrency busy (a blocking complete would hold
    //  the thread for a commit per task).
    while (!pool->inline_handler && !atomic_load (&pool->stop)) {
        shf_task_t *task = NULL;
        if (shf_worker_poll (worker, 100, &task) != SHF_OK)
            continue;
        shf_err_t rc =
            pool->blocking
                ? shf_worker_complete (worker, &task, "{\"ok\":true}")
                : shf_worker_complete_async (worker, &task, "{\"ok\":true}");
        if (rc == SHF_OK)
            atomic_fetch_add (&pool->tasks [me], 1);
        else if (atomic_fetch_add (&pool->errors, 1) < 5)
            fprintf (stderr, "worker: complete failed: %s\n",
                     shf_worker_errmsg (worker));
    }
    if (shf_worker_flush (worker, 5000) != SHF_OK
        || shf_worker_failures (worker) > 0) {
        atomic_fetch_add (&pool->errors, 1);
        fprintf (stderr, "worker: %zu results unanswered, %zu refused: %s\n",
                 shf_worker_pending (worker), shf_worker_failures (worker),
                 shf_worker_errmsg (worker));
    }
    shf_worker_destroy (&worker);
    return NULL;
}

//  mode: see bench_pool_mode_t; SHF_BENCH_POLL=1 turns the inline modes
//  into their polling counterparts.
static inline void
bench_pool_start (bench_pool_t *pool, const char *endpoint, const char *queue,
                  int threads, int concurrency, bench_pool_mode_t mode)
{
    memset (pool, 0, sizeof *pool);
    const char *poll = getenv ("SHF_BENCH_POLL");
    bool polling = poll && strcmp (poll, "1") == 0;
    pool->inline_handler = mode != BENCH_POOL_BLOCKING && !polling;
    pool->blocking = mode != BENCH_POOL_INLINE;
    pthread_mutex_init (&pool->lock, NULL);
    pthread_cond_init (&pool->wake, NULL);
    snprintf (pool->endpoint, sizeof pool->endpoint, "%s", endpoint);
    pool->queue = queue;
    pool->threads = threads < BENCH_MAX_WORKERS ? threads : BENCH_MAX_WORKERS;
    pool->concurrency = concurrency;
    for (int i = 0; i < pool->threads; i++) {
        bench_pool_arg_t *arg = malloc (sizeof *arg);
        assert (arg);
        arg->pool = pool;
        arg->index = i;
        pthread_create (&pool->tid [i], NULL, bench_pool_thread, arg);
    }
}

//  Idempotent: a benchmark may stop the workers before reading counts.
static inline void
bench_pool_stop (bench_pool_t *pool)
{
    if (pool->joined)
        return;
    pthread_mutex_lock (&pool->lock);
    atomic_store (&pool->stop, true);
    pthread_cond_broadcast (&pool->wake);
    pthread_mutex_unlock (&pool->lock);
    for (int i = 0; i < pool->threads; i++)
        pthread_join (pool->tid [i], NULL);
    pthread_cond_destroy (&pool->wake);
    pthread_mutex_destroy (&pool->lock);
    pool->joined = true;
}

//  ---------------------------------------------------------------------
//  What a benchmark starts with: a node in a temp dir, a pool of worker
//  threads on one queue, and a client with a definition registered.

typedef struct {
    char dir [64];
    shf_node_t *node;
    bench_pool_t pool;
    shf_client_t *client;
} bench_env_t;

//  NULL on failure (said on stderr). bench_pool_start's arguments.
static inline bench_env_t *
bench_env_start (int shards, const char *queue, int threads, int concurrency,
                 bench_pool_mode_t mode, const char *def)
{
    bench_env_t *env = calloc (1, sizeof *env);
    assert (env);
    env->node = bench_node_start (env->dir, sizeof env->dir, shards);
    if (!env->node) {
        free (env);
        return NULL;
    }
    const char *endpoint = shf_node_endpoint (env->node);
    bench_pool_start (&env->pool, endpoint, queue, threads, concurrency, mode);
    env->client = bench_client (endpoint, def);
    if (!env->client) {
        bench_pool_stop (&env->pool);
        shf_node_destroy (&env->node);
        bench_rm_rf (env->dir);
        free (env);
        return NULL;
    }
    return env;
}

static inline void
bench_env_stop (bench_env_t **env_p)
{
    bench_env_t *env = *env_p;
    bench_pool_stop (&env->pool);
    shf_client_destroy (&env->client);
    shf_node_destroy (&env->node);
    bench_rm_rf (env->dir);
    free (env);
    *env_p = NULL;
}

//  ---------------------------------------------------------------------
//  Request id -> workflow index (linear probing, backward-shift delete)

typedef struct {
    uint64_t *ids;  //  0: empty
    int32_t *wf;
    size_t mask;
} bench_idmap_t;

static inline void
bench_idmap_init (bench_idmap_t *m, size_t expected)
{
    size_t cap = 1024;
    while (cap < expected * 4)
        cap *= 2;
    m->ids = calloc (cap, sizeof *m->ids);
    m->wf = calloc (cap, sizeof *m->wf);
    assert (m->ids && m->wf);
    m->mask = cap - 1;
}

static inline void
bench_idmap_free (bench_idmap_t *m)
{
    free (m->ids);
    free (m->wf);
}

static inline size_t
bench_idmap_home (const bench_idmap_t *m, uint64_t id)
{
    return (size_t) ((id * 0x9E3779B97F4A7C15ULL) >> 20) & m->mask;
}

static inline void
bench_idmap_put (bench_idmap_t *m, uint64_t id, int32_t wf)
{
    size_t i = bench_idmap_home (m, id);
    while (m->ids [i])
        i = (i + 1) & m->mask;
    m->ids [i] = id;
    m->wf [i] = wf;
}

//  Removes id and gives its value in *wf_p; false when absent.
static inline bool
bench_idmap_take (bench_idmap_t *m, uint64_t id, int32_t *wf_p)
{
    if (id == 0)
        return false;
    size_t i = bench_idmap_home (m, id);
    while (m->ids [i] && m->ids [i] != id)
        i = (i + 1) & m->mask;
    if (!m->ids [i])
        return false;
    *wf_p = m->wf [i];
    //  Backward-shift deletion keeps probe chains intact.
    size_t hole = i;
    size_t j = i;
    while (true) {
        j = (j + 1) & m->mask;
        if (!m->ids [j])
            break;
        size_t home = bench_idmap_home (m, m->ids [j]);
        bool movable =
            hole <= j ? (home <= hole || home > j) : (home <= hole && home > j);
        if (movable) {
            m->ids [hole] = m->ids [j];
            m->wf [hole] = m->wf [j];
            hole = j;
        }
    }
    m->ids [hole] = 0;
    return true;
}

//  ---------------------------------------------------------------------
//  Pipelined driver

typedef struct {
    //  in
    shf_client_t *client;
    const char *label;      //  for progress lines
    const char *name;       //  definition
    const char *id_prefix;  //  workflow ids: see bench_wf_id
    int count;              //  workflows
    int window;             //  in flight at most
    bool await;             //  also wait for each result
    bool execute;           //  with await: start and wait in one request
    int wait_ms;            //  server-side wait of one wf_result
    int deadline_s;         //  give up after this long
    //  out
    int started;
    int completed;  //  status "completed" (or started, when !await)
    int failed;     //  errors and other statuses
    int64_t t0_us, t_started_us, t_end_us;  //  mono: first send, last
                                            //  start reply, last reply
    int64_t *done_wall_ms;  //  optional [count]: wall ms of each result
    char first_error [300];
} bench_run_t;

static inline void
bench_wf_id (const bench_run_t *run, int i, char *buf, size_t size)
{
    //  PREFIX-<hash>-<index>: IDs in no particular order, as applications
    //  name workflows (orders, users, UUIDs). Counting IDs (PREFIX-<index>,
    //  SHF_BENCH_SEQ_IDS=1) sort in start order and flattered schema 1,
    //  whose records were keyed by workflow ID (bench/RESULTS.md, session 8).
    static int sequential = -1;
    if (sequential < 0) {
        const char *seq = getenv ("SHF_BENCH_SEQ_IDS");
        sequential = seq && *seq == '1';
    }
    if (sequential)
        snprintf (buf, size, "%s-%d", run->id_prefix, i);
    else
        snprintf (buf, size, "%s-%08x-%d", run->id_prefix,
                  (unsigned) ((uint32_t) i * 2654435761u), i);
}

static inline bool
bench_send_start (bench_run_t *run, bench_idmap_t *map, int i)
{
    char wf_id [128];
    bench_wf_id (run, i, wf_id, sizeof wf_id);
    json_t *req = json_pack ("{s:s, s:s, s:s}", "op", "wf_start", "name",
                             run->name, "wf_id", wf_id);
    if (run->await && run->execute) {
        //  Start and wait in one request (shf_client_execute's message).
        json_object_set_new (req, "wait", json_true ());
        json_object_set_new (req, "timeout_ms", json_integer (run->wait_ms));
    }
    uint64_t id;
    shf_err_t rc = shf_client_send (run->client, req, &id);
    json_decref (req);
    if (rc != SHF_OK)
        return false;
    bench_idmap_put (map, id, i);
    return true;
}

static inline bool
bench_send_result (bench_run_t *run, bench_idmap_t *map, int i)
{
    char wf_id [128];
    bench_wf_id (run, i, wf_id, sizeof wf_id);
    json_t *req = json_pack ("{s:s, s:s, s:b, s:i}", "op", "wf_result", "wf_id",
                             wf_id, "wait", 1, "timeout_ms", run->wait_ms);
    uint64_t id;
    shf_err_t rc = shf_client_send (run->client, req, &id);
    json_decref (req);
    if (rc != SHF_OK)
        return false;
    //  Negative index: this request is the result of workflow i.
    bench_idmap_put (map, id, -1 - i);
    return true;
}

//  Runs the workload; returns 0 when every workflow completed.
static inline int
bench_run (bench_run_t *run)
{
    bench_idmap_t map;
    bench_idmap_init (&map, (size_t) run->window);
    if (run->wait_ms <= 0)
        run->wait_ms = 30000;
    if (run->deadline_s <= 0)
        run->deadline_s = 300;
    run->started = run->completed = run->failed = 0;
    run->first_error [0] = 0;
    int next = 0, in_flight = 0, closed = 0, start_replies = 0;
    run->t0_us = shf_clock_mono_us ();
    run->t_started_us = run->t0_us;
    int64_t last_progress = run->t0_us;
    int64_t deadline = run->t0_us + (int64_t) run->deadline_s * 1000000;
    bool broken = false;
    while (closed < run->count && !broken) {
        while (next < run->count && in_flight < run->window) {
            if (!bench_send_start (run, &map, next)) {
                snprintf (run->first_error, sizeof run->first_error, "send: %s",
                          shf_client_errmsg (run->client));
                broken = true;
                break;
            }
            next++;
            in_flight++;
        }
        uint64_t id = 0;
        json_t *body = NULL;
        shf_err_t rc = shf_client_recv (run->client, 1000, &id, &body);
        int64_t now = shf_clock_mono_us ();
        if (now - last_progress >= 5000000) {
            fprintf (stderr,
                     "progress bench=%s elapsed_s=%.1f sent=%d started=%d "
                     "closed=%d/%d\n",
                     run->label, bench_secs (now - run->t0_us), next,
                     run->started, closed, run->count);
            last_progress = now;
        }
        if (now > deadline) {
            snprintf (run->first_error, sizeof run->first_error,
                      "deadline of %d s passed", run->deadline_s);
            break;
        }
        if (rc == SHF_ETIMEOUT && id == 0) {
            json_decref (body);
            continue;
        }
        int32_t tag;
        if (!bench_idmap_take (&map, id, &tag)) {
            json_decref (body);
            continue;
        }
        bool is_result = tag < 0;
        int i = is_result ? -1 - tag : tag;
        if (rc != SHF_OK) {
            if (!run->first_error [0])
                snprintf (run->first_error, sizeof run->first_error, "%s: %s",
                          is_result ? "wf_result" : "wf_start",
                          shf_client_errmsg (run->client));
            run->failed++;
            closed++;
            in_flight--;
        }
        else if (!is_result && !(run->await && run->execute)) {
            run->started++;
            if (++start_replies == run->count)
                run->t_started_us = now;
            if (run->await) {
                if (!bench_send_result (run, &map, i))
                    broken = true;
            }
            else {
                run->completed++;
                closed++;
                in_flight--;
            }
        }
        else {
            if (!is_result) {  //  a start that waited: started, and more
                run->started++;
                if (++start_replies == run->count)
                    run->t_started_us = now;
            }
            const char *status =
                json_string_value (json_object_get (body, "status"));
            if (status && strcmp (status, "running") == 0) {
                if (!bench_send_result (run, &map, i))
                    broken = true;
            }
            else {
                if (status && strcmp (status, "completed") == 0)
                    run->completed++;
                else {
                    run->failed++;
                    if (!run->first_error [0])
                        snprintf (run->first_error, sizeof run->first_error,
                                  "workflow %d ended %s", i,
                                  status ? status : "?");
                }
                if (run->done_wall_ms)
                    run->done_wall_ms [i] = bench_wall_ms ();
                closed++;
                in_flight--;
            }
        }
        json_decref (body);
    }
    run->t_end_us = shf_clock_mono_us ();
    bench_idmap_free (&map);
    if (run->first_error [0])
        fprintf (stderr, "bench %s: first error: %s\n", run->label,
                 run->first_error);
    return run->completed == run->count ? 0 : 1;
}

//  Fetches the history of workflows 0..count-1 (window requests in
//  flight) and calls fn (i, events, arg) for each. Returns how many came.
typedef void (bench_history_fn) (int i, const json_t *events, void *arg);

static inline int
bench_histories (bench_run_t *run, int window, bench_history_fn *fn, void *arg)
{
    bench_idmap_t map;
    bench_idmap_init (&map, (size_t) window);
    int next = 0, in_flight = 0, got = 0, closed = 0;
    while (closed < run->count) {
        while (next < run->count && in_flight < window) {
            char wf_id [128];
            bench_wf_id (run, next, wf_id, sizeof wf_id);
            json_t *req =
                json_pack ("{s:s, s:s}", "op", "wf_history", "wf_id", wf_id);
            uint64_t id;
            shf_err_t rc = shf_client_send (run->client, req, &id);
            json_decref (req);
            if (rc != SHF_OK)
                goto done;
            bench_idmap_put (&map, id, next);
            next++;
            in_flight++;
        }
        uint64_t id = 0;
        json_t *body = NULL;
        shf_err_t rc = shf_client_recv (run->client, 10000, &id, &body);
        if (rc == SHF_ETIMEOUT && id == 0)
            break;
        int32_t i;
        if (bench_idmap_take (&map, id, &i)) {
            in_flight--;
            closed++;
            if (rc == SHF_OK) {
                got++;
                fn (i, json_object_get (body, "events"), arg);
            }
        }
        json_decref (body);
    }
done:
    bench_idmap_free (&map);
    return got;
}

#endif
