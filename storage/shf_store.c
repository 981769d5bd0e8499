/*  shf_store.c - one LMDB environment per shard, its named dbs, txns and
    cursors.

    Wraps LMDB so that nothing above storage/ sees MDB_* codes or errno:
    every LMDB return is mapped to a shf_err_t here and the original is
    logged. The environment is opened with MDB_NOTLS (read transactions may
    move between threads) and, when durable, with full fsync on commit.
    All named dbs are created in one write transaction at open, so their
    handles are valid for the life of the store.

    Remapping (shf_store_grow) is the one operation LMDB cannot do while any
    transaction of this process is live, so every transaction passes a small
    gate: begin counts it in, end counts it out, and a resize waits for the
    count to reach zero while holding new transactions back. The shard's
    writer thread is the only caller of grow; see shf_store.h for the rule.

    Called by the shard (one write transaction per batch) and by readers
    (describe, list, history) through read-only transactions.
*/
#include "shf_store.h"
#include "shf_failpoint.h"
#include "shf_fs.h"
#include "shf_log.h"
#include "shf_mpack.h"
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <libgen.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define SHF_STORE_DEFAULT_MAP (64u * 1024 * 1024)
#define SHF_STORE_MAX_VALUE   0xffffffffUL

static const char *s_db_names [SHF_DB_COUNT] = {
    "exec",  "history", "timers", "tasks", "index",
    "dedup", "meta",    "defs",   "runs"};

struct shf_store {
    MDB_env *env;
    MDB_dbi dbi [SHF_DB_COUNT];
    size_t max_key;     //  mdb_env_get_maxkeysize
    size_t page_size;   //  LMDB page size of this environment
    int stale_readers;  //  reader slots of dead processes cleared at open
    bool durable;       //  synchronous commits (and preallocation)
    uint64_t alloc_end;  //  the data file is written up to here (prealloc)
    //  The remap gate (see the banner)
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int active;     //  live transactions of this process
    bool resizing;  //  a remap is waiting or running
    bool writing;   //  a write transaction is live
};

struct shf_txn {
    shf_store_t *store;
    MDB_txn *txn;
    bool write;
    int cursors;  //  open cursors; must be 0 when the txn ends
};

struct shf_cursor {
    shf_txn_t *txn;
    MDB_cursor *cur;
};

static void *
s_alloc (size_t size)
{
    void *ptr = calloc (1, size);
    if (!ptr) {
        fprintf (stderr, "shf_store: out of memory\n");
        abort ();
    }
    return ptr;
}

//  Maps an LMDB or errno code to shf_err_t and logs the original.
static shf_err_t
s_map_rc (int rc, const char *op, int db)
{
    const char *name = db >= 0 ? s_db_names [db] : "-";
    switch (rc) {
        case MDB_SUCCESS:
            return SHF_OK;
        case MDB_NOTFOUND:
            return SHF_ENOTFOUND;
        case MDB_MAP_FULL:
            shf_warn ("store: %s (db %s): %s", op, name, mdb_strerror (rc));
            return SHF_EFULL;
        case MDB_BAD_VALSIZE:
        case MDB_KEYEXIST:
            shf_warn ("store: %s (db %s): %s", op, name, mdb_strerror (rc));
            return SHF_EINVAL;
        default:
            shf_error ("store: %s (db %s): %s (%d)", op, name,
                       mdb_strerror (rc), rc);
            return SHF_EIO;
    }
}

static size_t
s_round_to_page (size_t size)
{
    long os_page = sysconf (_SC_PAGESIZE);
    size_t page = os_page > 0 ? (size_t) os_page : 4096;
    return (size + page - 1) / page * page;
}

//  --- the remap gate -------------------------------------------------------

static void
s_enter (shf_store_t *self)
{
    pthread_mutex_lock (&self->lock);
    while (self->resizing)
        pthread_cond_wait (&self->cond, &self->lock);
    self->active++;
    pthread_mutex_unlock (&self->lock);
}

static void
s_leave (shf_store_t *self, bool write)
{
    pthread_mutex_lock (&self->lock);
    assert (self->active > 0);
    self->active--;
    if (write)
        self->writing = false;
    pthread_cond_broadcast (&self->cond);
    pthread_mutex_unlock (&self->lock);
}

//  Remaps the environment once no transaction of this process is live.
//  grow: double the current map; otherwise adopt the size recorded in the
//  data file (after another process grew it). Returns an MDB code.
static int
s_remap (shf_store_t *self, bool grow)
{
    pthread_mutex_lock (&self->lock);
    while (self->resizing)
        pthread_cond_wait (&self->cond, &self->lock);
    self->resizing = true;
    while (self->active > 0)
        pthread_cond_wait (&self->cond, &self->lock);

    MDB_envinfo info;
    int rc = mdb_env_info (self->env, &info);
    size_t old_size = info.me_mapsize;
    size_t new_size = 0;  //  0 = the size recorded in the file
    if (rc == MDB_SUCCESS && grow) {
        if (old_size > SIZE_MAX / 2)
            rc = MDB_MAP_FULL;
        else
            new_size = s_round_to_page (old_size * 2);
    }
    if (rc == MDB_SUCCESS)
        rc = mdb_env_set_mapsize (self->env, new_size);
    if (rc == MDB_SUCCESS && mdb_env_info (self->env, &info) == MDB_SUCCESS)
        shf_info ("store: map %zu -> %zu KiB", old_size / 1024,
                  (size_t) info.me_mapsize / 1024);

    self->resizing = false;
    pthread_cond_broadcast (&self->cond);
    pthread_mutex_unlock (&self->lock);
    return rc;
}

//  Reads the environment info under the gate's lock: a remap runs with the
//  lock held, so the meta pages read here cannot be unmapped meanwhile.
static void
s_env_info (shf_store_t *self, MDB_envinfo *info)
{
    pthread_mutex_lock (&self->lock);
    int rc = mdb_env_info (self->env, info);
    pthread_mutex_unlock (&self->lock);
    assert (rc == MDB_SUCCESS);
}

static shf_err_t
s_check_key (shf_store_t *self, size_t klen)
{
    if (klen == 0)
        return SHF_EINVAL;
    if (klen > self->max_key)
        return SHF_ETOOLARGE;
    return SHF_OK;
}

