/*  shf_shard.c - the shard actor: group commit over one LMDB environment.

    The loop (ARCHITECTURE.md, "The shard: one transaction per batch"):
      1. wait for a message on the pipe or for the next timer to fall due;
      2. open one write transaction;
      3. drain every message already queued (up to SHF_SHARD_BATCH) and
         every due timer, run each through the workflow state machine and
         write state, history, timers, tasks, index and dedup records into
         that transaction, collecting what must be sent in an outbox;
      4. commit, and only then send the outbox.
    Batch size adapts by itself: a lone request finds an empty pipe and
    commits at once; under load the pipe fills while the previous fsync
    runs, so the next batch is larger and the fsync is shared.

    Reads (describe, history, lists, definitions) are not in the batch:
    the shard hands them to its reader thread (shf_reader), which answers
    from read-only transactions, once what was taken before them has
    committed (s_flush_reads).

    If a commit fails the shard is fenced: the outbox is dropped (nothing of
    the failed batch leaves), every later request is answered unavailable,
    and recovery happens on restart from LMDB alone. A full map is not a
    failure: the batch is aborted, the map doubled and the batch redone
    from its inputs (the actor cache is dropped, since the state machine
    mutated cached states in place).
*/
#include "shf_shard.h"
#include "shf_alloc.h"
#include "shf_cache.h"
#include "shf_clock.h"
#include "shf_defs.h"
#include "shf_failpoint.h"
#include "shf_frames.h"
#include "shf_fs.h"
#include "shf_keys.h"
#include "shf_log.h"
#include "shf_mpack.h"
#include "shf_msg.h"
#include "shf_reader.h"
#include "shf_reply.h"
#include "shf_runs.h"
#include "shf_store.h"
#include "shf_str.h"
#include "shf_taskmsg.h"
#include "shf_taskrec.h"
#include "shf_thread.h"
#include "shf_workflow.h"
#include <sodium.h>
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#define SHF_SHARD_BATCH 1024
//  Runs kept decoded per shard.
#define SHF_SHARD_MAX_RUN_NAME 320
#define SHF_SHARD_CACHE_MAX    4096
#define SHF_SHARD_WAIT_MAX     (10 * 60 * 1000)
#define SHF_DEDUP_TTL_MS       (24 * 3600 * 1000)
//  A batch that has nothing to send may wait this long for company.
#define SHF_SHARD_LINGER_US 2000
//  How long a DISPATCHED note may wait for its run's next input (s_hold),
//  at most: it is also released at the next round of the loop.
#define SHF_SHARD_HOLD_MS 1

typedef enum {
    S_OUT_REPLY,
    S_OUT_TASK,
    S_OUT_CANCEL,
    S_OUT_GATHERED,
    S_OUT_WAIT,
    S_OUT_WAKE
} s_out_kind_t;

//  One thing to send after commit.
typedef struct {
    s_out_kind_t kind;
    zframe_t *identity;  //  REPLY, WAIT
    json_t *body;        //  REPLY: reply msg (NULL: an ack); GATHERED: reply;
                         //  WAKE: result body
    shf_shard_task_t *task;  //  TASK
    char *queue;             //  CANCEL
    char *token;             //  CANCEL; REPLY: the report's token to release
    char *exec_key;          //  WAIT, WAKE
    char *result;            //  WAKE: the result packed (body NULL), or NULL
    size_t result_size;
    uint32_t gather_id;
    uint64_t id;       //  WAIT: request id; REPLY without body: the ack's
    int64_t deadline;  //  WAIT: mono ms
} s_out_t;

//  One input of the current batch, kept so the batch can be redone.
typedef struct {
    char kind;  //  'R' request, 'G' gather, 'D' dispatched
    zframe_t *identity;
    json_t *msg;
    //  A completion read in place (shf_taskmsg_read_complete) has no msg,
    //  only what the shard uses of it: its id, token and output (owned).
    bool completion;
    uint64_t id;
    char *token;
    json_t *output;
    shf_shard_note_t *note;  //  what the router added; may be NULL
    //  A report's own task's DISPATCHED note, taken from those held: the
    //  report records the start with the result (s_absorbs)
    shf_shard_note_t *started;
    uint32_t gather_id;
    uint64_t round;  //  held DISPATCHED: the loop round that took it
} s_in_t;

typedef struct {
    zframe_t *identity;
    uint64_t id;
    int64_t deadline;
} s_waiter_t;

typedef struct {
    zsock_t *pipe;
    shf_shard_args_t *args;
    uint32_t id;
    uint64_t epoch;
    shf_store_t *store;
    bool fenced;
    bool terminated;
    shf_cache_t *cache;       //  exec key -> shf_run_t, LRU
    zhashx_t *dirty;          //  exec key -> run changed in the open txn
    shf_mpack_out_t encoded;  //  s_flush_dirty's buffer, kept between uses
    shf_mpack_out_t taskrec;  //  s_persist's, for task records
    shf_reply_acks_t acks;    //  s_send_outbox's, sent at its end
    shf_defs_t *defs;         //  compiled definitions (this thread's)
    zhashx_t *waiters;        //  exec key -> zlistx of s_waiter_t
    int64_t wait_min;         //  no waiter expires before this (mono ms)
    int64_t next_due;         //  earliest timer, or INT64_MAX
    shf_txn_t *txn;           //  the open batch transaction
    int64_t txn_since;        //  when it began (mono us)
    size_t n_done;            //  inputs already run in the open transaction
    s_out_t *out;
    size_t n_out, cap_out;
    s_in_t *in;
    size_t n_in, cap_in;
    shf_wf_output_t wf_out;
    uint64_t n_commits;  //  for the debug line at exit: batch sizing
    uint64_t n_state_writes;
    uint64_t n_inputs;
    zactor_t *reader;  //  answers describe, history and the read gathers
    shf_reader_args_t reader_args;
    s_in_t *reads;  //  reads taken while a batch was uncommitted
    size_t n_reads, cap_reads;
    s_in_t *held;  //  DISPATCHED notes waiting for their run (s_hold)
    size_t n_held, cap_held;
    uint64_t round;  //  passes of the loop
} self_t;

static void s_waiter_destroy (void **item);

static void
s_run_destroy (void **item)
{
    shf_run_decref (*item);
    *item = NULL;
}

//  --------------------------------------------------------------------
//  Small helpers

static void
s_exec_name (char *buf, size_t size, const char *ns, const char *wf_id)
{
    shf_str_join (buf, size, ns, '\x1f', wf_id);
}

static s_out_t *
s_out_push (self_t *self, s_out_kind_t kind)
{
    if (self->n_out == self->cap_out) {
        self->cap_out = self->cap_out ? self->cap_out * 2 : 64;
        self->out = realloc (self->out, self->cap_out * sizeof (s_out_t));
        assert (self->out);
    }
    s_out_t *o = &self->out [self->n_out++];
    memset (o, 0, sizeof *o);
    o->kind = kind;
    return o;
}

static void
s_out_free (s_out_t *o)
{
    zframe_destroy (&o->identity);
    json_decref (o->body);
    shf_shard_task_free (o->task);
    free (o->queue);
    free (o->token);
    free (o->exec_key);
    free (o->result);
}

static void
s_reply (self_t *self, zframe_t *identity, uint64_t id, json_t *body)
{
    if (!identity || zframe_size (identity) == 0) {
        json_decref (body);
        return;
    }
    s_out_t *o = s_out_push (self, S_OUT_REPLY);
    o->identity = zframe_dup (identity);
    o->body = shf_msg_reply_ok (id, body);
}

//  A report's plain acknowledgement: encoded at send time without a tree
//  (an S_OUT_REPLY without body).
static void
s_reply_ack (self_t *self, zframe_t *identity, uint64_t id)
{
    if (!identity || zframe_size (identity) == 0)
        return;
    s_out_t *o = s_out_push (self, S_OUT_REPLY);
    o->identity = zframe_dup (identity);
    o->id = id;
}

static void
s_reply_error (self_t *self, zframe_t *identity, uint64_t id, shf_err_t err,
               const char *message)
{
    if (!identity || zframe_size (identity) == 0)
        return;
    s_out_t *o = s_out_push (self, S_OUT_REPLY);
    o->identity = zframe_dup (identity);
    o->body = shf_msg_reply_error (id, err, message);
}

static const char *
s_str (const json_t *obj, const char *field)
{
    return json_string_value (json_object_get (obj, field));
}

static const char *
s_str_or (const json_t *obj, const char *field)
{
    const char *text = s_str (obj, field);
    return text ? text : "";
}

//  --------------------------------------------------------------------
//  Definitions: stored in every shard, compiled once and cached (shf_defs;
//  the reader has its own cache).

static shf_err_t
s_def_load (self_t *self, const char *ns, const char *name, int64_t version,
            const shf_def_t **def_p)
{
    return shf_defs_load (self->defs, self->txn, ns, name, version, def_p);
}

//  --------------------------------------------------------------------
//  Run state: cache in front of the exec db.

//  A run's state held in memory (borrowed), or NULL. One changed in the
//  open transaction but not yet written is the newest, even if the cache
//  has let go of it.
static shf_run_t *
s_state_in_memory (self_t *self, const char *exec_name)
{
    shf_run_t *state = zhashx_lookup (self->dirty, exec_name);
    return state ? state : shf_cache_lookup (self->cache, exec_name);
}

static shf_err_t
s_state_load (self_t *self, const char *ns, const char *wf_id,
              shf_run_t **state_p)
{
    char name [600];
    s_exec_name (name, sizeof name, ns, wf_id);
    shf_run_t *state = s_state_in_memory (self, name);
    if (state) {
        *state_p = state;
        return SHF_OK;
    }
    shf_err_t rc = shf_runs_load (self->txn, ns, wf_id, &state);
    if (rc)
        return rc;
    shf_cache_put (self->cache, name, state);
    *state_p = state;
    return SHF_OK;
}

