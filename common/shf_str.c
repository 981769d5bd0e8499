/*  shf_str.c - bounded string copies (shf_str.h).
*/
#include "shf_str.h"
#include <assert.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

size_t
shf_str_copy (char *buf, size_t size, const char *src)
{
    assert (size >= 1);
    size_t len = strnlen (src, size - 1);
    memcpy (buf, src, len);
    buf [len] = 0;
    return len;
}

void
shf_str_join (char *buf, size_t size, const char *a, char sep, const char *b)
{
    size_t len = shf_str_copy (buf, size, a);
    if (len + 1 < size) {
        buf [len] = sep;
        shf_str_copy (buf + len + 1, size - len - 1, b);
    }
}

void
shf_str_test (bool verbose)
{
    printf (" * shf_str: ");
    if (verbose)
        printf ("\n");
    char buf [8];
    assert (shf_str_copy (buf, sizeof buf, "abc") == 3);
    assert (strcmp (buf, "abc") == 0);
    assert (shf_str_copy (buf, sizeof buf, "abcdefghij") == 7);
    assert (strcmp (buf, "abcdefg") == 0);
    assert (shf_str_copy (buf, 1, "abc") == 0 && buf [0] == 0);
    shf_str_join (buf, sizeof buf, "ns", '/', "wf");
    assert (strcmp (buf, "ns/wf") == 0);
    shf_str_join (buf, sizeof buf, "abcdef", '/', "xyz");
    assert (strcmp (buf, "abcdef/") == 0);
    shf_str_join (buf, sizeof buf, "abcdefgh", '/', "xyz");
    assert (strcmp (buf, "abcdefg") == 0);
    shf_str_join (buf, sizeof buf, "", '/', "");
    assert (strcmp (buf, "/") == 0);
    printf ("OK\n");
}
