/*  shf_shard.h - the shard actor: one thread, one LMDB environment, one
    write transaction per batch.

    The router creates one shf_shard zactor per local shard. Messages on
    the pipe (router -> shard):
      "REQ"        frame identity (empty: no reply wanted), ptr json_t *msg
                   (ownership passes; a validated request; complete/fail/hb
                   carry "_token" {ns, wf_id, run_id, step, attempt})
      "GATHER"     uint32 gather id, ptr json_t *msg (def_register,
                   def_list, def_show, wf_list): answered by "GATHERED"
      "DISPATCHED" ptr json_t * {ns, wf_id, run_id, step, attempt, worker}
      "$TERM"
    and (shard -> router), each sent only after the batch that caused it
    committed:
      "REPLY"      frame identity, frame encoded reply
      "TASK"       ptr json_t *task message (ownership passes)
      "CANCEL"     string queue, string token: drop/cancel that task
      "GATHERED"   uint32 gather id, ptr json_t *reply (ownership passes)
    The read-only requests (wf_describe, wf_history) and gathers (wf_list,
    def_list, def_show) are answered by the shard's reader (shf_reader.h)
    instead, on its own thread and from read-only transactions: the shard
    forwards them once everything taken before them has committed, and
    the reader sends "REPLY" / "GATHERED" to args->replies.
*/
#ifndef SHF_SHARD_H_INCLUDED
#define SHF_SHARD_H_INCLUDED
#include "shf_err.h"
#include "shf_token.h"
#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct {
    uint32_t id;
    const char *dir;  //  DATA/shards/NNNN
    bool durable;
    uint8_t token_key [SHF_TOKEN_KEY_BYTES];
    const char *replies;  //  inproc endpoint the router pulls the answers
                          //  of the shard's reader from (shf_reader.h)
    shf_err_t status;     //  out: set before ready
} shf_shard_args_t;

//  The actor function (zactor_new (shf_shard, &args)). Signals ready once
//  the shard is recovered (args->status says whether it opened) and has
//  queued its pending tasks as "TASK" messages.
void shf_shard (zsock_t *pipe, void *args);

#endif
