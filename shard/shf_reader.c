/*  shf_reader.c - a shard's reader: describe, history, lists and
    definitions from read-only transactions (see shf_reader.h).

    One message, one transaction: begin, read, abort, then send. A read
    never writes and never fences anything: a storage error is that
    request's answer. Definitions are compiled into the reader's own small
    cache (shf_defs), since the shard's cache belongs to the shard's thread.
*/
#include "shf_reader.h"
#include "shf_clock.h"
#include "shf_defs.h"
#include "shf_failpoint.h"
#include "shf_event.h"
#include "shf_keys.h"
#include "shf_log.h"
#include "shf_runs.h"
#include "shf_msg.h"
#include "shf_reply.h"
#include "shf_thread.h"
#include "shf_workflow.h"
#include <string.h>

//  Definitions a reader keeps compiled (describe needs the run's one).
#define SHF_READER_DEFS_MAX 256
//  A filtered list reads at most this many index entries per shard, so a
//  filter that matches nothing answers soon.
#define SHF_READER_LIST_SCAN 10000
//  A history page: this many events unless the request asks for fewer,
//  and no more stored bytes than this, so an answer fits its frame and a
//  long history is read in short transactions.
#define SHF_READER_HISTORY_PAGE  1000
#define SHF_READER_HISTORY_BYTES (1024 * 1024)

typedef struct {
    zsock_t *pipe;
    shf_reader_args_t *args;
    zsock_t *replies;  //  PUSH to the router
    shf_defs_t *defs;
    shf_txn_t *txn;  //  the read transaction of the message being served
} self_t;

bool
shf_reader_serves (const char *op, bool gather)
{
    if (!op)
        return false;
    if (gather)
        return strcmp (op, "wf_list") == 0 || strcmp (op, "def_list") == 0
               || strcmp (op, "def_show") == 0;
    //  Requests are the hot path (wf_start, complete, fail, hb): most
    //  leave at the first or fourth byte.
    return op [0] == 'w' && op [1] == 'f' && op [2] == '_'
           && (strcmp (op + 3, "describe") == 0
               || strcmp (op + 3, "history") == 0);
}

//  --------------------------------------------------------------------
//  Small helpers

static json_t *
s_time_json (int64_t ms)
{
    if (ms <= 0)
        return json_null ();
    char buf [40];
    shf_clock_format (ms, buf, sizeof buf);
    return json_string (buf);
}

static const char *
s_str (const json_t *obj, const char *field)
{
    return json_string_value (json_object_get (obj, field));
}

//  Called for each record under a prefix, in key order, with its key past
//  the prefix; takes the record. Returns false to stop the scan.
typedef bool (s_scan_fn) (void *arg, const unsigned char *key, size_t klen,
                          json_t *record);

static shf_err_t
s_scan (self_t *self, shf_db_t db, const shf_key_t *prefix, s_scan_fn *fn,
        void *arg)
{
    shf_cursor_t *cur;
    shf_err_t rc = shf_cursor_open (self->txn, db, &cur);
    if (rc)
        return rc;
    const void *k, *v;
    size_t kl, vl;
    rc = shf_cursor_seek (cur, prefix->data, prefix->size, &k, &kl, &v, &vl);
    while (rc == SHF_OK && kl > prefix->size
           && memcmp (k, prefix->data, prefix->size) == 0) {
        json_t *record;
        rc = shf_store_decode (db, v, vl, &record);
        if (rc
            || !fn (arg, (const unsigned char *) k + prefix->size,
                    kl - prefix->size, record))
            break;
        rc = shf_cursor_next (cur, &k, &kl, &v, &vl);
    }
    shf_cursor_close (&cur);
    return rc == SHF_ENOTFOUND ? SHF_OK : rc;
}

//  --------------------------------------------------------------------
//  Requests: each builds its whole reply (*reply_p) or returns a storage
//  error.

//  The not_found answer to a request for a workflow with no run.
static json_t *
s_not_found (uint64_t id, const char *ns, const char *wf_id)
{
    char why [400];
    snprintf (why, sizeof why, "no workflow \"%s\" in namespace \"%s\"", wf_id,
              ns);
    return shf_msg_reply_error (id, SHF_ENOTFOUND, why);
}

//  Loads the current run a request names; *reply_p is set to not_found
//  when there is none.
static shf_err_t
s_find_run (self_t *self, uint64_t id, const json_t *msg, shf_run_t **state_p,
            json_t **reply_p)
{
    const char *ns = s_str (msg, "ns");
    const char *wf_id = s_str (msg, "wf_id");
    shf_err_t rc = shf_runs_load (self->txn, ns, wf_id, state_p);
    if (rc == SHF_ENOTFOUND) {
        *reply_p = s_not_found (id, ns, wf_id);
        return SHF_OK;
    }
    return rc;
}

