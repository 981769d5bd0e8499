/*  shf_conn.c - one DEALER connection to a node (internal to libshardflow).

    The DEALER is connected without ZMQ_IMMEDIATE, so requests sent before
    the node is up wait in the socket's queue and leave once it connects;
    a request that gets no answer is the caller's to time out. A libzmq
    socket monitor reports connects and disconnects on an inproc PAIR, which
    is what lets a worker notice that a node restarted (and forgot its
    credit). Incoming frames are decoded with shf_msg_decode, the same
    validation the node applies to requests.

    The monitor is read only when it is readable: in libzmq every receive
    that finds nothing costs a poll() system call, and the connection's
    state is asked for far more often than it changes.
*/
#include "shf_conn.h"
#include "shf_log.h"
#include "shf_task.h"
#include <czmq.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct shf_conn {
    zsock_t *dealer;   //  the connection
    zsock_t *monitor;  //  PAIR receiving the dealer's monitor events
    uint64_t next_id;  //  last request id handed out
    bool connected;    //  per the last monitor event
    unsigned ups;      //  CONNECTED events seen
    unsigned downs;    //  DISCONNECTED events seen
    //  {"op":"reply","ok":true,"body":{}}: what an acknowledgement frame
    //  decodes to (but its id), shared by reference and never changed
    json_t *ack;
};

static atomic_uint s_monitor_seq;

static int64_t
s_now_ms (void)
{
    return zclock_mono ();
}

shf_err_t
shf_conn_open (shf_conn_t **self_p, const char *endpoint, bool heartbeats,
               char *err, size_t errlen)
{
    assert (self_p);
    *self_p = NULL;
    if (!endpoint || !*endpoint)
        endpoint = getenv ("SHARDFLOW_SERVER");
    if (!endpoint || !*endpoint)
        endpoint = "tcp://127.0.0.1:7400";
    //  CZMQ would otherwise install its own SIGINT handler on first use;
    //  the SDK leaves signals to the application.
    zsys_handler_set (NULL);
    shf_conn_t *self = calloc (1, sizeof *self);
    assert (self);
    self->dealer = zsock_new (ZMQ_DEALER);
    if (!self->dealer) {
        snprintf (err, errlen, "cannot create a ZeroMQ socket");
        free (self);
        return SHF_EINTERNAL;
    }
    zsock_set_linger (self->dealer, 0);
    zsock_set_sndhwm (self->dealer, 100000);
    zsock_set_rcvhwm (self->dealer, 100000);
    if (heartbeats) {
        zsock_set_heartbeat_ivl (self->dealer, 1000);
        zsock_set_heartbeat_timeout (self->dealer, 3000);
        zsock_set_heartbeat_ttl (self->dealer, 3000);
    }
    char mon_ep [96];
    snprintf (mon_ep, sizeof mon_ep, "inproc://shf-conn-monitor-%d-%u",
              (int) getpid (), atomic_fetch_add (&s_monitor_seq, 1));
    void *handle = zsock_resolve (self->dealer);
    if (zmq_socket_monitor (handle, mon_ep,
                            ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED)
        == 0) {
        self->monitor = zsock_new (ZMQ_PAIR);
        if (self->monitor) {
            zsock_set_linger (self->monitor, 0);
            if (zsock_connect (self->monitor, "%s", mon_ep) != 0)
                zsock_destroy (&self->monitor);
        }
    }
    if (zsock_connect (self->dealer, "%s", endpoint) != 0) {
        snprintf (err, errlen, "bad server endpoint \"%s\": %s", endpoint,
                  zmq_strerror (zmq_errno ()));
        shf_conn_destroy (&self);
        return SHF_EINVAL;
    }
    *self_p = self;
    return SHF_OK;
}

void
shf_conn_destroy (shf_conn_t **self_p)
{
    assert (self_p);
    shf_conn_t *self = *self_p;
    if (!self)
        return;
    if (self->dealer) {
        zmq_socket_monitor (zsock_resolve (self->dealer), NULL, 0);
        zsock_set_linger (self->dealer, 0);
        zsock_destroy (&self->dealer);
    }
    zsock_destroy (&self->monitor);
    json_decref (self->ack);  //  replies handed on keep their own refs
    free (self);
    *self_p = NULL;
}

uint64_t
shf_conn_next_id (shf_conn_t *self)
{
    return ++self->next_id;
}

shf_err_t
shf_conn_send (shf_conn_t *self, const json_t *msg)
{
    char *data = NULL;
    size_t size = 0;
    shf_err_t rc = shf_msg_encode (msg, &data, &size);
    if (rc != SHF_OK)
        return rc;
    int n = zmq_send (zsock_resolve (self->dealer), data, size, ZMQ_DONTWAIT);
    free (data);
    if (n < 0)
        return SHF_EUNAVAIL;
    return SHF_OK;
}

