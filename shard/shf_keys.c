/*  shf_keys.c - key builders for the shard's databases (see shf_keys.h).
*/
#include "shf_keys.h"
#include <string.h>

void
shf_key_init (shf_key_t *self)
{
    self->size = 0;
    self->overflow = 0;
}

static void
s_append (shf_key_t *self, const void *data, size_t size)
{
    if (self->size + size > SHF_KEY_MAX) {
        self->overflow = 1;
        return;
    }
    memcpy (self->data + self->size, data, size);
    self->size += size;
}

void
shf_key_raw (shf_key_t *self, const char *s)
{
    s_append (self, s, strlen (s));
}

void
shf_key_str (shf_key_t *self, const char *s)
{
    s_append (self, s, strlen (s) + 1);
}

void
shf_key_u64 (shf_key_t *self, uint64_t v)
{
    unsigned char b [8];
    for (int i = 7; i >= 0; i--) {
        b [i] = (unsigned char) (v & 0xff);
        v >>= 8;
    }
    s_append (self, b, 8);
}

void
shf_key_u32 (shf_key_t *self, uint32_t v)
{
    unsigned char b [4] = {(unsigned char) (v >> 24), (unsigned char) (v >> 16),
                           (unsigned char) (v >> 8), (unsigned char) v};
    s_append (self, b, 4);
}

uint64_t
shf_key_get_u64 (const void *data)
{
    const unsigned char *b = data;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | b [i];
    return v;
}

void
shf_key_exec (shf_key_t *self, const char *ns, const char *wf_id)
{
    shf_key_init (self);
    shf_key_str (self, ns);
    shf_key_raw (self, wf_id);
}

void
shf_key_run (shf_key_t *self, const char *ns, const char *wf_id,
             const char *run_id)
{
    shf_key_str (self, ns);
    shf_key_str (self, wf_id);
    shf_key_str (self, run_id);
}

void
shf_key_placed (shf_key_t *self, int64_t started_at, const char *ns,
                const char *wf_id, const char *run_id)
{
    shf_key_u64 (self, (uint64_t) started_at);
    shf_key_run (self, ns, wf_id, run_id);
}
