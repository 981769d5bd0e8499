/*  shf_workflow.h - the workflow state machine: (state, input) -> (events,
    effects). The heart of shardflow.

    One run of a workflow is a shf_run_t (its "mutable state", shf_run.h)
    that the shard stores in the `exec` db and keeps in its cache.
    shf_workflow_apply takes the compiled definition the run is pinned to,
    the run, and one
    input (start, activity started/completed/failed, timer fired, signal,
    cancel, terminate, heartbeat), mutates the state in place and appends:
      - history events (SPEC.md event types, each with "id", "type", "time"
        and the attributes SPEC names), numbered from the state's counter,
        written as msgpack maps as the transition goes (the bytes the
        shard stores: no JSON tree is built for an event);
      - effects the shard must carry out in the SAME transaction: create or
        drop an activity task, create or drop a durable timer, and a final
        "closed" effect when the run ends.
    Time comes only from input->now. No I/O, no clock, no randomness: the
    same (def, state, input) always gives the same result, so recorded
    histories replay exactly.

    Rules the machine keeps (SPEC.md "Semantics in detail"): `after`
    dependencies, `when` skips, `optional` failures, templates over earlier
    outputs, retry with exponential backoff (a TIMER effect) and
    non_retryable types, `start_to_close` and the other deadlines as TIMER
    effects, signals buffered in arrival order until a wait_signal takes
    them, cancel/terminate closing the run at once and cancelling open
    steps. A hand-back (the worker stopped before finishing) ends the open
    attempt and dispatches the next at once; hand-backs do not count
    against max_attempts nor lengthen the backoff.
    A completion or failure for an attempt that is not the open one
    is rejected with SHF_ENOTFOUND and changes nothing (exactly-once
    recording under at-least-once delivery).
*/
#ifndef SHF_WORKFLOW_H_INCLUDED
#define SHF_WORKFLOW_H_INCLUDED
#include "shf_def.h"
#include "../proto/shf_mpack.h"
#include "shf_run.h"

typedef enum {
    SHF_WF_START,             //  namespace, workflow_id, run_id, payload=input
    SHF_WF_ACTIVITY_STARTED,  //  step, attempt, worker
    SHF_WF_ACTIVITY_COMPLETED,   //  step, attempt, payload=output
    SHF_WF_ACTIVITY_FAILED,      //  step, attempt, error_type, error_message
    SHF_WF_TIMER_FIRED,          //  timer_id
    SHF_WF_SIGNAL,               //  signal, payload
    SHF_WF_CANCEL,               //  reason
    SHF_WF_TERMINATE,            //  reason
    SHF_WF_HEARTBEAT,            //  step, attempt, payload=details
    SHF_WF_ACTIVITY_HANDED_BACK  //  step, attempt: the worker stopped first
} shf_wf_input_kind_t;

typedef struct {
    shf_wf_input_kind_t kind;
    int64_t now;  //  ms since the epoch: the machine's only clock
    const char *namespace_;
    const char *workflow_id;
    const char *run_id;
    const char *step;
    uint32_t attempt;
    const char *worker;  //  identity of the worker (may be NULL)
    uint64_t timer_id;
    const char *signal;
    const char *reason;  //  NULL = no reason given
    const char *error_type;
    const char *error_message;
    //  Borrowed; NULL means JSON null. The run may keep a reference to it
    //  (states share values, never change them): the caller must not
    //  change it afterwards either.
    const json_t *payload;
} shf_wf_input_t;

typedef enum {
    SHF_EFFECT_TASK,          //  create activity task (step, attempt, ...)
    SHF_EFFECT_TASK_CANCEL,   //  drop/cancel the task of (step, attempt)
    SHF_EFFECT_TIMER,         //  create durable timer (timer_id, due)
    SHF_EFFECT_TIMER_CANCEL,  //  drop timer (timer_id, due)
    SHF_EFFECT_CLOSED         //  the run closed; see shf_workflow_status
} shf_effect_kind_t;

