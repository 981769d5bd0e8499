/*  shf_taskmsg.h - a task message (server -> worker) and its completion
    (worker -> server) read in place.

    A worker gets one task frame per activity attempt. Decoding it into a
    JSON tree (shf_msg_decode) builds a dozen values only for the SDK to
    copy their strings out again and free them. This walks the frame once
    and points into it instead, checking it by the rules shf_msg_decode
    applies to a message of op "task": exactly the frames that
    shf_msg_decode accepts with op "task" are read, with the same field
    values, and a task frame it refuses is refused with the same error
    code. The fuzz target (fuzz/fuzz_taskmsg.c) checks that agreement on
    every input.

    A completion ("complete": token and output) is read by the same rules
    for the shard, which gets one per activity attempt and needs only the
    id, the token text and the output's bytes.

    Thread rule: stateless; any thread.
*/
#ifndef SHF_TASKMSG_H_INCLUDED
#define SHF_TASKMSG_H_INCLUDED
#include "shf_envelope.h"  //  shf_envelope_str_t: a string inside the frame
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    shf_envelope_str_t token, ns, wf_id, run_id, step, activity, queue;
    uint32_t attempt;
    int64_t start_to_close_ms;     //  0 when absent (or nil)
    int64_t heartbeat_timeout_ms;  //  0 when absent (or nil)
    //  The msgpack bytes of each payload inside the frame; NULL (size 0)
    //  when the field is absent or nil.
    const uint8_t *input;
    size_t input_size;
    const uint8_t *details;  //  "heartbeat_details"
    size_t details_size;
} shf_taskmsg_t;

//  Reads a task frame, data[0..size). SHF_OK with *task filled, or the
//  code shf_msg_decode returns for the same bytes (SHF_EINVAL,
//  SHF_ETOOLARGE) with a short reason in err (may be NULL), or SHF_EINVAL
//  for a message of another op; *task is then zeroed.
shf_err_t shf_taskmsg_read (const void *data, size_t size, shf_taskmsg_t *task,
                            char *err, size_t errlen) SHF_MUST_CHECK;

//  Whether a read of data[0..size) (rc, *task) says what shf_msg_decode
//  says of the same bytes: the same code (SHF_EINVAL for a message of
//  another op), and when both accept, every string, integer and payload
//  equal, every string and payload inside the frame; on a refusal, *task
//  all zero. The property the self-test and the fuzz target check.
bool shf_taskmsg_agrees (shf_err_t rc, const shf_taskmsg_t *task,
                         const void *data, size_t size);

typedef struct {
    uint64_t id;  //  0 when absent or nil
    shf_envelope_str_t token;
    //  The msgpack bytes of "output" inside the frame; NULL (size 0) when
    //  absent or nil. At most SHF_MSG_MAX_PAYLOAD_DEPTH levels deep.
    const uint8_t *output;
    size_t output_size;
} shf_taskmsg_complete_t;

//  Reads a completion frame as shf_taskmsg_read reads a task: SHF_OK with
//  *done filled, or shf_msg_decode's code for the same bytes (SHF_EINVAL
//  for a message of another op), *done zeroed.
shf_err_t shf_taskmsg_read_complete (const void *data, size_t size,
                                     shf_taskmsg_complete_t *done, char *err,
                                     size_t errlen) SHF_MUST_CHECK;

//  shf_taskmsg_agrees for a completion: the same code as shf_msg_decode,
//  and when both accept, the same id, token and output.
bool shf_taskmsg_complete_agrees (shf_err_t rc,
                                  const shf_taskmsg_complete_t *done,
                                  const void *data, size_t size);

void shf_taskmsg_test (bool verbose);

#endif
