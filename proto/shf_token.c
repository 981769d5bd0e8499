/*  shf_token.c - sealed task tokens.

    Wire form: base64url without padding of (payload || tag), where payload
    is the msgpack array [shard, epoch, ns, wf_id, run_id, step, attempt]
    and tag = crypto_auth (payload, node secret), 32 bytes of
    HMAC-SHA512-256. Opening decodes the base64 into a fixed buffer,
    verifies the tag in constant time, and only then lets the msgpack
    decoder see the payload; every element is then type- and range-checked
    against the struct, so a token that passes is safe to copy from.

    Shards seal tokens when they hand out a task; the router opens them to
    route complete / fail / heartbeat to the right shard.
*/
#include "shf_token.h"
#include "shf_mpack.h"
#include <assert.h>
#include <msgpack.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Decoded bytes of the longest text we accept.
#define S_MAX_BIN (SHF_TOKEN_MAX_TEXT / 4 * 3 + 3)

static void
s_init (void)
{
    //  Idempotent and thread-safe; fails only without a random source,
    //  which crypto_auth does not need.
    if (sodium_init () < 0)
        assert (false);
}

//  Packs into a fixed buffer: a token's payload is at most a few hundred
//  bytes, and sealing happens for every task handed out.
typedef struct {
    uint8_t data [S_MAX_BIN];
    size_t size;
} s_buf_t;

static int
s_buf_write (void *data, const char *buf, size_t len)
{
    s_buf_t *b = data;
    if (len > sizeof b->data - b->size)
        return -1;
    memcpy (b->data + b->size, buf, len);
    b->size += len;
    return 0;
}

//  A C string that fills less than its buffer and is valid UTF-8.
static bool
s_pack_string (msgpack_packer *pk, const char *s, size_t size)
{
    size_t len = strnlen (s, size);
    return len < size && shf_mpack_utf8_valid (s, len)
           && msgpack_pack_str (pk, len) == 0
           && msgpack_pack_str_body (pk, s, len) == 0;
}

//  HMAC's keyed start (two SHA-512 blocks) is the same for every token
//  under one key: each thread keeps it for the last key it used, which
//  halves the hashing per token.
static _Thread_local struct {
    bool set;
    uint8_t key [SHF_TOKEN_KEY_BYTES];
    crypto_auth_hmacsha512256_state state;
} s_keyed;

static void
s_mac (const uint8_t *data, size_t size,
       const uint8_t key [SHF_TOKEN_KEY_BYTES], uint8_t mac [crypto_auth_BYTES])
{
    if (!s_keyed.set || sodium_memcmp (s_keyed.key, key, sizeof s_keyed.key)) {
        crypto_auth_hmacsha512256_init (&s_keyed.state, key,
                                        SHF_TOKEN_KEY_BYTES);
        memcpy (s_keyed.key, key, sizeof s_keyed.key);
        s_keyed.set = true;
    }
    crypto_auth_hmacsha512256_state state = s_keyed.state;
    crypto_auth_hmacsha512256_update (&state, data, size);
    crypto_auth_hmacsha512256_final (&state, mac);
    sodium_memzero (&state, sizeof state);
}

