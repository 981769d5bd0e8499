/*  shf_template.c - input/output templates over expressions.

    A template is compiled once from any JSON value into a tree that
    mirrors it: constants stay as they are, a string that is exactly
    "${EXPR}" becomes one compiled expression (its value keeps its type),
    and a string with "${EXPR}" inside longer text becomes a list of text
    pieces and expressions, rendered as text (string values raw, others as
    compact JSON). "$${" writes a literal "${". The end of an expression is
    the first '}' outside string literals and outside the expression's own
    braces, so "${ {\"a\": \"}\"}.a }" works.

    Errors name the JSON path below the template root: ".amount: column 3:
    unexpected token \"*\"", "[2].sku: ...". The definition compiler puts
    the template's own path in front ("steps[0].input.amount: ...").

    Rendering is bounded: interpolated text of one render is capped at
    S_MAX_TEXT bytes. Rendered values never share containers with the
    context (shf_expr_eval copies them). Pure; a compiled template is
    immutable.
*/
#include "../common/shf_alloc.h"
#include "shf_template.h"
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Bytes of interpolated text one render may produce.
#define S_MAX_TEXT (8 * 1024 * 1024)

typedef enum {
    S_CONST,  //  value as is
    S_EXPR,   //  "${EXPR}": the expression's typed value
    S_TEXT,   //  text pieces and expressions, rendered as one string
    S_ARRAY,
    S_OBJECT
} s_kind_t;

typedef struct s_tnode s_tnode_t;
struct s_tnode {
    s_kind_t kind;
    json_t *value;     //  S_CONST
    shf_expr_t *expr;  //  S_EXPR
    //  S_TEXT: piece i is text when exprs [i] is NULL (texts [i]), else
    //  the expression; S_ARRAY/S_OBJECT: the members.
    char **texts;
    size_t *text_lens;
    shf_expr_t **exprs;
    s_tnode_t **kids;
    char **keys;  //  S_OBJECT: member keys (may hold NULs)
    size_t *key_lens;
    size_t count;
};

struct shf_template {
    s_tnode_t *root;
};

typedef struct {
    char *err;
    size_t errlen;
    char path [512];  //  JSON path of the node being worked on
    size_t path_len;
    size_t text_left;  //  render: interpolated bytes still allowed
} s_ctx_t;


static void
s_tnode_destroy (s_tnode_t *node)
{
    if (!node)
        return;
    json_decref (node->value);
    shf_expr_destroy (&node->expr);
    for (size_t i = 0; i < node->count; i++) {
        if (node->texts)
            free (node->texts [i]);
        if (node->exprs)
            shf_expr_destroy (&node->exprs [i]);
        if (node->kids)
            s_tnode_destroy (node->kids [i]);
        if (node->keys)
            free (node->keys [i]);
    }
    free (node->texts);
    free (node->text_lens);
    free (node->exprs);
    free (node->kids);
    free (node->keys);
    free (node->key_lens);
    free (node);
}

static void s_fail (s_ctx_t *c, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));

//  "PATH: message", or the bare message at the template root.
static void
s_fail (s_ctx_t *c, const char *format, ...)
{
    if (!c->err || !c->errlen)
        return;
    int n = 0;
    if (c->path_len)
        n = snprintf (c->err, c->errlen, "%s: ", c->path);
    if (n < 0 || (size_t) n >= c->errlen)
        return;
    va_list args;
    va_start (args, format);
    vsnprintf (c->err + n, c->errlen - (size_t) n, format, args);
    va_end (args);
}

