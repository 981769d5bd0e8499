/*  fuzz_taskrec.c - libFuzzer target for the readers of a stored task:
    shf_taskrec_key on the key and shf_taskrec_unpack on the value (after
    shf_mpack_decode), as a shard's recovery runs them.

    Input: one byte n, then n bytes of key, then the value. Either the key
    is refused, or its strings end inside it; either the value is refused,
    or the task it gives encodes as a task message (or is refused as too
    large), packing that task again reads back the same, and the message
    rendered from the packed payloads (shf_msg_encode_task_packed) is the
    one encoded from the trees. Nothing leaks. Corpus: fuzz/corpus/taskrec/ (replayed by ctest).
*/
#include "shf_taskrec.h"
#include <assert.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (size < 1 || (size_t) data [0] + 1 > size)
        return 0;
    size_t key_size = data [0];
    const uint8_t *key = data + 1;
    const uint8_t *value = key + key_size;
    size_t value_size = size - 1 - key_size;
    shf_taskrec_key_t k;
    if (!shf_taskrec_key (key, key_size, &k))
        return 0;
    const char *end = (const char *) key + key_size;
    assert (k.ids.ns < end && k.step + strlen (k.step) < end);
    json_t *record;
    if (shf_mpack_decode (value, value_size, &record, NULL, 0) != SHF_OK)
        return 0;
    shf_msg_task_t task;
    if (shf_taskrec_unpack (record, &k, &task)) {
        task.token = "t";
        char *wire;
        size_t wire_size;
        shf_err_t rc = shf_msg_encode_task (&task, &wire, &wire_size);
        assert (rc == SHF_OK || rc == SHF_ETOOLARGE || rc == SHF_EINVAL);
        if (rc == SHF_OK)
            free (wire);
        shf_mpack_out_t out = {0};
        shf_taskrec_spans_t spans;
        if (shf_taskrec_pack (&task, &out, &spans) == SHF_OK) {
            //  The message rendered from the record's payload bytes is the
            //  one encoded from the trees.
            char *packed;
            size_t packed_size;
            shf_err_t prc = shf_msg_encode_task_packed (
                &task, out.data + spans.input_at, spans.input_size,
                out.data + spans.details_at, spans.details_size, &packed,
                &packed_size);
            char *trees;
            size_t trees_size;
            shf_err_t trc = shf_msg_encode_task (&task, &trees, &trees_size);
            assert (prc == trc);
            if (prc == SHF_OK) {
                assert (packed_size == trees_size
                        && memcmp (packed, trees, trees_size) == 0);
                free (packed);
                free (trees);
            }
            json_t *again;
            shf_msg_task_t back;
            assert (shf_mpack_decode (out.data, out.size, &again, NULL, 0)
                    == SHF_OK);
            assert (shf_taskrec_unpack (again, &k, &back));
            assert (strcmp (back.activity, task.activity) == 0);
            assert (strcmp (back.queue, task.queue) == 0);
            assert (back.start_to_close_ms == task.start_to_close_ms);
            json_decref (again);
        }
        shf_mpack_out_free (&out);
    }
    json_decref (record);
    return 0;
}
