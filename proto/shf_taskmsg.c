/*  shf_taskmsg.c - a task message (server -> worker) and its completion
    (worker -> server) read in place.

    Two passes, no JSON tree. The first walks the whole frame once with an
    explicit stack (no recursion on input) and refuses exactly what
    shf_mpack_decode refuses: truncation and lying lengths, bin, ext and
    0xc1, uint64 above INT64_MAX, NaN and Inf, strings that are not strict
    UTF-8 (at every depth: input and heartbeat_details are handed on as
    bytes the caller decodes later, and that decode must not fail), keys
    that are not strings or hold a NUL, duplicate keys in any map, more
    than SHF_MPACK_MAX_DEPTH open containers, more than
    SHF_MPACK_MAX_VALUES values, trailing bytes. On the way it notes where
    each top-level value lies, its header, and the size shf_mpack_size
    would give it (the smallest encoding: a payload sent non-minimally, or
    with float32s, measures differently from its bytes). The second pass
    is shf_msg.c's s_validate over those notes, in its order: id, v, op,
    then the op's fields in table order, an optional nil being absent.

    Every refusal is SHF_EINVAL except a payload over SHF_MSG_MAX_PAYLOAD
    (SHF_ETOOLARGE), which the decoder reports only when the msgpack is
    valid and every field before the payload passes. A message of another
    op than the one asked for is SHF_EINVAL, whatever the decoder would
    say of it. A completion's output, like every request's payload, may
    nest at most SHF_MSG_MAX_PAYLOAD_DEPTH levels (a task's are exempt).

    Duplicate keys are found by keeping the keys of the open maps (offsets
    into the frame) and comparing them when a map closes: pairwise for
    small maps, sorted for big ones. The frame map's keys that name a
    field are told apart by a bit per field instead, at once. A stack buffer holds the keys of any
    ordinary task; only a frame with more keys open at once spills to the
    heap.

    Called by the worker SDK (client/shf_task.c) for every task frame, and
    by the shard for every completion the router hands it.
*/
#include "shf_taskmsg.h"
#include "shf_envelope.h"
#include "shf_mpack.h"
#include "shf_msg.h"
#include "shf_token.h"
#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Keys of open maps kept on the stack before spilling to the heap.
#define S_KEYS_LOCAL 256
//  Maps up to this many keys are checked for duplicates pairwise.
#define S_KEYS_PAIRWISE 16

typedef enum { S_NIL, S_BOOL, S_INT, S_REAL, S_STR, S_ARRAY, S_MAP } s_type_t;

//  One value's header. Scalars and strings are consumed whole; a
//  container's elements follow at the cursor.
typedef struct {
    s_type_t type;
    int64_t i;         //  S_INT
    const char *str;   //  S_STR: the bytes, inside the frame
    uint64_t n;        //  S_STR length, S_ARRAY/S_MAP count
    size_t canonical;  //  its bytes as shf_mpack_encode writes them (a
                       //  container: its header only)
} s_item_t;

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} s_cursor_t;

//  The top-level fields looked at.
typedef enum {
    S_F_V,
    S_F_OP,
    S_F_ID,
    S_F_TOKEN,
    S_F_NS,
    S_F_WF_ID,
    S_F_RUN_ID,
    S_F_STEP,
    S_F_ACTIVITY,
    S_F_QUEUE,
    S_F_ATTEMPT,
    S_F_INPUT,
    S_F_DETAILS,
    S_F_START_TO_CLOSE,
    S_F_HEARTBEAT_TIMEOUT,
    S_F_OUTPUT,
    S_F_COUNT
} s_slot_t;

//  A slot's name and its length, known at compile time.
#define S_SLOT(name)                                                           \
    {                                                                          \
        name, sizeof name - 1                                                  \
    }
static const struct {
    const char *name;
    size_t len;
} s_slots [S_F_COUNT] = {
    [S_F_V] = S_SLOT ("v"),
    [S_F_OP] = S_SLOT ("op"),
    [S_F_ID] = S_SLOT ("id"),
    [S_F_TOKEN] = S_SLOT ("token"),
    [S_F_NS] = S_SLOT ("ns"),
    [S_F_WF_ID] = S_SLOT ("wf_id"),
    [S_F_RUN_ID] = S_SLOT ("run_id"),
    [S_F_STEP] = S_SLOT ("step"),
    [S_F_ACTIVITY] = S_SLOT ("activity"),
    [S_F_QUEUE] = S_SLOT ("queue"),
    [S_F_ATTEMPT] = S_SLOT ("attempt"),
    [S_F_INPUT] = S_SLOT ("input"),
    [S_F_DETAILS] = S_SLOT ("heartbeat_details"),
    [S_F_START_TO_CLOSE] = S_SLOT ("start_to_close_ms"),
    [S_F_HEARTBEAT_TIMEOUT] = S_SLOT ("heartbeat_timeout_ms"),
    [S_F_OUTPUT] = S_SLOT ("output"),
};

_Static_assert(S_F_COUNT <= 32, "a bit per slot in s_walk");

//  Where a top-level value lies; at is NULL when the key is absent.
typedef struct {
    const uint8_t *at;
    const uint8_t *end;
    s_item_t head;
    size_t canonical;  //  the whole value, as shf_mpack_size counts it
    size_t nesting;    //  as shf_mpack_depth counts it
} s_value_t;

//  S_KIND_PAYLOAD: a task's (no depth limit); S_KIND_REQUEST_PAYLOAD: at
//  most SHF_MSG_MAX_PAYLOAD_DEPTH levels deep.
typedef enum {
    S_KIND_NAME,
    S_KIND_STR,
    S_KIND_INT,
    S_KIND_PAYLOAD,
    S_KIND_REQUEST_PAYLOAD
} s_kind_t;

typedef struct {
    s_slot_t slot;
    s_kind_t kind;
    bool required;
    int64_t min, max;  //  bytes (S_KIND_STR) or value (S_KIND_INT)
} s_field_t;

#define S_END                                                                  \
    {                                                                          \
        S_F_COUNT, S_KIND_NAME, false, 0, 0                                    \
    }

//  shf_msg.c's s_ops [SHF_OP_TASK], in its order: the first field that
//  fails decides the code.
static const s_field_t s_task_fields [] = {
    {S_F_TOKEN, S_KIND_STR, true, 1, SHF_TOKEN_MAX_TEXT},
    {S_F_NS, S_KIND_NAME, true, 0, 0},
    {S_F_WF_ID, S_KIND_NAME, true, 0, 0},
    {S_F_RUN_ID, S_KIND_NAME, true, 0, 0},
    {S_F_STEP, S_KIND_NAME, true, 0, 0},
    {S_F_ACTIVITY, S_KIND_NAME, true, 0, 0},
    {S_F_QUEUE, S_KIND_NAME, true, 0, 0},
    {S_F_ATTEMPT, S_KIND_INT, true, 0, UINT32_MAX},
    {S_F_INPUT, S_KIND_PAYLOAD, false, 0, 0},
    {S_F_DETAILS, S_KIND_PAYLOAD, false, 0, 0},
    {S_F_START_TO_CLOSE, S_KIND_INT, false, 0, INT64_MAX},
    {S_F_HEARTBEAT_TIMEOUT, S_KIND_INT, false, 0, INT64_MAX},
    S_END};

//  shf_msg.c's s_ops [SHF_OP_COMPLETE].
static const s_field_t s_complete_fields [] = {
    {S_F_TOKEN, S_KIND_STR, true, 1, SHF_TOKEN_MAX_TEXT},
    {S_F_OUTPUT, S_KIND_REQUEST_PAYLOAD, false, 0, 0},
    S_END};

//  A key of an open map: its bytes at data [at, at + len).
typedef struct {
    uint32_t at;
    uint32_t len;
} s_key_t;

typedef struct {
    s_key_t local [S_KEYS_LOCAL];
    s_key_t *keys;  //  local, or the heap once it is full
    size_t count;
    size_t alloc;
} s_keys_t;

static size_t
s_left (const s_cursor_t *c)
{
    return (size_t) (c->end - c->p);
}

//  shf_mpack_encode's sizes: the smallest header for each value.
static size_t
s_int_size (int64_t v)
{
    if (v >= 0)
        return v < 128           ? 1
               : v <= UINT8_MAX  ? 2
               : v <= UINT16_MAX ? 3
               : v <= UINT32_MAX ? 5
                                 : 9;
    return v >= -32         ? 1
           : v >= INT8_MIN  ? 2
           : v >= INT16_MIN ? 3
           : v >= INT32_MIN ? 5
                            : 9;
}

static size_t
s_str_size (uint64_t len)
{
    return (size_t) len
           + (len < 32            ? 1
              : len <= UINT8_MAX  ? 2
              : len <= UINT16_MAX ? 3
                                  : 5);
}

static size_t
s_container_size (uint64_t n)
{
    return n < 16 ? 1 : n <= UINT16_MAX ? 3 : 5;
}

