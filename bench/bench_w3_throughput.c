/*  bench_w3_throughput.c - W3 throughput: COUNT workflows of three
    sequential trivial activities with WINDOW of them in flight, fsync on.

    Starts an embedded durable node (8 shards) and WORKERS in-process SDK
    worker threads (concurrency 16 each) that complete every task at once.
    One client connection pipelines: each workflow is one wf_start with
    wait (start and await in one request); as soon as one closes the next
    one starts, so WINDOW workflows are always in flight. Throughput is completed
    workflows over the wall time from the first start sent to the last
    result received.

    State transitions are counted as history events (WorkflowStarted,
    3 x StepScheduled/ActivityStarted/ActivityCompleted, WorkflowCompleted:
    11 per W3 run), read back from every run's history after the clock
    stops (SHF_BENCH_EVENTS=0 skips that read-back and reports events=0:
    scripts/bench_instr.sh counts only the timed work). cpu_ms_per_wf is the CPU time of the whole process (node,
    workers and client together) over the run, per workflow.

    bench_w3_throughput [COUNT (5000) [WINDOW (64) [WORKERS (8) [SHARDS (8)]]]]
*/
#include "bench_util.h"

static const char *s_def = "{\"name\":\"w3\",\"queue\":\"bench\",\"steps\":["
                           "{\"id\":\"reserve\",\"activity\":\"reserve\"},"
                           "{\"id\":\"charge\",\"activity\":\"charge\"},"
                           "{\"id\":\"ship\",\"activity\":\"ship\"}]}";

static void
s_count_events (int i, const json_t *events, void *arg)
{
    (void) i;
    *(long *) arg += (long) json_array_size (events);
}

int
main (int argc, char **argv)
{
    bench_watchdog ();
    int count = argc > 1 ? atoi (argv [1]) : 5000;
    int window = argc > 2 ? atoi (argv [2]) : 64;
    int workers = argc > 3 ? atoi (argv [3]) : 8;
    int shards = argc > 4 ? atoi (argv [4]) : 8;
    if (count < 1 || window < 1 || workers < 1 || shards < 1) {
        fprintf (stderr, "usage: bench_w3_throughput [COUNT [WINDOW "
                         "[WORKERS [SHARDS]]]]\n");
        return 2;
    }
    bench_env_t *env = bench_env_start (shards, "bench", workers, 16,
                                        BENCH_POOL_INLINE, s_def);
    if (!env)
        return 1;
    bench_pool_t *pool = &env->pool;
    shf_client_t *client = env->client;
    pthread_setname_np (pthread_self (), "bench-client");

    bench_run_t run = {.client = client,
                       .label = "w3_throughput",
                       .name = "w3",
                       .id_prefix = "tp",
                       .count = count,
                       .window = window,
                       .await = true,
                       .execute = true};
    double cpu0 = bench_cpu_secs ();
    int rc = bench_run (&run);
    double cpu = bench_cpu_secs () - cpu0;
    double secs = bench_secs (run.t_end_us - run.t0_us);

    long events = 0;
    const char *count_events = getenv ("SHF_BENCH_EVENTS");
    if (!count_events || strcmp (count_events, "0") != 0)
        bench_histories (&run, 256, s_count_events, &events);
    long tasks = 0;
    for (int i = 0; i < pool->threads; i++)
        tasks += atomic_load (&pool->tasks [i]);
    printf ("workload=w3_throughput count=%d window=%d workers=%d shards=%d "
            "completed=%d failed=%d wall_s=%.3f wf_per_s=%.0f "
            "events=%ld transitions_per_s=%.0f tasks=%ld "
            "cpu_ms_per_wf=%.3f\n",
            count, window, workers, shards, run.completed, run.failed, secs,
            run.completed / secs, events, (double) events / secs, tasks,
            run.completed ? cpu * 1000.0 / run.completed : 0.0);
    fflush (stdout);

    bench_env_stop (&env);
    return rc;
}
