/*  shf_expr.c - the expression language of `when` and templates.

    A hand-written recursive-descent parser turns the text into an
    immutable tree once; the evaluator walks the tree against a context
    object (see shf_expr.h). Called by shf_template and the definition
    compiler at registration, and by shf_workflow at run time.

    Invariants:
    - Bounded: text over SHF_EXPR_MAX_LEN bytes and nesting (parentheses,
      brackets, braces, len(), unary operators) deeper than
      SHF_EXPR_MAX_DEPTH are refused at compile time, so neither the
      parser nor the evaluator can run out of stack. String concatenation
      is capped per evaluation (S_MAX_CONCAT) so allocation is bounded.
    - Deterministic: no clock, no randomness, no loops over user data
      except structural equality of values already in the context.
    - Integers are exact int64: overflow and division by zero are errors,
      never wrapped. A real on either side of an operator promotes the
      operation to double; a non-finite result is an error.
    - A result never shares containers with the context: an array or
      object result is a deep copy the caller may change freely.
    - A missing path is null; len(null) is 0 so `len(input.items) > 0`
      works whether or not the field exists.

    Grammar (lowest precedence first):
      or      := and ('||' and)*
      and     := eq ('&&' eq)*
      eq      := rel (('==' | '!=') rel)*
      rel     := add (('<' | '<=' | '>' | '>=') add)*
      add     := mul (('+' | '-') mul)*
      mul     := unary (('*' | '/' | '%') unary)*
      unary   := ('!' | '-') unary | primary
      primary := NUMBER | STRING | true | false | null | len '(' or ')'
               | '(' or ')' | '[' [or (',' or)*] ']'
               | '{' [STRING ':' or (',' STRING ':' or)*] '}' | path
      path    := ROOT ('.' NAME | '[' (INTEGER | STRING) ']')*
    ROOT is input, steps, signals or workflow; no spaces inside a path; the
    name right after steps. or signals. may contain '-' (step IDs).
*/
#include "../common/shf_alloc.h"
#include "shf_expr.h"
#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Total bytes string concatenation may produce in one evaluation.
#define S_MAX_CONCAT (4 * 1024 * 1024)

typedef enum {
    S_LIT,
    S_PATH,
    S_NOT,
    S_NEG,
    S_LEN,
    S_ARRAY,
    S_OBJECT,
    S_OR,
    S_AND,
    S_EQ,
    S_NE,
    S_LT,
    S_LE,
    S_GT,
    S_GE,
    S_ADD,
    S_SUB,
    S_MUL,
    S_DIV,
    S_MOD
} s_kind_t;

//  One step of a path: a key (json string) or an array index.
typedef struct {
    json_t *key;  //  NULL for an index
    int64_t index;
} s_seg_t;

typedef struct s_node s_node_t;
struct s_node {
    s_kind_t kind;
    json_t *value;  //  S_LIT
    s_seg_t *segs;  //  S_PATH: segs [0] is the root name
    size_t nsegs;
    s_node_t **kids;  //  operands, array items, object values
    json_t **keys;    //  S_OBJECT: one key per kid
    size_t nkids;
};

struct shf_expr {
    s_node_t *root;
};

static void *
s_grow (void *ptr, size_t count, size_t size)
{
    //  Arrays grow by doubling; called when count is a power of two.
    if (count && (count & (count - 1)) != 0)
        return ptr;
    size_t cap = count ? count * 2 : 2;
    return shf_realloc (ptr, cap * size);
}

static void
s_node_destroy (s_node_t *node)
{
    if (!node)
        return;
    json_decref (node->value);
    for (size_t i = 0; i < node->nsegs; i++)
        json_decref (node->segs [i].key);
    free (node->segs);
    for (size_t i = 0; i < node->nkids; i++) {
        s_node_destroy (node->kids [i]);
        if (node->keys)
            json_decref (node->keys [i]);
    }
    free (node->kids);
    free (node->keys);
    free (node);
}

static s_node_t *
s_node_new (s_kind_t kind)
{
    s_node_t *node = shf_alloc (sizeof *node);
    node->kind = kind;
    return node;
}

static void
s_node_add (s_node_t *node, s_node_t *kid, json_t *key)
{
    node->kids = s_grow (node->kids, node->nkids, sizeof *node->kids);
    if (key)
        node->keys = s_grow (node->keys, node->nkids, sizeof *node->keys);
    node->kids [node->nkids] = kid;
    if (key)
        node->keys [node->nkids] = key;
    node->nkids++;
}

static void
s_node_add_seg (s_node_t *node, json_t *key, int64_t index)
{
    node->segs = s_grow (node->segs, node->nsegs, sizeof *node->segs);
    node->segs [node->nsegs].key = key;
    node->segs [node->nsegs].index = index;
    node->nsegs++;
}


//  --------------------------------------------------------------------
//  Lexer

typedef enum {
    T_END,
    T_BAD,  //  a lexical error; tok.bad says what
    T_NUM,
    T_STR,
    T_IDENT,
    T_LPAREN,
    T_RPAREN,
    T_LBRACK,
    T_RBRACK,
    T_LBRACE,
    T_RBRACE,
    T_COMMA,
    T_COLON,
    T_DOT,
    T_NOT,
    T_OR,
    T_AND,
    T_EQ,
    T_NE,
    T_LT,
    T_LE,
    T_GT,
    T_GE,
    T_PLUS,
    T_MINUS,
    T_STAR,
    T_SLASH,
    T_PERCENT
} s_tok_kind_t;

typedef struct {
    s_tok_kind_t kind;
    size_t start, end;  //  byte offsets into the text
    const char *bad;    //  T_BAD: the message
} s_tok_t;

typedef struct {
    const char *text;
    size_t len;
    size_t pos;   //  where the lexer scans next
    s_tok_t tok;  //  the lookahead token
    int depth;
    bool failed;
    shf_err_t rc;
    char *err;
    size_t errlen;
} s_parser_t;

static bool
s_is_digit (char c)
{
    return c >= '0' && c <= '9';
}

static bool
s_is_name_char (char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || s_is_digit (c)
           || c == '_';
}

static void s_fail (s_parser_t *p, size_t offset, const char *format, ...)
    __attribute__ ((format (printf, 3, 4)));

//  Records the first error only; column is 1-based.
static void
s_fail (s_parser_t *p, size_t offset, const char *format, ...)
{
    if (p->failed)
        return;
    p->failed = true;
    if (p->rc == SHF_OK)
        p->rc = SHF_EINVAL;
    if (!p->err || !p->errlen)
        return;
    int n = snprintf (p->err, p->errlen, "column %zu: ", offset + 1);
    if (n < 0 || (size_t) n >= p->errlen)
        return;
    va_list args;
    va_start (args, format);
    vsnprintf (p->err + n, p->errlen - (size_t) n, format, args);
    va_end (args);
}

