/*  shf_mpack.c - msgpack <-> JSON values, with a decoder that trusts
    nothing.

    The decoder is our own cursor over the bytes actually present; it never
    calls msgpack_unpack, whose allocations are sized from untrusted counts.
    Every declared length or count is checked against the bytes left before
    anything is allocated (an array element takes at least one byte, a map
    entry at least two), nesting is walked with an explicit stack bounded by
    SHF_MPACK_MAX_DEPTH (no recursion on input), map keys must be UTF-8
    strings without NUL bytes and must not repeat (a duplicate key is
    rejected, so no two readers can disagree about which value counts),
    strings must be valid UTF-8, and trailing bytes are an error. The
    encoder is our own too, writing msgpack-c's bytes (the smallest
    encoding of each value) without its per-item write callback.

    Called by shf_msg (wire frames), shf_token, storage/ (records) and
    shf_run (run states, written value by value with the put functions).
*/
#include "shf_mpack.h"
#include <assert.h>
#include <math.h>
#include <msgpack.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  One open container on the decoder's stack.
typedef struct {
    json_t *container;  //  borrowed: already attached to its parent
    size_t left;        //  elements (array) or entries (map) still to read
    bool is_map;
} s_frame_t;

typedef struct {
    const uint8_t *start;
    const uint8_t *p;
    const uint8_t *end;
    const uint8_t *mark;  //  where the item being read starts
    char *err;
    size_t errlen;
} s_reader_t;

static shf_err_t s_fail (s_reader_t *r, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));

static shf_err_t
s_fail (s_reader_t *r, const char *format, ...)
{
    if (r->err && r->errlen > 0) {
        char reason [160];
        va_list args;
        va_start (args, format);
        vsnprintf (reason, sizeof reason, format, args);
        va_end (args);
        snprintf (r->err, r->errlen, "msgpack: %s at offset %zu", reason,
                  (size_t) (r->mark - r->start));
    }
    return SHF_EINVAL;
}

static size_t
s_left (const s_reader_t *r)
{
    return (size_t) (r->end - r->p);
}

//  Reads a big-endian unsigned integer of n bytes (1, 2, 4 or 8).
static bool
s_read_be (s_reader_t *r, size_t n, uint64_t *value_p)
{
    return shf_mpack_read_be (&r->p, r->end, n, value_p);
}

