/*  bench_w3_latency.c - W3 latency: one workflow of three sequential
    trivial activities, started and awaited by a client, N times in a row
    over TCP loopback, fsync on.

    Starts what it needs itself: an embedded durable node in a temp dir
    and an in-process worker (the C SDK) whose tasks run in a handler on
    its own thread, so the worker side costs little. Prints one key=value
    line: p50/p90/p99 in milliseconds, and the floor of a W3 run, 4
    commits + 3 round trips (../shared/peers/README.md), measured on the
    spot in rounds between the runs with an LMDB commit of one put (the
    default, synchronous flags) and a ZeroMQ DEALER->ROUTER round trip
    over TCP loopback, two ways:
      floor_ms  4 x the p50 commit + 3 x the p50 round trip, each sampled
                back to back: the cores stay hot, the cheapest reading;
      chain_ms  the p50 of the chain itself, commit, round trip, commit,
                round trip, commit, round trip, commit, timed as a whole:
                what the sequence costs when one step waits for the one
                before, as a W3 run's steps do (on this VM an idle vCPU
                halts, and waking it is part of every hand-over).
    ratio = p50 / floor_ms, ratio_chain = p50 / chain_ms. The machine's
    fsync latency drifts within minutes, so a floor measured in the same
    seconds is the fair yardstick.

    bench_w3_latency [COUNT (default 200)]
*/
#include "bench_util.h"
#include <czmq.h>
#include <lmdb.h>

static const char *s_def = "{\"name\":\"w3\",\"queue\":\"bench\",\"steps\":["
                           "{\"id\":\"reserve\",\"activity\":\"reserve\"},"
                           "{\"id\":\"charge\",\"activity\":\"charge\"},"
                           "{\"id\":\"ship\",\"activity\":\"ship\"}]}";

#define S_FLOOR_SAMPLES 200
//  The W3 runs and the floor's samples alternate in this many rounds, so
//  both are measured in the same seconds: the host's speed swings within
//  a minute, and a floor taken before the runs can be off by 2x.
#define S_ROUNDS 10

//  The median of n unsorted values (sorted in place).
static double
s_median (double *v, int n)
{
    qsort (v, (size_t) n, sizeof (double), bench_cmp_double);
    return bench_pct (v, n, 50);
}

//  Echoes every message back to its sender until $TERM.
static void
s_echo (zsock_t *pipe, void *endpoint)
{
    zsock_t *router = zsock_new_router ("tcp://127.0.0.1:*");
    char *bound = router ? zsock_last_endpoint (router) : NULL;
    snprintf (endpoint, 256, "%s", bound ? bound : "");
    zstr_free (&bound);
    zsock_signal (pipe, 0);
    zpoller_t *poller = zpoller_new (pipe, router, NULL);
    while (router) {
        void *which = zpoller_wait (poller, -1);
        if (which != router)
            break;
        zmsg_t *msg = zmsg_recv (router);
        zmsg_send (&msg, router);
    }
    zpoller_destroy (&poller);
    zsock_destroy (&router);
}

//  What the floor is measured with: an LMDB environment of its own under
//  the run's dir (a synchronous commit of one 100-byte put, random key,
//  default flags) and a DEALER -> ROUTER -> DEALER echo on loopback (64
//  bytes), with the samples so far.
typedef struct {
    MDB_env *env;
    zactor_t *echo;
    zsock_t *dealer;
    double commit_ms [S_FLOOR_SAMPLES];
    double rtt_ms [S_FLOOR_SAMPLES];
    double chain_ms [S_FLOOR_SAMPLES];
    int commits, rtts, chains;
} s_floor_t;

static bool
s_floor_open (s_floor_t *f, const char *dir)
{
    memset (f, 0, sizeof *f);
    char path [300];
    snprintf (path, sizeof path, "%s/floor", dir);
    if (zsys_dir_create ("%s", path) != 0 || mdb_env_create (&f->env)
        || mdb_env_set_mapsize (f->env, 64 << 20)
        || mdb_env_open (f->env, path, 0, 0600))
        return false;
    char endpoint [256] = "";
    f->echo = zactor_new (s_echo, endpoint);
    f->dealer = zsock_new_dealer (endpoint);
    if (!f->dealer)
        return false;
    //  The first round trips include the connection.
    char payload [64] = "";
    for (int i = 0; i < 20; i++)
        if (zmq_send (zsock_resolve (f->dealer), payload, sizeof payload, 0) < 0
            || zmq_recv (zsock_resolve (f->dealer), payload, sizeof payload, 0)
                   < 0)
            return false;
    return true;
}

