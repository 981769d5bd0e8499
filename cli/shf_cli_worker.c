/*  shf_cli_worker.c - `shardflow worker`: the generic worker (SPEC.md, "The
    generic worker").

    One loop, one thread: a zmq_poll over the worker's handle (tasks and
    cancellations from the SDK's connection thread, which also sends the
    keepalives and heartbeat batches), a self-pipe (SIGCHLD, SIGINT,
    SIGTERM) and the pipes of every running command. Each task runs `sh -c
    CMD` in a process group of its own, with the input on stdin, stdout
    and stderr captured, and fd 3 as the heartbeat channel: each line is
    new details for the SDK's heartbeat manager, and only those lines
    count for the step's heartbeat timeout (a silent command sends none).
    A heartbeat reply that says the activity was cancelled stops the
    command. The outcome is decided only once the command has exited and
    its pipes are drained (or 200 ms after exit, should a background
    grandchild hold them), and the last heartbeat line is handed over
    before the outcome, which the SDK sends after it, so details written
    just before exit are never overtaken by the result.

    A command that was told to stop (its activity was cancelled, or the
    worker is shutting down) has its output ignored: it is reported as
    failed with type "Canceled" or "WorkerShutdown" (a hand-back, which the
    node reschedules without counting an attempt).

    Children are started with fork + execve: everything the child needs
    (argv, environment) is built before the fork, because the ZeroMQ
    threads make anything but async-signal-safe calls unsafe in between.
*/
#include "shf_cli.h"
#include "shf_log.h"
#include "shf_msg.h"
#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define STDERR_TAIL   8192
#define EXIT_DRAIN_MS 200
#define TICK_MS       100
#define HB_LINE_MAX   (SHF_MSG_MAX_PAYLOAD)

static const char *s_usage =
    "usage: shardflow worker --queue Q --exec CMD [--concurrency N] "
    "[--grace DUR]\n"
    "\n"
    "Run `sh -c CMD` once per activity task of queue Q.\n"
    "  --queue Q          the task queue to poll\n"
    "  --exec CMD         the command; the activity input (JSON) is on "
    "stdin,\n"
    "                     its stdout (JSON, empty means null) is the output\n"
    "  --concurrency N    commands running at once (default 4)\n"
    "  --grace DUR        time given to commands to stop before SIGKILL,\n"
    "                     and to finish when the worker stops (default "
    "10s)\n"
    "\n"
    "Environment of CMD: SHARDFLOW_ACTIVITY, SHARDFLOW_WORKFLOW_ID,\n"
    "SHARDFLOW_RUN_ID, SHARDFLOW_STEP, SHARDFLOW_ATTEMPT, SHARDFLOW_QUEUE,\n"
    "SHARDFLOW_NAMESPACE and SHARDFLOW_HEARTBEAT_DETAILS (details of the "
    "last\n"
    "heartbeat of an earlier attempt, if any).\n"
    "Exit 0 is success; a non-zero exit fails the attempt with the error in\n"
    "stdout as {\"error\":{\"type\",\"message\"}}, else type ExitStatus and "
    "the\n"
    "last line of stderr. Each line written to fd 3 is a heartbeat with\n"
    "those JSON details. SIGTERM or Ctrl-C stops the worker gracefully.\n";

typedef struct {
    char *data;
    size_t size;
    size_t cap;
    bool overflow;  //  more arrived than the buffer keeps
} buf_t;

typedef struct {
    shf_task_t *task;  //  NULL: the slot is free
    pid_t pid;
    int in_fd, out_fd, err_fd, hb_fd;  //  parent ends, -1 when closed
    char *in_data;
    size_t in_size, in_off;
    buf_t out;        //  stdout, up to the payload limit + 1
    buf_t err;        //  the tail of stderr
    buf_t hb;         //  fd 3 text not yet split into lines
    char *hb_latest;  //  newest heartbeat line not yet sent
    bool exited;
    int status;  //  from waitpid
    int64_t exited_ms;
    const char *stop_type;  //  told to stop: "Canceled" / "WorkerShutdown"
    int64_t term_ms;        //  when SIGTERM went to the group, 0 if not
    bool killed;
} job_t;

