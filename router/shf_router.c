/*  shf_router.c - frontend ROUTER, request routing, gathers, matcher.

    One thread, one poll loop over the frontend socket and every shard's
    pipe. The router holds no durable state: everything it forwards is
    either a request (the shard decides and commits) or something a shard
    already committed (replies, tasks), so a crash of the node loses
    nothing that was acknowledged.
*/
#include "shf_router.h"
#include "shf_clock.h"
#include "shf_fs.h"
#include "shf_log.h"
#include "shf_matcher.h"
#include "shf_msg.h"
#include "shf_shard.h"
#include "shf_workers.h"
#include <sodium.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>

#define SHF_POLLER_SILENCE_MS 3000
#define SHF_CANCELED_TTL_MS   (10 * 60 * 1000)
//  Workers send a keepalive each second: four missed ones and it is lost.
#define SHF_WORKER_SILENCE_MS 4000

typedef struct {
    zframe_t *identity;
    uint64_t id;
    char op [32];
    uint32_t remaining;
    json_t *first;  //  the answer of the lowest shard
    json_t *error;  //  the first error answer
    json_t *items;  //  wf_list: merged workflows
    int64_t limit;
} s_gather_t;

typedef struct {
    zsock_t *pipe;
    shf_router_args_t *args;
    zsock_t *frontend;
    shf_shardmap_t *map;
    shf_matcher_t *matcher;
    zactor_t **shards;
    shf_shard_args_t *shard_args;
    uint32_t n_shards;
    zhashx_t *gathers;  //  "id" -> s_gather_t
    uint32_t next_gather;
    zhashx_t *canceled;  //  token -> expiry (ms, boxed)
    shf_workers_t *workers;
    int64_t heartbeat_min_ms;  //  told to workers: throttle heartbeats
    bool terminated;
} self_t;

static void
s_identity_text (zframe_t *identity, char *buf, size_t size)
{
    sodium_bin2hex (buf, size, zframe_data (identity), zframe_size (identity));
}

//  Sends [identity][body] on the frontend. The socket is ROUTER_MANDATORY:
//  a peer whose connection is gone makes the send fail (and the message is
//  dropped here) instead of vanishing silently. Returns whether it left.
static bool
s_route (self_t *self, zmsg_t **msg_p)
{
    if (zmsg_send (msg_p, self->frontend) == 0)
        return true;
    zmsg_destroy (msg_p);
    return false;
}

//  Returns false when the message cannot be encoded or the peer is gone.
static bool
s_send_frontend (self_t *self, zframe_t *identity, const json_t *msg)
{
    char *data;
    size_t size;
    if (shf_msg_encode (msg, &data, &size) != SHF_OK)
        return false;
    zmsg_t *m = zmsg_new ();
    zmsg_addmem (m, zframe_data (identity), zframe_size (identity));
    zmsg_addmem (m, data, size);
    free (data);
    return s_route (self, &m);
}

static void
s_error (self_t *self, zframe_t *identity, uint64_t id, shf_err_t err,
         const char *message)
{
    json_t *reply = shf_msg_reply_error (id, err, message);
    s_send_frontend (self, identity, reply);
    json_decref (reply);
}

//  Sends a request to a shard; msg is taken.
static void
s_to_shard (self_t *self, uint32_t shard, const char *cmd, zframe_t *identity,
            json_t *msg)
{
    zmsg_t *m = zmsg_new ();
    zmsg_addstr (m, cmd);
    if (identity)
        zmsg_addmem (m, zframe_data (identity), zframe_size (identity));
    else
        zmsg_addmem (m, "", 0);
    zmsg_addmem (m, &msg, sizeof (void *));
    zmsg_send (&m, self->shards [shard]);
}

static void s_worker_lost (void *arg, const char *worker, const char *text);