//  The run's visibility entry, encoded straight from the state's fields.
static shf_err_t
s_index_put (self_t *self, const shf_run_t *state)
{
    const char *ns = shf_workflow_ns (state);
    shf_key_t key;
    shf_key_init (&key);
    shf_key_str (&key, ns ? ns : SHF_MSG_DEFAULT_NS);
    shf_key_u64 (&key,
                 (uint64_t) (INT64_MAX - shf_workflow_started_at (state)));
    shf_key_str (&key, shf_workflow_id (state));
    shf_key_raw (&key, shf_workflow_run_id (state));
    if (key.overflow)
        return SHF_ETOOLARGE;
    //  Packed (shf_reader.c, s_wf_listed): the IDs and the start time are
    //  in the key already.
    self->encoded.size = 0;
    shf_mpack_out_t *out = &self->encoded;
    shf_mpack_put_array (out, 5);
    shf_mpack_put_int (out, SHF_INDEX_PACKED);
    shf_mpack_put_str (out, shf_workflow_def_name (state),
                       strlen (shf_workflow_def_name (state)));
    shf_mpack_put_int (out, shf_workflow_def_version (state));
    shf_mpack_put_int (out, state->status);
    if (state->has_closed_at)  //  wraps rather than overflows, as in runs
        shf_mpack_put_int (out, (int64_t) ((uint64_t) state->closed_at
                                           - (uint64_t) state->started_at));
    else
        shf_mpack_put_nil (out);
    return shf_txn_put (self->txn, SHF_DB_INDEX, key.data, key.size, out->data,
                        out->size);
}

//  What a task's token says: where the task belongs.
static void
s_task_where (self_t *self, const char *ns, const char *wf_id,
              const char *run_id, const char *step, uint32_t attempt,
              shf_token_t *token)
{
    memset (token, 0, sizeof *token);
    token->shard = self->id;
    token->epoch = self->epoch;
    shf_str_copy (token->ns, sizeof token->ns, ns);
    shf_str_copy (token->wf_id, sizeof token->wf_id, wf_id);
    shf_str_copy (token->run_id, sizeof token->run_id, run_id);
    shf_str_copy (token->step, sizeof token->step, step);
    token->attempt = attempt;
}

//  A task with its three strings, nothing else set.
static shf_shard_task_t *
s_task_alloc (const shf_token_t *where, const char *queue, const char *token,
              const char *activity)
{
    size_t qsize = strlen (queue) + 1, tsize = strlen (token) + 1,
           asize = strlen (activity) + 1;
    shf_shard_task_t *self = calloc (1, sizeof *self + qsize + tsize + asize);
    assert (self);
    self->where = *where;
    memcpy (self->text, queue, qsize);
    memcpy (self->text + qsize, token, tsize);
    memcpy (self->text + qsize + tsize, activity, asize);
    self->queue = self->text;
    self->token = self->text + qsize;
    self->activity = self->text + qsize + tsize;
    return self;
}

shf_shard_task_t *
shf_shard_task_new (const shf_token_t *where, const char *queue,
                    const char *token, char *wire, size_t wire_size)
{
    shf_shard_task_t *self = s_task_alloc (where, queue, token, "");
    self->wire = wire;
    self->wire_size = wire_size;
    return self;
}

shf_shard_task_t *
shf_shard_task_unrendered (const shf_token_t *where, const char *queue,
                           const char *activity, int64_t start_to_close_ms,
                           int64_t heartbeat_timeout_ms, const void *input,
                           size_t input_size, const void *details,
                           size_t details_size)
{
    shf_shard_task_t *self = s_task_alloc (where, queue, "", activity);
    self->start_to_close_ms = start_to_close_ms;
    self->heartbeat_timeout_ms = heartbeat_timeout_ms;
    self->payloads = malloc (input_size + details_size + 1);
    assert (self->payloads);
    memcpy (self->payloads, input, input_size);
    memcpy (self->payloads + input_size, details, details_size);
    self->input_size = input_size;
    self->details_size = details_size;
    return self;
}

void
shf_shard_task_free (void *task)
{
    shf_shard_task_t *self = task;
    if (self) {
        free (self->wire);
        free (self->payloads);
        free (self);
    }
}

static void
s_task_key (shf_key_t *key, const shf_run_t *state, const char *step,
            uint32_t attempt)
{
    shf_runs_key (key, state);
    shf_key_str (key, step);
    shf_key_u32 (key, attempt);
    assert (!key->overflow);  //  names are bounded at wf_start
}

static void
s_timer_key (shf_key_t *key, const shf_run_t *state, int64_t due,
             uint64_t timer_id)
{
    shf_key_init (key);
    shf_key_u64 (key, (uint64_t) due);
    shf_key_run (key, shf_workflow_ns (state), shf_workflow_id (state),
                 shf_workflow_run_id (state));
    shf_key_u64 (key, timer_id);
    assert (!key->overflow);  //  names are bounded at wf_start
}

static shf_err_t s_write_run (self_t *self, const shf_run_t *state);

//  A stored task read back: from a packed record and its key, the token
//  sealed again, or from an older record, which is the task message itself.
typedef struct {
    json_t *record;  //  the decoded value (the caller's); strings point into
                     //  it, or into the key, which must outlive them
    bool packed;
    shf_msg_task_t fields;  //  packed: the message's fields, token = sealed
    shf_token_t where;
    const char *queue;
    const char *token;
    char sealed [SHF_TOKEN_MAX_TEXT];
} s_stored_t;

static shf_err_t
s_stored_read (self_t *self, const void *key, size_t key_size,
               const void *value, size_t value_size, s_stored_t *st)
{
    shf_err_t rc =
        shf_store_decode (SHF_DB_TASKS, value, value_size, &st->record);
    if (rc)
        return rc;
    st->packed = json_is_array (st->record);
    shf_taskrec_key_t k;
    if (st->packed) {
        if (!shf_taskrec_key (key, key_size, &k)
            || !shf_taskrec_unpack (st->record, &k, &st->fields))
            rc = SHF_ECORRUPT;
        if (rc == SHF_OK) {
            s_task_where (self, st->fields.ns, st->fields.wf_id,
                          st->fields.run_id, st->fields.step,
                          st->fields.attempt, &st->where);
            rc = shf_token_seal (&st->where, self->args->token_key, st->sealed,
                                 sizeof st->sealed);
        }
        if (rc == SHF_OK) {
            st->fields.token = st->token = st->sealed;
            st->queue = st->fields.queue;
        }
    }
    else {
        st->queue = s_str (st->record, "queue");
        st->token = s_str (st->record, "token");
        if (!st->queue || !st->token)
            rc = SHF_ECORRUPT;
        else
            s_task_where (
                self, s_str_or (st->record, "ns"),
                s_str_or (st->record, "wf_id"), s_str_or (st->record, "run_id"),
                s_str_or (st->record, "step"),
                (uint32_t) shf_msg_int (st->record, "attempt", 0), &st->where);
    }
    if (rc) {
        shf_error ("shard %u: a stored task (%zu bytes) does not read: %s",
                   self->id, value_size, shf_strerror (rc));
        json_decref (st->record);
    }
    return rc;
}

//  A stored task made ready to send again (recovery). Encoded anew rather
//  than sent as stored: an older record may predate the "v" its encoding
//  carries.
static shf_err_t
s_task_recovered (self_t *self, const void *key, size_t key_size,
                  const void *value, size_t value_size,
                  shf_shard_task_t **task_p)
{
    s_stored_t st;
    shf_err_t rc = s_stored_read (self, key, key_size, value, value_size, &st);
    if (rc)
        return rc;
    char *wire;
    size_t wire_size;
    rc = st.packed ? shf_msg_encode_task (&st.fields, &wire, &wire_size)
                   : shf_msg_encode (st.record, &wire, &wire_size);
    if (rc == SHF_OK)
        *task_p =
            shf_shard_task_new (&st.where, st.queue, st.token, wire, wire_size);
    json_decref (st.record);
    return rc;
}

//  A stored task that does not read (s_stored_read logged why) is one
//  bad run, not a shard that cannot open: recovery leaves the record where
//  it is and offers the others. The run waits at that step until a
//  timeout of the step retries it, or until it is cancelled or terminated,
//  which deletes the record (SHF_EFFECT_TASK_CANCEL). The key says which
//  run it is, when it reads.
static void
s_task_unreadable (self_t *self, const void *key, size_t key_size)
{
    shf_taskrec_key_t k;
    if (shf_taskrec_key (key, key_size, &k))
        shf_error ("shard %u: the pending task of %s/%s (run %s, step %s, "
                   "attempt %u) is not offered to workers: its record does "
                   "not read; cancel or terminate the run to clear it",
                   self->id, k.ids.ns, k.ids.workflow_id, k.ids.run_id, k.step,
                   k.attempt);
    else
        shf_error ("shard %u: a pending task whose key does not read either "
                   "(%zu bytes) is not offered to workers",
                   self->id, key_size);
}

//  A due timer from its key (s_timer_key): {"_key", "ns", "wf_id",
//  "run_id", "timer_id"}; {"_key"} alone when the key is not one (the
//  timer is then dropped). Timers written before carried the same in a
//  value, which is not read.
static json_t *
s_timer_of_key (const void *k, size_t kl)
{
    json_t *timer = json_object ();
    json_object_set_new (timer, "_key", json_stringn_nocheck (k, kl));
    const char *at = (const char *) k + 8, *end = (const char *) k + kl;
    const char *names [3];
    for (int i = 0; i < 3 && kl > 8; i++) {
        const char *nul = memchr (at, 0, (size_t) (end - at));
        if (!nul)
            return timer;
        names [i] = at;
        at = nul + 1;
    }
    if (kl <= 8 || end - at != 8)
        return timer;
    json_object_set_new (timer, "ns", json_string (names [0]));
    json_object_set_new (timer, "wf_id", json_string (names [1]));
    json_object_set_new (timer, "run_id", json_string (names [2]));
    json_object_set_new (timer, "timer_id",
                         json_integer ((json_int_t) shf_key_get_u64 (at)));
    return timer;
}

