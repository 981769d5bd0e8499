/*  shf_envelope.c - the few top-level fields a router needs to send a
    wire frame on, read without building the message.

    One pass over the msgpack bytes with an explicit stack of counts (no
    recursion on input, no allocation): every value is skipped by its
    structure, and only the values of the top-level keys op, id, ns, wf_id,
    token and request_id are looked at. The walk refuses everything
    shf_mpack_decode refuses for its shape (truncation, lying lengths,
    non-string keys at any depth, nesting past SHF_MPACK_MAX_DEPTH, the
    reserved byte 0xc1, trailing bytes) but not what it refuses for content
    (UTF-8, NaN, bin and ext, duplicates of other keys, uint64 above
    INT64_MAX): the shard's full decode does that. The invariant the fuzz
    target checks is one-way: whatever shf_msg_decode accepts, this accepts
    too and reads the same op, id and strings, so a router never routes a
    valid message by other fields than the shard will see.

    Called by the router for every request frame.
*/
#include "shf_envelope.h"
#include "shf_mpack.h"
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum {
    S_OTHER,  //  nil, bool, negative int, float, bin, ext: skipped
    S_STR,
    S_UINT,  //  any integer >= 0, whatever its encoding
    S_ARRAY,
    S_MAP
} s_type_t;

//  One value's header. Scalars and strings are consumed whole; a
//  container's elements follow at the cursor.
typedef struct {
    s_type_t type;
    uint64_t n;       //  S_STR length, S_UINT value, S_ARRAY/S_MAP count
    const char *str;  //  S_STR: the bytes, inside the frame
} s_item_t;

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} s_cursor_t;

//  The fields, in the order of the bits of the seen mask.
typedef enum {
    S_FIELD_OP,
    S_FIELD_ID,
    S_FIELD_NS,
    S_FIELD_WF_ID,
    S_FIELD_TOKEN,
    S_FIELD_REQUEST_ID,
    S_FIELD_COUNT
} s_field_t;

static const char *s_field_names [S_FIELD_COUNT] = {
    "op", "id", "ns", "wf_id", "token", "request_id"};

static size_t
s_left (const s_cursor_t *c)
{
    return (size_t) (c->end - c->p);
}

//  Reads a big-endian unsigned integer of n bytes (1, 2, 4 or 8).
static bool
s_read_be (s_cursor_t *c, size_t n, uint64_t *value_p)
{
    return shf_mpack_read_be (&c->p, c->end, n, value_p);
}

//  Skips n bytes of body (a string, bin or ext payload) if they are there.
static bool
s_skip (s_cursor_t *c, uint64_t n)
{
    if (n > s_left (c))
        return false;
    c->p += n;
    return true;
}