//  Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF.
static bool
s_utf8_valid (const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        //  Names, keys and most payload text are ASCII: eight bytes at a
        //  time while no byte has its high bit set.
        while (len - i >= 8) {
            uint64_t word;
            memcpy (&word, s + i, 8);
            if (word & 0x8080808080808080ULL)
                break;
            i += 8;
        }
        if (i == len)
            break;
        uint8_t c = s [i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
            cp = c & 0x1f;
        }
        else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            cp = c & 0x0f;
        }
        else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            cp = c & 0x07;
        }
        else
            return false;
        if (len - i - 1 < n)
            return false;
        for (size_t k = 1; k <= n; k++) {
            uint8_t cc = s [i + k];
            if ((cc & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (cc & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff
            || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += n + 1;
    }
    return true;
}

//  Reads a string's length from its header byte; false if c is no str.
static bool
s_str_header (s_reader_t *r, uint8_t c, uint64_t *len_p, bool *ok_p)
{
    *ok_p = true;
    if (c >= 0xa0 && c <= 0xbf) {
        *len_p = c & 0x1f;
        return true;
    }
    if (c == 0xd9 || c == 0xda || c == 0xdb) {
        size_t n = c == 0xd9 ? 1 : c == 0xda ? 2 : 4;
        *ok_p = s_read_be (r, n, len_p);
        return true;
    }
    return false;
}

//  Reads one map key: a string, valid UTF-8, no NUL. A key already in the
//  map is caught when the value is attached (the map does not grow), which
//  spares a hash lookup per key.
static shf_err_t
s_read_key (s_reader_t *r, const char **key_p, size_t *len_p)
{
    r->mark = r->p;
    if (s_left (r) < 1)
        return s_fail (r, "truncated input (expected a map key)");
    uint8_t c = *r->p++;
    uint64_t len;
    bool ok;
    if (!s_str_header (r, c, &len, &ok))
        return s_fail (r, "map key is not a string (type byte 0x%02x)", c);
    if (!ok)
        return s_fail (r, "truncated string header");
    if (len > s_left (r))
        return s_fail (r, "string length %llu exceeds the %zu bytes left",
                       (unsigned long long) len, s_left (r));
    const char *key = (const char *) r->p;
    if (!s_utf8_valid (r->p, (size_t) len))
        return s_fail (r, "map key is not valid UTF-8");
    if (memchr (key, 0, (size_t) len))
        return s_fail (r, "map key contains a NUL byte");
    r->p += len;
    *key_p = key;
    *len_p = (size_t) len;
    return SHF_OK;
}

//  Reads one item. A scalar comes back complete in *value_p; a container
//  comes back empty with its declared element count in *count_p (already
//  checked against the bytes left) and *is_map_p says which kind.
static shf_err_t
s_read_item (s_reader_t *r, json_t **value_p, size_t *count_p,
             bool *is_container_p, bool *is_map_p)
{
    *value_p = NULL;
    *count_p = 0;
    *is_container_p = false;
    *is_map_p = false;
    r->mark = r->p;
    if (s_left (r) < 1)
        return s_fail (r, "truncated input (expected a value)");
    uint8_t c = *r->p++;
    uint64_t u = 0;
    json_t *value = NULL;

    //  Containers
    uint64_t count = 0;
    int container = 0;  //  1 array, 2 map
    if (c >= 0x90 && c <= 0x9f) {
        container = 1;
        count = c & 0x0f;
    }
    else if (c >= 0x80 && c <= 0x8f) {
        container = 2;
        count = c & 0x0f;
    }
    else if (c == 0xdc || c == 0xdd || c == 0xde || c == 0xdf) {
        container = c == 0xdc || c == 0xdd ? 1 : 2;
        if (!s_read_be (r, c == 0xdc || c == 0xde ? 2 : 4, &count))
            return s_fail (r, "truncated %s header",
                           container == 1 ? "array" : "map");
    }
    if (container) {
        //  Each element needs at least one byte, each entry two: a count
        //  that cannot fit in what is left is a lie, and is refused before
        //  we allocate anything for it.
        size_t left = s_left (r);
        if (container == 1 ? count > left : count > left / 2)
            return s_fail (r, "%s of %llu %s exceeds the %zu bytes left",
                           container == 1 ? "array" : "map",
                           (unsigned long long) count,
                           container == 1 ? "elements" : "entries", left);
        value = container == 1 ? json_array () : json_object ();
        if (!value)
            return s_fail (r, "out of memory");
        *value_p = value;
        *count_p = (size_t) count;
        *is_container_p = true;
        *is_map_p = container == 2;
        return SHF_OK;
    }

    //  Strings
    bool ok;
    if (s_str_header (r, c, &u, &ok)) {
        if (!ok)
            return s_fail (r, "truncated string header");
        if (u > s_left (r))
            return s_fail (r, "string length %llu exceeds the %zu bytes left",
                           (unsigned long long) u, s_left (r));
        if (!s_utf8_valid (r->p, (size_t) u))
            return s_fail (r, "string is not valid UTF-8");
        value = json_stringn_nocheck ((const char *) r->p, (size_t) u);
        r->p += u;
    }
    else if (c <= 0x7f)
        value = json_integer (c);
    else if (c >= 0xe0)
        value = json_integer ((int8_t) c);
    else
        switch (c) {
            case 0xc0:
                value = json_null ();
                break;
            case 0xc2:
                value = json_false ();
                break;
            case 0xc3:
                value = json_true ();
                break;
            case 0xcc:
            case 0xcd:
            case 0xce:
            case 0xcf:
                if (!s_read_be (r, (size_t) 1 << (c - 0xcc), &u))
                    return s_fail (r, "truncated unsigned integer");
                if (u > INT64_MAX)
                    return s_fail (r,
                                   "unsigned integer %llu is above "
                                   "INT64_MAX",
                                   (unsigned long long) u);
                value = json_integer ((json_int_t) u);
                break;
            case 0xd0:
            case 0xd1:
            case 0xd2:
            case 0xd3: {
                size_t n = (size_t) 1 << (c - 0xd0);
                if (!s_read_be (r, n, &u))
                    return s_fail (r, "truncated signed integer");
                //  Sign-extend the n-byte two's complement value.
                int64_t v;
                if (n == 8)
                    memcpy (&v, &u, sizeof v);
                else {
                    uint64_t sign = (uint64_t) 1 << (n * 8 - 1);
                    v = (int64_t) (u ^ sign) - (int64_t) sign;
                }
                value = json_integer (v);
                break;
            }
            case 0xca:
            case 0xcb: {
                double d;
                if (c == 0xca) {
                    if (!s_read_be (r, 4, &u))
                        return s_fail (r, "truncated float32");
                    uint32_t bits = (uint32_t) u;
                    float f;
                    memcpy (&f, &bits, sizeof f);
                    d = f;
                }
                else {
                    if (!s_read_be (r, 8, &u))
                        return s_fail (r, "truncated float64");
                    memcpy (&d, &u, sizeof d);
                }
                if (!isfinite (d))
                    return s_fail (r, "NaN or infinite float (JSON has none)");
                value = json_real (d);
                break;
            }
            case 0xc4:
            case 0xc5:
            case 0xc6:
                return s_fail (r, "bin values are not accepted");
            case 0xc7:
            case 0xc8:
            case 0xc9:
            case 0xd4:
            case 0xd5:
            case 0xd6:
            case 0xd7:
            case 0xd8:
                return s_fail (r, "ext values are not accepted");
            default:  //  0xc1: never used
                return s_fail (r, "invalid type byte 0x%02x", c);
        }
    if (!value)
        return s_fail (r, "out of memory");
    *value_p = value;
    return SHF_OK;
}

shf_err_t
shf_mpack_decode (const void *data, size_t size, json_t **value_p, char *err,
                  size_t errlen)
{
    assert (value_p);
    *value_p = NULL;
    if (err && errlen > 0)
        err [0] = 0;
    assert (data || size == 0);
    s_reader_t reader = {data, data, (const uint8_t *) data + size,
                         data, err,  errlen};
    s_reader_t *r = &reader;
    if (size == 0) {
        s_fail (r, "empty input");
        return SHF_EINVAL;
    }
    s_frame_t stack [SHF_MPACK_MAX_DEPTH];
    size_t depth = 0;
    json_t *root = NULL;
    shf_err_t rc = SHF_OK;
    size_t values = 0;

    for (;;) {
        //  jansson spends ~200 bytes per value: bound the count so a frame
        //  of 2 MiB of empty maps cannot cost the router half a gigabyte.
        if (++values > SHF_MPACK_MAX_VALUES) {
            rc = s_fail (r, "more than %d values", SHF_MPACK_MAX_VALUES);
            goto fail;
        }
        const char *key = NULL;
        size_t key_len = 0;
        if (depth > 0 && stack [depth - 1].is_map) {
            rc = s_read_key (r, &key, &key_len);
            if (rc)
                goto fail;
        }
        json_t *value;
        size_t count;
        bool is_container, is_map;
        rc = s_read_item (r, &value, &count, &is_container, &is_map);
        if (rc)
            goto fail;
        if (is_container && depth == SHF_MPACK_MAX_DEPTH) {
            json_decref (value);
            rc =
                s_fail (r, "nested deeper than %d levels", SHF_MPACK_MAX_DEPTH);
            goto fail;
        }
        //  Attach at once: from here on only root needs freeing on error.
        if (depth == 0)
            root = value;
        else if (stack [depth - 1].is_map) {
            //  The _new setters take the value even when they fail; a
            //  duplicate key replaces the earlier value, so the size tells.
            json_t *map = stack [depth - 1].container;
            size_t before = json_object_size (map);
            if (json_object_setn_new_nocheck (map, key, key_len, value)) {
                rc = s_fail (r, "out of memory");
                goto fail;
            }
            if (json_object_size (map) == before) {
                r->mark = (const uint8_t *) key;
                rc = s_fail (r, "duplicate map key \"%.*s\"",
                             (int) (key_len > 40 ? 40 : key_len), key);
                goto fail;
            }
        }
        else if (json_array_append_new (stack [depth - 1].container, value)) {
            rc = s_fail (r, "out of memory");
            goto fail;
        }
        if (is_container && count > 0) {
            stack [depth++] = (s_frame_t){value, count, is_map};
            continue;
        }
        //  A value is complete: close every container it completes.
        while (depth > 0 && --stack [depth - 1].left == 0)
            depth--;
        if (depth == 0)
            break;
    }
    if (r->p != r->end) {
        r->mark = r->p;
        rc = s_fail (r, "%zu trailing bytes after the value", s_left (r));
        goto fail;
    }
    *value_p = root;
    return SHF_OK;
fail:
    json_decref (root);
    return rc;
}

//  --- encoding ---------------------------------------------------------
//
//  Our own writer rather than msgpack-c's packer: the packer hands every
//  header and body to a write callback (~1,500 calls per W3 workflow, most
//  of 1-9 bytes), and the call cost more than the bytes. Here a header is
//  built in place after one room check, and bodies are copied. The bytes
//  are msgpack-c's: the smallest encoding of every integer, string, map
//  and array length, doubles as float64 (checked against msgpack-c in the
//  self-test). With counting set nothing is stored, only sized.

//  Most values we encode (messages, states, events) are a few hundred
//  bytes: the buffer starts there and doubles.
#define S_ENCODE_INIT_SIZE 512

//  data [0, size) written (or size counted), of alloc bytes.
typedef shf_mpack_out_t s_out_t;

//  Room for n more bytes; NULL when counting (the caller only sizes).
static inline uint8_t *
s_room (s_out_t *o, size_t n)
{
    if (o->counting) {
        o->size += n;
        return NULL;
    }
    if (o->alloc - o->size < n) {
        size_t alloc = o->alloc ? o->alloc * 2 : S_ENCODE_INIT_SIZE;
        while (alloc - o->size < n)
            alloc *= 2;
        uint8_t *grown = realloc (o->data, alloc);
        assert (grown);  //  out of memory
        o->data = grown;
        o->alloc = alloc;
    }
    uint8_t *at = o->data + o->size;
    o->size += n;
    return at;
}

static inline void
s_be (uint8_t *at, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--, v >>= 8)
        at [i] = (uint8_t) v;
}

//  A type byte and an n-byte big-endian argument.
static inline void
s_head (s_out_t *o, uint8_t type, uint64_t arg, int n)
{
    uint8_t *at = s_room (o, 1 + (size_t) n);
    if (at) {
        at [0] = type;
        s_be (at + 1, arg, n);
    }
}

static void
s_put_int (s_out_t *o, int64_t v)
{
    if (v >= 0) {
        uint64_t u = (uint64_t) v;
        if (u < 128)
            s_head (o, (uint8_t) u, 0, 0);
        else if (u <= UINT8_MAX)
            s_head (o, 0xcc, u, 1);
        else if (u <= UINT16_MAX)
            s_head (o, 0xcd, u, 2);
        else if (u <= UINT32_MAX)
            s_head (o, 0xce, u, 4);
        else
            s_head (o, 0xcf, u, 8);
    }
    else if (v >= -32)
        s_head (o, (uint8_t) (int8_t) v, 0, 0);
    else if (v >= INT8_MIN)
        s_head (o, 0xd0, (uint8_t) (int8_t) v, 1);
    else if (v >= INT16_MIN)
        s_head (o, 0xd1, (uint16_t) (int16_t) v, 2);
    else if (v >= INT32_MIN)
        s_head (o, 0xd2, (uint32_t) (int32_t) v, 4);
    else
        s_head (o, 0xd3, (uint64_t) v, 8);
}

//  A string header and body, any length (shf_mpack_put_short, which every
//  writer here goes through, takes the short ones with room inline).
static void
s_put_str_any (s_out_t *o, const char *str, size_t len)
{
    size_t head = len < 32            ? 1
                  : len <= UINT8_MAX  ? 2
                  : len <= UINT16_MAX ? 3
                                      : 5;
    uint8_t *at = s_room (o, head + len);
    if (!at)
        return;
    if (len < 32)
        at [0] = (uint8_t) (0xa0 | len);
    else {
        at [0] = head == 2 ? 0xd9 : head == 3 ? 0xda : 0xdb;
        s_be (at + 1, len, (int) head - 1);
    }
    memcpy (at + head, str, len);
}

static inline void
s_put_str (s_out_t *o, const char *str, size_t len)
{
    shf_mpack_put_short (o, str, len);
}

//  The header of a map (map set) or an array of n entries.
static void
s_put_container (s_out_t *o, bool map, size_t n)
{
    if (n < 16)
        s_head (o, (uint8_t) ((map ? 0x80 : 0x90) | n), 0, 0);
    else if (n <= UINT16_MAX)
        s_head (o, map ? 0xde : 0xdc, n, 2);
    else
        s_head (o, map ? 0xdf : 0xdd, n, 4);
}

static int s_pack (s_out_t *o, const json_t *value, int depth);

//  An object's members; with tag, one more integer member of that name
//  last (replacing a member of the same name). 0 or -2 (too deep).
static int
s_pack_object (s_out_t *o, json_t *v, int depth, const char *tag,
               int64_t tag_value)
{
    if (depth >= SHF_MPACK_MAX_DEPTH)
        return -2;
    size_t tag_len = tag ? strlen (tag) : 0;
    bool extra = tag && !json_object_get (v, tag);
    s_put_container (o, true, json_object_size (v) + (extra ? 1 : 0));
    //  The iterator walked directly: json_object_keylen_foreach maps each
    //  key back to its iterator three times a member.
    for (void *it = json_object_iter (v); it;
         it = json_object_iter_next (v, it)) {
        const char *key = json_object_iter_key (it);
        size_t key_len = json_object_iter_key_len (it);
        if (tag && key_len == tag_len && memcmp (key, tag, tag_len) == 0)
            continue;
        s_put_str (o, key, key_len);
        int rc = s_pack (o, json_object_iter_value (it), depth + 1);
        if (rc)
            return rc;
    }
    if (tag) {
        s_put_str (o, tag, tag_len);
        s_put_int (o, tag_value);
    }
    return 0;
}

static int
s_pack (s_out_t *o, const json_t *value, int depth)
{
    json_t *v = (json_t *) value;  //  jansson's iterators are not const
    switch (json_typeof (v)) {
        case JSON_OBJECT:
            return s_pack_object (o, v, depth, NULL, 0);
        case JSON_ARRAY: {
            if (depth >= SHF_MPACK_MAX_DEPTH)
                return -2;
            size_t n = json_array_size (v);
            s_put_container (o, false, n);
            for (size_t i = 0; i < n; i++) {
                int rc = s_pack (o, json_array_get (v, i), depth + 1);
                if (rc)
                    return rc;
            }
            return 0;
        }
        case JSON_STRING:
            s_put_str (o, json_string_value (v), json_string_length (v));
            return 0;
        case JSON_INTEGER:
            s_put_int (o, json_integer_value (v));
            return 0;
        case JSON_REAL: {
            double d = json_real_value (v);
            uint64_t bits;
            memcpy (&bits, &d, sizeof bits);
            s_head (o, 0xcb, bits, 8);
            return 0;
        }
        case JSON_TRUE:
            s_head (o, 0xc3, 0, 0);
            return 0;
        case JSON_FALSE:
            s_head (o, 0xc2, 0, 0);
            return 0;
        case JSON_NULL:
            s_head (o, 0xc0, 0, 0);
            return 0;
    }
    return -2;
}

static shf_err_t
s_encode (const json_t *value, const char *tag, int64_t tag_value,
          char **data_p, size_t *size_p)
{
    assert (value);
    assert (data_p);
    assert (size_p);
    *data_p = NULL;
    *size_p = 0;
    s_out_t o = {NULL, 0, 0, false};
    int rc = tag ? s_pack_object (&o, (json_t *) value, 0, tag, tag_value)
                 : s_pack (&o, value, 0);
    if (rc) {
        free (o.data);
        return SHF_EINVAL;
    }
    if (!o.data)  //  nothing written cannot happen: every value has a byte
        o.data = malloc (1);
    *size_p = o.size;
    *data_p = (char *) o.data;  //  malloc'd: free()
    return SHF_OK;
}

shf_err_t
shf_mpack_encode (const json_t *value, char **data_p, size_t *size_p)
{
    return s_encode (value, NULL, 0, data_p, size_p);
}

shf_err_t
shf_mpack_encode_tagged (const json_t *object, const char *tag,
                         int64_t tag_value, char **data_p, size_t *size_p)
{
    assert (json_is_object (object));
    assert (tag);
    return s_encode (object, tag, tag_value, data_p, size_p);
}

void
shf_mpack_seq_init (shf_mpack_seq_t *self)
{
    assert (self);
    memset (self, 0, sizeof *self);
}

void
shf_mpack_seq_clear (shf_mpack_seq_t *self)
{
    assert (self);
    self->out.size = 0;
    self->maps = 0;
    self->is_open = false;
    self->fields = 0;
    self->rc = 0;
}

void
shf_mpack_seq_free (shf_mpack_seq_t *self)
{
    assert (self);
    free (self->out.data);
    shf_mpack_seq_init (self);
}

size_t
shf_mpack_seq_begin (shf_mpack_seq_t *self)
{
    assert (self && !self->is_open);
    if (self->out.size == 0)
        s_room (&self->out, SHF_MPACK_SEQ_HEAD);
    self->open = self->out.size;
    self->fields = 0;
    self->rc = 0;
    self->is_open = true;
    self->is_array = false;
    s_room (&self->out, 1);  //  a fixmap header; more at the end if needed
    return self->open;
}

size_t
shf_mpack_seq_begin_array (shf_mpack_seq_t *self)
{
    size_t at = shf_mpack_seq_begin (self);
    self->is_array = true;
    return at;
}

//  The next element of the open array; false when it already failed.
static bool
s_seq_item (shf_mpack_seq_t *self)
{
    assert (self->is_open && self->is_array);
    self->fields++;
    return self->rc == 0;
}

void
shf_mpack_seq_item_int (shf_mpack_seq_t *self, int64_t value)
{
    if (s_seq_item (self))
        s_put_int (&self->out, value);
}

void
shf_mpack_seq_item_str (shf_mpack_seq_t *self, const char *value)
{
    if (s_seq_item (self))
        s_put_str (&self->out, value, strlen (value));
}

void
shf_mpack_seq_item_json (shf_mpack_seq_t *self, const json_t *value)
{
    if (!s_seq_item (self))
        return;
    if (!value)
        s_head (&self->out, 0xc0, 0, 0);
    else
        self->rc = s_pack (&self->out, value, 1);  //  inside the array
}

//  The key of the next field; false when the map already failed.
static bool
s_seq_key (shf_mpack_seq_t *self, const char *key)
{
    assert (self->is_open && !self->is_array);
    self->fields++;
    if (self->rc == 0)
        s_put_str (&self->out, key, strlen (key));
    return self->rc == 0;
}

void
shf_mpack_seq_str (shf_mpack_seq_t *self, const char *key, const char *value)
{
    if (s_seq_key (self, key))
        s_put_str (&self->out, value, strlen (value));
}

void
shf_mpack_seq_int (shf_mpack_seq_t *self, const char *key, int64_t value)
{
    if (s_seq_key (self, key))
        s_put_int (&self->out, value);
}

void
shf_mpack_seq_json (shf_mpack_seq_t *self, const char *key, const json_t *value)
{
    if (!s_seq_key (self, key))
        return;
    if (!value)
        s_head (&self->out, 0xc0, 0, 0);
    else
        self->rc = s_pack (&self->out, value, 1);  //  inside the map
}

shf_err_t
shf_mpack_seq_end (shf_mpack_seq_t *self, size_t *size_p)
{
    assert (self && self->is_open && size_p);
    self->is_open = false;
    *size_p = 0;
    if (self->rc || self->fields > UINT16_MAX) {
        self->out.size = self->open;
        return SHF_EINVAL;
    }
    if (self->fields < 16)
        self->out.data [self->open] =
            (uint8_t) ((self->is_array ? 0x90 : 0x80) | self->fields);
    else {
        //  Two more header bytes: the fields move up.
        size_t body = self->out.size - self->open - 1;
        s_room (&self->out, 2);
        uint8_t *at = self->out.data + self->open;
        memmove (at + 3, at + 1, body);
        at [0] = self->is_array ? 0xdc : 0xde;
        s_be (at + 1, self->fields, 2);
    }
    *size_p = self->out.size - self->open;
    self->maps++;
    return SHF_OK;
}

void
shf_mpack_seq_array (shf_mpack_seq_t *self, const uint8_t **data_p,
                     size_t *size_p)
{
    assert (self && !self->is_open && data_p && size_p);
    if (self->out.size == 0)
        s_room (&self->out, SHF_MPACK_SEQ_HEAD);
    //  s_put_container's header, ending where the maps begin
    size_t n = self->maps;
    size_t head = n < 16 ? 1 : n <= UINT16_MAX ? 3 : 5;
    uint8_t *at = self->out.data + SHF_MPACK_SEQ_HEAD - head;
    if (head == 1)
        at [0] = (uint8_t) (0x90 | n);
    else {
        at [0] = head == 3 ? 0xdc : 0xdd;
        s_be (at + 1, n, (int) head - 1);
    }
    *data_p = at;
    *size_p = self->out.size - SHF_MPACK_SEQ_HEAD + head;
}

//  A map of a count given first: the one map of a sequence, moved to the
//  front of its buffer at the end.
struct shf_mpack_map {
    shf_mpack_seq_t seq;
    size_t count;  //  fields declared
};

shf_mpack_map_t *
shf_mpack_map_new (size_t count)
{
    shf_mpack_map_t *self = calloc (1, sizeof *self);
    assert (self);
    shf_mpack_seq_init (&self->seq);
    shf_mpack_seq_begin (&self->seq);
    self->count = count;
    return self;
}

void
shf_mpack_map_str (shf_mpack_map_t *self, const char *key, const char *value)
{
    shf_mpack_seq_str (&self->seq, key, value);
}

void
shf_mpack_map_int (shf_mpack_map_t *self, const char *key, int64_t value)
{
    shf_mpack_seq_int (&self->seq, key, value);
}

void
shf_mpack_map_json (shf_mpack_map_t *self, const char *key, const json_t *value)
{
    shf_mpack_seq_json (&self->seq, key, value);
}

void
shf_mpack_map_raw (shf_mpack_map_t *self, const char *key, const void *value,
                   size_t size)
{
    if (!s_seq_key (&self->seq, key))
        return;
    uint8_t *at = s_room (&self->seq.out, size);
    if (at)
        memcpy (at, value, size);
}

shf_err_t
shf_mpack_map_finish (shf_mpack_map_t **self_p, char **data_p, size_t *size_p)
{
    shf_mpack_map_t *self = *self_p;
    *self_p = NULL;
    *data_p = NULL;
    *size_p = 0;
    size_t fields = self->seq.fields;
    size_t size;
    shf_err_t rc = shf_mpack_seq_end (&self->seq, &size);
    if (rc == SHF_OK && fields == self->count) {
        uint8_t *data = self->seq.out.data;
        memmove (data, data + self->seq.open, size);
        *data_p = (char *) data;
        *size_p = size;
    }
    else {
        rc = SHF_EINVAL;
        free (self->seq.out.data);
    }
    free (self);
    return rc;
}

void
shf_mpack_put_map (shf_mpack_out_t *out, size_t count)
{
    assert (out);
    s_put_container (out, true, count);
}

void
shf_mpack_put_array (shf_mpack_out_t *out, size_t count)
{
    assert (out);
    s_put_container (out, false, count);
}

void
shf_mpack_put_str (shf_mpack_out_t *out, const char *s, size_t len)
{
    assert (out && (s || len == 0));
    s_put_str_any (out, s ? s : "", len);
}

void
shf_mpack_put_int (shf_mpack_out_t *out, int64_t value)
{
    assert (out);
    s_put_int (out, value);
}

void
shf_mpack_put_nil (shf_mpack_out_t *out)
{
    assert (out);
    s_head (out, 0xc0, 0, 0);
}

shf_err_t
shf_mpack_put_json (shf_mpack_out_t *out, const json_t *value, int depth)
{
    assert (out && depth >= 0);
    if (!value) {
        s_head (out, 0xc0, 0, 0);
        return SHF_OK;
    }
    return s_pack (out, value, depth) ? SHF_EINVAL : SHF_OK;
}

void
shf_mpack_out_free (shf_mpack_out_t *out)
{
    assert (out);
    free (out->data);
    memset (out, 0, sizeof *out);
}

shf_err_t
shf_mpack_size (const json_t *value, size_t *size_p)
{
    assert (value);
    assert (size_p);
    s_out_t o = {NULL, 0, 0, true};
    if (s_pack (&o, value, 0)) {
        *size_p = 0;
        return SHF_EINVAL;
    }
    *size_p = o.size;
    return SHF_OK;
}

bool
shf_mpack_utf8_valid (const char *s, size_t len)
{
    return s_utf8_valid ((const uint8_t *) s, len);
}


//  --------------------------------------------------------------------
//  Self-test

static json_t *
s_decode_ok (const void *data, size_t size)
{
    json_t *value = NULL;
    char err [256];
    shf_err_t rc = shf_mpack_decode (data, size, &value, err, sizeof err);
    if (rc != SHF_OK)
        fprintf (stderr, "unexpected decode error: %s\n", err);
    assert (rc == SHF_OK);
    assert (value);
    return value;
}

static void
s_expect_reject (const void *data, size_t size, const char *why, bool verbose)
{
    json_t *value = (json_t *) 1;
    char err [256];
    shf_err_t rc = shf_mpack_decode (data, size, &value, err, sizeof err);
    if (verbose)
        printf ("  reject %-28s -> %s\n", why, err);
    assert (rc == SHF_EINVAL);
    assert (value == NULL);
    assert (err [0]);
}

//  The oracle for our encoder: msgpack-c's packer, which picks the
//  smallest encoding of everything.
static void
s_reference_pack (msgpack_packer *pk, json_t *v)
{
    const char *key;
    size_t len, i;
    json_t *member;
    switch (json_typeof (v)) {
        case JSON_OBJECT:
            msgpack_pack_map (pk, json_object_size (v));
            json_object_keylen_foreach (v, key, len, member)
            {
                msgpack_pack_str (pk, len);
                msgpack_pack_str_body (pk, key, len);
                s_reference_pack (pk, member);
            }
            break;
        case JSON_ARRAY:
            msgpack_pack_array (pk, json_array_size (v));
            json_array_foreach (v, i, member) s_reference_pack (pk, member);
            break;
        case JSON_STRING:
            msgpack_pack_str (pk, json_string_length (v));
            msgpack_pack_str_body (pk, json_string_value (v),
                                   json_string_length (v));
            break;
        case JSON_INTEGER:
            msgpack_pack_int64 (pk, json_integer_value (v));
            break;
        case JSON_REAL:
            msgpack_pack_double (pk, json_real_value (v));
            break;
        case JSON_TRUE:
            msgpack_pack_true (pk);
            break;
        case JSON_FALSE:
            msgpack_pack_false (pk);
            break;
        case JSON_NULL:
            msgpack_pack_nil (pk);
            break;
    }
}

static void
s_round_trip (const json_t *value)
{
    char *data;
    size_t size;
    assert (shf_mpack_encode (value, &data, &size) == SHF_OK);
    size_t counted;
    assert (shf_mpack_size (value, &counted) == SHF_OK);
    assert (counted == size);
    msgpack_sbuffer ref;
    msgpack_sbuffer_init (&ref);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &ref, msgpack_sbuffer_write);
    s_reference_pack (&pk, (json_t *) value);
    assert (ref.size == size && memcmp (ref.data, data, size) == 0);
    msgpack_sbuffer_destroy (&ref);
    json_t *back = s_decode_ok (data, size);
    assert (json_equal (back, (json_t *) value));
    json_decref (back);
    free (data);
}