//  Writes what one transition produced: state, events, effects, index.
//  Everything lands in the batch transaction; sends go to the outbox.
static shf_err_t
s_persist (self_t *self, shf_run_t *state, shf_wf_output_t *wo, bool is_new)
{
    shf_err_t rc = SHF_OK;
    const char *ns = shf_workflow_ns (state);
    const char *wf_id = shf_workflow_id (state);
    const char *run_id = shf_workflow_run_id (state);
    shf_key_t key;

    //  The transition's events, one record under the first one's id: an
    //  array of the maps the actor wrote (one B-tree entry, not one each).
    if (wo->history_failed)
        return SHF_EINVAL;
    if (wo->n_events > 0) {
        shf_runs_key (&key, state);
        shf_key_u64 (&key, (uint64_t) wo->events [0].id);
        if (key.overflow)
            return SHF_ETOOLARGE;
        const uint8_t *record;
        size_t record_size;
        shf_mpack_seq_array (&wo->history, &record, &record_size);
        rc = shf_txn_put (self->txn, SHF_DB_HISTORY, key.data, key.size, record,
                          record_size);
        if (rc)
            return rc;
    }
    size_t i;
    bool closed = false;
    for (i = 0; i < wo->n_effects; i++) {
        shf_effect_t *e = &wo->effects [i];
        switch (e->kind) {
            case SHF_EFFECT_TASK: {
                shf_token_t where;
                s_task_where (self, ns, wf_id, run_id, e->step, e->attempt,
                              &where);
                //  Stored without what its key and the token say
                //  (shf_taskrec.h); the router renders the message from
                //  the same payload bytes and seals its token, off this
                //  thread (shf_shard.h, "TASK").
                shf_msg_task_t task = {
                    .token = "",
                    .ns = ns,
                    .wf_id = wf_id,
                    .run_id = run_id,
                    .step = e->step,
                    .activity = e->activity,
                    .queue = e->queue,
                    .attempt = e->attempt,
                    .input = e->input,
                    .heartbeat_details = e->heartbeat_details,
                    .start_to_close_ms = e->start_to_close,
                    .heartbeat_timeout_ms = e->heartbeat_timeout};
                self->taskrec.size = 0;
                shf_taskrec_spans_t spans;
                rc = shf_taskrec_pack (&task, &self->taskrec, &spans);
                s_task_key (&key, state, e->step, e->attempt);
                if (rc == SHF_OK)
                    rc = shf_txn_put (self->txn, SHF_DB_TASKS, key.data,
                                      key.size, self->taskrec.data,
                                      self->taskrec.size);
                if (rc)
                    return rc;
                const uint8_t *rec = self->taskrec.data;
                s_out_push (self, S_OUT_TASK)->task =
                    shf_shard_task_unrendered (
                        &where, e->queue, e->activity, e->start_to_close,
                        e->heartbeat_timeout, rec + spans.input_at,
                        spans.input_size, rec + spans.details_at,
                        spans.details_size);
                break;
            }
            case SHF_EFFECT_TASK_CANCEL: {
                s_task_key (&key, state, e->step, e->attempt);
                const void *v;
                size_t vl;
                s_stored_t st;
                if (shf_txn_get (self->txn, SHF_DB_TASKS, key.data, key.size,
                                 &v, &vl)
                    != SHF_OK)
                    break;
                //  A record that does not read was never offered
                //  (s_task_unreadable): there is nothing to withdraw, only
                //  the record to delete.
                if (s_stored_read (self, key.data, key.size, v, vl, &st)
                    == SHF_OK) {
                    s_out_t *o = s_out_push (self, S_OUT_CANCEL);
                    o->queue = strdup (st.queue);
                    o->token = strdup (st.token);
                    json_decref (st.record);
                }
                rc = shf_txn_del (self->txn, SHF_DB_TASKS, key.data, key.size);
                if (rc && rc != SHF_ENOTFOUND)
                    return rc;
                rc = SHF_OK;
                break;
            }
            case SHF_EFFECT_TIMER: {
                //  The key says it all (s_timer_of_key): no value.
                s_timer_key (&key, state, e->due, e->timer_id);
                rc = shf_txn_put (self->txn, SHF_DB_TIMERS, key.data, key.size,
                                  NULL, 0);
                if (rc)
                    return rc;
                if (e->due < self->next_due)
                    self->next_due = e->due;
                break;
            }
            case SHF_EFFECT_TIMER_CANCEL:
                s_timer_key (&key, state, e->due, e->timer_id);
                rc = shf_txn_del (self->txn, SHF_DB_TIMERS, key.data, key.size);
                if (rc && rc != SHF_ENOTFOUND)
                    return rc;
                break;
            case SHF_EFFECT_CLOSED:
                closed = true;
                break;
        }
    }
    //  mutable state: written once per transaction, however many
    //  transitions the run made in it (s_flush_dirty)
    char dirty_name [600];
    s_exec_name (dirty_name, sizeof dirty_name, ns, wf_id);
    shf_run_t *prior = zhashx_lookup (self->dirty, dirty_name);
    if (prior != state) {
        //  A new run of the workflow ID replaces one changed in this
        //  batch: that one's last state goes in now, under its own key.
        if (prior && (rc = s_write_run (self, prior)) != SHF_OK)
            return rc;
        zhashx_update (self->dirty, dirty_name, shf_run_incref (state));
    }
    //  the workflow ID's current run, and its visibility entry
    if (is_new && (rc = shf_runs_point (self->txn, state)) != SHF_OK)
        return rc;
    //  once: a listing reads the status from the run's state (shf_reader)
    if (is_new) {
        rc = s_index_put (self, state);
        if (rc)
            return rc;
    }
    if (closed) {
        //  Always: a waiter registered earlier in this batch is not in
        //  self->waiters yet (registrations take effect after commit).
        char name [600];
        s_exec_name (name, sizeof name, ns, wf_id);
        s_out_t *o = s_out_push (self, S_OUT_WAKE);
        o->exec_key = strdup (name);
        //  Packed once for every waiter; a tree only when it cannot be.
        shf_mpack_out_t packed = {0};
        if (shf_workflow_result_pack (state, &packed) == SHF_OK) {
            o->result = (char *) packed.data;
            o->result_size = packed.size;
        }
        else {
            shf_mpack_out_free (&packed);
            o->body = shf_workflow_result (state);
        }
    }
    return SHF_OK;
}

//  Applies one input to a loaded run and persists the result.
static shf_err_t
s_apply (self_t *self, const shf_def_t *def, shf_run_t *state,
         const shf_wf_input_t *input, bool is_new, char *why, size_t whylen)
{
    shf_wf_output_reset (&self->wf_out);
    shf_err_t rc = shf_workflow_apply (def, state, input, &self->wf_out);
    if (rc == SHF_OK)
        rc = s_persist (self, state, &self->wf_out, is_new);
    if (rc)
        snprintf (why, whylen, "%s",
                  self->wf_out.message [0] ? self->wf_out.message
                                           : shf_strerror (rc));
    return rc;
}

static shf_err_t
s_run_def (self_t *self, const shf_run_t *state, const shf_def_t **def_p)
{
    return s_def_load (self, shf_workflow_ns (state),
                       shf_workflow_def_name (state),
                       shf_workflow_def_version (state), def_p);
}

//  --------------------------------------------------------------------
//  Requests

//  A run ID: 16 random bytes in hex. Taken from a pool refilled every
//  256 IDs, as each randombytes_buf is a getrandom system call (one per
//  start was ~2% of the shard thread's system calls under load).
static void
s_random_id (char *buf, size_t size)
{
    static _Thread_local unsigned char pool [16 * 256];
    static _Thread_local size_t used = sizeof pool;
    if (used == sizeof pool) {
        randombytes_buf (pool, sizeof pool);
        used = 0;
    }
    sodium_bin2hex (buf, size, pool + used, 16);
    sodium_memzero (pool + used, 16);
    used += 16;
}

//  A storage error inside a batch: EFULL aborts the batch (redo after
//  growth); anything else is an internal error for this request only
//  if it happened before any write, which the callers guarantee by
//  returning it up. Returns true when the batch must stop.
static bool
s_fatal (shf_err_t rc)
{
    return rc == SHF_EFULL || rc == SHF_EIO;
}

static void s_await (self_t *self, zframe_t *identity, uint64_t id,
                     const json_t *msg, shf_run_t *state);