static void
s_advance (s_parser_t *p)
{
    const char *t = p->text;
    size_t i = p->pos;
    while (i < p->len
           && (t [i] == ' ' || t [i] == '\t' || t [i] == '\n' || t [i] == '\r'))
        i++;
    s_tok_t tok = {T_END, i, i, NULL};
    if (i >= p->len) {
        p->tok = tok;
        p->pos = i;
        return;
    }
    char c = t [i];
    char next = i + 1 < p->len ? t [i + 1] : 0;
    size_t width = 1;
    switch (c) {
        case '(':
            tok.kind = T_LPAREN;
            break;
        case ')':
            tok.kind = T_RPAREN;
            break;
        case '[':
            tok.kind = T_LBRACK;
            break;
        case ']':
            tok.kind = T_RBRACK;
            break;
        case '{':
            tok.kind = T_LBRACE;
            break;
        case '}':
            tok.kind = T_RBRACE;
            break;
        case ',':
            tok.kind = T_COMMA;
            break;
        case ':':
            tok.kind = T_COLON;
            break;
        case '.':
            tok.kind = T_DOT;
            break;
        case '+':
            tok.kind = T_PLUS;
            break;
        case '-':
            tok.kind = T_MINUS;
            break;
        case '*':
            tok.kind = T_STAR;
            break;
        case '/':
            tok.kind = T_SLASH;
            break;
        case '%':
            tok.kind = T_PERCENT;
            break;
        case '!':
            tok.kind = next == '=' ? T_NE : T_NOT;
            width = next == '=' ? 2 : 1;
            break;
        case '<':
            tok.kind = next == '=' ? T_LE : T_LT;
            width = next == '=' ? 2 : 1;
            break;
        case '>':
            tok.kind = next == '=' ? T_GE : T_GT;
            width = next == '=' ? 2 : 1;
            break;
        case '=':
            tok.kind = next == '=' ? T_EQ : T_BAD;
            tok.bad = "unexpected '=' (use == to compare)";
            width = next == '=' ? 2 : 1;
            break;
        case '&':
            tok.kind = next == '&' ? T_AND : T_BAD;
            tok.bad = "unexpected '&' (use &&)";
            width = next == '&' ? 2 : 1;
            break;
        case '|':
            tok.kind = next == '|' ? T_OR : T_BAD;
            tok.bad = "unexpected '|' (use ||)";
            width = next == '|' ? 2 : 1;
            break;
        case '"': {
            size_t j = i + 1;
            while (j < p->len && t [j] != '"') {
                if (t [j] == '\\')
                    j++;
                j++;
            }
            if (j >= p->len) {
                tok.kind = T_BAD;
                tok.bad = "unterminated string";
                width = p->len - i;
            }
            else {
                tok.kind = T_STR;
                width = j + 1 - i;
            }
            break;
        }
        default:
            if (s_is_digit (c)) {
                //  JSON number shape: int [frac] [exp]; checked later.
                size_t j = i;
                while (j < p->len && s_is_digit (t [j]))
                    j++;
                if (j + 1 < p->len && t [j] == '.' && s_is_digit (t [j + 1])) {
                    j++;
                    while (j < p->len && s_is_digit (t [j]))
                        j++;
                }
                if (j < p->len && (t [j] == 'e' || t [j] == 'E')) {
                    size_t k = j + 1;
                    if (k < p->len && (t [k] == '+' || t [k] == '-'))
                        k++;
                    if (k < p->len && s_is_digit (t [k])) {
                        while (k < p->len && s_is_digit (t [k]))
                            k++;
                        j = k;
                    }
                }
                tok.kind = T_NUM;
                width = j - i;
            }
            else if (s_is_name_char (c)) {
                size_t j = i;
                while (j < p->len && s_is_name_char (t [j]))
                    j++;
                tok.kind = T_IDENT;
                width = j - i;
            }
            else {
                tok.kind = T_BAD;
                tok.bad = "unexpected character";
            }
    }
    if (tok.kind != T_BAD)
        tok.bad = NULL;
    tok.end = i + width;
    p->tok = tok;
    p->pos = tok.end;
}

//  Reports the lookahead token as out of place.
static void
s_unexpected (s_parser_t *p)
{
    const s_tok_t *tok = &p->tok;
    if (tok->kind == T_END)
        s_fail (p, tok->start, "unexpected end of expression");
    else if (tok->kind == T_BAD)
        s_fail (p, tok->start, "%s", tok->bad);
    else {
        size_t n = tok->end - tok->start;
        s_fail (p, tok->start, "unexpected token \"%.*s\"",
                (int) (n > 32 ? 32 : n), p->text + tok->start);
    }
}

static bool
s_expect (s_parser_t *p, s_tok_kind_t kind, const char *what)
{
    if (p->tok.kind != kind) {
        if (p->tok.kind == T_BAD)
            s_unexpected (p);
        else
            s_fail (p, p->tok.start, "expected %s", what);
        return false;
    }
    s_advance (p);
    return true;
}

static int
s_hex (char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool
s_hex4 (const char *s, size_t left, uint32_t *code_p)
{
    if (left < 4)
        return false;
    uint32_t code = 0;
    for (int i = 0; i < 4; i++) {
        int h = s_hex (s [i]);
        if (h < 0)
            return false;
        code = code * 16 + (uint32_t) h;
    }
    *code_p = code;
    return true;
}

//  Decodes the string token (JSON escapes) into a new json string, or
//  NULL after s_fail.
static json_t *
s_string (s_parser_t *p, const s_tok_t *tok)
{
    const char *s = p->text + tok->start + 1;
    size_t n = tok->end - tok->start - 2;
    char *buf = shf_alloc (n + 1);  //  decoding never grows the text
    size_t out = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char) s [i];
        size_t at = tok->start + 1 + i;
        if (c < 0x20) {
            s_fail (p, at, "control character in string");
            goto fail;
        }
        if (c != '\\') {
            buf [out++] = (char) c;
            continue;
        }
        i++;
        assert (i < n);  //  the lexer never ends a string after '\'
        switch (s [i]) {
            case '"':
                buf [out++] = '"';
                break;
            case '\\':
                buf [out++] = '\\';
                break;
            case '/':
                buf [out++] = '/';
                break;
            case 'b':
                buf [out++] = '\b';
                break;
            case 'f':
                buf [out++] = '\f';
                break;
            case 'n':
                buf [out++] = '\n';
                break;
            case 'r':
                buf [out++] = '\r';
                break;
            case 't':
                buf [out++] = '\t';
                break;
            case 'u': {
                uint32_t code, low;
                if (!s_hex4 (s + i + 1, n - i - 1, &code)) {
                    s_fail (p, at, "bad \\u escape");
                    goto fail;
                }
                i += 4;
                if (code >= 0xDC00 && code <= 0xDFFF) {
                    s_fail (p, at, "lone surrogate in \\u escape");
                    goto fail;
                }
                if (code >= 0xD800 && code <= 0xDBFF) {
                    if (i + 2 >= n || s [i + 1] != '\\' || s [i + 2] != 'u'
                        || !s_hex4 (s + i + 3, n - i - 3, &low) || low < 0xDC00
                        || low > 0xDFFF) {
                        s_fail (p, at, "lone surrogate in \\u escape");
                        goto fail;
                    }
                    i += 6;
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                }
                //  At most 4 bytes out for at least 6 bytes in.
                if (code < 0x80)
                    buf [out++] = (char) code;
                else if (code < 0x800) {
                    buf [out++] = (char) (0xC0 | (code >> 6));
                    buf [out++] = (char) (0x80 | (code & 0x3F));
                }
                else if (code < 0x10000) {
                    buf [out++] = (char) (0xE0 | (code >> 12));
                    buf [out++] = (char) (0x80 | ((code >> 6) & 0x3F));
                    buf [out++] = (char) (0x80 | (code & 0x3F));
                }
                else {
                    buf [out++] = (char) (0xF0 | (code >> 18));
                    buf [out++] = (char) (0x80 | ((code >> 12) & 0x3F));
                    buf [out++] = (char) (0x80 | ((code >> 6) & 0x3F));
                    buf [out++] = (char) (0x80 | (code & 0x3F));
                }
                break;
            }
            default:
                s_fail (p, at, "bad escape in string");
                goto fail;
        }
    }
    json_t *value = json_stringn (buf, out);
    if (!value)
        s_fail (p, tok->start, "string is not valid UTF-8");
    free (buf);
    return value;