//  --- environment ----------------------------------------------------------

shf_err_t
shf_store_open (shf_store_t **self_p, const char *dir, size_t map_size,
                bool durable)
{
    assert (self_p);
    assert (dir);
    *self_p = NULL;
    if (map_size == 0)
        map_size = SHF_STORE_DEFAULT_MAP;
    map_size = s_round_to_page (map_size);

    if (shf_fs_mkdirs (dir) != SHF_OK) {
        shf_error ("store: cannot create %s: %s", dir, strerror (errno));
        return SHF_EIO;
    }
    shf_store_t *self = s_alloc (sizeof *self);
    pthread_mutex_init (&self->lock, NULL);
    pthread_cond_init (&self->cond, NULL);

    MDB_txn *txn = NULL;
    const char *op = "env_create";
    int rc = mdb_env_create (&self->env);
    if (rc != MDB_SUCCESS) {
        self->env = NULL;
        goto fail;
    }
    op = "env_set_maxdbs";
    rc = mdb_env_set_maxdbs (self->env, SHF_DB_COUNT + 2);
    if (rc != MDB_SUCCESS)
        goto fail;
    op = "env_set_mapsize";
    rc = mdb_env_set_mapsize (self->env, map_size);
    if (rc != MDB_SUCCESS)
        goto fail;
    op = "env_open";
    unsigned int flags = MDB_NOTLS | (durable ? 0 : MDB_NOSYNC);
    rc = mdb_env_open (self->env, dir, flags, 0600);
    if (rc != MDB_SUCCESS)
        goto fail;

    //  A process killed with -9 leaves its reader slot behind; a stale
    //  slot pins old pages and would make the file grow without bound.
    op = "reader_check";
    rc = mdb_reader_check (self->env, &self->stale_readers);
    if (rc != MDB_SUCCESS)
        goto fail;
    if (self->stale_readers > 0)
        shf_info ("store: %s: cleared %d stale reader(s)", dir,
                  self->stale_readers);

    //  The map may have grown in an earlier run: the larger of that size
    //  (recorded in the file) and the one asked for wins, so a restart
    //  never shrinks the map back below its data.
    op = "env_set_mapsize";
    rc = mdb_env_set_mapsize (self->env, 0);
    if (rc != MDB_SUCCESS)
        goto fail;
    MDB_envinfo info;
    rc = mdb_env_info (self->env, &info);
    if (rc == MDB_SUCCESS && info.me_mapsize < map_size)
        rc = mdb_env_set_mapsize (self->env, map_size);
    if (rc != MDB_SUCCESS)
        goto fail;

    MDB_stat stat;
    op = "env_stat";
    rc = mdb_env_stat (self->env, &stat);
    if (rc != MDB_SUCCESS)
        goto fail;
    self->page_size = stat.ms_psize;
    self->durable = durable;
    self->max_key = (size_t) mdb_env_get_maxkeysize (self->env);

    op = "txn_begin";
    rc = mdb_txn_begin (self->env, NULL, 0, &txn);
    if (rc != MDB_SUCCESS)
        goto fail;
    op = "dbi_open";
    for (int db = 0; db < SHF_DB_COUNT; db++) {
        rc = mdb_dbi_open (txn, s_db_names [db], MDB_CREATE, &self->dbi [db]);
        if (rc != MDB_SUCCESS)
            goto fail;
    }
    op = "txn_commit";
    rc = mdb_txn_commit (txn);
    txn = NULL;
    if (rc != MDB_SUCCESS)
        goto fail;
    *self_p = self;
    return SHF_OK;

fail:;
    shf_error ("store: cannot open %s", dir);
    shf_err_t err = s_map_rc (rc, op, -1);
    if (err == SHF_ENOTFOUND)
        err = SHF_EIO;  //  an open never "does not find" a record
    if (txn)
        mdb_txn_abort (txn);
    if (self->env)
        mdb_env_close (self->env);
    pthread_cond_destroy (&self->cond);
    pthread_mutex_destroy (&self->lock);
    free (self);
    return err;
}

void
shf_store_destroy (shf_store_t **self_p)
{
    assert (self_p);
    shf_store_t *self = *self_p;
    if (!self)
        return;
    assert (self->active == 0);  //  every txn must end before the store
    mdb_env_close (self->env);
    pthread_cond_destroy (&self->cond);
    pthread_mutex_destroy (&self->lock);
    free (self);
    *self_p = NULL;
}

shf_err_t
shf_store_grow (shf_store_t *self)
{
    assert (self);
    pthread_mutex_lock (&self->lock);
    bool writing = self->writing;
    pthread_mutex_unlock (&self->lock);
    //  The writer thread grows between batches; growing with its own
    //  write transaction open would wait forever.
    assert (!writing);
    return s_map_rc (s_remap (self, true), "grow", -1);
}

bool
shf_store_nearly_full (shf_store_t *self)
{
    assert (self);
    MDB_envinfo info;
    s_env_info (self, &info);
    size_t used = ((size_t) info.me_last_pgno + 1) * self->page_size;
    return used > (size_t) info.me_mapsize / 5 * 4;
}

size_t
shf_store_used_bytes (shf_store_t *self)
{
    assert (self);
    MDB_envinfo info;
    s_env_info (self, &info);
    return ((size_t) info.me_last_pgno + 1) * self->page_size;
}

