/*  shf_matcher.c - fair matching of queued tasks to pollers with credit.
*/
#include "shf_matcher.h"
#include "shf_token.h"
#include <assert.h>
#include <czmq.h>

typedef struct {
    int64_t credit;
    int64_t last_seen;
    int64_t gen;  //  of the last reset grant; -1 before one
} s_poller_t;

//  A queued task and the token it is known by.
typedef struct {
    void *task;
    char token [];
} s_entry_t;

typedef struct {
    zlistx_t *tasks;    //  s_entry_t *, FIFO (freed with s_entry_destroy)
    zhashx_t *tokens;   //  token -> handle in tasks
    zhashx_t *pollers;  //  worker -> s_poller_t
    shf_matcher_free_fn *free_task;  //  the matcher's
} s_queue_t;

struct shf_matcher {
    zhashx_t *queues;  //  name -> s_queue_t
    shf_matcher_send_fn *send;
    shf_matcher_free_fn *free_task;
    void *arg;
};

//  Takes a queued task out of its queue and frees it.
static void
s_entry_destroy (s_queue_t *q, void *handle)
{
    s_entry_t *entry = zlistx_handle_item (handle);
    zhashx_delete (q->tokens, entry->token);
    zlistx_delete (q->tasks, handle);
    q->free_task (entry->task);
    free (entry);
}

static void
s_queue_free (void **item)
{
    s_queue_t *q = *item;
    if (q) {
        while (zlistx_first (q->tasks))
            s_entry_destroy (q, zlistx_cursor (q->tasks));
        zhashx_destroy (&q->tokens);
        zlistx_destroy (&q->tasks);
        zhashx_destroy (&q->pollers);
        free (q);
    }
    *item = NULL;
}

static void
s_poller_free (void **item)
{
    free (*item);
    *item = NULL;
}

shf_matcher_t *
shf_matcher_new (shf_matcher_send_fn *send, shf_matcher_free_fn *free_task,
                 void *arg)
{
    shf_matcher_t *self = calloc (1, sizeof *self);
    assert (self);
    self->queues = zhashx_new ();
    zhashx_set_destructor (self->queues, s_queue_free);
    self->send = send;
    self->free_task = free_task;
    self->arg = arg;
    return self;
}

void
shf_matcher_destroy (shf_matcher_t **self_p)
{
    if (*self_p) {
        zhashx_destroy (&(*self_p)->queues);
        free (*self_p);
        *self_p = NULL;
    }
}

static s_queue_t *
s_queue (shf_matcher_t *self, const char *name)
{
    s_queue_t *q = zhashx_lookup (self->queues, name);
    if (!q) {
        q = calloc (1, sizeof *q);
        assert (q);
        q->tasks = zlistx_new ();
        q->free_task = self->free_task;
        q->tokens = zhashx_new ();
        zhashx_set_key_hasher (q->tokens, shf_token_hash);
        q->pollers = zhashx_new ();
        zhashx_set_destructor (q->pollers, s_poller_free);
        zhashx_insert (self->queues, name, q);
    }
    return q;
}

//  Hand queued tasks to the pollers with the most free credit.
static void
s_dispatch (shf_matcher_t *self, s_queue_t *q)
{
    while (zlistx_size (q->tasks) > 0) {
        s_poller_t *best = NULL;
        const char *best_name = NULL;
        for (s_poller_t *p = zhashx_first (q->pollers); p;
             p = zhashx_next (q->pollers))
            if (p->credit > 0 && (!best || p->credit > best->credit)) {
                best = p;
                best_name = zhashx_cursor (q->pollers);
            }
        if (!best)
            return;
        s_entry_t *entry = zlistx_first (q->tasks);
        //  best_name stays valid: the send callback does not touch us.
        if (!self->send (self->arg, best_name, entry->task)) {
            zhashx_delete (q->pollers, best_name);
            continue;
        }
        best->credit--;
        s_entry_destroy (q, zlistx_cursor (q->tasks));
    }
}

void
shf_matcher_add_task (shf_matcher_t *self, const char *queue, const char *token,
                      void *task)
{
    s_queue_t *q = s_queue (self, queue);
    if (zhashx_lookup (q->tokens, token)) {
        self->free_task (task);
        return;
    }
    size_t size = strlen (token) + 1;
    s_entry_t *entry = malloc (sizeof *entry + size);
    assert (entry);
    entry->task = task;
    memcpy (entry->token, token, size);
    void *handle = zlistx_add_end (q->tasks, entry);
    zhashx_insert (q->tokens, token, handle);
    s_dispatch (self, q);
}

void
shf_matcher_cancel (shf_matcher_t *self, const char *queue, const char *token)
{
    s_queue_t *q = zhashx_lookup (self->queues, queue);
    if (!q)
        return;
    void *handle = zhashx_lookup (q->tokens, token);
    if (handle)
        s_entry_destroy (q, handle);
}

void
shf_matcher_poll (shf_matcher_t *self, const char *worker, const char *queue,
                  int64_t credit, bool reset, int64_t gen, int64_t now)
{
    s_queue_t *q = s_queue (self, queue);
    s_poller_t *p = zhashx_lookup (q->pollers, worker);
    if (!p) {
        p = calloc (1, sizeof *p);
        assert (p);
        p->gen = -1;
        zhashx_insert (q->pollers, worker, p);
    }
    if (reset) {
        p->credit = credit;
        p->gen = gen;
    }
    else if (gen < 0 || gen == p->gen)
        p->credit += credit;
    p->last_seen = now;
    s_dispatch (self, q);
}

