/*  shf_envelope.h - the few top-level fields a router needs to send a
    wire frame on, read without building the message.

    The router routes most requests by op, ns and wf_id (or, for a
    completion, by its task token) and hands the frame's bytes to the shard,
    which decodes and validates the whole message where it is used. Reading
    the envelope walks the msgpack structure once and allocates nothing:
    every declared length is checked against the bytes present, nesting is
    bounded by SHF_MPACK_MAX_DEPTH, the frame must be exactly one map with
    string keys and nothing after it. A field of the wrong type is left
    absent (the full decode refuses it with the precise message).

    Thread rule: stateless; any thread.
*/
#ifndef SHF_ENVELOPE_H_INCLUDED
#define SHF_ENVELOPE_H_INCLUDED
#include "shf_msg.h"

//  A string inside the frame: not NUL-terminated; ptr NULL when absent.
typedef struct {
    const char *ptr;
    size_t len;
} shf_envelope_str_t;

typedef struct {
    shf_op_t op;  //  SHF_OP_INVALID when "op" is absent or unknown
    uint64_t id;  //  0 when absent or not an unsigned integer
    shf_envelope_str_t ns, wf_id, token, request_id;
} shf_envelope_t;

//  Fills *env from data[0..size). SHF_EINVAL when the bytes are not one
//  well-formed msgpack map with string keys (or a field above appears
//  twice, or size exceeds SHF_MSG_MAX_FRAME): the caller then runs
//  shf_msg_decode for the message to answer with.
shf_err_t shf_envelope_read (const void *data, size_t size,
                             shf_envelope_t *env) SHF_MUST_CHECK;

//  Whether an envelope read from a frame says what the frame's full
//  decode (msg, op, id) says: the property the tests and the fuzz target
//  check on every frame shf_msg_decode accepts.
bool shf_envelope_agrees (const shf_envelope_t *env, const json_t *msg,
                          shf_op_t op, uint64_t id);

void shf_envelope_test (bool verbose);

#endif