//  Reads one value's header by shf_mpack_decode's rules; false when the
//  decoder would refuse it (then *why says so).
static bool
s_read_item (s_cursor_t *c, s_item_t *item, const char **why)
{
    *item = (s_item_t){.type = S_NIL, .canonical = 1};
    if (s_left (c) < 1) {
        *why = "truncated input";
        return false;
    }
    uint8_t b = *c->p++;
    uint64_t u;
    if (b <= 0x7f || b >= 0xe0) {
        item->type = S_INT;
        item->i = b <= 0x7f ? b : (int8_t) b;
        return true;
    }
    if (b <= 0x9f || (b >= 0xdc && b <= 0xdf)) {
        bool is_map = b <= 0x8f || b == 0xde || b == 0xdf;
        if (b <= 0x9f)
            u = b & 0x0f;
        else if (!shf_mpack_read_be (&c->p, c->end,
                                     b == 0xdc || b == 0xde ? 2 : 4, &u)) {
            *why = "truncated container header";
            return false;
        }
        //  An element takes at least one byte and an entry two: the
        //  decoder refuses a count the bytes left cannot hold.
        if (is_map ? u > s_left (c) / 2 : u > s_left (c)) {
            *why = "container count exceeds the bytes left";
            return false;
        }
        item->type = is_map ? S_MAP : S_ARRAY;
        item->n = u;
        item->canonical = s_container_size (u);
        return true;
    }
    if (b <= 0xbf || (b >= 0xd9 && b <= 0xdb)) {
        if (b <= 0xbf)
            u = b & 0x1f;
        else if (!shf_mpack_read_be (&c->p, c->end, (size_t) 1 << (b - 0xd9),
                                     &u)) {
            *why = "truncated string header";
            return false;
        }
        if (u > s_left (c)) {
            *why = "string length exceeds the bytes left";
            return false;
        }
        if (!shf_mpack_utf8_valid ((const char *) c->p, (size_t) u)) {
            *why = "string is not valid UTF-8";
            return false;
        }
        item->type = S_STR;
        item->str = (const char *) c->p;
        item->n = u;
        item->canonical = s_str_size (u);
        c->p += u;
        return true;
    }
    switch (b) {
        case 0xc0:
            return true;
        case 0xc2:
        case 0xc3:
            item->type = S_BOOL;
            return true;
        case 0xcc:
        case 0xcd:
        case 0xce:
        case 0xcf:
            if (!shf_mpack_read_be (&c->p, c->end, (size_t) 1 << (b - 0xcc),
                                    &u)) {
                *why = "truncated unsigned integer";
                return false;
            }
            if (u > INT64_MAX) {
                *why = "unsigned integer above INT64_MAX";
                return false;
            }
            item->type = S_INT;
            item->i = (int64_t) u;
            item->canonical = s_int_size (item->i);
            return true;
        case 0xd0:
        case 0xd1:
        case 0xd2:
        case 0xd3: {
            size_t n = (size_t) 1 << (b - 0xd0);
            if (!shf_mpack_read_be (&c->p, c->end, n, &u)) {
                *why = "truncated signed integer";
                return false;
            }
            int64_t v;
            if (n == 8)
                memcpy (&v, &u, sizeof v);
            else {
                uint64_t sign = (uint64_t) 1 << (n * 8 - 1);
                v = (int64_t) (u ^ sign) - (int64_t) sign;
            }
            item->type = S_INT;
            item->i = v;
            item->canonical = s_int_size (v);
            return true;
        }
        case 0xca:
        case 0xcb: {
            bool finite;
            if (!shf_mpack_read_be (&c->p, c->end, b == 0xca ? 4 : 8, &u)) {
                *why = "truncated float";
                return false;
            }
            if (b == 0xca) {
                uint32_t bits = (uint32_t) u;
                float f;
                memcpy (&f, &bits, sizeof f);
                finite = isfinite (f);
            }
            else {
                double d;
                memcpy (&d, &u, sizeof d);
                finite = isfinite (d);
            }
            if (!finite) {
                *why = "NaN or infinite float";
                return false;
            }
            //  Re-encoded as a double whatever it was sent as.
            item->type = S_REAL;
            item->canonical = 9;
            return true;
        }
        case 0xc4:
        case 0xc5:
        case 0xc6:
            *why = "bin values are not accepted";
            return false;
        case 0xc7:
        case 0xc8:
        case 0xc9:
        case 0xd4:
        case 0xd5:
        case 0xd6:
        case 0xd7:
        case 0xd8:
            *why = "ext values are not accepted";
            return false;
        default:  //  0xc1: never used
            *why = "invalid type byte 0xc1";
            return false;
    }
}

//  Any total order: only equal neighbours matter.
static int
s_key_cmp (const uint8_t *data, s_key_t a, s_key_t b)
{
    if (a.len != b.len)
        return a.len < b.len ? -1 : 1;
    return memcmp (data + a.at, data + b.at, a.len);
}

static void
s_sift_down (const uint8_t *data, s_key_t *keys, size_t root, size_t n)
{
    for (;;) {
        size_t child = 2 * root + 1;
        if (child >= n)
            return;
        if (child + 1 < n
            && s_key_cmp (data, keys [child], keys [child + 1]) < 0)
            child++;
        if (s_key_cmp (data, keys [root], keys [child]) >= 0)
            return;
        s_key_t swap = keys [root];
        keys [root] = keys [child];
        keys [child] = swap;
        root = child;
    }
}

//  True when no two of the n keys are equal. Heapsort for big maps: in
//  place and O(n log n) whatever the keys (qsort may allocate).
static bool
s_keys_unique (const uint8_t *data, s_key_t *keys, size_t n)
{
    if (n <= S_KEYS_PAIRWISE) {
        for (size_t i = 1; i < n; i++)
            for (size_t j = 0; j < i; j++)
                if (s_key_cmp (data, keys [i], keys [j]) == 0)
                    return false;
        return true;
    }
    for (size_t i = n / 2; i-- > 0;)
        s_sift_down (data, keys, i, n);
    for (size_t end = n - 1; end > 0; end--) {
        s_key_t swap = keys [0];
        keys [0] = keys [end];
        keys [end] = swap;
        s_sift_down (data, keys, 0, end);
    }
    for (size_t i = 1; i < n; i++)
        if (s_key_cmp (data, keys [i - 1], keys [i]) == 0)
            return false;
    return true;
}

static void
s_keys_push (s_keys_t *self, uint32_t at, uint32_t len)
{
    if (self->count == self->alloc) {
        size_t alloc = self->alloc * 2;
        s_key_t *grown;
        if (self->keys == self->local) {
            grown = malloc (alloc * sizeof *grown);
            assert (grown);  //  out of memory
            memcpy (grown, self->local, self->count * sizeof *grown);
        }
        else {
            grown = realloc (self->keys, alloc * sizeof *grown);
            assert (grown);
        }
        self->keys = grown;
        self->alloc = alloc;
    }
    self->keys [self->count++] = (s_key_t){at, len};
}

static s_slot_t
s_slot_of (const char *key, size_t len)
{
    //  The length first: an empty key may end the frame, with no byte
    //  behind it to look at. The longest name has 20 bytes.
    if (len == 0 || len > 20)
        return S_F_COUNT;
    for (int slot = 0; slot < S_F_COUNT; slot++) {
        const char *name = s_slots [slot].name;
        if (s_slots [slot].len == len && name [0] == key [0]
            && memcmp (name, key, len) == 0)
            return (s_slot_t) slot;
    }
    return S_F_COUNT;
}

//  One open container of the first pass.
typedef struct {
    uint64_t left;    //  elements or entries still to read
    size_t key_base;  //  a map's first key in the key store
    bool is_map;
} s_frame_t;

