/*  shf_node.h - one shardflow node: the router thread and its shards.

    shf_node_open creates (or reopens) DATA/ with its shards, recovers each
    shard from LMDB alone, binds the frontend ROUTER and returns once the
    node serves. shf_node_destroy stops every thread cleanly. Used by
    `shardflow dev` (and later `shardflow node`) and by tests/benchmarks
    that embed a node.
*/
#ifndef SHF_NODE_H_INCLUDED
#define SHF_NODE_H_INCLUDED
#include "shf_err.h"
#include <stdbool.h>

typedef struct shf_node shf_node_t;

typedef struct {
    const char *data_dir;  //  created if missing
    int shards;            //  power of two; fixed when DATA is created
    const char *listen;    //  e.g. "tcp://127.0.0.1:7400" (port 0: any)
    bool durable;          //  fsync each commit (false only in tests)
} shf_node_config_t;

//  SHF_EINVAL for a bad config, SHF_EIO if the data dir cannot be opened,
//  SHF_EUNAVAIL if the endpoint cannot be bound.
shf_err_t shf_node_open (shf_node_t **self_p,
                         const shf_node_config_t *config) SHF_MUST_CHECK;

//  The endpoint actually bound (port resolved). Borrowed.
const char *shf_node_endpoint (shf_node_t *self);

void shf_node_destroy (shf_node_t **self_p);

#endif
