/*  fuzz_run.c - libFuzzer target for shf_run_decode, the reader of every
    run state the shard loads from disk.

    Any bytes: the decoder answers SHF_OK or SHF_ECORRUPT and leaks
    nothing. A run it reads writes back (shf_run_encode) to the bytes
    shf_mpack_encode writes for its shf_run_to_json, and those read again
    to the same run: shf_run_to_json of both is json_equal. The one
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
    shf_err_t rc = shf_run_decode (data, size, &run);
    assert (rc == SHF_OK || rc == SHF_ECORRUPT);
    if (rc != SHF_OK) {
        assert (run == NULL);
        return 0;
    }
    assert (run && run->refs == 1);

    //  Every value was at most as deep in the input as it is written. The
    //  bytes are those of shf_run_to_json's object, in its order.
    shf_mpack_out_t out = {0};
    rc = shf_run_encode (run, &out);
    assert (rc == SHF_OK);
    json_t *first = shf_run_to_json (run);
    char *bytes;
    size_t bytes_size;
    rc = shf_mpack_encode (first, &bytes, &bytes_size);
    assert (rc == SHF_OK);
    assert (bytes_size == out.size && memcmp (bytes, out.data, out.size) == 0);
    free (bytes);
    shf_run_t *again;
    rc = shf_run_decode (out.data, out.size, &again);
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
        shf_run_decref (again);
    }
    json_decref (first);
    shf_mpack_out_free (&out);
    shf_run_decref (run);
    return 0;
}
