/*  fuzz_def.c - libFuzzer target for the definition compiler.

    Compiles the input as a definition document. When it compiles, reads
    every accessor of every step, renders the templates and `when`
    expressions against a small context, and checks that the canonical
    text compiles again to the same canonical text. Replayed from
    fuzz/corpus/def/ by ctest.
*/
#include "../actors/shf_def.h"
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static void
s_exercise (const shf_def_t *def, const json_t *context)
{
    assert (shf_def_name (def));
    assert (shf_def_canonical (def));
    assert (shf_def_document (def));
    (void) shf_def_timeout (def);
    size_t count = shf_def_step_count (def);
    assert (count > 0 && count <= SHF_DEF_MAX_STEPS);
    for (size_t i = 0; i < count; i++) {
        const char *id = shf_def_step_id (def, i);
        assert (shf_def_step_index (def, id) == (int) i);
        shf_step_kind_t kind = shf_def_step_kind (def, i);
        assert (kind != SHF_STEP_ACTIVITY || shf_def_step_activity (def, i));
        assert (kind != SHF_STEP_WAIT_SIGNAL || shf_def_step_signal (def, i));
        assert (shf_def_step_queue (def, i));
        const shf_retry_t *retry = shf_def_step_retry (def, i);
        assert (retry->backoff >= 1.0);
        (void) shf_def_step_sleep (def, i);
        (void) shf_def_step_timeout (def, i);
        (void) shf_def_step_optional (def, i);
        (void) shf_def_step_start_to_close (def, i);
        (void) shf_def_step_schedule_to_start (def, i);
        (void) shf_def_step_schedule_to_close (def, i);
        (void) shf_def_step_heartbeat (def, i);
        for (size_t k = 0; k < shf_def_step_after_count (def, i); k++)
            assert (shf_def_step_after (def, i, k) < count);
        json_t *value = NULL;
        const shf_expr_t *when = shf_def_step_when (def, i);
        if (when && shf_expr_eval (when, context, &value, NULL, 0) == SHF_OK)
            json_decref (value);
        const shf_template_t *input = shf_def_step_input (def, i);
        if (input
            && shf_template_render (input, context, &value, NULL, 0) == SHF_OK)
            json_decref (value);
    }
    json_t *value = NULL;
    const shf_template_t *output = shf_def_output (def);
    if (output
        && shf_template_render (output, context, &value, NULL, 0) == SHF_OK)
        json_decref (value);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    char err [512];
    shf_def_t *def = NULL;
    if (shf_def_compile ((const char *) data, size, &def, err, sizeof err)
        != SHF_OK) {
        assert (def == NULL);
        return 0;
    }
    json_t *context =
        json_pack ("{s:{s:i,s:s},s:{},s:{},s:{s:s}}", "input", "amount", 5,
                   "name", "n", "steps", "signals", "workflow", "id", "w");
    assert (context);
    s_exercise (def, context);
    json_decref (context);
    //  The canonical text is itself a valid definition with the same
    //  canonical text.
    const char *canonical = shf_def_canonical (def);
    shf_def_t *again = NULL;
    shf_err_t rc = shf_def_compile (canonical, strlen (canonical), &again, err,
                                    sizeof err);
    assert (rc == SHF_OK);
    assert (strcmp (shf_def_canonical (again), canonical) == 0);
    shf_def_destroy (&again);
    shf_def_set_version (def, 2);
    assert (shf_def_version (def) == 2);
    shf_def_destroy (&def);
    return 0;
}
