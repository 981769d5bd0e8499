/*  shf_cache.c - LRU cache of runs (see shf_cache.h).
*/
#include "shf_cache.h"
#include "shf_alloc.h"
#include <assert.h>
#include <czmq.h>

typedef struct {
    char *key;
    shf_run_t *run;
    void *handle;  //  position in the recency list
} s_entry_t;

struct shf_cache {
    size_t capacity;
    zhashx_t *entries;  //  key -> s_entry_t
    zlistx_t *recency;  //  s_entry_t, least recently used first
};

static void
s_entry_free (void **item)
{
    s_entry_t *e = *item;
    if (e) {
        shf_run_decref (e->run);
        free (e->key);
        free (e);
    }
    *item = NULL;
}

shf_cache_t *
shf_cache_new (size_t capacity)
{
    assert (capacity >= 1);
    shf_cache_t *self = shf_alloc (sizeof *self);
    self->capacity = capacity;
    self->entries = zhashx_new ();
    zhashx_set_destructor (self->entries, s_entry_free);
    self->recency = zlistx_new ();
    return self;
}

void
shf_cache_destroy (shf_cache_t **self_p)
{
    shf_cache_t *self = *self_p;
    if (self) {
        zlistx_destroy (&self->recency);
        zhashx_destroy (&self->entries);
        free (self);
        *self_p = NULL;
    }
}

shf_run_t *
shf_cache_lookup (shf_cache_t *self, const char *key)
{
    s_entry_t *e = zhashx_lookup (self->entries, key);
    if (!e)
        return NULL;
    zlistx_move_end (self->recency, e->handle);
    return e->run;
}

void
shf_cache_put (shf_cache_t *self, const char *key, shf_run_t *run)
{
    s_entry_t *e = zhashx_lookup (self->entries, key);
    if (e) {
        if (e->run != run) {
            shf_run_decref (e->run);
            e->run = run;
        }
        zlistx_move_end (self->recency, e->handle);
        return;
    }
    while (zhashx_size (self->entries) >= self->capacity) {
        s_entry_t *oldest = zlistx_first (self->recency);
        zlistx_delete (self->recency, oldest->handle);
        zhashx_delete (self->entries, oldest->key);
    }
    e = shf_alloc (sizeof *e);
    e->key = strdup (key);
    e->run = run;
    e->handle = zlistx_add_end (self->recency, e);
    zhashx_insert (self->entries, key, e);
}

void
shf_cache_purge (shf_cache_t *self)
{
    zlistx_purge (self->recency);
    zhashx_purge (self->entries);
}

size_t
shf_cache_size (shf_cache_t *self)
{
    return zhashx_size (self->entries);
}

//  A run told apart by its version.
static shf_run_t *
s_test_run (int64_t version)
{
    shf_run_t *run = shf_run_new ();
    run->version = version;
    return run;
}

void
shf_cache_test (bool verbose)
{
    (void) verbose;
    shf_cache_t *cache = shf_cache_new (2);
    shf_cache_put (cache, "a", s_test_run (1));
    shf_cache_put (cache, "b", s_test_run (2));
    //  Touching a makes b the least recently used: c evicts b.
    assert (shf_cache_lookup (cache, "a")->version == 1);
    shf_cache_put (cache, "c", s_test_run (3));
    assert (shf_cache_size (cache) == 2);
    assert (shf_cache_lookup (cache, "b") == NULL);
    assert (shf_cache_lookup (cache, "a") && shf_cache_lookup (cache, "c"));
    //  Replacing keeps one entry; putting the same run again is a no-op.
    shf_cache_put (cache, "c", s_test_run (4));
    shf_run_t *c = shf_cache_lookup (cache, "c");
    assert (c->version == 4);
    shf_cache_put (cache, "c", c);
    assert (shf_cache_size (cache) == 2);
    shf_cache_purge (cache);
    assert (shf_cache_size (cache) == 0 && !shf_cache_lookup (cache, "a"));
    shf_cache_put (cache, "d", s_test_run (5));
    assert (shf_cache_size (cache) == 1);
    shf_cache_destroy (&cache);
    assert (cache == NULL);
}