static shf_err_t
s_wf_start (self_t *self, zframe_t *identity, uint64_t id, const json_t *msg)
{
    const char *ns = s_str (msg, "ns");
    const char *wf_id = s_str (msg, "wf_id");
    const char *request_id = s_str (msg, "request_id");
    shf_key_t dkey;
    shf_err_t rc;
    //  Every key of the run must fit LMDB's 511 bytes; task keys are the
    //  longest: start time (8) + run key (ns, wf_id, 32-byte run id, 3
    //  NULs) + step id (SHF_STEP_ID_MAX + NUL) + attempt (4) <= 496.
    if (strlen (ns) + strlen (wf_id) > SHF_SHARD_MAX_RUN_NAME) {
        s_reply_error (self, identity, id, SHF_EINVAL,
                       "namespace and workflow id together must be at most "
                       "320 bytes");
        return SHF_OK;
    }
    if (request_id) {
        shf_key_init (&dkey);
        shf_key_str (&dkey, ns);
        shf_key_raw (&dkey, request_id);
        json_t *prior = NULL;
        rc = shf_txn_get_json (self->txn, SHF_DB_DEDUP, dkey.data, dkey.size,
                               &prior);
        if (rc == SHF_OK) {
            int64_t at = json_integer_value (json_object_get (prior, "at"));
            if (shf_clock_now () - at < SHF_DEDUP_TTL_MS) {
                json_t *reply = json_object_get (prior, "reply");
                shf_run_t *state = NULL;
                //  A start that waits, repeated: wait for the run the first
                //  one started (if it is still the current one).
                if (shf_msg_bool (msg, "wait", false)
                    && s_state_load (self, ns, s_str (reply, "workflow_id"),
                                     &state)
                           == SHF_OK
                    && strcmp (shf_workflow_run_id (state),
                               s_str (reply, "run_id"))
                           == 0)
                    s_await (self, identity, id, msg, state);
                else
                    s_reply (self, identity, id, json_incref (reply));
                json_decref (prior);
                return SHF_OK;
            }
            json_decref (prior);
        }
        else if (rc != SHF_ENOTFOUND)
            return rc;
    }
    const shf_def_t *def;
    rc = s_def_load (self, ns, s_str (msg, "name"),
                     shf_msg_int (msg, "version", 0), &def);
    if (rc == SHF_ENOTFOUND) {
        char why [400];
        snprintf (why, sizeof why, "no definition \"%s\" in namespace \"%s\"",
                  s_str (msg, "name"), ns);
        s_reply_error (self, identity, id, SHF_ENOTFOUND, why);
        return SHF_OK;
    }
    if (rc)
        return rc;
    shf_run_t *state = NULL;
    rc = s_state_load (self, ns, wf_id, &state);
    if (rc == SHF_OK && shf_workflow_is_open (state)) {
        char why [400];
        snprintf (why, sizeof why,
                  "workflow \"%s\" is already running (run %s)", wf_id,
                  shf_workflow_run_id (state));
        s_reply_error (self, identity, id, SHF_ERUNNING, why);
        return SHF_OK;
    }
    if (rc && rc != SHF_ENOTFOUND)
        return rc;
    char run_id [40];
    s_random_id (run_id, sizeof run_id);
    shf_run_t *fresh = shf_run_new ();
    shf_wf_input_t input = {.kind = SHF_WF_START,
                            .now = shf_clock_now (),
                            .namespace_ = ns,
                            .workflow_id = wf_id,
                            .run_id = run_id,
                            .payload = json_object_get (msg, "input")};
    char why [300];
    rc = s_apply (self, def, fresh, &input, true, why, sizeof why);
    if (rc && !s_fatal (rc)) {
        shf_run_decref (fresh);
        s_reply_error (self, identity, id, rc, why);
        return SHF_OK;
    }
    if (rc) {
        shf_run_decref (fresh);
        return rc;
    }
    char name [600];
    s_exec_name (name, sizeof name, ns, wf_id);
    shf_cache_put (self->cache, name, fresh);
    json_t *body = json_pack ("{s:s, s:s, s:i}", "workflow_id", wf_id, "run_id",
                              run_id, "shard", (int) self->id);
    if (request_id) {
        json_t *record = json_pack ("{s:O, s:I}", "reply", body, "at",
                                    (json_int_t) shf_clock_now ());
        rc = shf_txn_put_json (self->txn, SHF_DB_DEDUP, dkey.data, dkey.size,
                               record);
        json_decref (record);
        if (rc) {
            json_decref (body);
            return rc;
        }
    }
    if (shf_msg_bool (msg, "wait", false)) {
        //  Start and wait: one request instead of two (the outcome's body
        //  names the workflow and run as the start's does).
        json_decref (body);
        s_await (self, identity, id, msg, fresh);
    }
    else
        s_reply (self, identity, id, body);
    return SHF_OK;
}

//  Loads the run a request names; replies not_found itself.
static shf_err_t
s_find_run (self_t *self, zframe_t *identity, uint64_t id, const json_t *msg,
            shf_run_t **state_p, bool *replied)
{
    const char *ns = s_str (msg, "ns");
    const char *wf_id = s_str (msg, "wf_id");
    shf_err_t rc = s_state_load (self, ns, wf_id, state_p);
    *replied = false;
    if (rc == SHF_ENOTFOUND) {
        char why [400];
        snprintf (why, sizeof why, "no workflow \"%s\" in namespace \"%s\"",
                  wf_id, ns);
        s_reply_error (self, identity, id, SHF_ENOTFOUND, why);
        *replied = true;
        return SHF_OK;
    }
    return rc;
}

//  Answers a request for a run's outcome: at once when the run is closed
//  or the request does not wait, else when it closes or timeout_ms passes.
static void
s_await (self_t *self, zframe_t *identity, uint64_t id, const json_t *msg,
         shf_run_t *state)
{
    if (shf_workflow_is_open (state) && shf_msg_bool (msg, "wait", false)) {
        int64_t timeout = shf_msg_int (msg, "timeout_ms", 60000);
        if (timeout > SHF_SHARD_WAIT_MAX)
            timeout = SHF_SHARD_WAIT_MAX;
        //  Held in the outbox: a waiter exists only once the batch that
        //  saw the run open has committed, and a redone batch adds it once.
        char name [600];
        s_exec_name (name, sizeof name, s_str (msg, "ns"),
                     shf_workflow_id (state));
        s_out_t *o = s_out_push (self, S_OUT_WAIT);
        o->identity = zframe_dup (identity);
        o->id = id;
        o->deadline = shf_clock_mono_us () / 1000 + timeout;
        o->exec_key = strdup (name);
        return;
    }
    s_reply (self, identity, id, shf_workflow_result (state));
}

static shf_err_t
s_wf_result (self_t *self, zframe_t *identity, uint64_t id, const json_t *msg)
{
    shf_run_t *state;
    bool replied;
    shf_err_t rc = s_find_run (self, identity, id, msg, &state, &replied);
    if (rc || replied)
        return rc;
    s_await (self, identity, id, msg, state);
    return SHF_OK;
}

static shf_err_t
s_wf_control (self_t *self, zframe_t *identity, uint64_t id, const json_t *msg,
              shf_op_t op)
{
    shf_run_t *state;
    bool replied;
    shf_err_t rc = s_find_run (self, identity, id, msg, &state, &replied);
    if (rc || replied)
        return rc;
    const shf_def_t *def;
    rc = s_run_def (self, state, &def);
    if (rc)
        return rc;
    shf_wf_input_t input = {.now = shf_clock_now (),
                            .reason = s_str (msg, "reason"),
                            .signal = s_str (msg, "signal"),
                            .payload = json_object_get (msg, "input")};
    input.kind = op == SHF_OP_WF_SIGNAL   ? SHF_WF_SIGNAL
                 : op == SHF_OP_WF_CANCEL ? SHF_WF_CANCEL
                                          : SHF_WF_TERMINATE;
    char why [300];
    rc = s_apply (self, def, state, &input, false, why, sizeof why);
    if (rc && !s_fatal (rc)) {
        s_reply_error (self, identity, id, rc, why);
        return SHF_OK;
    }
    if (rc)
        return rc;
    s_reply (self, identity, id,
             json_pack ("{s:s, s:s}", "workflow_id", shf_workflow_id (state),
                        "run_id", shf_workflow_run_id (state)));
    return SHF_OK;
}

static shf_err_t s_dispatched (self_t *self, const shf_shard_note_t *note);

//  complete / fail / hb: the router verified the token's MAC and put its
//  fields in the note. payload: complete's output or hb's details; error:
//  fail's. started: the task's DISPATCHED note when the report took it
//  (s_absorbs).
static shf_err_t
s_activity (self_t *self, zframe_t *identity, uint64_t id, shf_op_t op,
            const json_t *payload, const json_t *error,
            const shf_shard_note_t *note, const shf_shard_note_t *started)
{
    const char *ns = note->token.ns;
    const char *wf_id = note->token.wf_id;
    const char *run_id = note->token.run_id;
    const char *step = note->token.step;
    uint32_t attempt = note->token.attempt;
    shf_run_t *state = NULL;
    shf_err_t rc = s_state_load (self, ns, wf_id, &state);
    if (rc && rc != SHF_ENOTFOUND)
        return rc;
    if (rc == SHF_ENOTFOUND || strcmp (shf_workflow_run_id (state), run_id)) {
        s_reply_error (self, identity, id, SHF_ENOTFOUND,
                       "the run of this task is gone");
        return SHF_OK;
    }
    shf_key_t key;
    s_task_key (&key, state, step, attempt);
    const char *etype = s_str (error, "type");
    const shf_def_t *def;
    rc = s_run_def (self, state, &def);
    if (rc)
        return rc;
    shf_wf_input_t input = {.now = shf_clock_now (),
                            .step = step,
                            .attempt = attempt,
                            .worker = note->worker [0] ? note->worker : NULL};
    //  A hand-back: the worker stopped before running the task to the end.
    //  The state machine dispatches the next attempt at once, uncounted.
    if (op == SHF_OP_FAIL && etype && strcmp (etype, "WorkerShutdown") == 0)
        input.kind = SHF_WF_ACTIVITY_HANDED_BACK;
    else if (op == SHF_OP_COMPLETE) {
        input.kind = SHF_WF_ACTIVITY_COMPLETED;
        input.payload = payload;
    }
    else if (op == SHF_OP_FAIL) {
        input.kind = SHF_WF_ACTIVITY_FAILED;
        input.error_type = etype;
        input.error_message = s_str (error, "message");
    }
    else {
        input.kind = SHF_WF_HEARTBEAT;
        input.payload = payload;
    }
    char why [300];
    rc = s_apply (self, def, state, &input, false, why, sizeof why);
    if (rc && !s_fatal (rc)) {
        s_reply_error (self, identity, id, rc, why);
        //  the start stands even though its report did not
        return started ? s_dispatched (self, started) : SHF_OK;
    }
    if (rc)
        return rc;
    if (op != SHF_OP_HEARTBEAT) {
        rc = shf_txn_del (self->txn, SHF_DB_TASKS, key.data, key.size);
        if (rc && rc != SHF_ENOTFOUND)
            return rc;
    }
    s_reply_ack (self, identity, id);
    return SHF_OK;
}

//  The router tracks each task it handed out, so the tasks of a worker
//  that is lost fail as WorkerLost. It stops once the task's report is
//  decoded and answered: the token rides on the answer (outbox items from
//  mark on), so a report refused as malformed leaves the task tracked.
static void
s_release_with_answer (self_t *self, size_t mark, const char *token)
{
    for (size_t i = mark; token && i < self->n_out; i++)
        if (self->out [i].kind == S_OUT_REPLY && !self->out [i].token) {
            self->out [i].token = strdup (token);
            assert (self->out [i].token);
            return;
        }
}

