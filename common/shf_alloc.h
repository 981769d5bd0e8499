/*  shf_alloc.h - the one allocation path for objects that can only fail
    by running out of memory (STYLE.md: shf_x_new aborts on OOM).
*/
#ifndef SHF_ALLOC_H_INCLUDED
#define SHF_ALLOC_H_INCLUDED
#include <stddef.h>

//  Zeroed memory of size bytes (at least 1); aborts when there is none.
void *shf_alloc (size_t size);

//  realloc that aborts when there is no memory.
void *shf_realloc (void *ptr, size_t size);

#endif
