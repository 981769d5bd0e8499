/*  shf_alloc.c - calloc/realloc that abort on OOM, in one place.
*/
#include "shf_alloc.h"
#include <stdlib.h>

void *
shf_alloc (size_t size)
{
    void *p = calloc (1, size ? size : 1);
    if (!p)
        abort ();
    return p;
}

void *
shf_realloc (void *ptr, size_t size)
{
    void *p = realloc (ptr, size ? size : 1);
    if (!p)
        abort ();
    return p;
}