//  Reads one value's header; false when it is malformed or truncated, or
//  declares more than the bytes left could hold.
static bool
s_read_item (s_cursor_t *c, s_item_t *item)
{
    item->type = S_OTHER;
    item->n = 0;
    item->str = NULL;
    if (s_left (c) < 1)
        return false;
    uint8_t b = *c->p++;
    uint64_t u;

    if (b <= 0x7f) {
        item->type = S_UINT;
        item->n = b;
        return true;
    }
    if (b >= 0xe0)  //  negative fixint
        return true;
    if (b <= 0x8f || (b >= 0x90 && b <= 0x9f) || (b >= 0xdc && b <= 0xdf)) {
        bool is_map = b <= 0x8f || b == 0xde || b == 0xdf;
        if (b <= 0x9f)
            u = b & 0x0f;
        else if (!s_read_be (c, b == 0xdc || b == 0xde ? 2 : 4, &u))
            return false;
        //  An element takes at least one byte and an entry two: a count
        //  the bytes left cannot hold is a lie, refused before the walk
        //  would spend a loop turn on each claimed element.
        if (is_map ? u > s_left (c) / 2 : u > s_left (c))
            return false;
        item->type = is_map ? S_MAP : S_ARRAY;
        item->n = u;
        return true;
    }
    if ((b >= 0xa0 && b <= 0xbf) || (b >= 0xd9 && b <= 0xdb)) {
        if (b <= 0xbf)
            u = b & 0x1f;
        else if (!s_read_be (c, (size_t) 1 << (b - 0xd9), &u))
            return false;
        item->str = (const char *) c->p;
        if (!s_skip (c, u))
            return false;
        item->type = S_STR;
        item->n = u;
        return true;
    }
    switch (b) {
        case 0xc0:  //  nil
        case 0xc2:  //  false
        case 0xc3:  //  true
            return true;
        case 0xcc:
        case 0xcd:
        case 0xce:
        case 0xcf:
            if (!s_read_be (c, (size_t) 1 << (b - 0xcc), &u))
                return false;
            item->type = S_UINT;
            item->n = u;
            return true;
        case 0xd0:
        case 0xd1:
        case 0xd2:
        case 0xd3: {
            //  The decoder takes int8..int64 for any value, so an id of 5
            //  sent as int8 is an id of 5 here too.
            size_t n = (size_t) 1 << (b - 0xd0);
            if (!s_read_be (c, n, &u))
                return false;
            if ((u >> (n * 8 - 1)) == 0) {
                item->type = S_UINT;
                item->n = u;
            }
            return true;
        }
        case 0xca:
            return s_skip (c, 4);
        case 0xcb:
            return s_skip (c, 8);
        case 0xc4:  //  bin 8, 16, 32: length, bytes
        case 0xc5:
        case 0xc6:
            return s_read_be (c, (size_t) 1 << (b - 0xc4), &u) && s_skip (c, u);
        case 0xc7:  //  ext 8, 16, 32: length, type, bytes
        case 0xc8:
        case 0xc9:
            return s_read_be (c, (size_t) 1 << (b - 0xc7), &u) && s_skip (c, 1)
                   && s_skip (c, u);
        case 0xd4:  //  fixext 1, 2, 4, 8, 16: type, bytes
        case 0xd5:
        case 0xd6:
        case 0xd7:
        case 0xd8:
            return s_skip (c, 1 + ((size_t) 1 << (b - 0xd4)));
        default:  //  0xc1: never used
            return false;
    }
}

static int
s_field_of (const s_item_t *key)
{
    for (int f = 0; f < S_FIELD_COUNT; f++)
        if (strlen (s_field_names [f]) == key->n
            && memcmp (s_field_names [f], key->str, key->n) == 0)
            return f;
    return -1;
}

static void
s_take (shf_envelope_t *env, int field, const s_item_t *value)
{
    shf_envelope_str_t str = {NULL, 0};
    if (value->type == S_STR)
        str = (shf_envelope_str_t){value->str, (size_t) value->n};
    switch (field) {
        case S_FIELD_OP:
            if (value->type == S_STR)
                env->op = shf_msg_op_lookup (str.ptr, str.len);
            break;
        case S_FIELD_ID:
            if (value->type == S_UINT)
                env->id = value->n;
            break;
        case S_FIELD_NS:
            env->ns = str;
            break;
        case S_FIELD_WF_ID:
            env->wf_id = str;
            break;
        case S_FIELD_TOKEN:
            env->token = str;
            break;
        case S_FIELD_REQUEST_ID:
            env->request_id = str;
            break;
    }
}