fail:
    free (buf);
    return NULL;
}

//  Converts the number token (with a leading '-' if negative) to json.
static json_t *
s_number (s_parser_t *p, const s_tok_t *tok, bool negative)
{
    const char *s = p->text + tok->start;
    size_t n = tok->end - tok->start;
    if (n > 1 && s [0] == '0' && s_is_digit (s [1])) {
        s_fail (p, tok->start, "number with a leading zero");
        return NULL;
    }
    bool integer = true;
    for (size_t i = 0; i < n; i++)
        if (!s_is_digit (s [i]))
            integer = false;
    if (integer) {
        int64_t value = 0;
        for (size_t i = 0; i < n; i++) {
            int digit = s [i] - '0';
            if (__builtin_mul_overflow (value, 10, &value)
                || __builtin_add_overflow (value, negative ? -digit : digit,
                                           &value)) {
                s_fail (p, tok->start, "integer out of range");
                return NULL;
            }
        }
        return json_integer (value);
    }
    char buf [SHF_EXPR_MAX_LEN + 2];
    assert (n < SHF_EXPR_MAX_LEN);
    buf [0] = '-';
    memcpy (buf + 1, s, n);
    buf [n + 1] = 0;
    double value = strtod (negative ? buf : buf + 1, NULL);
    if (!isfinite (value)) {
        s_fail (p, tok->start, "number out of range");
        return NULL;
    }
    return json_real (value);
}

static s_node_t *s_parse_or (s_parser_t *p);

//  Every nesting level passes here, which is what bounds the recursion.
static bool
s_enter (s_parser_t *p)
{
    if (++p->depth > SHF_EXPR_MAX_DEPTH) {
        p->rc = SHF_ETOOLARGE;
        s_fail (p, p->tok.start, "nested deeper than %d levels",
                SHF_EXPR_MAX_DEPTH);
        return false;
    }
    return true;
}

static bool
s_ident_is (const s_parser_t *p, const s_tok_t *tok, const char *word)
{
    size_t n = tok->end - tok->start;
    return strlen (word) == n && memcmp (p->text + tok->start, word, n) == 0;
}

//  A path from its root token; leaves the lookahead after the path.
static s_node_t *
s_parse_path (s_parser_t *p)
{
    const char *t = p->text;
    s_tok_t root = p->tok;
    bool id_first =
        s_ident_is (p, &root, "steps") || s_ident_is (p, &root, "signals");
    s_node_t *node = s_node_new (S_PATH);
    s_node_add_seg (node, json_stringn (t + root.start, root.end - root.start),
                    0);
    size_t q = root.end;
    while (q < p->len && (t [q] == '.' || t [q] == '[')) {
        if (t [q] == '.') {
            size_t start = ++q;
            bool id_pos = id_first && node->nsegs == 1;
            while (q < p->len
                   && (s_is_name_char (t [q]) || (id_pos && t [q] == '-')))
                q++;
            if (q == start) {
                s_fail (p, start, "expected a name after '.'");
                goto fail;
            }
            s_node_add_seg (node, json_stringn (t + start, q - start), 0);
            continue;
        }
        p->pos = q + 1;
        s_advance (p);
        s_tok_t tok = p->tok;
        if (tok.kind == T_NUM) {
            json_t *number = s_number (p, &tok, false);
            if (!number)
                goto fail;
            bool ok = json_is_integer (number);
            int64_t index = ok ? json_integer_value (number) : 0;
            json_decref (number);
            if (!ok) {
                s_fail (p, tok.start, "index must be an integer");
                goto fail;
            }
            s_node_add_seg (node, NULL, index);
        }
        else if (tok.kind == T_STR) {
            json_t *key = s_string (p, &tok);
            if (!key)
                goto fail;
            s_node_add_seg (node, key, 0);
        }
        else {
            if (tok.kind == T_BAD || tok.kind == T_END)
                s_unexpected (p);
            else
                s_fail (p, tok.start, "expected an index or a string");
            goto fail;
        }
        s_advance (p);
        if (p->tok.kind != T_RBRACK) {
            s_expect (p, T_RBRACK, "']'");
            goto fail;
        }
        q = p->tok.end;
    }
    p->pos = q;
    s_advance (p);
    return node;
fail:
    s_node_destroy (node);
    return NULL;
}