static shf_err_t
s_wf_describe (self_t *self, uint64_t id, const json_t *msg, json_t **reply_p)
{
    shf_run_t *state = NULL;
    shf_err_t rc = s_find_run (self, id, msg, &state, reply_p);
    if (rc || *reply_p)
        return rc;
    const shf_def_t *def;
    rc = shf_defs_load (self->defs, self->txn, shf_workflow_ns (state),
                        shf_workflow_def_name (state),
                        shf_workflow_def_version (state), &def);
    if (rc == SHF_OK) {
        json_t *body = shf_workflow_describe (def, state);
        json_object_set_new (body, "shard", json_integer (self->args->id));
        *reply_p = shf_msg_reply_ok (id, body);
    }
    shf_run_decref (state);
    return rc;
}

//  Whether a history key is one of run's.
static bool
s_in_run (const void *k, size_t kl, const shf_key_t *run)
{
    return kl == run->size + 8 && memcmp (k, run->data, run->size) == 0;
}

//  Moves the cursor to the record that holds event first_id: a record is
//  a transition's events, keyed by the first one's id, so the one at or
//  after first_id may be preceded by one that holds it.
static shf_err_t
s_history_seek (shf_cursor_t *cur, const shf_key_t *run, const shf_key_t *from,
                const void **k, size_t *kl, const void **v, size_t *vl)
{
    shf_err_t rc = shf_cursor_seek (cur, from->data, from->size, k, kl, v, vl);
    if (rc == SHF_OK && *kl == from->size
        && memcmp (*k, from->data, from->size) == 0)
        return SHF_OK;
    if (rc != SHF_OK && rc != SHF_ENOTFOUND)
        return rc;
    shf_err_t back = rc == SHF_OK ? shf_cursor_prev (cur, k, kl, v, vl)
                                  : shf_cursor_last (cur, k, kl, v, vl);
    if (back == SHF_OK && s_in_run (*k, *kl, run))
        return SHF_OK;
    if (back != SHF_OK && back != SHF_ENOTFOUND)
        return back;
    return shf_cursor_seek (cur, from->data, from->size, k, kl, v, vl);
}

//  One page of a run's history: events from first_id on, at most max of
//  them and about SHF_READER_HISTORY_BYTES; *next_id_p is the first id
//  not returned when more follow, else 0. A record holds one transition's
//  events, packed (shf_event.h) or in a form written before.
static shf_err_t
s_history_page (self_t *self, const shf_key_t *run, uint64_t first_id,
                int64_t max, json_t *events, uint64_t *next_id_p)
{
    *next_id_p = 0;
    shf_key_t from = *run;
    shf_key_u64 (&from, first_id);
    if (from.overflow)
        return SHF_ETOOLARGE;
    //  The events leave the run's IDs and start to its placed key.
    shf_run_ids_t ids = shf_runs_key_ids (run);
    shf_cursor_t *cur;
    shf_err_t rc = shf_cursor_open (self->txn, SHF_DB_HISTORY, &cur);
    if (rc)
        return rc;
    const void *k, *v;
    size_t kl, vl, bytes = 0;
    rc = s_history_seek (cur, run, &from, &k, &kl, &v, &vl);
    while (rc == SHF_OK && s_in_run (k, kl, run) && !*next_id_p) {
        uint64_t key_id = shf_key_get_u64 ((const char *) k + run->size);
        if (bytes > 0 && bytes + vl > SHF_READER_HISTORY_BYTES) {
            *next_id_p = key_id > first_id ? key_id : first_id;
            break;
        }
        json_t *stored;
        rc = shf_store_decode (SHF_DB_HISTORY, v, vl, &stored);
        if (rc)
            break;
        json_t *record = shf_event_unpack (stored, (int64_t) key_id, &ids);
        json_decref (stored);
        if (!record) {
            shf_error ("reader %u: a history record that is not one",
                       self->args->id);
            rc = SHF_ECORRUPT;
            break;
        }
        size_t i;
        json_t *event;
        json_array_foreach (record, i, event)
        {
            json_t *id = json_object_get (event, "id");
            if (json_integer_value (id) < (json_int_t) first_id)
                continue;
            if ((int64_t) json_array_size (events) >= max) {
                *next_id_p = (uint64_t) json_integer_value (id);
                break;
            }
            json_t *t = json_object_get (event, "time");
            if (json_is_integer (t))
                json_object_set_new (event, "time",
                                     s_time_json (json_integer_value (t)));
            json_array_append (events, event);
        }
        json_decref (record);
        bytes += vl;
        if (!*next_id_p)
            rc = shf_cursor_next (cur, &k, &kl, &v, &vl);
    }
    shf_cursor_close (&cur);
    return rc == SHF_ENOTFOUND ? SHF_OK : rc;
}

