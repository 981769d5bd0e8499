/*  shf_run.h - one run's mutable state as a C struct, and its codec.

    The state machine (shf_workflow) reads and changes a run through these
    fields directly: a step is found by its definition index, a status is
    an enum, a time an integer. The shard keeps runs in its cache as
    shf_run_t and writes each one changed in a transaction with
    shf_run_encode, field by field, straight to msgpack.

    The stored form (shf_run_encode) is one packed msgpack array: members
    by position, statuses and timer kinds as their enum numbers (stored:
    new values go last), times after started_at as differences from it
    (shf_run.c, "the packed form", has the layout). States stored before
    it are the msgpack of one map, the JSON layout, and still read:

      {"ns", "workflow_id", "run_id", "name", "version", "status",
       "started_at", "closed_at" (nil while open), "input", "output",
       "failure", "next_event_id", "next_timer_id",
       "steps": {ID: {"status", "attempt", ...}},
       "timers": [{"id", "due", "step" (nil: the workflow), "kind",
                   "attempt"}],
       "signals": {NAME: [payloads not yet taken, oldest first]},
       "last_signal": {NAME: newest payload}}

    A step record always has "status" and "attempt"; the other fields are
    there once set: "scheduled_at", "started_at", "closed_at", "input",
    "output", "failure", "heartbeat_details", "last_heartbeat", "worker",
    "retry_due", "seq", "handbacks". shf_run_to_json gives that object
    (describe, tests, tools) whichever form the run was read from.

    JSON values held here (payloads, failures, signals) are shared by
    reference with events, effects and replies and never changed once
    stored: a change replaces the reference.

    Thread rule: a run belongs to one thread at a time (its shard's);
    the codec functions are stateless.
*/
#ifndef SHF_RUN_H_INCLUDED
#define SHF_RUN_H_INCLUDED
#include "../common/shf_err.h"
#include "../proto/shf_mpack.h"
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  The three enums below are stored by number (the packed form): add new
//  values last, never reorder.
typedef enum {
    SHF_RUN_RUNNING,
    SHF_RUN_COMPLETED,
    SHF_RUN_FAILED,
    SHF_RUN_CANCELED,
    SHF_RUN_TERMINATED,
    SHF_RUN_TIMED_OUT,
    SHF_RUN_STATUS_COUNT
} shf_run_status_t;

typedef enum {
    SHF_STEP_PENDING,
    SHF_STEP_SCHEDULED,
    SHF_STEP_STARTED,
    SHF_STEP_COMPLETED,
    SHF_STEP_FAILED,
    SHF_STEP_SKIPPED,
    SHF_STEP_CANCELED,
    SHF_STEP_STATUS_COUNT
} shf_step_status_t;

typedef enum {
    SHF_TIMER_WORKFLOW,
    SHF_TIMER_SLEEP,
    SHF_TIMER_WAIT_SIGNAL,
    SHF_TIMER_RETRY,
    SHF_TIMER_SCHEDULE_TO_START,
    SHF_TIMER_START_TO_CLOSE,
    SHF_TIMER_SCHEDULE_TO_CLOSE,
    SHF_TIMER_HEARTBEAT,
    SHF_TIMER_KIND_COUNT
} shf_timer_kind_t;

//  The stored names ("running", "scheduled", "start_to_close", ...), and
//  back (false for a name that is not one).
const char *shf_run_status_name (shf_run_status_t status);
const char *shf_step_status_name (shf_step_status_t status);
const char *shf_timer_kind_name (shf_timer_kind_t kind);
bool shf_run_status_parse (const char *name, shf_run_status_t *status_p);
bool shf_step_status_parse (const char *name, shf_step_status_t *status_p);
bool shf_timer_kind_parse (const char *name, shf_timer_kind_t *kind_p);

//  A step record's integer fields that are present only once set: one
//  bit each in shf_run_step_t.has.
enum {
    SHF_REC_SCHEDULED_AT = 1 << 0,
    SHF_REC_STARTED_AT = 1 << 1,
    SHF_REC_CLOSED_AT = 1 << 2,
    SHF_REC_LAST_HEARTBEAT = 1 << 3,
    SHF_REC_RETRY_DUE = 1 << 4,
    SHF_REC_SEQ = 1 << 5,
    SHF_REC_HANDBACKS = 1 << 6
};

