/*  shf_token.c - sealed task tokens.

    Wire form: base64url without padding of (payload || tag), where payload
    is the msgpack array [shard, epoch, ns, wf_id, run_id, step, attempt]
    and tag = keyed BLAKE2b-256 (crypto_generichash) of the payload under
    the node secret, 32 bytes. Opening decodes the base64 into a fixed
    buffer, verifies the tag in constant time, and only then lets the
    msgpack decoder see the payload; every element is then type- and
    range-checked against the struct, so a token that passes is safe to
    copy from.

    Tokens sealed before 2026-11-23 carry an HMAC-SHA512-256 tag
    (crypto_auth) instead; a task stored then is redelivered with it after
    an upgrade, so opening accepts that tag too when the BLAKE2b one does
    not match. BLAKE2b was chosen because a token is sealed once and opened
    at least once per task: it is ~4x cheaper than the HMAC here (two
    SHA-512 blocks per tag even with the keyed start kept), and keyed
    BLAKE2b is a MAC in its own right (RFC 7693).

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

//  Tag sizes of both MACs are 32 bytes.
#define S_TAG_BYTES crypto_generichash_BYTES
_Static_assert(crypto_generichash_BYTES == crypto_auth_BYTES,
               "both tags are 32 bytes");
_Static_assert(SHF_TOKEN_KEY_BYTES <= crypto_generichash_KEYBYTES_MAX,
               "the node secret is a BLAKE2b key");

//  The keyed start of either MAC is the same for every token under one
//  key: each thread keeps both for the last key it used.
static _Thread_local struct {
    bool set;
    uint8_t key [SHF_TOKEN_KEY_BYTES];
    crypto_generichash_state blake;
    crypto_auth_hmacsha512256_state hmac;
} s_keyed;

static void
s_keyed_for (const uint8_t key [SHF_TOKEN_KEY_BYTES])
{
    if (!s_keyed.set || sodium_memcmp (s_keyed.key, key, sizeof s_keyed.key)) {
        crypto_generichash_init (&s_keyed.blake, key, SHF_TOKEN_KEY_BYTES,
                                 S_TAG_BYTES);
        crypto_auth_hmacsha512256_init (&s_keyed.hmac, key,
                                        SHF_TOKEN_KEY_BYTES);
        memcpy (s_keyed.key, key, sizeof s_keyed.key);
        s_keyed.set = true;
    }
}

static void
s_mac (const uint8_t *data, size_t size,
       const uint8_t key [SHF_TOKEN_KEY_BYTES], uint8_t mac [S_TAG_BYTES])
{
    s_keyed_for (key);
    crypto_generichash_state state = s_keyed.blake;
    crypto_generichash_update (&state, data, size);
    crypto_generichash_final (&state, mac, S_TAG_BYTES);
    sodium_memzero (&state, sizeof state);
}

//  The tag of tokens sealed before the switch to BLAKE2b.
static void
s_mac_legacy (const uint8_t *data, size_t size,
              const uint8_t key [SHF_TOKEN_KEY_BYTES],
              uint8_t mac [S_TAG_BYTES])
{
    s_keyed_for (key);
    crypto_auth_hmacsha512256_state state = s_keyed.hmac;
    crypto_auth_hmacsha512256_update (&state, data, size);
    crypto_auth_hmacsha512256_final (&state, mac);
    sodium_memzero (&state, sizeof state);
}

//  base64url without padding, by table. Token text is public (the MAC is
//  what protects it), so it needs no constant-time codec; libsodium's
//  costs ~10x more, and a token is coded twice per task.
static const char s_b64_chars [] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

//  Character -> 6-bit value, 0xFF for anything else.
static const uint8_t s_b64_values [256] = {
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    62,  255, 255, 52,  53,  54,  55,  56,  57,  58,  59,  60,  61,  255, 255,
    255, 255, 255, 255, 255, 0,   1,   2,   3,   4,   5,   6,   7,   8,   9,
    10,  11,  12,  13,  14,  15,  16,  17,  18,  19,  20,  21,  22,  23,  24,
    25,  255, 255, 255, 255, 63,  255, 26,  27,  28,  29,  30,  31,  32,  33,
    34,  35,  36,  37,  38,  39,  40,  41,  42,  43,  44,  45,  46,  47,  48,
    49,  50,  51,  255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255,
};

//  text must hold ((size + 2) / 3) * 4 + 1 bytes. Three bytes make four
//  characters per step; a tail of one or two bytes makes two or three.
static void
s_b64_encode (char *text, const uint8_t *bin, size_t size)
{
    size_t n = 0, i = 0;
    for (; i + 3 <= size; i += 3) {
        uint32_t v = (uint32_t) bin [i] << 16 | (uint32_t) bin [i + 1] << 8
                     | bin [i + 2];
        text [n++] = s_b64_chars [v >> 18];
        text [n++] = s_b64_chars [(v >> 12) & 63];
        text [n++] = s_b64_chars [(v >> 6) & 63];
        text [n++] = s_b64_chars [v & 63];
    }
    if (size - i == 1) {
        text [n++] = s_b64_chars [bin [i] >> 2];
        text [n++] = s_b64_chars [(bin [i] & 3) << 4];
    }
    else if (size - i == 2) {
        uint32_t v = (uint32_t) bin [i] << 8 | bin [i + 1];
        text [n++] = s_b64_chars [v >> 10];
        text [n++] = s_b64_chars [(v >> 4) & 63];
        text [n++] = s_b64_chars [(v << 2) & 63];
    }
    text [n] = 0;
}

//  Refuses what libsodium refuses: other characters, a length that leaves
//  6 bits, and unused low bits that are not zero (one text per token).
static bool
s_b64_decode (const char *text, size_t len, uint8_t *bin, size_t cap,
              size_t *size_p)
{
    if (len % 4 == 1 || len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0) > cap)
        return false;
    const unsigned char *t = (const unsigned char *) text;
    size_t n = 0, i = 0;
    for (; i + 4 <= len; i += 4) {
        uint8_t a = s_b64_values [t [i]], b = s_b64_values [t [i + 1]],
                c = s_b64_values [t [i + 2]], d = s_b64_values [t [i + 3]];
        if ((a | b | c | d) & 0xC0)  //  0xFF marks a foreign character
            return false;
        uint32_t v =
            (uint32_t) a << 18 | (uint32_t) b << 12 | (uint32_t) c << 6 | d;
        bin [n++] = (uint8_t) (v >> 16);
        bin [n++] = (uint8_t) (v >> 8);
        bin [n++] = (uint8_t) v;
    }
    size_t tail = len - i;  //  0, 2 or 3
    if (tail > 0) {
        uint32_t v = 0;
        for (size_t k = 0; k < tail; k++) {
            uint8_t c = s_b64_values [t [i + k]];
            if (c & 0xC0)
                return false;
            v = v << 6 | c;
        }
        if (tail == 2) {  //  12 bits: one byte and 4 unused bits
            if (v & 0xF)
                return false;
            bin [n++] = (uint8_t) (v >> 4);
        }
        else {  //  18 bits: two bytes and 2 unused bits
            if (v & 0x3)
                return false;
            bin [n++] = (uint8_t) (v >> 10);
            bin [n++] = (uint8_t) (v >> 2);
        }
    }
    *size_p = n;
    return true;
}

size_t
shf_token_hash (const void *text)
{
    size_t len = strlen (text);
    const uint8_t *p = (const uint8_t *) text + (len > 16 ? len - 16 : 0);
    uint64_t hash = 14695981039346656037ULL ^ len;
    for (; *p; p++)
        hash = (hash ^ *p) * 1099511628211ULL;
    return (size_t) hash;
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
    size_t bin_size = payload_size + S_TAG_BYTES;
    size_t b64_size = sodium_base64_ENCODED_LEN (
        bin_size, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    //  b64_size counts the NUL.
    if (bin_size > sizeof bin.data || b64_size > SHF_TOKEN_MAX_TEXT + 1
        || b64_size > text_size)
        return SHF_ETOOLARGE;
    s_mac (bin.data, payload_size, key, bin.data + payload_size);
    s_b64_encode (text, bin.data, bin_size);
    return SHF_OK;
}

//  The payload behind a verified MAC, read in place: the array of seven
//  that seal packs, every element type- and range-checked against the
//  struct (msgpack-c picks the smallest encoding, so any width is taken).
typedef struct {
    const uint8_t *p, *end;
} s_cursor_t;

static bool
s_be (s_cursor_t *c, size_t n, uint64_t *value)
{
    return shf_mpack_read_be (&c->p, c->end, n, value);
}

static bool
s_read_uint (s_cursor_t *c, uint64_t max, uint64_t *out)
{
    if (c->p >= c->end)
        return false;
    uint8_t b = *c->p++;
    uint64_t v;
    if (b <= 0x7f)
        v = b;
    else if (b >= 0xcc && b <= 0xcf) {
        if (!s_be (c, (size_t) 1 << (b - 0xcc), &v))
            return false;
    }
    else if (b >= 0xd0 && b <= 0xd3) {
        size_t n = (size_t) 1 << (b - 0xd0);
        if (!s_be (c, n, &v) || v >> (n * 8 - 1))
            return false;  //  negative
    }
    else
        return false;
    if (v > max)
        return false;
    *out = v;
    return true;
}

//  A string into a struct buffer: shorter than it, no NUL, valid UTF-8.
static bool
s_read_str (s_cursor_t *c, char *dest, size_t size)
{
    if (c->p >= c->end)
        return false;
    uint8_t b = *c->p++;
    uint64_t len;
    if (b >= 0xa0 && b <= 0xbf)
        len = b & 0x1f;
    else if (b >= 0xd9 && b <= 0xdb) {
        if (!s_be (c, (size_t) 1 << (b - 0xd9), &len))
            return false;
    }
    else
        return false;
    if (len >= size || len > (uint64_t) (c->end - c->p) || memchr (c->p, 0, len)
        || !shf_mpack_utf8_valid ((const char *) c->p, len))
        return false;
    memcpy (dest, c->p, len);
    dest [len] = 0;
    c->p += len;
    return true;
}

static bool
s_read_payload (const uint8_t *data, size_t size, shf_token_t *t)
{
    s_cursor_t c = {data, data + size};
    uint64_t shard = 0, epoch = 0, attempt = 0;
    bool ok = size > 0 && *c.p++ == 0x97  //  fixarray of 7
              && s_read_uint (&c, UINT32_MAX, &shard)
              && s_read_uint (&c, INT64_MAX, &epoch)
              && s_read_str (&c, t->ns, sizeof t->ns)
              && s_read_str (&c, t->wf_id, sizeof t->wf_id)
              && s_read_str (&c, t->run_id, sizeof t->run_id)
              && s_read_str (&c, t->step, sizeof t->step)
              && s_read_uint (&c, UINT32_MAX, &attempt) && c.p == c.end;
    t->shard = (uint32_t) shard;
    t->epoch = epoch;
    t->attempt = (uint32_t) attempt;
    return ok;
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
    if (!s_b64_decode (text, text_len, bin, sizeof bin, &bin_size))
        return SHF_EINVAL;
    if (bin_size <= S_TAG_BYTES)
        return SHF_EINVAL;
    size_t payload_size = bin_size - S_TAG_BYTES;
    //  The MAC first: nothing a forger wrote reaches the decoder.
    uint8_t mac [S_TAG_BYTES];
    s_mac (bin, payload_size, key, mac);
    if (crypto_verify_32 (mac, bin + payload_size) != 0) {
        s_mac_legacy (bin, payload_size, key, mac);
        if (crypto_verify_32 (mac, bin + payload_size) != 0)
            return SHF_EAUTH;
    }

    shf_token_t t;
    memset (&t, 0, sizeof t);
    if (!s_read_payload (bin, payload_size, &t))
        return SHF_EINVAL;
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

//  Seals an arbitrary payload with key, as a forger holding the key could:
//  with the current MAC, or with the HMAC of tokens sealed before it.
static void
s_seal_raw_with (const uint8_t *payload, size_t size, const uint8_t *key,
                 bool legacy, char *text, size_t text_size)
{
    uint8_t bin [S_MAX_BIN];
    assert (size + S_TAG_BYTES <= sizeof bin);
    memcpy (bin, payload, size);
    if (legacy)
        crypto_auth (bin + size, bin, size, key);
    else
        crypto_generichash (bin + size, S_TAG_BYTES, bin, size, key,
                            SHF_TOKEN_KEY_BYTES);
    sodium_bin2base64 (text, text_size, bin, size + S_TAG_BYTES,
                       sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

static void
s_seal_raw (const uint8_t *payload, size_t size, const uint8_t *key, char *text,
            size_t text_size)
{
    s_seal_raw_with (payload, size, key, false, text, text_size);
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

    //  What seal writes is the BLAKE2b tag; a token sealed with the HMAC
    //  of earlier versions (a task stored before an upgrade) opens too,
    //  and only under its key.
    {
        uint8_t raw [S_MAX_BIN];
        size_t raw_size;
        assert (sodium_base642bin (raw, sizeof raw, text, strlen (text), NULL,
                                   &raw_size, NULL,
                                   sodium_base64_VARIANT_URLSAFE_NO_PADDING)
                == 0);
        char again [SHF_TOKEN_MAX_TEXT + 1];
        s_seal_raw_with (raw, raw_size - S_TAG_BYTES, key, false, again,
                         sizeof again);
        assert (strcmp (again, text) == 0);
        char legacy [SHF_TOKEN_MAX_TEXT + 1];
        s_seal_raw_with (raw, raw_size - S_TAG_BYTES, key, true, legacy,
                         sizeof legacy);
        assert (strcmp (legacy, text) != 0);
        assert (shf_token_open (legacy, key, &back) == SHF_OK);
        assert (s_token_eq (&back, &token));
        assert (shf_token_open (legacy, other, &back) == SHF_EAUTH);
    }

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

    //  The table hash: same text, same hash; short text is fine; tokens
    //  of neighbouring attempts differ in their tails, so in their hashes.
    assert (shf_token_hash ("t1") == shf_token_hash ("t1"));
    assert (shf_token_hash ("") != shf_token_hash ("t1"));
    {
        shf_token_t one = {.shard = 1,
                           .ns = "default",
                           .wf_id = "w",
                           .run_id = "r",
                           .step = "s",
                           .attempt = 1};
        shf_token_t two = one;
        two.attempt = 2;
        char a1 [SHF_TOKEN_MAX_TEXT], a2 [SHF_TOKEN_MAX_TEXT];
        assert (shf_token_seal (&one, key, a1, sizeof a1) == SHF_OK);
        assert (shf_token_seal (&two, key, a2, sizeof a2) == SHF_OK);
        assert (shf_token_hash (a1) != shf_token_hash (a2));
    }

    //  The table codec agrees with libsodium's: the same text for any
    //  bytes, and the same answer (and bytes) for any text, canonical or
    //  not, from an alphabet with a few characters outside base64url.
    for (int round = 0; round < 20000; round++) {
        uint8_t raw [96];
        size_t n = randombytes_uniform (sizeof raw + 1);
        randombytes_buf (raw, n);
        char ours [160], theirs [160];
        s_b64_encode (ours, raw, n);
        sodium_bin2base64 (theirs, sizeof theirs, raw, n,
                           sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        assert (strcmp (ours, theirs) == 0);
        static const char alphabet [] = "AQgw_-09az+/=.";
        size_t len = randombytes_uniform (12);
        for (size_t i = 0; i < len; i++)
            ours [i] =
                round % 2 ? alphabet [randombytes_uniform (sizeof alphabet - 1)]
                          : s_b64_chars [randombytes_uniform (64)];
        ours [len] = 0;
        uint8_t a [96], b [96];
        size_t a_size = 0, b_size = 0;
        bool ok = s_b64_decode (ours, len, a, sizeof a, &a_size);
        bool sodium_ok =
            sodium_base642bin (b, sizeof b, ours, len, NULL, &b_size, NULL,
                               sodium_base64_VARIANT_URLSAFE_NO_PADDING)
            == 0;
        assert (ok == sodium_ok);
        assert (!ok || (a_size == b_size && memcmp (a, b, a_size) == 0));
    }

    printf ("OK\n");
}
