/*  shf_shardmap.c - keyed-hash routing and the shard -> (node, epoch) map.
*/
#include "shf_shardmap.h"
#include <assert.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char node [128];
    uint64_t epoch;
} s_entry_t;

struct shf_shardmap {
    uint32_t shards;
    unsigned bits;
    uint8_t key [SHF_SHARDMAP_KEY_BYTES];
    s_entry_t *entries;
};

shf_shardmap_t *
shf_shardmap_new (uint32_t shards, const uint8_t key [SHF_SHARDMAP_KEY_BYTES],
                  const char *node)
{
    assert (shards >= 1 && shards <= SHF_SHARDMAP_MAX_SHARDS);
    assert ((shards & (shards - 1)) == 0);
    shf_shardmap_t *self = calloc (1, sizeof *self);
    assert (self);
    self->shards = shards;
    while ((1u << self->bits) < shards)
        self->bits++;
    memcpy (self->key, key, SHF_SHARDMAP_KEY_BYTES);
    self->entries = calloc (shards, sizeof (s_entry_t));
    assert (self->entries);
    for (uint32_t i = 0; i < shards; i++) {
        snprintf (self->entries [i].node, sizeof self->entries [i].node, "%s",
                  node);
        self->entries [i].epoch = 1;
    }
    return self;
}

void
shf_shardmap_destroy (shf_shardmap_t **self_p)
{
    if (*self_p) {
        free ((*self_p)->entries);
        free (*self_p);
        *self_p = NULL;
    }
}

uint32_t
shf_shardmap_shards (const shf_shardmap_t *self)
{
    return self->shards;
}

static void
s_append (unsigned char *buf, size_t cap, size_t *n, const char *text)
{
    //  NULL hashed as glibc's printf wrote it, so nothing moves.
    if (!text)
        text = "(null)";
    size_t len = strnlen (text, cap - *n);
    memcpy (buf + *n, text, len);
    *n += len;
}

uint32_t
shf_shardmap_locate (const shf_shardmap_t *self, const char *ns,
                     const char *wf_id)
{
    if (self->bits == 0)
        return 0;
    //  Hashes "ns/wf_id" cut at 599 bytes, the bytes snprintf used to
    //  build (they decide where existing workflows live); built by hand
    //  since this runs for every request and every task.
    unsigned char buf [600];
    size_t n = 0;
    s_append (buf, sizeof buf - 1, &n, ns);
    s_append (buf, sizeof buf - 1, &n, "/");
    s_append (buf, sizeof buf - 1, &n, wf_id);
    unsigned char out [crypto_shorthash_BYTES];
    crypto_shorthash (out, buf, n, self->key);
    uint64_t h = 0;
    for (int i = 0; i < 8; i++)
        h = (h << 8) | out [i];
    return (uint32_t) (h >> (64 - self->bits));
}

const char *
shf_shardmap_owner (const shf_shardmap_t *self, uint32_t shard)
{
    return shard < self->shards ? self->entries [shard].node : NULL;
}

uint64_t
shf_shardmap_epoch (const shf_shardmap_t *self, uint32_t shard)
{
    return shard < self->shards ? self->entries [shard].epoch : 0;
}

bool
shf_shardmap_merge (shf_shardmap_t *self, uint32_t shard, const char *node,
                    uint64_t epoch)
{
    if (shard >= self->shards || epoch <= self->entries [shard].epoch)
        return false;
    snprintf (self->entries [shard].node, sizeof self->entries [shard].node,
              "%s", node);
    self->entries [shard].epoch = epoch;
    return true;
}

void
shf_shardmap_test (bool verbose)
{
    (void) verbose;
    uint8_t key [SHF_SHARDMAP_KEY_BYTES] = {1, 2, 3};
    shf_shardmap_t *map = shf_shardmap_new (8, key, "n1");
    //  Stable, in range, and spread over all shards.
    int seen [8] = {0};
    for (int i = 0; i < 1000; i++) {
        char id [32];
        snprintf (id, sizeof id, "wf-%d", i);
        uint32_t s = shf_shardmap_locate (map, "default", id);
        assert (s < 8);
        assert (s == shf_shardmap_locate (map, "default", id));
        seen [s]++;
    }
    for (int i = 0; i < 8; i++)
        assert (seen [i] > 60);
    //  Another key routes differently (keyed hash).
    uint8_t other [SHF_SHARDMAP_KEY_BYTES] = {9};
    shf_shardmap_t *map2 = shf_shardmap_new (8, other, "n1");
    int same = 0;
    for (int i = 0; i < 100; i++) {
        char id [32];
        snprintf (id, sizeof id, "wf-%d", i);
        same += shf_shardmap_locate (map, "default", id)
                == shf_shardmap_locate (map2, "default", id);
    }
    assert (same < 50);
    //  Merge takes the higher epoch only.
    assert (!shf_shardmap_merge (map, 3, "n2", 1));
    assert (shf_shardmap_merge (map, 3, "n2", 2));
    assert (strcmp (shf_shardmap_owner (map, 3), "n2") == 0);
    assert (shf_shardmap_epoch (map, 3) == 2);
    //  Placement is the hash of "ns/wf_id" cut at 599 bytes, as it was
    //  when written with snprintf: existing workflows must not move.
    char long_id [700];
    memset (long_id, 'x', sizeof long_id - 1);
    long_id [sizeof long_id - 1] = 0;
    const char *ids [] = {"a", "wf-1", long_id, long_id + 200, long_id + 300};
    for (size_t i = 0; i < sizeof ids / sizeof ids [0]; i++) {
        char buf [600];
        int n = snprintf (buf, sizeof buf, "%s/%s", "default", ids [i]);
        if (n >= (int) sizeof buf)
            n = (int) sizeof buf - 1;
        unsigned char out [crypto_shorthash_BYTES];
        crypto_shorthash (out, (const unsigned char *) buf, (size_t) n, key);
        uint64_t h = 0;
        for (int b = 0; b < 8; b++)
            h = (h << 8) | out [b];
        assert (shf_shardmap_locate (map, "default", ids [i])
                == (uint32_t) (h >> 61));
    }
    shf_shardmap_t *one = shf_shardmap_new (1, key, "n1");
    assert (shf_shardmap_locate (one, "default", "x") == 0);
    shf_shardmap_destroy (&one);
    shf_shardmap_destroy (&map2);
    shf_shardmap_destroy (&map);
}
