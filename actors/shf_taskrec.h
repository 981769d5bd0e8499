/*  shf_taskrec.h - a pending task as the tasks database stores it.

    The key (shard/shf_keys.h: placed run key, step \0, attempt(4)) names
    the run, the step and the attempt. The value holds only the rest:

      [SHF_TASKREC_PACKED, activity, queue, input, heartbeat_details,
       start_to_close_ms, heartbeat_timeout_ms]

    (input and details nil when null). The token is not stored either: it
    is sealed again from the key's fields, the shard and its epoch
    (shf_token_seal is deterministic), so the record gives back the very
    task message the shard sent. A W3 task's record is ~20 bytes where the
    message it replaces took ~300; the tasks in flight fit in a third of
    the leaves.

    Records written before are the task message itself (a map with every
    field and the token); the shard reads both.

    Thread rule: stateless; any thread.
*/
#ifndef SHF_TASKREC_H_INCLUDED
#define SHF_TASKREC_H_INCLUDED
#include "shf_err.h"
#include "shf_mpack.h"
#include "shf_msg.h"
#include "shf_run.h"
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#define SHF_TASKREC_PACKED 1

//  What a task record's key says; the strings point into the key's bytes.
typedef struct {
    shf_run_ids_t ids;
    const char *step;
    uint32_t attempt;
} shf_taskrec_key_t;

//  Where a record's payloads are in its bytes: offsets into out->data and
//  sizes, each one msgpack value (nil for none).
typedef struct {
    size_t input_at, input_size;
    size_t details_at, details_size;
} shf_taskrec_spans_t;

//  Writes the record of task to out (from out->size on): every field but
//  the token and those the key holds; spans (may be NULL) says where the
//  payloads went, for the message rendered from the same bytes. SHF_EINVAL
//  when a payload nests too deep (out->size is then where it was).
shf_err_t shf_taskrec_pack (const shf_msg_task_t *task, shf_mpack_out_t *out,
                            shf_taskrec_spans_t *spans) SHF_MUST_CHECK;

//  Reads a key of the tasks database; false when the bytes are not one
//  (three names and a step, each ending in NUL, after 8 bytes of start
//  time, then 4 of attempt).
bool shf_taskrec_key (const void *key, size_t size, shf_taskrec_key_t *out);

//  Fills task from a decoded record of the packed form and from its key:
//  everything but the token (NULL). Strings and values borrow from record
//  and from the key's bytes. false when record is not of that form.
bool shf_taskrec_unpack (const json_t *record, const shf_taskrec_key_t *key,
                         shf_msg_task_t *task);

void shf_taskrec_test (bool verbose);

#endif