static s_node_t *
s_parse_primary (s_parser_t *p)
{
    s_tok_t tok = p->tok;
    s_node_t *node = NULL;
    switch (tok.kind) {
        case T_NUM: {
            json_t *value = s_number (p, &tok, false);
            if (!value)
                return NULL;
            node = s_node_new (S_LIT);
            node->value = value;
            s_advance (p);
            return node;
        }
        case T_STR: {
            json_t *value = s_string (p, &tok);
            if (!value)
                return NULL;
            node = s_node_new (S_LIT);
            node->value = value;
            s_advance (p);
            return node;
        }
        case T_LPAREN: {
            s_advance (p);
            node = s_parse_or (p);
            if (node && !s_expect (p, T_RPAREN, "')'")) {
                s_node_destroy (node);
                node = NULL;
            }
            return node;
        }
        case T_LBRACK: {
            if (!s_enter (p))
                return NULL;
            s_advance (p);
            node = s_node_new (S_ARRAY);
            while (p->tok.kind != T_RBRACK) {
                if (node->nkids && !s_expect (p, T_COMMA, "',' or ']'"))
                    goto fail;
                s_node_t *item = s_parse_or (p);
                if (!item)
                    goto fail;
                s_node_add (node, item, NULL);
            }
            s_advance (p);
            p->depth--;
            return node;
        }
        case T_LBRACE: {
            if (!s_enter (p))
                return NULL;
            s_advance (p);
            node = s_node_new (S_OBJECT);
            while (p->tok.kind != T_RBRACE) {
                if (node->nkids && !s_expect (p, T_COMMA, "',' or '}'"))
                    goto fail;
                if (p->tok.kind != T_STR) {
                    s_expect (p, T_STR, "a string key");
                    goto fail;
                }
                json_t *key = s_string (p, &p->tok);
                if (!key)
                    goto fail;
                s_advance (p);
                if (!s_expect (p, T_COLON, "':'")) {
                    json_decref (key);
                    goto fail;
                }
                s_node_t *item = s_parse_or (p);
                if (!item) {
                    json_decref (key);
                    goto fail;
                }
                s_node_add (node, item, key);
            }
            s_advance (p);
            p->depth--;
            return node;
        }
        case T_IDENT:
            if (s_ident_is (p, &tok, "true") || s_ident_is (p, &tok, "false")
                || s_ident_is (p, &tok, "null")) {
                node = s_node_new (S_LIT);
                node->value = s_ident_is (p, &tok, "null")
                                  ? json_null ()
                                  : json_boolean (s_ident_is (p, &tok, "true"));
                s_advance (p);
                return node;
            }
            if (s_ident_is (p, &tok, "input") || s_ident_is (p, &tok, "steps")
                || s_ident_is (p, &tok, "signals")
                || s_ident_is (p, &tok, "workflow"))
                return s_parse_path (p);
            s_advance (p);
            if (p->tok.kind == T_LPAREN) {
                if (!s_ident_is (p, &tok, "len")) {
                    s_fail (p, tok.start, "unknown function \"%.*s\"",
                            (int) (tok.end - tok.start), p->text + tok.start);
                    return NULL;
                }
                s_advance (p);
                s_node_t *arg = s_parse_or (p);
                if (!arg)
                    return NULL;
                node = s_node_new (S_LEN);
                s_node_add (node, arg, NULL);
                if (!s_expect (p, T_RPAREN, "')'")) {
                    s_node_destroy (node);
                    return NULL;
                }
                return node;
            }
            s_fail (p, tok.start,
                    "unknown name \"%.*s\" (a path starts with input, steps, "
                    "signals or workflow)",
                    (int) (tok.end - tok.start > 32 ? 32 : tok.end - tok.start),
                    p->text + tok.start);
            return NULL;
        default:
            s_unexpected (p);
            return NULL;
    }
fail:
    s_node_destroy (node);
    return NULL;
}

static s_node_t *
s_parse_unary (s_parser_t *p)
{
    s_tok_kind_t kind = p->tok.kind;
    if (kind != T_NOT && kind != T_MINUS)
        return s_parse_primary (p);
    if (!s_enter (p))
        return NULL;
    s_advance (p);
    s_node_t *node = NULL;
    if (kind == T_MINUS && p->tok.kind == T_NUM) {
        //  Folded so that -9223372036854775808 is a literal.
        json_t *value = s_number (p, &p->tok, true);
        if (value) {
            node = s_node_new (S_LIT);
            node->value = value;
            s_advance (p);
        }
    }
    else {
        s_node_t *operand = s_parse_unary (p);
        if (operand) {
            node = s_node_new (kind == T_NOT ? S_NOT : S_NEG);
            s_node_add (node, operand, NULL);
        }
    }
    p->depth--;
    return node;
}

//  One level of left-associative binary operators.
typedef struct {
    s_tok_kind_t tok;
    s_kind_t kind;
} s_binop_t;

static const s_binop_t s_level_or [] = {{T_OR, S_OR}, {T_END, S_LIT}};
static const s_binop_t s_level_and [] = {{T_AND, S_AND}, {T_END, S_LIT}};
static const s_binop_t s_level_eq [] = {
    {T_EQ, S_EQ}, {T_NE, S_NE}, {T_END, S_LIT}};
static const s_binop_t s_level_rel [] = {
    {T_LT, S_LT}, {T_LE, S_LE}, {T_GT, S_GT}, {T_GE, S_GE}, {T_END, S_LIT}};
static const s_binop_t s_level_add [] = {
    {T_PLUS, S_ADD}, {T_MINUS, S_SUB}, {T_END, S_LIT}};
static const s_binop_t s_level_mul [] = {
    {T_STAR, S_MUL}, {T_SLASH, S_DIV}, {T_PERCENT, S_MOD}, {T_END, S_LIT}};

static const s_binop_t *const s_levels [] = {
    s_level_or, s_level_and, s_level_eq, s_level_rel, s_level_add, s_level_mul};
#define S_LEVELS (sizeof s_levels / sizeof s_levels [0])

static s_node_t *
s_parse_level (s_parser_t *p, size_t level)
{
    if (level == S_LEVELS)
        return s_parse_unary (p);
    s_node_t *left = s_parse_level (p, level + 1);
    while (left) {
        const s_binop_t *op = s_levels [level];
        while (op->tok != T_END && op->tok != p->tok.kind)
            op++;
        if (op->tok == T_END)
            break;
        s_advance (p);
        s_node_t *right = s_parse_level (p, level + 1);
        if (!right) {
            s_node_destroy (left);
            return NULL;
        }
        s_node_t *node = s_node_new (op->kind);
        s_node_add (node, left, NULL);
        s_node_add (node, right, NULL);
        left = node;
    }
    return left;
}

static s_node_t *
s_parse_or (s_parser_t *p)
{
    if (!s_enter (p))
        return NULL;
    s_node_t *node = s_parse_level (p, 0);
    p->depth--;
    return node;
}

shf_err_t
shf_expr_compile (const char *text, size_t len, shf_expr_t **expr_p, char *err,
                  size_t errlen)
{
    assert (expr_p);
    *expr_p = NULL;
    if (err && errlen)
        err [0] = 0;
    if (len > SHF_EXPR_MAX_LEN) {
        if (err && errlen)
            snprintf (err, errlen, "expression longer than %d bytes",
                      SHF_EXPR_MAX_LEN);
        return SHF_ETOOLARGE;
    }
    assert (text || len == 0);
    s_parser_t p = {.text = text ? text : "",
                    .len = len,
                    .err = err,
                    .errlen = errlen,
                    .rc = SHF_OK};
    s_advance (&p);
    s_node_t *root = s_parse_or (&p);
    if (root && p.tok.kind != T_END) {
        s_unexpected (&p);
        s_node_destroy (root);
        root = NULL;
    }
    if (!root) {
        assert (p.failed);
        return p.rc;
    }
    shf_expr_t *self = shf_alloc (sizeof *self);
    self->root = root;
    *expr_p = self;
    return SHF_OK;
}

void
shf_expr_destroy (shf_expr_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        s_node_destroy ((*self_p)->root);
        free (*self_p);
        *self_p = NULL;
    }
}


//  --------------------------------------------------------------------
//  Evaluator

typedef struct {
    char *err;
    size_t errlen;
    size_t concat_left;  //  bytes string concatenation may still produce
} s_eval_t;

static void s_eval_fail (s_eval_t *e, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));

static void
s_eval_fail (s_eval_t *e, const char *format, ...)
{
    if (!e->err || !e->errlen)
        return;
    va_list args;
    va_start (args, format);
    vsnprintf (e->err, e->errlen, format, args);
    va_end (args);
}