static shf_err_t
s_request (self_t *self, zframe_t *identity, json_t *msg,
           const shf_shard_note_t *note, const shf_shard_note_t *started)
{
    uint64_t id = (uint64_t) shf_msg_int (msg, "id", 0);
    const char *opname = s_str (msg, "op");
    shf_op_t op = shf_msg_op_lookup (opname, strlen (opname));
    if (strcmp (opname, "hb") == 0)
        op = SHF_OP_HEARTBEAT;
    switch (op) {
        case SHF_OP_WF_START:
            return s_wf_start (self, identity, id, msg);
        case SHF_OP_WF_RESULT:
            return s_wf_result (self, identity, id, msg);
        case SHF_OP_WF_SIGNAL:
        case SHF_OP_WF_CANCEL:
        case SHF_OP_WF_TERMINATE:
            return s_wf_control (self, identity, id, msg, op);
        case SHF_OP_COMPLETE:
        case SHF_OP_FAIL:
        case SHF_OP_HEARTBEAT: {
            if (!note || !note->has_token) {
                s_reply_error (self, identity, id, SHF_EINVAL,
                               "a task report needs a verified token");
                return SHF_OK;
            }
            size_t mark = self->n_out;
            const char *field = op == SHF_OP_COMPLETE ? "output" : "details";
            shf_err_t rc = s_activity (
                self, identity, id, op, json_object_get (msg, field),
                json_object_get (msg, "error"), note, started);
            if (op != SHF_OP_HEARTBEAT)
                s_release_with_answer (self, mark, s_str (msg, "token"));
            return rc;
        }
        default:
            s_reply_error (self, identity, id, SHF_EINVAL,
                           "operation not served by a shard");
            return SHF_OK;
    }
}

//  A completion read in place: as s_request runs a decoded one.
static shf_err_t
s_completion (self_t *self, s_in_t *in)
{
    size_t mark = self->n_out;
    shf_err_t rc = s_activity (self, in->identity, in->id, SHF_OP_COMPLETE,
                               in->output, NULL, in->note, in->started);
    s_release_with_answer (self, mark, in->token);
    return rc;
}

//  "DISPATCHED": the matcher handed a task to a worker. Recorded as
//  ActivityStarted; nothing is sent, so nothing waits on this commit.
static shf_err_t
s_dispatched (self_t *self, const shf_shard_note_t *note)
{
    shf_run_t *state;
    shf_err_t rc =
        s_state_load (self, note->token.ns, note->token.wf_id, &state);
    if (rc == SHF_ENOTFOUND)
        return SHF_OK;
    if (rc)
        return rc;
    if (strcmp (shf_workflow_run_id (state), note->token.run_id) != 0)
        return SHF_OK;
    const shf_def_t *def;
    rc = s_run_def (self, state, &def);
    if (rc)
        return rc;
    shf_wf_input_t input = {.kind = SHF_WF_ACTIVITY_STARTED,
                            .now = shf_clock_now (),
                            .step = note->token.step,
                            .attempt = note->token.attempt,
                            .worker = note->worker};
    char why [300];
    rc = s_apply (self, def, state, &input, false, why, sizeof why);
    return s_fatal (rc) ? rc : SHF_OK;
}

//  --------------------------------------------------------------------
//  Gathers: requests the router sends to every shard (or shard 0). Only
//  def_register writes; the read-only ones go to the reader.

static shf_err_t
s_def_register (self_t *self, const json_t *msg, json_t **reply_p)
{
    const char *ns = s_str (msg, "ns");
    const char *doc = s_str (msg, "doc");
    char err [600];
    shf_def_t *def = NULL;
    shf_err_t rc = shf_def_compile (doc, strlen (doc), &def, err, sizeof err);
    if (rc) {
        *reply_p = shf_msg_reply_error (0, rc, err);
        return SHF_OK;
    }
    const char *name = shf_def_name (def);
    int64_t version = shf_def_version (def);
    json_t *existing = NULL;
    rc = shf_defs_record (self->txn, ns, name, version, &existing);
    if (rc && rc != SHF_ENOTFOUND)
        goto done;
    if (rc == SHF_OK) {
        //  Identical document: a no-op that answers the stored version.
        shf_def_t *old = NULL;
        char *text =
            json_dumps (json_object_get (existing, "doc"), JSON_COMPACT);
        shf_err_t crc =
            shf_def_compile (text, strlen (text), &old, err, sizeof err);
        free (text);
        bool same =
            crc == SHF_OK
            && strcmp (shf_def_canonical (old), shf_def_canonical (def)) == 0;
        int64_t old_version =
            json_integer_value (json_object_get (existing, "version"));
        shf_def_destroy (&old);
        if (same) {
            *reply_p = shf_msg_reply_ok (
                0, json_pack ("{s:s, s:I}", "name", name, "version",
                              (json_int_t) old_version));
            rc = SHF_OK;
            goto done;
        }
        if (version > 0) {
            snprintf (err, sizeof err,
                      "definition %s version %lld exists with another document",
                      name, (long long) version);
            *reply_p = shf_msg_reply_error (0, SHF_EVERSION, err);
            rc = SHF_OK;
            goto done;
        }
        version = old_version + 1;
    }
    else if (version == 0)
        version = 1;
    shf_def_set_version (def, version);
    {
        int64_t now = shf_clock_now ();
        json_t *record =
            json_pack ("{s:s, s:I, s:I, s:O}", "name", name, "version",
                       (json_int_t) version, "registered_at", (json_int_t) now,
                       "doc", shf_def_document (def));
        shf_key_t key;
        shf_defs_prefix (&key, ns, name);
        shf_key_u64 (&key, (uint64_t) version);
        rc = shf_txn_put_json (self->txn, SHF_DB_DEFS, key.data, key.size,
                               record);
        json_decref (record);
        if (rc)
            goto done;
        *reply_p =
            shf_msg_reply_ok (0, json_pack ("{s:s, s:I}", "name", name,
                                            "version", (json_int_t) version));
    }
done:
    json_decref (existing);
    shf_def_destroy (&def);
    return rc;
}

static shf_err_t
s_gather (self_t *self, uint32_t gather_id, json_t *msg)
{
    const char *op = s_str (msg, "op");
    json_t *reply = NULL;
    shf_err_t rc;
    //  def_list, def_show and wf_list are the reader's (s_take).
    if (strcmp (op, "def_register") == 0)
        rc = s_def_register (self, msg, &reply);
    else
        rc = SHF_EINVAL;
    if (rc) {
        json_decref (reply);
        if (s_fatal (rc))
            return rc;
        reply = shf_msg_reply_error (0, rc, shf_strerror (rc));
    }
    s_out_t *o = s_out_push (self, S_OUT_GATHERED);
    o->gather_id = gather_id;
    o->body = reply;
    return SHF_OK;
}

//  --------------------------------------------------------------------
//  Timers

//  Fires every timer due by now inside the batch transaction.
static shf_err_t
s_fire_timers (self_t *self)
{
    int64_t now = shf_clock_now ();
    //  next_due is never later than the earliest stored timer (effects
    //  lower it, scans set it), so a batch with nothing due skips the scan.
    if (self->next_due > now)
        return SHF_OK;
    self->next_due = INT64_MAX;
    for (int rounds = 0; rounds < 64; rounds++) {
        shf_cursor_t *cur;
        shf_err_t rc = shf_cursor_open (self->txn, SHF_DB_TIMERS, &cur);
        if (rc)
            return rc;
        const void *k, *v;
        size_t kl, vl;
        json_t *due = json_array ();
        rc = shf_cursor_seek (cur, NULL, 0, &k, &kl, &v, &vl);
        while (rc == SHF_OK && json_array_size (due) < 4096) {
            int64_t at = (int64_t) shf_key_get_u64 (k);
            if (at > now) {
                self->next_due = at;
                break;
            }
            json_array_append_new (due, s_timer_of_key (k, kl));
            rc = shf_cursor_next (cur, &k, &kl, &v, &vl);
        }
        shf_cursor_close (&cur);
        if (rc && rc != SHF_ENOTFOUND) {
            json_decref (due);
            return rc;
        }
        if (json_array_size (due) == 0) {
            json_decref (due);
            return SHF_OK;
        }
        size_t i;
        json_t *timer;
        json_array_foreach (due, i, timer)
        {
            const json_t *jkey = json_object_get (timer, "_key");
            rc =
                shf_txn_del (self->txn, SHF_DB_TIMERS, json_string_value (jkey),
                             json_string_length (jkey));
            if (rc && rc != SHF_ENOTFOUND)
                break;
            const char *ns = s_str (timer, "ns");
            const char *wf_id = s_str (timer, "wf_id");
            const char *run_id = s_str (timer, "run_id");
            shf_run_t *state = NULL;
            const shf_def_t *def = NULL;
            rc = ns && wf_id && run_id ? s_state_load (self, ns, wf_id, &state)
                                       : SHF_ECORRUPT;
            if (rc == SHF_ENOTFOUND
                || (rc == SHF_OK
                    && strcmp (shf_workflow_run_id (state), run_id))) {
                rc = SHF_OK;
                continue;
            }
            if (rc == SHF_OK)
                rc = s_run_def (self, state, &def);
            if (rc && !s_fatal (rc)) {
                //  A timer whose record or run cannot be read cannot fire:
                //  it is dropped and said, not retried for ever, and the
                //  shard goes on with the other runs (one bad record is
                //  one bad run, not a fenced shard).
                shf_error ("shard %u: a due timer of %s/%s dropped: %s",
                           self->id, ns ? ns : "?", wf_id ? wf_id : "?",
                           shf_strerror (rc));
                rc = SHF_OK;
                continue;
            }
            if (rc)
                break;
            shf_wf_input_t input = {.kind = SHF_WF_TIMER_FIRED,
                                    .now = now,
                                    .timer_id = (uint64_t) json_integer_value (
                                        json_object_get (timer, "timer_id"))};
            char why [300];
            rc = s_apply (self, def, state, &input, false, why, sizeof why);
            if (rc && !s_fatal (rc))
                rc = SHF_OK;
            if (rc)
                break;
        }
        json_decref (due);
        if (rc)
            return rc;
        self->next_due = INT64_MAX;
    }
    //  More were due than one batch fires: the next batch goes on.
    self->next_due = now;
    return SHF_OK;
}

//  --------------------------------------------------------------------
//  The batch

//  The id of an input's request (0: none).
static uint64_t
s_in_id (const s_in_t *in)
{
    return in->completion ? in->id : (uint64_t) shf_msg_int (in->msg, "id", 0);
}

static void
s_in_clear (self_t *self)
{
    for (size_t i = 0; i < self->n_in; i++) {
        zframe_destroy (&self->in [i].identity);
        json_decref (self->in [i].msg);
        free (self->in [i].token);
        json_decref (self->in [i].output);
        free (self->in [i].note);
        free (self->in [i].started);
    }
    self->n_in = 0;
}