//  The first pass: the frame by shf_mpack_decode's rules, the top-level
//  values noted in values (a map's values only: SHF_EINVAL when the frame
//  is no map, as s_validate says).
static shf_err_t
s_walk (const uint8_t *data, size_t size, s_value_t *values, s_keys_t *keys,
        char *err, size_t errlen)
{
    s_cursor_t c = {data, data + size};
    const char *why = NULL;
    s_item_t item;
    if (!s_read_item (&c, &item, &why))
        goto bad;
    if (item.type != S_MAP)
        return shf_err_format (SHF_EINVAL, err, errlen,
                               "a message must be a msgpack map");
    s_frame_t stack [SHF_MPACK_MAX_DEPTH];
    size_t depth = 0;
    if (item.n > 0)
        stack [depth++] = (s_frame_t){item.n, 0, true};
    size_t count = 1;           //  values, as the decoder's budget counts them
    size_t canonical = 0;       //  of everything read, keys included
    s_slot_t slot = S_F_COUNT;  //  the top-level value being read
    //  The top map's keys that name a slot: a repeat is found by its bit.
    //  Only its other keys wait for the check when the map closes (no
    //  other key can equal a slot's name).
    uint32_t slots_seen = 0;
    s_value_t value = {NULL, NULL, {0}, 0, 0};
    while (depth > 0) {
        if (++count > SHF_MPACK_MAX_VALUES) {
            why = "too many values";
            goto bad;
        }
        bool top = depth == 1;
        if (stack [depth - 1].is_map) {
            if (!s_read_item (&c, &item, &why))
                goto bad;
            if (item.type != S_STR) {
                why = "map key is not a string";
                goto bad;
            }
            if (memchr (item.str, 0, (size_t) item.n)) {
                why = "map key contains a NUL byte";
                goto bad;
            }
            canonical += item.canonical;
            if (top)
                slot = s_slot_of (item.str, (size_t) item.n);
            if (top && slot != S_F_COUNT) {
                if (slots_seen & (1u << slot)) {
                    why = "duplicate map key";
                    goto bad;
                }
                slots_seen |= 1u << slot;
            }
            else
                s_keys_push (keys,
                             (uint32_t) ((const uint8_t *) item.str - data),
                             (uint32_t) item.n);
        }
        const uint8_t *at = c.p;
        size_t canonical_at = canonical;
        if (!s_read_item (&c, &item, &why))
            goto bad;
        canonical += item.canonical;
        if (top && slot != S_F_COUNT)
            value = (s_value_t){at, NULL, item, canonical_at, 0};
        if (item.type == S_ARRAY || item.type == S_MAP) {
            //  A container whose parent is at level depth (the frame map
            //  is level 1) nests its top-level value that deep.
            if (slot != S_F_COUNT && depth > value.nesting)
                value.nesting = depth;
            if (depth == SHF_MPACK_MAX_DEPTH) {
                why = "nested too deeply";
                goto bad;
            }
            if (item.n > 0) {
                stack [depth++] =
                    (s_frame_t){item.n, keys->count, item.type == S_MAP};
                continue;
            }
        }
        //  A value is complete: close every container it completes.
        while (depth > 0 && --stack [depth - 1].left == 0) {
            s_frame_t *done = &stack [depth - 1];
            if (done->is_map
                && !s_keys_unique (data, keys->keys + done->key_base,
                                   keys->count - done->key_base)) {
                why = "duplicate map key";
                goto bad;
            }
            keys->count = done->key_base;
            depth--;
        }
        //  Back in the top map (or past it): a top-level value ended.
        if (depth <= 1 && slot != S_F_COUNT) {
            value.end = c.p;
            value.canonical = canonical - value.canonical;
            values [slot] = value;
            slot = S_F_COUNT;
        }
    }
    if (c.p != c.end) {
        why = "trailing bytes after the value";
        goto bad;
    }
    return SHF_OK;
bad:
    return shf_err_format (SHF_EINVAL, err, errlen,
                           "bad frame: %s at offset %zu", why,
                           (size_t) (c.p - data));
}

//  shf_msg.c's s_check_field for the kinds the tables above use; a field
//  absent or (optional) nil is left alone.
static shf_err_t
s_check_field (const char *op, const s_field_t *f, const s_value_t *value,
               char *err, size_t errlen)
{
    const char *name = s_slots [f->slot].name;
    if (!value->at || (value->head.type == S_NIL && !f->required)) {
        if (f->required)
            return shf_err_format (SHF_EINVAL, err, errlen,
                                   "%s: missing field \"%s\"", op, name);
        return SHF_OK;
    }
    const s_item_t *head = &value->head;
    switch (f->kind) {
        case S_KIND_NAME:
            //  s_walk checked every string of the frame is UTF-8.
            if (head->type != S_STR
                || !shf_msg_valid_name_chars (head->str, head->n))
                return shf_err_format (
                    SHF_EINVAL, err, errlen,
                    "%s: field \"%s\" must be a name: 1 to %d "
                    "bytes of UTF-8, no control characters",
                    op, name, SHF_MSG_MAX_NAME);
            return SHF_OK;
        case S_KIND_STR:
            if (head->type != S_STR || head->n < (uint64_t) f->min
                || head->n > (uint64_t) f->max
                || memchr (head->str, 0, (size_t) head->n))
                return shf_err_format (
                    SHF_EINVAL, err, errlen,
                    "%s: field \"%s\" must be a string of %lld to "
                    "%lld bytes without NUL",
                    op, name, (long long) f->min, (long long) f->max);
            return SHF_OK;
        case S_KIND_INT:
            if (head->type != S_INT || head->i < f->min || head->i > f->max)
                return shf_err_format (
                    SHF_EINVAL, err, errlen,
                    "%s: field \"%s\" must be an integer from "
                    "%lld to %lld",
                    op, name, (long long) f->min, (long long) f->max);
            return SHF_OK;
        case S_KIND_PAYLOAD:
        case S_KIND_REQUEST_PAYLOAD:
            //  Nesting cannot fail shf_mpack_size here (a value inside
            //  the frame map is at most 63 levels deep), and a task's
            //  payloads are exempt from the depth limit of requests.
            if (value->canonical > SHF_MSG_MAX_PAYLOAD)
                return shf_err_format (SHF_ETOOLARGE, err, errlen,
                                       "%s: field \"%s\" is larger than %u MiB",
                                       op, name,
                                       SHF_MSG_MAX_PAYLOAD / (1024 * 1024));
            if (f->kind == S_KIND_REQUEST_PAYLOAD
                && value->nesting > SHF_MSG_MAX_PAYLOAD_DEPTH)
                return shf_err_format (
                    SHF_EINVAL, err, errlen,
                    "%s: field \"%s\" is nested deeper than %d levels", op,
                    name, SHF_MSG_MAX_PAYLOAD_DEPTH);
            return SHF_OK;
    }
    return shf_err_format (SHF_EINTERNAL, err, errlen, "%s: bad field table",
                           op);
}

static shf_err_t
s_check_fields (const char *op, const s_field_t *fields,
                const s_value_t *values, char *err, size_t errlen)
{
    for (const s_field_t *f = fields; f->slot != S_F_COUNT; f++) {
        shf_err_t rc = s_check_field (op, f, &values [f->slot], err, errlen);
        if (rc)
            return rc;
    }
    return SHF_OK;
}

//  shf_msg.c's s_validate: id, v, op (which must be want), then the op's
//  fields.
static shf_err_t
s_validate (const s_value_t *values, shf_op_t want, char *err, size_t errlen)
{
    const s_value_t *id = &values [S_F_ID];
    if (id->at && id->head.type != S_NIL
        && (id->head.type != S_INT || id->head.i < 0))
        return shf_err_format (SHF_EINVAL, err, errlen,
                               "field \"id\" must be an unsigned integer");
    const s_value_t *v = &values [S_F_V];
    if (!v->at)
        return shf_err_format (
            SHF_EINVAL, err, errlen,
            "missing field \"v\" (the protocol version; this node "
            "speaks %d)",
            SHF_MSG_VERSION);
    if (v->head.type != S_INT || v->head.i != SHF_MSG_VERSION)
        return shf_err_format (
            SHF_EINVAL, err, errlen,
            "unsupported protocol version (field \"v\" must be "
            "the integer %d)",
            SHF_MSG_VERSION);
    const s_value_t *opv = &values [S_F_OP];
    if (!opv->at)
        return shf_err_format (SHF_EINVAL, err, errlen, "missing field \"op\"");
    if (opv->head.type != S_STR)
        return shf_err_format (SHF_EINVAL, err, errlen,
                               "field \"op\" must be a string");
    shf_op_t op = shf_msg_op_lookup (opv->head.str, (size_t) opv->head.n);
    if (op == SHF_OP_INVALID)
        return shf_err_format (SHF_EINVAL, err, errlen, "unknown op \"%.*s\"",
                               (int) (opv->head.n > 64 ? 64 : opv->head.n),
                               opv->head.str);
    if (op != want)
        return shf_err_format (SHF_EINVAL, err, errlen, "%s: not a %s",
                               shf_msg_op_name (op), shf_msg_op_name (want));
    if (want == SHF_OP_TASK)
        return s_check_fields ("task", s_task_fields, values, err, errlen);
    return s_check_fields ("complete", s_complete_fields, values, err, errlen);
}

static shf_envelope_str_t
s_str (const s_value_t *value)
{
    return (shf_envelope_str_t){value->head.str, (size_t) value->head.n};
}

//  A payload's bytes; NULL when absent or nil.
static const uint8_t *
s_payload (const s_value_t *value, size_t *size_p)
{
    if (!value->at || value->head.type == S_NIL) {
        *size_p = 0;
        return NULL;
    }
    *size_p = (size_t) (value->end - value->at);
    return value->at;
}

static int64_t
s_int (const s_value_t *value)
{
    return value->at && value->head.type == S_INT ? value->head.i : 0;
}

//  Both passes over a frame that must be a message of op want; values
//  then say where its top-level fields lie.
static shf_err_t
s_read (const void *data, size_t size, shf_op_t want, s_value_t *values,
        char *err, size_t errlen)
{
    assert (data || size == 0);
    if (err && errlen > 0)
        err [0] = 0;
    if (size > SHF_MSG_MAX_FRAME)
        return shf_err_format (
            SHF_ETOOLARGE, err, errlen,
            "frame of %zu bytes is larger than the limit of %u "
            "bytes",
            size, (unsigned) SHF_MSG_MAX_FRAME);
    if (size == 0)
        return shf_err_format (SHF_EINVAL, err, errlen,
                               "bad frame: empty input");
    memset (values, 0, S_F_COUNT * sizeof *values);
    s_keys_t keys;
    keys.keys = keys.local;
    keys.count = 0;
    keys.alloc = S_KEYS_LOCAL;
    shf_err_t rc = s_walk (data, size, values, &keys, err, errlen);
    if (keys.keys != keys.local)
        free (keys.keys);
    if (rc == SHF_OK)
        rc = s_validate (values, want, err, errlen);
    return rc;
}

