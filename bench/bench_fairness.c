/*  bench_fairness.c - how evenly the matcher spreads tasks over workers.

    Starts an embedded durable node (8 shards) and WORKERS in-process SDK
    worker threads (one shf_worker_t of concurrency 4 each, all polling the
    same queue), then runs COUNT one-activity workflows with WINDOW in
    flight on one pipelined client connection. Reports how many tasks each
    worker completed: min, max, mean and standard deviation (population),
    and max/mean. A perfectly fair matcher gives every worker COUNT /
    WORKERS tasks. Workers use blocking completes, so every worker's pace
    is the same round trip and the spread is the matcher's; with results
    sent without waiting, a worker's share follows how often its thread
    runs (max/mean 1.2-1.4 measured on 2 cores).

    bench_fairness [COUNT (2000) [WORKERS (8) [WINDOW (64)]]]
*/
#include "bench_util.h"

//  Newton's square root (the benchmarks do not link libm).
static double
s_sqrt (double x)
{
    if (x <= 0)
        return 0;
    double r = x > 1 ? x : 1;
    for (int i = 0; i < 100; i++)
        r = 0.5 * (r + x / r);
    return r;
}

static const char *s_def = "{\"name\":\"one\",\"queue\":\"fair\",\"steps\":["
                           "{\"id\":\"only\",\"activity\":\"only\"}]}";

int
main (int argc, char **argv)
{
    bench_watchdog ();
    int count = argc > 1 ? atoi (argv [1]) : 2000;
    int workers = argc > 2 ? atoi (argv [2]) : 8;
    int window = argc > 3 ? atoi (argv [3]) : 64;
    if (count < 1 || workers < 1 || workers > BENCH_MAX_WORKERS || window < 1) {
        fprintf (stderr, "usage: bench_fairness [COUNT [WORKERS [WINDOW]]]\n");
        return 2;
    }
    bench_env_t *env =
        bench_env_start (8, "fair", workers, 4, BENCH_POOL_BLOCKING, s_def);
    if (!env)
        return 1;
    bench_pool_t *pool = &env->pool;
    bench_run_t run = {.client = env->client,
                       .label = "fairness",
                       .name = "one",
                       .id_prefix = "fa",
                       .count = count,
                       .window = window,
                       .await = true};
    int rc = bench_run (&run);
    double secs = bench_secs (run.t_end_us - run.t0_us);
    bench_pool_stop (pool);

    long min = -1, max = 0, total = 0;
    char per [2048] = "";
    size_t used = 0;
    for (int i = 0; i < pool->threads; i++) {
        long n = atomic_load (&pool->tasks [i]);
        total += n;
        min = min < 0 || n < min ? n : min;
        max = n > max ? n : max;
        used += (size_t) snprintf (per + used,
                                   used < sizeof per ? sizeof per - used : 0,
                                   "%s%ld", i ? "," : "", n);
    }
    double mean = (double) total / pool->threads, var = 0;
    for (int i = 0; i < pool->threads; i++) {
        double d = (double) atomic_load (&pool->tasks [i]) - mean;
        var += d * d;
    }
    double stddev = s_sqrt (var / pool->threads);
    printf ("workload=fairness count=%d workers=%d window=%d completed=%d "
            "wall_s=%.3f tasks=%ld min=%ld max=%ld mean=%.1f stddev=%.1f "
            "max_over_mean=%.2f per_worker=%s\n",
            count, workers, window, run.completed, secs, total, min, max, mean,
            stddev, mean > 0 ? (double) max / mean : 0.0, per);
    fflush (stdout);
    bench_env_stop (&env);
    return rc;
}
