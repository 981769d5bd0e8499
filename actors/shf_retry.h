/*  shf_retry.h - retry policy maths: backoff intervals and give-up rules.

    SPEC.md "Retry policy": no jitter, the n-th backoff (the wait after the
    n-th failed attempt) is exactly min(initial_interval *
    backoff^(n-1), max_interval), rounded to the nearest ms. A step gives up
    when the error type is listed in non_retryable or when max_attempts > 0
    and the failed attempt was the last allowed one.

    Pure; called by shf_workflow when an attempt fails or times out.
*/
#ifndef SHF_RETRY_H_INCLUDED
#define SHF_RETRY_H_INCLUDED
#include "shf_def.h"

//  Wait in ms before the attempt after failed attempt n (n >= 1).
//  max_interval <= 0 means no cap (the result saturates at INT64_MAX).
int64_t shf_retry_backoff (const shf_retry_t *policy, uint32_t n);

//  True when error_type is listed in the policy's non_retryable.
bool shf_retry_non_retryable (const shf_retry_t *policy,
                              const char *error_type);

//  True when attempt n was the last one max_attempts allows.
bool shf_retry_exhausted (const shf_retry_t *policy, uint32_t n);

void shf_retry_test (bool verbose);

#endif