void
shf_matcher_expire (shf_matcher_t *self, int64_t now, int64_t max_silence)
{
    for (s_queue_t *q = zhashx_first (self->queues); q;
         q = zhashx_next (self->queues)) {
        zlistx_t *names = zhashx_keys (q->pollers);
        for (const char *name = zlistx_first (names); name;
             name = zlistx_next (names)) {
            s_poller_t *p = zhashx_lookup (q->pollers, name);
            if (p->last_seen < now - max_silence)
                zhashx_delete (q->pollers, name);
        }
        zlistx_destroy (&names);
    }
}

void
shf_matcher_forget (shf_matcher_t *self, const char *worker)
{
    for (s_queue_t *q = zhashx_first (self->queues); q;
         q = zhashx_next (self->queues))
        zhashx_delete (q->pollers, worker);
}

size_t
shf_matcher_pending (shf_matcher_t *self, const char *queue)
{
    s_queue_t *q = zhashx_lookup (self->queues, queue);
    return q ? zlistx_size (q->tasks) : 0;
}

//  --------------------------------------------------------------------
//  Self-test

typedef struct {
    char got [16][16];
    int count;
} s_sent_t;

static bool
s_record (void *arg, const char *worker, void *task)
{
    s_sent_t *sent = arg;
    (void) task;
    if (strcmp (worker, "gone") == 0)
        return false;
    assert (sent->count < 16);
    snprintf (sent->got [sent->count++], 16, "%s", worker);
    return true;
}

//  Test tasks are their tokens, strdup'd: the matcher frees each once.
static void
s_add (shf_matcher_t *m, const char *token)
{
    char *task = strdup (token);
    assert (task);
    shf_matcher_add_task (m, "q", token, task);
}

void
shf_matcher_test (bool verbose)
{
    (void) verbose;
    s_sent_t sent = {0};
    shf_matcher_t *m = shf_matcher_new (s_record, free, &sent);
    //  Five idle workers with room for five each: one task each.
    const char *workers [] = {"w1", "w2", "w3", "w4", "w5"};
    for (int i = 0; i < 5; i++)
        shf_matcher_poll (m, workers [i], "q", 5, false, -1, 1000);
    for (int i = 0; i < 5; i++) {
        char token [8];
        snprintf (token, sizeof token, "t%d", i);
        s_add (m, token);
    }
    assert (sent.count == 5);
    for (int i = 0; i < 5; i++)
        for (int j = i + 1; j < 5; j++)
            assert (strcmp (sent.got [i], sent.got [j]) != 0);

    //  Tasks wait for credit; a duplicate token is dropped; cancel works.
    sent.count = 0;
    shf_matcher_t *m2 = shf_matcher_new (s_record, free, &sent);
    s_add (m2, "a");
    s_add (m2, "a");
    s_add (m2, "b");
    assert (shf_matcher_pending (m2, "q") == 2);
    shf_matcher_cancel (m2, "q", "b");
    assert (shf_matcher_pending (m2, "q") == 1);
    shf_matcher_poll (m2, "w", "q", 1, false, -1, 0);
    assert (sent.count == 1 && shf_matcher_pending (m2, "q") == 0);
    //  A silent poller is forgotten and gets nothing.
    shf_matcher_poll (m2, "w", "q", 3, false, -1, 0);
    shf_matcher_expire (m2, 10000, 3000);
    s_add (m2, "c");
    assert (sent.count == 1 && shf_matcher_pending (m2, "q") == 1);
    //  A worker whose connection is gone is forgotten; the task goes to
    //  the next poller even though the gone one had more credit.
    sent.count = 0;
    shf_matcher_t *m3 = shf_matcher_new (s_record, free, &sent);
    shf_matcher_poll (m3, "gone", "q", 9, false, -1, 0);
    shf_matcher_poll (m3, "here", "q", 1, false, -1, 0);
    s_add (m3, "d");
    assert (sent.count == 1 && strcmp (sent.got [0], "here") == 0);
    s_add (m3, "e");
    assert (sent.count == 1 && shf_matcher_pending (m3, "q") == 1);
    //  Credit and connection generations: a reset sets the credit; a
    //  grant of another generation (queued before a reconnect, delivered
    //  on the new connection) is not added.
    sent.count = 0;
    shf_matcher_t *m4 = shf_matcher_new (s_record, free, &sent);
    shf_matcher_poll (m4, "w", "q", 2, false, 3, 0);  //  stale, before reset
    s_add (m4, "f");
    assert (sent.count == 0);
    shf_matcher_poll (m4, "w", "q", 1, true, 4, 0);
    assert (sent.count == 1);
    shf_matcher_poll (m4, "w", "q", 5, false, 3, 0);  //  stale, after reset
    s_add (m4, "g");
    assert (sent.count == 1 && shf_matcher_pending (m4, "q") == 1);
    shf_matcher_poll (m4, "w", "q", 1, false, 4, 0);
    assert (sent.count == 2 && shf_matcher_pending (m4, "q") == 0);
    shf_matcher_poll (m4, "w", "q", 3, true, 5, 0);  //  reconnected: set
    shf_matcher_poll (m4, "w", "q", 0, true, 5, 0);
    s_add (m4, "h");
    assert (sent.count == 2 && shf_matcher_pending (m4, "q") == 1);
    shf_matcher_destroy (&m4);
    shf_matcher_destroy (&m3);
    shf_matcher_destroy (&m2);
    shf_matcher_destroy (&m);
    assert (m == NULL);
}
