/*  shf_taskrec.c - a pending task as the tasks database stores it
    (shf_taskrec.h).
*/
#include "shf_taskrec.h"
#include <assert.h>
#include <stdio.h>
#include <string.h>

#define S_MEMBERS 7

shf_err_t
shf_taskrec_pack (const shf_msg_task_t *task, shf_mpack_out_t *out,
                  shf_taskrec_spans_t *spans)
{
    size_t mark = out->size;
    shf_mpack_put_array (out, S_MEMBERS);
    shf_mpack_put_int (out, SHF_TASKREC_PACKED);
    shf_mpack_put_str (out, task->activity, strlen (task->activity));
    shf_mpack_put_str (out, task->queue, strlen (task->queue));
    size_t input_at = out->size;
    shf_err_t rc = shf_mpack_put_json (out, task->input, 1);
    size_t details_at = out->size;
    if (rc == SHF_OK)
        rc = shf_mpack_put_json (out, task->heartbeat_details, 1);
    if (rc != SHF_OK) {
        out->size = mark;
        return rc;
    }
    if (spans)
        *spans = (shf_taskrec_spans_t){input_at, details_at - input_at,
                                       details_at, out->size - details_at};
    shf_mpack_put_int (out, task->start_to_close_ms);
    shf_mpack_put_int (out, task->heartbeat_timeout_ms);
    return SHF_OK;
}

bool
shf_taskrec_key (const void *key, size_t size, shf_taskrec_key_t *out)
{
    //  start time, ns, workflow ID, run ID, step, attempt
    if (size < 8 + 4 + 4)
        return false;
    const char *p = (const char *) key + 8;
    const char *end = (const char *) key + size - 4;
    const char *names [4];
    for (int i = 0; i < 4; i++) {
        const char *nul = memchr (p, 0, (size_t) (end - p));
        if (!nul)
            return false;
        names [i] = p;
        p = nul + 1;
    }
    if (p != end)
        return false;
    const uint8_t *k = key;
    uint64_t started_at = 0;
    for (int i = 0; i < 8; i++)
        started_at = started_at << 8 | k [i];
    uint32_t attempt = 0;
    for (size_t i = size - 4; i < size; i++)
        attempt = attempt << 8 | k [i];
    out->ids.ns = names [0];
    out->ids.workflow_id = names [1];
    out->ids.run_id = names [2];
    out->ids.started_at = (int64_t) started_at;
    out->step = names [3];
    out->attempt = attempt;
    return true;
}

//  A JSON value as the task message holds it: NULL for null.
static const json_t *
s_value (const json_t *value)
{
    return json_is_null (value) ? NULL : value;
}

bool
shf_taskrec_unpack (const json_t *record, const shf_taskrec_key_t *key,
                    shf_msg_task_t *task)
{
    if (!json_is_array (record) || json_array_size (record) != S_MEMBERS)
        return false;
    const json_t *form = json_array_get (record, 0);
    const json_t *activity = json_array_get (record, 1);
    const json_t *queue = json_array_get (record, 2);
    const json_t *start_to_close = json_array_get (record, 5);
    const json_t *heartbeat_timeout = json_array_get (record, 6);
    if (!json_is_integer (form)
        || json_integer_value (form) != SHF_TASKREC_PACKED
        || !json_is_string (activity) || !json_is_string (queue)
        || !json_is_integer (start_to_close)
        || !json_is_integer (heartbeat_timeout))
        return false;
    *task = (shf_msg_task_t){
        .token = NULL,
        .ns = key->ids.ns,
        .wf_id = key->ids.workflow_id,
        .run_id = key->ids.run_id,
        .step = key->step,
        .activity = json_string_value (activity),
        .queue = json_string_value (queue),
        .attempt = key->attempt,
        .input = s_value (json_array_get (record, 3)),
        .heartbeat_details = s_value (json_array_get (record, 4)),
        .start_to_close_ms = json_integer_value (start_to_close),
        .heartbeat_timeout_ms = json_integer_value (heartbeat_timeout)};
    return true;
}

//  --------------------------------------------------------------------
//  Self test

//  A tasks-db key: start time, three names, step, attempt.
static size_t
s_key (uint8_t *buf, int64_t started_at, const char *step, uint32_t attempt)
{
    size_t n = 0;
    for (int i = 7; i >= 0; i--)
        buf [n++] = (uint8_t) ((uint64_t) started_at >> (8 * i));
    const char *names [4] = {"default", "w-1", "r-1", step};
    for (int i = 0; i < 4; i++) {
        memcpy (buf + n, names [i], strlen (names [i]) + 1);
        n += strlen (names [i]) + 1;
    }
    for (int i = 3; i >= 0; i--)
        buf [n++] = (uint8_t) (attempt >> (8 * i));
    return n;
}

