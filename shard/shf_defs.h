/*  shf_defs.h - stored workflow definitions: find, compile, cache.

    Every shard stores every definition in SHF_DB_DEFS under
    ns \0 name \0 version(8) as {name, version, registered_at, doc}. A
    stored version never changes, so a definition compiled once stays
    right for ever: a cache of them needs no invalidation.

    Used by the shard actor (wf_start, transitions, def_register) and by
    its reader (describe, def_show), each with its own cache.

    Thread rule: a shf_defs_t belongs to one thread. The functions taking a
    transaction read through it (read-only or write) and keep nothing of it.
*/
#ifndef SHF_DEFS_H_INCLUDED
#define SHF_DEFS_H_INCLUDED
#include "shf_def.h"
#include "shf_err.h"
#include "shf_keys.h"
#include "shf_store.h"
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef struct shf_defs shf_defs_t;

//  A cache of compiled definitions for shard id (named in log lines). max:
//  how many it keeps (0: no bound); when full it starts again empty.
shf_defs_t *shf_defs_new (uint32_t shard, size_t max);

void shf_defs_destroy (shf_defs_t **self_p);

//  The key prefix of name's records (append a version for one record).
void shf_defs_prefix (shf_key_t *key, const char *ns, const char *name);

//  The stored record of name@version (version 0: the newest).
//  *record_p is the caller's. SHF_ENOTFOUND when there is none; storage
//  errors as shf_txn_get_json.
shf_err_t shf_defs_record (shf_txn_t *txn, const char *ns, const char *name,
                           int64_t version, json_t **record_p) SHF_MUST_CHECK;

//  The compiled definition of name@version (version 0: the newest), from
//  the cache or compiled from its record. *def_p is borrowed from the cache:
//  valid until the next load (a bounded cache may start again) or destroy.
//  SHF_ENOTFOUND, SHF_ECORRUPT (the stored document does not compile;
//  logged), storage errors.
shf_err_t shf_defs_load (shf_defs_t *self, shf_txn_t *txn, const char *ns,
                         const char *name, int64_t version,
                         const shf_def_t **def_p) SHF_MUST_CHECK;

#endif