//  Matcher callback: push a task to a worker, tell its shard. A worker
//  whose connection is gone is lost at once (the tasks it held fail as
//  WorkerLost) and the task goes to another poller.
static bool
s_dispatch (void *arg, const char *worker, const json_t *task)
{
    self_t *self = arg;
    unsigned char raw [256];
    size_t raw_len;
    if (sodium_hex2bin (raw, sizeof raw, worker, strlen (worker), NULL,
                        &raw_len, NULL)
        != 0)
        return false;
    char *data;
    size_t size;
    if (shf_msg_encode (task, &data, &size) != SHF_OK) {
        //  Shards bound what they render, so this is a bug: say so rather
        //  than record an ActivityStarted for a task nobody got.
        shf_error ("router: task %s cannot be encoded; not dispatched",
                   json_string_value (json_object_get (task, "token")));
        return true;  //  the task is dropped; the worker is fine
    }
    zmsg_t *m = zmsg_new ();
    zmsg_addmem (m, raw, raw_len);
    zmsg_addmem (m, data, size);
    free (data);
    if (!s_route (self, &m)) {
        shf_workers_lose (self->workers, worker, s_worker_lost, self);
        return false;
    }
    shf_workers_track (self->workers, worker,
                       json_string_value (json_object_get (task, "token")),
                       shf_clock_mono_us () / 1000);
    const char *ns = json_string_value (json_object_get (task, "ns"));
    const char *wf_id = json_string_value (json_object_get (task, "wf_id"));
    json_t *note =
        json_pack ("{s:s, s:s, s:O, s:O, s:O, s:s}", "ns", ns, "wf_id", wf_id,
                   "run_id", json_object_get (task, "run_id"), "step",
                   json_object_get (task, "step"), "attempt",
                   json_object_get (task, "attempt"), "worker", worker);
    uint32_t shard = shf_shardmap_locate (self->map, ns, wf_id);
    zmsg_t *note_msg = zmsg_new ();
    zmsg_addstr (note_msg, "DISPATCHED");
    zmsg_addmem (note_msg, &note, sizeof (void *));
    zmsg_send (&note_msg, self->shards [shard]);
    return true;
}

//  --------------------------------------------------------------------
//  Gathers

static void
s_gather_free (void **item)
{
    s_gather_t *g = *item;
    if (g) {
        zframe_destroy (&g->identity);
        json_decref (g->first);
        json_decref (g->error);
        json_decref (g->items);
        free (g);
    }
    *item = NULL;
}

static void
s_gather_start (self_t *self, zframe_t *identity, uint64_t id, json_t *msg,
                bool all_shards)
{
    s_gather_t *g = calloc (1, sizeof *g);
    assert (g);
    g->identity = zframe_dup (identity);
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
        zmsg_t *m = zmsg_new ();
        zmsg_addstr (m, "GATHER");
        zmsg_addmem (m, &gid, 4);
        json_t *copy =
            s + 1 < g->remaining ? json_deep_copy (msg) : json_incref (msg);
        zmsg_addmem (m, &copy, sizeof (void *));
        zmsg_send (&m, self->shards [s]);
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
    s_send_frontend (self, g->identity, answer);
    json_decref (answer);
    zhashx_delete (self->gathers, key);
}

//  --------------------------------------------------------------------
//  Frontend requests

static bool
s_open_token (self_t *self, zframe_t *identity, uint64_t id, const char *text,
              shf_token_t *token)
{
    shf_err_t rc = shf_token_open (text, self->args->token_key, token);
    if (rc == SHF_OK && token->shard >= self->n_shards)
        rc = SHF_EINVAL;
    if (rc) {
        if (identity)
            s_error (self, identity, id,
                     rc == SHF_EAUTH ? SHF_EAUTH : SHF_EINVAL,
                     "task token is not valid");
        return false;
    }
    return true;
}

static json_t *
s_token_json (const shf_token_t *token)
{
    return json_pack ("{s:s, s:s, s:s, s:s, s:i}", "ns", token->ns, "wf_id",
                      token->wf_id, "run_id", token->run_id, "step",
                      token->step, "attempt", (int) token->attempt);
}

