/*  shf_token.h - sealed task tokens.

    A task token names one attempt of one activity: (shard, epoch, ns,
    wf_id, run_id, step, attempt). It is sealed with a keyed BLAKE2b-256
    tag under the node secret (tokens of earlier versions, with an
    HMAC-SHA512-256 tag, still open), then base64url-encoded, so a
    completion can be routed to its shard without a lookup and a worker
    cannot forge or alter one. Opening checks the MAC before decoding
    anything.

    Thread rule: stateless apart from the key passed in; any thread.
*/
#ifndef SHF_TOKEN_H_INCLUDED
#define SHF_TOKEN_H_INCLUDED
#include "../common/shf_err.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SHF_TOKEN_KEY_BYTES 32
#define SHF_TOKEN_MAX_TEXT  2048

typedef struct {
    uint32_t shard;
    uint64_t epoch;
    char ns [256];
    char wf_id [256];
    char run_id [64];
    char step [129];
    uint32_t attempt;
} shf_token_t;

//  Seal into text (NUL-terminated, at most SHF_TOKEN_MAX_TEXT bytes).
//  SHF_ETOOLARGE if it does not fit.
shf_err_t
    shf_token_seal (const shf_token_t *token,
                    const uint8_t key [SHF_TOKEN_KEY_BYTES], char *text,
                    size_t text_size) SHF_MUST_CHECK;

//  Verify and decode. SHF_EAUTH for a bad MAC, SHF_EINVAL for text that
//  is not a token.
shf_err_t
    shf_token_open (const char *text, const uint8_t key [SHF_TOKEN_KEY_BYTES],
                    shf_token_t *token) SHF_MUST_CHECK;

//  A hash of token text for hash tables (zhashx_set_key_hasher): FNV-1a
//  over its last 16 characters, where the MAC is, so uniform for tokens
//  a node issued, and ~20x cheaper than hashing ~200 characters.
size_t shf_token_hash (const void *text);

void
    shf_token_test (bool verbose);

#endif