void
shf_store_prealloc (shf_store_t *self)
{
    assert (self);
    assert (!self->writing);  //  LMDB must not be writing the file now
    if (!self->durable)
        return;
    MDB_envinfo info;
    s_env_info (self, &info);
    uint64_t used = ((uint64_t) info.me_last_pgno + 1) * self->page_size;
    //  Extend when less than half the lead is left, so it happens about
    //  once per half a MiB of growth.
    if (self->alloc_end >= used + SHF_STORE_PREALLOC_LEAD / 2)
        return;
    mdb_filehandle_t fd;
    struct stat st;
    if (mdb_env_get_fd (self->env, &fd) != MDB_SUCCESS || fstat (fd, &st) != 0)
        return;
    uint64_t from = (uint64_t) st.st_size > used ? (uint64_t) st.st_size : used;
    uint64_t to = used + SHF_STORE_PREALLOC_LEAD;
    if (to > (uint64_t) info.me_mapsize)
        to = (uint64_t) info.me_mapsize;
    //  Beyond LMDB's last page the file is ours until LMDB grows into it,
    //  which it can only do in a write transaction of this thread.
    static const char zeros [64 * 1024];
    uint64_t at = from;
    while (at < to) {
        size_t n = to - at < sizeof zeros ? (size_t) (to - at) : sizeof zeros;
        ssize_t wrote = pwrite (fd, zeros, n, (off_t) at);
        if (wrote <= 0) {
            //  A full disk is for LMDB's own writes to report.
            shf_debug ("store: preallocation stopped at %" PRIu64 ": %s", at,
                       strerror (errno));
            break;
        }
        at += (uint64_t) wrote;
    }
    if (at > from && fdatasync (fd) != 0)
        shf_debug ("store: preallocation sync: %s", strerror (errno));
    self->alloc_end = at;
}

shf_err_t
shf_store_copy (shf_store_t *self, const char *path)
{
    assert (self);
    assert (path);
    int fd = open (path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        shf_error ("store: copy: cannot create %s: %s", path, strerror (errno));
        return SHF_EIO;
    }
    //  The copy runs its own read transaction: count it in the gate.
    s_enter (self);
    int rc = mdb_env_copyfd2 (self->env, fd, MDB_CP_COMPACT);
    s_leave (self, false);
    if (rc == MDB_SUCCESS && fsync (fd) != 0)
        rc = errno;
    if (close (fd) != 0 && rc == MDB_SUCCESS)
        rc = errno;
    if (rc == MDB_SUCCESS) {
        char *copy = strdup (path);
        assert (copy);
        if (shf_fs_sync_dir (dirname (copy)) != SHF_OK)
            rc = errno ? errno : EIO;
        free (copy);
    }
    if (rc != MDB_SUCCESS) {
        unlink (path);
        return s_map_rc (rc, "copy", -1);
    }
    return SHF_OK;
}

//  --- transactions ---------------------------------------------------------

shf_err_t
shf_store_begin (shf_store_t *self, bool write, shf_txn_t **txn_p)
{
    assert (self);
    assert (txn_p);
    *txn_p = NULL;
    for (int attempt = 0;; attempt++) {
        s_enter (self);
        MDB_txn *txn = NULL;
        int rc = mdb_txn_begin (self->env, NULL, write ? 0 : MDB_RDONLY, &txn);
        if (rc == MDB_SUCCESS) {
            if (write) {
                pthread_mutex_lock (&self->lock);
                self->writing = true;
                pthread_mutex_unlock (&self->lock);
            }
            shf_txn_t *wrap = s_alloc (sizeof *wrap);
            wrap->store = self;
            wrap->txn = txn;
            wrap->write = write;
            *txn_p = wrap;
            return SHF_OK;
        }
        s_leave (self, false);
        //  Another process grew the map: adopt its size and retry once.
        if (rc == MDB_MAP_RESIZED && attempt == 0) {
            rc = s_remap (self, false);
            if (rc == MDB_SUCCESS)
                continue;
        }
        return s_map_rc (rc, write ? "begin write" : "begin read", -1);
    }
}

shf_err_t
shf_txn_commit (shf_txn_t **txn_p)
{
    assert (txn_p);
    shf_txn_t *self = *txn_p;
    assert (self);
    assert (self->cursors == 0);
    *txn_p = NULL;
    shf_store_t *store = self->store;
    bool write = self->write;
    //  Only write commits pass the failpoint: a reader ending its snapshot
    //  must not consume the countdown meant for the shard's batches.
    if (write && shf_failpoint ("store.commit")) {
        mdb_txn_abort (self->txn);
        s_leave (store, write);
        free (self);
        shf_error ("store: commit: failpoint store.commit fired");
        return SHF_EIO;
    }
    int rc = mdb_txn_commit (self->txn);
    s_leave (store, write);
    free (self);
    shf_err_t err = s_map_rc (rc, "commit", -1);
    return err == SHF_ENOTFOUND ? SHF_EIO : err;
}

void
shf_txn_abort (shf_txn_t **txn_p)
{
    assert (txn_p);
    shf_txn_t *self = *txn_p;
    if (!self)
        return;
    assert (self->cursors == 0);
    mdb_txn_abort (self->txn);
    s_leave (self->store, self->write);
    free (self);
    *txn_p = NULL;
}

shf_err_t
shf_txn_put (shf_txn_t *self, shf_db_t db, const void *key, size_t klen,
             const void *val, size_t vlen)
{
    assert (self);
    assert (self->write);
    assert (db >= 0 && db < SHF_DB_COUNT);
    assert (key || klen == 0);
    assert (val || vlen == 0);
    shf_err_t err = s_check_key (self->store, klen);
    if (err != SHF_OK)
        return err;
    if (vlen > SHF_STORE_MAX_VALUE)
        return SHF_ETOOLARGE;
    MDB_val k = {klen, (void *) key};
    MDB_val v = {vlen, (void *) val};
    int rc = mdb_put (self->txn, self->store->dbi [db], &k, &v, 0);
    return s_map_rc (rc, "put", (int) db);
}

shf_err_t
shf_txn_get (shf_txn_t *self, shf_db_t db, const void *key, size_t klen,
             const void **val, size_t *vlen)
{
    assert (self);
    assert (db >= 0 && db < SHF_DB_COUNT);
    assert (key || klen == 0);
    if (val)
        *val = NULL;
    if (vlen)
        *vlen = 0;
    shf_err_t err = s_check_key (self->store, klen);
    if (err != SHF_OK)
        return err;
    MDB_val k = {klen, (void *) key};
    MDB_val v = {0, NULL};
    int rc = mdb_get (self->txn, self->store->dbi [db], &k, &v);
    if (rc != MDB_SUCCESS)
        return s_map_rc (rc, "get", (int) db);
    if (val)
        *val = v.mv_data;
    if (vlen)
        *vlen = v.mv_size;
    return SHF_OK;
}

