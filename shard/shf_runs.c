/*  shf_runs.c - where a run's records live in its shard (shf_runs.h).
*/
#include "shf_runs.h"
#include "shf_log.h"
#include "shf_mpack.h"
#include "shf_workflow.h"
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Runs moved per upgrade transaction: each moves a state, ~10 history
//  records and its tasks, so a transaction stays far below LMDB's limit
//  of dirty pages however big the shard is.
#define S_UPGRADE_BATCH 2000

void
shf_runs_key (shf_key_t *key, const shf_run_t *run)
{
    shf_key_init (key);
    shf_key_placed (key, shf_workflow_started_at (run), shf_workflow_ns (run),
                    shf_workflow_id (run), shf_workflow_run_id (run));
}

shf_run_ids_t
shf_runs_key_ids (const shf_key_t *key)
{
    assert (key->size > 8);
    shf_run_ids_t ids;
    ids.ns = (const char *) key->data + 8;
    ids.workflow_id = ids.ns + strlen (ids.ns) + 1;
    ids.run_id = ids.workflow_id + strlen (ids.workflow_id) + 1;
    ids.started_at = (int64_t) shf_key_get_u64 (key->data);
    return ids;
}

//  Whether bytes are a placed key: a start time, then three names, each
//  NUL-terminated, and nothing after them.
static bool
s_is_placed (const void *data, size_t size)
{
    if (size < 8 + 3 || size > SHF_KEY_MAX)
        return false;
    const unsigned char *p = (const unsigned char *) data + 8;
    const unsigned char *end = (const unsigned char *) data + size;
    for (int i = 0; i < 3; i++) {
        const unsigned char *nul = memchr (p, 0, (size_t) (end - p));
        if (!nul)
            return false;
        p = nul + 1;
    }
    return p == end;
}

shf_err_t
shf_runs_find (shf_txn_t *txn, const char *ns, const char *wf_id,
               shf_key_t *placed)
{
    shf_key_t key;
    shf_key_exec (&key, ns, wf_id);
    if (key.overflow)
        return SHF_ENOTFOUND;
    const void *data;
    size_t size;
    shf_err_t rc =
        shf_txn_get (txn, SHF_DB_EXEC, key.data, key.size, &data, &size);
    if (rc)
        return rc;
    if (!s_is_placed (data, size)) {
        shf_error ("runs: the exec record of %s/%s (%zu bytes) is not a "
                   "run's key",
                   ns, wf_id, size);
        return SHF_ECORRUPT;
    }
    shf_key_init (placed);
    memcpy (placed->data, data, size);
    placed->size = size;
    return SHF_OK;
}

shf_err_t
shf_runs_load (shf_txn_t *txn, const char *ns, const char *wf_id,
               shf_run_t **run_p)
{
    *run_p = NULL;
    shf_key_t key;
    shf_err_t rc = shf_runs_find (txn, ns, wf_id, &key);
    if (rc)
        return rc;
    const void *data;
    size_t size;
    rc = shf_txn_get (txn, SHF_DB_RUNS, key.data, key.size, &data, &size);
    if (rc == SHF_ENOTFOUND) {
        shf_error ("runs: the current run of %s/%s is missing", ns, wf_id);
        return SHF_ECORRUPT;
    }
    //  A placed key (checked by shf_runs_find)
    shf_run_ids_t ids = shf_runs_key_ids (&key);
    if (rc == SHF_OK
        && (rc = shf_run_decode (data, size, &ids, run_p)) != SHF_OK)
        shf_error ("runs: the run of %s/%s (%zu bytes) does not decode", ns,
                   wf_id, size);
    return rc;
}

shf_err_t
shf_runs_point (shf_txn_t *txn, const shf_run_t *run)
{
    shf_key_t key, placed;
    shf_key_exec (&key, shf_workflow_ns (run), shf_workflow_id (run));
    shf_runs_key (&placed, run);
    if (key.overflow || placed.overflow)
        return SHF_ETOOLARGE;
    return shf_txn_put (txn, SHF_DB_EXEC, key.data, key.size, placed.data,
                        placed.size);
}

