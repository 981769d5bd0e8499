/*  shf_router.c - frontend ROUTER, request routing, gathers, matcher.

    One thread, one poll loop over the frontend socket and every shard's
    pipe. The router holds no durable state: everything it forwards is
    either a request (the shard decides and commits) or something a shard
    already committed (replies, tasks), so a crash of the node loses
    nothing that was acknowledged.
*/
#include "shf_router.h"
#include "shf_clock.h"
#include "shf_envelope.h"
#include "shf_frames.h"
#include "shf_fs.h"
#include "shf_log.h"
#include "shf_matcher.h"
#include "shf_reply.h"
#include "shf_msg.h"
#include "shf_shard.h"
#include "shf_str.h"
#include "shf_thread.h"
#include "shf_workers.h"
#include <sodium.h>
#include <poll.h>
#include <string.h>

#define SHF_POLLER_SILENCE_MS 3000
#define SHF_CANCELED_TTL_MS   (10 * 60 * 1000)
//  Workers send a keepalive each second: four missed ones and it is lost.
#define SHF_WORKER_SILENCE_MS 4000

//  A peer on the frontend, named by its ROUTER identity (1..255 bytes).
typedef struct {
    const void *data;
    size_t size;
} s_peer_t;

typedef struct {
    uint8_t identity [256];
    size_t identity_size;
    uint64_t id;
    char op [32];
    uint32_t remaining;
    json_t *first;  //  the answer of the lowest shard
    json_t *error;  //  the first error answer
    json_t *items;  //  wf_list: merged workflows
    int64_t limit;
} s_gather_t;

//  One socket the loop reads: the actor pipe, the frontend, a shard pipe.
typedef struct {
    void *handle;  //  libzmq socket; NULL when absent
    bool ready;    //  may hold input that its fd will not announce
} s_source_t;

//  Where each source sits in sources. The loop serves the pipe, then the
//  shards, then the frontend: replies and tasks free memory and credit.
//  After the shards comes one more: the answers of the shards' readers.
#define SHF_ROUTER_PIPE     0
#define SHF_ROUTER_FRONTEND 1
#define SHF_ROUTER_SHARD0   2

typedef struct {
    zsock_t *pipe;
    shf_router_args_t *args;
    zsock_t *frontend;
    shf_shardmap_t *map;
    shf_matcher_t *matcher;
    zactor_t **shards;
    shf_shard_args_t *shard_args;
    uint32_t n_shards;
    //  PULL: every shard's reader pushes its answers here ("REPLY",
    //  "GATHERED" as a shard sends them), so reads bypass the shards
    zsock_t *readers;
    char readers_endpoint [64];
    s_source_t *sources;     //  by SHF_ROUTER_PIPE etc., shard i at SHARD0 + i
    struct pollfd *pollfds;  //  each source's ZMQ_FD, same order
    uint32_t n_sources;
    zhashx_t *gathers;  //  "id" -> s_gather_t
    uint32_t next_gather;
    zhashx_t *canceled;  //  token -> expiry (ms, boxed)
    shf_workers_t *workers;
    int64_t heartbeat_min_ms;  //  told to workers: throttle heartbeats
    bool terminated;
} self_t;

static void
s_identity_text (s_peer_t peer, char *buf, size_t size)
{
    sodium_bin2hex (buf, size, peer.data, peer.size);
}

static void
s_free_data (void *data, void *hint)
{
    (void) hint;
    free (data);
}

//  Sends [identity][body] on the frontend; body (malloc'd, size bytes) is
//  taken and handed to ZeroMQ without a copy. The socket is
//  ROUTER_MANDATORY: a peer whose connection is gone makes the send fail
//  (and the body is dropped here) instead of vanishing silently. Returns
//  whether it left.
static bool
s_route (self_t *self, s_peer_t peer, char *body, size_t size)
{
    void *frontend = self->sources [SHF_ROUTER_FRONTEND].handle;
    //  Sending may take in the socket's pending commands, an arrival
    //  among them: look at it again before sleeping.
    self->sources [SHF_ROUTER_FRONTEND].ready = true;
    zmq_msg_t msg;
    zmq_msg_init_data (&msg, body, size, s_free_data, NULL);
    if (zmq_send (frontend, peer.data, peer.size, ZMQ_SNDMORE) < 0
        || zmq_msg_send (&msg, frontend, 0) < 0) {
        zmq_msg_close (&msg);
        return false;
    }
    return true;
}

//  Returns false when the message cannot be encoded or the peer is gone.
static bool
s_send_frontend (self_t *self, s_peer_t peer, const json_t *msg)
{
    char *data;
    size_t size;
    if (shf_msg_encode (msg, &data, &size) != SHF_OK)
        return false;
    return s_route (self, peer, data, size);
}