shf_err_t
shf_txn_del (shf_txn_t *self, shf_db_t db, const void *key, size_t klen)
{
    assert (self);
    assert (self->write);
    assert (db >= 0 && db < SHF_DB_COUNT);
    assert (key || klen == 0);
    shf_err_t err = s_check_key (self->store, klen);
    if (err != SHF_OK)
        return err;
    MDB_val k = {klen, (void *) key};
    int rc = mdb_del (self->txn, self->store->dbi [db], &k, NULL);
    return s_map_rc (rc, "del", (int) db);
}

shf_err_t
shf_txn_put_json (shf_txn_t *self, shf_db_t db, const void *key, size_t klen,
                  const json_t *value)
{
    assert (value);
    char *data = NULL;
    size_t size = 0;
    shf_err_t err = shf_mpack_encode (value, &data, &size);
    if (err != SHF_OK)
        return err;
    err = shf_txn_put (self, db, key, klen, data, size);
    free (data);
    return err;
}

shf_err_t
shf_txn_get_json (shf_txn_t *self, shf_db_t db, const void *key, size_t klen,
                  json_t **value_p)
{
    assert (value_p);
    *value_p = NULL;
    const void *data = NULL;
    size_t size = 0;
    shf_err_t err = shf_txn_get (self, db, key, klen, &data, &size);
    if (err != SHF_OK)
        return err;
    return shf_store_decode (db, data, size, value_p);
}

shf_err_t
shf_store_decode (shf_db_t db, const void *val, size_t vlen, json_t **value_p)
{
    assert (value_p);
    *value_p = NULL;
    char reason [128] = "";
    if (shf_mpack_decode (val, vlen, value_p, reason, sizeof reason)
        != SHF_OK) {
        shf_error ("store: record in db %s (%zu bytes) failed to decode: %s",
                   s_db_names [db], vlen, reason);
        *value_p = NULL;
        return SHF_ECORRUPT;
    }
    return SHF_OK;
}

//  --- cursors --------------------------------------------------------------

shf_err_t
shf_cursor_open (shf_txn_t *txn, shf_db_t db, shf_cursor_t **cur_p)
{
    assert (txn);
    assert (db >= 0 && db < SHF_DB_COUNT);
    assert (cur_p);
    *cur_p = NULL;
    MDB_cursor *cur = NULL;
    int rc = mdb_cursor_open (txn->txn, txn->store->dbi [db], &cur);
    if (rc != MDB_SUCCESS) {
        shf_err_t err = s_map_rc (rc, "cursor_open", (int) db);
        return err == SHF_ENOTFOUND ? SHF_EIO : err;
    }
    shf_cursor_t *self = s_alloc (sizeof *self);
    self->txn = txn;
    self->cur = cur;
    txn->cursors++;
    *cur_p = self;
    return SHF_OK;
}

void
shf_cursor_close (shf_cursor_t **cur_p)
{
    assert (cur_p);
    shf_cursor_t *self = *cur_p;
    if (!self)
        return;
    mdb_cursor_close (self->cur);
    assert (self->txn->cursors > 0);
    self->txn->cursors--;
    free (self);
    *cur_p = NULL;
}

static shf_err_t
s_cursor_get (shf_cursor_t *self, MDB_val *key, MDB_cursor_op op,
              const void **k, size_t *kl, const void **v, size_t *vl)
{
    MDB_val data = {0, NULL};
    int rc = mdb_cursor_get (self->cur, key, &data, op);
    bool ok = rc == MDB_SUCCESS;
    if (k)
        *k = ok ? key->mv_data : NULL;
    if (kl)
        *kl = ok ? key->mv_size : 0;
    if (v)
        *v = ok ? data.mv_data : NULL;
    if (vl)
        *vl = ok ? data.mv_size : 0;
    return s_map_rc (rc, "cursor_get", -1);
}

shf_err_t
shf_cursor_seek (shf_cursor_t *self, const void *key, size_t klen,
                 const void **k, size_t *kl, const void **v, size_t *vl)
{
    assert (self);
    MDB_val mkey = {0, NULL};
    if (!key)
        return s_cursor_get (self, &mkey, MDB_FIRST, k, kl, v, vl);
    shf_err_t err = s_check_key (self->txn->store, klen);
    if (err != SHF_OK)
        return err;
    mkey.mv_size = klen;
    mkey.mv_data = (void *) key;
    return s_cursor_get (self, &mkey, MDB_SET_RANGE, k, kl, v, vl);
}

shf_err_t
shf_cursor_next (shf_cursor_t *self, const void **k, size_t *kl, const void **v,
                 size_t *vl)
{
    assert (self);
    MDB_val mkey = {0, NULL};
    return s_cursor_get (self, &mkey, MDB_NEXT, k, kl, v, vl);
}

shf_err_t
shf_cursor_prev (shf_cursor_t *self, const void **k, size_t *kl, const void **v,
                 size_t *vl)
{
    assert (self);
    MDB_val mkey = {0, NULL};
    return s_cursor_get (self, &mkey, MDB_PREV, k, kl, v, vl);
}

shf_err_t
shf_cursor_last (shf_cursor_t *self, const void **k, size_t *kl, const void **v,
                 size_t *vl)
{
    assert (self);
    MDB_val mkey = {0, NULL};
    return s_cursor_get (self, &mkey, MDB_LAST, k, kl, v, vl);
}

shf_err_t
shf_cursor_del (shf_cursor_t *self)
{
    assert (self);
    assert (self->txn->write);
    int rc = mdb_cursor_del (self->cur, 0);
    shf_err_t err = s_map_rc (rc, "cursor_del", -1);
    return err;
}

//  --- self-test ------------------------------------------------------------

static void
s_be64 (uint64_t value, unsigned char out [8])
{
    for (int i = 7; i >= 0; i--) {
        out [i] = (unsigned char) (value & 0xff);
        value >>= 8;
    }
}

static uint64_t
s_from_be64 (const void *data)
{
    const unsigned char *bytes = data;
    uint64_t value = 0;
    for (int i = 0; i < 8; i++)
        value = value << 8 | bytes [i];
    return value;
}