static void
s_frontend (self_t *self)
{
    zmsg_t *m = zmsg_recv (self->frontend);
    if (!m)
        return;
    zframe_t *identity = zmsg_pop (m);
    zframe_t *body = zmsg_pop (m);
    if (!identity || !body || zmsg_size (m) != 0) {
        if (identity)
            s_error (self, identity, 0, SHF_EINVAL,
                     "a request is exactly one frame");
        goto done;
    }
    json_t *msg = NULL;
    shf_op_t op;
    uint64_t id = 0;
    char err [300];
    shf_err_t rc = shf_msg_decode (zframe_data (body), zframe_size (body), &msg,
                                   &op, &id, err, sizeof err);
    if (rc) {
        s_error (self, identity, id, rc, err);
        goto done;
    }
    if (!json_object_get (msg, "ns") && op != SHF_OP_POLL
        && op != SHF_OP_COMPLETE && op != SHF_OP_FAIL && op != SHF_OP_HEARTBEAT)
        json_object_set_new (msg, "ns", json_string ("default"));
    const char *ns = json_string_value (json_object_get (msg, "ns"));
    char worker [520];
    s_identity_text (identity, worker, sizeof worker);
    int64_t now_ms = shf_clock_mono_us () / 1000;
    shf_workers_seen (self->workers, worker, now_ms);
    switch (op) {
        case SHF_OP_WF_START:
            if (!json_object_get (msg, "wf_id")) {
                //  SPEC: derived from the request id, else random.
                const char *rid =
                    json_string_value (json_object_get (msg, "request_id"));
                char random [40];
                if (!rid) {
                    unsigned char raw [16];
                    randombytes_buf (raw, sizeof raw);
                    sodium_bin2hex (random, sizeof random, raw, sizeof raw);
                    rid = random;
                }
                json_object_set_new (msg, "wf_id", json_string (rid));
            }
            /* fallthrough */
        case SHF_OP_WF_RESULT:
        case SHF_OP_WF_DESCRIBE:
        case SHF_OP_WF_HISTORY:
        case SHF_OP_WF_SIGNAL:
        case SHF_OP_WF_CANCEL:
        case SHF_OP_WF_TERMINATE: {
            const char *wf_id =
                json_string_value (json_object_get (msg, "wf_id"));
            uint32_t shard = shf_shardmap_locate (self->map, ns, wf_id);
            s_to_shard (self, shard, "REQ", identity, msg);
            msg = NULL;
            break;
        }
        case SHF_OP_DEF_REGISTER:
        case SHF_OP_WF_LIST:
            s_gather_start (self, identity, id, msg, true);
            break;
        case SHF_OP_DEF_LIST:
        case SHF_OP_DEF_SHOW:
            s_gather_start (self, identity, id, msg, false);
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
                shf_msg_int (msg, "credit", 0), now_ms);
            break;
        case SHF_OP_COMPLETE:
        case SHF_OP_FAIL: {
            shf_token_t token;
            if (!s_open_token (
                    self, identity, id,
                    json_string_value (json_object_get (msg, "token")), &token))
                break;
            shf_workers_release (
                self->workers,
                json_string_value (json_object_get (msg, "token")));
            json_object_set_new (msg, "_token", s_token_json (&token));
            json_object_set_new (msg, "worker", json_string (worker));
            s_to_shard (self, token.shard, "REQ", identity, msg);
            msg = NULL;
            break;
        }
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
                json_t *hb = json_pack ("{s:s, s:I, s:o, s:O, s:s}", "op", "hb",
                                        "id", (json_int_t) 0, "_token",
                                        s_token_json (&token), "details",
                                        json_object_get (item, "details")
                                            ? json_object_get (item, "details")
                                            : json_null (),
                                        "worker", worker);
                s_to_shard (self, token.shard, "REQ", NULL, hb);
            }
            json_t *reply = shf_msg_reply_ok (
                id, json_pack ("{s:o, s:I}", "canceled", canceled,
                               "min_interval_ms",
                               (json_int_t) self->heartbeat_min_ms));
            s_send_frontend (self, identity, reply);
            json_decref (reply);
            break;
        }
        default:
            s_error (self, identity, id, SHF_EINVAL,
                     "this operation is not accepted from clients");
            break;
    }
    json_decref (msg);
done:
    zframe_destroy (&identity);
    zframe_destroy (&body);
    zmsg_destroy (&m);
}

//  --------------------------------------------------------------------
//  Shard pipes

static void *
s_pop_ptr (zmsg_t *m)
{
    zframe_t *f = zmsg_pop (m);
    void *ptr = NULL;
    if (f && zframe_size (f) == sizeof (void *))
        memcpy (&ptr, zframe_data (f), sizeof (void *));
    zframe_destroy (&f);
    return ptr;
}