static void
s_error (self_t *self, s_peer_t peer, uint64_t id, shf_err_t err,
         const char *message)
{
    json_t *reply = shf_msg_reply_error (id, err, message);
    s_send_frontend (self, peer, reply);
    json_decref (reply);
}

//  A shard's pipe, to send on. Sending may take in the pipe's pending
//  commands, an arrival among them: the loop looks at it again (s_route).
static void *
s_shard_pipe (self_t *self, uint32_t shard)
{
    s_source_t *src = &self->sources [SHF_ROUTER_SHARD0 + shard];
    src->ready = true;
    return src->handle;
}

//  Sends a gather's request (taken) to a shard.
static void
s_to_shard_gather (self_t *self, uint32_t shard, uint32_t gid, json_t *msg)
{
    void *pipe = s_shard_pipe (self, shard);
    if (zmq_send (pipe, "GATHER", 6, ZMQ_SNDMORE) < 0
        || zmq_send (pipe, &gid, 4, ZMQ_SNDMORE) < 0
        || zmq_send (pipe, &msg, sizeof (void *), 0) < 0)
        json_decref (msg);  //  only when the context is ending
}

//  Sends a request the router made (heartbeat details, WorkerLost) to a
//  shard, with the token it is about; no one waits for an answer. msg and
//  note are taken.
static void
s_to_shard (self_t *self, uint32_t shard, json_t *msg, shf_shard_note_t *note)
{
    void *pipe = s_shard_pipe (self, shard);
    if (zmq_send (pipe, "REQ", 3, ZMQ_SNDMORE) < 0
        || zmq_send (pipe, "", 0, ZMQ_SNDMORE) < 0
        || zmq_send (pipe, &msg, sizeof (void *), ZMQ_SNDMORE) < 0
        || zmq_send (pipe, &note, sizeof (void *), 0) < 0) {
        json_decref (msg);  //  only when the context is ending
        free (note);
    }
}

//  Hands a request's frame to a shard as the client sent it (the shard
//  decodes it); note (may be NULL) is taken.
static void
s_to_shard_raw (self_t *self, uint32_t shard, s_peer_t peer, zmq_msg_t *body,
                shf_shard_note_t *note)
{
    void *pipe = s_shard_pipe (self, shard);
    if (zmq_send (pipe, "RAW", 3, ZMQ_SNDMORE) < 0
        || zmq_send (pipe, peer.data, peer.size, ZMQ_SNDMORE) < 0
        || zmq_msg_send (body, pipe, note ? ZMQ_SNDMORE : 0) < 0
        || (note && zmq_send (pipe, &note, sizeof (void *), 0) < 0))
        free (note);  //  only when the context is ending
}

static shf_shard_note_t *
s_note_new (void)
{
    shf_shard_note_t *note = malloc (sizeof *note);
    assert (note);
    note->has_token = false;
    note->worker [0] = 0;
    note->wf_id [0] = 0;
    return note;
}

static shf_shard_note_t *
s_token_note (const shf_token_t *token, const char *worker)
{
    shf_shard_note_t *note = s_note_new ();
    note->has_token = true;
    note->token = *token;
    shf_str_copy (note->worker, sizeof note->worker, worker);
    return note;
}

static void s_worker_lost (void *arg, const char *worker, const char *text);

//  Matcher callback: push a task to a worker, tell its shard. A worker
//  whose connection is gone is lost at once (the tasks it held fail as
//  WorkerLost) and the task goes to another poller.
static bool
s_dispatch (void *arg, const char *worker, void *task_)
{
    self_t *self = arg;
    shf_shard_task_t *task = task_;
    unsigned char raw [256];
    size_t raw_len;
    if (sodium_hex2bin (raw, sizeof raw, worker, strlen (worker), NULL,
                        &raw_len, NULL)
        != 0)
        return false;
    //  A copy goes: the task may yet be offered to another poller.
    char *body = malloc (task->wire_size);
    assert (body);
    memcpy (body, task->wire, task->wire_size);
    if (!s_route (self, (s_peer_t){raw, raw_len}, body, task->wire_size)) {
        shf_workers_lose (self->workers, worker, s_worker_lost, self);
        return false;
    }
    shf_workers_track (self->workers, worker, task->token,
                       shf_clock_mono_us () / 1000);
    shf_shard_note_t *note = s_token_note (&task->where, worker);
    void *pipe = s_shard_pipe (self, task->where.shard);
    if (zmq_send (pipe, "DISPATCHED", 10, ZMQ_SNDMORE) < 0
        || zmq_send (pipe, &note, sizeof (void *), 0) < 0)
        free (note);  //  only when the context is ending
    return true;
}

//  --------------------------------------------------------------------
//  Gathers

