/*  shf_store.h - one LMDB environment per shard and its named databases.

    A shard's data lives in DIR/ (data.mdb + lock.mdb) with the named dbs
    below. Only the shard's own thread writes (one write transaction per
    batch); readers use read-only MVCC transactions. Values are msgpack
    (shf_mpack) of JSON values; keys are built by the caller (big-endian
    integers so byte order is time order).

    Errors: only this module sees MDB_* codes and errno. MDB_NOTFOUND ->
    SHF_ENOTFOUND, MDB_MAP_FULL -> SHF_EFULL (abort the transaction, call
    shf_store_grow, redo the batch), a record that fails to decode ->
    SHF_ECORRUPT, every other failure -> SHF_EIO; the original is logged.

    Thread rule: a shf_store_t may be used from any thread, but a write
    transaction only from the thread that began it (MDB_NOTLS is set so
    read transactions are not tied to threads).
*/
#ifndef SHF_STORE_H_INCLUDED
#define SHF_STORE_H_INCLUDED
#include "../common/shf_err.h"
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    SHF_DB_EXEC,     //  ns/wf_id -> placed key of the current run
    SHF_DB_HISTORY,  //  placed run key + event id (BE) -> events
    SHF_DB_TIMERS,   //  due ms (BE) + run key + timer id (BE) -> timer
    SHF_DB_TASKS,    //  task key -> task not yet finished
    SHF_DB_INDEX,    //  visibility: ns + started_at (BE) + run key -> entry
    SHF_DB_DEDUP,    //  ns + request id -> the reply that was given
    SHF_DB_META,     //  fixed keys: shard id, epoch, schema version, ...
    SHF_DB_DEFS,     //  ns + name + version (BE) -> definition document
    SHF_DB_RUNS,     //  placed run key -> mutable state of the run
    SHF_DB_COUNT
} shf_db_t;

typedef struct shf_store shf_store_t;
typedef struct shf_txn shf_txn_t;
typedef struct shf_cursor shf_cursor_t;

//  Open (creating if needed) the environment in dir. map_size is the
//  initial map in bytes (0 = 64 MiB); it grows on demand. durable=false
//  sets MDB_NOSYNC (tests of logic only; never in a node).
shf_err_t
    shf_store_open (shf_store_t **self_p, const char *dir, size_t map_size,
                    bool durable) SHF_MUST_CHECK;

void
    shf_store_destroy (shf_store_t **self_p);

//  Double the map size. Waits until no transaction of any thread is open
//  (LMDB must not remap under a live reader); the caller must hold none.
shf_err_t
    shf_store_grow (shf_store_t *self) SHF_MUST_CHECK;

//  True when more than 80% of the map is used: grow before the next batch.
bool
    shf_store_nearly_full (shf_store_t *self);

//  Bytes of the data file actually used (pages in use x page size).
size_t
    shf_store_used_bytes (shf_store_t *self);

//  Keeps the data file written (zeros) SHF_STORE_PREALLOC_LEAD bytes past
//  LMDB's last page, so that a commit which grows the database writes into
//  blocks the file system has already allocated: an fdatasync that must
//  also sync new blocks and the file size cost ~1.5-3x one that need not
//  (bench/RESULTS.md, session 5). Only for a durable store; call it from
//  the writer's thread with no write transaction open (after a commit and
//  its sends). Cheap when there is lead left; otherwise it writes up to
//  the lead and syncs once (~1 ms for 1 MiB here).
#define SHF_STORE_PREALLOC_LEAD (1024u * 1024)
void shf_store_prealloc (shf_store_t *self);

//  Compacting copy to path (a new file); for snapshots and shard moves.
shf_err_t
    shf_store_copy (shf_store_t *self, const char *path) SHF_MUST_CHECK;

shf_err_t
    shf_store_begin (shf_store_t *self, bool write,
                     shf_txn_t **txn_p) SHF_MUST_CHECK;

//  Commit (fsync when durable) and free the transaction; *txn_p = NULL
//  even on failure. A failed commit must fence the shard (STYLE.md).
//  Failpoint "store.commit" makes it return SHF_EIO without committing.
shf_err_t
    shf_txn_commit (shf_txn_t **txn_p) SHF_MUST_CHECK;

void
    shf_txn_abort (shf_txn_t **txn_p);

//  Raw bytes. Values returned by get are borrowed until the txn ends.
shf_err_t
    shf_txn_put (shf_txn_t *self, shf_db_t db, const void *key, size_t klen,
                 const void *val, size_t vlen) SHF_MUST_CHECK;
shf_err_t
    shf_txn_get (shf_txn_t *self, shf_db_t db, const void *key, size_t klen,
                 const void **val, size_t *vlen) SHF_MUST_CHECK;
//  SHF_ENOTFOUND when absent.
shf_err_t
    shf_txn_del (shf_txn_t *self, shf_db_t db, const void *key,
                 size_t klen) SHF_MUST_CHECK;

//  JSON values stored as msgpack. get_json: *value_p is the caller's.
shf_err_t
    shf_txn_put_json (shf_txn_t *self, shf_db_t db, const void *key,
                      size_t klen, const json_t *value) SHF_MUST_CHECK;
shf_err_t
    shf_txn_get_json (shf_txn_t *self, shf_db_t db, const void *key,
                      size_t klen, json_t **value_p) SHF_MUST_CHECK;

//  Decode a value already read (e.g. under a cursor) from db, so a scan
//  does not look each key up again. SHF_ECORRUPT when it is not a record.
shf_err_t
    shf_store_decode (shf_db_t db, const void *val, size_t vlen,
                      json_t **value_p) SHF_MUST_CHECK;

//  Cursors live inside their transaction and must be closed before it
//  ends. Positioning calls return SHF_ENOTFOUND past either end; key and
//  value are borrowed until the next move.
shf_err_t
    shf_cursor_open (shf_txn_t *txn, shf_db_t db,
                     shf_cursor_t **cur_p) SHF_MUST_CHECK;
void
    shf_cursor_close (shf_cursor_t **cur_p);
//  First key >= key (key NULL: the first key).
shf_err_t
    shf_cursor_seek (shf_cursor_t *self, const void *key, size_t klen,
                     const void **k, size_t *kl, const void **v,
                     size_t *vl) SHF_MUST_CHECK;
shf_err_t
    shf_cursor_next (shf_cursor_t *self, const void **k, size_t *kl,
                     const void **v, size_t *vl) SHF_MUST_CHECK;
shf_err_t
    shf_cursor_prev (shf_cursor_t *self, const void **k, size_t *kl,
                     const void **v, size_t *vl) SHF_MUST_CHECK;
shf_err_t
    shf_cursor_last (shf_cursor_t *self, const void **k, size_t *kl,
                     const void **v, size_t *vl) SHF_MUST_CHECK;
//  Delete the entry under the cursor.
shf_err_t
    shf_cursor_del (shf_cursor_t *self) SHF_MUST_CHECK;

void
    shf_store_test (bool verbose);

#endif
