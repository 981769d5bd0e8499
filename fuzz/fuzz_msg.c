/*  fuzz_msg.c - libFuzzer target for shf_msg_decode, the decoder of every
    frame a client, worker or peer sends.

    Any input must be refused (SHF_EINVAL or SHF_ETOOLARGE, with a message)
    or decoded into a valid message of a known op that encodes again and
    decodes back to the same op, id and value.
    Corpus: fuzz/corpus/msg/ (replayed by ctest).
*/
#include "shf_msg.h"
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    json_t *msg = NULL;
    shf_op_t op;
    uint64_t id;
    char err [512];
    shf_err_t rc = shf_msg_decode (data, size, &msg, &op, &id, err, sizeof err);
    if (rc != SHF_OK) {
        assert (rc == SHF_EINVAL || rc == SHF_ETOOLARGE);
        assert (msg == NULL && op == SHF_OP_INVALID);
        assert (err [0]);
        return 0;
    }
    assert (shf_msg_op_name (op));
    char *again;
    size_t again_size;
    rc = shf_msg_encode (msg, &again, &again_size);
    //  float32 values come back as float64: a frame near the limit may
    //  grow past it.
    assert (rc == SHF_OK || rc == SHF_ETOOLARGE);
    if (rc == SHF_OK) {
        json_t *back = NULL;
        shf_op_t op2;
        uint64_t id2;
        rc = shf_msg_decode (again, again_size, &back, &op2, &id2, err,
                             sizeof err);
        assert (rc == SHF_OK);
        assert (op2 == op && id2 == id);
        assert (json_equal (msg, back));
        json_decref (back);
        free (again);
    }
    json_decref (msg);
    return 0;
}
