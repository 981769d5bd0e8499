/*  shf_conn.h - one DEALER connection to a node (internal to libshardflow).

    Wraps the socket that shf_client and shf_worker share the mechanics of:
    encode and send one request frame, receive and decode one frame with a
    deadline, and follow the connection's life through a libzmq socket
    monitor (connected / disconnected), so a worker can grant its credit
    again after a node restart. Request ids are allocated here.

    Thread rule: one thread at a time.
*/
#ifndef SHF_CONN_H_INCLUDED
#define SHF_CONN_H_INCLUDED
#include "shardflow.h"
#include "shf_err.h"
#include "shf_msg.h"
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct shf_conn shf_conn_t;

//  Connect to endpoint (NULL: $SHARDFLOW_SERVER or the default). With
//  heartbeats, ZMTP heartbeats (1 s interval, 3 s timeout) are enabled.
//  SHF_EINVAL with a message in err for a malformed endpoint.
shf_err_t shf_conn_open (shf_conn_t **self_p, const char *endpoint,
                         bool heartbeats, char *err,
                         size_t errlen) SHF_MUST_CHECK;

void shf_conn_destroy (shf_conn_t **self_p);

//  A fresh request id (1, 2, ...).
uint64_t shf_conn_next_id (shf_conn_t *self);

//  Encode and queue msg (borrowed). SHF_ETOOLARGE over the frame limit,
//  SHF_EUNAVAIL when the outgoing queue is full.
shf_err_t shf_conn_send (shf_conn_t *self, const json_t *msg) SHF_MUST_CHECK;

//  Wait up to timeout_ms (0: only what is there) for one frame. On SHF_OK
//  *msg_p (the caller's) is the decoded message. Frames that fail to
//  decode are logged and skipped. SHF_ETIMEOUT when nothing came. While
//  it waits it also reads the monitor's events (shf_conn_check).
shf_err_t shf_conn_recv (shf_conn_t *self, int timeout_ms, json_t **msg_p,
                         shf_op_t *op_p, uint64_t *id_p) SHF_MUST_CHECK;

//  As shf_conn_recv, except that a task frame is not decoded into a tree:
//  it is read in place into a new task (shf_task_read), *task_p set (the
//  caller's) and *msg_p NULL: what a worker's link reads. A report's
//  acknowledgement is known by its bytes (shf_msg_ack_read) and given as
//  one shared {"op":"reply","ok":true,"body":{}}: read it, never change it.
shf_err_t shf_conn_recv_work (shf_conn_t *self, int timeout_ms, json_t **msg_p,
                              shf_task_t **task_p, shf_op_t *op_p,
                              uint64_t *id_p) SHF_MUST_CHECK;

//  Read the monitor's pending events without blocking. Costs a system
//  call: call it when the monitor handle is readable.
void shf_conn_check (shf_conn_t *self);

//  True while a TCP connection is up, per the monitor events read so far
//  (by shf_conn_check, or shf_conn_recv while it waited).
bool shf_conn_connected (shf_conn_t *self);

//  How many times the connection came up, and went down, per the monitor
//  events read so far.
unsigned shf_conn_ups (shf_conn_t *self);
unsigned shf_conn_downs (shf_conn_t *self);

//  The libzmq socket handle, for zmq_poll.
void *shf_conn_handle (shf_conn_t *self);

//  The libzmq handle of the monitor PAIR (readable when the connection
//  comes up or goes down; then call shf_conn_check), or NULL when the
//  monitor could not be set up.
void *shf_conn_monitor_handle (shf_conn_t *self);

#endif
