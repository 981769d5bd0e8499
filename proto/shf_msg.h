/*  shf_msg.h - the wire messages of shardflow, version 1.

    A message is one ZeroMQ frame holding one msgpack map (decoded by
    shf_mpack). Clients and workers talk to a node's frontend ROUTER over a
    DEALER socket; every request carries "v":1, "op" and a client-chosen
    "id" (uint) that the reply echoes. Payloads (workflow input, activity
    output, signal input, heartbeat details) are msgpack values of any JSON
    shape.

    Requests (app)        required fields                  optional
      def_register        ns, doc (str: the JSON text)
      def_list            ns
      def_show            ns, name                         version
      wf_start            ns, name                         version, wf_id,
                                                           input, request_id
      wf_result           ns, wf_id                        wait (bool),
                                                           timeout_ms
      wf_describe         ns, wf_id
      wf_history          ns, wf_id
      wf_list             ns                               status, name, limit
      wf_signal           ns, wf_id, signal                input
      wf_cancel           ns, wf_id                        reason
      wf_terminate        ns, wf_id                        reason
    Requests (worker)
      poll                queue, credit (additive, 0..100000; 0 = keepalive)
                                                           stop (bool: take
                                                           back all credit)
      complete            token                            output
      fail                token, error {type, message}
      heartbeat           items [{token, details}]
    Server -> worker
      task                token, ns, wf_id, run_id, step, activity, queue,
                          attempt, input, heartbeat_details, start_to_close_ms
    Replies
      reply               id, ok:true, body (any)
                          id, ok:false, error {code, message}

    Limits: a frame over SHF_MSG_MAX_FRAME is rejected as too_large before
    decoding; strings are bounded (ns, wf_id, name, signal, queue: 1..255
    bytes, no control characters; request_id 1..255; reason 4 KiB).

    Thread rule: stateless; any thread.
*/
#ifndef SHF_MSG_H_INCLUDED
#define SHF_MSG_H_INCLUDED
#include "../common/shf_err.h"
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SHF_MSG_VERSION     1
#define SHF_MSG_MAX_PAYLOAD (2u * 1024 * 1024)
//  A frame may hold one full payload plus its envelope.
#define SHF_MSG_MAX_FRAME (SHF_MSG_MAX_PAYLOAD + 64 * 1024)
#define SHF_MSG_MAX_NAME  255
//  Payloads from clients nest at most this deep (the codec allows 64, and
//  stored states and replies wrap payloads in a few more levels).
#define SHF_MSG_MAX_PAYLOAD_DEPTH 20

typedef enum {
    SHF_OP_INVALID = 0,
    SHF_OP_DEF_REGISTER,
    SHF_OP_DEF_LIST,
    SHF_OP_DEF_SHOW,
    SHF_OP_WF_START,
    SHF_OP_WF_RESULT,
    SHF_OP_WF_DESCRIBE,
    SHF_OP_WF_HISTORY,
    SHF_OP_WF_LIST,
    SHF_OP_WF_SIGNAL,
    SHF_OP_WF_CANCEL,
    SHF_OP_WF_TERMINATE,
    SHF_OP_POLL,
    SHF_OP_COMPLETE,
    SHF_OP_FAIL,
    SHF_OP_HEARTBEAT,
    SHF_OP_TASK,
    SHF_OP_REPLY,
    SHF_OP_COUNT
} shf_op_t;

//  "wf_start" etc.; NULL for an invalid op.
const char *shf_msg_op_name (shf_op_t op);

//  The op named by name[0..len) (not NUL-terminated: it may point into a
//  frame); SHF_OP_INVALID when no op has exactly that name.
shf_op_t shf_msg_op_lookup (const char *name, size_t len);

//  Decode and validate one frame. On success *msg_p (the caller's) is the
//  message object, *op_p its op, and *id_p its id (0 when absent). On
//  failure returns SHF_ETOOLARGE or SHF_EINVAL with a message that says
//  what to fix ("wf_start: field \"input\" is larger than 2 MiB",
//  "field \"ns\" must be a string"), and *id_p is the id if one could be
//  read (so the error reply can echo it).
shf_err_t shf_msg_decode (const void *data, size_t size, json_t **msg_p,
                          shf_op_t *op_p, uint64_t *id_p, char *err,
                          size_t errlen) SHF_MUST_CHECK;

//  Encode a message object (adds "v"). *data_p is the caller's (free()).
//  SHF_ETOOLARGE when the encoding exceeds SHF_MSG_MAX_FRAME.
shf_err_t shf_msg_encode (const json_t *msg, char **data_p,
                          size_t *size_p) SHF_MUST_CHECK;