static void
s_gather_free (void **item)
{
    s_gather_t *g = *item;
    if (g) {
        json_decref (g->first);
        json_decref (g->error);
        json_decref (g->items);
        free (g);
    }
    *item = NULL;
}

static void
s_gather_start (self_t *self, s_peer_t peer, uint64_t id, json_t *msg,
                bool all_shards)
{
    s_gather_t *g = calloc (1, sizeof *g);
    assert (g);
    assert (peer.size <= sizeof g->identity);
    memcpy (g->identity, peer.data, peer.size);
    g->identity_size = peer.size;
    g->id = id;
    snprintf (g->op, sizeof g->op, "%s",
              json_string_value (json_object_get (msg, "op")));
    g->limit = shf_msg_int (msg, "limit", 100);
    g->items = json_array ();
    g->remaining = all_shards ? self->n_shards : 1;
    uint32_t gid = ++self->next_gather;
    char key [16];
    snprintf (key, sizeof key, "%u", gid);
    zhashx_insert (self->gathers, key, g);
    for (uint32_t s = 0; s < g->remaining; s++) {
        json_t *copy =
            s + 1 < g->remaining ? json_deep_copy (msg) : json_incref (msg);
        s_to_shard_gather (self, s, gid, copy);
    }
}

static int
s_by_started_desc (const void *a, const void *b)
{
    const json_t *x = *(const json_t *const *) a;
    const json_t *y = *(const json_t *const *) b;
    const char *sx = json_string_value (json_object_get (x, "started_at"));
    const char *sy = json_string_value (json_object_get (y, "started_at"));
    return strcmp (sy ? sy : "", sx ? sx : "");
}

static void
s_gathered (self_t *self, uint32_t gid, json_t *reply)
{
    char key [16];
    snprintf (key, sizeof key, "%u", gid);
    s_gather_t *g = zhashx_lookup (self->gathers, key);
    if (!g) {
        json_decref (reply);
        return;
    }
    if (!json_is_true (json_object_get (reply, "ok"))) {
        if (!g->error)
            g->error = json_incref (reply);
    }
    else if (streq (g->op, "wf_list")) {
        json_t *list =
            json_object_get (json_object_get (reply, "body"), "workflows");
        json_array_extend (g->items, list);
    }
    if (!g->first)
        g->first = json_incref (reply);
    json_decref (reply);
    if (--g->remaining > 0)
        return;
    json_t *answer;
    if (g->error)
        answer = json_deep_copy (g->error);
    else if (streq (g->op, "wf_list")) {
        size_t n = json_array_size (g->items);
        json_t **items = calloc (n ? n : 1, sizeof (json_t *));
        for (size_t i = 0; i < n; i++)
            items [i] = json_array_get (g->items, i);
        qsort (items, n, sizeof (json_t *), s_by_started_desc);
        json_t *list = json_array ();
        for (size_t i = 0; i < n && (int64_t) i < g->limit; i++)
            json_array_append (list, items [i]);
        free (items);
        answer = shf_msg_reply_ok (0, json_pack ("{s:o}", "workflows", list));
    }
    else
        answer = json_deep_copy (g->first);
    json_object_set_new (answer, "id", json_integer ((json_int_t) g->id));
    s_send_frontend (self, (s_peer_t){g->identity, g->identity_size}, answer);
    json_decref (answer);
    zhashx_delete (self->gathers, key);
}

//  --------------------------------------------------------------------
//  Frontend requests

static bool
s_open_token (self_t *self, const s_peer_t *peer, uint64_t id, const char *text,
              shf_token_t *token)
{
    shf_err_t rc = shf_token_open (text, self->args->token_key, token);
    if (rc == SHF_OK && token->shard >= self->n_shards)
        rc = SHF_EINVAL;
    if (rc) {
        if (peer)
            s_error (self, *peer, id, rc == SHF_EAUTH ? SHF_EAUTH : SHF_EINVAL,
                     "task token is not valid");
        return false;
    }
    return true;
}

//  A string of the envelope as C text (dflt when absent). False when it
//  does not fit or holds a NUL: the full decode then says what is wrong.
static bool
s_envelope_text (shf_envelope_str_t str, const char *dflt, char *buf,
                 size_t size)
{
    if (!str.ptr) {
        if (!dflt)
            return false;
        shf_str_copy (buf, size, dflt);
        return true;
    }
    if (str.len == 0 || str.len >= size || memchr (str.ptr, 0, str.len))
        return false;
    memcpy (buf, str.ptr, str.len);
    buf [str.len] = 0;
    return true;
}