typedef struct {
    shf_cli_t *cli;
    shf_worker_t *worker;
    const char *queue;
    const char *command;
    int concurrency;
    int64_t grace_ms;
    job_t *jobs;
    int running;
    size_t report_failures;  //  shf_worker_failures already logged
    bool stopping;
    int64_t stop_deadline;  //  when still-running commands are stopped
} self_t;

static int s_sigpipe [2] = {-1, -1};
static volatile sig_atomic_t s_stop_requests;

static void
s_on_signal (int sig)
{
    int saved = errno;
    if (sig == SIGINT || sig == SIGTERM)
        s_stop_requests++;
    char byte = (char) sig;
    if (write (s_sigpipe [1], &byte, 1) < 0) {
        //  full pipe: a wakeup is pending anyway
    }
    errno = saved;
}

static int64_t
s_now (void)
{
    return zclock_mono ();
}

//  ---------------------------------------------------------------------
//  Buffers

static void
s_buf_append (buf_t *buf, const char *data, size_t size, size_t limit)
{
    if (buf->size + size > limit) {
        buf->overflow = true;
        size = buf->size < limit ? limit - buf->size : 0;
    }
    if (buf->size + size + 1 > buf->cap) {
        size_t cap = buf->cap ? buf->cap : 4096;
        while (cap < buf->size + size + 1)
            cap *= 2;
        buf->data = realloc (buf->data, cap);
        assert (buf->data);
        buf->cap = cap;
    }
    memcpy (buf->data + buf->size, data, size);
    buf->size += size;
    buf->data [buf->size] = 0;
}

//  Keep only the last `keep` bytes.
static void
s_buf_tail (buf_t *buf, size_t keep)
{
    if (buf->size <= keep)
        return;
    memmove (buf->data, buf->data + buf->size - keep, keep);
    buf->size = keep;
    buf->data [keep] = 0;
}

static void
s_buf_free (buf_t *buf)
{
    free (buf->data);
    memset (buf, 0, sizeof *buf);
}

//  ---------------------------------------------------------------------
//  Jobs

static void
s_close (int *fd)
{
    if (*fd >= 0)
        close (*fd);
    *fd = -1;
}

//  Take the complete lines out of the heartbeat buffer; the newest
//  non-empty one becomes hb_latest.
static void
s_hb_lines (job_t *job, bool at_eof)
{
    char *start = job->hb.data;
    if (!start)
        return;
    char *end = job->hb.data + job->hb.size;
    char *nl;
    while ((nl = memchr (start, '\n', (size_t) (end - start)))) {
        size_t len = (size_t) (nl - start);
        if (len > 0 && start [len - 1] == '\r')
            len--;
        if (len > 0) {
            free (job->hb_latest);
            job->hb_latest = strndup (start, len);
        }
        start = nl + 1;
    }
    size_t rest = (size_t) (end - start);
    if (at_eof && rest > 0) {
        free (job->hb_latest);
        job->hb_latest = strndup (start, rest);
        rest = 0;
    }
    memmove (job->hb.data, start, rest);
    job->hb.size = rest;
    job->hb.data [rest] = 0;
    job->hb.overflow = false;
}

//  Read what fd has; close it at EOF. which: 1 stdout, 2 stderr, 3 hb.
static void
s_drain (job_t *job, int which)
{
    int *fd = which == 1   ? &job->out_fd
              : which == 2 ? &job->err_fd
                           : &job->hb_fd;
    char chunk [65536];
    while (*fd >= 0) {
        ssize_t n = read (*fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            s_close (fd);
            if (which == 3)
                s_hb_lines (job, true);
            return;
        }
        if (which == 1)
            s_buf_append (&job->out, chunk, (size_t) n,
                          SHF_MSG_MAX_PAYLOAD + 1);
        else if (which == 2) {
            s_buf_append (&job->err, chunk, (size_t) n, SIZE_MAX / 2);
            if (job->err.size > 4 * STDERR_TAIL)
                s_buf_tail (&job->err, STDERR_TAIL);
        }
        else {
            s_buf_append (&job->hb, chunk, (size_t) n, HB_LINE_MAX);
            s_hb_lines (job, false);
            if (job->hb.overflow)  //  a line too long to be details
                job->hb.size = 0;
        }
    }
}

