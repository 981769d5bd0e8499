/*  fuzz_run.c - libFuzzer target for shf_run_decode, the reader of every
    run state the shard loads from disk.

    Any bytes (the packed array shf_run_encode writes, or the map runs
    were stored as before it): the decoder answers SHF_OK or SHF_ECORRUPT
    and leaks nothing. A run it reads writes back (shf_run_encode), and
    those bytes read again to the same run (shf_run_to_json of both is
    json_equal) and write back to the same bytes. The one
    refusal allowed on the second read is the decoder's value budget
    (SHF_MPACK_MAX_VALUES), since a run's bytes hold members an old state
    may omit (input, output, failure, a timer's attempt): an input must be
    over a megabyte to reach it.
    Corpus: fuzz/corpus/run/ (replayed by ctest).
*/
#include "shf_run.h"
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    shf_run_t *run;
    //  IDs as a placed key gives them, for the packed form that leaves
    //  them to the key; the map and the first packed form carry theirs.
    const shf_run_ids_t key_ids = {"default", "w", "r", 1700000000000};
    shf_err_t rc = shf_run_decode (data, size, &key_ids, &run);
    assert (rc == SHF_OK || rc == SHF_ECORRUPT);
    if (rc != SHF_OK) {
        assert (run == NULL);
        return 0;
    }
    assert (run && run->refs == 1);

    //  Every value was at most as deep in the input as it is written.
    shf_mpack_out_t out = {0};
    rc = shf_run_encode (run, &out);
    assert (rc == SHF_OK);
    json_t *first = shf_run_to_json (run);
    shf_run_t *again;
    const shf_run_ids_t ids = {run->ns, run->workflow_id, run->run_id,
                               run->started_at};
    rc =
        shf_run_decode (out.data, out.size, run->started ? &ids : NULL, &again);
    if (rc != SHF_OK) {
        json_t *tree;
        char err [256];
        assert (shf_mpack_decode (out.data, out.size, &tree, err, sizeof err)
                    == SHF_EINVAL
                && strstr (err, "more than"));
    }
    else {
        json_t *second = shf_run_to_json (again);
        assert (json_equal (first, second));
        json_decref (second);
        shf_mpack_out_t twice = {0};
        assert (shf_run_encode (again, &twice) == SHF_OK);
        assert (twice.size == out.size
                && memcmp (twice.data, out.data, out.size) == 0);
        shf_mpack_out_free (&twice);
        shf_run_decref (again);
    }
    json_decref (first);
    shf_mpack_out_free (&out);
    shf_run_decref (run);
    return 0;
}