shf_err_t
shf_envelope_read (const void *data, size_t size, shf_envelope_t *env)
{
    assert (env);
    assert (data || size == 0);
    *env = (shf_envelope_t){.op = SHF_OP_INVALID};
    if (size == 0 || size > SHF_MSG_MAX_FRAME)
        return SHF_EINVAL;
    s_cursor_t cursor = {data, (const uint8_t *) data + size};
    s_item_t item;
    if (!s_read_item (&cursor, &item) || item.type != S_MAP)
        return SHF_EINVAL;

    //  Items still to read in each open container, a map's keys counted
    //  with its values: a map is at a key when its count is even. The
    //  depth counts open containers as shf_mpack_decode does, so the same
    //  frames are too deep for both.
    uint64_t left [SHF_MPACK_MAX_DEPTH];
    bool is_map [SHF_MPACK_MAX_DEPTH];
    size_t depth = 0;
    left [depth] = item.n * 2;
    is_map [depth++] = true;
    unsigned seen = 0;
    int field = -1;  //  the top-level field whose value comes next
    //  Each turn consumes at least one byte: at most size turns.
    while (depth > 0 && left [depth - 1] > 0) {
        bool at_key = is_map [depth - 1] && left [depth - 1] % 2 == 0;
        if (!s_read_item (&cursor, &item))
            goto fail;
        left [depth - 1]--;
        if (at_key) {
            if (item.type != S_STR)
                goto fail;
            if (depth == 1) {
                field = s_field_of (&item);
                if (field >= 0) {
                    //  Two values for a routing field: the router and the
                    //  shard could each believe a different one.
                    if (seen & (1u << field))
                        goto fail;
                    seen |= 1u << field;
                }
            }
            continue;
        }
        if (depth == 1 && field >= 0) {
            s_take (env, field, &item);
            field = -1;
        }
        if (item.type == S_ARRAY || item.type == S_MAP) {
            if (depth == SHF_MPACK_MAX_DEPTH)
                goto fail;
            if (item.n > 0) {
                left [depth] = item.type == S_MAP ? item.n * 2 : item.n;
                is_map [depth++] = item.type == S_MAP;
                continue;
            }
        }
        while (depth > 0 && left [depth - 1] == 0)
            depth--;
    }
    if (cursor.p != cursor.end)
        goto fail;
    return SHF_OK;
fail:
    *env = (shf_envelope_t){.op = SHF_OP_INVALID};
    return SHF_EINVAL;
}

//  The envelope's string agrees with the decoded message's field.
static bool
s_str_agrees (shf_envelope_str_t str, const json_t *msg, const char *field)
{
    const json_t *value = json_object_get (msg, field);
    if (!json_is_string (value))
        return str.ptr == NULL && str.len == 0;
    return str.ptr && str.len == json_string_length (value)
           && memcmp (str.ptr, json_string_value (value), str.len) == 0;
}

bool
shf_envelope_agrees (const shf_envelope_t *env, const json_t *msg, shf_op_t op,
                     uint64_t id)
{
    return env->op == op && env->id == id && s_str_agrees (env->ns, msg, "ns")
           && s_str_agrees (env->wf_id, msg, "wf_id")
           && s_str_agrees (env->token, msg, "token")
           && s_str_agrees (env->request_id, msg, "request_id");
}

//  --------------------------------------------------------------------
//  Self-test

//  Encodes msg (stolen) as a client would; the frame is the caller's.
static char *
s_encode (json_t *msg, size_t *size_p)
{
    assert (msg);
    char *data;
    shf_err_t rc = shf_msg_encode (msg, &data, size_p);
    assert (rc == SHF_OK);
    json_decref (msg);
    return data;
}

static bool
s_str_is (shf_envelope_str_t str, const char *want)
{
    if (!want)
        return str.ptr == NULL && str.len == 0;
    return str.ptr && str.len == strlen (want)
           && memcmp (str.ptr, want, str.len) == 0;
}


//  Reads the envelope and decodes the full message; whenever the decode
//  succeeds the envelope must too, and agree with it. Returns the
//  envelope's status; counts the decoded messages in *decoded_p.
static shf_err_t
s_agree_count (const void *data, size_t size, shf_envelope_t *env,
               size_t *decoded_p)
{
    shf_err_t rc = shf_envelope_read (data, size, env);
    json_t *msg = NULL;
    shf_op_t op;
    uint64_t id;
    char err [256];
    if (shf_msg_decode (data, size, &msg, &op, &id, err, sizeof err)
        == SHF_OK) {
        assert (rc == SHF_OK);
        assert (shf_envelope_agrees (env, msg, op, id));
        json_decref (msg);
        if (decoded_p)
            (*decoded_p)++;
    }
    return rc;
}

static shf_err_t
s_agree (const void *data, size_t size, shf_envelope_t *env)
{
    return s_agree_count (data, size, env, NULL);
}

//  Every proper prefix of a frame is refused, and so is one more byte.
static void
s_expect_exact (const char *data, size_t size)
{
    shf_envelope_t env;
    for (size_t len = 0; len < size; len++)
        assert (s_agree (data, len, &env) == SHF_EINVAL);
    char *longer = malloc (size + 1);
    assert (longer);
    memcpy (longer, data, size);
    longer [size] = (char) 0xc0;
    assert (s_agree (longer, size + 1, &env) == SHF_EINVAL);
    free (longer);
}

