/*  shardflow.h - libshardflow, the C SDK of shardflow.

    Two classes. shf_client_t is for applications and tools: register
    definitions, start workflows, signal, cancel, read results, history
    and lists. shf_worker_t is for workers: it keeps a task-queue
    subscription alive (credit and keepalives are handled inside), hands
    out tasks (shf_task_t) and reports their outcome.

    Both talk to one node over a ZeroMQ DEALER socket (SPEC.md, proto/
    shf_msg.h). The endpoint is "tcp://HOST:PORT"; NULL means the
    environment variable SHARDFLOW_SERVER, else tcp://127.0.0.1:7400.
    ZeroMQ reconnects by itself when a node restarts: requests sent while
    it is down are delivered once it is back, or time out.

    Status: every fallible function returns an shf_err_t (shf_err.h):
    SHF_OK, or the error the server answered (SHF_ENOTFOUND,
    SHF_ERUNNING, SHF_ECLOSED, ...), or a local one: SHF_EINVAL for bad
    arguments (e.g. input that is not JSON), SHF_ETIMEOUT when no answer
    came in time. After a failure, shf_client_errcode/errmsg (and the
    worker pair) give the stable code string ("not_found", "unavailable",
    ...) and a sentence saying what went wrong; a code the server sent
    that this SDK does not know is kept verbatim and mapped to
    SHF_EINTERNAL.

    Payloads (workflow input, signal input, activity output, heartbeat
    details) are passed in as JSON text (NULL means JSON null). Reply
    bodies come back as jansson values, *body_p, which the caller owns
    (json_decref); their shapes are the `--json` shapes of SPEC.md.

    Thread rule: an object belongs to one thread at a time; distinct
    objects may be used from distinct threads.
*/
#ifndef SHARDFLOW_H_INCLUDED
#define SHARDFLOW_H_INCLUDED
#include "shf_err.h"
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SHF_EXPORT __attribute__ ((visibility ("default")))

#define SHF_DEFAULT_SERVER    "tcp://127.0.0.1:7400"
#define SHF_DEFAULT_NAMESPACE "default"
//  Default time to wait for a reply.
#define SHF_DEFAULT_TIMEOUT_MS 5000

typedef struct shf_client shf_client_t;
typedef struct shf_worker shf_worker_t;
typedef struct shf_task shf_task_t;

//  ---------------------------------------------------------------------
//  Client

//  Create a client for namespace ns (NULL: "default") on server (NULL:
//  $SHARDFLOW_SERVER or the default). Connecting is asynchronous: a node
//  that is down makes requests time out, not this call fail.
//  Returns SHF_EINVAL for a malformed endpoint or namespace (*self_p stays
//  NULL).
SHF_EXPORT shf_err_t shf_client_open (shf_client_t **self_p, const char *server,
                                      const char *ns) SHF_MUST_CHECK;

//  Close the connection (pending requests are dropped). NULL-safe.
SHF_EXPORT void shf_client_destroy (shf_client_t **self_p);

//  How long a request waits for its reply (default 5000 ms). Waiting
//  calls (shf_client_result with wait) add their own wait to this.
SHF_EXPORT void shf_client_set_timeout (shf_client_t *self, int timeout_ms);

//  The code ("not_found", "unavailable", ...) and message of the last
//  failure on this client. Borrowed; valid until the next call.
SHF_EXPORT const char *shf_client_errcode (shf_client_t *self);
SHF_EXPORT const char *shf_client_errmsg (shf_client_t *self);

//  Register a definition; doc is the JSON text of the document.
//  Body {"name","version"}. SHF_EDEFINITION with the JSON path (and line
//  and column for syntax errors) in errmsg; SHF_EVERSION when that version
//  exists with another document.
SHF_EXPORT shf_err_t shf_client_def_register (shf_client_t *self,
                                              const char *doc,
                                              json_t **body_p) SHF_MUST_CHECK;

//  Body {"definitions":[{"name","version","registered_at"}]}.
SHF_EXPORT shf_err_t shf_client_def_list (shf_client_t *self,
                                          json_t **body_p) SHF_MUST_CHECK;