//  The requests a shard decodes itself: wf_* on one workflow, complete and
//  fail. The router reads the envelope and hands the frame on untouched.
//  False when the envelope does not route (malformed, a routing field
//  missing or unusable): the full decode then answers.
static bool
s_frontend_raw (self_t *self, s_peer_t peer, zmq_msg_t *body,
                const char *worker)
{
    shf_envelope_t env;
    if (shf_envelope_read (zmq_msg_data (body), zmq_msg_size (body), &env)
        != SHF_OK)
        return false;
    if (env.op == SHF_OP_COMPLETE || env.op == SHF_OP_FAIL) {
        char text [SHF_TOKEN_MAX_TEXT + 1];  //  the longest a client may send
        if (!s_envelope_text (env.token, NULL, text, sizeof text))
            return false;
        shf_token_t token;
        if (s_open_token (self, &peer, env.id, text, &token))
            s_to_shard_raw (self, token.shard, peer, body,
                            s_token_note (&token, worker));
        return true;
    }
    if (env.op < SHF_OP_WF_START || env.op > SHF_OP_WF_TERMINATE
        || env.op == SHF_OP_WF_LIST)
        return false;
    char ns [SHF_MSG_MAX_NAME + 1];
    char wf_id [SHF_MSG_MAX_NAME + 1];
    if (!s_envelope_text (env.ns, SHF_MSG_DEFAULT_NS, ns, sizeof ns))
        return false;
    shf_shard_note_t *note = NULL;
    if (env.wf_id.ptr) {
        if (!s_envelope_text (env.wf_id, NULL, wf_id, sizeof wf_id))
            return false;
    }
    else if (env.op == SHF_OP_WF_START) {
        //  SPEC: derived from the request id, else random.
        if (env.request_id.ptr) {
            if (!s_envelope_text (env.request_id, NULL, wf_id, sizeof wf_id))
                return false;
        }
        else {
            unsigned char raw [16];
            randombytes_buf (raw, sizeof raw);
            sodium_bin2hex (wf_id, sizeof wf_id, raw, sizeof raw);
        }
        note = s_note_new ();
        shf_str_copy (note->wf_id, sizeof note->wf_id, wf_id);
    }
    else
        return false;
    s_to_shard_raw (self, shf_shardmap_locate (self->map, ns, wf_id), peer,
                    body, note);
    return true;
}

//  frames: [identity][body] as read, count of them in the message.
static void
s_frontend (self_t *self, zmq_msg_t *frames, int count)
{
    s_peer_t peer = {zmq_msg_data (&frames [0]), zmq_msg_size (&frames [0])};
    if (count != 2) {
        s_error (self, peer, 0, SHF_EINVAL, "a request is exactly one frame");
        return;
    }
    char worker [520];
    s_identity_text (peer, worker, sizeof worker);
    int64_t now_ms = shf_clock_mono_us () / 1000;
    shf_workers_seen (self->workers, worker, now_ms);
    if (s_frontend_raw (self, peer, &frames [1], worker))
        return;
    json_t *msg = NULL;
    shf_op_t op;
    uint64_t id = 0;
    char err [300];
    shf_err_t rc =
        shf_msg_decode (zmq_msg_data (&frames [1]), zmq_msg_size (&frames [1]),
                        &msg, &op, &id, err, sizeof err);
    if (rc) {
        s_error (self, peer, id, rc, err);
        return;
    }
    shf_msg_default_ns (msg, op);
    switch (op) {
        case SHF_OP_WF_START:
        case SHF_OP_WF_RESULT:
        case SHF_OP_WF_DESCRIBE:
        case SHF_OP_WF_HISTORY:
        case SHF_OP_WF_SIGNAL:
        case SHF_OP_WF_CANCEL:
        case SHF_OP_WF_TERMINATE:
        case SHF_OP_COMPLETE:
        case SHF_OP_FAIL:
            //  s_frontend_raw routes every valid one of these (the
            //  envelope reads what the full decode reads).
            s_error (self, peer, id, SHF_EINTERNAL,
                     "the request decodes but could not be routed");
            break;
        case SHF_OP_DEF_REGISTER:
        case SHF_OP_WF_LIST:
            s_gather_start (self, peer, id, msg, true);
            break;
        case SHF_OP_DEF_LIST:
        case SHF_OP_DEF_SHOW:
            s_gather_start (self, peer, id, msg, false);
            break;
        case SHF_OP_POLL:
            shf_workers_poll (self->workers, worker, now_ms);
            if (shf_msg_bool (msg, "stop", false)) {
                //  A stopping worker takes back its credit: no task may be
                //  pushed to it any more.
                shf_matcher_forget (self->matcher, worker);
                break;
            }
            shf_matcher_poll (
                self->matcher, worker,
                json_string_value (json_object_get (msg, "queue")),
                shf_msg_int (msg, "credit", 0),
                shf_msg_bool (msg, "reset", false),
                shf_msg_int (msg, "gen", -1), now_ms);
            break;
        case SHF_OP_HEARTBEAT: {
            //  Cancellation is answered from what shards told us; details
            //  go to each task's shard to be recorded.
            json_t *canceled = json_array ();
            size_t i;
            json_t *item;
            json_array_foreach (json_object_get (msg, "items"), i, item)
            {
                const char *text =
                    json_string_value (json_object_get (item, "token"));
                shf_token_t token;
                if (!text || !s_open_token (self, NULL, id, text, &token))
                    continue;
                if (zhashx_lookup (self->canceled, text))
                    json_array_append_new (canceled, json_string (text));
                json_t *hb = json_pack ("{s:s, s:I, s:O}", "op", "hb", "id",
                                        (json_int_t) 0, "details",
                                        json_object_get (item, "details")
                                            ? json_object_get (item, "details")
                                            : json_null ());
                s_to_shard (self, token.shard, hb,
                            s_token_note (&token, worker));
            }
            json_t *reply = shf_msg_reply_ok (
                id, json_pack ("{s:o, s:I}", "canceled", canceled,
                               "min_interval_ms",
                               (json_int_t) self->heartbeat_min_ms));
            s_send_frontend (self, peer, reply);
            json_decref (reply);
            break;
        }
        default:
            s_error (self, peer, id, SHF_EINVAL,
                     "this operation is not accepted from clients");
            break;
    }
    json_decref (msg);
}