//  The current run's history from its start, or from a page token.
static shf_err_t
s_wf_history (self_t *self, uint64_t id, const json_t *msg, json_t **reply_p)
{
    const char *ns = s_str (msg, "ns");
    const char *wf_id = s_str (msg, "wf_id");
    const char *token = s_str (msg, "page_token");
    char run_id [SHF_MSG_MAX_NAME + 1];
    int64_t started_at = -1;
    uint64_t first_id = 1;
    if (token
        && !shf_msg_page_token_parse (token, run_id, sizeof run_id, &started_at,
                                      &first_id)) {
        *reply_p = shf_msg_reply_error (id, SHF_EINVAL,
                                        "\"page_token\" is not one this "
                                        "server gave");
        return SHF_OK;
    }
    shf_key_t run;
    if (token && started_at >= 0) {
        shf_key_init (&run);
        shf_key_placed (&run, started_at, ns, wf_id, run_id);
        if (run.overflow)
            return SHF_ETOOLARGE;
    }
    else {
        //  The current run; a token given before schema 2 names the run
        //  but not its start, so it must still be the current one.
        shf_err_t rc = shf_runs_find (self->txn, ns, wf_id, &run);
        if (rc == SHF_ENOTFOUND) {
            *reply_p = s_not_found (id, ns, wf_id);
            return SHF_OK;
        }
        if (rc)
            return rc;
        shf_run_ids_t ids = shf_runs_key_ids (&run);
        started_at = ids.started_at;
        if (token && strcmp (ids.run_id, run_id) != 0) {
            *reply_p = shf_msg_reply_error (
                id, SHF_EINVAL,
                "\"page_token\" names a run that is no longer current");
            return SHF_OK;
        }
        snprintf (run_id, sizeof run_id, "%s", ids.run_id);
    }
    json_t *events = json_array ();
    uint64_t next_id;
    shf_err_t rc =
        s_history_page (self, &run, first_id,
                        shf_msg_int (msg, "page_size", SHF_READER_HISTORY_PAGE),
                        events, &next_id);
    //  Tests hold the snapshot open here: the shard must go on committing.
    shf_failpoint ("reader.history");
    if (rc) {
        json_decref (events);
        return rc;
    }
    json_t *body = json_pack ("{s:o}", "events", events);
    if (next_id) {
        char next [SHF_MSG_PAGE_TOKEN_MAX];
        shf_msg_page_token_format (next, sizeof next, run_id, started_at,
                                   next_id);
        json_object_set_new (body, "next_page_token", json_string (next));
    }
    *reply_p = shf_msg_reply_ok (id, body);
    return SHF_OK;
}

//  --------------------------------------------------------------------
//  Gathers: one shard's part of a cluster-wide answer (id 0: the router
//  sets the request's).

static json_t *
s_def_summary (const json_t *record, bool with_doc)
{
    json_t *out = json_pack (
        "{s:O, s:O, s:o}", "name", json_object_get (record, "name"), "version",
        json_object_get (record, "version"), "registered_at",
        s_time_json (
            json_integer_value (json_object_get (record, "registered_at"))));
    if (with_doc)
        json_object_set (out, "definition", json_object_get (record, "doc"));
    return out;
}

static bool
s_def_listed (void *defs, const unsigned char *key, size_t klen, json_t *record)
{
    (void) key;
    (void) klen;
    json_array_append_new (defs, s_def_summary (record, false));
    json_decref (record);
    return true;
}

static shf_err_t
s_def_list (self_t *self, const json_t *msg, json_t **reply_p)
{
    shf_key_t prefix;
    shf_key_init (&prefix);
    shf_key_str (&prefix, s_str (msg, "ns"));
    json_t *defs = json_array ();
    shf_err_t rc = s_scan (self, SHF_DB_DEFS, &prefix, s_def_listed, defs);
    if (rc) {
        json_decref (defs);
        return rc;
    }
    *reply_p = shf_msg_reply_ok (0, json_pack ("{s:o}", "definitions", defs));
    return SHF_OK;
}

static shf_err_t
s_def_show (self_t *self, const json_t *msg, json_t **reply_p)
{
    json_t *record = NULL;
    shf_err_t rc =
        shf_defs_record (self->txn, s_str (msg, "ns"), s_str (msg, "name"),
                         shf_msg_int (msg, "version", 0), &record);
    if (rc == SHF_ENOTFOUND) {
        char why [400];
        snprintf (why, sizeof why, "no definition \"%s\"", s_str (msg, "name"));
        *reply_p = shf_msg_reply_error (0, SHF_ENOTFOUND, why);
        return SHF_OK;
    }
    if (rc)
        return rc;
    *reply_p = shf_msg_reply_ok (0, s_def_summary (record, true));
    json_decref (record);
    return SHF_OK;
}

typedef struct {
    const char *status;  //  filters (NULL: any)
    const char *name;
    int64_t limit;
    json_t *list;
    int64_t scanned;
    uint32_t shard;
    shf_txn_t *txn;
    const char *ns;
} s_listing_t;

//  The shard writes a run's index entry once, at its start (status
//  running): a listed run's status and closing time are its state's, read
//  here. An entry whose run state cannot be read (or an older one, which
//  the shard rewrote at close) keeps its own.
static void
s_wf_status (s_listing_t *l, const unsigned char *key_after_ns, json_t *item)
{
    const char *wf_id =
        json_string_value (json_object_get (item, "workflow_id"));
    const char *run_id = json_string_value (json_object_get (item, "run_id"));
    int64_t started_at = INT64_MAX - (int64_t) shf_key_get_u64 (key_after_ns);
    shf_key_t key;
    shf_key_init (&key);
    shf_key_placed (&key, started_at, l->ns, wf_id, run_id);
    const void *data;
    size_t size;
    if (key.overflow
        || shf_txn_get (l->txn, SHF_DB_RUNS, key.data, key.size, &data, &size)
               != SHF_OK)
        return;
    shf_run_ids_t ids = shf_runs_key_ids (&key);
    shf_run_t *run;
    if (shf_run_decode (data, size, &ids, &run) != SHF_OK)
        return;
    json_object_set_new (item, "status",
                         json_string (shf_run_status_name (run->status)));
    json_object_set_new (item, "closed_at",
                         run->has_closed_at ? s_time_json (run->closed_at)
                                            : json_null ());
    shf_run_decref (run);
}