//  One definition; version 0 means the newest. Body {"name","version",
//  "registered_at","definition"}. SHF_ENOTFOUND.
SHF_EXPORT shf_err_t shf_client_def_show (shf_client_t *self, const char *name,
                                          int64_t version,
                                          json_t **body_p) SHF_MUST_CHECK;

//  Start a run of definition name (version 0: the newest). wf_id NULL:
//  derived from request_id if given, else random. input: JSON text or
//  NULL. request_id (may be NULL) makes the start idempotent.
//  Body {"workflow_id","run_id","shard"}. SHF_ERUNNING, SHF_ENOTFOUND,
//  SHF_EINVAL (input is not JSON), SHF_ETOOLARGE.
SHF_EXPORT shf_err_t shf_client_start (shf_client_t *self, const char *name,
                                       int64_t version, const char *wf_id,
                                       const char *input,
                                       const char *request_id,
                                       json_t **body_p) SHF_MUST_CHECK;

//  Start a run (arguments as shf_client_start) and wait for its outcome
//  in the same request: the answer comes when the run closes, or after
//  timeout_ms (<= 0: 30 s) saying "running". Body as shf_client_result
//  ({"workflow_id","run_id","status","output","failure"}). Repeated with
//  the same request_id, it waits for the run the first call started.
SHF_EXPORT shf_err_t shf_client_execute (shf_client_t *self, const char *name,
                                         int64_t version, const char *wf_id,
                                         const char *input,
                                         const char *request_id, int timeout_ms,
                                         json_t **body_p) SHF_MUST_CHECK;

//  The outcome of the current run of wf_id. With wait, the server holds
//  the answer until the run closes or timeout_ms passes (the body then
//  says "running"); without wait it answers at once. Body
//  {"workflow_id","run_id","status","output","failure"}. SHF_ENOTFOUND.
SHF_EXPORT shf_err_t shf_client_result (shf_client_t *self, const char *wf_id,
                                        bool wait, int timeout_ms,
                                        json_t **body_p) SHF_MUST_CHECK;

//  Body: the describe shape of SPEC.md. SHF_ENOTFOUND.
SHF_EXPORT shf_err_t shf_client_describe (shf_client_t *self, const char *wf_id,
                                          json_t **body_p) SHF_MUST_CHECK;

//  Body {"events":[...]}: the whole history of the current run, read a
//  page at a time. SHF_ENOTFOUND.
SHF_EXPORT shf_err_t shf_client_history (shf_client_t *self, const char *wf_id,
                                         json_t **body_p) SHF_MUST_CHECK;

//  One page: at most page_size events (0: the server's 1,000; it also
//  stops at about 1 MiB), from the start of the current run, or from
//  page_token (NULL for the first page). Body {"events":[...],
//  "next_page_token": T} where T is absent on the last page.
SHF_EXPORT shf_err_t shf_client_history_page (shf_client_t *self,
                                              const char *wf_id, int page_size,
                                              const char *page_token,
                                              json_t **body_p) SHF_MUST_CHECK;

//  Newest first. status and name filter (NULL: any); limit 0: server
//  default. Body {"workflows":[...]}.
SHF_EXPORT shf_err_t shf_client_list (shf_client_t *self, const char *status,
                                      const char *name, int64_t limit,
                                      json_t **body_p) SHF_MUST_CHECK;

//  Deliver signal `signal` with payload input (JSON text or NULL).
//  Body {"workflow_id","run_id"} (body_p may be NULL). SHF_ECLOSED when
//  the run is closed, SHF_ENOTFOUND.
SHF_EXPORT shf_err_t shf_client_signal (shf_client_t *self, const char *wf_id,
                                        const char *signal, const char *input,
                                        json_t **body_p) SHF_MUST_CHECK;

//  Cancel (graceful) or terminate (hard) the current run; reason may be
//  NULL. Body {"workflow_id","run_id"} (body_p may be NULL).
SHF_EXPORT shf_err_t shf_client_cancel (shf_client_t *self, const char *wf_id,
                                        const char *reason,
                                        json_t **body_p) SHF_MUST_CHECK;
SHF_EXPORT shf_err_t shf_client_terminate (shf_client_t *self,
                                           const char *wf_id,
                                           const char *reason,
                                           json_t **body_p) SHF_MUST_CHECK;