//  Appends ".key", "[\"odd key\"]" or "[i]" to the path; returns the old
//  length to restore. A path too long for the buffer is cut with "...".
static size_t
s_path_push (s_ctx_t *c, const char *key, size_t index)
{
    size_t old = c->path_len;
    size_t room = sizeof c->path - old;
    int n;
    if (key) {
        bool plain = *key != 0;
        for (const char *k = key; *k; k++)
            if (!((*k >= 'a' && *k <= 'z') || (*k >= 'A' && *k <= 'Z')
                  || (*k >= '0' && *k <= '9') || *k == '_' || *k == '-'))
                plain = false;
        n = plain ? snprintf (c->path + old, room, ".%s", key)
                  : snprintf (c->path + old, room, "[\"%s\"]", key);
    }
    else
        n = snprintf (c->path + old, room, "[%zu]", index);
    if (n < 0 || (size_t) n >= room) {
        //  Keep the message readable rather than exact.
        strcpy (c->path + sizeof c->path - 4, "...");
        c->path_len = sizeof c->path - 1;
    }
    else
        c->path_len += (size_t) n;
    return old;
}

static void
s_path_pop (s_ctx_t *c, size_t old)
{
    c->path_len = old;
    c->path [old] = 0;
}

//  Finds the '}' closing an expression that starts at s [0]; returns its
//  offset or -1. Skips string literals and balanced braces.
static long
s_expr_end (const char *s, size_t n)
{
    int depth = 0;
    bool quoted = false;
    for (size_t i = 0; i < n; i++) {
        char ch = s [i];
        if (quoted) {
            if (ch == '\\')
                i++;
            else if (ch == '"')
                quoted = false;
        }
        else if (ch == '"')
            quoted = true;
        else if (ch == '{')
            depth++;
        else if (ch == '}') {
            if (depth == 0)
                return (long) i;
            depth--;
        }
    }
    return -1;
}

static shf_err_t
s_compile_expr (s_ctx_t *c, const char *text, size_t len, shf_expr_t **expr_p)
{
    char msg [256];
    shf_err_t rc = shf_expr_compile (text, len, expr_p, msg, sizeof msg);
    if (rc != SHF_OK)
        s_fail (c, "%s", msg);
    return rc;
}

static void
s_add_piece (s_tnode_t *node, const char *text, size_t len, shf_expr_t *expr)
{
    //  Pieces are few; grow one at a time.
    size_t n = node->count + 1;
    node->texts = realloc (node->texts, n * sizeof *node->texts);
    node->text_lens = realloc (node->text_lens, n * sizeof *node->text_lens);
    node->exprs = realloc (node->exprs, n * sizeof *node->exprs);
    if (!node->texts || !node->text_lens || !node->exprs)
        abort ();
    node->texts [node->count] = NULL;
    node->text_lens [node->count] = 0;
    node->exprs [node->count] = expr;
    if (!expr) {
        char *copy = shf_alloc (len + 1);
        memcpy (copy, text, len);
        node->texts [node->count] = copy;
        node->text_lens [node->count] = len;
    }
    node->count = n;
}

static shf_err_t
s_compile_string (s_ctx_t *c, const json_t *value, s_tnode_t **node_p)
{
    const char *s = json_string_value (value);
    size_t n = json_string_length (value);
    s_tnode_t *node = shf_alloc (sizeof *node);
    if (n >= 3 && s [0] == '$' && s [1] == '{'
        && s_expr_end (s + 2, n - 2) == (long) n - 3) {
        node->kind = S_EXPR;
        shf_err_t rc = s_compile_expr (c, s + 2, n - 3, &node->expr);
        if (rc != SHF_OK) {
            s_tnode_destroy (node);
            return rc;
        }
        *node_p = node;
        return SHF_OK;
    }
    node->kind = S_TEXT;
    size_t text_start = 0;
    bool has_expr = false;
    for (size_t i = 0; i + 1 < n; i++) {
        if (s [i] != '$')
            continue;
        if (s [i + 1] == '$' && i + 2 < n && s [i + 2] == '{') {
            //  "$${" is a literal "${": keep the text up to the first '$'.
            s_add_piece (node, s + text_start, i + 1 - text_start, NULL);
            text_start = i + 2;
            i += 2;
            continue;
        }
        if (s [i + 1] != '{')
            continue;
        long end = s_expr_end (s + i + 2, n - i - 2);
        if (end < 0) {
            s_fail (c, "no '}' closes the \"${\" at byte %zu", i + 1);
            s_tnode_destroy (node);
            return SHF_EINVAL;
        }
        if (i > text_start)
            s_add_piece (node, s + text_start, i - text_start, NULL);
        shf_expr_t *expr = NULL;
        shf_err_t rc = s_compile_expr (c, s + i + 2, (size_t) end, &expr);
        if (rc != SHF_OK) {
            s_tnode_destroy (node);
            return rc;
        }
        s_add_piece (node, NULL, 0, expr);
        has_expr = true;
        i += 2 + (size_t) end;
        text_start = i + 1;
    }
    if (!has_expr && node->count == 0) {
        //  Plain text: a constant.
        node->kind = S_CONST;
        node->value = json_incref ((json_t *) value);
    }
    else if (text_start < n)
        s_add_piece (node, s + text_start, n - text_start, NULL);
    *node_p = node;
    return SHF_OK;
}

