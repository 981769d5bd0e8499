/*  fuzz_taskmsg.c - libFuzzer target for shf_taskmsg_read, the in-place
    walk a worker runs over every task frame instead of shf_msg_decode,
    and shf_taskmsg_read_complete, the same walk the shard runs over every
    completion.

    The reader must agree with the decoder on every input, both ways: it
    reads a frame exactly when shf_msg_decode accepts it as op "task", and
    then every string is the decoded message's string, every integer its
    integer, and each payload a byte range inside the frame that
    shf_mpack_decode turns into the decoded message's value (NULL exactly
    when the message has none or nil). When the decoder refuses a frame
    of op "task", the reader refuses with the same code; a message of
    another op is refused as SHF_EINVAL, valid or not (the decoder may
    call another op's payload too large). On any refusal the task is all
    zero. The same holds for completions: read exactly when the decoder
    accepts op "complete" (its output at most SHF_MSG_MAX_PAYLOAD_DEPTH
    deep), with the same id, token and output.
    Corpus: fuzz/corpus/taskmsg/ (replayed by ctest).
*/
#include "shf_msg.h"
#include "shf_taskmsg.h"
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    shf_taskmsg_t task;
    char err [256];
    shf_err_t rc = shf_taskmsg_read (data, size, &task, err, sizeof err);
    assert (rc == SHF_OK || rc == SHF_EINVAL || rc == SHF_ETOOLARGE);

    assert (shf_taskmsg_agrees (rc, &task, data, size));

    shf_taskmsg_complete_t done;
    rc = shf_taskmsg_read_complete (data, size, &done, err, sizeof err);
    assert (rc == SHF_OK || rc == SHF_EINVAL || rc == SHF_ETOOLARGE);
    assert (shf_taskmsg_complete_agrees (rc, &done, data, size));
    return 0;
}
