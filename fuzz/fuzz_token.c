/*  fuzz_token.c - libFuzzer target for shf_token_open under a fixed key.

    Each input is tried twice: as token text (what a worker could send;
    almost always stopped by the base64 or the MAC), and as a payload that
    is correctly sealed with the key first, so the fuzzer also reaches the
    msgpack decoding and the range checks behind the MAC. A token that
    opens must seal again to a text that opens to the same fields.
    Corpus: fuzz/corpus/token/ (replayed by ctest).
*/
#include "shf_token.h"
#include <assert.h>
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static const uint8_t s_key [SHF_TOKEN_KEY_BYTES] = {
    's', 'h', 'a', 'r', 'd', 'f', 'l', 'o', 'w', '-', 'f',
    'u', 'z', 'z', '-', 'k', 'e', 'y', 0,   1,   2,   3,
    4,   5,   6,   7,   8,   9,   10,  11,  12,  13};

static void
s_check (const char *text)
{
    shf_token_t token;
    shf_err_t rc = shf_token_open (text, s_key, &token);
    assert (rc == SHF_OK || rc == SHF_EINVAL || rc == SHF_EAUTH);
    if (rc != SHF_OK)
        return;
    char again [SHF_TOKEN_MAX_TEXT + 1];
    rc = shf_token_seal (&token, s_key, again, sizeof again);
    assert (rc == SHF_OK);
    shf_token_t back;
    rc = shf_token_open (again, s_key, &back);
    assert (rc == SHF_OK);
    assert (back.shard == token.shard && back.epoch == token.epoch
            && back.attempt == token.attempt && strcmp (back.ns, token.ns) == 0
            && strcmp (back.wf_id, token.wf_id) == 0
            && strcmp (back.run_id, token.run_id) == 0
            && strcmp (back.step, token.step) == 0);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (sodium_init () < 0)
        return 0;
    //  1. The input as text.
    char *text = malloc (size + 1);
    assert (text);
    memcpy (text, data, size);
    text [size] = 0;
    s_check (text);
    free (text);

    //  2. The input as a payload sealed with the right key.
    if (size + crypto_auth_BYTES > SHF_TOKEN_MAX_TEXT / 4 * 3)
        return 0;
    uint8_t bin [SHF_TOKEN_MAX_TEXT];
    memcpy (bin, data, size);
    crypto_auth (bin + size, bin, size, s_key);
    char sealed [SHF_TOKEN_MAX_TEXT + 1];
    sodium_bin2base64 (sealed, sizeof sealed, bin, size + crypto_auth_BYTES,
                       sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    s_check (sealed);
    return 0;
}