int
shf_mpack_depth (const json_t *value)
{
    int deepest = 0;
    if (json_is_object (value)) {
        json_t *object = (json_t *) value;
        for (void *it = json_object_iter (object); it;
             it = json_object_iter_next (object, it)) {
            int d = shf_mpack_depth (json_object_iter_value (it));
            if (d > deepest)
                deepest = d;
        }
        return deepest + 1;
    }
    if (json_is_array (value)) {
        size_t i;
        const json_t *member;
        json_array_foreach (value, i, member)
        {
            int d = shf_mpack_depth (member);
            if (d > deepest)
                deepest = d;
        }
        return deepest + 1;
    }
    return 0;
}

static uint64_t
s_random (uint64_t *state)
{
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}

size_t
shf_mpack_mutate (const void *frame, size_t size, uint8_t *out, uint64_t *seed)
{
    assert (frame && size > 0 && out && seed);
    memcpy (out, frame, size);
    size_t out_size = size;
    int edits = 1 + (int) (s_random (seed) % 3);
    for (int e = 0; e < edits; e++) {
        uint64_t r = s_random (seed);
        size_t at = (size_t) (r % out_size);
        switch ((r >> 32) % 4) {
            case 0:
                out [at] = (uint8_t) (r >> 40);
                break;
            case 1:
                out [at] ^= (uint8_t) (1 << ((r >> 40) % 8));
                break;
            case 2:
                out_size = at + 1;
                break;
            default:
                if (out_size < size + 2)
                    out [out_size++] = (uint8_t) (r >> 40);
        }
    }
    return out_size;
}