//  Send any request object (borrowed; "op" required, "id" is set by the
//  SDK, "ns" added when absent) and wait for its reply. *body_p is the
//  reply body. For tests and tools that speak the protocol directly.
SHF_EXPORT shf_err_t shf_client_call (shf_client_t *self, const json_t *request,
                                      json_t **body_p) SHF_MUST_CHECK;

//  Pipelining: shf_client_send queues a request like shf_client_call and
//  returns its id at once; shf_client_recv waits up to timeout_ms for
//  the next reply, whatever its id (*id_p), and returns its status with
//  *body_p (SHF_OK) or the server's error. SHF_ETIMEOUT when nothing
//  arrived. Do not mix with the waiting calls while requests are in
//  flight: those discard replies that are not theirs.
SHF_EXPORT shf_err_t shf_client_send (shf_client_t *self, const json_t *request,
                                      uint64_t *id_p) SHF_MUST_CHECK;
SHF_EXPORT shf_err_t shf_client_recv (shf_client_t *self, int timeout_ms,
                                      uint64_t *id_p,
                                      json_t **body_p) SHF_MUST_CHECK;

//  ---------------------------------------------------------------------
//  Worker

//  Create a worker that takes tasks of queue, at most concurrency
//  (1..10000) at a time. The connection is run by a background thread of
//  the worker's: credit is granted as soon as the connection is up, one
//  more slot after each complete or fail, all free slots again after a
//  reconnect; a keepalive goes out once a second whatever the application
//  is doing (the node declares a worker silent for about 4 s lost and
//  fails its running attempts with type "WorkerLost"); heartbeats are
//  batched there (see shf_worker_heartbeat). ZeroMQ heartbeats detect a
//  dead node within 3 s. SHF_EINVAL for a bad endpoint, queue name or
//  concurrency.
SHF_EXPORT shf_err_t shf_worker_open (shf_worker_t **self_p, const char *server,
                                      const char *queue,
                                      int concurrency) SHF_MUST_CHECK;

//  Stop (as shf_worker_stop: tasks received and not yet handed out go
//  back to the server at once), wait up to 2 s for the answers to results
//  sent without waiting (a handler's included), and close the
//  connection. Tasks handed out and not reported are left to the server's
//  timeouts. NULL-safe.
SHF_EXPORT void shf_worker_destroy (shf_worker_t **self_p);

//  Code and message of the last failure (as for the client). Borrowed.
SHF_EXPORT const char *shf_worker_errcode (shf_worker_t *self);
SHF_EXPORT const char *shf_worker_errmsg (shf_worker_t *self);

//  Wait up to timeout_ms (0: do not wait) for the next task. On SHF_OK
//  *task_p is the caller's: report it with shf_worker_complete or
//  shf_worker_fail (or shf_task_destroy it to leave it to the server's
//  timeouts, which keeps its slot taken). SHF_ETIMEOUT when none came.
//  After shf_worker_stop it always returns SHF_ETIMEOUT; once a handler
//  is set (shf_worker_set_handler) it returns SHF_EINVAL at once.
SHF_EXPORT shf_err_t shf_worker_poll (shf_worker_t *self, int timeout_ms,
                                      shf_task_t **task_p) SHF_MUST_CHECK;

//  What an inline handler decided for one task (shf_worker_set_handler).
//  It comes zeroed; the SDK frees every field (free) once it is reported.
typedef struct {
    char *output;         //  success: JSON text (malloc'd), NULL for null
    char *error_type;     //  failure when non-NULL (malloc'd; e.g. "Declined")
    char *error_message;  //  failure message (malloc'd or NULL)
} shf_outcome_t;

//  A handler for shf_worker_set_handler: runs on the worker's background
//  thread, must not block and must not call other shf_worker_* functions
//  on this worker. The task is borrowed for the call (shf_task_* getters
//  work; do not destroy it).
typedef void (shf_handler_fn) (shf_task_t *task, void *arg,
                               shf_outcome_t *outcome);