static void
s_feed (job_t *job)
{
    while (job->in_fd >= 0 && job->in_off < job->in_size) {
        ssize_t n = write (job->in_fd, job->in_data + job->in_off,
                           job->in_size - job->in_off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n < 0) {  //  EPIPE: the command does not read its input
            s_close (&job->in_fd);
            return;
        }
        job->in_off += (size_t) n;
    }
    s_close (&job->in_fd);
}

static char *
s_env_entry (const char *name, const char *value)
{
    char *entry = zsys_sprintf ("%s=%s", name, value);
    assert (entry);
    return entry;
}

//  The child's environment: ours minus stale SHARDFLOW_ task variables,
//  plus the task's. Caller frees each entry and the array.
static char **
s_child_env (self_t *self, shf_task_t *task)
{
    static const char *ours [] = {"SHARDFLOW_ACTIVITY=",
                                  "SHARDFLOW_WORKFLOW_ID=",
                                  "SHARDFLOW_RUN_ID=",
                                  "SHARDFLOW_STEP=",
                                  "SHARDFLOW_ATTEMPT=",
                                  "SHARDFLOW_HEARTBEAT_DETAILS=",
                                  "SHARDFLOW_QUEUE=",
                                  "SHARDFLOW_NAMESPACE=",
                                  NULL};
    size_t count = 0;
    while (environ [count])
        count++;
    char **env = calloc (count + 16, sizeof *env);
    assert (env);
    size_t n = 0;
    for (size_t i = 0; i < count; i++) {
        bool stale = false;
        for (int k = 0; ours [k]; k++)
            if (strncmp (environ [i], ours [k], strlen (ours [k])) == 0)
                stale = true;
        if (!stale) {
            env [n] = strdup (environ [i]);
            assert (env [n]);
            n++;
        }
    }
    char attempt [32];
    snprintf (attempt, sizeof attempt, "%lld",
              (long long) shf_task_attempt (task));
    env [n++] = s_env_entry ("SHARDFLOW_ACTIVITY", shf_task_activity (task));
    env [n++] =
        s_env_entry ("SHARDFLOW_WORKFLOW_ID", shf_task_workflow_id (task));
    env [n++] = s_env_entry ("SHARDFLOW_RUN_ID", shf_task_run_id (task));
    env [n++] = s_env_entry ("SHARDFLOW_STEP", shf_task_step (task));
    env [n++] = s_env_entry ("SHARDFLOW_ATTEMPT", attempt);
    const char *queue = shf_task_queue (task);
    env [n++] = s_env_entry ("SHARDFLOW_QUEUE", *queue ? queue : self->queue);
    env [n++] = s_env_entry ("SHARDFLOW_NAMESPACE", shf_task_namespace (task));
    if (shf_task_heartbeat_details (task))
        env [n++] = s_env_entry ("SHARDFLOW_HEARTBEAT_DETAILS",
                                 shf_task_heartbeat_details (task));
    env [n] = NULL;
    return env;
}

static void
s_free_env (char **env)
{
    for (size_t i = 0; env [i]; i++)
        free (env [i]);
    free (env);
}

static void
s_nonblock (int fd)
{
    int flags = fcntl (fd, F_GETFL);
    fcntl (fd, F_SETFL, flags | O_NONBLOCK);
}

static void s_report (self_t *self, job_t *job, const char *type,
                      const char *message);