//  --------------------------------------------------------------------
//  Upgrade from schema 1, where exec held the state itself and history
//  and tasks were keyed by the run key alone.

typedef struct {
    shf_key_t key;
    void *value;
    size_t size;
} s_record_t;

//  Re-keys every record of db whose key starts with from (the run key):
//  the rest of the key goes behind to instead. Read first, written after:
//  no cursor walks a tree while it changes.
static shf_err_t
s_rekey (shf_txn_t *txn, shf_db_t db, const shf_key_t *from,
         const shf_key_t *to)
{
    shf_cursor_t *cur;
    shf_err_t rc = shf_cursor_open (txn, db, &cur);
    if (rc)
        return rc;
    s_record_t *records = NULL;
    size_t n = 0, cap = 0;
    const void *k, *v;
    size_t kl, vl;
    rc = shf_cursor_seek (cur, from->data, from->size, &k, &kl, &v, &vl);
    while (rc == SHF_OK && kl >= from->size
           && memcmp (k, from->data, from->size) == 0) {
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            records = realloc (records, cap * sizeof *records);
            assert (records);
        }
        s_record_t *r = &records [n++];
        r->key = *to;
        size_t rest = kl - from->size;
        if (r->key.size + rest > SHF_KEY_MAX)
            r->key.overflow = 1;
        else {
            memcpy (r->key.data + r->key.size,
                    (const unsigned char *) k + from->size, rest);
            r->key.size += rest;
        }
        r->value = malloc (vl ? vl : 1);
        assert (r->value);
        memcpy (r->value, v, vl);
        r->size = vl;
        rc = shf_cursor_del (cur);
        if (rc == SHF_OK)
            rc =
                shf_cursor_seek (cur, from->data, from->size, &k, &kl, &v, &vl);
    }
    shf_cursor_close (&cur);
    if (rc == SHF_ENOTFOUND)
        rc = SHF_OK;
    for (size_t i = 0; i < n; i++) {
        if (rc == SHF_OK)
            rc = records [i].key.overflow
                     ? SHF_ETOOLARGE
                     : shf_txn_put (txn, db, records [i].key.data,
                                    records [i].key.size, records [i].value,
                                    records [i].size);
        free (records [i].value);
    }
    free (records);
    return rc;
}

//  Whether an exec value is a schema-1 state: a msgpack map, or array in
//  the packed form (a placed key starts with the high byte of a start
//  time, 0 until the year 2^56 ms). Schema-1 shards hold maps; a packed
//  one is what a test (or a tool) may have written there since.
static bool
s_is_state (const void *data, size_t size)
{
    unsigned char b = size ? *(const unsigned char *) data : 0;
    return (b >= 0x80 && b <= 0x9f) || (b >= 0xdc && b <= 0xdf);
}