static void
s_out_clear (self_t *self)
{
    for (size_t i = 0; i < self->n_out; i++)
        s_out_free (&self->out [i]);
    self->n_out = 0;
}

static void s_send_outbox (self_t *self);

//  Whether the reader answers an input rather than the batch: one hash
//  lookup ("op") and a few byte compares per message, next to the
//  shard's own op lookup and an fsync per batch. A fenced shard keeps
//  answering reads unavailable, as it did when they ran in the batch.
static bool
s_for_reader (const self_t *self, const s_in_t *in)
{
    return self->reader && !self->fenced && in->kind != 'D'
           && shf_reader_serves (s_str (in->msg, "op"), in->kind == 'G');
}

//  Keeps a read (taken from in) until s_flush_reads hands it on.
//  Appends *in to an array of inputs (reads, batch or held), growing it.
static void
s_in_append (s_in_t **array, size_t *n, size_t *cap, const s_in_t *in)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        *array = realloc (*array, *cap * sizeof (s_in_t));
        assert (*array);
    }
    (*array) [(*n)++] = *in;
}

static void
s_read_defer (self_t *self, s_in_t *in)
{
    s_in_append (&self->reads, &self->n_reads, &self->cap_reads, in);
    memset (in, 0, sizeof *in);
}

//  Hands the reads taken so far to the reader, which answers them from
//  its own read-only transactions: a long scan no longer holds the batch.
//  Called only when nothing taken before them is uncommitted (no open
//  transaction, no input waiting), so a read sees every write that reached
//  the shard before it, as when reads ran in the batch: a client that
//  sends a start and, without waiting, a describe of it sees its run.
//  Reads of an idle shard go at once.
static void
s_flush_reads (self_t *self)
{
    void *reader = zsock_resolve (self->reader);
    for (size_t i = 0; i < self->n_reads; i++) {
        s_in_t *in = &self->reads [i];
        if (self->fenced) {
            //  fenced after they were taken: answered as the batch was
            if (in->kind == 'R')
                s_reply_error (self, in->identity,
                               (uint64_t) shf_msg_int (in->msg, "id", 0),
                               SHF_EUNAVAIL,
                               "shard is fenced after a storage failure");
            else {
                s_out_t *o = s_out_push (self, S_OUT_GATHERED);
                o->gather_id = in->gather_id;
                o->body = shf_msg_reply_error (0, SHF_EUNAVAIL,
                                               shf_strerror (SHF_EIO));
            }
            json_decref (in->msg);
        }
        else {
            if (in->kind == 'R') {
                zmq_send (reader, "REQ", 3, ZMQ_SNDMORE);
                zmq_send (reader, zframe_data (in->identity),
                          zframe_size (in->identity), ZMQ_SNDMORE);
            }
            else {
                zmq_send (reader, "GATHER", 6, ZMQ_SNDMORE);
                zmq_send (reader, &in->gather_id, 4, ZMQ_SNDMORE);
            }
            //  ownership of the message passes to the reader
            if (zmq_send (reader, &in->msg, sizeof (void *), 0) < 0)
                json_decref (in->msg);  //  only when the context is ending
        }
        in->msg = NULL;
        zframe_destroy (&in->identity);
        free (in->note);
        in->note = NULL;
    }
    self->n_reads = 0;
    if (self->fenced)
        s_send_outbox (self);
}

//  Decodes and validates a request as its client sent it and adds what
//  the router knew (a workflow id it chose; the default namespace). A
//  request that does not decode is answered at once, as the router did
//  before it handed bytes on: the answer depends on no commit.
static json_t *
s_decode_raw (self_t *self, const s_in_t *in, zmq_msg_t *frame)
{
    json_t *msg = NULL;
    shf_op_t op;
    uint64_t id = 0;
    char err [300];
    shf_err_t rc = shf_msg_decode (zmq_msg_data (frame), zmq_msg_size (frame),
                                   &msg, &op, &id, err, sizeof err);
    if (rc) {
        if (zframe_size (in->identity)) {
            json_t *reply = shf_msg_reply_error (id, rc, err);
            shf_reply_send (zsock_resolve (self->pipe),
                            zframe_data (in->identity),
                            zframe_size (in->identity), reply, NULL);
            json_decref (reply);
        }
        return NULL;
    }
    if (in->note && in->note->wf_id [0] && !json_object_get (msg, "wf_id"))
        json_object_set_new (msg, "wf_id", json_string (in->note->wf_id));
    shf_msg_default_ns (msg, op);
    return msg;
}

//  DISPATCHED notes are held back for a round of the loop: the run's next
//  input (the worker's result, for a short activity) usually comes in that
//  time, and then both transitions land in one batch, which writes the
//  run's state once instead of twice; when that input is the task's own
//  result, the note goes with it and is not applied at all (s_absorbs).
//  Order is kept: a held note goes into the batch just before any input
//  of its run, and whatever was held in an earlier round goes in at the
//  next s_process; nothing a client or worker waits for is held, only the
//  ActivityStarted record.
static void
s_hold (self_t *self, const s_in_t *in)
{
    s_in_append (&self->held, &self->n_held, &self->cap_held, in);
    self->held [self->n_held - 1].round = self->round;
}

//  Whether a held DISPATCHED note is the start of the very task a report
//  (complete, or fail other than a hand-back) is about. Such a note is not
//  applied on its own: the state machine records ActivityStarted with the
//  result when the step is still scheduled, so the pair costs one
//  transition instead of two, and the start's timers are never armed only
//  to be dropped in the same batch. If the report is refused, the note is
//  applied after all, right after it (s_activity).
static bool
s_absorbs (const s_in_t *request, const shf_shard_note_t *held)
{
    const shf_shard_note_t *note = request->note;
    if (request->started || !note || !note->has_token
        || (!request->msg && !request->completion))
        return false;
    const char *op =
        request->completion ? "complete" : shf_msg_str (request->msg, "op");
    const char *etype =
        shf_msg_str (json_object_get (request->msg, "error"), "type");
    bool report = op
                  && (streq (op, "complete")
                      || (streq (op, "fail")
                          && !(etype && streq (etype, "WorkerShutdown"))));
    return report && note->token.attempt == held->token.attempt
           && streq (note->token.step, held->token.step)
           && streq (note->token.run_id, held->token.run_id)
           && streq (note->token.wf_id, held->token.wf_id)
           && streq (note->token.ns, held->token.ns);
}

//  Moves held notes into the batch: with request, those of its run (all of
//  them when its run is not known), or into the request itself when it
//  reports that note's task (s_absorbs); without, those held since an
//  earlier round (every one when all).
static void
s_unhold (self_t *self, s_in_t *request, bool all)
{
    const char *ns = NULL, *wf_id = NULL;
    if (request && request->note && request->note->has_token) {
        ns = request->note->token.ns;
        wf_id = request->note->token.wf_id;
    }
    else if (request) {
        //  s_decode_raw set what a start's note carried in the message
        ns = shf_msg_str (request->msg, "ns");
        wf_id = shf_msg_str (request->msg, "wf_id");
        if (!ns)
            ns = SHF_MSG_DEFAULT_NS;
    }
    size_t kept = 0;
    for (size_t i = 0; i < self->n_held; i++) {
        const s_in_t *held = &self->held [i];
        bool take;
        if (!request)
            take = all || held->round < self->round;
        else
            take = !wf_id
                   || (streq (held->note->token.wf_id, wf_id)
                       && streq (held->note->token.ns, ns));
        if (take && request && s_absorbs (request, held->note))
            request->started = held->note;
        else if (take)
            s_in_append (&self->in, &self->n_in, &self->cap_in, held);
        else
            self->held [kept++] = *held;
    }
    self->n_held = kept;
}

//  A report frame that is a completion is read in place: the shard needs
//  only its id, token and output, not a message tree. Anything else (and
//  a bad completion, for the answer that says why) is decoded in full.
static bool
s_read_completion (s_in_t *in, zmq_msg_t *frame)
{
    shf_taskmsg_complete_t done;
    if (shf_taskmsg_read_complete (zmq_msg_data (frame), zmq_msg_size (frame),
                                   &done, NULL, 0)
        != SHF_OK)
        return false;
    json_t *output = NULL;
    if (done.output
        && shf_mpack_decode (done.output, done.output_size, &output, NULL, 0)
               != SHF_OK)
        return false;  //  cannot be: the read checked those bytes
    in->completion = true;
    in->id = done.id;
    in->token = strndup (done.token.ptr, done.token.len);
    assert (in->token);
    in->output = output;
    return true;
}

//  Reads one pipe message into the batch without waiting: false when none
//  is queued or on $TERM; a read for the reader is set aside instead.
#define S_PARTS_MAX 4
static bool
s_take (self_t *self, void *pipe)
{
    zmq_msg_t parts [S_PARTS_MAX];
    int n = shf_frames_recv (pipe, parts, S_PARTS_MAX);
    if (n < 0) {
        if (zmq_errno () != EAGAIN)
            self->terminated = true;  //  the context is ending
        return false;
    }
    if (shf_frames_is (&parts [0], "$TERM"))
        self->terminated = true;
    else {
        s_in_t taken = {0};
        s_in_t *in = &taken;
        bool raw = shf_frames_is (&parts [0], "RAW");
        if ((raw || shf_frames_is (&parts [0], "REQ")) && (n == 3 || n == 4)) {
            in->kind = 'R';
            in->identity = zframe_new (zmq_msg_data (&parts [1]),
                                       zmq_msg_size (&parts [1]));
            if (n == 4)
                in->note = shf_frames_ptr (&parts [3]);
            if (raw && in->note && in->note->has_token
                && s_read_completion (in, &parts [2]))
                ;
            else
                in->msg = raw ? s_decode_raw (self, in, &parts [2])
                              : shf_frames_ptr (&parts [2]);
        }
        else if (shf_frames_is (&parts [0], "GATHER") && n == 3) {
            in->kind = 'G';
            if (zmq_msg_size (&parts [1]) == 4)
                memcpy (&in->gather_id, zmq_msg_data (&parts [1]), 4);
            in->msg = shf_frames_ptr (&parts [2]);
        }
        else if (shf_frames_is (&parts [0], "DISPATCHED") && n == 2) {
            in->kind = 'D';
            in->note = shf_frames_ptr (&parts [1]);
        }
        if (in->kind && in->msg && s_for_reader (self, in))
            s_read_defer (self, in);
        else if (in->kind == 'D' && in->note)
            s_hold (self, in);
        else if (in->kind && (in->msg || in->completion)) {
            if (in->kind == 'R')
                s_unhold (self, in, false);
            s_in_append (&self->in, &self->n_in, &self->cap_in, in);
        }
        else {
            zframe_destroy (&in->identity);
            json_decref (in->msg);
            free (in->note);
        }
    }
    shf_frames_close (parts, n, S_PARTS_MAX);
    return !self->terminated;
}