//  A listed run from its index entry: packed (SHF_INDEX_PACKED, the IDs
//  and start time read from key: (INT64_MAX - started_at)(8) wf_id \0
//  run_id), or the map entries were before it. NULL when it is neither.
static json_t *
s_wf_entry (const unsigned char *key, size_t klen, const json_t *entry)
{
    if (json_is_object (entry)) {
        if (!json_is_string (json_object_get (entry, "workflow_id"))
            || !json_is_string (json_object_get (entry, "run_id"))
            || !json_is_string (json_object_get (entry, "name"))
            || !json_is_string (json_object_get (entry, "status")))
            return NULL;
        int64_t closed_at =
            json_integer_value (json_object_get (entry, "closed_at"));
        return json_pack ("{s:O, s:O, s:O, s:O, s:o, s:o}", "workflow_id",
                          json_object_get (entry, "workflow_id"), "run_id",
                          json_object_get (entry, "run_id"), "name",
                          json_object_get (entry, "name"), "status",
                          json_object_get (entry, "status"), "started_at",
                          s_time_json (json_integer_value (
                              json_object_get (entry, "started_at"))),
                          "closed_at", s_time_json (closed_at));
    }
    const unsigned char *nul = klen > 8 ? memchr (key + 8, 0, klen - 8) : NULL;
    json_int_t form = json_integer_value (json_array_get (entry, 0));
    json_int_t status = json_integer_value (json_array_get (entry, 3));
    const json_t *closed = json_array_get (entry, 4);
    if (!nul || json_array_size (entry) != 5 || form != SHF_INDEX_PACKED
        || !json_is_string (json_array_get (entry, 1)) || status < 0
        || status >= SHF_RUN_STATUS_COUNT
        || !(json_is_null (closed) || json_is_integer (closed)))
        return NULL;
    int64_t started_at = INT64_MAX - (int64_t) shf_key_get_u64 (key);
    int64_t closed_at =
        json_is_null (closed)
            ? 0
            : (int64_t) ((uint64_t) started_at
                         + (uint64_t) json_integer_value (closed));
    const char *wf_id = (const char *) key + 8;
    const char *run_id = (const char *) nul + 1;
    return json_pack (
        "{s:s%, s:s%, s:O, s:s, s:o, s:o}", "workflow_id", wf_id,
        (size_t) (nul - key - 8), "run_id", run_id,
        (size_t) (key + klen - nul - 1), "name", json_array_get (entry, 1),
        "status", shf_run_status_name ((shf_run_status_t) status), "started_at",
        s_time_json (started_at), "closed_at",
        json_is_null (closed) ? json_null () : s_time_json (closed_at));
}

static bool
s_wf_listed (void *arg, const unsigned char *key, size_t klen, json_t *entry)
{
    s_listing_t *l = arg;
    json_t *item = s_wf_entry (key, klen, entry);
    json_decref (entry);
    if (item)
        s_wf_status (l, key, item);
    if (!item)
        shf_warn ("reader %u: an index entry that is not one, skipped",
                  l->shard);
    else if ((!l->status || strcmp (l->status, s_str (item, "status")) == 0)
             && (!l->name || strcmp (l->name, s_str (item, "name")) == 0))
        json_array_append_new (l->list, item);
    else
        json_decref (item);
    return (int64_t) json_array_size (l->list) < l->limit
           && ++l->scanned < SHF_READER_LIST_SCAN;
}

static shf_err_t
s_wf_list (self_t *self, const json_t *msg, json_t **reply_p)
{
    s_listing_t listing = {s_str (msg, "status"),
                           s_str (msg, "name"),
                           shf_msg_int (msg, "limit", 100),
                           json_array (),
                           0,
                           self->args->id,
                           self->txn,
                           s_str (msg, "ns")};
    shf_key_t prefix;
    shf_key_init (&prefix);
    shf_key_str (&prefix, s_str (msg, "ns"));
    shf_err_t rc = s_scan (self, SHF_DB_INDEX, &prefix, s_wf_listed, &listing);
    if (rc) {
        json_decref (listing.list);
        return rc;
    }
    *reply_p =
        shf_msg_reply_ok (0, json_pack ("{s:o}", "workflows", listing.list));
    return SHF_OK;
}

//  --------------------------------------------------------------------
//  Serving one message