//  Moves one run: its state to runs, history and tasks behind its placed
//  key, exec to point at it.
static shf_err_t
s_upgrade_run (shf_txn_t *txn, const void *k, size_t kl, const void *v,
               size_t vl, size_t *moved)
{
    shf_run_t *run = NULL;
    //  Schema 1 kept maps, which carry their IDs.
    shf_err_t rc = shf_run_decode (v, vl, NULL, &run);
    if (rc) {
        //  Loading it will say the same: one unreadable run must not keep
        //  the shard (and every other run in it) from opening.
        char name [SHF_KEY_MAX + 1];
        for (size_t i = 0; i < kl; i++)
            name [i] = ((const char *) k) [i] ? ((const char *) k) [i] : '/';
        name [kl] = 0;
        shf_error ("runs: the schema-1 run of %s (%zu bytes) does not "
                   "decode; left as it is",
                   name, vl);
        return SHF_OK;
    }
    shf_key_t exec, placed, old;
    shf_key_init (&exec);
    memcpy (exec.data, k, kl);
    exec.size = kl;
    shf_runs_key (&placed, run);
    shf_key_init (&old);
    shf_key_run (&old, shf_workflow_ns (run), shf_workflow_id (run),
                 shf_workflow_run_id (run));
    rc = placed.overflow || old.overflow ? SHF_ETOOLARGE : SHF_OK;
    //  v is borrowed from the tree that the puts below change
    void *state = malloc (vl);
    assert (state);
    memcpy (state, v, vl);
    if (rc == SHF_OK)
        rc =
            shf_txn_put (txn, SHF_DB_RUNS, placed.data, placed.size, state, vl);
    free (state);
    if (rc == SHF_OK)
        rc = s_rekey (txn, SHF_DB_HISTORY, &old, &placed);
    if (rc == SHF_OK)
        rc = s_rekey (txn, SHF_DB_TASKS, &old, &placed);
    if (rc == SHF_OK)
        rc = shf_txn_put (txn, SHF_DB_EXEC, exec.data, exec.size, placed.data,
                          placed.size);
    if (rc == SHF_OK)
        (*moved)++;
    shf_run_decref (run);
    return rc;
}

//  Moves up to S_UPGRADE_BATCH runs from exec key *after on (empty: the
//  first); *after becomes the last key looked at, *done_p is set when
//  the scan reached the end.
static shf_err_t
s_upgrade_batch (shf_txn_t *txn, shf_key_t *after, size_t *moved, bool *done_p)
{
    *done_p = false;
    shf_cursor_t *cur;
    shf_err_t rc = shf_cursor_open (txn, SHF_DB_EXEC, &cur);
    if (rc)
        return rc;
    //  Collected first: moving changes exec under the cursor.
    shf_key_t *keys = calloc (S_UPGRADE_BATCH, sizeof *keys);
    assert (keys);
    size_t n = 0;
    const void *k, *v;
    size_t kl, vl;
    rc = shf_cursor_seek (cur, after->size ? after->data : NULL, after->size,
                          &k, &kl, &v, &vl);
    if (rc == SHF_OK && after->size && kl == after->size
        && memcmp (k, after->data, kl) == 0)
        rc = shf_cursor_next (cur, &k, &kl, &v, &vl);
    while (rc == SHF_OK && n < S_UPGRADE_BATCH) {
        if (s_is_state (v, vl) && kl <= SHF_KEY_MAX) {
            memcpy (keys [n].data, k, kl);
            keys [n].size = kl;
            n++;
        }
        memcpy (after->data, k, kl);
        after->size = kl;
        rc = shf_cursor_next (cur, &k, &kl, &v, &vl);
    }
    shf_cursor_close (&cur);
    if (rc == SHF_ENOTFOUND) {
        *done_p = true;
        rc = SHF_OK;
    }
    for (size_t i = 0; i < n && rc == SHF_OK; i++) {
        rc = shf_txn_get (txn, SHF_DB_EXEC, keys [i].data, keys [i].size, &v,
                          &vl);
        if (rc == SHF_OK)
            rc =
                s_upgrade_run (txn, keys [i].data, keys [i].size, v, vl, moved);
    }
    free (keys);
    return rc;
}

