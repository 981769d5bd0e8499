/*  bench_timers.c - durable timers, fsync on: wall time of many sleeping
    workflows, and how late timers fire.

    Starts an embedded durable node (8 shards) and in-process SDK worker
    threads, then runs two workloads one after the other on one pipelined
    client connection (wf_start, then wf_result with wait):

    1. COUNT (1000) workflows at once, each reserve -> sleep 100ms ->
       charge -> ship (W3 with a durable sleep between steps 1 and 2).
       wall_s: first start sent to last result received.
    2. TIMERS (10000) workflows at once, each a single sleep of DELAY
       (5 s, longer than starting them all takes, so every timer is armed
       at the same time). Lateness of each timer = the TimerFired event's
       time minus the TimerStarted event's "due", both from the run's
       history (wf_history after the run; the node's clock, ms
       resolution): that is when the shard fired it, before its commit.
       observed lateness = when the client got the run's result (wf_result
       with wait; after the commit and the reply) minus "due", same clock.

    With AWAIT 0, part 2 only starts the workflows, waits DELAY + 3 s and
    reads the histories (no wf_result waiters held by the node; observed
    lateness is then not measured): this separates the timer path from
    the cost of thousands of waiting wf_result requests.

    bench_timers [COUNT (1000) [TIMERS (10000) [DELAY_MS (5000) [AWAIT (1)]]]]
*/
#include "bench_util.h"
#include <unistd.h>

static const char *s_def_sleep3 =
    "{\"name\":\"w3sleep\",\"queue\":\"bench\",\"steps\":["
    "{\"id\":\"reserve\",\"activity\":\"reserve\"},"
    "{\"id\":\"cool_off\",\"sleep\":\"100ms\"},"
    "{\"id\":\"charge\",\"activity\":\"charge\"},"
    "{\"id\":\"ship\",\"activity\":\"ship\"}]}";

typedef struct {
    int64_t *due;
    int64_t *fired;
} s_timers_t;

static void
s_timer_events (int i, const json_t *events, void *arg)
{
    s_timers_t *t = arg;
    size_t k;
    const json_t *event;
    json_array_foreach (events, k, event)
    {
        const char *type = json_string_value (json_object_get (event, "type"));
        if (!type)
            continue;
        if (strcmp (type, "TimerStarted") == 0)
            t->due [i] = json_integer_value (json_object_get (event, "due"));
        else if (strcmp (type, "TimerFired") == 0)
            t->fired [i] = bench_parse_time (
                json_string_value (json_object_get (event, "time")));
    }
}

int
main (int argc, char **argv)
{
    bench_watchdog ();
    int count = argc > 1 ? atoi (argv [1]) : 1000;
    int timers = argc > 2 ? atoi (argv [2]) : 10000;
    int delay_ms = argc > 3 ? atoi (argv [3]) : 5000;
    bool await = argc > 4 ? atoi (argv [4]) != 0 : true;
    if (count < 1 || timers < 1 || delay_ms < 1) {
        fprintf (stderr, "usage: bench_timers [COUNT [TIMERS [DELAY_MS]]]\n");
        return 2;
    }
    bench_env_t *env =
        bench_env_start (8, "bench", 8, 16, BENCH_POOL_INLINE, s_def_sleep3);
    if (!env)
        return 1;
    shf_client_t *client = env->client;
    char def_sleep1 [256];
    snprintf (def_sleep1, sizeof def_sleep1,
              "{\"name\":\"sleep1\",\"queue\":\"bench\",\"steps\":["
              "{\"id\":\"nap\",\"sleep\":\"%dms\"}]}",
              delay_ms);
    json_t *body = NULL;
    if (shf_client_def_register (client, def_sleep1, &body) != SHF_OK) {
        fprintf (stderr, "cannot register: %s\n", shf_client_errmsg (client));
        return 1;
    }
    json_decref (body);

    //  1. W3 with a 100 ms sleep, all at once
    bench_run_t run = {.client = client,
                       .label = "timers_w3sleep",
                       .name = "w3sleep",
                       .id_prefix = "ts",
                       .count = count,
                       .window = count,
                       .await = true};
    int rc = bench_run (&run);
    double wall = bench_secs (run.t_end_us - run.t0_us);

    //  2. many concurrent single-sleep workflows
    int64_t *done = calloc ((size_t) timers, sizeof *done);
    bench_run_t many = {.client = client,
                        .label = "timers_many",
                        .name = "sleep1",
                        .id_prefix = "tm",
                        .count = timers,
                        .window = timers,
                        .await = await,
                        .wait_ms = delay_ms + 60000,
                        .done_wall_ms = done};
    rc |= bench_run (&many);
    if (!await)
        usleep ((useconds_t) (delay_ms + 3000) * 1000);
    double start_s = bench_secs (many.t_started_us - many.t0_us);
    double many_wall = bench_secs (many.t_end_us - many.t0_us);

    s_timers_t t = {calloc ((size_t) timers, sizeof (int64_t)),
                    calloc ((size_t) timers, sizeof (int64_t))};
    bench_histories (&many, 256, s_timer_events, &t);
    double *late = calloc ((size_t) timers, sizeof (double));
    double *seen = calloc ((size_t) timers, sizeof (double));
    int n = 0, m = 0;
    for (int i = 0; i < timers; i++) {
        if (t.due [i] > 0 && t.fired [i] > 0)
            late [n++] = (double) (t.fired [i] - t.due [i]);
        if (t.due [i] > 0 && done [i] > 0)
            seen [m++] = (double) (done [i] - t.due [i]);
    }
    qsort (late, (size_t) n, sizeof (double), bench_cmp_double);
    qsort (seen, (size_t) m, sizeof (double), bench_cmp_double);
    printf ("workload=timers count=%d completed=%d sleep_ms=100 wall_s=%.3f "
            "timers=%d timers_completed=%d delay_ms=%d await=%d "
            "start_all_s=%.3f late_n=%d late_p50_ms=%.0f late_p99_ms=%.0f "
            "late_max_ms=%.0f",
            count, run.completed, wall, timers, many.completed, delay_ms, await,
            start_s, n, bench_pct (late, n, 50), bench_pct (late, n, 99),
            n ? late [n - 1] : 0);
    if (await)
        printf (" timers_wall_s=%.3f observed_p50_ms=%.0f "
                "observed_p99_ms=%.0f observed_max_ms=%.0f",
                many_wall, bench_pct (seen, m, 50), bench_pct (seen, m, 99),
                m ? seen [m - 1] : 0);
    printf ("\n");
    fflush (stdout);
    free (late);
    free (seen);
    free (t.due);
    free (t.fired);
    free (done);
    bench_env_stop (&env);
    return rc;
}
