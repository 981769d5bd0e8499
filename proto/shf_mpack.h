/*  shf_mpack.h - msgpack <-> JSON values, with a decoder that trusts
    nothing.

    Every msgpack byte string that arrives from outside (wire frames) or
    from disk (stored records) is decoded here and nowhere else. The decoder
    is a cursor over the bytes actually present: a declared length (str,
    bin, array, map, ext) is checked against the bytes left BEFORE anything
    is allocated (`dd ff ff ff ff` is rejected, not allocated), nesting is
    bounded, map keys must be strings, and the whole input must be consumed.
    Values become jansson json_t: integers are exact int64 (uint64 above
    INT64_MAX is rejected), floats are doubles, bin and ext are rejected.
    msgpack-c's packer is used for encoding only.

    Thread rule: stateless; any thread.
*/
#ifndef SHF_MPACK_H_INCLUDED
#define SHF_MPACK_H_INCLUDED
#include "../common/shf_err.h"
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define SHF_MPACK_MAX_DEPTH  64
#define SHF_MPACK_MAX_VALUES (256 * 1024)

//  Reads a big-endian unsigned integer of n bytes (n <= 8) at *p if they
//  lie before end, and moves *p past it. The one bounded read under every
//  msgpack cursor here: this decoder's, shf_envelope's and shf_token's.
static inline bool
shf_mpack_read_be (const uint8_t **p, const uint8_t *end, size_t n,
                   uint64_t *value_p)
{
    if ((size_t) (end - *p) < n)
        return false;
    uint64_t value = 0;
    for (size_t i = 0; i < n; i++)
        value = (value << 8) | (*p) [i];
    *p += n;
    *value_p = value;
    return true;
}

//  Decode exactly one msgpack value occupying all of data[0..size).
//  On success *value_p is the caller's. Returns SHF_EINVAL (malformed,
//  truncated, trailing bytes, non-string or duplicate key, too deep,
//  bin/ext, NaN/Inf, non-UTF-8 string) with a short reason in err (may be
//  NULL), *value_p stays NULL.
shf_err_t shf_mpack_decode (const void *data, size_t size, json_t **value_p,
                            char *err, size_t errlen) SHF_MUST_CHECK;

//  Encode a JSON value. On success *data_p is the caller's (free()).
//  SHF_EINVAL for values deeper than SHF_MPACK_MAX_DEPTH.
shf_err_t shf_mpack_encode (const json_t *value, char **data_p,
                            size_t *size_p) SHF_MUST_CHECK;

//  Encode an object with one more integer member, tag (replacing a member
//  of that name), without copying the object: how messages get "v".
shf_err_t shf_mpack_encode_tagged (const json_t *object, const char *tag,
                                   int64_t tag_value, char **data_p,
                                   size_t *size_p) SHF_MUST_CHECK;

//  A map written field by field, for messages of a fixed shape that are
//  built without a JSON tree (the task a shard sends). The count is given
//  first and checked at the end; values are written as shf_mpack_encode
//  writes them. (One map of a shf_mpack_seq_t, below.)
typedef struct shf_mpack_map shf_mpack_map_t;

shf_mpack_map_t *shf_mpack_map_new (size_t count);
void shf_mpack_map_str (shf_mpack_map_t *self, const char *key,
                        const char *value);
void shf_mpack_map_int (shf_mpack_map_t *self, const char *key, int64_t value);
//  value NULL is written as nil.
void shf_mpack_map_json (shf_mpack_map_t *self, const char *key,
                         const json_t *value);
//  value: the bytes of one msgpack value, written as they are.
void shf_mpack_map_raw (shf_mpack_map_t *self, const char *key,
                        const void *value, size_t size);

//  Ends the map (self is destroyed): *data_p is the caller's (free()).
//  SHF_EINVAL when a value nests deeper than SHF_MPACK_MAX_DEPTH, the
//  fields written are not the count given, or there are over 65,535.
shf_err_t shf_mpack_map_finish (shf_mpack_map_t **self_p, char **data_p,
                                size_t *size_p) SHF_MUST_CHECK;

//  Maps written back to back into one growing buffer, field by field, each
//  map's count fixed only when it ends: a history event's attributes depend
//  on the transition, and its map is written as the transition goes, with
//  no JSON tree built and then encoded. Values are written as
//  shf_mpack_encode writes them, and every map in the smallest header.
typedef struct {
    uint8_t *data;
    size_t size;
    size_t alloc;
    bool counting;
} shf_mpack_out_t;  //  shf_mpack.c's writer

