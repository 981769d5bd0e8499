/*  fuzz_mpack.c - libFuzzer target for shf_mpack_decode, the decoder of
    every stored record and wire frame.

    Any input must be either refused with SHF_EINVAL or decoded into a
    value that encodes again and decodes back to an equal value; neither
    may crash, leak or allocate more than the input can justify.
    Corpus: fuzz/corpus/mpack/ (replayed by ctest).
*/
#include "shf_mpack.h"
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    json_t *value = NULL;
    char err [256];
    shf_err_t rc = shf_mpack_decode (data, size, &value, err, sizeof err);
    if (rc != SHF_OK) {
        assert (rc == SHF_EINVAL);
        assert (value == NULL);
        return 0;
    }
    char *again;
    size_t again_size;
    rc = shf_mpack_encode (value, &again, &again_size);
    assert (rc == SHF_OK);
    size_t counted;
    rc = shf_mpack_size (value, &counted);
    assert (rc == SHF_OK && counted == again_size);
    json_t *back = NULL;
    rc = shf_mpack_decode (again, again_size, &back, err, sizeof err);
    assert (rc == SHF_OK);
    assert (json_equal (value, back));
    json_decref (back);
    json_decref (value);
    free (again);
    return 0;
}
