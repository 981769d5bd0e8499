/*  shf_matcher.h - task queues meet polling workers.

    Each task queue holds the ready tasks (in arrival order) and the
    workers polling it with their free credit. A worker adds credit with
    POLL (additive: "N more slots", or "N slots" when a connection
    comes up, see shf_matcher_poll); each task goes to the poller with the
    most free credit, so five tasks over five idle workers go one each.
    Pollers silent for longer than the expiry are forgotten, so tasks are
    not pushed into a dead connection. Pure data structure: the router
    does the sending through the dispatch callback.

    Thread rule: owned by the router thread.
*/
#ifndef SHF_MATCHER_H_INCLUDED
#define SHF_MATCHER_H_INCLUDED
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct shf_matcher shf_matcher_t;

//  Called for each match; task is borrowed (freed after a delivery).
//  Returns false when the worker is gone: the matcher forgets it and
//  offers the task to the next poller.
typedef bool (shf_matcher_send_fn) (void *arg, const char *worker, void *task);
//  Frees a task the matcher holds (delivered, cancelled, duplicate).
typedef void (shf_matcher_free_fn) (void *task);

//  Tasks are opaque to the matcher: it knows each by its queue and token.
shf_matcher_t *shf_matcher_new (shf_matcher_send_fn *send,
                                shf_matcher_free_fn *free_task, void *arg);
void shf_matcher_destroy (shf_matcher_t **self_p);

//  Queue a task (taken); a task whose token is already queued is dropped.
void shf_matcher_add_task (shf_matcher_t *self, const char *queue,
                           const char *token, void *task);

//  Drop a queued task if it is still waiting for a worker.
void shf_matcher_cancel (shf_matcher_t *self, const char *queue,
                         const char *token);

//  A worker (identity as text) grants credit on a queue at time now (ms);
//  credit 0 is a keepalive. gen is the worker's count of its connections
//  (-1 when it sends none: credit is then simply added). A reset grant
//  sets the credit and the generation; other grants count only when
//  their generation is the one of the last reset, so a grant queued in
//  the worker's socket before a reconnect, and delivered on the new
//  connection ahead of its reset, is not added to it.
void shf_matcher_poll (shf_matcher_t *self, const char *worker,
                       const char *queue, int64_t credit, bool reset,
                       int64_t gen, int64_t now);

//  Forget pollers silent since before now - max_silence.
void shf_matcher_expire (shf_matcher_t *self, int64_t now, int64_t max_silence);

//  Forget a worker on every queue (its connection died).
void shf_matcher_forget (shf_matcher_t *self, const char *worker);

size_t shf_matcher_pending (shf_matcher_t *self, const char *queue);

void shf_matcher_test (bool verbose);

#endif