//  From now on tasks go to handler (with arg) on the worker's background
//  thread, the moment they arrive, instead of to shf_worker_poll: no
//  hand-over between threads per task. For activities that take
//  microseconds and never block (in-process work, or a handler that only
//  hands the task's data to a queue of the application's): while a handler
//  runs, the background thread does nothing else (its signals are
//  blocked, too). Tasks that reached the worker before the call go to the
//  handler as well.
//
//  Each outcome is reported as shf_worker_complete_async reports: the
//  output is checked (not JSON: the task is failed with type "BadOutput",
//  over the payload limit: with "TooLarge"; either way the error is kept
//  for shf_worker_errcode), the report goes at once and the slot is
//  granted again (the slots freed by one pass of the background thread in
//  one poll). The answers are collected on the background thread:
//  shf_worker_pending counts the reports not yet answered and
//  shf_worker_failures the refused or unanswered ones, both up to date at
//  any moment; the error of the last failure becomes shf_worker_errcode /
//  _errmsg at the next shf_worker_service or _flush. shf_worker_flush
//  waits until every report made before it has its answer;
//  shf_worker_stop and _destroy keep their meaning (a task that arrives
//  after the stop is handed back without running).
//
//  Heartbeats and cancellation are not available to handlers: a task runs
//  within one call, with nothing to heartbeat for, and its outcome is
//  reported before a cancellation could be read. handler and arg must stay
//  valid until shf_worker_destroy returns; the application's thread then
//  has nothing left to do but call shf_worker_service now and then (to
//  read the last error), and flush and destroy at the end.
//  SHF_EINVAL when handler is NULL, when a handler is set already, once
//  shf_worker_poll was called, or after shf_worker_stop; SHF_EUNAVAIL
//  when the process's ZeroMQ context is ending.
SHF_EXPORT shf_err_t shf_worker_set_handler (shf_worker_t *self,
                                             shf_handler_fn *handler,
                                             void *arg) SHF_MUST_CHECK;

//  Take in what the background thread received, without waiting: tasks
//  (kept for shf_worker_poll) and cancellations (for
//  shf_worker_canceled). Optional: the calls that need it do it.
SHF_EXPORT void shf_worker_service (shf_worker_t *self);

//  A libzmq socket handle for zmq_poll that becomes readable when a task
//  or a cancellation arrives; then call shf_worker_service or _poll.
SHF_EXPORT void *shf_worker_handle (shf_worker_t *self);

//  Stop taking tasks: no more credit; a task that still arrives (or was
//  waiting inside) is handed back at once (failed with type
//  "WorkerShutdown", which the server reschedules without counting an
//  attempt). Reporting tasks already taken still works, and keepalives go
//  on (without asking for work) so the tasks still held are not declared
//  lost.
SHF_EXPORT void shf_worker_stop (shf_worker_t *self);

//  Report success with output (JSON text or NULL) and destroy the task
//  (*task_p is nulled whatever the result). Heartbeat details of the task
//  not yet delivered are sent first, so the result cannot overtake them.
//  Waits for the server's answer (up to 5 s, once more after a
//  reconnect). SHF_EINVAL when output is not JSON, SHF_ETOOLARGE when over
//  the payload limit (the task is then failed with type "TooLarge"
//  instead), SHF_ETIMEOUT, SHF_EUNAVAIL, or the server's error
//  (SHF_ENOTFOUND for a task the server no longer knows).
SHF_EXPORT shf_err_t shf_worker_complete (shf_worker_t *self,
                                          shf_task_t **task_p,
                                          const char *output) SHF_MUST_CHECK;

//  Report failure with an error type (e.g. "Declined"; retry policies
//  match it) and message, and destroy the task as complete does.
SHF_EXPORT shf_err_t shf_worker_fail (shf_worker_t *self, shf_task_t **task_p,
                                      const char *type,
                                      const char *message) SHF_MUST_CHECK;

//  The same reports without waiting for the server's answer: the report
//  is checked (as above: SHF_EINVAL, SHF_ETOOLARGE, the task then failed
//  with "TooLarge") and handed to the background thread, which sends it
//  at once; the slot is free for a new task right away. The answer is
//  collected by the later calls (poll, service, flush): a single thread
//  can keep all its concurrency busy while results travel. A report the
//  server refuses (its run closed or gone) or never answers is counted
//  (shf_worker_failures) and its error kept (shf_worker_errcode,
//  _errmsg); an attempt whose result never arrived is the server's to
//  time out and retry, as for a crashed worker.
SHF_EXPORT shf_err_t shf_worker_complete_async (
    shf_worker_t *self, shf_task_t **task_p, const char *output) SHF_MUST_CHECK;