shf_err_t
shf_token_seal (const shf_token_t *token,
                const uint8_t key [SHF_TOKEN_KEY_BYTES], char *text,
                size_t text_size)
{
    assert (token);
    assert (key);
    assert (text);
    s_init ();
    if (text_size > 0)
        text [0] = 0;
    if (token->epoch > INT64_MAX)
        return SHF_EINVAL;
    s_buf_t bin = {.size = 0};
    msgpack_packer pk;
    msgpack_packer_init (&pk, &bin, s_buf_write);
    if (msgpack_pack_array (&pk, 7)
        || msgpack_pack_int64 (&pk, (int64_t) token->shard)
        || msgpack_pack_int64 (&pk, (int64_t) token->epoch))
        return SHF_ETOOLARGE;
    if (!s_pack_string (&pk, token->ns, sizeof token->ns)
        || !s_pack_string (&pk, token->wf_id, sizeof token->wf_id)
        || !s_pack_string (&pk, token->run_id, sizeof token->run_id)
        || !s_pack_string (&pk, token->step, sizeof token->step)
        || msgpack_pack_int64 (&pk, (int64_t) token->attempt))
        return SHF_EINVAL;
    size_t payload_size = bin.size;
    size_t bin_size = payload_size + crypto_auth_BYTES;
    size_t b64_size = sodium_base64_ENCODED_LEN (
        bin_size, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    //  b64_size counts the NUL.
    if (bin_size > sizeof bin.data || b64_size > SHF_TOKEN_MAX_TEXT + 1
        || b64_size > text_size)
        return SHF_ETOOLARGE;
    s_mac (bin.data, payload_size, key, bin.data + payload_size);
    sodium_bin2base64 (text, text_size, bin.data, bin_size,
                       sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return SHF_OK;
}

//  Copies a decoded string element into a struct buffer.
static bool
s_copy (const json_t *value, char *dest, size_t size)
{
    if (!json_is_string (value))
        return false;
    size_t len = json_string_length (value);
    const char *s = json_string_value (value);
    if (len >= size || memchr (s, 0, len))
        return false;
    memcpy (dest, s, len);
    dest [len] = 0;
    return true;
}

static bool
s_uint (const json_t *value, uint64_t max, uint64_t *out)
{
    if (!json_is_integer (value) || json_integer_value (value) < 0
        || (uint64_t) json_integer_value (value) > max)
        return false;
    *out = (uint64_t) json_integer_value (value);
    return true;
}

shf_err_t
shf_token_open (const char *text, const uint8_t key [SHF_TOKEN_KEY_BYTES],
                shf_token_t *token)
{
    assert (text);
    assert (key);
    assert (token);
    s_init ();
    memset (token, 0, sizeof *token);
    size_t text_len = strnlen (text, SHF_TOKEN_MAX_TEXT + 1);
    if (text_len > SHF_TOKEN_MAX_TEXT)
        return SHF_EINVAL;
    uint8_t bin [S_MAX_BIN];
    size_t bin_size = 0;
    if (sodium_base642bin (bin, sizeof bin, text, text_len, NULL, &bin_size,
                           NULL, sodium_base64_VARIANT_URLSAFE_NO_PADDING)
        != 0)
        return SHF_EINVAL;
    if (bin_size <= crypto_auth_BYTES)
        return SHF_EINVAL;
    size_t payload_size = bin_size - crypto_auth_BYTES;
    //  The MAC first: nothing a forger wrote reaches the decoder.
    uint8_t mac [crypto_auth_BYTES];
    s_mac (bin, payload_size, key, mac);
    if (crypto_verify_32 (mac, bin + payload_size) != 0)
        return SHF_EAUTH;

    json_t *array;
    if (shf_mpack_decode (bin, payload_size, &array, NULL, 0))
        return SHF_EINVAL;
    shf_token_t t;
    memset (&t, 0, sizeof t);
    uint64_t shard, epoch, attempt;
    bool ok = json_is_array (array) && json_array_size (array) == 7
              && s_uint (json_array_get (array, 0), UINT32_MAX, &shard)
              && s_uint (json_array_get (array, 1), INT64_MAX, &epoch)
              && s_copy (json_array_get (array, 2), t.ns, sizeof t.ns)
              && s_copy (json_array_get (array, 3), t.wf_id, sizeof t.wf_id)
              && s_copy (json_array_get (array, 4), t.run_id, sizeof t.run_id)
              && s_copy (json_array_get (array, 5), t.step, sizeof t.step)
              && s_uint (json_array_get (array, 6), UINT32_MAX, &attempt);
    json_decref (array);
    if (!ok)
        return SHF_EINVAL;
    t.shard = (uint32_t) shard;
    t.epoch = epoch;
    t.attempt = (uint32_t) attempt;
    *token = t;
    return SHF_OK;
}


//  --------------------------------------------------------------------
//  Self-test

static bool
s_token_eq (const shf_token_t *a, const shf_token_t *b)
{
    return a->shard == b->shard && a->epoch == b->epoch
           && strcmp (a->ns, b->ns) == 0 && strcmp (a->wf_id, b->wf_id) == 0
           && strcmp (a->run_id, b->run_id) == 0
           && strcmp (a->step, b->step) == 0 && a->attempt == b->attempt;
}

//  Seals an arbitrary payload with key, as a forger holding the key could.
static void
s_seal_raw (const uint8_t *payload, size_t size, const uint8_t *key, char *text,
            size_t text_size)
{
    uint8_t bin [S_MAX_BIN];
    assert (size + crypto_auth_BYTES <= sizeof bin);
    memcpy (bin, payload, size);
    crypto_auth (bin + size, bin, size, key);
    sodium_bin2base64 (text, text_size, bin, size + crypto_auth_BYTES,
                       sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

void
shf_token_test (bool verbose)
{
    printf (" * shf_token: ");
    if (verbose)
        printf ("\n");
    uint8_t key [SHF_TOKEN_KEY_BYTES];
    uint8_t other [SHF_TOKEN_KEY_BYTES];
    for (int i = 0; i < SHF_TOKEN_KEY_BYTES; i++) {
        key [i] = (uint8_t) i;
        other [i] = (uint8_t) (i + 1);
    }
    shf_token_t token = {.shard = 7,
                         .epoch = 3,
                         .ns = "default",
                         .wf_id = "order-42",
                         .run_id = "0190b6b2-5f3a-7c1e-9d2b-1a2b3c4d5e6f",
                         .step = "charge",
                         .attempt = 2};
    char text [SHF_TOKEN_MAX_TEXT + 1];
    assert (shf_token_seal (&token, key, text, sizeof text) == SHF_OK);
    if (verbose)
        printf ("  token: %s\n", text);
    for (const char *c = text; *c; c++)
        assert (strchr ("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                        "0123456789-_",
                        *c));
    shf_token_t back;
    assert (shf_token_open (text, key, &back) == SHF_OK);
    assert (s_token_eq (&back, &token));

    //  Wrong key
    assert (shf_token_open (text, other, &back) == SHF_EAUTH);

    //  Tampering: any flipped bit of the sealed bytes fails the MAC; any
    //  changed character of the text fails the MAC or the base64.
    uint8_t bin [S_MAX_BIN];
    size_t bin_size;
    assert (sodium_base642bin (bin, sizeof bin, text, strlen (text), NULL,
                               &bin_size, NULL,
                               sodium_base64_VARIANT_URLSAFE_NO_PADDING)
            == 0);
    for (size_t i = 0; i < bin_size; i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            char forged [SHF_TOKEN_MAX_TEXT + 1];
            bin [i] ^= (uint8_t) (1 << bit);
            sodium_bin2base64 (forged, sizeof forged, bin, bin_size,
                               sodium_base64_VARIANT_URLSAFE_NO_PADDING);
            bin [i] ^= (uint8_t) (1 << bit);
            assert (shf_token_open (forged, key, &back) == SHF_EAUTH);
        }
    }
    size_t text_len = strlen (text);
    for (size_t i = 0; i < text_len; i++) {
        char saved = text [i];
        text [i] = saved == 'A' ? 'B' : 'A';
        assert (shf_token_open (text, key, &back) != SHF_OK);
        text [i] = '*';
        assert (shf_token_open (text, key, &back) == SHF_EINVAL);
        text [i] = saved;
    }
    text [text_len - 1] = 0;  //  truncated
    assert (shf_token_open (text, key, &back) != SHF_OK);
    assert (shf_token_open ("", key, &back) == SHF_EINVAL);
    assert (shf_token_open ("AAAA", key, &back) == SHF_EINVAL);
    assert (shf_token_open ("AAAA====", key, &back) == SHF_EINVAL);
    char huge [SHF_TOKEN_MAX_TEXT + 10];
    memset (huge, 'A', sizeof huge - 1);
    huge [sizeof huge - 1] = 0;
    assert (shf_token_open (huge, key, &back) == SHF_EINVAL);

    //  Correctly sealed but malformed payloads are still refused.
    const uint8_t wrong_len [] = {0x92, 0x01, 0x02};
    const uint8_t wrong_type [] = {0x97, 0xa1, 'x', 0x00, 0xa1, 'n', 0xa1,
                                   'w',  0xa1, 'r', 0xa1, 's',  0x01};
    const uint8_t neg_attempt [] = {0x97, 0x01, 0x00, 0xa1, 'n', 0xa1,
                                    'w',  0xa1, 'r',  0xa1, 's', 0xff};
    const uint8_t big_shard [] = {0x97, 0xcf, 0,   0,    0,    1,   0,
                                  0,    0,    0,   0x00, 0xa1, 'n', 0xa1,
                                  'w',  0xa1, 'r', 0xa1, 's',  0x01};
    const uint8_t trailing [] = {0x97, 0x01, 0x00, 0xa1, 'n',  0xa1, 'w',
                                 0xa1, 'r',  0xa1, 's',  0x01, 0x00};
    const uint8_t lie [] = {0xdd, 0xff, 0xff, 0xff, 0xff};
    const uint8_t good [] = {0x97, 0x01, 0x00, 0xa1, 'n', 0xa1,
                             'w',  0xa1, 'r',  0xa1, 's', 0x01};
    struct {
        const uint8_t *data;
        size_t size;
    } cases [] = {
        {wrong_len, sizeof wrong_len},     {wrong_type, sizeof wrong_type},
        {neg_attempt, sizeof neg_attempt}, {big_shard, sizeof big_shard},
        {trailing, sizeof trailing},       {lie, sizeof lie}};
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        s_seal_raw (cases [i].data, cases [i].size, key, text, sizeof text);
        assert (shf_token_open (text, key, &back) == SHF_EINVAL);
    }
    s_seal_raw (good, sizeof good, key, text, sizeof text);
    assert (shf_token_open (text, key, &back) == SHF_OK);
    assert (back.shard == 1 && back.attempt == 1
            && strcmp (back.run_id, "r") == 0);
    //  A string one byte longer than its struct buffer.
    uint8_t long_run [80] = {0x97, 0x01, 0x00, 0xa1, 'n', 0xa1, 'w', 0xd9, 64};
    memset (long_run + 9, 'r', 64);
    memcpy (long_run + 73, "\xa1s\x01", 3);
    s_seal_raw (long_run, 76, key, text, sizeof text);
    assert (shf_token_open (text, key, &back) == SHF_EINVAL);
    long_run [8] = 63;  //  63 bytes fit in run_id [64]
    memmove (long_run + 72, long_run + 73, 3);
    s_seal_raw (long_run, 75, key, text, sizeof text);
    assert (shf_token_open (text, key, &back) == SHF_OK);
    assert (strlen (back.run_id) == 63);

    //  Sealing: limits of the buffers and the struct.
    shf_token_t full = token;
    memset (full.ns, 'n', sizeof full.ns - 1);
    memset (full.wf_id, 'w', sizeof full.wf_id - 1);
    memset (full.run_id, 'r', sizeof full.run_id - 1);
    memset (full.step, 's', sizeof full.step - 1);
    full.shard = UINT32_MAX;
    full.epoch = INT64_MAX;
    full.attempt = UINT32_MAX;
    assert (shf_token_seal (&full, key, text, sizeof text) == SHF_OK);
    assert (strlen (text) <= SHF_TOKEN_MAX_TEXT);
    assert (shf_token_open (text, key, &back) == SHF_OK);
    assert (s_token_eq (&back, &full));
    char small [16];
    assert (shf_token_seal (&token, key, small, sizeof small) == SHF_ETOOLARGE);
    shf_token_t bad = token;
    bad.epoch = (uint64_t) INT64_MAX + 1;
    assert (shf_token_seal (&bad, key, text, sizeof text) == SHF_EINVAL);
    bad = token;
    memset (bad.step, 's', sizeof bad.step);  //  not NUL-terminated
    assert (shf_token_seal (&bad, key, text, sizeof text) == SHF_EINVAL);
    bad = token;
    strcpy (bad.ns, "\xff");  //  not UTF-8
    assert (shf_token_seal (&bad, key, text, sizeof text) == SHF_EINVAL);

    printf ("OK\n");
}