static shf_err_t
s_compile (s_ctx_t *c, const json_t *value, s_tnode_t **node_p)
{
    *node_p = NULL;
    if (json_is_string (value))
        return s_compile_string (c, value, node_p);
    s_tnode_t *node = shf_alloc (sizeof *node);
    if (json_is_array (value)) {
        node->kind = S_ARRAY;
        node->count = json_array_size (value);
        node->kids = shf_alloc (node->count * sizeof *node->kids);
        for (size_t i = 0; i < node->count; i++) {
            size_t old = s_path_push (c, NULL, i);
            shf_err_t rc =
                s_compile (c, json_array_get (value, i), &node->kids [i]);
            s_path_pop (c, old);
            if (rc != SHF_OK) {
                s_tnode_destroy (node);
                return rc;
            }
        }
    }
    else if (json_is_object (value)) {
        node->kind = S_OBJECT;
        node->count = json_object_size (value);
        node->kids = shf_alloc (node->count * sizeof *node->kids);
        node->keys = shf_alloc (node->count * sizeof *node->keys);
        node->key_lens = shf_alloc (node->count * sizeof *node->key_lens);
        size_t i = 0;
        for (void *it = json_object_iter ((json_t *) value); it;
             it = json_object_iter_next ((json_t *) value, it), i++) {
            const char *key = json_object_iter_key (it);
            size_t key_len = json_object_iter_key_len (it);
            node->keys [i] = shf_alloc (key_len + 1);
            memcpy (node->keys [i], key, key_len);
            node->key_lens [i] = key_len;
            size_t old = s_path_push (c, key, 0);
            shf_err_t rc =
                s_compile (c, json_object_iter_value (it), &node->kids [i]);
            s_path_pop (c, old);
            if (rc != SHF_OK) {
                s_tnode_destroy (node);
                return rc;
            }
        }
    }
    else {
        node->kind = S_CONST;
        node->value = json_deep_copy (value);
    }
    *node_p = node;
    return SHF_OK;
}

shf_err_t
shf_template_compile (const json_t *value, shf_template_t **self_p, char *err,
                      size_t errlen)
{
    assert (self_p);
    *self_p = NULL;
    if (err && errlen)
        err [0] = 0;
    if (!value)
        value = json_null ();
    s_ctx_t c = {.err = err, .errlen = errlen};
    s_tnode_t *root = NULL;
    //  Copy first: the tree keeps pieces of the document (strings, keys).
    json_t *copy = json_deep_copy (value);
    shf_err_t rc = s_compile (&c, copy, &root);
    json_decref (copy);
    if (rc != SHF_OK)
        return rc;
    shf_template_t *self = shf_alloc (sizeof *self);
    self->root = root;
    *self_p = self;
    return SHF_OK;
}

void
shf_template_destroy (shf_template_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        s_tnode_destroy ((*self_p)->root);
        free (*self_p);
        *self_p = NULL;
    }
}