SHF_EXPORT shf_err_t shf_worker_fail_async (shf_worker_t *self,
                                            shf_task_t **task_p,
                                            const char *type,
                                            const char *message) SHF_MUST_CHECK;

//  Reports sent without waiting whose answer has not been collected yet
//  (answers are collected by poll, service, flush and blocking reports;
//  these two only read the counts), plus a handler's reports not yet
//  answered (shf_worker_set_handler).
SHF_EXPORT size_t shf_worker_pending (shf_worker_t *self);

//  Reports sent without waiting (a handler's included) that the server
//  refused or never answered, since the worker was opened.
SHF_EXPORT size_t shf_worker_failures (shf_worker_t *self);

//  Wait (up to timeout_ms) until every report sent without waiting has
//  its answer; with a handler, every report of a task the handler ran
//  before the call. SHF_OK, or SHF_ETIMEOUT with some still pending.
SHF_EXPORT shf_err_t shf_worker_flush (shf_worker_t *self,
                                       int timeout_ms) SHF_MUST_CHECK;

//  Record heartbeat details (JSON text or NULL) for a running task.
//  Never waits for the network: the background thread sends, once per
//  interval, one message with the newest details of every task that
//  recorded some since the last one (a task that records nothing sends
//  nothing, so its heartbeat timeout can fire). The interval is 1 s, or
//  half the shortest heartbeat timeout of the running tasks, and never
//  less than the minimum the server asks for; a failed or unanswered
//  message is retried within the interval. *canceled_p (may be NULL) is
//  shf_worker_canceled after the call. SHF_EINVAL when details are not
//  JSON, SHF_ETOOLARGE when over the payload limit.
SHF_EXPORT shf_err_t shf_worker_heartbeat (shf_worker_t *self, shf_task_t *task,
                                           const char *details,
                                           bool *canceled_p) SHF_MUST_CHECK;

//  True once the reply to a heartbeat of task said its activity was
//  cancelled (workflow cancelled, terminated or timed out): stop working
//  on it and report it (its outcome is then ignored). Only tasks that
//  heartbeat learn it. Never waits.
SHF_EXPORT bool shf_worker_canceled (shf_worker_t *self, shf_task_t *task);

//  ---------------------------------------------------------------------
//  Task: what one attempt of an activity needs. Strings are borrowed
//  from the task.

SHF_EXPORT const char *shf_task_token (shf_task_t *self);
SHF_EXPORT const char *shf_task_activity (shf_task_t *self);
SHF_EXPORT const char *shf_task_namespace (shf_task_t *self);
SHF_EXPORT const char *shf_task_workflow_id (shf_task_t *self);
SHF_EXPORT const char *shf_task_run_id (shf_task_t *self);
SHF_EXPORT const char *shf_task_step (shf_task_t *self);
SHF_EXPORT const char *shf_task_queue (shf_task_t *self);
SHF_EXPORT int64_t shf_task_attempt (shf_task_t *self);
//  Start-to-close timeout in ms, 0 when none.
SHF_EXPORT int64_t shf_task_start_to_close_ms (shf_task_t *self);
//  Heartbeat timeout in ms, 0 when none.
SHF_EXPORT int64_t shf_task_heartbeat_timeout_ms (shf_task_t *self);
//  The activity input as compact JSON text ("null" when none).
SHF_EXPORT const char *shf_task_input (shf_task_t *self);
//  Details of the last heartbeat of an earlier attempt as JSON text, or
//  NULL when there were none.
SHF_EXPORT const char *shf_task_heartbeat_details (shf_task_t *self);

//  Free a task without reporting it (its slot stays taken until the
//  worker reconnects). NULL-safe.
SHF_EXPORT void shf_task_destroy (shf_task_t **self_p);

#ifdef __cplusplus
}
#endif
#endif
