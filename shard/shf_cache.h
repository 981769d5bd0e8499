/*  shf_cache.h - the shard's actor cache: run states by exec key, least
    recently used evicted first.

    A cached state may be mutated in place by the state machine; the shard
    writes it to LMDB in the same batch, so dropping an entry never loses
    anything (the next load reads it back). After an aborted batch the
    shard purges the cache, since cached states may hold uncommitted
    changes.

    Thread rule: owned by one shard thread.
*/
#ifndef SHF_CACHE_H_INCLUDED
#define SHF_CACHE_H_INCLUDED
#include "../actors/shf_run.h"
#include <stdbool.h>
#include <stddef.h>

typedef struct shf_cache shf_cache_t;

shf_cache_t *shf_cache_new (size_t capacity);
void shf_cache_destroy (shf_cache_t **self_p);

//  The run cached under key (borrowed), now the most recently used; or
//  NULL.
shf_run_t *shf_cache_lookup (shf_cache_t *self, const char *key);

//  Cache a run (its reference taken), replacing any under key; evicts the
//  least recently used entries beyond the capacity. Never evicts this one.
void shf_cache_put (shf_cache_t *self, const char *key, shf_run_t *run);

void shf_cache_purge (shf_cache_t *self);

size_t shf_cache_size (shf_cache_t *self);

void shf_cache_test (bool verbose);

#endif