//  Runs one read in its own read-only transaction, ended before the
//  answer is sent. Returns the reply (the caller's); a storage error
//  becomes an error reply with the request's id.
static json_t *
s_serve (self_t *self, uint64_t id, const char *op, bool gather,
         const json_t *msg)
{
    json_t *reply = NULL;
    shf_err_t rc = shf_store_begin (self->args->store, false, &self->txn);
    if (rc == SHF_OK) {
        if (!gather && strcmp (op, "wf_describe") == 0)
            rc = s_wf_describe (self, id, msg, &reply);
        else if (!gather && strcmp (op, "wf_history") == 0)
            rc = s_wf_history (self, id, msg, &reply);
        else if (gather && strcmp (op, "wf_list") == 0)
            rc = s_wf_list (self, msg, &reply);
        else if (gather && strcmp (op, "def_list") == 0)
            rc = s_def_list (self, msg, &reply);
        else if (gather && strcmp (op, "def_show") == 0)
            rc = s_def_show (self, msg, &reply);
        else
            rc = SHF_EINVAL;  //  the shard forwards only what we serve
        shf_txn_abort (&self->txn);
    }
    if (rc) {
        shf_warn ("shard %u: %s failed: %s", self->args->id, op,
                  shf_strerror (rc));
        json_decref (reply);
        reply = shf_msg_reply_error (id, rc, shf_strerror (rc));
    }
    return reply;
}

//  Encodes reply and sends it to the router for the peer identity names.
static void
s_send_reply (self_t *self, const void *identity, size_t identity_size,
              const json_t *reply)
{
    shf_reply_send (zsock_resolve (self->replies), identity, identity_size,
                    reply, NULL);
}

//  One message from the shard: [cmd][identity | gather id][pointer].
static void
s_handle (self_t *self, zmsg_t *msg)
{
    zframe_t *cmd = zmsg_first (msg);
    zframe_t *extra = zmsg_next (msg);
    zframe_t *ptr = zmsg_next (msg);
    json_t *request = NULL;
    if (ptr && zframe_size (ptr) == sizeof (void *))
        memcpy (&request, zframe_data (ptr), sizeof (void *));
    if (!request)
        return;
    bool gather = zframe_streq (cmd, "GATHER");
    const char *op = s_str (request, "op");
    if (gather && zframe_size (extra) == 4) {
        json_t *reply = s_serve (self, 0, op, true, request);
        void *socket = zsock_resolve (self->replies);
        zmq_send (socket, "GATHERED", 8, ZMQ_SNDMORE);
        zmq_send (socket, zframe_data (extra), 4, ZMQ_SNDMORE);
        if (zmq_send (socket, &reply, sizeof (void *), 0) < 0)
            json_decref (reply);  //  only when the context is ending
    }
    else if (zframe_streq (cmd, "REQ") && zframe_size (extra) > 0) {
        uint64_t id = (uint64_t) shf_msg_int (request, "id", 0);
        json_t *reply = s_serve (self, id, op, false, request);
        s_send_reply (self, zframe_data (extra), zframe_size (extra), reply);
        json_decref (reply);
    }
    json_decref (request);
}

void
shf_reader (zsock_t *pipe, void *vargs)
{
    shf_reader_args_t *args = vargs;
    shf_thread_enter ("shf-read-%u", (unsigned) args->id);
    self_t self_s;
    self_t *self = &self_s;
    memset (self, 0, sizeof *self);
    self->pipe = pipe;
    self->args = args;
    self->defs = shf_defs_new (args->id, SHF_READER_DEFS_MAX);
    self->replies = zsock_new (ZMQ_PUSH);
    assert (self->replies);
    //  Answers carry pointers whose loss would leak: never drop.
    zsock_set_sndhwm (self->replies, 0);
    int rc = zsock_connect (self->replies, "%s", args->endpoint);
    assert (rc == 0);
    zsock_signal (pipe, 0);

    while (true) {
        zmsg_t *msg = zmsg_recv (pipe);
        if (!msg)
            break;  //  the context is ending
        bool term = zframe_streq (zmsg_first (msg), "$TERM");
        if (!term)
            s_handle (self, msg);
        zmsg_destroy (&msg);
        if (term)
            break;
    }
    zsock_destroy (&self->replies);
    shf_defs_destroy (&self->defs);
}

//  --------------------------------------------------------------------
//  Self-test: a store with one definition and one run, a reader, and the
//  answers it sends where the router would read them.

static json_t *
s_test_ask (zsock_t *shard, zsock_t *router, const char *cmd, json_t *request)
{
    uint32_t gid = 7;
    if (streq (cmd, "REQ"))
        zsock_send (shard, "sbp", cmd, "peer", (size_t) 4, request);
    else
        zsock_send (shard, "sbp", cmd, &gid, sizeof gid, request);
    zmsg_t *msg = zmsg_recv (router);
    assert (msg);
    char *kind = zmsg_popstr (msg);
    zframe_t *extra = zmsg_pop (msg);
    zframe_t *last = zmsg_pop (msg);
    json_t *reply = NULL;
    if (streq (cmd, "REQ")) {
        assert (streq (kind, "REPLY"));
        assert (zframe_streq (extra, "peer"));
        shf_op_t op;
        uint64_t id;
        shf_err_t rc = shf_msg_decode (zframe_data (last), zframe_size (last),
                                       &reply, &op, &id, NULL, 0);
        assert (rc == SHF_OK && op == SHF_OP_REPLY && id == 5);
    }
    else {
        assert (streq (kind, "GATHERED"));
        assert (zframe_size (extra) == 4
                && memcmp (zframe_data (extra), &gid, 4) == 0);
        assert (zframe_size (last) == sizeof (void *));
        memcpy (&reply, zframe_data (last), sizeof (void *));
    }
    zstr_free (&kind);
    zframe_destroy (&extra);
    zframe_destroy (&last);
    zmsg_destroy (&msg);
    assert (reply);
    return reply;
}

