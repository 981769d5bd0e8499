/*  shf_workers.c - worker liveness and held tasks (see shf_workers.h).
*/
#include "shf_workers.h"
#include "shf_alloc.h"
#include "shf_token.h"
#include <assert.h>
#include <czmq.h>

typedef struct {
    int64_t last_seen;
    zhashx_t *tokens;  //  set: token -> non-NULL marker
} s_worker_t;

struct shf_workers {
    zhashx_t *workers;  //  name -> s_worker_t
    //  token -> s_worker_t (borrowed): a worker is only ever forgotten
    //  through shf_workers_lose, which first takes its tokens out of here.
    zhashx_t *holder;
};

static void
s_worker_free (void **item)
{
    s_worker_t *w = *item;
    if (w) {
        zhashx_destroy (&w->tokens);
        free (w);
    }
    *item = NULL;
}

shf_workers_t *
shf_workers_new (void)
{
    shf_workers_t *self = shf_alloc (sizeof *self);
    self->workers = zhashx_new ();
    zhashx_set_destructor (self->workers, s_worker_free);
    self->holder = zhashx_new ();
    zhashx_set_key_hasher (self->holder, shf_token_hash);
    return self;
}

void
shf_workers_destroy (shf_workers_t **self_p)
{
    shf_workers_t *self = *self_p;
    if (self) {
        zhashx_destroy (&self->workers);
        zhashx_destroy (&self->holder);
        free (self);
        *self_p = NULL;
    }
}

static s_worker_t *
s_known (shf_workers_t *self, const char *worker, int64_t now)
{
    s_worker_t *w = zhashx_lookup (self->workers, worker);
    if (!w) {
        w = shf_alloc (sizeof *w);
        w->tokens = zhashx_new ();
        zhashx_set_key_hasher (w->tokens, shf_token_hash);
        zhashx_insert (self->workers, worker, w);
    }
    w->last_seen = now;
    return w;
}

void
shf_workers_poll (shf_workers_t *self, const char *worker, int64_t now)
{
    s_known (self, worker, now);
}

void
shf_workers_seen (shf_workers_t *self, const char *worker, int64_t now)
{
    s_worker_t *w = zhashx_lookup (self->workers, worker);
    if (w)
        w->last_seen = now;
}

void
shf_workers_track (shf_workers_t *self, const char *worker, const char *token,
                   int64_t now)
{
    shf_workers_release (self, token);
    s_worker_t *w = s_known (self, worker, now);
    zhashx_insert (w->tokens, token, (void *) 1);
    zhashx_insert (self->holder, token, w);
}

void
shf_workers_release (shf_workers_t *self, const char *token)
{
    s_worker_t *w = zhashx_lookup (self->holder, token);
    if (!w)
        return;
    zhashx_delete (w->tokens, token);
    zhashx_delete (self->holder, token);
}

void
shf_workers_lose (shf_workers_t *self, const char *worker,
                  shf_workers_lost_fn *fn, void *arg)
{
    s_worker_t *w = zhashx_lookup (self->workers, worker);
    if (!w)
        return;
    zlistx_t *tokens = zhashx_keys (w->tokens);
    for (const char *t = zlistx_first (tokens); t; t = zlistx_next (tokens)) {
        fn (arg, worker, t);
        zhashx_delete (self->holder, t);
    }
    zlistx_destroy (&tokens);
    zhashx_delete (self->workers, worker);
}

size_t
shf_workers_expire (shf_workers_t *self, int64_t now, int64_t silence,
                    shf_workers_lost_fn *fn, void *arg)
{
    zlistx_t *names = zhashx_keys (self->workers);
    size_t lost = 0;
    for (const char *name = zlistx_first (names); name;
         name = zlistx_next (names)) {
        s_worker_t *w = zhashx_lookup (self->workers, name);
        if (w->last_seen >= now - silence)
            continue;
        shf_workers_lose (self, name, fn, arg);
        lost++;
    }
    zlistx_destroy (&names);
    return lost;
}

size_t
shf_workers_holding (shf_workers_t *self, const char *worker)
{
    s_worker_t *w = zhashx_lookup (self->workers, worker);
    return w ? zhashx_size (w->tokens) : 0;
}

//  --------------------------------------------------------------------
//  Self-test

static void
s_count_lost (void *arg, const char *worker, const char *token)
{
    int *count = arg;
    assert (strcmp (worker, "dead") == 0);
    assert (strcmp (token, "t1") == 0 || strcmp (token, "t3") == 0);
    (*count)++;
}

static void
s_count_alive (void *arg, const char *worker, const char *token)
{
    int *count = arg;
    assert (strcmp (worker, "alive") == 0);
    assert (strcmp (token, "t4") == 0 || strcmp (token, "t5") == 0);
    (*count)++;
}

void
shf_workers_test (bool verbose)
{
    (void) verbose;
    shf_workers_t *w = shf_workers_new ();
    shf_workers_poll (w, "alive", 0);
    shf_workers_poll (w, "dead", 0);
    shf_workers_track (w, "dead", "t1", 0);
    shf_workers_track (w, "dead", "t2", 0);
    shf_workers_track (w, "dead", "t3", 0);
    shf_workers_track (w, "alive", "t4", 0);
    assert (shf_workers_holding (w, "dead") == 3);
    //  A reported task is no longer held; a re-dispatch moves a token.
    shf_workers_release (w, "t2");
    assert (shf_workers_holding (w, "dead") == 2);
    shf_workers_track (w, "alive", "t4", 0);
    assert (shf_workers_holding (w, "alive") == 1);
    //  Only the silent worker is lost, with the tasks it still held.
    shf_workers_seen (w, "alive", 5000);
    shf_workers_seen (w, "stranger", 5000);  //  unknown: ignored
    int count = 0;
    assert (shf_workers_expire (w, 6000, 4000, s_count_lost, &count) == 1);
    assert (count == 2);
    assert (shf_workers_holding (w, "dead") == 0);
    assert (shf_workers_holding (w, "alive") == 1);
    assert (shf_workers_holding (w, "stranger") == 0);
    shf_workers_release (w, "t1");  //  late report after loss: harmless
    //  Lost at once (its connection is known gone).
    shf_workers_track (w, "alive", "t5", 7000);
    count = 0;
    shf_workers_lose (w, "alive", s_count_alive, &count);
    assert (count == 2 && shf_workers_holding (w, "alive") == 0);
    shf_workers_destroy (&w);
    assert (w == NULL);
}