shf_err_t
shf_runs_upgrade (shf_store_t *store, unsigned shard, size_t *moved_p)
{
    size_t moved = 0;
    if (moved_p)
        *moved_p = 0;
    shf_txn_t *txn;
    shf_err_t rc = shf_store_begin (store, false, &txn);
    if (rc)
        return rc;
    json_t *meta = NULL;
    rc = shf_txn_get_json (txn, SHF_DB_META, "shard", 5, &meta);
    shf_txn_abort (&txn);
    if (rc == SHF_ENOTFOUND)
        return SHF_OK;  //  a new shard starts in schema 2
    if (rc)
        return rc;
    json_int_t schema = json_integer_value (json_object_get (meta, "schema"));
    if (schema >= 2) {
        json_decref (meta);
        return SHF_OK;
    }
    shf_info ("shard %u: moving its runs to schema 2", shard);
    shf_key_t after;
    shf_key_init (&after);
    bool done = false;
    while (rc == SHF_OK && !done) {
        rc = shf_store_begin (store, true, &txn);
        if (rc)
            break;
        rc = s_upgrade_batch (txn, &after, &moved, &done);
        if (rc == SHF_OK && done) {
            json_object_set_new (meta, "schema", json_integer (2));
            rc = shf_txn_put_json (txn, SHF_DB_META, "shard", 5, meta);
        }
        if (rc == SHF_OK)
            rc = shf_txn_commit (&txn);
        else
            shf_txn_abort (&txn);
    }
    json_decref (meta);
    if (rc == SHF_OK)
        shf_info ("shard %u: %zu runs moved to schema 2", shard, moved);
    else
        shf_error ("shard %u: moving runs to schema 2 failed: %s", shard,
                   shf_strerror (rc));
    if (moved_p)
        *moved_p = moved;
    return rc;
}

//  --------------------------------------------------------------------
//  Self-test

//  Stores a run in the schema-1 layout: state in exec, a history record
//  and a task under the run key.
static void
s_test_put_v1 (shf_txn_t *txn, const char *wf_id, const char *run_id,
               int64_t started_at)
{
    json_t *state =
        json_pack ("{s:s, s:s, s:s, s:s, s:i, s:s, s:I, s:i, s:i, s:{}, s:[]}",
                   "ns", "default", "workflow_id", wf_id, "run_id", run_id,
                   "name", "w", "version", 1, "status", "running", "started_at",
                   (json_int_t) started_at, "next_event_id", 5, "next_timer_id",
                   1, "steps", "timers");
    assert (state);
    shf_key_t key;
    shf_key_exec (&key, "default", wf_id);
    shf_err_t rc =
        shf_txn_put_json (txn, SHF_DB_EXEC, key.data, key.size, state);
    assert (rc == SHF_OK);
    json_decref (state);
    shf_key_init (&key);
    shf_key_run (&key, "default", wf_id, run_id);
    shf_key_u64 (&key, 1);
    rc = shf_txn_put (txn, SHF_DB_HISTORY, key.data, key.size, "h1", 2);
    assert (rc == SHF_OK);
    key.size -= 8;
    shf_key_u64 (&key, 4);
    rc = shf_txn_put (txn, SHF_DB_HISTORY, key.data, key.size, "h4", 2);
    assert (rc == SHF_OK);
    key.size -= 8;
    shf_key_str (&key, "charge");
    shf_key_u32 (&key, 2);
    rc = shf_txn_put (txn, SHF_DB_TASKS, key.data, key.size, "t", 1);
    assert (rc == SHF_OK);
}

static void
s_test_meta (shf_store_t *store, int schema)
{
    shf_txn_t *txn;
    shf_err_t rc = shf_store_begin (store, true, &txn);
    assert (rc == SHF_OK);
    json_t *meta =
        json_pack ("{s:i, s:i, s:i}", "shard", 0, "epoch", 4, "schema", schema);
    rc = shf_txn_put_json (txn, SHF_DB_META, "shard", 5, meta);
    assert (rc == SHF_OK);
    json_decref (meta);
    rc = shf_txn_commit (&txn);
    assert (rc == SHF_OK);
}

