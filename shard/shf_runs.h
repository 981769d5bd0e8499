/*  shf_runs.h - where a run's records live in its shard (schema 2).

    A run's state, history and tasks are keyed by its placed key: the run
    key behind the run's start time (shf_keys.h). Runs in flight together
    were started together, so their records share B-tree leaves whatever
    their workflow IDs are; keyed by workflow ID, as schema 1 did, a
    batch of transitions of runs with unrelated IDs dirtied one leaf per
    run in each of the three trees (measured: 3.6x the page writes and
    half the throughput with random IDs; bench/RESULTS.md, session 8).

    The exec database maps ns/wf_id to the current run's placed key,
    written once when the run starts; lookups by workflow ID take one more
    B-tree search, on a cache miss only.

    shf_runs_upgrade moves a schema-1 shard to this layout when it opens,
    in transactions of bounded size, so a crash midway leaves runs in
    either layout and the next open goes on.
*/
#ifndef SHF_RUNS_H_INCLUDED
#define SHF_RUNS_H_INCLUDED
#include "shf_keys.h"
#include "shf_run.h"
#include "shf_store.h"

//  The run's placed key (from its start time and names).
void shf_runs_key (shf_key_t *key, const shf_run_t *run);

//  What a placed key says of its run: namespace, workflow ID, run ID
//  (borrowed from key) and start time, as stored records leave them to it.
shf_run_ids_t shf_runs_key_ids (const shf_key_t *key);

//  The current run of ns/wf_id (*run_p, the caller's). SHF_ENOTFOUND
//  when there is none, SHF_ECORRUPT when the records are not a run
//  (logged).
shf_err_t shf_runs_load (shf_txn_t *txn, const char *ns, const char *wf_id,
                         shf_run_t **run_p) SHF_MUST_CHECK;

//  The placed key that exec holds for ns/wf_id (SHF_ENOTFOUND: none).
shf_err_t shf_runs_find (shf_txn_t *txn, const char *ns, const char *wf_id,
                         shf_key_t *placed) SHF_MUST_CHECK;

//  Makes run the current run of its workflow ID (at its start).
shf_err_t shf_runs_point (shf_txn_t *txn, const shf_run_t *run) SHF_MUST_CHECK;

//  Moves every run stored in the schema-1 layout to this one; sets the
//  shard's meta "schema" to 2 at the end. *moved_p (may be NULL) counts
//  the runs moved.
shf_err_t shf_runs_upgrade (shf_store_t *store, unsigned shard,
                            size_t *moved_p) SHF_MUST_CHECK;

void shf_runs_test (bool verbose);

#endif