//  Start the command for task in a free slot.
static void
s_spawn (self_t *self, shf_task_t *task)
{
    job_t *job = NULL;
    for (int i = 0; i < self->concurrency && !job; i++)
        if (!self->jobs [i].task)
            job = &self->jobs [i];
    assert (job);
    memset (job, 0, sizeof *job);
    job->task = task;
    job->in_fd = job->out_fd = job->err_fd = job->hb_fd = -1;
    self->running++;

    int in [2] = {-1, -1}, out [2] = {-1, -1}, err [2] = {-1, -1},
           hb [2] = {-1, -1};
    if (pipe2 (in, O_CLOEXEC) || pipe2 (out, O_CLOEXEC)
        || pipe2 (err, O_CLOEXEC) || pipe2 (hb, O_CLOEXEC)) {
        char message [128];
        snprintf (message, sizeof message, "cannot create pipes: %s",
                  strerror (errno));
        int fds [] = {in [0],  in [1],  out [0], out [1],
                      err [0], err [1], hb [0],  hb [1]};
        for (int k = 0; k < 8; k++)
            s_close (&fds [k]);
        s_report (self, job, "WorkerShutdown", message);
        return;
    }
    char **env = s_child_env (self, task);
    char *argv [] = {(char *) "/bin/sh", (char *) "-c", (char *) self->command,
                     NULL};
    pid_t pid = fork ();
    if (pid == 0) {
        //  Child: async-signal-safe calls only until execve.
        sigset_t none;
        sigemptyset (&none);
        sigprocmask (SIG_SETMASK, &none, NULL);
        signal (SIGPIPE, SIG_DFL);
        signal (SIGINT, SIG_DFL);
        signal (SIGTERM, SIG_DFL);
        signal (SIGCHLD, SIG_DFL);
        setpgid (0, 0);
        if (dup2 (in [0], 0) < 0 || dup2 (out [1], 1) < 0
            || dup2 (err [1], 2) < 0)
            _exit (127);
        if (hb [1] == 3)
            fcntl (3, F_SETFD, 0);
        else if (dup2 (hb [1], 3) < 0)
            _exit (127);
        execve ("/bin/sh", argv, env);
        _exit (127);
    }
    s_free_env (env);
    close (in [0]);
    close (out [1]);
    close (err [1]);
    close (hb [1]);
    if (pid < 0) {
        char message [128];
        snprintf (message, sizeof message, "cannot fork: %s", strerror (errno));
        close (in [1]);
        close (out [0]);
        close (err [0]);
        close (hb [0]);
        s_report (self, job, "WorkerShutdown", message);
        return;
    }
    setpgid (pid, pid);  //  also here, so a kill cannot precede the child's
    job->pid = pid;
    job->in_fd = in [1];
    job->out_fd = out [0];
    job->err_fd = err [0];
    job->hb_fd = hb [0];
    s_nonblock (job->in_fd);
    s_nonblock (job->out_fd);
    s_nonblock (job->err_fd);
    s_nonblock (job->hb_fd);
    job->in_data = zsys_sprintf ("%s\n", shf_task_input (task));
    assert (job->in_data);
    job->in_size = strlen (job->in_data);
    shf_debug ("worker: started %s (workflow %s, step %s, attempt %lld) as "
               "pid %d",
               shf_task_activity (task), shf_task_workflow_id (task),
               shf_task_step (task), (long long) shf_task_attempt (task),
               (int) pid);
    s_feed (job);
}

//  Tell the command's process group to stop; the outcome will be
//  reported as stop_type.
static void
s_stop_job (self_t *self, job_t *job, const char *stop_type)
{
    (void) self;
    if (!job->stop_type)
        job->stop_type = stop_type;
    if (job->term_ms == 0 && !job->exited) {
        kill (-job->pid, SIGTERM);
        job->term_ms = s_now ();
    }
}