shf_err_t
shf_taskmsg_read (const void *data, size_t size, shf_taskmsg_t *task, char *err,
                  size_t errlen)
{
    assert (task);
    memset (task, 0, sizeof *task);
    s_value_t values [S_F_COUNT];
    shf_err_t rc = s_read (data, size, SHF_OP_TASK, values, err, errlen);
    if (rc)
        return rc;
    task->token = s_str (&values [S_F_TOKEN]);
    task->ns = s_str (&values [S_F_NS]);
    task->wf_id = s_str (&values [S_F_WF_ID]);
    task->run_id = s_str (&values [S_F_RUN_ID]);
    task->step = s_str (&values [S_F_STEP]);
    task->activity = s_str (&values [S_F_ACTIVITY]);
    task->queue = s_str (&values [S_F_QUEUE]);
    task->attempt = (uint32_t) values [S_F_ATTEMPT].head.i;
    task->start_to_close_ms = s_int (&values [S_F_START_TO_CLOSE]);
    task->heartbeat_timeout_ms = s_int (&values [S_F_HEARTBEAT_TIMEOUT]);
    task->input = s_payload (&values [S_F_INPUT], &task->input_size);
    task->details = s_payload (&values [S_F_DETAILS], &task->details_size);
    return SHF_OK;
}

shf_err_t
shf_taskmsg_read_complete (const void *data, size_t size,
                           shf_taskmsg_complete_t *done, char *err,
                           size_t errlen)
{
    assert (done);
    memset (done, 0, sizeof *done);
    s_value_t values [S_F_COUNT];
    shf_err_t rc = s_read (data, size, SHF_OP_COMPLETE, values, err, errlen);
    if (rc)
        return rc;
    done->id = (uint64_t) s_int (&values [S_F_ID]);
    done->token = s_str (&values [S_F_TOKEN]);
    done->output = s_payload (&values [S_F_OUTPUT], &done->output_size);
    return SHF_OK;
}


//  A string of the task agrees with the message's string field.
static bool
s_str_agrees (shf_envelope_str_t str, const uint8_t *frame, size_t size,
              const json_t *msg, const char *field)
{
    const json_t *value = json_object_get (msg, field);
    if (!json_is_string (value))
        return !str.ptr && str.len == 0;
    const uint8_t *p = (const uint8_t *) str.ptr;
    return p && p >= frame && str.len <= size
           && (size_t) (p - frame) <= size - str.len
           && str.len == json_string_length (value)
           && memcmp (str.ptr, json_string_value (value), str.len) == 0;
}

//  A payload's bytes lie in the frame and decode to the message's value.
static bool
s_payload_agrees (const uint8_t *bytes, size_t len, const uint8_t *frame,
                  size_t size, const json_t *want)
{
    if (!want || json_is_null (want))
        return !bytes && len == 0;
    if (!bytes || bytes < frame || len > size
        || (size_t) (bytes - frame) > size - len)
        return false;
    json_t *got = NULL;
    if (shf_mpack_decode (bytes, len, &got, NULL, 0) != SHF_OK)
        return false;
    bool same = json_equal (got, (json_t *) want);
    json_decref (got);
    return same;
}

static int64_t
s_int_of (const json_t *msg, const char *field)
{
    const json_t *value = json_object_get (msg, field);
    return json_is_integer (value) ? json_integer_value (value) : 0;
}

//  Every string, integer and payload of the task equals the message's.
static bool
s_fields_agree (const shf_taskmsg_t *task, const uint8_t *frame, size_t size,
                const json_t *msg)
{
    const struct {
        shf_envelope_str_t str;
        const char *field;
    } strs [] = {{task->token, "token"}, {task->ns, "ns"},
                 {task->wf_id, "wf_id"}, {task->run_id, "run_id"},
                 {task->step, "step"},   {task->activity, "activity"},
                 {task->queue, "queue"}};
    for (size_t i = 0; i < sizeof strs / sizeof strs [0]; i++)
        if (!s_str_agrees (strs [i].str, frame, size, msg, strs [i].field))
            return false;
    return task->attempt == s_int_of (msg, "attempt")
           && task->start_to_close_ms == s_int_of (msg, "start_to_close_ms")
           && task->heartbeat_timeout_ms
                  == s_int_of (msg, "heartbeat_timeout_ms")
           && s_payload_agrees (task->input, task->input_size, frame, size,
                                json_object_get (msg, "input"))
           && s_payload_agrees (task->details, task->details_size, frame, size,
                                json_object_get (msg, "heartbeat_details"));
}

//  What shf_msg_decode says of the frame to a reader of op want: its
//  code, SHF_EINVAL for a message of another op (*msg_p then NULL).
static shf_err_t
s_decoder_says (const void *data, size_t size, shf_op_t want, json_t **msg_p,
                uint64_t *id_p)
{
    shf_op_t op;
    shf_err_t rc = shf_msg_decode (data, size, msg_p, &op, id_p, NULL, 0);
    if (rc == SHF_OK && op != want) {
        json_decref (*msg_p);
        *msg_p = NULL;
        rc = SHF_EINVAL;
    }
    //  A payload too large in a message of another op: not one either way
    shf_envelope_t env;
    if (rc == SHF_ETOOLARGE && shf_envelope_read (data, size, &env) == SHF_OK
        && env.op != want)
        rc = SHF_EINVAL;
    return rc;
}

//  A refused read left its result all zero.
static bool
s_zero (const void *result, size_t size)
{
    const uint8_t *p = result;
    for (size_t i = 0; i < size; i++)
        if (p [i])
            return false;
    return true;
}

bool
shf_taskmsg_agrees (shf_err_t rc, const shf_taskmsg_t *task, const void *data,
                    size_t size)
{
    assert (task);
    json_t *msg = NULL;
    uint64_t id;
    bool agrees = rc == s_decoder_says (data, size, SHF_OP_TASK, &msg, &id);
    if (agrees)
        agrees = rc == SHF_OK ? s_fields_agree (task, data, size, msg)
                              : s_zero (task, sizeof *task);
    json_decref (msg);
    return agrees;
}

bool
shf_taskmsg_complete_agrees (shf_err_t rc, const shf_taskmsg_complete_t *done,
                             const void *data, size_t size)
{
    assert (done);
    json_t *msg = NULL;
    uint64_t id = 0;
    bool agrees = rc == s_decoder_says (data, size, SHF_OP_COMPLETE, &msg, &id);
    if (agrees && rc == SHF_OK)
        agrees = done->id == id
                 && s_str_agrees (done->token, data, size, msg, "token")
                 && s_payload_agrees (done->output, done->output_size, data,
                                      size, json_object_get (msg, "output"));
    else if (agrees)
        agrees = s_zero (done, sizeof *done);
    json_decref (msg);
    return agrees;
}

//  --------------------------------------------------------------------
//  Self-test

//  Reads the frame; asserts the read agrees with the decoder (the
//  property the fuzz target checks) and returns its status.
static shf_err_t
s_agree (const void *data, size_t size, shf_taskmsg_t *task)
{
    char err [256] = "";
    shf_err_t rc = shf_taskmsg_read (data, size, task, err, sizeof err);
    bool agrees = shf_taskmsg_agrees (rc, task, data, size);
    if (!agrees)
        fprintf (stderr, "shf_taskmsg: read %s (%s) disagrees with decode\n",
                 shf_err_code (rc), err);
    assert (agrees);
    assert (rc == SHF_OK || err [0]);
    return rc;
}

static void
s_expect_bytes (shf_err_t want, const void *data, size_t size, const char *what,
                bool verbose)
{
    shf_taskmsg_t task;
    char err [256] = "";
    shf_err_t rc = s_agree (data, size, &task);
    if (rc != SHF_OK)
        assert (shf_taskmsg_read (data, size, &task, err, sizeof err) == rc);
    if (verbose)
        printf ("  %-34s %-11s %s\n", what, shf_err_code (rc), err);
    assert (rc == want);
}

//  Encodes msg (stolen) as shf_msg_encode does ("v" added); the frame is
//  the caller's.
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

//  Encodes msg (stolen) and expects that code from the reader (and the
//  decoder).
static void
s_expect (shf_err_t want, json_t *msg, const char *what, bool verbose)
{
    size_t size;
    char *data = s_encode (msg, &size);
    s_expect_bytes (want, data, size, what, verbose);
    free (data);
}