//  Checks that wf_id's current run is run_id, placed, with its records.
static void
s_test_check (shf_txn_t *txn, const char *wf_id, const char *run_id,
              int64_t started_at)
{
    shf_run_t *run = NULL;
    shf_key_t placed;
    shf_err_t rc = shf_runs_load (txn, "default", wf_id, &run);
    assert (rc == SHF_OK);
    rc = shf_runs_find (txn, "default", wf_id, &placed);
    assert (rc == SHF_OK);
    assert (strcmp (shf_workflow_run_id (run), run_id) == 0);
    shf_run_ids_t ids = shf_runs_key_ids (&placed);
    assert (ids.started_at == started_at);
    assert (strcmp (ids.run_id, run_id) == 0);
    shf_run_decref (run);
    shf_key_t key = placed;
    shf_key_u64 (&key, 4);
    const void *v;
    size_t vl;
    rc = shf_txn_get (txn, SHF_DB_HISTORY, key.data, key.size, &v, &vl);
    assert (rc == SHF_OK && vl == 2 && memcmp (v, "h4", 2) == 0);
    key = placed;
    shf_key_str (&key, "charge");
    shf_key_u32 (&key, 2);
    rc = shf_txn_get (txn, SHF_DB_TASKS, key.data, key.size, &v, &vl);
    assert (rc == SHF_OK && vl == 1);
    //  nothing left under the run key
    shf_key_init (&key);
    shf_key_run (&key, "default", wf_id, run_id);
    shf_key_u64 (&key, 1);
    rc = shf_txn_get (txn, SHF_DB_HISTORY, key.data, key.size, &v, &vl);
    assert (rc == SHF_ENOTFOUND);
}

