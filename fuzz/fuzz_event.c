/*  fuzz_event.c - libFuzzer target for shf_event_unpack, the reader of
    every stored history record (after shf_mpack_decode).

    Any bytes: either they do not decode, or unpacking answers NULL, or an
    array of event objects; from a packed record, each with the id the key
    gives and on, a string "type" and an integer "time". Nothing leaks.
    Corpus: fuzz/corpus/event/ (replayed by ctest).
*/
#include "shf_event.h"
#include "shf_mpack.h"
#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    json_t *record;
    if (shf_mpack_decode (data, size, &record, NULL, 0) != SHF_OK)
        return 0;
    bool packed = json_is_array (record) && json_array_size (record) > 0
                  && json_is_array (json_array_get (record, 0));
    //  Extreme bases: differences must wrap, not overflow.
    const int64_t bases [3] = {1700000000000, INT64_MAX, INT64_MIN};
    for (int b = 0; b < 3; b++) {
        const shf_run_ids_t ids = {"default", "w", "r", bases [b]};
        json_t *events = shf_event_unpack (record, 41, &ids);
        if (!events)
            continue;
        assert (json_is_array (events));
        size_t i;
        json_t *event;
        json_array_foreach (events, i, event)
        {
            assert (json_is_object (event));
            if (packed) {
                assert (json_integer_value (json_object_get (event, "id"))
                        == 41 + (json_int_t) i);
                assert (json_is_string (json_object_get (event, "type")));
                assert (json_is_integer (json_object_get (event, "time")));
            }
        }
        json_decref (events);
    }
    json_decref (record);
    return 0;
}
