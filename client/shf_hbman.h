/*  shf_hbman.h - the heartbeat manager of a worker: what to send, when.

    A pure class (no sockets, no clock of its own: time is passed in) that
    decides how the heartbeats of all the activities a worker runs go to
    the node. The worker's connection actor (shf_wlink) feeds it events
    and sends the batches it hands out.

    - Details recorded for a task replace the older unsent ones; only tasks
      whose activity recorded details are sent (a silent task sends
      nothing, so its heartbeat timeout can fire).
    - One batch per interval carries every task with new details. The
      first batch after a quiet interval goes at once. The interval is
      1 s, shorter when a running task's heartbeat timeout needs it (half
      the shortest timeout), and never shorter than the node's
      min_interval_ms (read from each reply).
    - A batch whose send failed is retried after 100 ms (at most half an
      interval); one that got no reply within an interval is retried at
      once. Newer details recorded meanwhile win over the retried ones.
    - A batch is cut to stay under the frame limit; what is left goes as
      soon as the reply to the first part arrives.
    - Tokens a reply lists as canceled are reported once.

    Thread rule: one thread (the actor's).
*/
#ifndef SHF_HBMAN_H_INCLUDED
#define SHF_HBMAN_H_INCLUDED
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct shf_hbman shf_hbman_t;

//  Default and longest interval between batches, in ms.
#define SHF_HBMAN_INTERVAL_MS 1000
//  Delay before retrying a batch whose send failed, in ms.
#define SHF_HBMAN_RETRY_MS 100

shf_hbman_t *shf_hbman_new (void);
void shf_hbman_destroy (shf_hbman_t **self_p);

//  A task started running; heartbeat_timeout_ms (0: none) shortens the
//  interval while it runs.
void shf_hbman_track (shf_hbman_t *self, const char *token,
                      int64_t heartbeat_timeout_ms);

//  The task ended (reported): forget it, its unsent details and whether it
//  was canceled.
void shf_hbman_forget (shf_hbman_t *self, const char *token);

//  New details for token (stolen; NULL means JSON null), recorded at now.
//  size is an estimate of their encoded size (e.g. the length of their
//  JSON text), used to cut batches under the frame limit.
void shf_hbman_record (shf_hbman_t *self, const char *token, json_t **details_p,
                       size_t size, int64_t now);

//  Take the newest details of token that may not have reached the node:
//  unsent, or in a batch still waiting for its reply. The caller (about
//  to report the task) sends them first, so they cannot be overtaken by
//  the result. Returns NULL when there are none, else the caller's.
json_t *shf_hbman_take (shf_hbman_t *self, const char *token);

//  When something is due (ms, same clock as now): the next batch, a
//  retry, or the moment a batch in flight counts as lost. INT64_MAX when
//  nothing is.
int64_t shf_hbman_next_due (shf_hbman_t *self);

//  The items [{token, details}] to send now (the caller's), or NULL when
//  nothing is due. The caller sends them as one heartbeat request and then
//  calls shf_hbman_sent (with its request id) or shf_hbman_failed.
json_t *shf_hbman_batch (shf_hbman_t *self, int64_t now);

//  The batch went out as request id.
void shf_hbman_sent (shf_hbman_t *self, uint64_t id, int64_t now);

//  The batch could not be sent. retry false drops its items (they can
//  never be sent, e.g. too large); true retries them after the retry
//  delay.
void shf_hbman_failed (shf_hbman_t *self, bool retry, int64_t now);

//  The reply to heartbeat request id: body (borrowed) is the reply body,
//  NULL when the node answered with an error (the batch then counts as
//  delivered: it is not retried). Returns the tracked tokens newly listed
//  as canceled (a JSON array, the caller's; empty when none).
json_t *shf_hbman_reply (shf_hbman_t *self, uint64_t id, const json_t *body,
                         int64_t now);

//  True once a reply listed token as canceled.
bool shf_hbman_canceled (shf_hbman_t *self, const char *token);

//  The interval now in force, in ms.
int64_t shf_hbman_interval (shf_hbman_t *self);

//  True while a batch waits for its reply.
bool shf_hbman_in_flight (shf_hbman_t *self);

void shf_hbman_test (bool verbose);

#endif