//  Free the slot after reporting.
static void
s_release (self_t *self, job_t *job)
{
    s_close (&job->in_fd);
    s_close (&job->out_fd);
    s_close (&job->err_fd);
    s_close (&job->hb_fd);
    free (job->in_data);
    free (job->hb_latest);
    s_buf_free (&job->out);
    s_buf_free (&job->err);
    s_buf_free (&job->hb);
    shf_task_destroy (&job->task);
    memset (job, 0, sizeof *job);
    job->in_fd = job->out_fd = job->err_fd = job->hb_fd = -1;
    self->running--;
}

static void
s_report (self_t *self, job_t *job, const char *type, const char *message)
{
    char what [400];
    snprintf (what, sizeof what, "%s (workflow %s, step %s, attempt %lld)",
              shf_task_activity (job->task), shf_task_workflow_id (job->task),
              shf_task_step (job->task),
              (long long) shf_task_attempt (job->task));
    bool told_to_stop = job->stop_type != NULL;
    shf_err_t rc =
        shf_worker_fail_async (self->worker, &job->task, type, message);
    if (rc != SHF_OK && told_to_stop)  //  the node expects nothing more
        shf_debug ("worker: reporting stopped %s: %s: %s", what,
                   shf_worker_errcode (self->worker),
                   shf_worker_errmsg (self->worker));
    else if (rc != SHF_OK)
        shf_warn ("worker: reporting failure of %s: %s: %s", what,
                  shf_worker_errcode (self->worker),
                  shf_worker_errmsg (self->worker));
    else
        shf_debug ("worker: %s failed: %s: %s", what, type, message);
    s_release (self, job);
}

//  Hand the newest heartbeat line, if any, to the worker's heartbeat
//  manager (it never waits: the batch goes out from the SDK's thread).
static void
s_heartbeat (self_t *self, job_t *job)
{
    if (!job->hb_latest)
        return;
    char *line = job->hb_latest;
    job->hb_latest = NULL;
    if (job->stop_type) {
        free (line);
        return;
    }
    const char *details = line;
    char *wrapped = NULL;
    json_error_t jerr;
    json_t *value = json_loads (line, JSON_DECODE_ANY, &jerr);
    if (value)
        json_decref (value);
    else {  //  not JSON: the line as a string
        json_t *text = json_string (line);
        if (!text) {
            free (line);
            return;
        }
        wrapped = json_dumps (text, JSON_ENCODE_ANY);
        json_decref (text);
        details = wrapped;
    }
    shf_err_t rc =
        shf_worker_heartbeat (self->worker, job->task, details, NULL);
    if (rc != SHF_OK)
        shf_warn ("worker: heartbeat for workflow %s step %s: %s: %s",
                  shf_task_workflow_id (job->task), shf_task_step (job->task),
                  shf_worker_errcode (self->worker),
                  shf_worker_errmsg (self->worker));
    free (wrapped);
    free (line);
}

//  A heartbeat reply said the activity was cancelled: stop the command.
static void
s_check_canceled (self_t *self, job_t *job)
{
    if (job->stop_type || job->exited
        || !shf_worker_canceled (self->worker, job->task))
        return;
    shf_info ("worker: activity of workflow %s step %s was cancelled; "
              "stopping pid %d",
              shf_task_workflow_id (job->task), shf_task_step (job->task),
              (int) job->pid);
    s_stop_job (self, job, "Canceled");
}

//  The last non-empty line of stderr, or NULL.
static char *
s_last_line (buf_t *err)
{
    if (!err->data)
        return NULL;
    size_t end = err->size;
    while (end > 0
           && (err->data [end - 1] == '\n' || err->data [end - 1] == '\r'
               || err->data [end - 1] == ' '))
        end--;
    if (end == 0)
        return NULL;
    size_t start = end;
    while (start > 0 && err->data [start - 1] != '\n')
        start--;
    return strndup (err->data + start, end - start);
}

