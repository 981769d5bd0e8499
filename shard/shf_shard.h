/*  shf_shard.h - the shard actor: one thread, one LMDB environment, one
    write transaction per batch.

    The router creates one shf_shard zactor per local shard. Messages on
    the pipe (router -> shard):
      "RAW"        frame identity, frame the request's wire bytes as the
                   client sent them, [ptr shf_shard_note_t *]: the shard
                   decodes and validates them itself, so the router reads
                   only the envelope (shf_envelope.h) and no message tree
                   crosses threads
      "REQ"        frame identity (empty: no reply wanted), ptr json_t *msg,
                   [ptr shf_shard_note_t *] (ownership of both passes; a
                   request the router made: heartbeat details, WorkerLost)
      "GATHER"     uint32 gather id, ptr json_t *msg (def_register,
                   def_list, def_show, wf_list): answered by "GATHERED"
      "DISPATCHED" ptr shf_shard_note_t * (the task's token fields and the
                   worker it went to; ownership passes). The shard may hold
                   it for one round of its loop (1 ms at most) so that it
                   shares a batch with the run's next input; when that
                   input is the task's own result, the result records the
                   start and the note is not applied on its own.
      "$TERM"
    and (shard -> router), each sent only after the batch that caused it
    committed:
      "REPLY"      frame identity, frame encoded reply, [string token: the
                   answer is to that task's report; stop tracking it]
      "ACKS"       frame of the batch's acknowledgements of task reports
                   (shf_reply.h: identity, request id, token each), which
                   the router encodes and sends
      "TASK"       ptr shf_shard_task_t * (ownership passes); a new task
                   comes unrendered: the router seals its token and
                   encodes its message, ~10% of the shard's instructions
                   taken off its thread; a recovered task comes whole
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

//  What the router adds to a request it forwards (RAW or REQ): the fields
//  of the task token whose MAC it checked (complete, fail, heartbeat
//  details), the worker's identity, and the workflow id it chose for a
//  wf_start that named none (routing needed it first).
#define SHF_SHARD_WORKER_MAX 520
typedef struct {
    bool has_token;
    shf_token_t token;
    char worker [SHF_SHARD_WORKER_MAX];  //  "" when none
    char wf_id [256];                    //  "" when the request has its own
} shf_shard_note_t;

//  A task on its way to a worker: what the router matches and tracks it
//  by, and its task message, which the router sends as it is. A new task
//  comes unrendered (wire NULL, token ""): the router seals its token and
//  renders the message from the parts below (shf_msg_encode_task_packed),
//  off the shard's thread. A recovered task comes rendered.
typedef struct {
    shf_token_t where;  //  ns, wf_id, run_id, step, attempt of the task
    const char *queue;  //  the three strings inside text
    const char *token;
    char *wire;  //  the encoded task message (malloc'd), or NULL
    size_t wire_size;
    //  the other parts of an unrendered task's message
    const char *activity;
    int64_t start_to_close_ms;
    int64_t heartbeat_timeout_ms;
    uint8_t *payloads;  //  input then heartbeat details, msgpack (malloc'd)
    size_t input_size;
    size_t details_size;
    char text [];
} shf_shard_task_t;

//  A rendered task. Takes wire; copies queue and token.
shf_shard_task_t *shf_shard_task_new (const shf_token_t *where,
                                      const char *queue, const char *token,
                                      char *wire, size_t wire_size);
//  An unrendered one. Copies the strings and the payloads' bytes.
shf_shard_task_t *shf_shard_task_unrendered (
    const shf_token_t *where, const char *queue, const char *activity,
    int64_t start_to_close_ms, int64_t heartbeat_timeout_ms, const void *input,
    size_t input_size, const void *details, size_t details_size);
void shf_shard_task_free (void *task);

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
