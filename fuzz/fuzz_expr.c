/*  fuzz_expr.c - libFuzzer target for the expression language.

    Compiles the input as an expression and, when it compiles, evaluates
    it against a fixed context; then compiles the same bytes as a template
    string. Neither may crash, leak or loop, whatever the bytes. Replayed
    from fuzz/corpus/expr/ by ctest.
*/
#include "../actors/shf_expr.h"
#include "../actors/shf_template.h"
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static json_t *
s_context (void)
{
    static json_t *context;
    if (!context) {
        json_error_t jerr;
        context = json_loads (
            "{\"input\": {\"a\": 1, \"s\": \"text\", \"r\": 2.5, \"items\":"
            " [1, \"two\", {\"x\": null}], \"o\": {\"k\": [true]},"
            " \"big\": 9223372036854775807},"
            " \"steps\": {\"s1\": {\"output\": {\"ok\": true}, \"status\":"
            " \"completed\", \"attempt\": 1}, \"s-2\": {\"status\":"
            " \"failed\"}},"
            " \"signals\": {\"go\": {\"by\": \"x\"}},"
            " \"workflow\": {\"id\": \"w\", \"run_id\": \"r\"}}",
            0, &jerr);
        assert (context);
    }
    return context;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    const char *text = (const char *) data;
    char err [256];
    shf_expr_t *expr = NULL;
    if (shf_expr_compile (text, size, &expr, err, sizeof err) == SHF_OK) {
        json_t *value = NULL;
        if (shf_expr_eval (expr, s_context (), &value, err, sizeof err)
            == SHF_OK) {
            assert (value);
            (void) shf_expr_truthy (value);
            json_decref (value);
        }
        shf_expr_destroy (&expr);
    }
    json_t *string = json_stringn (text, size);
    if (string) {
        shf_template_t *tmpl = NULL;
        if (shf_template_compile (string, &tmpl, err, sizeof err) == SHF_OK) {
            json_t *value = NULL;
            if (shf_template_render (tmpl, s_context (), &value, err,
                                     sizeof err)
                == SHF_OK)
                json_decref (value);
            shf_template_destroy (&tmpl);
        }
        json_decref (string);
    }
    return 0;
}
