/*  fuzz_taskmsg.c - libFuzzer target for shf_taskmsg_read, the in-place
    walk a worker runs over every task frame instead of shf_msg_decode.

    The reader must agree with the decoder on every input, both ways: it
    reads a frame exactly when shf_msg_decode accepts it as op "task", and
    then every string is the decoded message's string, every integer its
    integer, and each payload a byte range inside the frame that
    shf_mpack_decode turns into the decoded message's value (NULL exactly
    when the message has none or nil). When the decoder refuses a frame
    of op "task", the reader refuses with the same code; a message of
    another op is refused as SHF_EINVAL, valid or not (the decoder may
    call another op's payload too large). On any refusal the task is all
    zero.
    Corpus: fuzz/corpus/taskmsg/ (replayed by ctest).
*/
#include "shf_mpack.h"
#include "shf_msg.h"
#include "shf_taskmsg.h"
#include "shf_envelope.h"
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static void
s_str_agrees (shf_envelope_str_t str, const json_t *msg, const char *field)
{
    const json_t *value = json_object_get (msg, field);
    if (!json_is_string (value)) {
        assert (!str.ptr && str.len == 0);
        return;
    }
    assert (str.ptr && str.len == json_string_length (value)
            && memcmp (str.ptr, json_string_value (value), str.len) == 0);
}

//  A string or payload the reader hands out lies inside the frame.
static bool
s_inside (const void *ptr, size_t len, const uint8_t *data, size_t size)
{
    const uint8_t *p = ptr;
    return p >= data && len <= size && (size_t) (p - data) <= size - len;
}

static void
s_payload_agrees (const uint8_t *bytes, size_t len, const uint8_t *data,
                  size_t size, const json_t *want)
{
    if (!want || json_is_null (want)) {
        assert (!bytes && len == 0);
        return;
    }
    assert (bytes && s_inside (bytes, len, data, size));
    json_t *got = NULL;
    assert (shf_mpack_decode (bytes, len, &got, NULL, 0) == SHF_OK);
    assert (json_equal (got, (json_t *) want));
    json_decref (got);
}

static int64_t
s_int_of (const json_t *msg, const char *field)
{
    const json_t *value = json_object_get (msg, field);
    return json_is_integer (value) ? json_integer_value (value) : 0;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    shf_taskmsg_t task;
    char err [256];
    shf_err_t rc = shf_taskmsg_read (data, size, &task, err, sizeof err);
    assert (rc == SHF_OK || rc == SHF_EINVAL || rc == SHF_ETOOLARGE);

    json_t *msg = NULL;
    shf_op_t op;
    uint64_t id;
    char why [512];
    shf_err_t want =
        shf_msg_decode (data, size, &msg, &op, &id, why, sizeof why);
    if (want == SHF_OK && op != SHF_OP_TASK)
        want = SHF_EINVAL;
    //  A payload too large in a message of another op: no task either way
    shf_envelope_t env;
    if (want == SHF_ETOOLARGE && shf_envelope_read (data, size, &env) == SHF_OK
        && env.op != SHF_OP_TASK)
        want = SHF_EINVAL;
    assert (rc == want);

    if (rc == SHF_OK) {
        const shf_envelope_str_t *strs [] = {
            &task.token, &task.ns,       &task.wf_id, &task.run_id,
            &task.step,  &task.activity, &task.queue};
        const char *names [] = {"token", "ns",       "wf_id", "run_id",
                                "step",  "activity", "queue"};
        for (size_t i = 0; i < sizeof names / sizeof names [0]; i++) {
            assert (!strs [i]->ptr
                    || s_inside (strs [i]->ptr, strs [i]->len, data, size));
            s_str_agrees (*strs [i], msg, names [i]);
        }
        assert (task.attempt == s_int_of (msg, "attempt"));
        assert (task.start_to_close_ms == s_int_of (msg, "start_to_close_ms"));
        assert (task.heartbeat_timeout_ms
                == s_int_of (msg, "heartbeat_timeout_ms"));
        s_payload_agrees (task.input, task.input_size, data, size,
                          json_object_get (msg, "input"));
        s_payload_agrees (task.details, task.details_size, data, size,
                          json_object_get (msg, "heartbeat_details"));
    }
    else {
        shf_taskmsg_t zero;
        memset (&zero, 0, sizeof zero);
        assert (memcmp (&task, &zero, sizeof zero) == 0);
    }
    json_decref (msg);
    return 0;
}
