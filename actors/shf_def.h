/*  shf_def.h - the definition compiler: JSON document -> checked DAG.

    A definition (SPEC.md, "Definitions") is compiled once at registration
    and again when a shard loads it; the compiled form is immutable and
    shared read-only by every run pinned to it. Compilation validates
    everything SPEC.md promises is checked at registration (names, kinds,
    durations, retry policy, `after` references, acyclicity, `when` and
    template syntax) and reports the first problem as a JSON path
    ("steps[2].after[0]: no step \"chrage\"") or, for a syntax error, line
    and column ("line 3, column 7: ...").

    Pure: no I/O, no clock. Thread rule: a compiled def is immutable and may
    be read from any thread.
*/
#ifndef SHF_DEF_H_INCLUDED
#define SHF_DEF_H_INCLUDED
#include "../common/shf_err.h"
#include "shf_expr.h"
#include "shf_template.h"
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SHF_DEF_NAME_MAX 128
#define SHF_STEP_ID_MAX  128
#define SHF_DEF_MAX_STEPS 1024
#define SHF_DEF_MAX_DEPTH 32

typedef struct shf_def shf_def_t;

typedef enum {
    SHF_STEP_ACTIVITY,
    SHF_STEP_SLEEP,
    SHF_STEP_WAIT_SIGNAL
} shf_step_kind_t;

typedef struct {
    uint32_t max_attempts;       //  0 = unlimited
    int64_t initial_interval;    //  ms
    double backoff;
    int64_t max_interval;        //  ms
    const json_t *non_retryable; //  array of strings (borrowed), or NULL
} shf_retry_t;

//  Compile a document. On success returns SHF_OK and *def_p is the
//  caller's (destroy with shf_def_destroy). On a bad document returns
//  SHF_EDEFINITION with the path/line message in err; *def_p stays NULL.
//  SHF_ETOOLARGE for a document over 1 MiB or 1024 steps.
shf_err_t
    shf_def_compile (const char *text, size_t len, shf_def_t **def_p,
                     char *err, size_t errlen) SHF_MUST_CHECK;

void
    shf_def_destroy (shf_def_t **self_p);

const char *
    shf_def_name (const shf_def_t *self);

//  0 when the document has no "version" (the registry assigns the next).
int64_t
    shf_def_version (const shf_def_t *self);

//  Fix the version after the registry assigned it.
void
    shf_def_set_version (shf_def_t *self, int64_t version);

//  Canonical compact text of the document with keys sorted and "version"
//  removed: two registrations are "identical" when these strings match.
const char *
    shf_def_canonical (const shf_def_t *self);

//  The document as registered, with "version" set (borrowed).
const json_t *
    shf_def_document (const shf_def_t *self);

size_t
    shf_def_step_count (const shf_def_t *self);

//  Index of a step by id, or -1.
int
    shf_def_step_index (const shf_def_t *self, const char *id);

const char *
    shf_def_step_id (const shf_def_t *self, size_t index);

shf_step_kind_t
    shf_def_step_kind (const shf_def_t *self, size_t index);

//  Effective retry policy of a step (step over definition over defaults).
const shf_retry_t *
    shf_def_step_retry (const shf_def_t *self, size_t index);

//  Per-step attributes (index from 0 to step_count-1). Strings and JSON
//  values are borrowed from the def. Durations are in ms; 0 = not set.
const char *
    shf_def_step_activity (const shf_def_t *self, size_t index);
//  The step's queue, else the definition's, else "default".
const char *
    shf_def_step_queue (const shf_def_t *self, size_t index);
int64_t
    shf_def_step_sleep (const shf_def_t *self, size_t index);
const char *
    shf_def_step_signal (const shf_def_t *self, size_t index);
//  wait_signal "timeout".
int64_t
    shf_def_step_timeout (const shf_def_t *self, size_t index);
bool
    shf_def_step_optional (const shf_def_t *self, size_t index);
//  Indexes of the steps this one waits for (`after`, resolved).
size_t
    shf_def_step_after_count (const shf_def_t *self, size_t index);
size_t
    shf_def_step_after (const shf_def_t *self, size_t index, size_t i);
//  Compiled `when` (NULL = always).
const shf_expr_t *
    shf_def_step_when (const shf_def_t *self, size_t index);
//  Compiled input template (NULL = no input: null).
const shf_template_t *
    shf_def_step_input (const shf_def_t *self, size_t index);
int64_t
    shf_def_step_start_to_close (const shf_def_t *self, size_t index);
int64_t
    shf_def_step_schedule_to_start (const shf_def_t *self, size_t index);
int64_t
    shf_def_step_schedule_to_close (const shf_def_t *self, size_t index);
int64_t
    shf_def_step_heartbeat (const shf_def_t *self, size_t index);
//  Whole-workflow "timeout" (0 = none).
int64_t
    shf_def_timeout (const shf_def_t *self);
//  Compiled "output" template (NULL: output of the last step).
const shf_template_t *
    shf_def_output (const shf_def_t *self);

void
    shf_def_test (bool verbose);

#endif