//  A valid task message, every field set.
static json_t *
s_task_json (void)
{
    json_t *msg = json_pack (
        "{s:s, s:i, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:{s:[i, s]}, "
        "s:n, s:i, s:i}",
        "op", "task", "id", 9, "token", "tok.en", "ns", "default", "wf_id",
        "order-1", "run_id", "r1", "step", "charge", "activity", "charge_card",
        "queue", "payments", "attempt", 2, "input", "a", 1, "b",
        "heartbeat_details", "start_to_close_ms", 1000, "heartbeat_timeout_ms",
        100);
    assert (msg);
    return msg;
}

static json_t *
s_task_with (const char *field, json_t *value)
{
    json_t *msg = s_task_json ();
    if (value)
        json_object_set_new (msg, field, value);
    else
        json_object_del (msg, field);
    return msg;
}

//  A string of n copies of c (caller frees).
static char *
s_repeat (char c, size_t n)
{
    char *s = malloc (n + 1);
    assert (s);
    memset (s, c, n);
    s [n] = 0;
    return s;
}

static json_t *
s_long_string (size_t n)
{
    char *s = s_repeat ('x', n);
    json_t *value = json_stringn (s, n);
    free (s);
    return value;
}

//  Replaces the first occurrence of from in data by to (same length).
static void
s_patch (char *data, size_t size, const char *from, const char *to, size_t n)
{
    char *at = memmem (data, size, from, n);
    assert (at);
    memcpy (at, to, n);
}

//  data with extra bytes inserted at offset (caller frees).
static char *
s_insert (const char *data, size_t size, size_t offset, const void *extra,
          size_t n)
{
    char *out = malloc (size + n);
    assert (out);
    memcpy (out, data, offset);
    memcpy (out + offset, extra, n);
    memcpy (out + offset + n, data + offset, size - offset);
    return out;
}

//  A frame {"v":1, "op":op, ...fields} whose one payload field (key) is
//  given as raw msgpack bytes: an array of count elements, each elem.
static char *
s_frame_with_array (const char *head_json, const char *key, const void *elem,
                    size_t elem_size, size_t count, size_t *size_p)
{
    //  The other fields from JSON, the payload as a placeholder string
    //  swapped for the raw array.
    json_t *msg = json_loads (head_json, 0, NULL);
    assert (msg);
    json_object_set_new (msg, key, json_string ("@@PAYLOAD@@"));
    size_t head_size;
    char *head = s_encode (msg, &head_size);
    const char *marker = "\xab@@PAYLOAD@@";
    char *at = memmem (head, head_size, marker, 12);
    assert (at);
    size_t before = (size_t) (at - head);
    size_t after = head_size - before - 12;
    size_t size = before + 5 + count * elem_size + after;
    char *data = malloc (size);
    assert (data);
    memcpy (data, head, before);
    uint8_t *p = (uint8_t *) data + before;
    p [0] = 0xdd;
    p [1] = (uint8_t) (count >> 24);
    p [2] = (uint8_t) (count >> 16);
    p [3] = (uint8_t) (count >> 8);
    p [4] = (uint8_t) count;
    p += 5;
    for (size_t i = 0; i < count; i++, p += elem_size)
        memcpy (p, elem, elem_size);
    memcpy (p, at + 12, after);
    free (head);
    *size_p = size;
    return data;
}

//  Payloads and ops, by size: the limit is the payload's size as
//  shf_mpack_size counts it, reached only when the fields before it pass.
static void
s_test_sizes (bool verbose)
{
    const size_t max = SHF_MSG_MAX_PAYLOAD;
    //  A string payload of exactly the limit (str32 header: 5 bytes), and
    //  one byte more.
    for (size_t extra = 0; extra < 2; extra++) {
        shf_err_t want = extra ? SHF_ETOOLARGE : SHF_OK;
        s_expect (want, s_task_with ("input", s_long_string (max - 5 + extra)),
                  extra ? "input over 2 MiB" : "input of 2 MiB", verbose);
        s_expect (
            want,
            s_task_with ("heartbeat_details", s_long_string (max - 5 + extra)),
            extra ? "details over 2 MiB" : "details of 2 MiB", verbose);
    }
    //  The first failing field decides: attempt (before input) is
    //  EINVAL, start_to_close_ms (after it) leaves ETOOLARGE.
    json_t *msg = s_task_with ("input", s_long_string (max));
    json_object_set_new (msg, "attempt", json_integer (-1));
    s_expect (SHF_EINVAL, msg, "bad attempt, big input", verbose);
    msg = s_task_with ("input", s_long_string (max));
    json_object_set_new (msg, "start_to_close_ms", json_integer (-1));
    s_expect (SHF_ETOOLARGE, msg, "big input, bad start_to_close", verbose);
    msg = s_task_with ("heartbeat_details", s_long_string (max));
    json_object_set_new (msg, "input", json_integer (1));
    json_object_set_new (msg, "heartbeat_timeout_ms", json_string ("x"));
    s_expect (SHF_ETOOLARGE, msg, "big details, bad timeout", verbose);
    //  ... but a msgpack error anywhere comes first.
    size_t size;
    msg = s_task_with ("input", s_long_string (max));
    json_object_set_new (msg, "zz", json_string ("QQ"));
    char *data = s_encode (msg, &size);
    s_patch (data, size, "\xa2QQ", "\xa2\xc3\x28", 3);
    s_expect_bytes (SHF_EINVAL, data, size, "big input, bad UTF-8", verbose);
    free (data);

    //  Sent size and counted size differ: float32s count as float64s,
    //  ints sent in 9 bytes count as 1. The counted size decides.
    const char *head = "{\"op\":\"task\",\"token\":\"t\",\"ns\":\"n\","
                       "\"wf_id\":\"w\",\"run_id\":\"r\",\"step\":\"s\","
                       "\"activity\":\"a\",\"queue\":\"q\",\"attempt\":1}";
    const size_t count = max / 9 + 100;
    const uint8_t f32 [5] = {0xca, 0x3f, 0xc0, 0, 0};  //  1.5
    data = s_frame_with_array (head, "input", f32, sizeof f32, count, &size);
    assert (size < max);
    s_expect_bytes (SHF_ETOOLARGE, data, size, "float32s over 2 MiB as f64",
                    verbose);
    free (data);
    const uint8_t u64 [9] = {0xcf, 0, 0, 0, 0, 0, 0, 0, 1};
    data = s_frame_with_array (head, "input", u64, sizeof u64, count, &size);
    assert (size > max && size <= SHF_MSG_MAX_FRAME);
    shf_taskmsg_t task;
    assert (s_agree (data, size, &task) == SHF_OK);
    assert (task.input_size > max);
    free (data);

    //  A frame over the limit is refused unread, garbage or not.
    uint8_t *big = calloc (1, SHF_MSG_MAX_FRAME + 1);
    assert (big);
    s_expect_bytes (SHF_ETOOLARGE, big, SHF_MSG_MAX_FRAME + 1, "frame too big",
                    verbose);
    free (big);

    //  Other ops are no tasks, whatever their payloads.
    s_expect (SHF_EINVAL,
              json_pack ("{s:s, s:s, s:o}", "op", "complete", "token", "t",
                         "output", s_long_string (max)),
              "complete, big output", verbose);
    s_expect (SHF_EINVAL,
              json_pack ("{s:s, s:s, s:o}", "op", "complete", "token", "",
                         "output", s_long_string (max)),
              "complete, bad token, big output", verbose);
    s_expect (SHF_EINVAL,
              json_pack ("{s:s, s:s, s:s, s:o, s:i}", "op", "wf_start", "ns",
                         "n", "name", "x", "input", s_long_string (max),
                         "request_id", 5),
              "wf_start, big input", verbose);
    s_expect (SHF_EINVAL,
              json_pack ("{s:s, s:s, s:s, s:i, s:o}", "op", "wf_start", "ns",
                         "n", "name", "x", "version", 0, "input",
                         s_long_string (max)),
              "wf_start, version 0, big input", verbose);
    s_expect (SHF_EINVAL,
              json_pack ("{s:s, s:s, s:s, s:s, s:o}", "op", "wf_signal", "ns",
                         "n", "wf_id", "w", "signal", "s", "input",
                         s_long_string (max)),
              "wf_signal, big input", verbose);
    //  Heartbeat items in order: details one level too deep (21) stop
    //  the check before a later item's size is looked at.
    json_t *deep = json_array ();
    for (int level = 1; level <= SHF_MSG_MAX_PAYLOAD_DEPTH; level++) {
        json_t *outer = json_array ();
        json_array_append_new (outer, deep);
        deep = outer;
    }
    s_expect (SHF_EINVAL,
              json_pack ("{s:s, s:[{s:s, s:O}, {s:s, s:o}]}", "op", "heartbeat",
                         "items", "token", "t", "details", deep, "token", "u",
                         "details", s_long_string (max)),
              "heartbeat, too deep, then big", verbose);
    s_expect (SHF_EINVAL,
              json_pack ("{s:s, s:[{s:s, s:O}, {s:s, s:o}]}", "op", "heartbeat",
                         "items", "token", "t", "details",
                         json_array_get (deep, 0), "token", "u", "details",
                         s_long_string (max)),
              "heartbeat, 20 deep, then big", verbose);
    json_decref (deep);
    s_expect (SHF_EINVAL,
              json_pack ("{s:s, s:i, s:b, s:o}", "op", "reply", "id", 1, "ok",
                         1, "body", s_long_string (max)),
              "reply, big body", verbose);
    s_expect (SHF_EINVAL,
              json_pack ("{s:s, s:s, s:i, s:o}", "op", "poll", "queue", "q",
                         "credit", 1, "big", s_long_string (max)),
              "poll, big unknown field", verbose);
}