typedef struct {
    char *id;  //  owned: the step's id in the definition
    shf_step_status_t status;
    int64_t attempt;
    unsigned has;  //  SHF_REC_* bits: which integers below are present
    int64_t scheduled_at, started_at, closed_at, last_heartbeat, retry_due, seq,
        handbacks;
    char *worker;  //  owned, valid UTF-8; NULL: absent
    //  Owned references; NULL: absent (a present null is json_null ())
    json_t *input, *output, *failure, *heartbeat_details;
} shf_run_step_t;

typedef struct {
    uint64_t id;
    int64_t due;
    int step;  //  index into shf_run_t.steps; -1: the workflow's own timer
    shf_timer_kind_t kind;
    int64_t attempt;
} shf_run_timer_t;

typedef struct {
    int refs;
    bool started;  //  false: an empty state, before SHF_WF_START
    //  Owned, valid UTF-8.
    char *ns, *workflow_id, *run_id, *name;
    int64_t version;
    shf_run_status_t status;
    int64_t started_at;
    bool has_closed_at;  //  false: nil (open)
    int64_t closed_at;
    json_t *input, *output, *failure;  //  owned, never NULL once started
    int64_t next_event_id, next_timer_id;
    shf_run_step_t *steps;  //  n_steps, in definition order
    size_t n_steps;
    shf_run_timer_t *timers;  //  n_timers of cap_timers, live ones
    size_t n_timers, cap_timers;
    //  Owned objects, made at start (NULL in a new run: written as {}).
    json_t *signals;      //  NAME -> array of payloads not yet taken
    json_t *last_signal;  //  NAME -> newest payload
} shf_run_t;

//  An empty run (not started), with one reference.
shf_run_t *shf_run_new (void);
shf_run_t *shf_run_incref (shf_run_t *self);
//  Drops a reference; frees the run with the last one. NULL-safe.
void shf_run_decref (shf_run_t *self);

//  The index of the step with that id, or -1.
int shf_run_step_index (const shf_run_t *self, const char *id);

//  Appends a timer (growing the array); returns it zeroed: the caller
//  sets every field (a step of 0 is the first step, not the workflow).
shf_run_timer_t *shf_run_timer_push (shf_run_t *self);
//  Removes the timer at pos, keeping the order of the others.
void shf_run_timer_remove (shf_run_t *self, size_t pos);

//  The run as the JSON object of the stored layout (caller owns it).
//  An empty run gives {}.
json_t *shf_run_to_json (const shf_run_t *self);

//  A run from that object (the caller keeps its reference). Strings are
//  copied, and signals and last_signal (the machine changes them in
//  place); payloads are shared. SHF_ECORRUPT when the object is not a run
//  state: a field of the wrong type, a string with a NUL in it, or an
//  unknown status, timer kind, or timer step. {} gives an empty run.
//  Members it does not know are ignored.
shf_err_t shf_run_from_json (const json_t *state,
                             shf_run_t **run_p) SHF_MUST_CHECK;

//  Appends the run's packed array to out (an empty run: an empty map).
//  SHF_EINVAL, with out as it was, when a JSON value in it nests deeper
//  than SHF_MPACK_MAX_DEPTH (as for shf_mpack_encode of the JSON layout:
//  values sit at the same depths).
shf_err_t shf_run_encode (const shf_run_t *self,
                          shf_mpack_out_t *out) SHF_MUST_CHECK;

//  What a stored run's key says of it: the shard's placed key holds these,
//  so the packed form does not repeat them.
typedef struct {
    const char *ns, *workflow_id, *run_id;
    int64_t started_at;
} shf_run_ids_t;

//  Reads a stored run, packed or a map (shf_mpack_decode, then by
//  position or shf_run_from_json). ids: from the run's key, for the
//  packed form that leaves them out (NULL: the bytes must carry them, as
//  maps and the first packed form do). SHF_ECORRUPT when the bytes are
//  not a run.
shf_err_t shf_run_decode (const void *data, size_t size,
                          const shf_run_ids_t *ids,
                          shf_run_t **run_p) SHF_MUST_CHECK;

void shf_run_test (bool verbose);

#endif
