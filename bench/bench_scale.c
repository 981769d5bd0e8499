/*  bench_scale.c - workflows at rest: disk and memory per parked
    workflow, and how fast a node with all of them comes back after
    kill -9. fsync on.

    Runs the node as a child process (`shardflow dev`, the binary beside
    this one unless $SHF_BIN names another) on a free loopback port with a
    fresh data dir, so its memory can be read from /proc/PID/status. The
    benchmark registers a definition whose only step is a 30-day sleep,
    reads the empty node's VmRSS, then starts N workflows in pipelined
    batches (WINDOW wf_start requests in flight on one connection) and
    leaves them parked. Then:

    - disk_bytes_per_wf: du of the data dir (allocated blocks) / N, and
      apparent_bytes_per_wf from file sizes;
    - rss_bytes_per_wf: (VmRSS of the loaded node - VmRSS of the empty
      node) / N; RssAnon (heap) and RssFile (LMDB pages mapped in) are
      reported apart;
    - restart: kill -9 the node, start it again on the same data dir, and
      time until it prints its listening line (restart_listen_ms) and
      until a first request (wf_describe of a parked workflow) succeeds
      (restart_serve_ms, both from the moment of the kill); then a sample
      of 100 parked workflows is described and must still be running.

    bench_scale [N (1000000) [WINDOW (2000) [SHARDS (8)]]]
*/
#define _XOPEN_SOURCE_EXTENDED 1
#include "bench_util.h"
#include <arpa/inet.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *s_def =
    "{\"name\":\"parked\",\"queue\":\"bench\",\"steps\":["
    "{\"id\":\"nap\",\"sleep\":\"30d\"}]}";

typedef struct {
    pid_t pid;
    int out;  //  read end of the child's stdout
} s_child_t;

static char s_bin [1024];

//  A loopback port that was free a moment ago.
static int
s_free_port (void)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd < 0 || bind (fd, (struct sockaddr *) &a, sizeof a) != 0
        || getsockname (fd, (struct sockaddr *) &a, &len) != 0)
        return -1;
    int port = ntohs (a.sin_port);
    close (fd);
    return port;
}

//  Starts `shardflow dev` and waits (up to 60 s) for its listening line.
static int
s_spawn (s_child_t *child, const char *data, const char *log,
         const char *endpoint, int shards)
{
    int fds [2];
    if (pipe (fds) != 0)
        return -1;
    char shards_arg [16];
    snprintf (shards_arg, sizeof shards_arg, "%d", shards);
    pid_t pid = fork ();
    if (pid == 0) {
        dup2 (fds [1], 1);
        int lfd = open (log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (lfd >= 0)
            dup2 (lfd, 2);
        close (fds [0]);
        execl (s_bin, s_bin, "dev", "--data", data, "--listen", endpoint,
               "--shards", shards_arg, (char *) NULL);
        _exit (127);
    }
    close (fds [1]);
    child->pid = pid;
    child->out = fds [0];
    char buf [512];
    size_t have = 0;
    int64_t deadline = shf_clock_mono_us () + 60000000;
    while (shf_clock_mono_us () < deadline) {
        struct pollfd p = {fds [0], POLLIN, 0};
        if (poll (&p, 1, 100) <= 0)
            continue;
        ssize_t n = read (fds [0], buf + have, sizeof buf - 1 - have);
        if (n <= 0)
            return -1;
        have += (size_t) n;
        buf [have] = 0;
        if (strstr (buf, "listening"))
            return 0;
    }
    return -1;
}

static void
s_reap (s_child_t *child, int sig)
{
    kill (child->pid, sig);
    int status;
    waitpid (child->pid, &status, 0);
    close (child->out);
}

//  kB of a field of /proc/PID/status ("VmRSS", "RssAnon", "RssFile").
static long
s_status_kb (pid_t pid, const char *field)
{
    char path [64], line [256];
    snprintf (path, sizeof path, "/proc/%d/status", (int) pid);
    FILE *f = fopen (path, "r");
    if (!f)
        return -1;
    long kb = -1;
    size_t len = strlen (field);
    while (fgets (line, sizeof line, f))
        if (strncmp (line, field, len) == 0 && line [len] == ':')
            kb = atol (line + len + 1);
    fclose (f);
    return kb;
}

static long long s_du_blocks, s_du_size;

static int
s_du_one (const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) path;
    (void) ftw;
    if (flag == FTW_F) {
        s_du_blocks += (long long) st->st_blocks * 512;
        s_du_size += (long long) st->st_size;
    }
    return 0;
}

static int
s_describe (shf_client_t *client, const char *wf_id, char *status, size_t size)
{
    json_t *body = NULL;
    if (shf_client_describe (client, wf_id, &body) != SHF_OK)
        return -1;
    snprintf (status, size, "%s",
              json_string_value (json_object_get (body, "status")));
    json_decref (body);
    return 0;
}

