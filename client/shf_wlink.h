/*  shf_wlink.h - a worker's link to its node: the actor that owns the
    worker's connection (internal to libshardflow).

    The worker's DEALER lives in this actor's thread, so the worker keeps
    talking to the node while the application is busy inside an activity
    and calls nothing: keepalives (poll credit 0, once a second), credit
    after a reconnect, heartbeat batches (shf_hbman), timeouts and the one
    resend of reports. shf_worker (shardflow.h) is its only user: it
    starts it with zactor_new (shf_wlink, args) and talks to it over the
    pipe with the helpers below. Pointers in messages hand ownership over.

    API -> actor                     actor -> API
      HB token details* size           TASK task-json-text
      REPORT seq msg*                  CANCELED token
      HANDBACK token                   REPORTED seq status message
      STOP                                      reply-json-text ("" if none)
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
    - STOP: take no more tasks; ones that still arrive are handed back.
      Keepalives go on (as empty heartbeats, which do not ask for work),
      so the node does not declare the tasks still running lost.
    - $TERM: gives hand-backs up to 2 s to be answered, then ends.
    - TASK: a task to run (its slot is counted until REPORT or HANDBACK).
    - CANCELED: a heartbeat reply said this task's activity was cancelled.

    Thread rule: the actor owns the connection; the pipe end is the
    worker's, which uses it through shf_wlink_send / shf_wlink_recv /
    shf_wlink_events only (see there: signals).
*/
#ifndef SHF_WLINK_H_INCLUDED
#define SHF_WLINK_H_INCLUDED
#include "shf_conn.h"
#include <czmq.h>
#include <jansson.h>

//  How often the worker tells the node it is alive, in ms.
#define SHF_WLINK_KEEPALIVE_MS 1000

typedef struct {
    shf_conn_t *conn;   //  taken by the actor (and nulled here)
    const char *queue;  //  copied
    int concurrency;
    int timeout_ms;  //  how long a report waits for its reply
} shf_wlink_args_t;

//  The actor (zactor_new (shf_wlink, &args)).
void shf_wlink (zsock_t *pipe, void *args);

//  Commands, sent from the worker's thread. None blocks while the actor
//  runs: its loop always reads the pipe.
void shf_wlink_heartbeat (zactor_t *link, const char *token, json_t **details_p,
                          size_t size);
void shf_wlink_report (zactor_t *link, uint32_t seq, json_t **msg_p);
void shf_wlink_hand_back (zactor_t *link, const char *token);
void shf_wlink_stop (zactor_t *link);

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
//  A whole message; without wait NULL when none is waiting (zmq_errno ()
//  EAGAIN). NULL also once the socket is closed (ETERM).
zmsg_t *shf_wlink_recv (void *sock, bool wait);

void shf_wlink_test (bool verbose);

#endif