//  Bytes whose envelope (and full decode) must fail.
static void
s_expect_reject (const char *what, const uint8_t *data, size_t size,
                 bool verbose)
{
    shf_envelope_t env;
    assert (s_agree (data, size, &env) == SHF_EINVAL);
    assert (env.op == SHF_OP_INVALID && env.id == 0 && !env.ns.ptr);
    json_t *msg = NULL;
    shf_op_t op;
    uint64_t id;
    char err [256];
    shf_err_t rc = shf_msg_decode (data, size, &msg, &op, &id, err, sizeof err);
    assert (rc != SHF_OK);
    if (verbose)
        printf ("  %-22s refused (decode: %s)\n", what, err);
}

//  {"a": [[...]]}: the top map and arrays arrays inside it, the
//  innermost holding nil or nothing. Returns the size.
static size_t
s_nested (uint8_t *buf, size_t arrays, bool empty_inner)
{
    buf [0] = 0x81;
    buf [1] = 0xa1;
    buf [2] = 'a';
    memset (buf + 3, 0x91, arrays);
    if (empty_inner) {
        buf [3 + arrays - 1] = 0x90;
        return 3 + arrays;
    }
    buf [3 + arrays] = 0xc0;
    return 3 + arrays + 1;
}

void
shf_envelope_test (bool verbose)
{
    printf (" * shf_envelope: ");
    if (verbose)
        printf ("\n");
    shf_envelope_t env;

    //  A wf_start: the routing fields come out, the payload's own "ns"
    //  and "wf_id" two levels down do not.
    size_t size;
    char *data = s_encode (
        json_pack ("{s:s, s:i, s:s, s:s, s:s, s:s, s:{s:[i, {s:s, s:[]}], "
                   "s:s, s:{}}}",
                   "op", "wf_start", "id", 42, "ns", "default", "name", "order",
                   "wf_id", "order-1", "request_id", "req-9", "input", "items",
                   1, "ns", "nested", "wf_id", "ns", "inner", "e"),
        &size);
    assert (s_agree (data, size, &env) == SHF_OK);
    assert (env.op == SHF_OP_WF_START);
    assert (env.id == 42);
    assert (s_str_is (env.ns, "default"));
    assert (s_str_is (env.wf_id, "order-1"));
    assert (s_str_is (env.request_id, "req-9"));
    assert (s_str_is (env.token, NULL));
    //  Strings point into the frame: nothing was copied.
    assert (env.ns.ptr > data && env.ns.ptr < data + size);
    s_expect_exact (data, size);
    free (data);

    //  A complete: routed by its token, with an output of any shape.
    data = s_encode (json_pack ("{s:s, s:I, s:s, s:{s:[n, b, f, {}, []]}}",
                                "op", "complete", "id", (json_int_t) 5000000000,
                                "token", "tok.en", "output", "result", 0, 2.5),
                     &size);
    assert (s_agree (data, size, &env) == SHF_OK);
    assert (env.op == SHF_OP_COMPLETE);
    assert (env.id == 5000000000u);
    assert (s_str_is (env.token, "tok.en"));
    assert (s_str_is (env.ns, NULL) && s_str_is (env.wf_id, NULL));
    assert (s_str_is (env.request_id, NULL));
    s_expect_exact (data, size);
    free (data);

    //  Absent fields: nothing but the op (and the "v" encode adds).
    data = s_encode (json_pack ("{s:s}", "op", "def_list"), &size);
    assert (s_agree (data, size, &env) == SHF_OK);
    assert (env.op == SHF_OP_DEF_LIST && env.id == 0);
    assert (!env.ns.ptr && !env.wf_id.ptr && !env.token.ptr
            && !env.request_id.ptr);
    free (data);
    const uint8_t empty [] = {0x80};
    assert (s_agree (empty, sizeof empty, &env) == SHF_OK);
    assert (env.op == SHF_OP_INVALID && env.id == 0 && !env.ns.ptr);

    //  Wrong types are left absent (the full decode names them) and a
    //  nil counts as absent, as it does for the decoder.
    data = s_encode (json_pack ("{s:i, s:s, s:i, s:[s], s:n, s:{s:s}}", "op", 3,
                                "id", "7", "ns", 1, "wf_id", "w", "token",
                                "request_id", "ns", "x"),
                     &size);
    assert (s_agree (data, size, &env) == SHF_OK);
    assert (env.op == SHF_OP_INVALID && env.id == 0);
    assert (!env.ns.ptr && !env.wf_id.ptr && !env.token.ptr
            && !env.request_id.ptr);
    free (data);
    data = s_encode (json_pack ("{s:s, s:i, s:s, s:s}", "op", "frobnicate",
                                "id", -1, "ns", "", "wf_id", "w"),
                     &size);
    assert (s_agree (data, size, &env) == SHF_OK);
    assert (env.op == SHF_OP_INVALID && env.id == 0);
    assert (s_str_is (env.ns, "") && s_str_is (env.wf_id, "w"));
    free (data);
    //  An op with a NUL inside is no op, here and in the decoder (a poll
    //  otherwise valid).
    const uint8_t op_nul [] = {0x84, 0xa1, 'v', 0x01, 0xa2, 'o', 'p',  0xa6,
                               'p',  'o',  'l', 'l',  0,    'x', 0xa5, 'q',
                               'u',  'e',  'u', 'e',  0xa1, 'q', 0xa6, 'c',
                               'r',  'e',  'd', 'i',  't',  0x01};
    assert (s_agree (op_nul, sizeof op_nul, &env) == SHF_OK);
    assert (env.op == SHF_OP_INVALID);
    json_t *back = NULL;
    shf_op_t op;
    uint64_t id;
    assert (shf_msg_decode (op_nul, sizeof op_nul, &back, &op, &id, NULL, 0)
            == SHF_EINVAL);
    data = s_encode (
        json_pack ("{s:s, s:s, s:i}", "op", "poll", "queue", "q", "credit", 1),
        &size);
    assert (s_agree (data, size, &env) == SHF_OK);
    assert (env.op == SHF_OP_POLL);
    free (data);
    assert (shf_msg_op_lookup ("poll", 4) == SHF_OP_POLL);
    assert (shf_msg_op_lookup ("poll\0x", 6) == SHF_OP_INVALID);
    assert (shf_msg_op_lookup ("pol", 3) == SHF_OP_INVALID);
    //  An id is any non-negative integer, whatever its encoding: int8 5
    //  is 5 for the decoder too; uint64 above INT64_MAX only the full
    //  decode refuses.
    const uint8_t ids [] = {0x82, 0xa2, 'i', 'd',  0xd0, 0x05,
                            0xa2, 'n',  's', 0xd9, 0x01, 'n'};
    assert (s_agree (ids, sizeof ids, &env) == SHF_OK);
    assert (env.id == 5 && s_str_is (env.ns, "n"));
    const uint8_t id_max [] = {0x81, 0xa2, 'i',  'd',  0xcf, 0xff, 0xff,
                               0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    assert (s_agree (id_max, sizeof id_max, &env) == SHF_OK);
    assert (env.id == UINT64_MAX);
    const uint8_t id_neg [] = {0x81, 0xa2, 'i',  'd',  0xd3, 0xff, 0xff,
                               0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    assert (s_agree (id_neg, sizeof id_neg, &env) == SHF_OK);
    assert (env.id == 0);

    //  Values the full decode refuses for content are skipped by shape:
    //  bin, ext, fixext, float32, NaN, a duplicate of another key.
    const uint8_t skipped [] = {
        0x86, 0xa1, 'b',  0xc4, 0x02, 0x00, 0x01,              //  bin8
        0xa1, 'e',  0xc7, 0x01, 0x05, 0xaa,                    //  ext8
        0xa1, 'f',  0xd5, 0x05, 0x01, 0x02,                    //  fixext2
        0xa1, 'g',  0xca, 0x7f, 0xc0, 0x00, 0x00,              //  NaN
        0xa1, 'b',  0xcb, 0,    0,    0,    0,    0, 0, 0, 0,  //  again
        0xa2, 'n',  's',  0xa1, 'x'};
    assert (s_agree (skipped, sizeof skipped, &env) == SHF_OK);
    assert (s_str_is (env.ns, "x"));
    s_expect_exact ((const char *) skipped, sizeof skipped);

    //  Lying lengths fail at once, before the walk spends a turn on them.
    const uint8_t map32_lie [] = {0xdf, 0xff, 0xff, 0xff, 0xff,
                                  0xa1, 'a',  0xc0, 0xa1, 'b'};
    s_expect_reject ("map32 of 4G entries", map32_lie, sizeof map32_lie,
                     verbose);
    const uint8_t array32_lie [] = {0x81, 0xa1, 'a',  0xdd, 0xff,
                                    0xff, 0xff, 0xff, 0xc0, 0xc0};
    s_expect_reject ("array32 of 4G elements", array32_lie, sizeof array32_lie,
                     verbose);
    const uint8_t str32_lie [] = {0x81, 0xa2, 'n',  's',  0xdb,
                                  0xff, 0xff, 0xff, 0xff, 'x'};
    s_expect_reject ("str32 of 4 GiB", str32_lie, sizeof str32_lie, verbose);
    const uint8_t key32_lie [] = {0x81, 0xdb, 0x7f, 0xff, 0xff, 0xff, 'k'};
    s_expect_reject ("str32 key of 2 GiB", key32_lie, sizeof key32_lie,
                     verbose);
    const uint8_t bin32_lie [] = {0x81, 0xa1, 'b',  0xc6, 0xff,
                                  0xff, 0xff, 0xff, 0x00};
    s_expect_reject ("bin32 of 4 GiB", bin32_lie, sizeof bin32_lie, verbose);
    const uint8_t ext32_lie [] = {0x81, 0xa1, 'e',  0xc9, 0xff,
                                  0xff, 0xff, 0xff, 0x01, 0x00};
    s_expect_reject ("ext32 of 4 GiB", ext32_lie, sizeof ext32_lie, verbose);
    //  A map of two entries in three bytes: one byte short, not a loop.
    const uint8_t map_short [] = {0x81, 0xa1, 'a', 0x82, 0xa1, 'b', 0xc0};
    s_expect_reject ("map short of bytes", map_short, sizeof map_short,
                     verbose);

    //  Nesting: the top map and 63 arrays inside it are 64 levels, as
    //  deep as shf_mpack_decode goes; one more is refused by both.
    uint8_t deep [3 + SHF_MPACK_MAX_DEPTH + 1];
    for (int empty_inner = 0; empty_inner < 2; empty_inner++) {
        for (size_t levels = SHF_MPACK_MAX_DEPTH;
             levels <= SHF_MPACK_MAX_DEPTH + 1; levels++) {
            size_t deep_size = s_nested (deep, levels - 1, empty_inner);
            json_t *value = NULL;
            shf_err_t rc = shf_mpack_decode (deep, deep_size, &value, NULL, 0);
            json_decref (value);
            if (levels <= SHF_MPACK_MAX_DEPTH) {
                assert (rc == SHF_OK);
                assert (s_agree (deep, deep_size, &env) == SHF_OK);
            }
            else {
                assert (rc == SHF_EINVAL);
                s_expect_reject ("65 levels", deep, deep_size, verbose);
            }
        }
    }
    size_t huge_size = 100000;
    uint8_t *huge = malloc (huge_size);
    assert (huge);
    huge [0] = 0x81;
    huge [1] = 0xa1;
    huge [2] = 'a';
    memset (huge + 3, 0x91, huge_size - 4);
    huge [huge_size - 1] = 0xc0;
    s_expect_reject ("100k levels", huge, huge_size, verbose);
    free (huge);

    //  Shape: one map, string keys at every depth, nothing after it.
    const uint8_t trailing [] = {0x81, 0xa1, 'a', 0x01, 0xc0};
    s_expect_reject ("trailing byte", trailing, sizeof trailing, verbose);
    const uint8_t two_maps [] = {0x80, 0x80};
    s_expect_reject ("two maps", two_maps, sizeof two_maps, verbose);
    const uint8_t array [] = {0x91, 0x80};
    s_expect_reject ("array at top", array, sizeof array, verbose);
    const uint8_t str [] = {0xa2, 'o', 'p'};
    s_expect_reject ("string at top", str, sizeof str, verbose);
    const uint8_t nil [] = {0xc0};
    s_expect_reject ("nil at top", nil, sizeof nil, verbose);
    const uint8_t int_key [] = {0x82, 0xa2, 'o', 'p',  0xa4, 'p',
                                'o',  'l',  'l', 0x01, 0x02};
    s_expect_reject ("integer key", int_key, sizeof int_key, verbose);
    const uint8_t nested_key [] = {0x81, 0xa1, 'a', 0x81, 0xc0, 0xc0};
    s_expect_reject ("nil key, nested", nested_key, sizeof nested_key, verbose);
    const uint8_t reserved [] = {0x81, 0xa1, 'a', 0xc1};
    s_expect_reject ("reserved byte 0xc1", reserved, sizeof reserved, verbose);
    s_expect_reject ("empty frame", (const uint8_t *) "", 0, verbose);

    //  A routing field twice: the router and the shard could each pick
    //  a different one. (The decoder refuses any duplicate key.)
    const uint8_t dup_wf_id [] = {0x83, 0xa5, 'w', 'f', '_',  'i', 'd',  0xa1,
                                  'a',  0xa2, 'n', 's', 0xa1, 'n', 0xa5, 'w',
                                  'f',  '_',  'i', 'd', 0xa1, 'b'};
    s_expect_reject ("duplicate wf_id", dup_wf_id, sizeof dup_wf_id, verbose);
    const uint8_t dup_id [] = {0x82, 0xa2, 'i', 'd', 0x01,
                               0xa2, 'i',  'd', 0xc0};
    s_expect_reject ("duplicate id (nil)", dup_id, sizeof dup_id, verbose);
    const uint8_t dup_nested [] = {0x82, 0xa1, 'a',  0x81, 0xa2, 'n', 's', 0x01,
                                   0xa1, 'b',  0x81, 0xa2, 'n',  's', 0x02};
    assert (s_agree (dup_nested, sizeof dup_nested, &env) == SHF_OK);

    //  Size: a frame of exactly SHF_MSG_MAX_FRAME bytes is read, one byte
    //  more is refused unread.
    uint8_t *big = malloc (SHF_MSG_MAX_FRAME + 1);
    assert (big);
    for (size_t big_size = SHF_MSG_MAX_FRAME; big_size <= SHF_MSG_MAX_FRAME + 1;
         big_size++) {
        size_t len = big_size - 8;  //  fixmap, fixstr key "x", str32 header
        memcpy (big, "\x81\xa1x\xdb", 4);
        big [4] = (uint8_t) (len >> 24);
        big [5] = (uint8_t) (len >> 16);
        big [6] = (uint8_t) (len >> 8);
        big [7] = (uint8_t) len;
        memset (big + 8, 'a', len);
        assert (shf_envelope_read (big, big_size, &env)
                == (big_size <= SHF_MSG_MAX_FRAME ? SHF_OK : SHF_EINVAL));
    }
    free (big);

    //  The property, over mutations of valid frames: whatever the full
    //  decode accepts, the envelope accepts and reads alike.
    const char *ops [] = {"wf_start", "wf_signal", "complete", "task",
                          "def_show"};
    uint64_t seed = 0x5eed5eed5eedULL;
    size_t accepted = 0;
    size_t decoded = 0;
    for (size_t o = 0; o < sizeof ops / sizeof ops [0]; o++) {
        data = s_encode (
            json_pack ("{s:s, s:i, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, "
                       "s:s, s:i, s:[i, {s:s}], s:s}",
                       "op", ops [o], "id", 17, "ns", "n", "wf_id", "w", "name",
                       "x", "signal", "s", "token", "t", "run_id", "r", "step",
                       "p", "activity", "a", "queue", "q", "attempt", 1,
                       "input", 1, "k", "v", "request_id", "q1"),
            &size);
        assert (s_agree (data, size, &env) == SHF_OK);
        char *copy = malloc (size + 2);
        assert (copy);
        for (int round = 0; round < 4000; round++) {
            size_t copy_size =
                shf_mpack_mutate (data, size, (uint8_t *) copy, &seed);
            if (s_agree_count (copy, copy_size, &env, &decoded) == SHF_OK)
                accepted++;
        }
        free (copy);
        free (data);
    }
    if (verbose)
        printf ("  mutations: %zu of 20000 envelopes read, %zu decoded\n",
                accepted, decoded);
    //  The property was exercised, not vacuous.
    assert (decoded > 0);
    printf ("OK\n");
}
