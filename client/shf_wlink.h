/*  shf_wlink.h - a worker's link to its node: the actor that owns the
    worker's connection (internal to libshardflow).

    The worker's DEALER lives in this actor's thread, so the worker keeps
    talking to the node while the application is busy inside an activity
    and calls nothing: keepalives (poll credit 0, once a second), credit
    after a reconnect, heartbeat batches (shf_hbman), timeouts and the one
    resend of reports. shf_worker (shardflow.h) is its only user: it
    starts it with zactor_new (shf_wlink, args) and talks to it over the
    pipe with the helpers below. Pointers in messages hand ownership over;
    one travels in its message's last frame, or inside an item.

    API -> actor                     actor -> API
      HB token size details*           TASK shf_task_t* (an item)
      REPORT seq msg* (an item)        CANCELED token
      HANDBACK token                   REPORTED seq status message reply*
      HANDLER fn arg                     (an item)
      TASK shf_task_t* (an item)       HANDLING
      FLUSH n                          FLUSHED n
      STOP                             CLOSED
      CLOSE
      $TERM

    - HB: new heartbeat details (json_t *, stolen) of a running task; they
      go in the next batch. Never answered.
    - REPORT: a complete or fail request (json_t *, stolen; "token" set).
      Unsent heartbeat details of that task are sent first, so the result
      cannot overtake them; then the request, resent once if the
      connection was lost while it waited. Always answered with REPORTED
      (the same seq): status SHF_OK (as text) with the node's reply, or a
      local failure (SHF_ETIMEOUT, SHF_EUNAVAIL) with a message.
    - HANDBACK: give a task back (fail "WorkerShutdown", not awaited).
    - HANDLER: from now on every task runs in the handler, here, as it
      arrives, and its outcome is reported at once without telling the
      worker's thread: inline reports, answered into the tally (below).
      Answered HANDLING: no TASK follows it, so a worker that has read
      it (sending back the TASKs before it) leaves none in the pipe.
    - TASK (this way): a task that reached the worker's thread before
      HANDLER did: run it in the handler (its slot is counted already).
    - FLUSH: answered FLUSHED with the same n once no inline report waits
      for its answer (at once when none does): every report of a task
      run before the FLUSH came is then answered.
    - STOP: take no more tasks; ones that still arrive are handed back.
      Keepalives go on (as empty heartbeats, which do not ask for work),
      so the node does not declare the tasks still running lost.
    - CLOSE: the worker is about to end the actor and reads its pipe one
      last time: the actor answers CLOSED, after which it tells nothing
      more (tasks that still arrive are handed back). So no message that
      hands json over is left in the pipe for zactor_destroy to drop.
    - $TERM: gives hand-backs up to 2 s to be answered, then ends.
    - TASK: a task to run (shf_task_t *, read from its frame; its slot
      is counted until REPORT or HANDBACK).
    - CANCELED: a heartbeat reply said this task's activity was cancelled.
    - REPORTED: reply is the node's reply (json_t *), or NULL; status
      the local outcome, with a message when it failed.

    Thread rule: the actor owns the connection; the pipe end is the
    worker's, which uses it through the pipe I/O helpers below only (see
    there: signals). The one thing both threads touch is the tally of
    inline reports (see there: atomics and a lock); an inline handler
    runs on the actor's thread.
*/
#ifndef SHF_WLINK_H_INCLUDED
#define SHF_WLINK_H_INCLUDED
#include "shardflow.h"
#include "shf_conn.h"
#include "shf_lasterr.h"
#include <czmq.h>
#include <pthread.h>
#include <stdatomic.h>

#include <jansson.h>

//  TASK, REPORT and REPORTED, three to a task, travel as one frame holding
//  this (both ends are one process, and 32 bytes fit a libzmq message
//  without an allocation), told from the other commands, whose first frame
//  is text, by the kind byte.
typedef enum {
    SHF_WLINK_TASK = 1,
    SHF_WLINK_REPORT,
    SHF_WLINK_REPORTED
} shf_wlink_kind_t;

typedef struct {
    uint8_t kind;    //  shf_wlink_kind_t
    uint32_t seq;    //  REPORT, REPORTED: the report's (0: none)
    int32_t status;  //  REPORTED: shf_err_t
    union {
        shf_task_t *task;  //  TASK
        json_t *json;      //  REPORT: the request; REPORTED: the reply
    };
    char *message;   //  REPORTED: why it failed locally, or NULL
} shf_wlink_item_t;  //  what it points to is handed over with it

//  A message of one item.
zmsg_t *shf_wlink_item_msg (const shf_wlink_item_t *item);
//  The item msg is, or NULL (borrowed: msg still owns what it hands over).
const shf_wlink_item_t *shf_wlink_item_peek (zmsg_t *msg,
                                             shf_wlink_item_t *copy);
