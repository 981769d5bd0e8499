/*  shf_template.h - input/output templates over expressions.

    A template is any JSON value. A string that is exactly "${EXPR}" is
    replaced by the expression's value with its type; "${EXPR}" inside a
    longer string is interpolated as text (strings raw, other values as
    compact JSON). Objects and arrays are rendered member by member.
    Compiled once (all expressions parsed) at definition compile time.

    Pure; a compiled template is immutable and shareable.
*/
#ifndef SHF_TEMPLATE_H_INCLUDED
#define SHF_TEMPLATE_H_INCLUDED
#include "../common/shf_err.h"
#include "shf_expr.h"
#include <jansson.h>
#include <stdbool.h>

typedef struct shf_template shf_template_t;

//  Compile (value is copied). SHF_EINVAL with a message naming the JSON
//  path below the template root (".amount: column 3: ...") on a bad
//  expression.
shf_err_t
    shf_template_compile (const json_t *value, shf_template_t **self_p,
                          char *err, size_t errlen) SHF_MUST_CHECK;

void
    shf_template_destroy (shf_template_t **self_p);

//  Render against a context (see shf_expr.h). *value_p is the caller's.
shf_err_t
    shf_template_render (const shf_template_t *self, const json_t *context,
                         json_t **value_p, char *err,
                         size_t errlen) SHF_MUST_CHECK;

void
    shf_template_test (bool verbose);

#endif