int
main (int argc, char **argv)
{
    bench_watchdog ();
    int count = argc > 1 ? atoi (argv [1]) : 1000000;
    int window = argc > 2 ? atoi (argv [2]) : 2000;
    int shards = argc > 3 ? atoi (argv [3]) : 8;
    if (count < 1 || window < 1 || shards < 1) {
        fprintf (stderr, "usage: bench_scale [N [WINDOW [SHARDS]]]\n");
        return 2;
    }
    if (getenv ("SHF_BIN"))
        snprintf (s_bin, sizeof s_bin, "%s", getenv ("SHF_BIN"));
    else {
        char self [1024];
        snprintf (self, sizeof self, "%s", argv [0]);
        snprintf (s_bin, sizeof s_bin, "%s/shardflow", dirname (self));
    }
    char base [] = "/tmp/shf-scale-XXXXXX";
    if (!mkdtemp (base))
        return 1;
    char data [128], log [128], endpoint [64];
    snprintf (data, sizeof data, "%s/data", base);
    snprintf (log, sizeof log, "%s/node.log", base);
    snprintf (endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", s_free_port ());
    s_child_t node;
    if (s_spawn (&node, data, log, endpoint, shards) != 0) {
        fprintf (stderr, "cannot start %s (log %s)\n", s_bin, log);
        return 1;
    }
    shf_client_t *client = bench_client (endpoint, s_def);
    if (!client)
        return 1;
    usleep (500000);
    long rss_empty = s_status_kb (node.pid, "VmRSS");
    long anon_empty = s_status_kb (node.pid, "RssAnon");
    long file_empty = s_status_kb (node.pid, "RssFile");

    bench_run_t run = {.client = client,
                       .label = "scale",
                       .name = "parked",
                       .id_prefix = "sc",
                       .count = count,
                       .window = window,
                       .await = false,
                       .deadline_s = 600};
    int rc = bench_run (&run);
    double start_s = bench_secs (run.t_end_us - run.t0_us);
    shf_client_destroy (&client);
    usleep (2000000);  //  let the node settle (last commits, frees)
    long rss = s_status_kb (node.pid, "VmRSS");
    long anon = s_status_kb (node.pid, "RssAnon");
    long file = s_status_kb (node.pid, "RssFile");
    s_du_blocks = s_du_size = 0;
    nftw (data, s_du_one, 16, FTW_PHYS);
    fprintf (stderr,
             "progress bench=scale parked=%d rss_kb=%ld du_kb=%lld; "
             "kill -9 and restart\n",
             run.completed, rss, s_du_blocks / 1024);

    //  kill -9, restart, first successful request
    kill (node.pid, SIGKILL);
    int64_t t_kill = shf_clock_mono_us ();
    s_reap (&node, 0);
    if (s_spawn (&node, data, log, endpoint, shards) != 0) {
        fprintf (stderr, "cannot restart (log %s)\n", log);
        return 1;
    }
    int64_t t_listen = shf_clock_mono_us ();
    client = bench_client (endpoint, NULL);
    char status [32] = "";
    int64_t t_serve = 0;
    char first [64];
    bench_wf_id (&run, 0, first, sizeof first);
    while (shf_clock_mono_us () - t_kill < 60000000) {
        if (s_describe (client, first, status, sizeof status) == 0) {
            t_serve = shf_clock_mono_us ();
            break;
        }
    }
    int sampled = 0, running = 0;
    srand (42);
    for (int k = 0; k < 100; k++) {
        char wf_id [64];
        bench_wf_id (&run, rand () % count, wf_id, sizeof wf_id);
        sampled++;
        if (s_describe (client, wf_id, status, sizeof status) == 0
            && strcmp (status, "running") == 0)
            running++;
    }
    long rss_after = s_status_kb (node.pid, "VmRSS");
    shf_client_destroy (&client);
    s_reap (&node, SIGTERM);

    double n = (double) (run.completed > 0 ? run.completed : 1);
    printf ("workload=scale n=%d parked=%d failed=%d start_s=%.1f "
            "starts_per_s=%.0f disk_bytes=%lld disk_bytes_per_wf=%.0f "
            "apparent_bytes_per_wf=%.0f rss_empty_kb=%ld rss_kb=%ld "
            "rss_bytes_per_wf=%.0f anon_bytes_per_wf=%.0f "
            "file_bytes_per_wf=%.0f restart_listen_ms=%.0f "
            "restart_serve_ms=%.0f rss_after_restart_kb=%ld "
            "sample_running=%d/%d\n",
            count, run.completed, run.failed, start_s, run.completed / start_s,
            s_du_blocks, (double) s_du_blocks / n, (double) s_du_size / n,
            rss_empty, rss, (double) (rss - rss_empty) * 1024.0 / n,
            (double) (anon - anon_empty) * 1024.0 / n,
            (double) (file - file_empty) * 1024.0 / n,
            (double) (t_listen - t_kill) / 1000.0,
            t_serve ? (double) (t_serve - t_kill) / 1000.0 : -1.0, rss_after,
            running, sampled);
    fflush (stdout);
    bench_rm_rf (base);
    return rc || !t_serve || running != sampled;
}
