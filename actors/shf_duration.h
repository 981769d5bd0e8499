/*  shf_duration.h - "1500ms", "30s", "2d" <-> milliseconds.

    Integer + unit (ms s m h d), no spaces, no fractions, no sign; the
    result must fit in int64 ms. Pure.
*/
#ifndef SHF_DURATION_H_INCLUDED
#define SHF_DURATION_H_INCLUDED
#include "../common/shf_err.h"
#include <stdbool.h>
#include <stdint.h>

//  SHF_EINVAL for anything that is not a valid duration.
shf_err_t
    shf_duration_parse (const char *text, int64_t *ms_p) SHF_MUST_CHECK;

void
    shf_duration_test (bool verbose);

#endif