static shf_err_t
s_run_batch (self_t *self, size_t from)
{
    shf_err_t rc = SHF_OK;
    for (size_t i = from; i < self->n_in && rc == SHF_OK; i++) {
        s_in_t *in = &self->in [i];
        size_t mark = self->n_out;
        if (in->kind == 'R' && in->completion)
            rc = s_completion (self, in);
        else if (in->kind == 'R')
            rc = s_request (self, in->identity, in->msg, in->note, in->started);
        else if (in->kind == 'G')
            rc = s_gather (self, in->gather_id, in->msg);
        else
            rc = s_dispatched (self, in->note);
        if (rc && !s_fatal (rc)) {
            //  A storage problem confined to one request (a corrupt
            //  record, an oversize key): answer it, keep the batch.
            shf_warn ("shard %u: request failed: %s", self->id,
                      shf_strerror (rc));
            while (self->n_out > mark)
                s_out_free (&self->out [--self->n_out]);
            if (in->kind == 'R')
                s_reply_error (self, in->identity, s_in_id (in), rc,
                               shf_strerror (rc));
            rc = SHF_OK;
        }
    }
    if (rc == SHF_OK)
        rc = s_fire_timers (self);
    return rc;
}

//  Encodes a reply and hands it to the router with its identity (taken).
static void
s_send_reply (self_t *self, zframe_t **identity_p, const json_t *reply,
              const char *release)
{
    shf_reply_send (zsock_resolve (self->pipe), zframe_data (*identity_p),
                    zframe_size (*identity_p), reply, release);
    zframe_destroy (identity_p);
}

static void
s_send_outbox (self_t *self)
{
    for (size_t i = 0; i < self->n_out; i++) {
        s_out_t *o = &self->out [i];
        switch (o->kind) {
            case S_OUT_REPLY: {
                if (o->body)
                    s_send_reply (self, &o->identity, o->body, o->token);
                else {
                    //  sent together after the loop (shf_reply.h)
                    shf_reply_acks_add (&self->acks, zframe_data (o->identity),
                                        zframe_size (o->identity), o->id,
                                        o->token);
                    zframe_destroy (&o->identity);
                }
                break;
            }
            case S_OUT_TASK: {
                void *pipe = zsock_resolve (self->pipe);
                zmq_send (pipe, "TASK", 4, ZMQ_SNDMORE);
                zmq_send (pipe, &o->task, sizeof (void *), 0);
                o->task = NULL;  //  ownership passes to the router
                break;
            }
            case S_OUT_GATHERED: {
                void *pipe = zsock_resolve (self->pipe);
                zmq_send (pipe, "GATHERED", 8, ZMQ_SNDMORE);
                zmq_send (pipe, &o->gather_id, 4, ZMQ_SNDMORE);
                zmq_send (pipe, &o->body, sizeof (void *), 0);
                o->body = NULL;  //  ownership passes to the router
                break;
            }
            case S_OUT_CANCEL:
                zsock_send (self->pipe, "sss", "CANCEL", o->queue, o->token);
                break;
            case S_OUT_WAIT: {
                zlistx_t *list = zhashx_lookup (self->waiters, o->exec_key);
                if (!list) {
                    list = zlistx_new ();
                    zlistx_set_destructor (list, s_waiter_destroy);
                    zhashx_insert (self->waiters, o->exec_key, list);
                }
                s_waiter_t *w = shf_alloc (sizeof *w);
                w->identity = o->identity;
                o->identity = NULL;
                w->id = o->id;
                w->deadline = o->deadline;
                zlistx_add_end (list, w);
                if (w->deadline < self->wait_min)
                    self->wait_min = w->deadline;
                break;
            }
            case S_OUT_WAKE: {
                zlistx_t *list = zhashx_lookup (self->waiters, o->exec_key);
                if (!list)
                    break;
                for (s_waiter_t *w = zlistx_first (list); w;
                     w = zlistx_next (list)) {
                    if (o->result) {
                        shf_reply_send_packed (zsock_resolve (self->pipe),
                                               zframe_data (w->identity),
                                               zframe_size (w->identity), w->id,
                                               o->result, o->result_size);
                        zframe_destroy (&w->identity);
                        continue;
                    }
                    json_t *reply =
                        shf_msg_reply_ok (w->id, json_incref (o->body));
                    s_send_reply (self, &w->identity, reply, NULL);
                    json_decref (reply);
                }
                zhashx_delete (self->waiters, o->exec_key);
                break;
            }
        }
        s_out_free (o);
    }
    self->n_out = 0;
    shf_reply_acks_send (&self->acks, zsock_resolve (self->pipe));
}

//  Answers every request of a batch that cannot commit.
static void
s_fail_batch (self_t *self, shf_err_t rc)
{
    s_out_clear (self);
    for (size_t i = 0; i < self->n_in; i++) {
        s_in_t *in = &self->in [i];
        uint64_t id = s_in_id (in);
        if (in->kind == 'R')
            s_reply_error (self, in->identity, id, SHF_EUNAVAIL,
                           "shard is fenced after a storage failure");
        else if (in->kind == 'G') {
            s_out_t *o = s_out_push (self, S_OUT_GATHERED);
            o->gather_id = in->gather_id;
            o->body = shf_msg_reply_error (0, SHF_EUNAVAIL, shf_strerror (rc));
        }
    }
    s_send_outbox (self);
}

//  Writes a run's state into the open transaction.
static shf_err_t
s_write_run (self_t *self, const shf_run_t *state)
{
    shf_key_t key;
    shf_runs_key (&key, state);
    self->encoded.size = 0;
    shf_err_t rc =
        key.overflow ? SHF_ETOOLARGE : shf_run_encode (state, &self->encoded);
    if (rc == SHF_OK)
        rc = shf_txn_put (self->txn, SHF_DB_RUNS, key.data, key.size,
                          self->encoded.data, self->encoded.size);
    if (rc == SHF_OK)
        self->n_state_writes++;
    return rc;
}

//  Writes every state changed in the open transaction.
static shf_err_t
s_flush_dirty (self_t *self)
{
    for (shf_run_t *state = zhashx_first (self->dirty); state;
         state = zhashx_next (self->dirty)) {
        shf_err_t rc = s_write_run (self, state);
        if (rc)
            return rc;
    }
    zhashx_purge (self->dirty);
    return SHF_OK;
}

//  How long the open transaction may stay open for company. Only a batch
//  with nothing to send lingers: measured, making batches with replies
//  wait for more (1-2 ms under load) cut commits by a third but lowered
//  W3 throughput by 20-40%, as every workflow's four sequential commits
//  got slower and the client's window of 64 caps what is in flight.
static int64_t
s_linger_us (self_t *self)
{
    return self->n_out == 0 ? SHF_SHARD_LINGER_US : 0;
}

//  Runs the inputs taken since the last call, and commits unless the
//  transaction has nothing to send yet and is young: then it lingers open
//  (up to SHF_SHARD_LINGER_US) so transitions nobody waits for, such as
//  ActivityStarted, share the fsync of the next batch that answers
//  someone. Nothing is sent from an uncommitted transaction either way.
static void
s_process (self_t *self, bool closing)
{
    if (self->fenced) {
        s_fail_batch (self, SHF_EIO);
        s_in_clear (self);
        return;
    }
    shf_err_t rc = SHF_OK;
    bool linger = false;
    size_t from = self->n_done;
    for (int attempt = 0;; attempt++) {
        if (!self->txn) {
            if (shf_store_nearly_full (self->store)
                && shf_store_grow (self->store) != SHF_OK)
                shf_warn ("shard %u: could not grow the map", self->id);
            rc = shf_store_begin (self->store, true, &self->txn);
            self->txn_since = shf_clock_mono_us ();
        }
        if (rc == SHF_OK)
            rc = s_run_batch (self, from);
        linger = rc == SHF_OK && !closing && self->n_in < SHF_SHARD_BATCH
                 && shf_clock_mono_us () - self->txn_since < s_linger_us (self);
        if (rc == SHF_OK && !linger)
            rc = s_flush_dirty (self);
        if (rc == SHF_EFULL && attempt < 8) {
            //  The state machine mutated cached states in place; drop
            //  them so the redo starts from what LMDB holds, with every
            //  input of the transaction.
            shf_txn_abort (&self->txn);
            s_out_clear (self);
            shf_cache_purge (self->cache);
            zhashx_purge (self->dirty);
            self->next_due = INT64_MIN;  //  fired timers are back: rescan
            from = 0;
            if (shf_store_grow (self->store) == SHF_OK)
                continue;
        }
        break;
    }
    if (rc == SHF_OK && linger) {
        self->n_done = self->n_in;
        return;
    }
    self->n_done = 0;
    if (rc == SHF_OK) {
        //  Failpoints around the commit prove the ordering: dying before
        //  the commit loses the batch and nothing of it was sent; dying
        //  after it and before the sends loses nothing acknowledged.
        if (shf_failpoint ("shard.before_commit"))
            rc = SHF_EIO;
        if (rc == SHF_OK) {
            rc = shf_txn_commit (&self->txn);
            self->n_commits++;
            self->n_inputs += self->n_in;
        }
        else
            shf_txn_abort (&self->txn);
    }
    else
        shf_txn_abort (&self->txn);
    if (rc != SHF_OK) {
        shf_error ("shard %u: batch failed (%s); fencing the shard", self->id,
                   shf_strerror (rc));
        self->fenced = true;
        shf_cache_purge (self->cache);
        zhashx_purge (self->dirty);
        s_fail_batch (self, rc);
        s_in_clear (self);
        return;
    }
    //  The batch is durable: only now may its replies, tasks and wake-ups
    //  leave the shard.
    shf_failpoint ("shard.after_commit");
    s_send_outbox (self);
    s_in_clear (self);
    //  After the sends, so that an extension of the file delays none.
    shf_store_prealloc (self->store);
}

