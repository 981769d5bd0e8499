/*  shf_shardmap.h - which shard owns a workflow, and which node a shard.

    shard = high bits of SipHash-2-4(cluster key, "ns/wf_id"): a keyed hash
    so nobody can aim IDs at one shard, and the high bits so shard k can
    later split into 2k and 2k+1. Each shard has an owner node and an
    epoch; maps merge by taking the higher epoch per shard (one node for
    now, but the structure is the mesh's).

    Thread rule: owned by the router thread.
*/
#ifndef SHF_SHARDMAP_H_INCLUDED
#define SHF_SHARDMAP_H_INCLUDED
#include <stdbool.h>
#include <stdint.h>

#define SHF_SHARDMAP_KEY_BYTES  16
#define SHF_SHARDMAP_MAX_SHARDS 4096

typedef struct shf_shardmap shf_shardmap_t;

//  shards must be a power of two in 1..SHF_SHARDMAP_MAX_SHARDS.
shf_shardmap_t *shf_shardmap_new (uint32_t shards,
                                  const uint8_t key [SHF_SHARDMAP_KEY_BYTES],
                                  const char *node);
void shf_shardmap_destroy (shf_shardmap_t **self_p);

uint32_t shf_shardmap_shards (const shf_shardmap_t *self);

uint32_t shf_shardmap_locate (const shf_shardmap_t *self, const char *ns,
                              const char *wf_id);

const char *shf_shardmap_owner (const shf_shardmap_t *self, uint32_t shard);

uint64_t shf_shardmap_epoch (const shf_shardmap_t *self, uint32_t shard);

//  Merge one entry: taken when epoch is higher than what the map holds.
bool shf_shardmap_merge (shf_shardmap_t *self, uint32_t shard, const char *node,
                         uint64_t epoch);

void shf_shardmap_test (bool verbose);

#endif