void
shf_runs_test (bool verbose)
{
    if (verbose)
        printf (" * shf_runs: ");
    char tmp [] = "/tmp/shf_runs_test.XXXXXX";
    char *made = mkdtemp (tmp);
    assert (made);
    shf_store_t *store = NULL;
    shf_err_t rc = shf_store_open (&store, tmp, 0, false);
    assert (rc == SHF_OK);

    //  A new shard (no meta yet) has nothing to move
    size_t moved = 99;
    rc = shf_runs_upgrade (store, 0, &moved);
    assert (rc == SHF_OK && moved == 0);

    //  A schema-1 shard of more runs than one transaction moves, one
    //  of them with the history of an earlier run of its ID, and one
    //  whose state is not a run
    enum { RUNS = S_UPGRADE_BATCH * 2 + 7 };
    shf_txn_t *txn;
    rc = shf_store_begin (store, true, &txn);
    assert (rc == SHF_OK);
    for (int i = 0; i < RUNS; i++) {
        char wf_id [32], run_id [32];
        snprintf (wf_id, sizeof wf_id, "wf-%d", i * 7919 % RUNS);
        snprintf (run_id, sizeof run_id, "run-%d", i);
        s_test_put_v1 (txn, wf_id, run_id, 1700000000000 + i);
    }
    shf_key_t key;
    shf_key_init (&key);
    shf_key_run (&key, "default", "wf-0", "run-old");
    shf_key_u64 (&key, 1);
    rc = shf_txn_put (txn, SHF_DB_HISTORY, key.data, key.size, "old", 3);
    assert (rc == SHF_OK);
    shf_key_exec (&key, "default", "bad");
    rc = shf_txn_put (txn, SHF_DB_EXEC, key.data, key.size, "\x81\xa1x", 3);
    assert (rc == SHF_OK);
    rc = shf_txn_commit (&txn);
    assert (rc == SHF_OK);
    s_test_meta (store, 1);

    rc = shf_runs_upgrade (store, 0, &moved);
    assert (rc == SHF_OK && moved == RUNS);
    rc = shf_store_begin (store, false, &txn);
    assert (rc == SHF_OK);
    for (int i = 0; i < RUNS; i += 97) {
        char wf_id [32], run_id [32];
        snprintf (wf_id, sizeof wf_id, "wf-%d", i * 7919 % RUNS);
        snprintf (run_id, sizeof run_id, "run-%d", i);
        s_test_check (txn, wf_id, run_id, 1700000000000 + i);
    }
    //  the earlier run's history stays where it was; the unreadable
    //  state too, and loading it says so
    shf_key_init (&key);
    shf_key_run (&key, "default", "wf-0", "run-old");
    shf_key_u64 (&key, 1);
    const void *v;
    size_t vl;
    rc = shf_txn_get (txn, SHF_DB_HISTORY, key.data, key.size, &v, &vl);
    assert (rc == SHF_OK);
    shf_run_t *run = NULL;
    rc = shf_runs_load (txn, "default", "bad", &run);
    assert (rc == SHF_ECORRUPT && !run);
    rc = shf_runs_load (txn, "default", "none", &run);
    assert (rc == SHF_ENOTFOUND);
    json_t *meta = NULL;
    rc = shf_txn_get_json (txn, SHF_DB_META, "shard", 5, &meta);
    assert (rc == SHF_OK);
    assert (json_integer_value (json_object_get (meta, "schema")) == 2);
    assert (json_integer_value (json_object_get (meta, "epoch")) == 4);
    json_decref (meta);
    shf_txn_abort (&txn);

    //  Done: a second open moves nothing
    rc = shf_runs_upgrade (store, 0, &moved);
    assert (rc == SHF_OK && moved == 0);

    //  Stopped midway (a crash between two transactions): the runs
    //  already moved are skipped, the others moved
    rc = shf_store_begin (store, true, &txn);
    assert (rc == SHF_OK);
    s_test_put_v1 (txn, "late", "run-late", 1800000000000);
    rc = shf_txn_commit (&txn);
    assert (rc == SHF_OK);
    s_test_meta (store, 1);
    rc = shf_runs_upgrade (store, 0, &moved);
    assert (rc == SHF_OK && moved == 1);
    rc = shf_store_begin (store, false, &txn);
    assert (rc == SHF_OK);
    s_test_check (txn, "late", "run-late", 1800000000000);
    s_test_check (txn, "wf-0", "run-0", 1700000000000);
    shf_txn_abort (&txn);

    //  A run written in this layout reads back with its key
    rc = shf_store_begin (store, true, &txn);
    assert (rc == SHF_OK);
    json_t *fields = json_pack (
        "{s:s, s:s, s:s, s:s, s:i, s:s, s:I, s:i, s:i, s:{}, s:[]}", "ns", "ns",
        "workflow_id", "w", "run_id", "r", "name", "w", "version", 1, "status",
        "running", "started_at", (json_int_t) 42, "next_event_id", 1,
        "next_timer_id", 1, "steps", "timers");
    rc = shf_run_from_json (fields, &run);
    assert (rc == SHF_OK);
    json_decref (fields);
    rc = shf_runs_point (txn, run);
    assert (rc == SHF_OK);
    shf_key_t placed;
    shf_runs_key (&placed, run);
    shf_mpack_out_t out = {0};
    rc = shf_run_encode (run, &out);
    assert (rc == SHF_OK);
    rc = shf_txn_put (txn, SHF_DB_RUNS, placed.data, placed.size, out.data,
                      out.size);
    assert (rc == SHF_OK);
    shf_mpack_out_free (&out);
    shf_run_decref (run);
    rc = shf_runs_find (txn, "ns", "w", &key);
    assert (rc == SHF_OK && key.size == placed.size
            && memcmp (key.data, placed.data, key.size) == 0);
    shf_run_ids_t ids = shf_runs_key_ids (&key);
    assert (ids.started_at == 42 && strcmp (ids.run_id, "r") == 0);
    assert (strcmp (ids.ns, "ns") == 0 && strcmp (ids.workflow_id, "w") == 0);
    rc = shf_runs_load (txn, "ns", "w", &run);
    assert (rc == SHF_OK);
    assert (shf_workflow_started_at (run) == 42);
    shf_run_decref (run);
    shf_txn_abort (&txn);

    shf_store_destroy (&store);
    char cmd [128];
    snprintf (cmd, sizeof cmd, "rm -rf %s", tmp);
    int src = system (cmd);
    assert (src == 0);
    if (verbose)
        printf ("OK\n");
}