//  --------------------------------------------------------------------
//  Shard pipes

//  A new task from a shard (unrendered, shf_shard.h), its token sealed and
//  its message encoded (task taken). NULL, the task dropped, should that
//  fail: its record stays, and the shard offers it again when it next
//  opens.
static shf_shard_task_t *
s_rendered (self_t *self, shf_shard_task_t *task)
{
    char token [SHF_TOKEN_MAX_TEXT + 1];
    char *wire = NULL;
    size_t wire_size = 0;
    const shf_token_t *w = &task->where;
    shf_err_t rc =
        shf_token_seal (w, self->args->token_key, token, sizeof token);
    if (rc == SHF_OK) {
        shf_msg_task_t fields = {.token = token,
                                 .ns = w->ns,
                                 .wf_id = w->wf_id,
                                 .run_id = w->run_id,
                                 .step = w->step,
                                 .activity = task->activity,
                                 .queue = task->queue,
                                 .attempt = w->attempt,
                                 .start_to_close_ms = task->start_to_close_ms,
                                 .heartbeat_timeout_ms =
                                     task->heartbeat_timeout_ms};
        rc = shf_msg_encode_task_packed (&fields, task->payloads,
                                         task->input_size,
                                         task->payloads + task->input_size,
                                         task->details_size, &wire, &wire_size);
    }
    shf_shard_task_t *rendered =
        rc == SHF_OK
            ? shf_shard_task_new (w, task->queue, token, wire, wire_size)
            : NULL;
    if (rc)
        shf_error ("router: a task of %s/%s cannot be sent: %s", w->ns,
                   w->wf_id, shf_strerror (rc));
    shf_shard_task_free (task);
    return rendered;
}

//  A task report's answer on its way: the client is told, and the router
//  stops tracking the token (as for a REPLY with a token).
static void
s_release (self_t *self, const char *token, size_t size)
{
    char text [SHF_TOKEN_MAX_TEXT + 1];
    if (size > 0 && size < sizeof text) {
        memcpy (text, token, size);
        text [size] = 0;
        shf_workers_release (self->workers, text);
    }
}

//  A batch's acknowledgements ("ACKS", shf_reply.h): each encoded here and
//  sent to its client.
static void
s_acks (self_t *self, const zmq_msg_t *frame)
{
    void *frontend = self->sources [SHF_ROUTER_FRONTEND].handle;
    self->sources [SHF_ROUTER_FRONTEND].ready = true;  //  as in s_route
    const void *data = zmq_msg_data ((zmq_msg_t *) frame);
    size_t size = zmq_msg_size ((zmq_msg_t *) frame);
    size_t pos = 0, identity_size, release_size;
    const void *identity;
    const char *release;
    uint64_t id;
    while (shf_reply_acks_next (data, size, &pos, &identity, &identity_size,
                                &id, &release, &release_size)) {
        char *body;
        size_t body_size;
        if (shf_msg_encode_ack (id, &body, &body_size) == SHF_OK) {
            zmq_msg_t msg;  //  handed over, not copied
            zmq_msg_init_data (&msg, body, body_size, s_free_data, NULL);
            if (zmq_send (frontend, identity, identity_size, ZMQ_SNDMORE) < 0
                || zmq_msg_send (&msg, frontend, 0) < 0)
                zmq_msg_close (&msg);  //  a peer that is gone drops it
        }
        s_release (self, release, release_size);
    }
}