static void
s_test_put (shf_txn_t *txn, shf_db_t db, const char *key, const char *val)
{
    shf_err_t rc = shf_txn_put (txn, db, key, strlen (key), val, strlen (val));
    assert (rc == SHF_OK);
}

//  True when key holds exactly val; false when absent.
static bool
s_test_has (shf_txn_t *txn, shf_db_t db, const char *key, const char *val)
{
    const void *data = NULL;
    size_t size = 0;
    shf_err_t rc = shf_txn_get (txn, db, key, strlen (key), &data, &size);
    if (rc == SHF_ENOTFOUND)
        return false;
    assert (rc == SHF_OK);
    assert (size == strlen (val));
    assert (memcmp (data, val, size) == 0);
    return true;
}

static size_t
s_test_map_size (shf_store_t *self)
{
    MDB_envinfo info;
    s_env_info (self, &info);
    return info.me_mapsize;
}

static int
s_test_remove (const char *path, const struct stat *st, int type,
               struct FTW *ftw)
{
    (void) st;
    (void) type;
    (void) ftw;
    return remove (path);
}

static void
s_test_rmtree (const char *path)
{
    int status = nftw (path, s_test_remove, 16, FTW_DEPTH | FTW_PHYS);
    assert (status == 0);
}

typedef struct {
    shf_store_t *store;
    _Atomic bool done;
    shf_err_t rc;
} s_test_grower_t;

static void *
s_test_grower (void *arg)
{
    s_test_grower_t *grower = arg;
    grower->rc = shf_store_grow (grower->store);
    atomic_store (&grower->done, true);
    return NULL;
}

//  Runs in a fresh process (exec'd by the test below) so that
//  SHF_FAILPOINTS is parsed with our value: "store.commit=eio@2".
static void
s_test_failpoint_child (const char *dir)
{
    shf_store_t *store = NULL;
    shf_err_t rc = shf_store_open (&store, dir, 0, false);
    assert (rc == SHF_OK);
    shf_txn_t *txn = NULL;
    rc = shf_store_begin (store, true, &txn);
    assert (rc == SHF_OK);
    s_test_put (txn, SHF_DB_META, "first", "1");
    rc = shf_txn_commit (&txn);
    assert (rc == SHF_OK);

    rc = shf_store_begin (store, true, &txn);
    assert (rc == SHF_OK);
    s_test_put (txn, SHF_DB_META, "second", "2");
    rc = shf_txn_commit (&txn);
    assert (rc == SHF_EIO);
    assert (txn == NULL);

    rc = shf_store_begin (store, false, &txn);
    assert (rc == SHF_OK);
    assert (s_test_has (txn, SHF_DB_META, "first", "1"));
    assert (!s_test_has (txn, SHF_DB_META, "second", "2"));
    rc = shf_txn_commit (&txn);  //  read commits skip the failpoint
    assert (rc == SHF_OK);

    rc = shf_store_begin (store, true, &txn);
    assert (rc == SHF_OK);
    s_test_put (txn, SHF_DB_META, "third", "3");
    rc = shf_txn_commit (&txn);
    assert (rc == SHF_OK);
    shf_store_destroy (&store);
}

