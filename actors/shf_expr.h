/*  shf_expr.h - the expression language of `when` and templates.

    Grammar (SPEC.md): paths input.a.b, input.items[0], steps.ID.output.x,
    steps.ID.status, steps.ID.attempt, signals.NAME, workflow.id; JSON
    literals (null, true, false, numbers, "strings"); == != < <= > >=
    && || ! + - * / % ( ) and len(x). Compiled once to a tree (bounded
    length and depth), evaluated against a context object:
      {"input": ..., "steps": {"ID": {"output","status","attempt"}},
       "signals": {"NAME": payload}, "workflow": {"id","run_id"}}
    A missing path is null. Evaluation is deterministic, allocation-bounded
    and cannot loop. Integer arithmetic is exact int64 (overflow, division
    by zero -> error); == compares JSON values structurally.

    Pure; a compiled expression is immutable and shareable across threads.
*/
#ifndef SHF_EXPR_H_INCLUDED
#define SHF_EXPR_H_INCLUDED
#include "../common/shf_err.h"
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define SHF_EXPR_MAX_LEN   4096
#define SHF_EXPR_MAX_DEPTH 64

typedef struct shf_expr shf_expr_t;

//  Compile. SHF_EINVAL with "column N: ..." in err for a syntax error,
//  SHF_ETOOLARGE over the limits.
shf_err_t
    shf_expr_compile (const char *text, size_t len, shf_expr_t **expr_p,
                      char *err, size_t errlen) SHF_MUST_CHECK;

void
    shf_expr_destroy (shf_expr_t **self_p);

//  Evaluate. *value_p is the caller's. SHF_EINVAL on a type error
//  ("'+' needs two numbers or two strings"), overflow or division by zero.
shf_err_t
    shf_expr_eval (const shf_expr_t *self, const json_t *context,
                   json_t **value_p, char *err, size_t errlen) SHF_MUST_CHECK;

//  Truthiness used by `when`: false, null, 0, "" , [] and {} are false.
bool
    shf_expr_truthy (const json_t *value);

void
    shf_expr_test (bool verbose);

#endif