void
shf_mpack_test (bool verbose)
{
    printf (" * shf_mpack: ");
    if (verbose)
        printf ("\n");

    //  Round trips of every JSON type, at every integer and length edge.
    const int64_t ints [] = {
        0,         1,      127,    128,           255,
        256,       65535,  65536,  4294967295LL,  4294967296LL,
        INT64_MAX, -1,     -32,    -33,           -128,
        -129,      -32768, -32769, -2147483648LL, -2147483649LL,
        INT64_MIN};
    for (size_t i = 0; i < sizeof ints / sizeof ints [0]; i++) {
        json_t *v = json_integer (ints [i]);
        s_round_trip (v);
        json_decref (v);
    }
    const double reals [] = {0.0, -0.5, 3.141592653589793, 1e300, -1e-300};
    for (size_t i = 0; i < sizeof reals / sizeof reals [0]; i++) {
        json_t *v = json_real (reals [i]);
        s_round_trip (v);
        json_decref (v);
    }
    const size_t lens [] = {0, 1, 31, 32, 255, 256, 65535, 65536, 100000};
    for (size_t i = 0; i < sizeof lens / sizeof lens [0]; i++) {
        char *s = malloc (lens [i] + 1);
        assert (s);
        memset (s, 'x', lens [i]);
        json_t *v = json_stringn (s, lens [i]);
        s_round_trip (v);
        json_decref (v);
        free (s);
    }
    json_t *doc =
        json_pack ("{s:n, s:b, s:b, s:s, s:[i, f, s, {}], s:{s:[]}}", "nil",
                   "t", 1, "f", 0, "utf8", "h\xc3\xa9llo \xe2\x82\xac", "arr",
                   -7, 2.5, "x", "obj", "inner");
    assert (doc);
    s_round_trip (doc);
    json_decref (doc);
    //  Big containers take the 16- and 32-bit headers.
    json_t *big = json_array ();
    json_t *bigmap = json_object ();
    for (int i = 0; i < 70000; i++) {
        json_array_append_new (big, json_integer (i));
        if (i < 20) {
            char key [16];
            snprintf (key, sizeof key, "k%d", i);
            json_object_set_new (bigmap, key, json_integer (i));
        }
    }
    s_round_trip (big);
    s_round_trip (bigmap);
    json_decref (big);
    json_decref (bigmap);

    //  Hand-made encodings the packer never emits are still decoded.
    {
        const uint8_t f32 [] = {0xca, 0x3f, 0xc0, 0x00, 0x00};  //  1.5
        json_t *v = s_decode_ok (f32, sizeof f32);
        assert (json_is_real (v) && json_real_value (v) == 1.5);
        json_decref (v);
        const uint8_t i8 [] = {0xd0, 0x80};  //  -128 as int8
        v = s_decode_ok (i8, sizeof i8);
        assert (json_integer_value (v) == -128);
        json_decref (v);
        const uint8_t i16 [] = {0xd1, 0x00, 0x05};  //  5 as int16
        v = s_decode_ok (i16, sizeof i16);
        assert (json_integer_value (v) == 5);
        json_decref (v);
        const uint8_t s8 [] = {0xd9, 0x02, 'h', 'i'};  //  str8 "hi"
        v = s_decode_ok (s8, sizeof s8);
        assert (strcmp (json_string_value (v), "hi") == 0);
        json_decref (v);
        const uint8_t a16 [] = {0xdc, 0x00, 0x01, 0xc0};  //  array16 [nil]
        v = s_decode_ok (a16, sizeof a16);
        assert (json_array_size (v) == 1);
        json_decref (v);
        const uint8_t m32 [] = {0xdf, 0, 0, 0, 1, 0xa1, 'a', 0x01};
        v = s_decode_ok (m32, sizeof m32);
        assert (json_integer_value (json_object_get (v, "a")) == 1);
        json_decref (v);
        const uint8_t nul [] = {0xa3, 'a', 0, 'b'};  //  NUL inside a value
        v = s_decode_ok (nul, sizeof nul);
        assert (json_string_length (v) == 3);
        s_round_trip (v);
        json_decref (v);
    }

    //  Rejections
    const uint8_t huge_array [] = {0xdd, 0xff, 0xff, 0xff, 0xff};
    s_expect_reject (huge_array, sizeof huge_array, "dd ff ff ff ff", verbose);
    const uint8_t huge_map [] = {0xdf, 0xff, 0xff, 0xff, 0xff};
    s_expect_reject (huge_map, sizeof huge_map, "df ff ff ff ff", verbose);
    const uint8_t map_lie [] = {0x81, 0xa1};  //  1 entry, 1 byte left
    s_expect_reject (map_lie, sizeof map_lie, "map count vs bytes", verbose);
    const uint8_t trunc_map [] = {0x82, 0xa1, 'a', 0x01, 0xa1};
    s_expect_reject (trunc_map, sizeof trunc_map, "truncated map", verbose);
    const uint8_t str_lie [] = {0xd9, 0x20, 'a', 'b'};
    s_expect_reject (str_lie, sizeof str_lie, "str8 longer than data", verbose);
    const uint8_t str32_lie [] = {0xdb, 0xff, 0xff, 0xff, 0xff, 'a'};
    s_expect_reject (str32_lie, sizeof str32_lie, "str32 longer than data",
                     verbose);
    const uint8_t trunc_hdr [] = {0xda, 0x01};
    s_expect_reject (trunc_hdr, sizeof trunc_hdr, "truncated str16 header",
                     verbose);
    const uint8_t trunc_int [] = {0xcf, 0x01, 0x02};
    s_expect_reject (trunc_int, sizeof trunc_int, "truncated uint64", verbose);
    const uint8_t big_u64 [] = {0xcf, 0x80, 0, 0, 0, 0, 0, 0, 0};
    s_expect_reject (big_u64, sizeof big_u64, "uint64 > INT64_MAX", verbose);
    const uint8_t bin [] = {0xc4, 0x01, 0x00};
    s_expect_reject (bin, sizeof bin, "bin8", verbose);
    const uint8_t ext [] = {0xd4, 0x01, 0x00};
    s_expect_reject (ext, sizeof ext, "fixext1", verbose);
    const uint8_t ext8 [] = {0xc7, 0x01, 0x01, 0x00};
    s_expect_reject (ext8, sizeof ext8, "ext8", verbose);
    const uint8_t never [] = {0xc1};
    s_expect_reject (never, sizeof never, "0xc1", verbose);
    const uint8_t trailing [] = {0x01, 0x02};
    s_expect_reject (trailing, sizeof trailing, "trailing bytes", verbose);
    s_expect_reject ("", 0, "empty input", verbose);
    const uint8_t int_key [] = {0x81, 0x01, 0x02};
    s_expect_reject (int_key, sizeof int_key, "integer map key", verbose);
    const uint8_t dup_key [] = {0x82, 0xa1, 'a', 0x01, 0xa1, 'a', 0x02};
    s_expect_reject (dup_key, sizeof dup_key, "duplicate key", verbose);
    const uint8_t nul_key [] = {0x81, 0xa2, 'a', 0, 0x01};
    s_expect_reject (nul_key, sizeof nul_key, "NUL in key", verbose);
    const uint8_t bad_utf8 [] = {0xa2, 0xc3, 0x28};
    s_expect_reject (bad_utf8, sizeof bad_utf8, "bad UTF-8", verbose);
    const uint8_t overlong [] = {0xa2, 0xc0, 0xaf};
    s_expect_reject (overlong, sizeof overlong, "overlong UTF-8", verbose);
    const uint8_t surrogate [] = {0xa3, 0xed, 0xa0, 0x80};
    s_expect_reject (surrogate, sizeof surrogate, "UTF-8 surrogate", verbose);
    const uint8_t bad_key [] = {0x81, 0xa1, 0xff, 0x01};
    s_expect_reject (bad_key, sizeof bad_key, "bad UTF-8 key", verbose);
    const uint8_t nan64 [] = {0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0};
    s_expect_reject (nan64, sizeof nan64, "float64 NaN", verbose);
    const uint8_t inf32 [] = {0xca, 0x7f, 0x80, 0, 0};
    s_expect_reject (inf32, sizeof inf32, "float32 +Inf", verbose);

    //  Nesting: 64 levels decode, 65 do not, nor do 100k.
    size_t deep_size = 100000;
    uint8_t *deep = malloc (deep_size + 1);
    assert (deep);
    memset (deep, 0x91, deep_size);
    deep [deep_size] = 0xc0;
    s_expect_reject (deep, deep_size + 1, "100k x 0x91", verbose);
    s_expect_reject (deep, deep_size, "100k x 0x91, truncated", verbose);
    deep [SHF_MPACK_MAX_DEPTH - 1] = 0x90;  //  64 arrays, innermost empty
    json_t *v = s_decode_ok (deep, SHF_MPACK_MAX_DEPTH);
    char *data;
    size_t size;
    assert (shf_mpack_encode (v, &data, &size) == SHF_OK);
    assert (size == SHF_MPACK_MAX_DEPTH);
    free (data);
    json_t *deeper = json_array ();
    json_array_append_new (deeper, v);  //  65 levels cannot be encoded
    assert (shf_mpack_encode (deeper, &data, &size) == SHF_EINVAL);
    assert (shf_mpack_size (deeper, &size) == SHF_EINVAL);
    json_decref (deeper);
    memset (deep, 0x91, SHF_MPACK_MAX_DEPTH + 1);
    deep [SHF_MPACK_MAX_DEPTH] = 0x90;
    s_expect_reject (deep, SHF_MPACK_MAX_DEPTH + 1, "65 levels", verbose);
    //  Maps count as levels too.
    for (size_t i = 0; i < 65; i++) {
        deep [i * 3] = 0x81;
        deep [i * 3 + 1] = 0xa1;
        deep [i * 3 + 2] = 'k';
    }
    deep [65 * 3] = 0xc0;
    s_expect_reject (deep, 65 * 3 + 1, "65 nested maps", verbose);
    free (deep);

    //  A frame of empty maps is cut off by the value budget.
    size_t many = SHF_MPACK_MAX_VALUES + 10;
    uint8_t *flat = malloc (5 + many);
    assert (flat);
    flat [0] = 0xdd;
    flat [1] = (uint8_t) (many >> 24);
    flat [2] = (uint8_t) (many >> 16);
    flat [3] = (uint8_t) (many >> 8);
    flat [4] = (uint8_t) many;
    memset (flat + 5, 0x80, many);
    s_expect_reject (flat, 5 + many, "values", verbose);
    free (flat);

    //  Maps written back to back: each the bytes shf_mpack_encode makes of
    //  the same object (a fixmap, then one of 17 fields that needs map16);
    //  a map with a value too deep is taken back whole.
    shf_mpack_seq_t seq;
    shf_mpack_seq_init (&seq);
    json_t *small =
        json_pack ("{s:i, s:s, s:[i, n]}", "id", 7, "type", "X", "v", 300);
    json_t *wide = json_object ();
    json_t *levels = json_array ();  //  64 levels: too deep inside a map
    for (int level = 1; level < SHF_MPACK_MAX_DEPTH; level++) {
        json_t *outer = json_array ();
        json_array_append_new (outer, levels);
        levels = outer;
    }
    size_t at [2], sizes [2];
    for (int round = 0; round < 2; round++) {
        shf_mpack_seq_clear (&seq);
        at [0] = shf_mpack_seq_begin (&seq);
        shf_mpack_seq_int (&seq, "id", 7);
        shf_mpack_seq_str (&seq, "type", "X");
        shf_mpack_seq_json (&seq, "v", json_object_get (small, "v"));
        assert (shf_mpack_seq_end (&seq, &sizes [0]) == SHF_OK);
        at [1] = shf_mpack_seq_begin (&seq);
        for (int f = 0; f < 17; f++) {
            char key [8];
            snprintf (key, sizeof key, "k%d", f);
            shf_mpack_seq_int (&seq, key, f * 1000);
            json_object_set_new (wide, key, json_integer (f * 1000));
        }
        assert (shf_mpack_seq_end (&seq, &sizes [1]) == SHF_OK);
        size_t before = seq.out.size;
        shf_mpack_seq_begin (&seq);
        shf_mpack_seq_int (&seq, "id", 8);
        shf_mpack_seq_json (&seq, "deep", levels);
        assert (shf_mpack_seq_end (&seq, &size) == SHF_EINVAL && size == 0);
        assert (seq.out.size == before);
        const json_t *objects [2] = {small, wide};
        for (int m = 0; m < 2; m++) {
            assert (shf_mpack_encode (objects [m], &data, &size) == SHF_OK);
            assert (size == sizes [m]);
            assert (memcmp (seq.out.data + at [m], data, size) == 0);
            free (data);
        }
        assert (at [0] == SHF_MPACK_SEQ_HEAD && at [1] == at [0] + sizes [0]
                && seq.out.size == at [1] + sizes [1]);
        //  both as one array: the bytes of encoding [small, wide]
        const uint8_t *array;
        size_t array_size;
        shf_mpack_seq_array (&seq, &array, &array_size);
        json_t *both = json_pack ("[O, O]", small, wide);
        assert (shf_mpack_encode (both, &data, &size) == SHF_OK);
        assert (size == array_size && memcmp (array, data, size) == 0);
        free (data);
        json_decref (both);
    }
    //  Arrays among them: a fixarray, one of 17 elements (array16), one
    //  with a value too deep taken back; each the bytes of encode.
    shf_mpack_seq_clear (&seq);
    shf_mpack_seq_begin_array (&seq);
    shf_mpack_seq_item_int (&seq, -3);
    shf_mpack_seq_item_str (&seq, "x");
    shf_mpack_seq_item_json (&seq, NULL);
    shf_mpack_seq_item_json (&seq, json_object_get (small, "v"));
    assert (shf_mpack_seq_end (&seq, &sizes [0]) == SHF_OK);
    shf_mpack_seq_begin_array (&seq);
    for (int e = 0; e < 17; e++)
        shf_mpack_seq_item_int (&seq, e);
    assert (shf_mpack_seq_end (&seq, &sizes [1]) == SHF_OK);
    size_t kept = seq.out.size;
    shf_mpack_seq_begin_array (&seq);
    shf_mpack_seq_item_json (&seq, levels);
    assert (shf_mpack_seq_end (&seq, &size) == SHF_EINVAL && size == 0);
    assert (seq.out.size == kept);
    {
        const uint8_t *items;
        size_t items_size;
        shf_mpack_seq_array (&seq, &items, &items_size);
        json_t *expect = json_pack ("[[i, s, n, [i, n]], []]", -3, "x", 300);
        for (int e = 0; e < 17; e++)
            json_array_append_new (json_array_get (expect, 1),
                                   json_integer (e));
        assert (shf_mpack_encode (expect, &data, &size) == SHF_OK);
        assert (size == items_size && memcmp (items, data, size) == 0);
        free (data);
        json_decref (expect);
    }
    //  17 maps take an array16 header; none, an empty array
    shf_mpack_seq_clear (&seq);
    const uint8_t *array;
    size_t array_size;
    shf_mpack_seq_array (&seq, &array, &array_size);
    assert (array_size == 1 && array [0] == 0x90);
    for (int m = 0; m < 17; m++) {
        shf_mpack_seq_begin (&seq);
        shf_mpack_seq_int (&seq, "id", m);
        assert (shf_mpack_seq_end (&seq, &size) == SHF_OK);
    }
    shf_mpack_seq_array (&seq, &array, &array_size);
    json_t *decoded;
    assert (shf_mpack_decode (array, array_size, &decoded, NULL, 0) == SHF_OK);
    assert (array [0] == 0xdc && json_array_size (decoded) == 17
            && json_integer_value (
                   json_object_get (json_array_get (decoded, 16), "id"))
                   == 16);
    json_decref (decoded);
    json_decref (small);
    json_decref (wide);
    shf_mpack_seq_free (&seq);

    //  Values put one by one: the bytes shf_mpack_encode writes for the
    //  same members in the same order, into a zero-initialised writer that
    //  is then reused; a value too deep for where it starts is refused.
    {
        json_t *expect = json_pack (
            "{s:i, s:s, s:[i, n, {s:f}], s:n, s:[i, s], s:n, s:{}, s:I}", "id",
            -300, "name", "x", "v", 1, "a", 2.5, "none", "list", 70000, "two",
            "null_json", "empty", "big", (json_int_t) INT64_MIN);
        assert (expect);
        char *want;
        size_t want_size;
        assert (shf_mpack_encode (expect, &want, &want_size) == SHF_OK);
        shf_mpack_out_t out = {0};
        for (int round = 0; round < 2; round++) {
            out.size = 0;
            shf_mpack_put_map (&out, 8);
            shf_mpack_put_str (&out, "id", 2);
            shf_mpack_put_int (&out, -300);
            shf_mpack_put_str (&out, "name", 4);
            shf_mpack_put_str (&out, "x", 1);
            shf_mpack_put_str (&out, "v", 1);
            assert (shf_mpack_put_json (&out, json_object_get (expect, "v"), 1)
                    == SHF_OK);
            shf_mpack_put_str (&out, "none", 4);
            shf_mpack_put_nil (&out);
            shf_mpack_put_str (&out, "list", 4);
            shf_mpack_put_array (&out, 2);
            shf_mpack_put_int (&out, 70000);
            shf_mpack_put_str (&out, "two", 3);
            shf_mpack_put_str (&out, "null_json", 9);
            assert (shf_mpack_put_json (&out, NULL, 1) == SHF_OK);
            shf_mpack_put_str (&out, "empty", 5);
            assert (
                shf_mpack_put_json (&out, json_object_get (expect, "empty"), 1)
                == SHF_OK);
            shf_mpack_put_str (&out, "big", 3);
            shf_mpack_put_int (&out, INT64_MIN);
            assert (out.size == want_size
                    && memcmp (out.data, want, want_size) == 0);
        }
        free (want);
        json_decref (expect);
        //  17 members and a 40-byte string take the 16-bit and str8 headers
        expect = json_object ();
        out.size = 0;
        shf_mpack_put_map (&out, 17);
        for (int f = 0; f < 17; f++) {
            char key [48];
            snprintf (key, sizeof key, "k%02d_%s", f,
                      "a key long enough for str8");
            json_object_set_new (expect, key, json_integer (f));
            shf_mpack_put_str (&out, key, strlen (key));
            shf_mpack_put_int (&out, f);
        }
        assert (shf_mpack_encode (expect, &want, &want_size) == SHF_OK);
        assert (out.size == want_size
                && memcmp (out.data, want, want_size) == 0);
        free (want);
        json_decref (expect);
        //  levels is 64 deep: it fits at the top, not inside a map
        out.size = 0;
        assert (shf_mpack_put_json (&out, levels, 0) == SHF_OK);
        assert (out.size == SHF_MPACK_MAX_DEPTH);
        assert (shf_mpack_put_json (&out, levels, 1) == SHF_EINVAL);
        shf_mpack_out_free (&out);
        assert (!out.data && out.size == 0 && out.alloc == 0);
    }
    json_decref (levels);

    //  NULL err is allowed.
    json_t *none = NULL;
    assert (shf_mpack_decode (huge_array, sizeof huge_array, &none, NULL, 0)
            == SHF_EINVAL);
    assert (shf_mpack_utf8_valid ("\xf0\x9f\x98\x80", 4));
    assert (!shf_mpack_utf8_valid ("\xf4\x90\x80\x80", 4));  //  > U+10FFFF

    printf ("OK\n");
}