//  A task message (server -> worker), as a shard renders it.
typedef struct {
    const char *token, *ns, *wf_id, *run_id, *step, *activity, *queue;
    uint32_t attempt;
    const json_t *input;              //  NULL: null
    const json_t *heartbeat_details;  //  NULL: null
    int64_t start_to_close_ms;
    int64_t heartbeat_timeout_ms;
} shf_msg_task_t;

//  Encode a task message straight from its fields (no JSON tree): what
//  shf_msg_encode would give for the same message. SHF_ETOOLARGE over
//  SHF_MSG_MAX_FRAME, SHF_EINVAL when a payload nests too deep.
shf_err_t shf_msg_encode_task (const shf_msg_task_t *task, char **data_p,
                               size_t *size_p) SHF_MUST_CHECK;

//  The same message with its payloads given as msgpack bytes, one value
//  each (nil for none; task->input and ->heartbeat_details are not read):
//  the router renders a task from the bytes the shard stored
//  (shf_taskrec.h), with no tree. The same bytes shf_msg_encode_task
//  gives.
shf_err_t shf_msg_encode_task_packed (const shf_msg_task_t *task,
                                      const void *input, size_t input_size,
                                      const void *details, size_t details_size,
                                      char **data_p,
                                      size_t *size_p) SHF_MUST_CHECK;

//  The bytes shf_msg_encode gives for shf_msg_reply_ok (id, body), body
//  given encoded. SHF_ETOOLARGE over SHF_MSG_MAX_FRAME.
shf_err_t shf_msg_encode_reply_raw (uint64_t id, const void *body,
                                    size_t body_size, char **data_p,
                                    size_t *size_p) SHF_MUST_CHECK;

//  The bytes shf_msg_encode gives for shf_msg_reply_ok (id, {}), a plain
//  acknowledgement (of a task's report), written without a tree.
shf_err_t shf_msg_encode_ack (uint64_t id, char **data_p,
                              size_t *size_p) SHF_MUST_CHECK;

//  True when data[0..size) is exactly what shf_msg_encode_ack gives for
//  some id (then *id_p is it): a worker's link knows an acknowledgement
//  by its bytes, without decoding it.
bool shf_msg_ack_read (const void *data, size_t size, uint64_t *id_p);

//  Build replies (caller owns). body is stolen (NULL -> null).
json_t *shf_msg_reply_ok (uint64_t id, json_t *body);
json_t *shf_msg_reply_error (uint64_t id, shf_err_t err, const char *message);

//  The namespace of a request that names none.
#define SHF_MSG_DEFAULT_NS "default"

//  Gives a decoded request of an op that belongs to a namespace (all but
//  the worker's poll, complete, fail and heartbeat) the default one when
//  it names none: one rule for the router and the shards that decode.
void shf_msg_default_ns (json_t *msg, shf_op_t op);

//  Typed field readers for a validated message (borrowed / defaults).
const char *shf_msg_str (const json_t *msg,
                         const char *field);  //  NULL if absent
int64_t shf_msg_int (const json_t *msg, const char *field, int64_t dflt);
bool shf_msg_bool (const json_t *msg, const char *field, bool dflt);

//  True when s is a valid name: 1..255 bytes, valid UTF-8, no control chars.
bool shf_msg_valid_name (const char *s);
//  The same of s[0..len), which need not end in a NUL.
bool shf_msg_valid_namen (const char *s, size_t len);
//  The name rule but for UTF-8, for a string a decoder checked already.
bool shf_msg_valid_name_chars (const char *s, size_t len);

//  wf_history page tokens, "RUN_ID.STARTED_AT.EVENT_ID": the run the
//  pages are of, its start time (ms; it places the run's records) and the
//  first event of the next page. Tokens given before the start time was
//  in them, "RUN_ID.EVENT_ID", parse with *started_at_p = -1. Opaque to
//  clients, who send them back, so parsing checks everything: run_id a
//  valid name that fits run_id_size, numbers decimal without leading
//  zeros, the event id from 1.
#define SHF_MSG_PAGE_TOKEN_MAX (SHF_MSG_MAX_NAME + 44)
bool shf_msg_page_token_parse (const char *token, char *run_id,
                               size_t run_id_size, int64_t *started_at_p,
                               uint64_t *event_id_p);

//  Writes the token of (run_id, started_at, event_id) into buf (at least
//  SHF_MSG_PAGE_TOKEN_MAX bytes).
void shf_msg_page_token_format (char *buf, size_t size, const char *run_id,
                                int64_t started_at, uint64_t event_id);

void shf_msg_test (bool verbose);

#endif