static const char *
s_test_error (const json_t *reply)
{
    return s_str (json_object_get (reply, "error"), "code");
}

void
shf_reader_test (bool verbose)
{
    if (verbose)
        printf (" * shf_reader: ");
    char tmp [] = "/tmp/shf_reader_test.XXXXXX";
    char *made = mkdtemp (tmp);
    assert (made);
    shf_store_t *store = NULL;
    shf_err_t rc = shf_store_open (&store, tmp, 0, false);
    assert (rc == SHF_OK);

    //  One definition and one run started from it, as the shard stores
    //  them (state, history, index entry). Three parallel steps: the start
    //  has four events.
    const char *doc = "{\"name\": \"greet\", \"version\": 2, \"queue\": \"q\","
                      " \"steps\": [{\"id\": \"a\", \"activity\": \"hi\"},"
                      " {\"id\": \"b\", \"activity\": \"hi\", \"after\": []},"
                      " {\"id\": \"c\", \"activity\": \"hi\", \"after\": []}]}";
    shf_def_t *def = NULL;
    rc = shf_def_compile (doc, strlen (doc), &def, NULL, 0);
    assert (rc == SHF_OK);
    shf_txn_t *txn = NULL;
    rc = shf_store_begin (store, true, &txn);
    assert (rc == SHF_OK);
    shf_key_t key;
    shf_defs_prefix (&key, "default", "greet");
    shf_key_u64 (&key, 2);
    json_t *record = json_pack (
        "{s:s, s:i, s:I, s:O}", "name", "greet", "version", 2, "registered_at",
        (json_int_t) 1700000000000, "doc", shf_def_document (def));
    rc = shf_txn_put_json (txn, SHF_DB_DEFS, key.data, key.size, record);
    assert (rc == SHF_OK);
    json_decref (record);
    shf_run_t *state = shf_run_new ();
    shf_wf_output_t out;
    shf_wf_output_init (&out);
    shf_wf_input_t input = {.kind = SHF_WF_START,
                            .now = 1700000001000,
                            .namespace_ = "default",
                            .workflow_id = "w1",
                            .run_id = "r1",
                            .payload = NULL};
    rc = shf_workflow_apply (def, state, &input, &out);
    assert (rc == SHF_OK);
    size_t out_events = out.n_events;
    int64_t first_event_id = out.events [0].id;
    assert (out_events == 4 && !out.history_failed);
    //  Every form a history record has had: the first event as a lone map
    //  (as an upgraded run has it), the second as an array of maps, the
    //  rest packed, as the shard writes them now (shf_event.h).
    json_t *maps = shf_wf_output_events (&out);
    for (size_t e = 0; e < 2; e++) {
        shf_key_init (&key);
        shf_key_run (&key, "default", "w1", "r1");
        shf_key_u64 (&key, (uint64_t) out.events [e].id);
        json_t *one = json_array_get (maps, e);
        if (e == 1)
            one = json_pack ("[O]", one);
        rc = shf_txn_put_json (txn, SHF_DB_HISTORY, key.data, key.size, one);
        assert (rc == SHF_OK);
        if (e == 1)
            json_decref (one);
    }
    json_decref (maps);
    json_t *rest = json_array ();
    for (size_t e = 2; e < out_events; e++) {
        json_t *packed;
        rc = shf_mpack_decode (out.history.out.data + out.events [e].at,
                               out.events [e].size, &packed, NULL, 0);
        assert (rc == SHF_OK && json_is_array (packed));
        json_array_append_new (rest, packed);
    }
    shf_key_init (&key);
    shf_key_run (&key, "default", "w1", "r1");
    shf_key_u64 (&key, (uint64_t) out.events [2].id);
    rc = shf_txn_put_json (txn, SHF_DB_HISTORY, key.data, key.size, rest);
    assert (rc == SHF_OK);
    json_decref (rest);
    //  The run as it was stored when it was a JSON object: it still reads.
    shf_key_exec (&key, "default", "w1");
    json_t *stored = shf_run_to_json (state);
    rc = shf_txn_put_json (txn, SHF_DB_EXEC, key.data, key.size, stored);
    assert (rc == SHF_OK);
    json_decref (stored);
    shf_key_init (&key);
    shf_key_str (&key, "default");
    shf_key_u64 (&key, (uint64_t) (INT64_MAX - 1700000001000));
    shf_key_str (&key, "w1");
    shf_key_raw (&key, "r1");
    json_t *entry = json_pack (
        "{s:s, s:s, s:s, s:i, s:s, s:I, s:I}", "workflow_id", "w1", "run_id",
        "r1", "name", "greet", "version", 2, "status", "running", "started_at",
        (json_int_t) 1700000001000, "closed_at", (json_int_t) 0);
    rc = shf_txn_put_json (txn, SHF_DB_INDEX, key.data, key.size, entry);
    assert (rc == SHF_OK);
    json_decref (entry);
    //  A packed entry (as the shard writes them) of an earlier, completed
    //  run, and an entry that is neither form: listed, and skipped.
    shf_key_init (&key);
    shf_key_str (&key, "default");
    shf_key_u64 (&key, (uint64_t) (INT64_MAX - 1700000000000));
    shf_key_str (&key, "w0");
    shf_key_raw (&key, "r0");
    entry = json_pack ("[i, s, i, i, i]", SHF_INDEX_PACKED, "greet", 1,
                       (int) SHF_RUN_COMPLETED, 250);
    rc = shf_txn_put_json (txn, SHF_DB_INDEX, key.data, key.size, entry);
    assert (rc == SHF_OK);
    json_decref (entry);
    shf_key_init (&key);
    shf_key_str (&key, "default");
    shf_key_u64 (&key, (uint64_t) (INT64_MAX - 1600000000000));
    shf_key_str (&key, "wx");
    shf_key_raw (&key, "rx");
    entry = json_pack ("[i, s, i, i, i]", SHF_INDEX_PACKED, "greet", 1, 99, 1);
    rc = shf_txn_put_json (txn, SHF_DB_INDEX, key.data, key.size, entry);
    assert (rc == SHF_OK);
    json_decref (entry);
    //  A shard of schema 1: the shard moves its runs before readers start
    json_t *meta =
        json_pack ("{s:i, s:i, s:i}", "shard", 3, "epoch", 1, "schema", 1);
    rc = shf_txn_put_json (txn, SHF_DB_META, "shard", 5, meta);
    assert (rc == SHF_OK);
    json_decref (meta);
    rc = shf_txn_commit (&txn);
    assert (rc == SHF_OK);
    size_t moved = 0;
    rc = shf_runs_upgrade (store, 3, &moved);
    assert (rc == SHF_OK && moved == 1);
    shf_wf_output_free (&out);
    shf_run_decref (state);
    shf_def_destroy (&def);

    //  The router's end, then the reader, as a shard starts it
    char endpoint [64];
    snprintf (endpoint, sizeof endpoint, "inproc://shf-reader-test-%p",
              (void *) &endpoint);
    zsock_t *router = zsock_new (ZMQ_PULL);
    assert (router);
    int brc = zsock_bind (router, "%s", endpoint);
    assert (brc == 0);
    shf_reader_args_t args = {3, store, endpoint};
    zactor_t *reader = zactor_new (shf_reader, &args);
    assert (reader);

    //  Which messages are the reader's
    assert (shf_reader_serves ("wf_describe", false));
    assert (shf_reader_serves ("wf_history", false));
    assert (!shf_reader_serves ("wf_start", false));
    assert (!shf_reader_serves ("wf_result", false));
    assert (!shf_reader_serves ("hb", false));
    assert (!shf_reader_serves ("wf_list", false));
    assert (shf_reader_serves ("wf_list", true));
    assert (shf_reader_serves ("def_list", true));
    assert (shf_reader_serves ("def_show", true));
    assert (!shf_reader_serves ("def_register", true));
    assert (!shf_reader_serves (NULL, false));

    //  describe: the run, its step and the shard's id
    json_t *reply =
        s_test_ask (zactor_sock (reader), router, "REQ",
                    json_pack ("{s:s, s:i, s:s, s:s}", "op", "wf_describe",
                               "id", 5, "ns", "default", "wf_id", "w1"));
    json_t *body = json_object_get (reply, "body");
    assert (json_is_true (json_object_get (reply, "ok")));
    assert (streq (s_str (body, "workflow_id"), "w1"));
    assert (streq (s_str (body, "run_id"), "r1"));
    assert (streq (s_str (body, "status"), "running"));
    assert (json_integer_value (json_object_get (body, "shard")) == 3);
    json_decref (reply);

    //  history: every stored event, times as RFC 3339 text
    reply = s_test_ask (zactor_sock (reader), router, "REQ",
                        json_pack ("{s:s, s:i, s:s, s:s}", "op", "wf_history",
                                   "id", 5, "ns", "default", "wf_id", "w1"));
    json_t *events =
        json_object_get (json_object_get (reply, "body"), "events");
    assert (json_array_size (events) == out_events);
    assert (
        streq (s_str (json_array_get (events, 0), "type"), "WorkflowStarted"));
    char started [40];
    shf_clock_format (1700000001000, started, sizeof started);
    for (size_t e = 0; e < out_events; e++) {
        json_t *event = json_array_get (events, e);
        assert (json_integer_value (json_object_get (event, "id"))
                == first_event_id + (int64_t) e);
        assert (streq (s_str (event, "time"), started));
    }
    for (size_t e = 1; e < out_events; e++)
        assert (streq (s_str (json_array_get (events, e), "type"),
                       "StepScheduled"));
    json_decref (reply);

    //  history pages of 1, 2 and 3 events, then the tokens to the end:
    //  pages start and end inside records too, and every event comes once,
    //  in order
    for (int page_size = 1; page_size <= 3; page_size++) {
        char token [SHF_MSG_PAGE_TOKEN_MAX] = "";
        size_t paged = 0;
        for (int page = 0; page < 10; page++) {
            json_t *ask = json_pack ("{s:s, s:i, s:s, s:s, s:i}", "op",
                                     "wf_history", "id", 5, "ns", "default",
                                     "wf_id", "w1", "page_size", page_size);
            if (*token)
                json_object_set_new (ask, "page_token", json_string (token));
            reply = s_test_ask (zactor_sock (reader), router, "REQ", ask);
            body = json_object_get (reply, "body");
            json_t *got = json_object_get (body, "events");
            size_t n = json_array_size (got);
            assert (n >= 1 && n <= (size_t) page_size);
            for (size_t i = 0; i < n; i++)
                assert (json_integer_value (
                            json_object_get (json_array_get (got, i), "id"))
                        == (json_int_t) (paged + i + 1));
            paged += n;
            const char *next = s_str (body, "next_page_token");
            snprintf (token, sizeof token, "%s", next ? next : "");
            json_decref (reply);
            if (!next)
                break;
        }
        assert (paged == out_events);
    }
    //  unknown runs: not_found, as the shard answered
    const char *ops [] = {"wf_describe", "wf_history"};
    for (int o = 0; o < 2; o++) {
        reply =
            s_test_ask (zactor_sock (reader), router, "REQ",
                        json_pack ("{s:s, s:i, s:s, s:s}", "op", ops [o], "id",
                                   5, "ns", "default", "wf_id", "nobody"));
        assert (json_is_false (json_object_get (reply, "ok")));
        assert (streq (s_test_error (reply), "not_found"));
        json_decref (reply);
    }

    //  gathers
    reply = s_test_ask (zactor_sock (reader), router, "GATHER",
                        json_pack ("{s:s, s:s, s:i}", "op", "wf_list", "ns",
                                   "default", "limit", 10));
    json_t *list =
        json_object_get (json_object_get (reply, "body"), "workflows");
    assert (json_array_size (list) == 2);  //  newest first; wx skipped
    assert (streq (s_str (json_array_get (list, 0), "workflow_id"), "w1"));
    assert (
        json_is_null (json_object_get (json_array_get (list, 0), "closed_at")));
    json_t *w0 = json_array_get (list, 1);
    assert (streq (s_str (w0, "workflow_id"), "w0"));
    assert (streq (s_str (w0, "run_id"), "r0"));
    assert (streq (s_str (w0, "name"), "greet"));
    assert (streq (s_str (w0, "status"), "completed"));
    char when [40];
    shf_clock_format (1700000000000, when, sizeof when);
    assert (streq (s_str (w0, "started_at"), when));
    shf_clock_format (1700000000250, when, sizeof when);
    assert (streq (s_str (w0, "closed_at"), when));
    json_decref (reply);
    reply = s_test_ask (zactor_sock (reader), router, "GATHER",
                        json_pack ("{s:s, s:s, s:s}", "op", "wf_list", "ns",
                                   "default", "status", "completed"));
    list = json_object_get (json_object_get (reply, "body"), "workflows");
    assert (json_array_size (list) == 1);
    json_decref (reply);
    reply = s_test_ask (
        zactor_sock (reader), router, "GATHER",
        json_pack ("{s:s, s:s}", "op", "def_list", "ns", "default"));
    list = json_object_get (json_object_get (reply, "body"), "definitions");
    assert (json_array_size (list) == 1);
    assert (json_integer_value (
                json_object_get (json_array_get (list, 0), "version"))
            == 2);
    json_decref (reply);
    reply = s_test_ask (zactor_sock (reader), router, "GATHER",
                        json_pack ("{s:s, s:s, s:s}", "op", "def_show", "ns",
                                   "default", "name", "greet"));
    body = json_object_get (reply, "body");
    assert (streq (s_str (body, "name"), "greet"));
    assert (json_is_object (json_object_get (body, "definition")));
    json_decref (reply);
    reply = s_test_ask (zactor_sock (reader), router, "GATHER",
                        json_pack ("{s:s, s:s, s:s}", "op", "def_show", "ns",
                                   "default", "name", "absent"));
    assert (streq (s_test_error (reply), "not_found"));
    json_decref (reply);

    //  No read transaction outlives its message: the map can grow.
    rc = shf_store_grow (store);
    assert (rc == SHF_OK);

    zactor_destroy (&reader);
    zsock_destroy (&router);
    shf_store_destroy (&store);
    zdir_t *dir = zdir_new (tmp, NULL);
    if (dir) {
        zdir_remove (dir, true);
        zdir_destroy (&dir);
    }
    if (verbose)
        printf ("OK\n");
}