//  The decoder's structural limits, met and passed by one.
static void
s_test_limits (bool verbose)
{
    //  Nesting: the frame map and 63 arrays inside it are 64 levels;
    //  one more (even an empty one) is refused.
    json_t *deep = json_array ();
    for (int level = 2; level < SHF_MPACK_MAX_DEPTH; level++) {
        json_t *outer = json_array ();
        json_array_append_new (outer, deep);
        deep = outer;
    }
    shf_msg_task_t fields = {.token = "t",
                             .ns = "n",
                             .wf_id = "w",
                             .run_id = "r",
                             .step = "s",
                             .activity = "a",
                             .queue = "q",
                             .input = deep};
    char *data;
    size_t size;
    assert (shf_msg_encode_task (&fields, &data, &size) == SHF_OK);
    s_expect_bytes (SHF_OK, data, size, "64 levels", verbose);
    const char *inner = memmem (data, size, "\x91\x90", 2);
    assert (inner);
    char *deeper =
        s_insert (data, size, (size_t) (inner - data) + 1, "\x91", 1);
    s_expect_bytes (SHF_EINVAL, deeper, size + 1, "65 levels", verbose);
    free (deeper);
    free (data);
    json_decref (deep);

    //  The value budget counts the frame map, its 14 values and the
    //  input's elements.
    for (size_t extra = 0; extra < 2; extra++) {
        json_t *nils = json_array ();
        for (size_t i = 0; i < SHF_MPACK_MAX_VALUES - 15 + extra; i++)
            json_array_append_new (nils, json_null ());
        fields.input = nils;
        assert (shf_msg_encode_task (&fields, &data, &size) == SHF_OK);
        s_expect_bytes (extra ? SHF_EINVAL : SHF_OK, data, size,
                        extra ? "values over budget" : "values at budget",
                        verbose);
        free (data);
        json_decref (nils);
    }

    //  Duplicate keys, in maps of 2 and 19 keys (pairwise), 36 and 180
    //  (sorted) and 900 (past the stack buffer: on the heap).
    for (int n = 2; n <= 1000; n = n < 20 ? n + 17 : n * 5) {
        json_t *map = json_object ();
        for (int k = 0; k < n; k++) {
            char key [16];
            snprintf (key, sizeof key, "k%04d", k);
            json_object_set_new (map, key, json_integer (k));
        }
        json_t *msg = s_task_with ("input", map);
        data = s_encode (msg, &size);
        s_expect_bytes (SHF_OK, data, size, "distinct keys", verbose);
        char last [8], first [8];
        snprintf (last, sizeof last, "\xa5k%04d", n - 1);
        snprintf (first, sizeof first, "\xa5k%04d", 0);
        s_patch (data, size, last, first, 6);
        s_expect_bytes (SHF_EINVAL, data, size, "duplicate nested key",
                        verbose);
        free (data);
    }
    data = s_encode (s_task_with ("tokex", json_string ("t2")), &size);
    s_patch (data, size, "\xa5tokex", "\xa5token", 6);
    s_expect_bytes (SHF_EINVAL, data, size, "duplicate token", verbose);
    free (data);
    //  Equal keys in different maps are no duplicates.
    s_expect (SHF_OK,
              s_task_with ("input",
                           json_pack ("{s:{s:i}, s:{s:i}, s:i}", "a", "token",
                                      1, "b", "token", 2, "token", 3)),
              "same key, other maps", verbose);
}