//  frames: the first three of the message, count of them in it.
static void
s_from_shard (self_t *self, zmq_msg_t *frames, int count)
{
    if (shf_frames_is (&frames [0], "REPLY") && (count == 3 || count == 4)) {
        //  [identity][encoded reply]: forwarded as is, the reply's bytes
        //  handed over rather than copied. A peer that is gone drops it.
        void *frontend = self->sources [SHF_ROUTER_FRONTEND].handle;
        self->sources [SHF_ROUTER_FRONTEND].ready = true;  //  as in s_route
        if (zmq_msg_send (&frames [1], frontend, ZMQ_SNDMORE) >= 0)
            zmq_msg_send (&frames [2], frontend, 0);
        if (count == 4)  //  [token]: the answer is to that task's report
            s_release (self, zmq_msg_data (&frames [3]),
                       zmq_msg_size (&frames [3]));
    }
    else if (shf_frames_is (&frames [0], "ACKS") && count == 2)
        s_acks (self, &frames [1]);
    else if (shf_frames_is (&frames [0], "TASK") && count == 2) {
        shf_shard_task_t *task = shf_frames_ptr (&frames [1]);
        if (task && !task->wire)
            task = s_rendered (self, task);
        if (task)
            shf_matcher_add_task (self->matcher, task->queue, task->token,
                                  task);
    }
    else if (shf_frames_is (&frames [0], "CANCEL") && count == 3) {
        char *queue =
            strndup (zmq_msg_data (&frames [1]), zmq_msg_size (&frames [1]));
        char *token =
            strndup (zmq_msg_data (&frames [2]), zmq_msg_size (&frames [2]));
        assert (queue && token);
        shf_matcher_cancel (self->matcher, queue, token);
        int64_t *expiry = malloc (sizeof *expiry);
        assert (expiry);
        *expiry = shf_clock_mono_us () / 1000 + SHF_CANCELED_TTL_MS;
        zhashx_update (self->canceled, token, expiry);
        free (queue);
        free (token);
    }
    else if (shf_frames_is (&frames [0], "GATHERED") && count == 3) {
        uint32_t gid = 0;
        if (zmq_msg_size (&frames [1]) == 4)
            memcpy (&gid, zmq_msg_data (&frames [1]), 4);
        json_t *reply = shf_frames_ptr (&frames [2]);
        if (reply)
            s_gathered (self, gid, reply);
    }
}

//  A lost worker's attempt fails with WorkerLost through its shard, which
//  records it durably and retries it by the step's policy.
static void
s_worker_lost (void *arg, const char *worker, const char *text)
{
    self_t *self = arg;
    shf_token_t token;
    if (!s_open_token (self, NULL, 0, text, &token))
        return;
    json_t *fail =
        json_pack ("{s:s, s:I, s:s, s:{s:s, s:s}}", "op", "fail", "id",
                   (json_int_t) 0, "token", text, "error", "type", "WorkerLost",
                   "message", "the worker's connection was lost");
    s_to_shard (self, token.shard, fail, s_token_note (&token, worker));
}

static void
s_housekeeping (self_t *self)
{
    int64_t now = shf_clock_mono_us () / 1000;
    size_t lost = shf_workers_expire (self->workers, now, SHF_WORKER_SILENCE_MS,
                                      s_worker_lost, self);
    if (lost)
        shf_info ("router: %zu worker(s) lost", lost);
    shf_matcher_expire (self->matcher, now, SHF_POLLER_SILENCE_MS);
    zlistx_t *tokens = zhashx_keys (self->canceled);
    for (const char *t = zlistx_first (tokens); t; t = zlistx_next (tokens)) {
        int64_t *expiry = zhashx_lookup (self->canceled, t);
        if (*expiry < now)
            zhashx_delete (self->canceled, t);
    }
    zlistx_destroy (&tokens);
}

//  --------------------------------------------------------------------
//  Start and stop

static void
s_free_box (void **item)
{
    free (*item);
    *item = NULL;
}