typedef struct {
    shf_effect_kind_t kind;
    const char *step;  //  borrowed from the def
    uint32_t attempt;
    const char *activity;       //  TASK: activity type (borrowed from the def)
    const char *queue;          //  TASK: task queue (borrowed from the def)
    json_t *input;              //  TASK: rendered input (owned by the output)
    json_t *heartbeat_details;  //  TASK: last details of an earlier attempt
    int64_t start_to_close;     //  TASK: ms, 0 = none (informs the worker)
    int64_t heartbeat_timeout;  //  TASK: ms, 0 = none
    uint64_t timer_id;          //  TIMER, TIMER_CANCEL
    int64_t due;                //  TIMER, TIMER_CANCEL: ms since the epoch
} shf_effect_t;

//  One history event of a transition: its packed array (shf_event.h) at
//  history.out.data [at, at + size).
typedef struct {
    int64_t id;
    size_t at;
    size_t size;
} shf_wf_event_t;

typedef struct {
    //  The events are written as msgpack while the transition runs, the
    //  bytes the shard stores, with no JSON tree built for them.
    shf_mpack_seq_t history;
    //  The run's IDs and start, which the stored events leave to the key
    //  (borrowed from the run: valid while it is)
    shf_run_ids_t ids;
    shf_wf_event_t *events;  //  n_events used of cap_events
    size_t n_events;
    size_t cap_events;
    bool history_failed;    //  a value too deep to encode (events unusable)
    shf_effect_t *effects;  //  owned; n_effects used of cap
    size_t n_effects;
    size_t cap;
    char message [256];  //  why an input was rejected
} shf_wf_output_t;

void shf_wf_output_init (shf_wf_output_t *self);

//  Forgets events and effects (freeing effect inputs); keeps the buffers
//  for the next transition.
void shf_wf_output_reset (shf_wf_output_t *self);

void shf_wf_output_free (shf_wf_output_t *self);

//  The events decoded, as an array of JSON objects (tests and tools); the
//  caller owns it.
json_t *shf_wf_output_events (const shf_wf_output_t *self);

//  Apply one input. For SHF_WF_START, run must be empty (shf_run_new).
//  Returns SHF_OK (state, events and effects updated), or without any
//  change: SHF_ECLOSED (signal/cancel/terminate/completion to a closed run),
//  SHF_ENOTFOUND (stale attempt, unknown step, unknown timer),
//  SHF_EINVAL (input inconsistent with the definition); out->message says
//  why.
shf_err_t shf_workflow_apply (const shf_def_t *def, shf_run_t *run,
                              const shf_wf_input_t *input,
                              shf_wf_output_t *out) SHF_MUST_CHECK;

//  "running", "completed", "failed", "canceled", "terminated", "timed_out";
//  "" for a run not started.
const char *shf_workflow_status (const shf_run_t *run);

bool shf_workflow_is_open (const shf_run_t *run);

//  Accessors the shard needs for keys and the index.
const char *shf_workflow_ns (const shf_run_t *run);
const char *shf_workflow_id (const shf_run_t *run);
const char *shf_workflow_run_id (const shf_run_t *run);
const char *shf_workflow_def_name (const shf_run_t *run);
int64_t shf_workflow_def_version (const shf_run_t *run);
int64_t shf_workflow_started_at (const shf_run_t *run);
int64_t shf_workflow_closed_at (const shf_run_t *run);  //  0 while open

//  SPEC.md `--json` shapes, built from the run (caller owns the result).
//  describe: without "shard" (the shard adds it).
json_t *shf_workflow_describe (const shf_def_t *def, const shf_run_t *run);
//  result: {"workflow_id","run_id","status","output","failure"}
json_t *shf_workflow_result (const shf_run_t *run);
//  The same object written as msgpack to out (from out->size on), the bytes
//  shf_mpack_encode gives for it, without building it: a closed run's
//  result goes to every client waiting for it. SHF_EINVAL when output or
//  failure nests too deep to be a reply's body (out->size is then where it
//  was).
shf_err_t shf_workflow_result_pack (const shf_run_t *run,
                                    shf_mpack_out_t *out) SHF_MUST_CHECK;

void shf_workflow_test (bool verbose);

#endif