static const char *
s_op_name (s_kind_t kind)
{
    switch (kind) {
        case S_ADD:
            return "+";
        case S_SUB:
            return "-";
        case S_MUL:
            return "*";
        case S_DIV:
            return "/";
        case S_MOD:
            return "%";
        case S_LT:
            return "<";
        case S_LE:
            return "<=";
        case S_GT:
            return ">";
        case S_GE:
            return ">=";
        default:
            return "?";
    }
}

static bool
s_is_number (const json_t *v)
{
    return json_is_integer (v) || json_is_real (v);
}

//  Numbers compare by value across int and real: long double holds
//  every int64 exactly on the platforms we build for.
static long double
s_long_double (const json_t *v)
{
    return json_is_integer (v) ? (long double) json_integer_value (v)
                               : (long double) json_real_value (v);
}

static int
s_number_compare (const json_t *a, const json_t *b)
{
    if (json_is_integer (a) && json_is_integer (b)) {
        json_int_t x = json_integer_value (a), y = json_integer_value (b);
        return x < y ? -1 : x > y;
    }
    long double x = s_long_double (a), y = s_long_double (b);
    return x < y ? -1 : x > y;
}

static int
s_string_compare (const json_t *a, const json_t *b)
{
    size_t na = json_string_length (a), nb = json_string_length (b);
    int cmp = memcmp (json_string_value (a), json_string_value (b),
                      na < nb ? na : nb);
    if (cmp)
        return cmp < 0 ? -1 : 1;
    return na < nb ? -1 : na > nb;
}

//  Structural equality where 1 == 1.0.
static bool
s_equal (const json_t *a, const json_t *b)
{
    if (s_is_number (a) && s_is_number (b))
        return s_number_compare (a, b) == 0;
    if (json_typeof (a) != json_typeof (b))
        return false;
    if (json_is_string (a))
        return s_string_compare (a, b) == 0;
    if (json_is_array (a)) {
        if (json_array_size (a) != json_array_size (b))
            return false;
        for (size_t i = 0; i < json_array_size (a); i++)
            if (!s_equal (json_array_get (a, i), json_array_get (b, i)))
                return false;
        return true;
    }
    if (json_is_object (a)) {
        if (json_object_size (a) != json_object_size (b))
            return false;
        for (void *it = json_object_iter ((json_t *) a); it;
             it = json_object_iter_next ((json_t *) a, it)) {
            const json_t *other = json_object_getn (
                b, json_object_iter_key (it), json_object_iter_key_len (it));
            if (!other || !s_equal (json_object_iter_value (it), other))
                return false;
        }
        return true;
    }
    return true;  //  null, true, false: same type is equal
}

bool
shf_expr_truthy (const json_t *value)
{
    if (!value)
        return false;
    switch (json_typeof (value)) {
        case JSON_NULL:
        case JSON_FALSE:
            return false;
        case JSON_TRUE:
            return true;
        case JSON_INTEGER:
            return json_integer_value (value) != 0;
        case JSON_REAL:
            return json_real_value (value) != 0.0;
        case JSON_STRING:
            return json_string_length (value) > 0;
        case JSON_ARRAY:
            return json_array_size (value) > 0;
        case JSON_OBJECT:
            return json_object_size (value) > 0;
    }
    return false;
}

static json_t *
s_path (const s_node_t *node, const json_t *context)
{
    const json_t *cur = context;
    for (size_t i = 0; cur && i < node->nsegs; i++) {
        const s_seg_t *seg = &node->segs [i];
        if (seg->key)
            cur = json_is_object (cur)
                      ? json_object_getn (cur, json_string_value (seg->key),
                                          json_string_length (seg->key))
                      : NULL;
        else
            cur = json_is_array (cur) && seg->index >= 0
                      ? json_array_get (cur, (size_t) seg->index)
                      : NULL;
    }
    return cur ? json_incref ((json_t *) cur) : json_null ();
}

static json_t *
s_concat (s_eval_t *e, const json_t *a, const json_t *b)
{
    size_t na = json_string_length (a), nb = json_string_length (b);
    if (na + nb > e->concat_left) {
        s_eval_fail (e, "string concatenation over %d bytes", S_MAX_CONCAT);
        return NULL;
    }
    e->concat_left -= na + nb;
    char *buf = shf_alloc (na + nb);
    memcpy (buf, json_string_value (a), na);
    memcpy (buf + na, json_string_value (b), nb);
    //  Both halves are valid UTF-8, so their concatenation is too.
    json_t *value = json_stringn_nocheck (buf, na + nb);
    free (buf);
    return value;
}

static json_t *
s_arith (s_eval_t *e, s_kind_t op, const json_t *a, const json_t *b)
{
    if (op == S_ADD && json_is_string (a) && json_is_string (b))
        return s_concat (e, a, b);
    if (!s_is_number (a) || !s_is_number (b)) {
        if (op == S_ADD)
            s_eval_fail (e, "'+' needs two numbers or two strings");
        else
            s_eval_fail (e, "'%s' needs two numbers", s_op_name (op));
        return NULL;
    }
    if (json_is_integer (a) && json_is_integer (b)) {
        int64_t x = json_integer_value (a), y = json_integer_value (b), r = 0;
        bool overflow = false;
        switch (op) {
            case S_ADD:
                overflow = __builtin_add_overflow (x, y, &r);
                break;
            case S_SUB:
                overflow = __builtin_sub_overflow (x, y, &r);
                break;
            case S_MUL:
                overflow = __builtin_mul_overflow (x, y, &r);
                break;
            case S_DIV:
            case S_MOD:
                if (y == 0) {
                    s_eval_fail (e, "division by zero in '%s'", s_op_name (op));
                    return NULL;
                }
                if (y == -1 && op == S_MOD)
                    r = 0;  //  INT64_MIN % -1 traps in C
                else if (y == -1)
                    overflow = __builtin_sub_overflow (0, x, &r);
                else
                    r = op == S_DIV ? x / y : x % y;
                break;
            default:
                assert (false);
        }
        if (overflow) {
            s_eval_fail (e, "integer overflow in '%s'", s_op_name (op));
            return NULL;
        }
        return json_integer (r);
    }
    double x = (double) s_long_double (a), y = (double) s_long_double (b);
    double r = 0;
    switch (op) {
        case S_ADD:
            r = x + y;
            break;
        case S_SUB:
            r = x - y;
            break;
        case S_MUL:
            r = x * y;
            break;
        case S_DIV:
        case S_MOD:
            if (y == 0) {
                s_eval_fail (e, "division by zero in '%s'", s_op_name (op));
                return NULL;
            }
            r = op == S_DIV ? x / y : fmod (x, y);
            break;
        default:
            assert (false);
    }
    if (!isfinite (r)) {
        s_eval_fail (e, "number overflow in '%s'", s_op_name (op));
        return NULL;
    }
    return json_real (r);
}