//  When msg is an item: *item gets it, with what it hands over, and msg
//  is destroyed; else false and msg is left alone.
bool shf_wlink_item_take (zmsg_t **msg_p, shf_wlink_item_t *item);

//  How often the worker tells the node it is alive, in ms.
#define SHF_WLINK_KEEPALIVE_MS 1000

//  What the answers to inline reports come to, where the worker's thread
//  reads them without a message: a message per answer would be the very
//  hand-over that inline handlers exist to avoid, and messages that the
//  application may never read would pile up in the pipe. The counts are
//  atomics the actor alone writes; a failure's error is written under
//  the lock, with errors bumped, before failures and then pending count
//  it, so a reader that saw pending fall sees the error too. The worker
//  owns it (shf_wlink_tally_init / _fini) and it outlives the actor.
typedef struct {
    atomic_size_t pending;   //  inline reports sent, not yet answered
    atomic_size_t failures;  //  inline reports refused or never answered
    atomic_uint errors;      //  bumped each time err is set
    pthread_mutex_t lock;    //  guards err
    shf_lasterr_t err;       //  the last failure of an inline task
} shf_wlink_tally_t;

void shf_wlink_tally_init (shf_wlink_tally_t *self);
void shf_wlink_tally_fini (shf_wlink_tally_t *self);
//  Copies the last error into *err when it changed since *seen (errors
//  as last read); true when it did.
bool shf_wlink_tally_error (shf_wlink_tally_t *self, unsigned *seen,
                            shf_lasterr_t *err);

typedef struct {
    shf_conn_t *conn;   //  taken by the actor (and nulled here)
    const char *queue;  //  copied
    int concurrency;
    int timeout_ms;            //  how long a report waits for its reply
    shf_wlink_tally_t *tally;  //  borrowed: the worker's
} shf_wlink_args_t;

//  The actor (zactor_new (shf_wlink, &args)).
void shf_wlink (zsock_t *pipe, void *args);

//  Commands, sent from the worker's thread. None blocks while the actor
//  runs: its loop always reads the pipe.
void shf_wlink_heartbeat (zactor_t *link, const char *token, json_t **details_p,
                          size_t size);
void shf_wlink_report (zactor_t *link, uint32_t seq, json_t **msg_p);
void shf_wlink_hand_back (zactor_t *link, const char *token);
void shf_wlink_set_handler (zactor_t *link, shf_handler_fn *handler, void *arg);
//  Run a task in the handler (set before); the task is taken.
void shf_wlink_run (zactor_t *link, shf_task_t **task_p);
//  Sends FLUSH n; FLUSHED n answers it.
void shf_wlink_flush (zactor_t *link, uint32_t n);
void shf_wlink_stop (zactor_t *link);
//  Sends CLOSE; the caller then reads the pipe until CLOSED comes.
void shf_wlink_close (zactor_t *link);

//  Pipe I/O that signals cannot break. The worker's end of the pipe is
//  used on the application's thread, where signals land (a generic worker
//  gets SIGCHLD all the time). libzmq then fails calls with EINTR even
//  when they would not wait: ZMQ_EVENTS, where CZMQ's zsock_events returns
//  an uninitialised value (a spurious POLLIN makes the next receive wait
//  for a message that may never come), and any frame of a send or a
//  receive, where zmsg_send and zmsg_recv give up halfway, tearing a
//  message apart. These retry on EINTR, so a message always goes or comes
//  whole.
//
//  The socket's events (ZMQ_POLLIN, ZMQ_POLLOUT), 0 once it is closed.
int shf_wlink_events (void *sock);
//  Send the message, destroyed in any case. 0, or -1 once the socket is
//  closed.
int shf_wlink_send (void *sock, zmsg_t **msg_p);
//  A whole message, waiting up to timeout_ms for it (0: not at all, -1:
//  for ever). NULL when none came (zmq_errno () EAGAIN), or once the
//  socket is closed (ETERM).
zmsg_t *shf_wlink_recv (void *sock, int timeout_ms);

//  Destroy a message of the pipe, and the json it hands over, if any.
void shf_wlink_discard (zmsg_t **msg_p);

//  The requests that report a task, built alike on both ends (the worker's
//  calls and inline handlers); the caller adds "token".
//
//  Success with output (JSON text, NULL for null). Output that is not
//  JSON, or over the payload limit, makes it a failure instead, of type
//  "BadOutput" or "TooLarge", with *rc_p SHF_EINVAL or SHF_ETOOLARGE and
//  why in err (else SHF_OK). The caller's.
json_t *shf_wlink_complete_request (const char *output, shf_err_t *rc_p,
                                    char *err, size_t errlen);
//  Failure of type (NULL or empty: "Error") with message (NULL: "").
json_t *shf_wlink_fail_request (const char *type, const char *message);

void shf_wlink_test (bool verbose);

#endif