static void
s_from_shard (self_t *self, zactor_t *shard)
{
    zmsg_t *m = zmsg_recv (shard);
    if (!m)
        return;
    char *cmd = zmsg_popstr (m);
    if (!cmd)
        ;
    else if (streq (cmd, "REPLY"))
        //  [identity][encoded reply]: forward as is.
        s_route (self, &m);
    else if (streq (cmd, "TASK")) {
        json_t *task = s_pop_ptr (m);
        if (task)
            shf_matcher_add_task (self->matcher, &task);
    }
    else if (streq (cmd, "CANCEL")) {
        char *queue = zmsg_popstr (m);
        char *token = zmsg_popstr (m);
        if (queue && token) {
            shf_matcher_cancel (self->matcher, queue, token);
            int64_t *expiry = malloc (sizeof *expiry);
            *expiry = shf_clock_mono_us () / 1000 + SHF_CANCELED_TTL_MS;
            zhashx_update (self->canceled, token, expiry);
        }
        zstr_free (&queue);
        zstr_free (&token);
    }
    else if (streq (cmd, "GATHERED")) {
        zframe_t *f = zmsg_pop (m);
        uint32_t gid = 0;
        if (f && zframe_size (f) == 4)
            memcpy (&gid, zframe_data (f), 4);
        zframe_destroy (&f);
        json_t *reply = s_pop_ptr (m);
        if (reply)
            s_gathered (self, gid, reply);
    }
    zstr_free (&cmd);
    zmsg_destroy (&m);
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
    json_t *fail = json_pack (
        "{s:s, s:I, s:s, s:o, s:{s:s, s:s}, s:s}", "op", "fail", "id",
        (json_int_t) 0, "token", text, "_token", s_token_json (&token), "error",
        "type", "WorkerLost", "message", "the worker's connection was lost",
        "worker", worker);
    s_to_shard (self, token.shard, "REQ", NULL, fail);
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
    shf_err_t rc = SHF_OK;
    for (uint32_t i = 0; i < args->shards; i++) {
        dirs [i] = zsys_sprintf ("%s/shards/%04u", args->data_dir, i);
        shf_shard_args_t *sa = &self->shard_args [i];
        sa->id = i;
        sa->dir = dirs [i];
        sa->durable = args->durable;
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

void
shf_router (zsock_t *pipe, void *vargs)
{
    self_t self_s;
    //  Signals belong to the process's main thread: one landing here would
    //  interrupt a socket call (CZMQ's zsock_events then reads garbage).
    sigset_t all;
    sigfillset (&all);
    pthread_sigmask (SIG_BLOCK, &all, NULL);
    self_t *self = &self_s;
    memset (self, 0, sizeof *self);
    self->pipe = pipe;
    self->args = vargs;
    self->map =
        shf_shardmap_new (self->args->shards, self->args->cluster_key, "local");
    self->matcher = shf_matcher_new (s_dispatch, self);
    self->gathers = zhashx_new ();
    zhashx_set_destructor (self->gathers, s_gather_free);
    self->canceled = zhashx_new ();
    zhashx_set_destructor (self->canceled, s_free_box);
    self->workers = shf_workers_new ();
    const char *hb_min = getenv ("SHF_HEARTBEAT_MIN_MS");
    self->heartbeat_min_ms = hb_min ? atoll (hb_min) : 100;

    self->args->status = s_start (self);
    zsock_signal (pipe, 0);

    uint32_t n_items = self->n_shards + 2;
    zmq_pollitem_t *items = calloc (n_items, sizeof *items);
    assert (items);
    items [0].socket = zsock_resolve (pipe);
    items [0].events = ZMQ_POLLIN;
    items [1].socket = self->frontend ? zsock_resolve (self->frontend) : NULL;
    items [1].events = self->frontend ? ZMQ_POLLIN : 0;
    for (uint32_t i = 0; i < self->n_shards; i++) {
        items [i + 2].socket = zsock_resolve (self->shards [i]);
        items [i + 2].events = ZMQ_POLLIN;
    }
    int64_t last_housekeeping = shf_clock_mono_us ();
    while (!self->terminated) {
        if (zmq_poll (items, (int) n_items, 200) < 0)
            break;
        if (items [0].revents & ZMQ_POLLIN) {
            char *cmd = zstr_recv (pipe);
            if (!cmd || streq (cmd, "$TERM"))
                self->terminated = true;
            zstr_free (&cmd);
        }
        //  Shards first: replies and tasks free memory and credit.
        for (uint32_t i = 0; i < self->n_shards; i++)
            for (int burst = 0; burst < 256; burst++) {
                if (zsock_events (self->shards [i]) & ZMQ_POLLIN)
                    s_from_shard (self, self->shards [i]);
                else
                    break;
            }
        if (self->frontend)
            for (int burst = 0; burst < 256; burst++) {
                if (zsock_events (self->frontend) & ZMQ_POLLIN)
                    s_frontend (self);
                else
                    break;
            }
        int64_t now = shf_clock_mono_us ();
        if (now - last_housekeeping > 1000000) {
            s_housekeeping (self);
            last_housekeeping = now;
        }
    }
    free (items);
    for (uint32_t i = 0; i < self->n_shards; i++)
        zactor_destroy (&self->shards [i]);
    zsock_destroy (&self->frontend);
    free (self->shards);
    free (self->shard_args);
    zhashx_destroy (&self->gathers);
    zhashx_destroy (&self->canceled);
    shf_matcher_destroy (&self->matcher);
    shf_workers_destroy (&self->workers);
    shf_shardmap_destroy (&self->map);
}