static shf_err_t
s_start (self_t *self)
{
    shf_router_args_t *args = self->args;
    //  Pipes carry pointers whose loss would leak or lose work; never drop.
    zsys_set_pipehwm (0);
    self->n_shards = args->shards;
    self->shards = calloc (args->shards, sizeof (zactor_t *));
    self->shard_args = calloc (args->shards, sizeof (shf_shard_args_t));
    assert (self->shards && self->shard_args);
    char **dirs = calloc (args->shards, sizeof (char *));
    assert (dirs);
    //  Bound before any shard starts its reader, which connects to it.
    self->readers = zsock_new (ZMQ_PULL);
    assert (self->readers);
    zsock_set_rcvhwm (self->readers, 0);
    snprintf (self->readers_endpoint, sizeof self->readers_endpoint,
              "inproc://shf-readers-%p", (void *) self);
    int brc = zsock_bind (self->readers, "%s", self->readers_endpoint);
    assert (brc == 0);
    shf_err_t rc = SHF_OK;
    for (uint32_t i = 0; i < args->shards; i++) {
        dirs [i] = zsys_sprintf ("%s/shards/%04u", args->data_dir, i);
        shf_shard_args_t *sa = &self->shard_args [i];
        sa->id = i;
        sa->dir = dirs [i];
        sa->durable = args->durable;
        sa->replies = self->readers_endpoint;
        memcpy (sa->token_key, args->token_key, SHF_TOKEN_KEY_BYTES);
        self->shards [i] = zactor_new (shf_shard, sa);
        if (sa->status != SHF_OK && rc == SHF_OK) {
            shf_error ("shard %u: cannot open %s: %s", i, dirs [i],
                       shf_strerror (sa->status));
            rc = sa->status;
        }
    }
    for (uint32_t i = 0; i < args->shards; i++)
        zstr_free (&dirs [i]);
    free (dirs);
    if (rc)
        return rc;
    self->frontend = zsock_new (ZMQ_ROUTER);
    zsock_set_sndhwm (self->frontend, 0);
    zsock_set_router_mandatory (self->frontend, 1);
    zsock_set_rcvhwm (self->frontend, 100000);
    //  Frames up to 8x the limit are read and answered too_large; beyond
    //  that ZeroMQ drops the connection before buffering them.
    zsock_set_maxmsgsize (self->frontend, (int64_t) SHF_MSG_MAX_FRAME * 8);
    zsock_set_heartbeat_ivl (self->frontend, 1000);
    zsock_set_heartbeat_timeout (self->frontend, 3000);
    char listen [300];
    snprintf (listen, sizeof listen, "%s", args->listen);
    size_t len = strlen (listen);
    if (len > 2 && strcmp (listen + len - 2, ":0") == 0)
        strcpy (listen + len - 1, "*");
    if (zsock_bind (self->frontend, "%s", listen) < 0) {
        shf_error ("cannot bind %s: %s", args->listen,
                   zmq_strerror (zmq_errno ()));
        return SHF_EUNAVAIL;
    }
    //  CZMQ 4.2 returns a fresh string here: the caller frees it.
    char *bound = zsock_last_endpoint (self->frontend);
    snprintf (args->endpoint, sizeof args->endpoint, "%s", bound ? bound : "");
    zstr_free (&bound);
    return SHF_OK;
}

//  --------------------------------------------------------------------
//  The loop
//
//  zmq_poll and zsock_events are what made the router expensive: libzmq
//  answers each ZMQ_EVENTS query, and each receive that finds nothing, by
//  draining the socket's command mailbox, which costs a poll() syscall
//  (and a getpid) per socket per question; zmq_poll asks it of every item
//  twice per sleep. So the loop polls the sockets' ZMQ_FDs itself and asks
//  each socket only when there is a reason to:
//
//  - a socket's ZMQ_FD turns readable when a command reaches its mailbox
//    (an arrival on an idle pipe is one), and stays quiet once a receive
//    has returned EAGAIN, since that receive took every pending command;
//  - so a source is read until EAGAIN, or until a burst, after which it is
//    still "ready" and read again before the loop sleeps;
//  - sending on a socket may take in its pending commands too (libzmq does
//    so at most about once a millisecond), swallowing the wake-up of an
//    arrival: every send marks its socket ready, so it is read once more
//    before the loop sleeps.

#define SHF_ROUTER_BURST      256
#define SHF_ROUTER_MAX_FRAMES 4  //  the longest message the router reads

//  Handles up to a burst of messages from one source.
static void
s_drain (self_t *self, uint32_t index)
{
    s_source_t *source = &self->sources [index];
    for (int burst = 0; burst < SHF_ROUTER_BURST; burst++) {
        zmq_msg_t frames [SHF_ROUTER_MAX_FRAMES];
        int count =
            shf_frames_recv (source->handle, frames, SHF_ROUTER_MAX_FRAMES);
        if (count < 0) {
            //  EAGAIN, or the context is ending: the fd tells what's next.
            source->ready = false;
            if (index == SHF_ROUTER_PIPE && zmq_errno () != EAGAIN)
                self->terminated = true;
            return;
        }
        if (index == SHF_ROUTER_PIPE) {
            if (shf_frames_is (&frames [0], "$TERM"))
                self->terminated = true;
        }
        else if (index == SHF_ROUTER_FRONTEND)
            s_frontend (self, frames, count);
        else
            s_from_shard (self, frames, count);
        shf_frames_close (frames, count, SHF_ROUTER_MAX_FRAMES);
        if (self->terminated)
            return;
    }
    source->ready = true;
}

