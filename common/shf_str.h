/*  shf_str.h - bounded string copies for the hot paths.

    snprintf ("%s") costs ~1,200 instructions a call (it parses its format
    every time); the shard and router build names and keys several times
    per transition. These copy and always NUL-terminate, truncating to the
    buffer as snprintf would.

    Thread rule: stateless; any thread.
*/
#ifndef SHF_STR_H_INCLUDED
#define SHF_STR_H_INCLUDED
#include <stdbool.h>
#include <stddef.h>

//  Copies src into buf (size >= 1 bytes), truncated; returns the length
//  written.
size_t shf_str_copy (char *buf, size_t size, const char *src);

//  Writes a, sep, b into buf as one string, truncated.
void shf_str_join (char *buf, size_t size, const char *a, char sep,
                   const char *b);

void shf_str_test (bool verbose);

#endif
