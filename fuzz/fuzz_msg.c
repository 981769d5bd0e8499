/*  fuzz_msg.c - libFuzzer target for shf_msg_decode, the decoder of every
    frame a client, worker or peer sends.

    Any input must be refused (SHF_EINVAL or SHF_ETOOLARGE, with a message)
    or decoded into a valid message of a known op that encodes again and
    decodes back to the same op, id and value; bytes taken for an
    acknowledgement without decoding (shf_msg_ack_read) must decode to
    one. The same bytes, as text,
    are also a wf_history page token a client sends back: parsed, it must
    format back to exactly that text.
    Corpus: fuzz/corpus/msg/ (replayed by ctest).
*/
#include "shf_msg.h"
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static void
s_page_token (const uint8_t *data, size_t size)
{
    if (size >= SHF_MSG_PAGE_TOKEN_MAX)
        return;  //  the field's limit: longer never reaches the parser
    char text [SHF_MSG_PAGE_TOKEN_MAX];
    memcpy (text, data, size);
    text [size] = 0;
    char run_id [SHF_MSG_MAX_NAME + 1];
    uint64_t event_id;
    int64_t started_at;
    if (!shf_msg_page_token_parse (text, run_id, sizeof run_id, &started_at,
                                   &event_id))
        return;
    assert (event_id >= 1 && shf_msg_valid_name (run_id) && started_at >= -1);
    //  What parses is written back the same way (the old form by hand)
    char again [SHF_MSG_PAGE_TOKEN_MAX];
    if (started_at >= 0)
        shf_msg_page_token_format (again, sizeof again, run_id, started_at,
                                   event_id);
    else
        snprintf (again, sizeof again, "%s.%" PRIu64, run_id, event_id);
    assert (strcmp (again, text) == 0);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    s_page_token (data, size);
    json_t *msg = NULL;
    shf_op_t op;
    uint64_t id;
    char err [512];
    shf_err_t rc = shf_msg_decode (data, size, &msg, &op, &id, err, sizeof err);
    //  What a worker's link takes for an acknowledgement by its bytes is
    //  one: a reply, ok, with an empty body and that id.
    uint64_t ack_id;
    if (shf_msg_ack_read (data, size, &ack_id)) {
        assert (rc == SHF_OK && op == SHF_OP_REPLY && id == ack_id);
        const json_t *body = json_object_get (msg, "body");
        assert (json_is_true (json_object_get (msg, "ok"))
                && json_is_object (body) && json_object_size (body) == 0);
    }
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