static json_t *
s_eval (s_ctx_t *c, const shf_expr_t *expr, const json_t *context)
{
    char msg [256];
    json_t *value = NULL;
    if (shf_expr_eval (expr, context, &value, msg, sizeof msg) != SHF_OK) {
        s_fail (c, "%s", msg);
        return NULL;
    }
    return value;
}

static json_t *
s_render (s_ctx_t *c, const s_tnode_t *node, const json_t *context)
{
    switch (node->kind) {
        case S_CONST:
            return json_deep_copy (node->value);
        case S_EXPR:
            return s_eval (c, node->expr, context);
        case S_TEXT: {
            size_t len = 0, cap = 64;
            char *buf = shf_alloc (cap);
            for (size_t i = 0; i < node->count; i++) {
                const char *piece = node->texts [i];
                size_t piece_len = node->text_lens [i];
                char *dumped = NULL;
                if (node->exprs [i]) {
                    json_t *value = s_eval (c, node->exprs [i], context);
                    if (!value) {
                        free (buf);
                        return NULL;
                    }
                    if (json_is_string (value)) {
                        piece_len = json_string_length (value);
                        dumped = shf_alloc (piece_len + 1);
                        memcpy (dumped, json_string_value (value), piece_len);
                    }
                    else {
                        dumped =
                            json_dumps (value, JSON_COMPACT | JSON_ENCODE_ANY);
                        assert (dumped);
                        piece_len = strlen (dumped);
                    }
                    json_decref (value);
                    piece = dumped;
                }
                if (piece_len > c->text_left) {
                    free (dumped);
                    free (buf);
                    s_fail (c, "interpolated text over %d bytes", S_MAX_TEXT);
                    return NULL;
                }
                c->text_left -= piece_len;
                if (len + piece_len > cap) {
                    while (len + piece_len > cap)
                        cap *= 2;
                    buf = realloc (buf, cap);
                    if (!buf)
                        abort ();
                }
                memcpy (buf + len, piece, piece_len);
                len += piece_len;
                free (dumped);
            }
            //  Pieces of valid UTF-8 make valid UTF-8.
            json_t *value = json_stringn_nocheck (buf, len);
            free (buf);
            return value;
        }
        case S_ARRAY: {
            json_t *array = json_array ();
            for (size_t i = 0; i < node->count; i++) {
                size_t old = s_path_push (c, NULL, i);
                json_t *item = s_render (c, node->kids [i], context);
                s_path_pop (c, old);
                if (!item) {
                    json_decref (array);
                    return NULL;
                }
                json_array_append_new (array, item);
            }
            return array;
        }
        case S_OBJECT: {
            json_t *object = json_object ();
            for (size_t i = 0; i < node->count; i++) {
                size_t old = s_path_push (c, node->keys [i], 0);
                json_t *item = s_render (c, node->kids [i], context);
                s_path_pop (c, old);
                if (!item) {
                    json_decref (object);
                    return NULL;
                }
                json_object_setn_new_nocheck (object, node->keys [i],
                                              node->key_lens [i], item);
            }
            return object;
        }
    }
    return NULL;
}

shf_err_t
shf_template_render (const shf_template_t *self, const json_t *context,
                     json_t **value_p, char *err, size_t errlen)
{
    assert (self);
    assert (value_p);
    *value_p = NULL;
    if (err && errlen)
        err [0] = 0;
    s_ctx_t c = {.err = err, .errlen = errlen, .text_left = S_MAX_TEXT};
    json_t *value = s_render (&c, self->root, context);
    if (!value)
        return SHF_EINVAL;
    *value_p = value;
    return SHF_OK;
}


//  --------------------------------------------------------------------
//  Self-test

static json_t *
s_json (const char *text)
{
    json_error_t jerr;
    json_t *value = json_loads (text, JSON_DECODE_ANY, &jerr);
    if (!value)
        fprintf (stderr, "bad test JSON %s: %s\n", text, jerr.text);
    assert (value);
    return value;
}