void
shf_conn_check (shf_conn_t *self)
{
    if (!self->monitor)
        return;
    void *handle = zsock_resolve (self->monitor);
    while (true) {
        zmq_msg_t part;
        zmq_msg_init (&part);
        if (zmq_msg_recv (&part, handle, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close (&part);
            return;
        }
        uint16_t event = 0;
        if (zmq_msg_size (&part) >= 2)
            memcpy (&event, zmq_msg_data (&part), 2);
        bool more = zmq_msg_more (&part);
        zmq_msg_close (&part);
        while (more) {  //  the endpoint frame
            zmq_msg_init (&part);
            if (zmq_msg_recv (&part, handle, 0) < 0)
                more = false;
            else
                more = zmq_msg_more (&part);
            zmq_msg_close (&part);
        }
        if (event == ZMQ_EVENT_CONNECTED) {
            self->connected = true;
            self->ups++;
        }
        else if (event == ZMQ_EVENT_DISCONNECTED) {
            self->connected = false;
            self->downs++;
        }
    }
}

//  Read one whole message off the dealer without waiting. A reply is one
//  frame; should a node ever send an envelope, the payload is the last.
static bool
s_read_frame (shf_conn_t *self, zmq_msg_t *frame)
{
    void *handle = zsock_resolve (self->dealer);
    zmq_msg_init (frame);
    if (zmq_msg_recv (frame, handle, ZMQ_DONTWAIT) < 0)
        return false;
    while (zmq_msg_more (frame)) {
        zmq_msg_close (frame);
        zmq_msg_init (frame);
        if (zmq_msg_recv (frame, handle, 0) < 0)
            return false;
    }
    return true;
}

//  Whether a frame opens as a node writes a task: "op": "task" among its
//  first bytes (after the map's header and "v"). Only a guess at what to
//  try first: the frame is read in full either way.
static bool
s_task_first (const uint8_t *data, size_t size)
{
    static const uint8_t op_task [] = {0xa2, 'o', 'p', 0xa4,
                                       't',  'a', 's', 'k'};
    size_t look = size < 16 ? size : 16;
    return look >= sizeof op_task
           && memmem (data, look, op_task, sizeof op_task) != NULL;
}

//  One frame decoded, or with task_p a task frame read into a task.
static shf_err_t
s_decode (const zmq_msg_t *frame, json_t *ack, json_t **msg_p,
          shf_task_t **task_p, shf_op_t *op_p, uint64_t *id_p, char *err,
          size_t errlen)
{
    const uint8_t *data = zmq_msg_data ((zmq_msg_t *) frame);
    size_t size = zmq_msg_size ((zmq_msg_t *) frame);
    if (task_p && s_task_first (data, size)) {
        *op_p = SHF_OP_TASK;
        *id_p = 0;  //  the node sends tasks unasked
        return shf_task_read (data, size, task_p, err, errlen);
    }
    //  A report's acknowledgement, known by its bytes (three a workflow)
    if (task_p && ack && shf_msg_ack_read (data, size, id_p)) {
        *op_p = SHF_OP_REPLY;
        *msg_p = json_incref (ack);
        return SHF_OK;
    }
    shf_err_t rc = shf_msg_decode (data, size, msg_p, op_p, id_p, err, errlen);
    if (rc == SHF_OK && task_p && *op_p == SHF_OP_TASK) {
        //  a task with its members in another order
        json_decref (*msg_p);
        *msg_p = NULL;
        rc = shf_task_read (data, size, task_p, err, errlen);
    }
    return rc;
}

static shf_err_t
s_recv (shf_conn_t *self, int timeout_ms, json_t **msg_p, shf_task_t **task_p,
        shf_op_t *op_p, uint64_t *id_p)
{
    int64_t deadline = s_now_ms () + (timeout_ms > 0 ? timeout_ms : 0);
    while (true) {
        zmq_msg_t frame;
        if (s_read_frame (self, &frame)) {
            char err [256] = "";
            json_t *msg = NULL;
            shf_op_t op = SHF_OP_INVALID;
            uint64_t id = 0;
            shf_err_t rc = s_decode (&frame, self->ack, &msg, task_p, &op, &id,
                                     err, sizeof err);
            zmq_msg_close (&frame);
            if (rc == SHF_OK) {
                *msg_p = msg;
                if (op_p)
                    *op_p = op;
                if (id_p)
                    *id_p = id;
                return SHF_OK;
            }
            shf_warn ("client: dropped an undecodable frame: %s", err);
            continue;
        }
        zmq_msg_close (&frame);
        int64_t left = deadline - s_now_ms ();
        if (left <= 0)
            return SHF_ETIMEOUT;
        zmq_pollitem_t items [2] = {
            {zsock_resolve (self->dealer), 0, ZMQ_POLLIN, 0},
            {self->monitor ? zsock_resolve (self->monitor) : NULL, 0,
             ZMQ_POLLIN, 0}};
        if (zmq_poll (items, self->monitor ? 2 : 1, (long) left) > 0
            && (items [1].revents & ZMQ_POLLIN))
            shf_conn_check (self);
    }
}

shf_err_t
shf_conn_recv (shf_conn_t *self, int timeout_ms, json_t **msg_p, shf_op_t *op_p,
               uint64_t *id_p)
{
    return s_recv (self, timeout_ms, msg_p, NULL, op_p, id_p);
}

shf_err_t
shf_conn_recv_work (shf_conn_t *self, int timeout_ms, json_t **msg_p,
                    shf_task_t **task_p, shf_op_t *op_p, uint64_t *id_p)
{
    assert (task_p);
    *task_p = NULL;
    if (!self->ack) {
        self->ack =
            json_pack ("{s:s, s:b, s:{}}", "op", "reply", "ok", 1, "body");
        assert (self->ack);
    }
    return s_recv (self, timeout_ms, msg_p, task_p, op_p, id_p);
}

bool
shf_conn_connected (shf_conn_t *self)
{
    return self->connected;
}

unsigned
shf_conn_ups (shf_conn_t *self)
{
    return self->ups;
}

unsigned
shf_conn_downs (shf_conn_t *self)
{
    return self->downs;
}

void *
shf_conn_handle (shf_conn_t *self)
{
    return zsock_resolve (self->dealer);
}

void *
shf_conn_monitor_handle (shf_conn_t *self)
{
    return self->monitor ? zsock_resolve (self->monitor) : NULL;
}
