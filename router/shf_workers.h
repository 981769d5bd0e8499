/*  shf_workers.h - liveness of connected workers and the tasks they hold.

    A worker is known from its first poll. Every message it sends marks it
    alive (the SDK sends a keepalive each second even while its activities
    run). Each task the matcher hands it is tracked until a completion or
    failure for its token arrives. A worker silent for longer than the
    silence limit is declared lost: the router fails each task it held
    (type "WorkerLost", retried by the step's policy) so they run elsewhere
    at once instead of after their start_to_close. Pure data structure.

    Thread rule: owned by the router thread.
*/
#ifndef SHF_WORKERS_H_INCLUDED
#define SHF_WORKERS_H_INCLUDED
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct shf_workers shf_workers_t;

//  Called for each task of a lost worker (strings borrowed).
typedef void (shf_workers_lost_fn) (void *arg, const char *worker,
                                    const char *token);

shf_workers_t *shf_workers_new (void);
void shf_workers_destroy (shf_workers_t **self_p);

//  The worker polled: known from now on, alive at now (ms).
void shf_workers_poll (shf_workers_t *self, const char *worker, int64_t now);

//  Any message from this identity: alive at now if known.
void shf_workers_seen (shf_workers_t *self, const char *worker, int64_t now);

//  The worker was handed the task with this token.
void shf_workers_track (shf_workers_t *self, const char *worker,
                        const char *token, int64_t now);

//  The task's attempt was reported (by anyone): stop tracking it.
void shf_workers_release (shf_workers_t *self, const char *token);

//  Declare lost every worker silent since before now - silence: calls fn
//  for each task it held, then forgets it. Returns how many were lost.
size_t shf_workers_expire (shf_workers_t *self, int64_t now, int64_t silence,
                           shf_workers_lost_fn *fn, void *arg);

//  Declare one worker lost now (its connection is known to be gone): fn
//  for each task it held, then it is forgotten.
void shf_workers_lose (shf_workers_t *self, const char *worker,
                       shf_workers_lost_fn *fn, void *arg);

//  Tasks held by a worker (0 if unknown).
size_t shf_workers_holding (shf_workers_t *self, const char *worker);

void shf_workers_test (bool verbose);

#endif