//  Values written one by one to a writer, for a record of a known shape
//  (shf_run_encode) written without a JSON tree: a container's header
//  first, with its count, then its entries (a map's as key string, value).
//  A zero-initialised writer is empty; out->size is the bytes written, and
//  setting it to 0 reuses the buffer. Bytes as shf_mpack_encode writes.
void shf_mpack_put_map (shf_mpack_out_t *out, size_t count);
void shf_mpack_put_array (shf_mpack_out_t *out, size_t count);
void shf_mpack_put_str (shf_mpack_out_t *out, const char *s, size_t len);
//  The same, inline for the common case of a short string with room for
//  it (a record's keys, ~50 a run state); every string writer here goes
//  through it.
static inline void
shf_mpack_put_short (shf_mpack_out_t *out, const char *s, size_t len)
{
    if (len < 32 && !out->counting && out->alloc - out->size > len) {
        uint8_t *at = out->data + out->size;
        at [0] = (uint8_t) (0xa0 | len);
        memcpy (at + 1, s, len);
        out->size += len + 1;
    }
    else
        shf_mpack_put_str (out, s, len);
}
void shf_mpack_put_int (shf_mpack_out_t *out, int64_t value);
void shf_mpack_put_nil (shf_mpack_out_t *out);
//  value NULL is written as nil; depth: the nesting the value starts at
//  (so the limit SHF_MPACK_MAX_DEPTH counts from the outermost map: a
//  member of a top-level map is at depth 1). SHF_OK, or SHF_EINVAL when
//  it nests too deep (what was written of it stays: the caller takes the
//  record back by resetting out->size).
shf_err_t shf_mpack_put_json (shf_mpack_out_t *out, const json_t *value,
                              int depth) SHF_MUST_CHECK;
//  Frees the buffer and zeroes the writer.
void shf_mpack_out_free (shf_mpack_out_t *out);

typedef struct {
    //  out.data [SHF_MPACK_SEQ_HEAD, out.size): the maps so far, after room
    //  for the header that makes them one array (shf_mpack_seq_array)
    shf_mpack_out_t out;
    size_t maps;    //  maps (or arrays) closed
    size_t open;    //  where the open map's header byte is
    size_t fields;  //  fields written to the open map (elements: array)
    bool is_open;
    bool is_array;  //  the open container is an array (seq_begin_array)
    int rc;  //  the open map's first failure (a value nested too deep)
} shf_mpack_seq_t;

#define SHF_MPACK_SEQ_HEAD 5

void shf_mpack_seq_init (shf_mpack_seq_t *self);
//  Forgets the maps, keeps the buffer.
void shf_mpack_seq_clear (shf_mpack_seq_t *self);
void shf_mpack_seq_free (shf_mpack_seq_t *self);
//  Opens a map (none may be open); returns the offset it starts at.
size_t shf_mpack_seq_begin (shf_mpack_seq_t *self);
void shf_mpack_seq_str (shf_mpack_seq_t *self, const char *key,
                        const char *value);
void shf_mpack_seq_int (shf_mpack_seq_t *self, const char *key, int64_t value);
//  value NULL is written as nil.
void shf_mpack_seq_json (shf_mpack_seq_t *self, const char *key,
                         const json_t *value);
//  Opens an array instead (the packed form of a record): its elements are
//  written with the seq_item_* calls, and seq_end closes it as a map.
size_t shf_mpack_seq_begin_array (shf_mpack_seq_t *self);
void shf_mpack_seq_item_int (shf_mpack_seq_t *self, int64_t value);
void shf_mpack_seq_item_str (shf_mpack_seq_t *self, const char *value);
//  value NULL is written as nil.
void shf_mpack_seq_item_json (shf_mpack_seq_t *self, const json_t *value);
//  Closes the open map (or array); *size_p is its size in bytes.
//  SHF_EINVAL when a value nested deeper than SHF_MPACK_MAX_DEPTH: the
//  container is taken back.
shf_err_t shf_mpack_seq_end (shf_mpack_seq_t *self,
                             size_t *size_p) SHF_MUST_CHECK;
//  The maps closed so far as one msgpack array, its header written in the
//  room before them (no copy); borrowed until the next write. No map may
//  be open.
void shf_mpack_seq_array (shf_mpack_seq_t *self, const uint8_t **data_p,
                          size_t *size_p);

//  The number of bytes shf_mpack_encode would produce, counted without
//  allocating (used to check payload limits). SHF_EINVAL as encode.
shf_err_t shf_mpack_size (const json_t *value, size_t *size_p) SHF_MUST_CHECK;

//  True when s[0..len) is strict UTF-8 (no overlong forms, surrogates or
//  code points above U+10FFFF), the rule the decoder applies to strings.
bool shf_mpack_utf8_valid (const char *s, size_t len);

//  Nesting depth of a value: 0 for a scalar, 1 for a flat array or map.
//  Recursive: call only on values the decoder (or a bounded builder) made.
int shf_mpack_depth (const json_t *value);

//  For self-tests that check a reader against the decoder: a copy of
//  frame[0..size) (size > 0) with one to three random edits (a byte set,
//  a bit flipped, the frame cut short, a byte appended) written to out,
//  which has room for size + 2 bytes; returns its size. *seed moves on
//  (xorshift: the same seed, the same edits).
size_t shf_mpack_mutate (const void *frame, size_t size, uint8_t *out,
                         uint64_t *seed);

void shf_mpack_test (bool verbose);

#endif