//  Content rules inside the payloads: what shf_mpack_decode refuses at
//  any depth is refused here too.
static void
s_test_content (bool verbose)
{
    struct {
        const char *what;
        const char *from, *to;  //  a fixstr "QQQQ" in the input, patched
        size_t n;
        shf_err_t want;
    } cases [] = {
        {"bad UTF-8 in input", "\xa4QQQQ", "\xa4Q\xc3\x28Q", 5, SHF_EINVAL},
        {"overlong UTF-8", "\xa4QQQQ", "\xa4Q\xc0\xafQ", 5, SHF_EINVAL},
        {"surrogate", "\xa4QQQQ", "\xa4\xed\xa0\x80Q", 5, SHF_EINVAL},
        {"4-byte UTF-8", "\xa4QQQQ", "\xa4\xf0\x9f\x98\x80", 5, SHF_OK},
        {"NUL in a value", "\xa4QQQQ", "\xa4Q\0QQ", 5, SHF_OK},
        {"bin8", "\xa4QQQQ", "\xc4\x03QQQ", 5, SHF_EINVAL},
        {"fixext4", "\xa4QQQQ", "\xd6\x01QQQ", 5, SHF_EINVAL},
        {"reserved 0xc1", "\xa4QQQQ", "\xc1\xc0\xc0\xc0\xc0", 5, SHF_EINVAL},
        {"float32 NaN", "\xa4QQQQ", "\xca\x7f\xc0\x00\x00", 5, SHF_EINVAL},
        {"float32 -Inf", "\xa4QQQQ", "\xca\xff\x80\x00\x00", 5, SHF_EINVAL},
        {"float32 1.5", "\xa4QQQQ", "\xca\x3f\xc0\x00\x00", 5, SHF_OK},
        {"int32 -1", "\xa4QQQQ", "\xd2\xff\xff\xff\xff", 5, SHF_OK},
        {"uint32 big", "\xa4QQQQ", "\xce\xff\xff\xff\xff", 5, SHF_OK},
        {"NUL in a key", "\xa2KK", "\xa2K\0", 3, SHF_EINVAL},
        {"bad UTF-8 in a key", "\xa2KK", "\xa2K\xff", 3, SHF_EINVAL},
        {"integer key", "\xa2KK", "\x01\xc0\xc0", 3, SHF_EINVAL},
        {"array16 header", "\x92\x01\xa4QQQQ", "\xdc\x00\x02\x01\xa2QQ", 7,
         SHF_OK},
        {"str8 header", "\xa4QQQQ", "\xd9\x03QQQ", 5, SHF_OK},
        {"lying array16", "\x92\x01\xa4QQQQ", "\xdc\xff\xff\x01\xa2QQ", 7,
         SHF_EINVAL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        json_t *input = json_pack ("{s:[i, s], s:i}", "a", 1, "QQQQ", "KK", 2);
        size_t size;
        char *data = s_encode (s_task_with ("input", input), &size);
        s_patch (data, size, cases [i].from, cases [i].to, cases [i].n);
        s_expect_bytes (cases [i].want, data, size, cases [i].what, verbose);
        free (data);
    }
    //  uint64 above INT64_MAX, and a nil details: not a payload.
    const uint8_t above [9] = {0xcf, 0x80, 0, 0, 0, 0, 0, 0, 0};
    size_t size;
    char *data = s_encode (s_task_with ("zz", json_string ("12345678")), &size);
    s_patch (data, size,
             "\xa8"
             "12345678",
             (const char *) above, 9);
    s_expect_bytes (SHF_EINVAL, data, size, "uint64 above INT64_MAX", verbose);
    free (data);
}

//  Fields: presence, type, length and range, as the op table says.
static void
s_test_fields (bool verbose)
{
    const char *required [] = {"token", "ns",       "wf_id", "run_id",
                               "step",  "activity", "queue", "attempt"};
    for (size_t i = 0; i < sizeof required / sizeof required [0]; i++) {
        s_expect (SHF_EINVAL, s_task_with (required [i], NULL), "missing field",
                  verbose);
        s_expect (SHF_EINVAL, s_task_with (required [i], json_null ()),
                  "required field nil", verbose);
        s_expect (SHF_EINVAL, s_task_with (required [i], json_pack ("[]")),
                  "required field an array", verbose);
    }
    const char *names [] = {"ns",   "wf_id",    "run_id",
                            "step", "activity", "queue"};
    for (size_t i = 0; i < sizeof names / sizeof names [0]; i++) {
        s_expect (SHF_OK, s_task_with (names [i], s_long_string (255)),
                  "name of 255 bytes", verbose);
        s_expect (SHF_EINVAL, s_task_with (names [i], s_long_string (256)),
                  "name of 256 bytes", verbose);
        s_expect (SHF_EINVAL, s_task_with (names [i], json_string ("")),
                  "empty name", verbose);
        s_expect (SHF_EINVAL, s_task_with (names [i], json_string ("a\tb")),
                  "name with a tab", verbose);
        s_expect (SHF_EINVAL, s_task_with (names [i], json_string ("a\x7f")),
                  "name with DEL", verbose);
        s_expect (SHF_EINVAL, s_task_with (names [i], json_stringn ("a\0", 2)),
                  "name with NUL", verbose);
        s_expect (SHF_OK,
                  s_task_with (names [i], json_string ("\xc3\xa9t\xc3\xa9")),
                  "name in UTF-8", verbose);
        s_expect (SHF_EINVAL, s_task_with (names [i], json_integer (1)),
                  "name an integer", verbose);
    }
    s_expect (SHF_OK, s_task_with ("token", s_long_string (SHF_TOKEN_MAX_TEXT)),
              "token of 2048 bytes", verbose);
    s_expect (SHF_EINVAL,
              s_task_with ("token", s_long_string (SHF_TOKEN_MAX_TEXT + 1)),
              "token of 2049 bytes", verbose);
    s_expect (SHF_EINVAL, s_task_with ("token", json_string ("")),
              "empty token", verbose);
    s_expect (SHF_EINVAL, s_task_with ("token", json_stringn ("t\0k", 3)),
              "token with NUL", verbose);
    s_expect (SHF_OK, s_task_with ("token", json_string ("t\x01k")),
              "token with a control char", verbose);

    //  Integers: attempt 0..UINT32_MAX, the ms fields 0..INT64_MAX; a
    //  float is no integer, even 1.0.
    s_expect (SHF_OK, s_task_with ("attempt", json_integer (UINT32_MAX)),
              "attempt UINT32_MAX", verbose);
    s_expect (
        SHF_EINVAL,
        s_task_with ("attempt", json_integer ((json_int_t) UINT32_MAX + 1)),
        "attempt UINT32_MAX + 1", verbose);
    s_expect (SHF_EINVAL, s_task_with ("attempt", json_integer (-1)),
              "attempt -1", verbose);
    s_expect (SHF_EINVAL, s_task_with ("attempt", json_real (1.0)),
              "attempt 1.0", verbose);
    s_expect (SHF_EINVAL, s_task_with ("attempt", json_string ("1")),
              "attempt \"1\"", verbose);
    s_expect (SHF_OK,
              s_task_with ("start_to_close_ms", json_integer (INT64_MAX)),
              "start_to_close_ms INT64_MAX", verbose);
    s_expect (SHF_EINVAL, s_task_with ("start_to_close_ms", json_integer (-1)),
              "start_to_close_ms -1", verbose);
    s_expect (SHF_EINVAL, s_task_with ("heartbeat_timeout_ms", json_real (2.0)),
              "heartbeat_timeout_ms 2.0", verbose);
    s_expect (SHF_EINVAL, s_task_with ("heartbeat_timeout_ms", json_true ()),
              "heartbeat_timeout_ms true", verbose);
    //  Optional fields nil or absent; unknown fields of any shape.
    const char *optional [] = {"input", "heartbeat_details",
                               "start_to_close_ms", "heartbeat_timeout_ms"};
    for (size_t i = 0; i < sizeof optional / sizeof optional [0]; i++) {
        s_expect (SHF_OK, s_task_with (optional [i], NULL), "optional absent",
                  verbose);
        s_expect (SHF_OK, s_task_with (optional [i], json_null ()),
                  "optional nil", verbose);
    }
    s_expect (SHF_OK,
              s_task_with ("later", json_pack ("{s:[f, b, n]}", "x", 0.5, 0)),
              "unknown field", verbose);
    s_expect (SHF_OK, s_task_with ("input", json_integer (-5)), "scalar input",
              verbose);

    //  The envelope: v, op, id.
    s_expect (SHF_OK, s_task_with ("id", json_null ()), "id nil", verbose);
    s_expect (SHF_OK, s_task_with ("id", NULL), "no id", verbose);
    s_expect (SHF_EINVAL, s_task_with ("id", json_integer (-1)), "id -1",
              verbose);
    s_expect (SHF_EINVAL, s_task_with ("id", json_real (1.0)), "id 1.0",
              verbose);
    s_expect (SHF_EINVAL, s_task_with ("op", json_string ("tasks")),
              "unknown op", verbose);
    s_expect (SHF_EINVAL, s_task_with ("op", json_stringn ("task\0", 5)),
              "op with NUL", verbose);
    s_expect (SHF_EINVAL, s_task_with ("op", NULL), "no op", verbose);
    s_expect (SHF_EINVAL, s_task_with ("op", json_integer (16)),
              "op an integer", verbose);
    s_expect (
        SHF_EINVAL,
        json_pack ("{s:s, s:s, s:i}", "op", "poll", "queue", "q", "credit", 1),
        "a valid poll", verbose);
    s_expect (SHF_EINVAL,
              json_pack ("{s:s, s:i, s:b, s:{}}", "op", "reply", "id", 1, "ok",
                         1, "body"),
              "a valid reply", verbose);
    const char *vs [] = {"{\"v\":2}", "{\"v\":null}", "{\"v\":1.0}", "{}"};
    for (size_t i = 0; i < sizeof vs / sizeof vs [0]; i++) {
        //  shf_msg_encode writes v = 1: these are encoded without it.
        json_t *msg = s_task_json ();
        json_t *v = json_loads (vs [i], 0, NULL);
        json_object_update (msg, v);
        json_decref (v);
        char *data;
        size_t size;
        assert (shf_mpack_encode (msg, &data, &size) == SHF_OK);
        json_decref (msg);
        s_expect_bytes (SHF_EINVAL, data, size, "bad or no v", verbose);
        free (data);
    }

    //  Shape: a map, alone.
    s_expect_bytes (SHF_EINVAL, "", 0, "empty frame", verbose);
    s_expect_bytes (SHF_EINVAL, "\x91\x80", 2, "array at top", verbose);
    s_expect_bytes (SHF_EINVAL, "\xc0", 1, "nil at top", verbose);
    s_expect_bytes (SHF_EINVAL, "\x80", 1, "empty map", verbose);
    size_t size;
    char *data = s_encode (s_task_json (), &size);
    char *longer = s_insert (data, size, size, "\xc0", 1);
    s_expect_bytes (SHF_EINVAL, longer, size + 1, "trailing byte", verbose);
    free (longer);
    free (data);
}

//  Reads a completion; asserts the read agrees with the decoder and
//  returns its status.
static shf_err_t
s_agree_complete (const void *data, size_t size, shf_taskmsg_complete_t *done)
{
    char err [256] = "";
    shf_err_t rc =
        shf_taskmsg_read_complete (data, size, done, err, sizeof err);
    bool agrees = shf_taskmsg_complete_agrees (rc, done, data, size);
    if (!agrees)
        fprintf (stderr,
                 "shf_taskmsg: completion read %s (%s) disagrees with "
                 "decode\n",
                 shf_err_code (rc), err);
    assert (agrees);
    assert (rc == SHF_OK || err [0]);
    return rc;
}

//  The property over 20,000 mutations of a valid frame: the reader (of
//  completions, or of tasks) and the decoder agree on every one. Returns
//  how many were read.
static size_t
s_mutations (const char *frame, size_t size, uint64_t seed, bool complete)
{
    char *copy = malloc (size + 2);
    assert (copy);
    size_t accepted = 0;
    for (int round = 0; round < 20000; round++) {
        size_t copy_size =
            shf_mpack_mutate (frame, size, (uint8_t *) copy, &seed);
        shf_taskmsg_t task;
        shf_taskmsg_complete_t done;
        shf_err_t rc = complete ? s_agree_complete (copy, copy_size, &done)
                                : s_agree (copy, copy_size, &task);
        if (rc == SHF_OK)
            accepted++;
    }
    free (copy);
    return accepted;
}

//  Encodes msg (stolen) and reads it as a completion.
static shf_err_t
s_complete_of (json_t *msg, bool verbose, const char *what)
{
    size_t size;
    char *data = s_encode (msg, &size);
    shf_taskmsg_complete_t done;
    shf_err_t rc = s_agree_complete (data, size, &done);
    if (verbose)
        printf ("  complete: %-24s %s\n", what, shf_err_code (rc));
    free (data);
    return rc;
}

//  Completions: what the SDK sends, the output's limits, another op.
static void
s_test_complete (bool verbose)
{
    json_t *output = json_pack ("{s:[i, s], s:b}", "n", 1, "\xc3\xa9", "ok", 1);
    size_t size;
    char *data =
        s_encode (json_pack ("{s:s, s:i, s:s, s:O}", "op", "complete", "id", 77,
                             "token", "tok.en", "output", output),
                  &size);
    shf_taskmsg_complete_t done;
    assert (s_agree_complete (data, size, &done) == SHF_OK);
    assert (done.id == 77);
    assert (done.token.len == 6 && memcmp (done.token.ptr, "tok.en", 6) == 0);
    json_t *back = NULL;
    assert (shf_mpack_decode (done.output, done.output_size, &back, NULL, 0)
            == SHF_OK);
    assert (json_equal (back, output));
    json_decref (back);
    for (size_t len = 0; len < size; len++)
        assert (s_agree_complete (data, len, &done) == SHF_EINVAL);
    //  A task is no completion, and a completion no task.
    shf_taskmsg_t task;
    assert (s_agree (data, size, &task) == SHF_EINVAL);
    free (data);
    json_decref (output);

    assert (
        s_complete_of (json_pack ("{s:s, s:s}", "op", "complete", "token", "t"),
                       verbose, "no output, no id")
        == SHF_OK);
    assert (s_complete_of (json_pack ("{s:s, s:n, s:s, s:n}", "op", "complete",
                                      "id", "token", "t", "output"),
                           verbose, "nil id and output")
            == SHF_OK);
    assert (s_complete_of (json_pack ("{s:s, s:i}", "op", "complete", "id", 1),
                           verbose, "no token")
            == SHF_EINVAL);
    assert (s_complete_of (json_pack ("{s:s, s:s, s:s}", "op", "fail", "token",
                                      "t", "error", "x"),
                           verbose, "another op")
            == SHF_EINVAL);
    //  Output nested 20 levels deep is read, 21 is refused.
    for (int levels = SHF_MSG_MAX_PAYLOAD_DEPTH;
         levels <= SHF_MSG_MAX_PAYLOAD_DEPTH + 1; levels++) {
        json_t *deep = json_integer (1);
        for (int i = 0; i < levels; i++) {
            json_t *outer = json_array ();
            json_array_append_new (outer, deep);
            deep = outer;
        }
        shf_err_t rc = s_complete_of (
            json_pack ("{s:s, s:s, s:o}", "op", "complete", "token", "t",
                       "output", deep),
            verbose, levels > SHF_MSG_MAX_PAYLOAD_DEPTH ? "too deep" : "deep");
        assert (rc
                == (levels > SHF_MSG_MAX_PAYLOAD_DEPTH ? SHF_EINVAL : SHF_OK));
    }
    //  An output over the payload limit.
    char *big = malloc (SHF_MSG_MAX_PAYLOAD + 1);
    assert (big);
    memset (big, 'x', SHF_MSG_MAX_PAYLOAD);
    big [SHF_MSG_MAX_PAYLOAD] = 0;
    assert (s_complete_of (json_pack ("{s:s, s:s, s:s}", "op", "complete",
                                      "token", "t", "output", big),
                           verbose, "output too large")
            == SHF_ETOOLARGE);
    free (big);

    //  Mutations of a completion: the reader and the decoder agree.
    data = s_encode (json_pack ("{s:s, s:i, s:s, s:{s:[i, f, s], s:n}}", "op",
                                "complete", "id", 12, "token", "t.k.n",
                                "output", "a", -7, 1.5, "\xc3\xa9", "k"),
                     &size);
    size_t accepted = s_mutations (data, size, 0xc0de5eedULL, true);
    free (data);
    if (verbose)
        printf ("  completion mutations: %zu of 20000 read\n", accepted);
    assert (accepted > 0);
}

void
shf_taskmsg_test (bool verbose)
{
    printf (" * shf_taskmsg: ");
    if (verbose)
        printf ("\n");

    //  A task as a shard encodes it: every field read back, strings and
    //  payloads pointing into the frame.
    json_t *input = json_pack (
        "{s:[i, s, {s:n, s:f}], s:s, s:I}", "items", 1, "x", "k", "pi", 3.5,
        "name", "h\xc3\xa9llo \xe2\x82\xac", "big", (json_int_t) 5000000000);
    json_t *details = json_pack ("{s:i}", "done", 40);
    shf_msg_task_t fields = {.token = "tok.1",
                             .ns = "default",
                             .wf_id = "order-1",
                             .run_id = "r1",
                             .step = "charge",
                             .activity = "charge_card",
                             .queue = "payments",
                             .attempt = 3,
                             .input = input,
                             .heartbeat_details = details,
                             .start_to_close_ms = 60000,
                             .heartbeat_timeout_ms = 5000};
    char *data;
    size_t size;
    assert (shf_msg_encode_task (&fields, &data, &size) == SHF_OK);
    shf_taskmsg_t task;
    char err [256];
    assert (shf_taskmsg_read (data, size, &task, err, sizeof err) == SHF_OK);
    assert (s_agree (data, size, &task) == SHF_OK);
    assert (task.token.len == 5 && memcmp (task.token.ptr, "tok.1", 5) == 0);
    assert (task.ns.len == 7 && memcmp (task.ns.ptr, "default", 7) == 0);
    assert (task.wf_id.len == 7 && memcmp (task.wf_id.ptr, "order-1", 7) == 0);
    assert (task.run_id.len == 2 && memcmp (task.run_id.ptr, "r1", 2) == 0);
    assert (task.step.len == 6 && memcmp (task.step.ptr, "charge", 6) == 0);
    assert (task.activity.len == 11
            && memcmp (task.activity.ptr, "charge_card", 11) == 0);
    assert (task.queue.len == 8 && memcmp (task.queue.ptr, "payments", 8) == 0);
    assert (task.token.ptr > data && task.token.ptr < data + size);
    assert (task.attempt == 3);
    assert (task.start_to_close_ms == 60000);
    assert (task.heartbeat_timeout_ms == 5000);
    assert ((const char *) task.input > data
            && (const char *) task.input + task.input_size < data + size);
    json_t *back = NULL;
    assert (shf_mpack_decode (task.input, task.input_size, &back, NULL, 0)
            == SHF_OK);
    assert (json_equal (back, input));
    json_decref (back);
    assert (shf_mpack_decode (task.details, task.details_size, &back, NULL, 0)
            == SHF_OK);
    assert (json_equal (back, details));
    json_decref (back);
    //  Every proper prefix is refused, as by the decoder.
    for (size_t len = 0; len < size; len++)
        assert (s_agree (data, len, &task) == SHF_EINVAL);
    free (data);

    //  The smallest task: no payloads (nil), no timeouts (0), and the
    //  largest attempt.
    shf_msg_task_t bare = fields;
    bare.input = NULL;
    bare.heartbeat_details = NULL;
    bare.start_to_close_ms = 0;
    bare.heartbeat_timeout_ms = 0;
    bare.attempt = UINT32_MAX;
    assert (shf_msg_encode_task (&bare, &data, &size) == SHF_OK);
    assert (s_agree (data, size, &task) == SHF_OK);
    assert (!task.input && task.input_size == 0);
    assert (!task.details && task.details_size == 0);
    assert (task.attempt == UINT32_MAX && task.start_to_close_ms == 0);
    free (data);
    json_decref (input);
    json_decref (details);

    //  Integers in any encoding: attempt 3 as int16, a timeout as uint64.
    const uint8_t wide [] = {
        0x8b, 0xa1, 'v',  0xd0, 0x01, 0xa2, 'o',  'p',  0xd9, 0x04, 't',  'a',
        's',  'k',  0xa5, 't',  'o',  'k',  'e',  'n',  0xdb, 0,    0,    0,
        1,    't',  0xa2, 'n',  's',  0xa1, 'n',  0xa5, 'w',  'f',  '_',  'i',
        'd',  0xa1, 'w',  0xa6, 'r',  'u',  'n',  '_',  'i',  'd',  0xa1, 'r',
        0xa4, 's',  't',  'e',  'p',  0xa1, 's',  0xa8, 'a',  'c',  't',  'i',
        'v',  'i',  't',  'y',  0xa1, 'a',  0xa5, 'q',  'u',  'e',  'u',  'e',
        0xa1, 'q',  0xa7, 'a',  't',  't',  'e',  'm',  'p',  't',  0xd1, 0x00,
        0x03, 0xb1, 's',  't',  'a',  'r',  't',  '_',  't',  'o',  '_',  'c',
        'l',  'o',  's',  'e',  '_',  'm',  's',  0xcf, 0,    0,    0,    0,
        0,    0,    0x03, 0xe8};
    assert (s_agree (wide, sizeof wide, &task) == SHF_OK);
    assert (task.attempt == 3 && task.start_to_close_ms == 1000);
    assert (!task.input && task.token.len == 1);

    s_test_fields (verbose);
    s_test_content (verbose);
    s_test_limits (verbose);
    s_test_sizes (verbose);

    //  The property, over mutations of a valid task: the reader and the
    //  decoder agree on every frame.
    data = s_encode (
        json_pack ("{s:s, s:i, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i, "
                   "s:{s:[i, f, s, {s:n}], s:s}, s:[b], s:i, s:i}",
                   "op", "task", "id", 4, "token", "t.k", "ns", "n", "wf_id",
                   "w", "run_id", "r", "step", "s", "activity", "a", "queue",
                   "q", "attempt", 300, "input", "a", -7, 1.5, "\xc3\xa9", "k",
                   "k", "v", "heartbeat_details", 1, "start_to_close_ms", 70000,
                   "heartbeat_timeout_ms", 0),
        &size);
    size_t accepted = s_mutations (data, size, 0x7a5c5eedULL, false);
    free (data);
    if (verbose)
        printf ("  mutations: %zu of 20000 read\n", accepted);
    assert (accepted > 0);

    s_test_complete (verbose);

    //  NULL err is allowed.
    assert (shf_taskmsg_read ("\xc0", 1, &task, NULL, 0) == SHF_EINVAL);
    printf ("OK\n");
}
