/*  fuzz_envelope.c - libFuzzer target for shf_envelope_read, the walk the
    router runs over every request frame before a shard decodes it.

    Any input must be read or refused without a crash or a read out of
    bounds, and on a refusal the envelope is left empty. Whenever
    shf_msg_decode accepts the same bytes, the envelope must have been
    read too and agree with the decoded message: same op, same id, and
    ns, wf_id, token and request_id equal to its string fields (absent
    exactly when the message has no string there). Otherwise the router
    could route a valid message by other fields than the shard sees.
    Corpus: fuzz/corpus/envelope/ (replayed by ctest).
*/
#include "shf_envelope.h"
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

//  A string the envelope hands out lies inside the frame.
static bool
s_inside (shf_envelope_str_t str, const uint8_t *data, size_t size)
{
    if (!str.ptr)
        return str.len == 0;
    const uint8_t *p = (const uint8_t *) str.ptr;
    return p >= data && str.len <= size
           && p - data <= (ptrdiff_t) (size - str.len);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    shf_envelope_t env;
    shf_err_t env_rc = shf_envelope_read (data, size, &env);
    assert (env_rc == SHF_OK || env_rc == SHF_EINVAL);
    if (env_rc == SHF_OK) {
        assert (env.op >= SHF_OP_INVALID && env.op < SHF_OP_COUNT);
        assert (s_inside (env.ns, data, size));
        assert (s_inside (env.wf_id, data, size));
        assert (s_inside (env.token, data, size));
        assert (s_inside (env.request_id, data, size));
    }
    else {
        assert (env.op == SHF_OP_INVALID && env.id == 0);
        assert (!env.ns.ptr && !env.wf_id.ptr && !env.token.ptr
                && !env.request_id.ptr);
    }

    json_t *msg = NULL;
    shf_op_t op;
    uint64_t id;
    char err [512];
    if (shf_msg_decode (data, size, &msg, &op, &id, err, sizeof err) != SHF_OK)
        return 0;
    assert (env_rc == SHF_OK);
    assert (shf_envelope_agrees (&env, msg, op, id));
    json_decref (msg);
    return 0;
}