void
shf_store_test (bool verbose)
{
    const char *child = getenv ("SHF_STORE_TEST_CHILD");
    if (child) {
        s_test_failpoint_child (child);
        exit (0);
    }

    char tmp [] = "/tmp/shf_store_test.XXXXXX";
    char *made = mkdtemp (tmp);
    assert (made);
    char dir [256];
    snprintf (dir, sizeof dir, "%s/shards/0001", tmp);

    //  Open creates the directory chain and every named db
    shf_store_t *store = NULL;
    shf_err_t rc = shf_store_open (&store, dir, 0, false);
    assert (rc == SHF_OK);
    assert (store);
    assert (s_test_map_size (store) >= SHF_STORE_DEFAULT_MAP);
    assert (store->max_key >= 511);

    //  put / get / del in every db
    shf_txn_t *txn = NULL;
    rc = shf_store_begin (store, true, &txn);
    assert (rc == SHF_OK);
    for (int db = 0; db < SHF_DB_COUNT; db++) {
        s_test_put (txn, (shf_db_t) db, "k", s_db_names [db]);
        s_test_put (txn, (shf_db_t) db, "gone", "x");
    }
    for (int db = 0; db < SHF_DB_COUNT; db++) {
        assert (s_test_has (txn, (shf_db_t) db, "k", s_db_names [db]));
        rc = shf_txn_del (txn, (shf_db_t) db, "gone", 4);
        assert (rc == SHF_OK);
        rc = shf_txn_del (txn, (shf_db_t) db, "gone", 4);
        assert (rc == SHF_ENOTFOUND);
        assert (!s_test_has (txn, (shf_db_t) db, "gone", "x"));
    }
    rc = shf_txn_commit (&txn);
    assert (rc == SHF_OK);
    assert (txn == NULL);

    //  Abort discards
    rc = shf_store_begin (store, true, &txn);
    assert (rc == SHF_OK);
    s_test_put (txn, SHF_DB_EXEC, "ns/aborted", "v");
    assert (s_test_has (txn, SHF_DB_EXEC, "ns/aborted", "v"));
    shf_txn_abort (&txn);
    assert (txn == NULL);
    shf_txn_abort (&txn);  //  NULL-safe
    rc = shf_store_begin (store, false, &txn);
    assert (rc == SHF_OK);
    assert (!s_test_has (txn, SHF_DB_EXEC, "ns/aborted", "v"));
    assert (s_test_has (txn, SHF_DB_EXEC, "k", "exec"));
    shf_txn_abort (&txn);

    //  Keys: empty is invalid, over the LMDB limit is too large
    char big [600];
    memset (big, 'k', sizeof big);
    rc = shf_store_begin (store, true, &txn);
    assert (rc == SHF_OK);
    rc = shf_txn_put (txn, SHF_DB_INDEX, big, sizeof big, "v", 1);
    assert (rc == SHF_ETOOLARGE);
    rc = shf_txn_get (txn, SHF_DB_INDEX, big, sizeof big, NULL, NULL);
    assert (rc == SHF_ETOOLARGE);
    rc = shf_txn_del (txn, SHF_DB_INDEX, big, sizeof big);
    assert (rc == SHF_ETOOLARGE);
    rc = shf_txn_put (txn, SHF_DB_INDEX, big, store->max_key, "v", 1);
    assert (rc == SHF_OK);
    rc = shf_txn_put (txn, SHF_DB_INDEX, "", 0, "v", 1);
    assert (rc == SHF_EINVAL);
    shf_txn_abort (&txn);

    //  Big-endian keys sort in numeric order; cursor seek/next/prev/last
    static const uint64_t numbers [] = {
        300, 1, 65536, 256, 2, 0xffffffffffull, 257, 70000};
    static const uint64_t sorted [] = {1,   2,     256,   257,
                                       300, 65536, 70000, 0xffffffffffull};
    const size_t count = sizeof numbers / sizeof numbers [0];
    rc = shf_store_begin (store, true, &txn);
    assert (rc == SHF_OK);
    rc = shf_txn_del (txn, SHF_DB_HISTORY, "k", 1);  //  only numbers left
    assert (rc == SHF_OK);
    for (size_t i = 0; i < count; i++) {
        unsigned char key [8];
        s_be64 (numbers [i], key);
        rc = shf_txn_put (txn, SHF_DB_HISTORY, key, 8, &numbers [i],
                          sizeof numbers [i]);
        assert (rc == SHF_OK);
    }
    rc = shf_txn_commit (&txn);
    assert (rc == SHF_OK);

    rc = shf_store_begin (store, false, &txn);
    assert (rc == SHF_OK);
    shf_cursor_t *cur = NULL;
    rc = shf_cursor_open (txn, SHF_DB_HISTORY, &cur);
    assert (rc == SHF_OK);
    const void *k, *v;
    size_t kl, vl;
    rc = shf_cursor_seek (cur, NULL, 0, &k, &kl, &v, &vl);
    assert (rc == SHF_OK);
    for (size_t i = 0; i < count; i++) {
        assert (kl == 8 && vl == sizeof (uint64_t));
        assert (s_from_be64 (k) == sorted [i]);
        uint64_t stored;
        memcpy (&stored, v, sizeof stored);
        assert (stored == sorted [i]);
        rc = shf_cursor_next (cur, &k, &kl, &v, &vl);
        assert (rc == (i + 1 < count ? SHF_OK : SHF_ENOTFOUND));
    }
    assert (k == NULL && kl == 0);
    unsigned char probe [8];
    s_be64 (258, probe);
    rc = shf_cursor_seek (cur, probe, 8, &k, &kl, NULL, NULL);
    assert (rc == SHF_OK);
    assert (s_from_be64 (k) == 300);
    rc = shf_cursor_prev (cur, &k, &kl, NULL, NULL);
    assert (rc == SHF_OK);
    assert (s_from_be64 (k) == 257);
    s_be64 (0xffffffffffull + 1, probe);
    rc = shf_cursor_seek (cur, probe, 8, &k, &kl, NULL, NULL);
    assert (rc == SHF_ENOTFOUND);
    rc = shf_cursor_last (cur, &k, &kl, NULL, NULL);
    assert (rc == SHF_OK);
    assert (s_from_be64 (k) == 0xffffffffffull);
    rc = shf_cursor_prev (cur, &k, &kl, NULL, NULL);
    assert (rc == SHF_OK);
    assert (s_from_be64 (k) == 70000);
    rc = shf_cursor_seek (cur, NULL, 0, &k, &kl, NULL, NULL);
    assert (rc == SHF_OK);
    rc = shf_cursor_prev (cur, &k, &kl, NULL, NULL);
    assert (rc == SHF_ENOTFOUND);
    rc = shf_cursor_seek (cur, big, sizeof big, &k, &kl, NULL, NULL);
    assert (rc == SHF_ETOOLARGE);
    shf_cursor_close (&cur);
    assert (cur == NULL);
    shf_cursor_close (&cur);  //  NULL-safe
    shf_txn_abort (&txn);

    //  Deleting under the cursor while walking keeps the walk intact
    rc = shf_store_begin (store, true, &txn);
    assert (rc == SHF_OK);
    rc = shf_cursor_open (txn, SHF_DB_HISTORY, &cur);
    assert (rc == SHF_OK);
    s_be64 (256, probe);
    rc = shf_cursor_seek (cur, probe, 8, &k, &kl, NULL, NULL);
    while (rc == SHF_OK && s_from_be64 (k) < 70000) {
        rc = shf_cursor_del (cur);
        assert (rc == SHF_OK);
        rc = shf_cursor_next (cur, &k, &kl, NULL, NULL);
    }
    shf_cursor_close (&cur);
    rc = shf_txn_commit (&txn);
    assert (rc == SHF_OK);
    rc = shf_store_begin (store, false, &txn);
    assert (rc == SHF_OK);
    rc = shf_cursor_open (txn, SHF_DB_HISTORY, &cur);
    assert (rc == SHF_OK);
    static const uint64_t left [] = {1, 2, 70000, 0xffffffffffull};
    size_t seen = 0;
    for (rc = shf_cursor_seek (cur, NULL, 0, &k, &kl, NULL, NULL); rc == SHF_OK;
         rc = shf_cursor_next (cur, &k, &kl, NULL, NULL)) {
        assert (seen < 4);
        assert (s_from_be64 (k) == left [seen]);
        seen++;
    }
    assert (rc == SHF_ENOTFOUND && seen == 4);
    shf_cursor_close (&cur);
    shf_txn_abort (&txn);

    //  MVCC: a reader keeps its snapshot while a write txn changes things
    rc = shf_store_begin (store, true, &txn);
    assert (rc == SHF_OK);
    s_test_put (txn, SHF_DB_EXEC, "ns/wf", "old");
    rc = shf_txn_commit (&txn);
    assert (rc == SHF_OK);
    shf_txn_t *reader = NULL;
    rc = shf_store_begin (store, false, &reader);
    assert (rc == SHF_OK);
    rc = shf_store_begin (store, true, &txn);
    assert (rc == SHF_OK);
    s_test_put (txn, SHF_DB_EXEC, "ns/wf", "new");
    s_test_put (txn, SHF_DB_EXEC, "ns/wf2", "born");
    assert (s_test_has (reader, SHF_DB_EXEC, "ns/wf", "old"));
    assert (!s_test_has (reader, SHF_DB_EXEC, "ns/wf2", "born"));
    rc = shf_txn_commit (&txn);
    assert (rc == SHF_OK);
    assert (s_test_has (reader, SHF_DB_EXEC, "ns/wf", "old"));
    assert (!s_test_has (reader, SHF_DB_EXEC, "ns/wf2", "born"));
    shf_txn_abort (&reader);
    rc = shf_store_begin (store, false, &reader);
    assert (rc == SHF_OK);
    assert (s_test_has (reader, SHF_DB_EXEC, "ns/wf", "new"));
    assert (s_test_has (reader, SHF_DB_EXEC, "ns/wf2", "born"));
    rc = shf_txn_commit (&reader);
    assert (rc == SHF_OK);

    //  JSON values round-trip; a record that is not msgpack is corrupt
    json_t *doc = json_pack ("{s:s, s:i, s:[i,b]}", "status", "running",
                             "attempt", 3, "list", 1, 1);
    assert (doc);
    rc = shf_store_begin (store, true, &txn);
    assert (rc == SHF_OK);
    rc = shf_txn_put_json (txn, SHF_DB_DEFS, "ns/def", 6, doc);
    assert (rc == SHF_OK);
    s_test_put (txn, SHF_DB_DEFS, "ns/bad", "\xc1\xc1");
    rc = shf_txn_commit (&txn);
    assert (rc == SHF_OK);
    rc = shf_store_begin (store, false, &txn);
    assert (rc == SHF_OK);
    json_t *back = NULL;
    rc = shf_txn_get_json (txn, SHF_DB_DEFS, "ns/def", 6, &back);
    assert (rc == SHF_OK);
    assert (json_equal (doc, back));
    json_decref (back);
    back = NULL;
    rc = shf_txn_get_json (txn, SHF_DB_DEFS, "ns/bad", 6, &back);
    assert (rc == SHF_ECORRUPT);
    assert (back == NULL);
    rc = shf_txn_get_json (txn, SHF_DB_DEFS, "ns/none", 7, &back);
    assert (rc == SHF_ENOTFOUND);
    assert (back == NULL);
    shf_txn_abort (&txn);
    json_decref (doc);

    //  Commits persist across close and reopen
    shf_store_destroy (&store);
    assert (store == NULL);
    shf_store_destroy (&store);  //  NULL-safe
    rc = shf_store_open (&store, dir, 0, true);
    assert (rc == SHF_OK);
    rc = shf_store_begin (store, false, &txn);
    assert (rc == SHF_OK);
    assert (s_test_has (txn, SHF_DB_EXEC, "ns/wf", "new"));
    assert (s_test_has (txn, SHF_DB_META, "k", "meta"));
    assert (!s_test_has (txn, SHF_DB_EXEC, "ns/aborted", "v"));
    shf_txn_abort (&txn);

    //  Compacting copy: a single new file that opens as data.mdb
    char snap [320];
    snprintf (snap, sizeof snap, "%s/snap.mdb", tmp);
    rc = shf_store_copy (store, snap);
    assert (rc == SHF_OK);
    rc = shf_store_copy (store, snap);  //  never overwrites
    assert (rc == SHF_EIO);
    char moved [320];
    snprintf (moved, sizeof moved, "%s/moved", tmp);
    rc = shf_fs_mkdirs (moved);
    assert (rc == SHF_OK);
    char moved_data [340];
    snprintf (moved_data, sizeof moved_data, "%s/data.mdb", moved);
    int status = rename (snap, moved_data);
    assert (status == 0);
    shf_store_t *copy = NULL;
    rc = shf_store_open (&copy, moved, 0, false);
    assert (rc == SHF_OK);
    rc = shf_store_begin (copy, false, &txn);
    assert (rc == SHF_OK);
    assert (s_test_has (txn, SHF_DB_EXEC, "ns/wf2", "born"));
    assert (s_test_has (txn, SHF_DB_TIMERS, "k", "timers"));
    shf_txn_abort (&txn);
    shf_store_destroy (&copy);

    //  A reader killed without cleanup leaves a slot behind
    pid_t pid = fork ();
    assert (pid >= 0);
    if (pid == 0) {
        shf_store_t *mine = NULL;
        if (shf_store_open (&mine, dir, 0, false) != SHF_OK)
            _exit (1);
        shf_txn_t *held = NULL;
        if (shf_store_begin (mine, false, &held) != SHF_OK)
            _exit (2);
        _exit (0);  //  as kill -9 would: the reader slot stays taken
    }
    pid_t waited = waitpid (pid, &status, 0);
    assert (waited == pid);
    assert (WIFEXITED (status) && WEXITSTATUS (status) == 0);
    //  A restart that is the only process resets the lock file anyway;
    //  the check at open matters when another process keeps the env open,
    //  as this one does: run the same check by hand.
    int dead = 0;
    status = mdb_reader_check (store->env, &dead);
    assert (status == MDB_SUCCESS && dead == 1);
    status = mdb_reader_check (store->env, &dead);
    assert (status == MDB_SUCCESS && dead == 0);
    shf_store_destroy (&store);

    //  Map growth: fill a tiny map until SHF_EFULL, abort, grow, redo
    char small [320];
    snprintf (small, sizeof small, "%s/small", tmp);
    const size_t tiny = 256 * 1024;
    rc = shf_store_open (&store, small, tiny, true);
    assert (rc == SHF_OK);
    assert (s_test_map_size (store) == tiny);
    char value [1000];
    memset (value, 'v', sizeof value);
    int filled = 0;
    rc = shf_store_begin (store, true, &txn);
    assert (rc == SHF_OK);
    for (;; filled++) {
        unsigned char key [8];
        s_be64 ((uint64_t) filled, key);
        rc = shf_txn_put (txn, SHF_DB_TASKS, key, 8, value, sizeof value);
        if (rc != SHF_OK)
            break;
    }
    assert (rc == SHF_EFULL);
    assert (filled > 10);
    shf_txn_abort (&txn);
    rc = shf_store_grow (store);
    assert (rc == SHF_OK);
    assert (s_test_map_size (store) == 2 * tiny);
    rc = shf_store_begin (store, true, &txn);
    assert (rc == SHF_OK);
    for (int i = 0; i <= filled; i++) {
        unsigned char key [8];
        s_be64 ((uint64_t) i, key);
        rc = shf_txn_put (txn, SHF_DB_TASKS, key, 8, value, sizeof value);
        assert (rc == SHF_OK);
    }
    rc = shf_txn_commit (&txn);
    assert (rc == SHF_OK);
    assert (shf_store_used_bytes (store) > (size_t) filled * sizeof value);
    //  Keep committing small batches: nearly_full warns before EFULL
    int next = filled + 1;
    while (!shf_store_nearly_full (store)) {
        rc = shf_store_begin (store, true, &txn);
        assert (rc == SHF_OK);
        for (int i = 0; i < 10; i++, next++) {
            unsigned char key [8];
            s_be64 ((uint64_t) next, key);
            rc = shf_txn_put (txn, SHF_DB_TASKS, key, 8, value, sizeof value);
            assert (rc == SHF_OK);
        }
        rc = shf_txn_commit (&txn);
        assert (rc == SHF_OK);
    }
    assert (shf_store_used_bytes (store) * 5 > s_test_map_size (store) * 4);
    //  A live reader holds a remap back until it ends (its pointers into
    //  the map stay valid), then the grow goes through.
    size_t before = s_test_map_size (store);
    rc = shf_store_begin (store, false, &reader);
    assert (rc == SHF_OK);
    rc = shf_txn_get (reader, SHF_DB_TASKS, "\0\0\0\0\0\0\0\0", 8, &v, &vl);
    assert (rc == SHF_OK && vl == sizeof value);
    s_test_grower_t grower = {store, false, SHF_EINTERNAL};
    pthread_t thread;
    status = pthread_create (&thread, NULL, s_test_grower, &grower);
    assert (status == 0);
    usleep (50 * 1000);  //  cannot fail spuriously, only miss a bug
    assert (!atomic_load (&grower.done));
    assert (memcmp (v, value, sizeof value) == 0);
    shf_txn_abort (&reader);
    status = pthread_join (thread, NULL);
    assert (status == 0);
    assert (grower.rc == SHF_OK);
    assert (s_test_map_size (store) == 2 * before);
    assert (!shf_store_nearly_full (store));
    //  A reopen with the small size keeps the grown map
    shf_store_destroy (&store);
    rc = shf_store_open (&store, small, tiny, true);
    assert (rc == SHF_OK);
    assert (s_test_map_size (store) >= 2 * tiny);
    rc = shf_store_begin (store, false, &txn);
    assert (rc == SHF_OK);
    unsigned char last_key [8];
    s_be64 ((uint64_t) next - 1, last_key);
    rc = shf_txn_get (txn, SHF_DB_TASKS, last_key, 8, &v, &vl);
    assert (rc == SHF_OK && vl == sizeof value);
    shf_txn_abort (&txn);
    shf_store_destroy (&store);

    //  Preallocation: a durable store keeps its file written a lead past
    //  the last page; the zeros past it are not data, so the store reopens
    //  with every record and keeps growing over them.
    {
        char pdir [320];
        snprintf (pdir, sizeof pdir, "%s/prealloc", tmp);
        char data [400];
        snprintf (data, sizeof data, "%s/data.mdb", pdir);
        for (int round = 0; round < 2; round++) {
            rc = shf_store_open (&store, pdir, 0, true);
            assert (rc == SHF_OK);
            rc = shf_store_begin (store, true, &txn);
            assert (rc == SHF_OK);
            //  ~1.5 MiB per round: grows past the lead of round 0
            char filler [1500];
            memset (filler, 'p', sizeof filler);
            for (int i = 0; i < 1000; i++) {
                unsigned char key [8];
                s_be64 ((uint64_t) (round * 1000 + i), key);
                rc = shf_txn_put (txn, SHF_DB_HISTORY, key, 8, filler,
                                  sizeof filler);
                assert (rc == SHF_OK);
            }
            rc = shf_txn_commit (&txn);
            assert (rc == SHF_OK);
            shf_store_prealloc (store);
            struct stat st;
            assert (stat (data, &st) == 0);
            size_t used = shf_store_used_bytes (store);
            assert ((size_t) st.st_size >= used + SHF_STORE_PREALLOC_LEAD / 2);
            assert ((size_t) st.st_size <= used + SHF_STORE_PREALLOC_LEAD);
            shf_store_prealloc (store);  //  lead left: nothing to do
            struct stat again;
            assert (stat (data, &again) == 0 && again.st_size == st.st_size);
            shf_store_destroy (&store);
        }
        rc = shf_store_open (&store, pdir, 0, true);
        assert (rc == SHF_OK);
        rc = shf_store_begin (store, false, &txn);
        assert (rc == SHF_OK);
        for (uint64_t i = 0; i < 2000; i += 999) {
            unsigned char key [8];
            s_be64 (i, key);
            rc = shf_txn_get (txn, SHF_DB_HISTORY, key, 8, &v, &vl);
            assert (rc == SHF_OK && vl == 1500 && ((char *) v) [0] == 'p');
        }
        shf_txn_abort (&txn);
        shf_store_destroy (&store);
    }

    //  Failpoint store.commit=eio: failpoints are parsed once per process,
    //  so run that part in a fresh copy of this test binary.
    char fpdir [320];
    snprintf (fpdir, sizeof fpdir, "%s/failpoint", tmp);
    fflush (NULL);
    pid = fork ();
    assert (pid >= 0);
    if (pid == 0) {
        setenv ("SHF_STORE_TEST_CHILD", fpdir, 1);
        setenv ("SHF_FAILPOINTS", "store.commit=eio@2", 1);
        execl ("/proc/self/exe", "shf_selftest", "shf_store", (char *) NULL);
        _exit (127);
    }
    waited = waitpid (pid, &status, 0);
    assert (waited == pid);
    assert (WIFEXITED (status) && WEXITSTATUS (status) == 0);

    s_test_rmtree (tmp);
    if (verbose)
        printf (" * shf_store: OK\n");
}