void
shf_taskrec_test (bool verbose)
{
    if (verbose)
        printf (" * shf_taskrec: ");
    uint8_t key [128];
    size_t key_size = s_key (key, 1700000000123, "charge", 3);
    shf_taskrec_key_t k;
    assert (shf_taskrec_key (key, key_size, &k));
    assert (strcmp (k.ids.ns, "default") == 0);
    assert (strcmp (k.ids.workflow_id, "w-1") == 0);
    assert (strcmp (k.ids.run_id, "r-1") == 0);
    assert (strcmp (k.step, "charge") == 0);
    assert (k.ids.started_at == 1700000000123 && k.attempt == 3);
    //  Every cut of the key, and a byte too many, is not a key.
    for (size_t n = 0; n < key_size; n++)
        assert (!shf_taskrec_key (key, n, &k));
    key [key_size] = 0;
    assert (!shf_taskrec_key (key, key_size + 1, &k));
    assert (shf_taskrec_key (key, key_size, &k));

    //  Round trip: a payload as input, no heartbeat details.
    json_t *input = json_pack ("{s:i, s:[s]}", "n", 1, "tags", "a");
    shf_msg_task_t task = {.token = "ignored",
                           .ns = "default",
                           .wf_id = "w-1",
                           .run_id = "r-1",
                           .step = "charge",
                           .activity = "charge_card",
                           .queue = "payments",
                           .attempt = 3,
                           .input = input,
                           .heartbeat_details = NULL,
                           .start_to_close_ms = 30000,
                           .heartbeat_timeout_ms = 0};
    shf_mpack_out_t out = {0};
    shf_taskrec_spans_t spans;
    assert (shf_taskrec_pack (&task, &out, &spans) == SHF_OK);
    //  The spans hold the payloads as msgpack: the input, then nil.
    json_t *span;
    assert (shf_mpack_decode (out.data + spans.input_at, spans.input_size,
                              &span, NULL, 0)
            == SHF_OK);
    assert (json_equal (span, input));
    json_decref (span);
    assert (spans.details_at == spans.input_at + spans.input_size);
    assert (spans.details_size == 1 && out.data [spans.details_at] == 0xc0);
    json_t *record;
    assert (shf_mpack_decode (out.data, out.size, &record, NULL, 0) == SHF_OK);
    shf_msg_task_t back;
    assert (shf_taskrec_unpack (record, &k, &back));
    assert (back.token == NULL);
    assert (strcmp (back.activity, "charge_card") == 0);
    assert (strcmp (back.queue, "payments") == 0);
    assert (strcmp (back.wf_id, "w-1") == 0
            && strcmp (back.step, "charge") == 0);
    assert (back.attempt == 3 && back.start_to_close_ms == 30000);
    assert (back.heartbeat_timeout_ms == 0 && back.heartbeat_details == NULL);
    assert (json_equal (back.input, input));
    //  The same task message, token put back, as the one sent.
    char *sent, *again;
    size_t sent_size, again_size;
    assert (shf_msg_encode_task (&task, &sent, &sent_size) == SHF_OK);
    back.token = task.token;
    assert (shf_msg_encode_task (&back, &again, &again_size) == SHF_OK);
    assert (sent_size == again_size && memcmp (sent, again, sent_size) == 0);
    //  Several times smaller than the message.
    assert (out.size * 4 < sent_size);
    free (sent);
    free (again);
    json_decref (record);

    //  Not the packed form: a map (the older records), wrong form number,
    //  wrong member types or count.
    const char *bad [] = {
        "{\"op\": \"task\"}",
        "[2, \"a\", \"q\", null, null, 0, 0]",
        "[1, 5, \"q\", null, null, 0, 0]",
        "[1, \"a\", null, null, null, 0, 0]",
        "[1, \"a\", \"q\", null, null, \"0\", 0]",
        "[1, \"a\", \"q\", null, null, 0, 1.5]",
        "[1, \"a\", \"q\", null, null, 0]",
        "[1, \"a\", \"q\", null, null, 0, 0, 0]",
        "[]",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad [0]; i++) {
        json_error_t error;
        json_t *r = json_loads (bad [i], JSON_DECODE_ANY, &error);
        assert (r);
        assert (!shf_taskrec_unpack (r, &k, &back));
        json_decref (r);
    }
    //  A payload nested too deep is refused, and nothing of it stays.
    json_t *deep = json_array ();
    for (int i = 0; i < 200; i++)
        deep = json_pack ("[o]", deep);
    task.input = deep;
    size_t before = out.size;
    assert (shf_taskrec_pack (&task, &out, NULL) == SHF_EINVAL);
    assert (out.size == before);
    json_decref (deep);
    json_decref (input);
    shf_mpack_out_free (&out);
    if (verbose)
        printf ("OK\n");
}