//  The command exited and its pipes are drained: report its outcome.
static void
s_finish (self_t *self, job_t *job)
{
    s_hb_lines (job, true);
    s_heartbeat (self, job);
    if (job->stop_type) {
        s_report (self, job, job->stop_type,
                  strcmp (job->stop_type, "Canceled") == 0
                      ? "the activity was cancelled"
                      : "the worker is shutting down");
        return;
    }
    const char *out = job->out.data ? job->out.data : "";
    size_t len = job->out.size;
    while (len > 0 && strchr (" \t\r\n", out [len - 1]))
        len--;
    size_t skip = 0;
    while (skip < len && strchr (" \t\r\n", out [skip]))
        skip++;
    bool success = WIFEXITED (job->status) && WEXITSTATUS (job->status) == 0;
    if (success) {
        if (job->out.overflow) {
            s_report (self, job, "TooLarge", "the output is larger than 2 MiB");
            return;
        }
        char *text = NULL;
        if (len > skip) {
            json_error_t jerr;
            json_t *value =
                json_loadb (out + skip, len - skip,
                            JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
            if (!value) {
                char message [300];
                snprintf (message, sizeof message,
                          "stdout is not JSON: %s (line %d, column %d)",
                          jerr.text, jerr.line, jerr.column);
                s_report (self, job, "BadOutput", message);
                return;
            }
            text = json_dumps (value, JSON_ENCODE_ANY | JSON_COMPACT);
            json_decref (value);
        }
        char what [400];
        snprintf (what, sizeof what, "%s (workflow %s, step %s)",
                  shf_task_activity (job->task),
                  shf_task_workflow_id (job->task), shf_task_step (job->task));
        shf_err_t rc =
            shf_worker_complete_async (self->worker, &job->task, text);
        free (text);
        if (rc != SHF_OK && rc != SHF_ETOOLARGE)
            shf_warn ("worker: reporting completion of %s: %s: %s", what,
                      shf_worker_errcode (self->worker),
                      shf_worker_errmsg (self->worker));
        else
            shf_debug ("worker: %s completed", what);
        s_release (self, job);
        return;
    }
    //  Failure: the error the command printed, else its exit status.
    if (len > skip && !job->out.overflow) {
        json_t *doc = json_loadb (out + skip, len - skip, 0, NULL);
        json_t *error = json_object_get (doc, "error");
        const char *type = json_string_value (json_object_get (error, "type"));
        if (type) {
            const char *message =
                json_string_value (json_object_get (error, "message"));
            s_report (self, job, type, message ? message : "");
            json_decref (doc);
            return;
        }
        json_decref (doc);
    }
    char *line = s_last_line (&job->err);
    char fallback [64];
    if (WIFSIGNALED (job->status))
        snprintf (fallback, sizeof fallback, "killed by signal %d",
                  WTERMSIG (job->status));
    else
        snprintf (fallback, sizeof fallback, "exit status %d",
                  WEXITSTATUS (job->status));
    s_report (self, job, "ExitStatus", line ? line : fallback);
    free (line);
}

static void
s_reap (self_t *self)
{
    while (true) {
        int status = 0;
        pid_t pid = waitpid (-1, &status, WNOHANG);
        if (pid <= 0)
            return;
        for (int i = 0; i < self->concurrency; i++) {
            job_t *job = &self->jobs [i];
            if (job->task && job->pid == pid && !job->exited) {
                job->exited = true;
                job->status = status;
                job->exited_ms = s_now ();
            }
        }
    }
}

//  One pass over every job: heartbeats, outcomes, stop deadlines.
static void
s_tend (self_t *self)
{
    int64_t now = s_now ();
    for (int i = 0; i < self->concurrency; i++) {
        job_t *job = &self->jobs [i];
        if (!job->task)
            continue;
        s_heartbeat (self, job);
        s_check_canceled (self, job);
        if (job->term_ms && !job->killed) {
            //  Told to stop: the grace is for the whole process group, not
            //  only the shell, which may be gone while a command it
            //  started ignores SIGTERM and holds our pipes.
            bool group_alive = kill (-job->pid, 0) == 0;
            if (group_alive && now - job->term_ms >= self->grace_ms) {
                kill (-job->pid, SIGKILL);
                job->killed = true;
            }
            else if (group_alive && job->exited)
                continue;  //  the group still runs: wait for it or the grace
        }
        if (job->exited) {
            s_close (&job->in_fd);
            if (job->out_fd >= 0)
                s_drain (job, 1);
            if (job->err_fd >= 0)
                s_drain (job, 2);
            if (job->hb_fd >= 0)
                s_drain (job, 3);
            bool drained = job->out_fd < 0 && job->err_fd < 0 && job->hb_fd < 0;
            if (drained || now - job->exited_ms >= EXIT_DRAIN_MS)
                s_finish (self, job);
            continue;
        }
        if (self->stopping && now >= self->stop_deadline)
            s_stop_job (self, job, "WorkerShutdown");
    }
}

static void
s_begin_stop (self_t *self)
{
    if (!self->stopping) {
        self->stopping = true;
        self->stop_deadline = s_now () + self->grace_ms;
        shf_worker_stop (self->worker);
        if (self->running > 0)
            shf_info ("worker: stopping; waiting up to %lld ms for %d "
                      "running command(s)",
                      (long long) self->grace_ms, self->running);
    }
    if (s_stop_requests > 1)  //  asked twice: stop the commands now
        self->stop_deadline = s_now ();
}

//  Results go without waiting for the node's answer (a command's slot is
//  free at once); a refused or unanswered one is logged here, later.
static void
s_check_reports (self_t *self)
{
    size_t failures = shf_worker_failures (self->worker);
    if (failures > self->report_failures)
        shf_warn ("worker: %zu result(s) not accepted by the server: %s: %s",
                  failures - self->report_failures,
                  shf_worker_errcode (self->worker),
                  shf_worker_errmsg (self->worker));
    self->report_failures = failures;
}

static void
s_loop (self_t *self)
{
    int max_items = 2 + 4 * self->concurrency;
    zmq_pollitem_t *items = calloc ((size_t) max_items, sizeof *items);
    int *owner = calloc ((size_t) max_items, sizeof *owner);
    assert (items && owner);
    while (true) {
        if (s_stop_requests > 0)
            s_begin_stop (self);
        shf_worker_service (self->worker);
        s_check_reports (self);
        while (!self->stopping && self->running < self->concurrency) {
            shf_task_t *task = NULL;
            if (shf_worker_poll (self->worker, 0, &task) != SHF_OK)
                break;
            s_spawn (self, task);
        }
        s_reap (self);
        s_tend (self);
        if (self->stopping && self->running == 0)
            break;

        int n = 0;
        items [n++] = (zmq_pollitem_t){shf_worker_handle (self->worker), 0,
                                       ZMQ_POLLIN, 0};
        items [n++] = (zmq_pollitem_t){NULL, s_sigpipe [0], ZMQ_POLLIN, 0};
        for (int i = 0; i < self->concurrency; i++) {
            job_t *job = &self->jobs [i];
            if (!job->task)
                continue;
            int fds [4] = {job->in_fd, job->out_fd, job->err_fd, job->hb_fd};
            for (int k = 0; k < 4; k++)
                if (fds [k] >= 0) {
                    owner [n] = i * 4 + k;
                    items [n++] = (zmq_pollitem_t){
                        NULL, fds [k], k == 0 ? ZMQ_POLLOUT : ZMQ_POLLIN, 0};
                }
        }
        if (zmq_poll (items, n, TICK_MS) < 0)
            continue;  //  EINTR: a signal, seen on the next pass
        if (items [1].revents) {
            char drain [64];
            while (read (s_sigpipe [0], drain, sizeof drain) > 0)
                ;
        }
        for (int k = 2; k < n; k++) {
            if (!items [k].revents)
                continue;
            job_t *job = &self->jobs [owner [k] / 4];
            int which = owner [k] % 4;
            if (which == 0)
                s_feed (job);
            else
                s_drain (job, which);
        }
    }
    free (items);
    free (owner);
}

//  Make sure fds 0-2 are open, so no pipe of ours lands on them.
static void
s_std_fds (void)
{
    for (int fd = 0; fd < 3; fd++)
        if (fcntl (fd, F_GETFD) < 0) {
            int null = open ("/dev/null", O_RDWR);
            if (null >= 0 && null != fd) {
                dup2 (null, fd);
                close (null);
            }
        }
}

int
shf_cli_worker (shf_cli_t *cli, int argc, char **argv)
{
    const char *queue = NULL, *command = NULL, *concurrency_arg = NULL,
               *grace_arg = NULL;
    shf_cli_opt_t opts [] = {{"--queue", &queue, NULL},
                             {"--exec", &command, NULL},
                             {"--concurrency", &concurrency_arg, NULL},
                             {"--grace", &grace_arg, NULL},
                             {NULL, NULL, NULL}};
    const char *pos [1];
    int rc = shf_cli_parse (cli, argc, argv, opts, pos, 0, 0, NULL, s_usage);
    if (rc != SHF_CLI_CONTINUE)
        return rc;
    if (!queue || !*queue)
        return shf_cli_usage_error (cli, "worker: --queue is required");
    if (!shf_msg_valid_name (queue))
        return shf_cli_usage_error (cli, "worker: bad queue name \"%s\"",
                                    queue);
    if (!command || !*command)
        return shf_cli_usage_error (cli, "worker: --exec is required");
    int64_t concurrency = 4, grace_ms = 10000;
    if (concurrency_arg
        && !shf_cli_int (concurrency_arg, 1, 10000, &concurrency))
        return shf_cli_usage_error (
            cli, "worker: --concurrency must be an integer from 1 to 10000");
    if (grace_arg && !shf_cli_duration (grace_arg, &grace_ms))
        return shf_cli_usage_error (
            cli, "worker: --grace must be a duration like 10s or 500ms");
    if (!cli->server || !*cli->server)
        cli->server = getenv ("SHARDFLOW_SERVER");
    if (!cli->server || !*cli->server)
        cli->server = SHF_DEFAULT_SERVER;

    s_std_fds ();
    if (pipe2 (s_sigpipe, O_CLOEXEC | O_NONBLOCK) != 0)
        return shf_cli_error (cli, "internal", "cannot create a pipe: %s",
                              strerror (errno));
    struct sigaction action;
    memset (&action, 0, sizeof action);
    action.sa_handler = s_on_signal;
    sigemptyset (&action.sa_mask);
    action.sa_flags = SA_RESTART;
    sigaction (SIGINT, &action, NULL);
    sigaction (SIGTERM, &action, NULL);
    action.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigaction (SIGCHLD, &action, NULL);
    signal (SIGPIPE, SIG_IGN);

    self_t self;
    memset (&self, 0, sizeof self);
    self.cli = cli;
    self.queue = queue;
    self.command = command;
    self.concurrency = (int) concurrency;
    self.grace_ms = grace_ms;
    self.jobs = calloc ((size_t) concurrency, sizeof *self.jobs);
    assert (self.jobs);
    for (int i = 0; i < self.concurrency; i++)
        self.jobs [i].in_fd = self.jobs [i].out_fd = self.jobs [i].err_fd =
            self.jobs [i].hb_fd = -1;
    shf_err_t err =
        shf_worker_open (&self.worker, cli->server, queue, self.concurrency);
    if (err != SHF_OK) {
        free (self.jobs);
        return shf_cli_usage_error (cli, "worker: bad --server \"%s\"",
                                    cli->server);
    }
    shf_info ("worker: queue %s, concurrency %d, server %s", queue,
              self.concurrency, cli->server);
    s_loop (&self);
    //  Give the last results their answers (and a warning if refused).
    if (shf_worker_flush (self.worker, 5000) != SHF_OK)
        shf_warn ("worker: %zu result(s) unanswered at exit",
                  shf_worker_pending (self.worker));
    s_check_reports (&self);
    shf_worker_destroy (&self.worker);
    free (self.jobs);
    shf_info ("worker: stopped");
    return SHF_CLI_OK;
}