static void
s_open_sources (self_t *self)
{
    self->n_sources = SHF_ROUTER_SHARD0 + self->n_shards + 1;
    self->sources = calloc (self->n_sources, sizeof (s_source_t));
    self->pollfds = calloc (self->n_sources, sizeof (struct pollfd));
    assert (self->sources && self->pollfds);
    self->sources [SHF_ROUTER_PIPE].handle = zsock_resolve (self->pipe);
    self->sources [SHF_ROUTER_FRONTEND].handle =
        self->frontend ? zsock_resolve (self->frontend) : NULL;
    for (uint32_t i = 0; i < self->n_shards; i++)
        self->sources [SHF_ROUTER_SHARD0 + i].handle =
            zsock_resolve (self->shards [i]);
    //  read like a shard pipe (s_from_shard); the router never sends on it
    self->sources [SHF_ROUTER_SHARD0 + self->n_shards].handle =
        self->readers ? zsock_resolve (self->readers) : NULL;
    for (uint32_t i = 0; i < self->n_sources; i++) {
        s_source_t *source = &self->sources [i];
        struct pollfd *pfd = &self->pollfds [i];
        pfd->fd = -1;  //  poll skips it
        pfd->events = POLLIN;
        if (!source->handle)
            continue;
        size_t fd_size = sizeof pfd->fd;
        int rc = zmq_getsockopt (source->handle, ZMQ_FD, &pfd->fd, &fd_size);
        assert (rc == 0);
        //  Whatever came before the first poll has no wake-up of its own.
        source->ready = true;
    }
}

void
shf_router (zsock_t *pipe, void *vargs)
{
    self_t self_s;
    shf_thread_enter ("shf-router");
    self_t *self = &self_s;
    memset (self, 0, sizeof *self);
    self->pipe = pipe;
    self->args = vargs;
    self->map =
        shf_shardmap_new (self->args->shards, self->args->cluster_key, "local");
    self->matcher = shf_matcher_new (s_dispatch, shf_shard_task_free, self);
    self->gathers = zhashx_new ();
    zhashx_set_destructor (self->gathers, s_gather_free);
    self->canceled = zhashx_new ();
    zhashx_set_key_hasher (self->canceled, shf_token_hash);
    zhashx_set_destructor (self->canceled, s_free_box);
    self->workers = shf_workers_new ();
    const char *hb_min = getenv ("SHF_HEARTBEAT_MIN_MS");
    self->heartbeat_min_ms = hb_min ? atoll (hb_min) : 100;

    self->args->status = s_start (self);
    zsock_signal (pipe, 0);

    s_open_sources (self);
    int64_t last_housekeeping = shf_clock_mono_us ();
    int64_t last_sweep = last_housekeeping;
    while (!self->terminated) {
        bool pending = false;
        for (uint32_t i = 0; i < self->n_sources; i++)
            pending = pending || self->sources [i].ready;
        //  A failed poll (an interruption) is a wake-up with nothing new.
        //  Every 200 ms, busy or not, every source is read once: should an
        //  edge ever be missed, a message waits that long, not forever.
        int n = poll (self->pollfds, self->n_sources, pending ? 0 : 200);
        int64_t now_us = shf_clock_mono_us ();
        bool sweep = now_us - last_sweep >= 200000;
        if (sweep)
            last_sweep = now_us;
        for (uint32_t i = 0; i < self->n_sources; i++)
            if ((n > 0 && self->pollfds [i].revents) || sweep)
                self->sources [i].ready = true;
        if (self->sources [SHF_ROUTER_PIPE].ready)
            s_drain (self, SHF_ROUTER_PIPE);
        for (uint32_t i = SHF_ROUTER_SHARD0;
             i < self->n_sources && !self->terminated; i++)
            if (self->sources [i].ready)
                s_drain (self, i);
        if (self->sources [SHF_ROUTER_FRONTEND].ready && !self->terminated)
            s_drain (self, SHF_ROUTER_FRONTEND);
        int64_t now = shf_clock_mono_us ();
        if (now - last_housekeeping > 1000000) {
            s_housekeeping (self);
            last_housekeeping = now;
        }
    }
    free (self->sources);
    free (self->pollfds);
    for (uint32_t i = 0; i < self->n_shards; i++)
        zactor_destroy (&self->shards [i]);
    zsock_destroy (&self->readers);  //  after the readers ended
    zsock_destroy (&self->frontend);
    free (self->shards);
    free (self->shard_args);
    zhashx_destroy (&self->gathers);
    zhashx_destroy (&self->canceled);
    shf_matcher_destroy (&self->matcher);
    shf_workers_destroy (&self->workers);
    shf_shardmap_destroy (&self->map);
}