//  One commit of the floor's kind: one 100-byte put at a random key.
static bool
s_floor_commit (s_floor_t *f, int i)
{
    char value [100];
    memset (value, 'v', sizeof value);
    uint64_t key = (uint64_t) random () * 2654435761u + (uint64_t) i;
    MDB_val k = {sizeof key, &key}, v = {sizeof value, value};
    MDB_txn *txn;
    MDB_dbi dbi;
    if (mdb_txn_begin (f->env, NULL, 0, &txn))
        return false;
    if (mdb_dbi_open (txn, NULL, 0, &dbi) || mdb_put (txn, dbi, &k, &v, 0)) {
        mdb_txn_abort (txn);
        return false;
    }
    return mdb_txn_commit (txn) == 0;
}

//  One 64-byte round trip through the echo.
static bool
s_floor_rtt (s_floor_t *f)
{
    char payload [64];
    memset (payload, 'p', sizeof payload);
    void *dealer = zsock_resolve (f->dealer);
    return zmq_send (dealer, payload, sizeof payload, 0) >= 0
           && zmq_recv (dealer, payload, sizeof payload, 0) >= 0;
}

static double
s_ms_since (int64_t t0)
{
    return (double) (shf_clock_mono_us () - t0) / 1000.0;
}

//  n more samples of each: commits back to back, round trips back to
//  back, then whole chains.
static void
s_floor_sample (s_floor_t *f, int n)
{
    for (int i = 0; i < n && f->commits < S_FLOOR_SAMPLES; i++) {
        int64_t t0 = shf_clock_mono_us ();
        if (!s_floor_commit (f, i))
            break;
        f->commit_ms [f->commits++] = s_ms_since (t0);
    }
    for (int i = 0; i < n && f->rtts < S_FLOOR_SAMPLES; i++) {
        int64_t t0 = shf_clock_mono_us ();
        if (!s_floor_rtt (f))
            break;
        f->rtt_ms [f->rtts++] = s_ms_since (t0);
    }
    for (int i = 0; i < n && f->chains < S_FLOOR_SAMPLES; i++) {
        int64_t t0 = shf_clock_mono_us ();
        bool ok = true;
        for (int step = 0; step < 4 && ok; step++)
            ok = s_floor_commit (f, step) && (step == 3 || s_floor_rtt (f));
        if (!ok)
            break;
        f->chain_ms [f->chains++] = s_ms_since (t0);
    }
}

static void
s_floor_close (s_floor_t *f)
{
    zsock_destroy (&f->dealer);
    zactor_destroy (&f->echo);
    if (f->env)
        mdb_env_close (f->env);
}

int
main (int argc, char **argv)
{
    bench_watchdog ();
    int count = argc > 1 ? atoi (argv [1]) : 200;
    if (count < 1)
        count = 200;
    //  One worker whose tasks run in a handler on its own thread, so a
    //  step costs the engine's work and no hand-over between threads
    //  (SHF_BENCH_POLL=1: a pool thread polls and each result waits for
    //  its commit, as before handlers; the steps are sequential anyway).
    bench_env_t *env = bench_env_start (8, "bench", 1, 16,
                                        BENCH_POOL_INLINE_OR_BLOCKING, s_def);
    if (!env)
        return 1;
    shf_client_t *client = env->client;
    s_floor_t yard;
    if (!s_floor_open (&yard, env->dir)) {
        fprintf (stderr, "cannot measure the floor\n");
        s_floor_close (&yard);
        bench_env_stop (&env);
        return 1;
    }
    json_t *body = NULL;
    double *ms = calloc ((size_t) count, sizeof (double));
    int completed = 0;
    for (int i = 0; i < count; i++) {
        if (i % ((count + S_ROUNDS - 1) / S_ROUNDS) == 0)
            s_floor_sample (&yard, S_FLOOR_SAMPLES / S_ROUNDS);
        int64_t t0 = shf_clock_mono_us ();
        body = NULL;
        //  Start and await in one request (shf_client_execute).
        if (shf_client_execute (client, "w3", 0, NULL, NULL, NULL, 30000, &body)
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
    double commit_ms = s_median (yard.commit_ms, yard.commits);
    double rtt_ms = s_median (yard.rtt_ms, yard.rtts);
    double floor_ms = 4 * commit_ms + 3 * rtt_ms;
    double chain_ms = s_median (yard.chain_ms, yard.chains);
    s_floor_close (&yard);
    qsort (ms, (size_t) completed, sizeof (double), bench_cmp_double);
    double p50 = bench_pct (ms, completed, 50);
    if (completed > 0)
        printf ("workload=w3_latency count=%d completed=%d p50_ms=%.2f "
                "p90_ms=%.2f p99_ms=%.2f commit_p50_ms=%.3f rtt_p50_ms=%.3f "
                "floor_ms=%.2f ratio=%.2f chain_ms=%.2f ratio_chain=%.2f\n",
                count, completed, p50, bench_pct (ms, completed, 90),
                bench_pct (ms, completed, 99), commit_ms, rtt_ms, floor_ms,
                floor_ms > 0 ? p50 / floor_ms : 0, chain_ms,
                chain_ms > 0 ? p50 / chain_ms : 0);
    free (ms);
    bench_env_stop (&env);
    return completed == count ? 0 : 1;
}
