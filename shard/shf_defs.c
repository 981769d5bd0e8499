/*  shf_defs.c - stored workflow definitions: find, compile, cache (see
    shf_defs.h).
*/
#include "shf_defs.h"
#include "shf_alloc.h"
#include "shf_log.h"
#include "shf_str.h"
#include <assert.h>
#include <czmq.h>
#include <string.h>

struct shf_defs {
    uint32_t shard;
    size_t max;
    zhashx_t *compiled;  //  "ns\x1fname\x1fversion" -> shf_def_t
};

static void
s_def_destroy (void **item)
{
    shf_def_t *def = *item;
    shf_def_destroy (&def);
    *item = NULL;
}

shf_defs_t *
shf_defs_new (uint32_t shard, size_t max)
{
    shf_defs_t *self = shf_alloc (sizeof *self);
    self->shard = shard;
    self->max = max;
    self->compiled = zhashx_new ();
    assert (self->compiled);
    zhashx_set_destructor (self->compiled, s_def_destroy);
    return self;
}

void
shf_defs_destroy (shf_defs_t **self_p)
{
    assert (self_p);
    shf_defs_t *self = *self_p;
    if (self) {
        zhashx_destroy (&self->compiled);
        free (self);
        *self_p = NULL;
    }
}

void
shf_defs_prefix (shf_key_t *key, const char *ns, const char *name)
{
    shf_key_init (key);
    shf_key_str (key, ns);
    shf_key_str (key, name);
}

//  The newest version of name, read from its key alone.
static shf_err_t
s_newest_version (shf_txn_t *txn, const char *ns, const char *name,
                  int64_t *version_p)
{
    shf_key_t key;
    shf_defs_prefix (&key, ns, name);
    size_t prefix = key.size;
    //  The last key below name's highest possible version.
    shf_key_u64 (&key, UINT64_MAX);
    shf_cursor_t *cur;
    shf_err_t rc = shf_cursor_open (txn, SHF_DB_DEFS, &cur);
    if (rc)
        return rc;
    const void *k, *v;
    size_t kl, vl;
    rc = shf_cursor_seek (cur, key.data, key.size, &k, &kl, &v, &vl);
    if (rc == SHF_OK)
        rc = shf_cursor_prev (cur, &k, &kl, &v, &vl);
    else if (rc == SHF_ENOTFOUND)
        rc = shf_cursor_last (cur, &k, &kl, &v, &vl);
    if (rc == SHF_OK && (kl != prefix + 8 || memcmp (k, key.data, prefix) != 0))
        rc = SHF_ENOTFOUND;
    if (rc == SHF_OK) {
        uint64_t found = shf_key_get_u64 ((const char *) k + prefix);
        rc = found >= 1 && found <= INT64_MAX ? SHF_OK : SHF_ECORRUPT;
        *version_p = (int64_t) found;
    }
    shf_cursor_close (&cur);
    return rc;
}

shf_err_t
shf_defs_record (shf_txn_t *txn, const char *ns, const char *name,
                 int64_t version, json_t **record_p)
{
    if (version <= 0) {
        shf_err_t rc = s_newest_version (txn, ns, name, &version);
        if (rc)
            return rc;
    }
    shf_key_t key;
    shf_defs_prefix (&key, ns, name);
    shf_key_u64 (&key, (uint64_t) version);
    return shf_txn_get_json (txn, SHF_DB_DEFS, key.data, key.size, record_p);
}

shf_err_t
shf_defs_load (shf_defs_t *self, shf_txn_t *txn, const char *ns,
               const char *name, int64_t version, const shf_def_t **def_p)
{
    assert (self);
    //  The newest version is found from the keys: a start without a
    //  version does not decode the whole stored document every time.
    if (version <= 0) {
        shf_err_t rc = s_newest_version (txn, ns, name, &version);
        if (rc)
            return rc;
    }
    //  ns \x1f name \x1f version (digits, reversed: a key, never shown)
    char cache_key [600];
    shf_str_join (cache_key, sizeof cache_key - 24, ns, '\x1f', name);
    size_t len = strlen (cache_key);
    cache_key [len++] = '\x1f';
    for (uint64_t v = (uint64_t) version; v; v /= 10)
        cache_key [len++] = (char) ('0' + v % 10);
    cache_key [len] = 0;
    shf_def_t *def = zhashx_lookup (self->compiled, cache_key);
    if (def) {
        *def_p = def;
        return SHF_OK;
    }
    json_t *record = NULL;
    shf_err_t rc = shf_defs_record (txn, ns, name, version, &record);
    if (rc)
        return rc;
    int64_t found = json_integer_value (json_object_get (record, "version"));
    if (found != version) {
        shf_error ("shard %u: definition %s@%lld is stored as version %lld",
                   self->shard, name, (long long) version, (long long) found);
        json_decref (record);
        return SHF_ECORRUPT;
    }
    char *text = json_dumps (json_object_get (record, "doc"), JSON_COMPACT);
    json_decref (record);
    char err [512] = "the record has no document";
    rc = text ? shf_def_compile (text, strlen (text), &def, err, sizeof err)
              : SHF_ECORRUPT;
    free (text);
    if (rc) {
        shf_error ("shard %u: stored definition %s@%lld does not compile: %s",
                   self->shard, name, (long long) version, err);
        return SHF_ECORRUPT;
    }
    shf_def_set_version (def, version);
    if (self->max && zhashx_size (self->compiled) >= self->max)
        zhashx_purge (self->compiled);
    zhashx_insert (self->compiled, cache_key, def);
    *def_p = def;
    return SHF_OK;
}
