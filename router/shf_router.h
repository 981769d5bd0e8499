/*  shf_router.h - the node's front door (a CZMQ actor).

    Owns the frontend ROUTER socket (apps and workers), the shard map, the
    matcher and the shard actors. Decodes and validates every frame
    (proto), answers bad input itself, routes each request to its shard by
    keyed hash (or by the sealed task token for completions), gathers
    answers of requests that span shards (wf_list, def_register), and hands
    tasks that shards committed to polling workers.

    The router never touches LMDB: shards answer through their pipes.
*/
#ifndef SHF_ROUTER_H_INCLUDED
#define SHF_ROUTER_H_INCLUDED
#include "shf_err.h"
#include "shf_shardmap.h"
#include "shf_token.h"
#include <czmq.h>
#include <stdbool.h>

typedef struct {
    const char *data_dir;
    uint32_t shards;
    const char *listen;
    bool durable;
    uint8_t cluster_key [SHF_SHARDMAP_KEY_BYTES];
    uint8_t token_key [SHF_TOKEN_KEY_BYTES];
    shf_err_t status;     //  out: set before ready
    char endpoint [256];  //  out: the endpoint bound
} shf_router_args_t;

//  zactor_new (shf_router, &args): opens every shard (recovering it),
//  binds the frontend, then signals ready; args->status tells whether it
//  serves.
void shf_router (zsock_t *pipe, void *args);

#endif