void
shf_template_test (bool verbose)
{
    if (verbose)
        printf (" * shf_template: ");
    json_t *context = s_json (
        "{\"input\": {\"amount\": 42, \"name\": \"ada\", \"tags\": [\"x\"],"
        "  \"price\": 2.5, \"items\": [{\"sku\": \"a1\"}]},"
        " \"steps\": {\"charge\": {\"output\": {\"ok\": true},"
        "   \"status\": \"completed\", \"attempt\": 1}},"
        " \"workflow\": {\"id\": \"w-1\"}}");
    static const struct {
        const char *tmpl;
        const char *expect;
    } ok [] = {
        {"{\"amount\": \"${input.amount}\"}", "{\"amount\":42}"},
        {"\"${input}\"",
         "{\"amount\":42,\"name\":\"ada\",\"tags\":[\"x\"],\"price\":2.5,"
         "\"items\":[{\"sku\":\"a1\"}]}"},
        {"\"${ input.tags }\"", "[\"x\"]"},
        {"\"${input.missing}\"", "null"},
        {"\"id ${workflow.id}!\"", "\"id w-1!\""},
        {"\"${input.name}${input.amount}\"", "\"ada42\""},
        {"\"n=${input.amount} p=${input.price} t=${input.tags} z=${null}\"",
         "\"n=42 p=2.5 t=[\\\"x\\\"] z=null\""},
        {"\"ok: ${steps.charge.output}\"", "\"ok: {\\\"ok\\\":true}\""},
        {"\"${\\\"}\\\"}\"", "\"}\""},
        {"\"${ {\\\"a\\\": 1}.a }\"", NULL},  //  not an expression: error
        {"\"${ {\\\"a\\\": \\\"}\\\"} }\"", "{\"a\":\"}\"}"},
        {"\"cost $5\"", "\"cost $5\""},
        {"\"$\"", "\"$\""},
        {"\"a $${x} b\"", "\"a ${x} b\""},
        {"\"$${input}\"", "\"${input}\""},
        {"\"${input.amount + 1} items\"", "\"43 items\""},
        {"[1, \"${input.items[0].sku}\", {\"deep\": [\"${len(input.tags)}\"]}]",
         "[1,\"a1\",{\"deep\":[1]}]"},
        {"{\"a\": {\"b\": null, \"c\": 2.5, \"d\": true}}",
         "{\"a\":{\"b\":null,\"c\":2.5,\"d\":true}}"},
        {"\"\"", "\"\""},
        {"null", "null"},
        {"7", "7"},
        {"\"\\u00e9 ${input.name} \\u00e9\"", "\"\\u00E9 ada \\u00E9\""},
        {"{\"odd key\": \"${steps.charge.status == \\\"completed\\\"}\"}",
         "{\"odd key\":true}"},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok [0]; i++) {
        if (!ok [i].expect)
            continue;
        json_t *doc = s_json (ok [i].tmpl);
        shf_template_t *tmpl = NULL;
        char err [256];
        shf_err_t rc = shf_template_compile (doc, &tmpl, err, sizeof err);
        if (rc != SHF_OK)
            fprintf (stderr, "%s: %s\n", ok [i].tmpl, err);
        assert (rc == SHF_OK);
        json_decref (doc);  //  the template keeps its own copy
        json_t *value = NULL;
        rc = shf_template_render (tmpl, context, &value, err, sizeof err);
        if (rc != SHF_OK)
            fprintf (stderr, "%s: %s\n", ok [i].tmpl, err);
        assert (rc == SHF_OK);
        char *text =
            json_dumps (value, JSON_COMPACT | JSON_ENCODE_ANY
                                   | JSON_ENSURE_ASCII | JSON_PRESERVE_ORDER);
        if (strcmp (text, ok [i].expect) != 0)
            fprintf (stderr, "%s: got %s want %s\n", ok [i].tmpl, text,
                     ok [i].expect);
        assert (strcmp (text, ok [i].expect) == 0);
        free (text);
        json_decref (value);
        shf_template_destroy (&tmpl);
        assert (tmpl == NULL);
    }

    //  A rendered value is the caller's: changing it leaves the context.
    json_t *doc = s_json ("{\"all\": \"${input}\"}");
    shf_template_t *tmpl = NULL;
    assert (shf_template_compile (doc, &tmpl, NULL, 0) == SHF_OK);
    json_decref (doc);
    json_t *value = NULL;
    assert (shf_template_render (tmpl, context, &value, NULL, 0) == SHF_OK);
    json_object_set_new (json_object_get (value, "all"), "amount",
                         json_integer (0));
    assert (json_integer_value (
                json_object_get (json_object_get (context, "input"), "amount"))
            == 42);
    json_decref (value);
    shf_template_destroy (&tmpl);
    shf_template_destroy (&tmpl);
    //  A NULL template value is null.
    assert (shf_template_compile (NULL, &tmpl, NULL, 0) == SHF_OK);
    assert (shf_template_render (tmpl, context, &value, NULL, 0) == SHF_OK);
    assert (json_is_null (value));
    json_decref (value);
    shf_template_destroy (&tmpl);

    //  Compile errors name the path below the template root.
    static const struct {
        const char *tmpl;
        const char *message;
    } bad [] = {
        {"{\"amount\": \"${1 * * 2}\"}",
         ".amount: column 5: unexpected token \"*\""},
        {"\"${}\"", "column 1: unexpected end of expression"},
        {"\"${ {\\\"a\\\": 1}.a }\"", "column 10: unexpected token \".\""},
        {"[0, {\"x\": [\"ok\", \"total ${input.amount +}\"]}]",
         "[1].x[1]: column 15: unexpected end of expression"},
        {"{\"a b\": \"${(}\"}",
         "[\"a b\"]: column 2: unexpected end of expression"},
        {"{\"a\": \"x ${input.name\"}",
         ".a: no '}' closes the \"${\" at byte 3"},
        {"{\"a\": \"${\\\"}\"}", ".a: no '}' closes the \"${\" at byte 1"},
        {"{\"s\": \"${foo}\"}",
         ".s: column 1: unknown name \"foo\" (a path starts with input, "
         "steps, signals or workflow)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad [0]; i++) {
        doc = s_json (bad [i].tmpl);
        char err [256] = "untouched";
        tmpl = NULL;
        shf_err_t rc = shf_template_compile (doc, &tmpl, err, sizeof err);
        if (rc != SHF_EINVAL || strcmp (err, bad [i].message) != 0)
            fprintf (stderr, "%s: got %d %s\n", bad [i].tmpl, rc, err);
        assert (rc == SHF_EINVAL);
        assert (tmpl == NULL);
        assert (strcmp (err, bad [i].message) == 0);
        json_decref (doc);
    }

    //  Render errors name the path too.
    doc = s_json ("{\"a\": [1, {\"b\": \"${input.name * 2}\"}]}");
    assert (shf_template_compile (doc, &tmpl, NULL, 0) == SHF_OK);
    json_decref (doc);
    char err [256];
    assert (shf_template_render (tmpl, context, &value, err, sizeof err)
            == SHF_EINVAL);
    assert (value == NULL);
    assert (strcmp (err, ".a[1].b: '*' needs two numbers") == 0);
    shf_template_destroy (&tmpl);

    //  Interpolated text is bounded.
    json_t *big = json_object ();
    char *blob = shf_alloc (3 * 1024 * 1024 + 1);
    memset (blob, 'x', 3 * 1024 * 1024);
    json_object_set_new (big, "input", json_string (blob));
    free (blob);
    doc = s_json ("\"${input}${input}${input}\"");
    assert (shf_template_compile (doc, &tmpl, NULL, 0) == SHF_OK);
    json_decref (doc);
    assert (shf_template_render (tmpl, big, &value, err, sizeof err)
            == SHF_EINVAL);
    assert (strstr (err, "interpolated text over"));
    shf_template_destroy (&tmpl);
    json_decref (big);

    json_decref (context);
    if (verbose)
        printf ("OK\n");
}