//  Expired result waiters are answered with the run still open.
static void
s_expire_waiters (self_t *self)
{
    //  Held requests can number thousands: walk them only when the
    //  earliest one is due, and find the next earliest on the way.
    int64_t now = shf_clock_mono_us () / 1000;
    if (now < self->wait_min)
        return;
    self->wait_min = INT64_MAX;
    zlistx_t *keys = zhashx_keys (self->waiters);
    for (const char *name = zlistx_first (keys); name;
         name = zlistx_next (keys)) {
        zlistx_t *list = zhashx_lookup (self->waiters, name);
        s_waiter_t *w = zlistx_first (list);
        while (w) {
            void *handle = zlistx_cursor (list);
            if (w->deadline <= now) {
                shf_run_t *state = s_state_in_memory (self, name);
                const char *wf_id = strchr (name, '\x1f');
                json_t *body =
                    state
                        ? shf_workflow_result (state)
                        : json_pack ("{s:s, s:n, s:s, s:n, s:n}", "workflow_id",
                                     wf_id ? wf_id + 1 : name, "run_id",
                                     "status", "running", "output", "failure");
                json_t *reply = shf_msg_reply_ok (w->id, body);
                s_send_reply (self, &w->identity, reply, NULL);
                json_decref (reply);
                zlistx_delete (list, handle);
                w = zlistx_first (list);
            }
            else {
                if (w->deadline < self->wait_min)
                    self->wait_min = w->deadline;
                w = zlistx_next (list);
            }
        }
        if (zlistx_size (list) == 0)
            zhashx_delete (self->waiters, name);
    }
    zlistx_destroy (&keys);
}

//  --------------------------------------------------------------------
//  Open and recover

static void
s_waiter_destroy (void **item)
{
    s_waiter_t *w = *item;
    if (w) {
        zframe_destroy (&w->identity);
        free (w);
        *item = NULL;
    }
}

static void
s_list_destroy (void **item)
{
    zlistx_t *list = *item;
    zlistx_destroy (&list);
    *item = NULL;
}

//  Rebuilds what the shard keeps in memory from LMDB alone: the epoch,
//  the next timer due and the pending tasks (handed to the matcher).
static shf_err_t
s_recover (self_t *self)
{
    shf_err_t rc = shf_store_begin (self->store, true, &self->txn);
    if (rc)
        return rc;
    json_t *meta = NULL;
    rc = shf_txn_get_json (self->txn, SHF_DB_META, "shard", 5, &meta);
    if (rc == SHF_ENOTFOUND) {
        meta = json_pack ("{s:i, s:I, s:i}", "shard", (int) self->id, "epoch",
                          (json_int_t) 1, "schema", 2);
        rc = shf_txn_put_json (self->txn, SHF_DB_META, "shard", 5, meta);
    }
    if (rc == SHF_OK)
        self->epoch =
            (uint64_t) json_integer_value (json_object_get (meta, "epoch"));
    json_decref (meta);
    size_t tasks = 0, unreadable = 0;
    if (rc == SHF_OK) {
        shf_cursor_t *cur;
        rc = shf_cursor_open (self->txn, SHF_DB_TASKS, &cur);
        const void *k, *v;
        size_t kl, vl;
        if (rc == SHF_OK)
            rc = shf_cursor_seek (cur, NULL, 0, &k, &kl, &v, &vl);
        while (rc == SHF_OK) {
            shf_shard_task_t *task = NULL;
            rc = s_task_recovered (self, k, kl, v, vl, &task);
            if (rc == SHF_OK) {
                s_out_push (self, S_OUT_TASK)->task = task;
                tasks++;
            }
            else if (!s_fatal (rc)) {
                s_task_unreadable (self, k, kl);
                unreadable++;
                rc = SHF_OK;
            }
            if (rc == SHF_OK)
                rc = shf_cursor_next (cur, &k, &kl, &v, &vl);
        }
        shf_cursor_close (&cur);
        if (rc == SHF_ENOTFOUND)
            rc = SHF_OK;
    }
    if (rc == SHF_OK) {
        self->next_due = INT64_MAX;
        shf_cursor_t *cur;
        rc = shf_cursor_open (self->txn, SHF_DB_TIMERS, &cur);
        const void *k, *v;
        size_t kl, vl;
        if (rc == SHF_OK
            && shf_cursor_seek (cur, NULL, 0, &k, &kl, &v, &vl) == SHF_OK)
            self->next_due = (int64_t) shf_key_get_u64 (k);
        shf_cursor_close (&cur);
    }
    if (rc == SHF_OK)
        rc = shf_txn_commit (&self->txn);
    else
        shf_txn_abort (&self->txn);
    if (rc == SHF_OK && tasks)
        shf_info ("shard %u: recovered %zu pending tasks", self->id, tasks);
    if (rc == SHF_OK && unreadable)
        shf_error ("shard %u: %zu stored task(s) could not be read and are "
                   "not offered to workers",
                   self->id, unreadable);
    return rc;
}

void
shf_shard (zsock_t *pipe, void *vargs)
{
    shf_shard_args_t *args = vargs;
    shf_thread_enter ("shf-shard-%u", (unsigned) args->id);
    self_t self_s;
    self_t *self = &self_s;
    memset (self, 0, sizeof *self);
    self->pipe = pipe;
    self->args = args;
    self->id = args->id;
    self->cache = shf_cache_new (SHF_SHARD_CACHE_MAX);
    self->dirty = zhashx_new ();
    zhashx_set_destructor (self->dirty, s_run_destroy);
    self->defs = shf_defs_new (self->id, 0);
    self->waiters = zhashx_new ();
    zhashx_set_destructor (self->waiters, s_list_destroy);
    shf_wf_output_init (&self->wf_out);
    self->wait_min = INT64_MAX;

    args->status = shf_store_open (&self->store, args->dir, 0, args->durable);
    if (args->status == SHF_OK)
        args->status = shf_runs_upgrade (self->store, self->id, NULL);
    if (args->status == SHF_OK)
        args->status = s_recover (self);
    if (args->status == SHF_OK) {
        //  Started on the recovered store, stopped before it closes.
        assert (args->replies);
        self->reader_args =
            (shf_reader_args_t){self->id, self->store, args->replies};
        self->reader = zactor_new (shf_reader, &self->reader_args);
    }
    zsock_signal (pipe, 0);
    if (args->status != SHF_OK) {
        s_out_clear (self);
        self->fenced = true;
    }
    else
        s_send_outbox (self);

    while (!self->terminated) {
        int64_t now_ms = shf_clock_now ();
        int64_t timeout = -1;
        if (self->next_due != INT64_MAX)
            timeout = self->next_due > now_ms ? self->next_due - now_ms : 0;
        int64_t next_wait = self->wait_min;
        if (next_wait != INT64_MAX) {
            int64_t left = next_wait - shf_clock_mono_us () / 1000;
            if (left < 0)
                left = 0;
            if (timeout < 0 || left < timeout)
                timeout = left;
        }
        //  Bounded so a clock jump (test clock file) is noticed soon.
        if (timeout < 0 || timeout > 1000)
            timeout = 1000;
        if (self->txn) {
            int64_t left_us =
                self->txn_since + s_linger_us (self) - shf_clock_mono_us ();
            int64_t left = left_us > 0 ? (left_us + 999) / 1000 : 0;
            if (left < timeout)
                timeout = left;
        }
        if (self->n_held > 0 && timeout > SHF_SHARD_HOLD_MS)
            timeout = SHF_SHARD_HOLD_MS;
        zmq_pollitem_t item = {zsock_resolve (pipe), 0, ZMQ_POLLIN, 0};
        int n = zmq_poll (&item, 1, (long) timeout);
        if (n < 0)
            break;
        self->round++;
        if (item.revents & ZMQ_POLLIN)
            while (self->n_in < SHF_SHARD_BATCH
                   && s_take (self, zsock_resolve (pipe)))
                ;
        //  After the reads, so a result read this round still finds its
        //  task's note held (s_absorbs). A note of a run with no input
        //  this round keeps its order by going in last.
        s_unhold (self, NULL, false);
        if (self->terminated)
            break;
        bool timers_due =
            self->next_due != INT64_MAX && self->next_due <= shf_clock_now ();
        bool lingered =
            self->txn
            && shf_clock_mono_us () - self->txn_since >= s_linger_us (self);
        if (self->n_in > self->n_done || timers_due || lingered)
            s_process (self, false);
        if (next_wait != INT64_MAX)
            s_expire_waiters (self);
        if (self->n_reads && !self->txn && self->n_in == 0)
            s_flush_reads (self);
    }
    s_unhold (self, NULL, true);
    if (self->txn || self->n_in > self->n_done)
        s_process (self, true);  //  commit what lingered or was held
    if (self->n_reads)
        s_flush_reads (self);
    //  Answers what it was given, then ends: no reader outlives the store.
    zactor_destroy (&self->reader);
    shf_debug ("shard %u: %" PRIu64 " commits, %" PRIu64 " inputs, %" PRIu64
               " state writes",
               self->id, self->n_commits, self->n_inputs, self->n_state_writes);
    s_in_clear (self);
    s_out_clear (self);
    free (self->in);
    free (self->out);
    free (self->reads);
    for (size_t i = 0; i < self->n_held; i++)
        free (self->held [i].note);
    free (self->held);
    shf_wf_output_free (&self->wf_out);
    shf_cache_destroy (&self->cache);
    zhashx_destroy (&self->dirty);
    shf_mpack_out_free (&self->encoded);
    shf_mpack_out_free (&self->taskrec);
    shf_reply_acks_free (&self->acks);
    shf_defs_destroy (&self->defs);
    zhashx_destroy (&self->waiters);
    shf_store_destroy (&self->store);
}