static json_t *
s_eval (s_eval_t *e, const s_node_t *node, const json_t *context)
{
    switch (node->kind) {
        case S_LIT:
            return json_incref (node->value);
        case S_PATH:
            return s_path (node, context);
        case S_AND:
        case S_OR: {
            json_t *left = s_eval (e, node->kids [0], context);
            if (!left)
                return NULL;
            bool truth = shf_expr_truthy (left);
            json_decref (left);
            if (truth == (node->kind == S_OR))
                return json_boolean (truth);
            json_t *right = s_eval (e, node->kids [1], context);
            if (!right)
                return NULL;
            truth = shf_expr_truthy (right);
            json_decref (right);
            return json_boolean (truth);
        }
        case S_ARRAY: {
            json_t *array = json_array ();
            for (size_t i = 0; i < node->nkids; i++) {
                json_t *item = s_eval (e, node->kids [i], context);
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
            for (size_t i = 0; i < node->nkids; i++) {
                json_t *item = s_eval (e, node->kids [i], context);
                if (!item) {
                    json_decref (object);
                    return NULL;
                }
                json_object_setn_new_nocheck (
                    object, json_string_value (node->keys [i]),
                    json_string_length (node->keys [i]), item);
            }
            return object;
        }
        default:
            break;
    }
    //  The rest evaluate every operand first.
    json_t *a = s_eval (e, node->kids [0], context);
    if (!a)
        return NULL;
    json_t *b = NULL, *result = NULL;
    if (node->nkids > 1) {
        b = s_eval (e, node->kids [1], context);
        if (!b) {
            json_decref (a);
            return NULL;
        }
    }
    switch (node->kind) {
        case S_NOT:
            result = json_boolean (!shf_expr_truthy (a));
            break;
        case S_NEG:
            if (json_is_integer (a)) {
                if (json_integer_value (a) == INT64_MIN)
                    s_eval_fail (e, "integer overflow in unary '-'");
                else
                    result = json_integer (-json_integer_value (a));
            }
            else if (json_is_real (a))
                result = json_real (-json_real_value (a));
            else
                s_eval_fail (e, "unary '-' needs a number");
            break;
        case S_LEN:
            if (json_is_string (a))
                result = json_integer ((json_int_t) json_string_length (a));
            else if (json_is_array (a))
                result = json_integer ((json_int_t) json_array_size (a));
            else if (json_is_object (a))
                result = json_integer ((json_int_t) json_object_size (a));
            else if (json_is_null (a))
                result = json_integer (0);
            else
                s_eval_fail (e, "len() needs a string, array or object");
            break;
        case S_EQ:
        case S_NE:
            result = json_boolean (s_equal (a, b) == (node->kind == S_EQ));
            break;
        case S_LT:
        case S_LE:
        case S_GT:
        case S_GE: {
            int cmp;
            if (s_is_number (a) && s_is_number (b))
                cmp = s_number_compare (a, b);
            else if (json_is_string (a) && json_is_string (b))
                cmp = s_string_compare (a, b);
            else {
                s_eval_fail (e, "'%s' needs two numbers or two strings",
                             s_op_name (node->kind));
                break;
            }
            bool truth = node->kind == S_LT   ? cmp < 0
                         : node->kind == S_LE ? cmp <= 0
                         : node->kind == S_GT ? cmp > 0
                                              : cmp >= 0;
            result = json_boolean (truth);
            break;
        }
        default:
            result = s_arith (e, node->kind, a, b);
            break;
    }
    json_decref (a);
    json_decref (b);
    return result;
}

shf_err_t
shf_expr_eval (const shf_expr_t *self, const json_t *context, json_t **value_p,
               char *err, size_t errlen)
{
    assert (self);
    assert (value_p);
    *value_p = NULL;
    if (err && errlen)
        err [0] = 0;
    s_eval_t e = {err, errlen, S_MAX_CONCAT};
    json_t *value = s_eval (&e, self->root, context);
    if (!value)
        return SHF_EINVAL;
    if (json_is_array (value) || json_is_object (value)) {
        //  Paths share containers with the context: the caller gets its
        //  own copy, free to change without touching the context.
        json_t *copy = json_deep_copy (value);
        json_decref (value);
        value = copy;
        assert (value);
    }
    *value_p = value;
    return SHF_OK;
}


//  --------------------------------------------------------------------
//  Self-test

static json_t *
s_test_context (void)
{
    json_error_t jerr;
    json_t *context = json_loads (
        "{\"input\": {\"amount\": 42, \"name\": \"ada\", \"price\": 2.5,"
        "  \"items\": [{\"sku\": \"a1\"}, {\"sku\": \"b2\"}],"
        "  \"flags\": {}, \"odd key\": 7, \"big\": 9223372036854775807},"
        " \"steps\": {\"charge\": {\"output\": {\"ok\": true, \"id\": \"c-1\"},"
        "   \"status\": \"completed\", \"attempt\": 2},"
        "   \"cool-off_2\": {\"status\": \"skipped\", \"attempt\": 0}},"
        " \"signals\": {\"approved\": {\"by\": \"bob\"}},"
        " \"workflow\": {\"id\": \"order-7\", \"run_id\": \"r1\"}}",
        0, &jerr);
    assert (context);
    return context;
}

void
shf_expr_test (bool verbose)
{
    if (verbose)
        printf (" * shf_expr: ");
    json_t *context = s_test_context ();

    //  Expressions that evaluate: the expected value as JSON text.
    static const struct {
        const char *text;
        const char *expect;
    } ok [] = {
        {"input.amount", "42"},
        {"input", NULL},  //  whole input: checked below
        {"input.name", "\"ada\""},
        {"input.items[0].sku", "\"a1\""},
        {"input.items[1]", "{\"sku\":\"b2\"}"},
        {"input.items[2].sku", "null"},
        {"input.items [0]", NULL},  //  not a path: error case below
        {"input[\"odd key\"]", "7"},
        {"input.missing.deeper[3]", "null"},
        {"input.amount.x", "null"},
        {"steps.charge.output.ok", "true"},
        {"steps.charge.output.ok == true", "true"},
        {"steps.charge.status", "\"completed\""},
        {"steps.charge.attempt + 1", "3"},
        {"steps.cool-off_2.status", "\"skipped\""},
        {"steps.nope.status", "null"},
        {"signals.approved.by", "\"bob\""},
        {"workflow.id", "\"order-7\""},
        {"null", "null"},
        {"true && false", "false"},
        {"true || false", "true"},
        {"1 && \"x\"", "true"},
        {"0 || \"\"", "false"},
        {"!0", "true"},
        {"!!input.flags", "false"},
        {"! input.name", "false"},
        {"1 + 2 * 3", "7"},
        {"(1 + 2) * 3", "9"},
        {"10 - 2 - 3", "5"},
        {"7 / 2", "3"},
        {"-7 / 2", "-3"},
        {"7 % 3", "1"},
        {"-7 % 3", "-1"},
        {"7.0 / 2", "3.5"},
        {"input.price * 2", "5.0"},
        {"1 + 0.5", "1.5"},
        {"5.5 % 2", "1.5"},
        {"-input.amount", "-42"},
        {"- -3", "3"},
        {"-9223372036854775808", "-9223372036854775808"},
        {"9223372036854775807", "9223372036854775807"},
        {"-9223372036854775807 - 1", "-9223372036854775808"},
        {"(-9223372036854775807 - 1) % -1", "0"},
        {"1e3", "1000.0"},
        {"2.5E-1", "0.25"},
        {"\"a\" + \"b\"", "\"ab\""},
        {"input.name + \"-\" + workflow.id", "\"ada-order-7\""},
        {"\"\\u00e9\\ud83d\\ude00\\n\\\"\"",
         "\"\\u00E9\\uD83D\\uDE00\\n\\\"\""},
        {"\"}\"", "\"}\""},
        {"1 == 1.0", "true"},
        {"1 != 1.0", "false"},
        {"[1, 2.0] == [1.0, 2]", "true"},
        {"{\"a\": 1} == {\"a\": 1.0}", "true"},
        {"{\"a\": 1} == {\"b\": 1}", "false"},
        {"input.items[0] == {\"sku\": \"a1\"}", "true"},
        {"[] == input.flags", "false"},
        {"{} == input.flags", "true"},
        {"null == input.nothing", "true"},
        {"\"1\" == 1", "false"},
        {"1 < 2", "true"},
        {"2 <= 2", "true"},
        {"3 > 2.5", "true"},
        {"2 >= 3", "false"},
        {"\"abc\" < \"abd\"", "true"},
        {"\"ab\" < \"abc\"", "true"},
        {"9223372036854775807 > 9223372036854775806", "true"},
        {"len(input.name)", "3"},
        {"len(input.items)", "2"},
        {"len(input.flags)", "0"},
        {"len(input.nothing)", "0"},
        {"len(\"\\u00e9\")", "2"},
        {"len([1, [2, 3]]) * 2", "4"},
        {"[input.amount, \"x\"]", "[42,\"x\"]"},
        {"{\"n\": input.amount + 1}", "{\"n\":43}"},
        {"1 < 2 == true", "true"},
        {"input.amount > 10 && steps.charge.output.ok", "true"},
        //  Short-circuit: the right side would be a type error.
        {"false && (1 + \"x\")", "false"},
        {"true || (1 + \"x\")", "true"},
        {"  (  ( 1 ) )  ", "1"},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok [0]; i++) {
        if (!ok [i].expect)
            continue;
        shf_expr_t *expr = NULL;
        char err [256];
        shf_err_t rc = shf_expr_compile (ok [i].text, strlen (ok [i].text),
                                         &expr, err, sizeof err);
        if (rc != SHF_OK)
            fprintf (stderr, "%s: %s\n", ok [i].text, err);
        assert (rc == SHF_OK);
        json_t *value = NULL;
        rc = shf_expr_eval (expr, context, &value, err, sizeof err);
        if (rc != SHF_OK)
            fprintf (stderr, "%s: %s\n", ok [i].text, err);
        assert (rc == SHF_OK);
        char *text = json_dumps (value, JSON_COMPACT | JSON_ENCODE_ANY
                                            | JSON_ENSURE_ASCII);
        if (strcmp (text, ok [i].expect) != 0)
            fprintf (stderr, "%s: got %s, want %s\n", ok [i].text, text,
                     ok [i].expect);
        assert (strcmp (text, ok [i].expect) == 0);
        //  Reals stay reals: "5.0" must not come back as 5.
        free (text);
        json_decref (value);
        shf_expr_destroy (&expr);
        assert (expr == NULL);
    }
    //  The whole input is the same object.
    shf_expr_t *expr = NULL;
    json_t *value = NULL;
    assert (shf_expr_compile ("input", 5, &expr, NULL, 0) == SHF_OK);
    assert (shf_expr_eval (expr, context, &value, NULL, 0) == SHF_OK);
    assert (json_equal (value, json_object_get (context, "input")));
    assert (value != json_object_get (context, "input"));
    json_decref (value);
    //  A NULL context: every path is null.
    assert (shf_expr_eval (expr, NULL, &value, NULL, 0) == SHF_OK);
    assert (json_is_null (value));
    json_decref (value);
    shf_expr_destroy (&expr);
    shf_expr_destroy (&expr);  //  NULL-safe

    //  Compile errors: exact messages.
    static const struct {
        const char *text;
        shf_err_t rc;
        const char *message;
    } bad [] = {
        {"", SHF_EINVAL, "column 1: unexpected end of expression"},
        {"   ", SHF_EINVAL, "column 4: unexpected end of expression"},
        {"(1 + 2", SHF_EINVAL, "column 7: expected ')'"},
        {"len(1", SHF_EINVAL, "column 6: expected ')'"},
        {"1 +", SHF_EINVAL, "column 4: unexpected end of expression"},
        {"1 2", SHF_EINVAL, "column 3: unexpected token \"2\""},
        {"1 * * 2", SHF_EINVAL, "column 5: unexpected token \"*\""},
        {"a == 1", SHF_EINVAL,
         "column 1: unknown name \"a\" (a path starts with input, steps, "
         "signals or workflow)"},
        {"foo(1)", SHF_EINVAL, "column 1: unknown function \"foo\""},
        {"input.", SHF_EINVAL, "column 7: expected a name after '.'"},
        {"input..a", SHF_EINVAL, "column 7: expected a name after '.'"},
        {"input.items[", SHF_EINVAL, "column 13: unexpected end of expression"},
        {"input.items[x]", SHF_EINVAL,
         "column 13: expected an index or a string"},
        {"input.items[1.5]", SHF_EINVAL, "column 13: index must be an integer"},
        {"input.items[0", SHF_EINVAL, "column 14: expected ']'"},
        {"input .a", SHF_EINVAL, "column 7: unexpected token \".\""},
        {"input.items [0]", SHF_EINVAL, "column 13: unexpected token \"[\""},
        {"1 = 1", SHF_EINVAL, "column 3: unexpected '=' (use == to compare)"},
        {"true & false", SHF_EINVAL, "column 6: unexpected '&' (use &&)"},
        {"true | false", SHF_EINVAL, "column 6: unexpected '|' (use ||)"},
        {"\"abc", SHF_EINVAL, "column 1: unterminated string"},
        {"\"a\\\"", SHF_EINVAL, "column 1: unterminated string"},
        {"\"\\x\"", SHF_EINVAL, "column 2: bad escape in string"},
        {"\"\\u12\"", SHF_EINVAL, "column 2: bad \\u escape"},
        {"\"\\udc00\"", SHF_EINVAL, "column 2: lone surrogate in \\u escape"},
        {"\"\\ud800x\"", SHF_EINVAL, "column 2: lone surrogate in \\u escape"},
        {"\"\t\"", SHF_EINVAL, "column 2: control character in string"},
        {"\"\xff\"", SHF_EINVAL, "column 1: string is not valid UTF-8"},
        {"01", SHF_EINVAL, "column 1: number with a leading zero"},
        {"9223372036854775808", SHF_EINVAL, "column 1: integer out of range"},
        {"-9223372036854775809", SHF_EINVAL, "column 2: integer out of range"},
        {"1e999", SHF_EINVAL, "column 1: number out of range"},
        {"1 # 2", SHF_EINVAL, "column 3: unexpected character"},
        {"[1 2]", SHF_EINVAL, "column 4: expected ',' or ']'"},
        {"{1: 2}", SHF_EINVAL, "column 2: expected a string key"},
        {"{\"a\" 2}", SHF_EINVAL, "column 6: expected ':'"},
        {"(1))", SHF_EINVAL, "column 4: unexpected token \")\""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad [0]; i++) {
        char err [256] = "untouched";
        expr = NULL;
        shf_err_t rc = shf_expr_compile (bad [i].text, strlen (bad [i].text),
                                         &expr, err, sizeof err);
        if (rc != bad [i].rc || strcmp (err, bad [i].message) != 0)
            fprintf (stderr, "%s: got %d %s\n", bad [i].text, rc, err);
        assert (rc == bad [i].rc);
        assert (expr == NULL);
        assert (strcmp (err, bad [i].message) == 0);
    }

    //  Limits: length and nesting, never a stack overflow.
    char *deep = shf_alloc (SHF_EXPR_MAX_LEN + 2);
    char err [256];
    memset (deep, '(', SHF_EXPR_MAX_LEN);
    assert (shf_expr_compile (deep, SHF_EXPR_MAX_LEN, &expr, err, sizeof err)
            == SHF_ETOOLARGE);
    assert (strstr (err, "nested deeper than 64 levels"));
    assert (
        shf_expr_compile (deep, SHF_EXPR_MAX_LEN + 1, &expr, err, sizeof err)
        == SHF_ETOOLARGE);
    assert (strcmp (err, "expression longer than 4096 bytes") == 0);
    memset (deep, '!', SHF_EXPR_MAX_LEN);
    assert (shf_expr_compile (deep, SHF_EXPR_MAX_LEN, &expr, err, sizeof err)
            == SHF_ETOOLARGE);
    memset (deep, '[', SHF_EXPR_MAX_LEN);
    assert (shf_expr_compile (deep, SHF_EXPR_MAX_LEN, &expr, err, sizeof err)
            == SHF_ETOOLARGE);
    //  63 levels of parentheses inside the top level are fine.
    size_t n = 0;
    for (int i = 0; i < SHF_EXPR_MAX_DEPTH - 1; i++)
        deep [n++] = '(';
    deep [n++] = '1';
    for (int i = 0; i < SHF_EXPR_MAX_DEPTH - 1; i++)
        deep [n++] = ')';
    assert (shf_expr_compile (deep, n, &expr, err, sizeof err) == SHF_OK);
    shf_expr_destroy (&expr);
    //  A long flat chain is not nesting: 1+1+...+1 within the length limit.
    n = 0;
    while (n + 2 < SHF_EXPR_MAX_LEN) {
        deep [n++] = '1';
        deep [n++] = '+';
    }
    deep [n++] = '1';
    assert (shf_expr_compile (deep, n, &expr, err, sizeof err) == SHF_OK);
    assert (shf_expr_eval (expr, context, &value, err, sizeof err) == SHF_OK);
    assert (json_integer_value (value) == (json_int_t) (n + 1) / 2);
    json_decref (value);
    shf_expr_destroy (&expr);
    //  Not NUL-terminated: only len bytes are read.
    memcpy (deep, "1 + 2garbage", 12);
    assert (shf_expr_compile (deep, 5, &expr, err, sizeof err) == SHF_OK);
    shf_expr_destroy (&expr);
    //  An embedded NUL is just a bad character.
    assert (shf_expr_compile ("1\0", 2, &expr, err, sizeof err) == SHF_EINVAL);
    assert (strcmp (err, "column 2: unexpected character") == 0);
    free (deep);

    //  Evaluation errors.
    static const struct {
        const char *text;
        const char *message;
    } fails [] = {
        {"1 + \"a\"", "'+' needs two numbers or two strings"},
        {"input.name + 1", "'+' needs two numbers or two strings"},
        {"\"a\" - \"b\"", "'-' needs two numbers"},
        {"null * 2", "'*' needs two numbers"},
        {"1 / 0", "division by zero in '/'"},
        {"1 % 0", "division by zero in '%'"},
        {"1.0 / 0", "division by zero in '/'"},
        {"input.big + 1", "integer overflow in '+'"},
        {"-9223372036854775807 - 2", "integer overflow in '-'"},
        {"input.big * 2", "integer overflow in '*'"},
        {"(-9223372036854775807 - 1) / -1", "integer overflow in '/'"},
        {"-(-9223372036854775807 - 1)", "integer overflow in unary '-'"},
        {"1e308 * 10", "number overflow in '*'"},
        {"-\"a\"", "unary '-' needs a number"},
        {"len(1)", "len() needs a string, array or object"},
        {"1 < \"a\"", "'<' needs two numbers or two strings"},
        {"null >= 1", "'>=' needs two numbers or two strings"},
        {"[1 / 0]", "division by zero in '/'"},
        {"{\"a\": 1 % 0}", "division by zero in '%'"},
        {"true && 1 / 0", "division by zero in '/'"},
    };
    for (size_t i = 0; i < sizeof fails / sizeof fails [0]; i++) {
        expr = NULL;
        shf_err_t rc = shf_expr_compile (
            fails [i].text, strlen (fails [i].text), &expr, err, sizeof err);
        assert (rc == SHF_OK);
        value = (json_t *) 1;
        rc = shf_expr_eval (expr, context, &value, err, sizeof err);
        if (rc != SHF_EINVAL || strcmp (err, fails [i].message) != 0)
            fprintf (stderr, "%s: got %d %s\n", fails [i].text, rc, err);
        assert (rc == SHF_EINVAL);
        assert (value == NULL);
        assert (strcmp (err, fails [i].message) == 0);
        shf_expr_destroy (&expr);
    }

    //  Concatenation is bounded: doubling a long string soon fails.
    json_t *big = json_object ();
    char *blob = shf_alloc (1024 * 1024 + 1);
    memset (blob, 'x', 1024 * 1024);
    json_object_set_new (big, "input", json_string (blob));
    free (blob);
    const char *grow = "input + input + input + input + input";
    assert (shf_expr_compile (grow, strlen (grow), &expr, err, sizeof err)
            == SHF_OK);
    assert (shf_expr_eval (expr, big, &value, err, sizeof err) == SHF_EINVAL);
    assert (strstr (err, "string concatenation over"));
    shf_expr_destroy (&expr);
    json_decref (big);

    //  Truthiness.
    assert (!shf_expr_truthy (NULL));
    assert (!shf_expr_truthy (json_null ()));
    assert (!shf_expr_truthy (json_false ()));
    assert (shf_expr_truthy (json_true ()));
    json_t *values [] = {json_integer (0), json_real (0.0),  json_string (""),
                         json_array (),    json_object (),   json_integer (-1),
                         json_real (0.1),  json_string ("0")};
    for (size_t i = 0; i < sizeof values / sizeof values [0]; i++) {
        assert (shf_expr_truthy (values [i]) == (i >= 5));
        json_decref (values [i]);
    }
    json_decref (context);
    if (verbose)
        printf ("OK\n");
}
