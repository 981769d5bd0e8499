/*  shf_retry.c - retry policy maths: backoff intervals and give-up rules.

    Pure functions over a compiled shf_retry_t (see shf_def.h). The backoff
    is computed in double precision with pow() and capped before it is
    converted, so huge attempt numbers or factors saturate instead of
    overflowing.
*/
#include "shf_retry.h"
#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

int64_t
shf_retry_backoff (const shf_retry_t *policy, uint32_t n)
{
    assert (policy);
    if (n == 0)
        n = 1;
    if (policy->initial_interval <= 0)
        return 0;
    double factor = policy->backoff > 0 ? policy->backoff : 1.0;
    double value =
        (double) policy->initial_interval * pow (factor, (double) (n - 1));
    double cap = policy->max_interval > 0 ? (double) policy->max_interval
                                          : 9.2e18;  //  just below INT64_MAX
    if (!(value < cap))  //  also catches inf and nan
        return policy->max_interval > 0 ? policy->max_interval
                                        : (int64_t) 9.2e18;
    int64_t ms = (int64_t) llround (value);
    return ms < 0 ? 0 : ms;
}

bool
shf_retry_non_retryable (const shf_retry_t *policy, const char *error_type)
{
    assert (policy);
    if (!error_type || !json_is_array (policy->non_retryable))
        return false;
    size_t i;
    const json_t *item;
    json_array_foreach (policy->non_retryable, i, item)
    {
        if (json_is_string (item)
            && strcmp (json_string_value (item), error_type) == 0)
            return true;
    }
    return false;
}

bool
shf_retry_exhausted (const shf_retry_t *policy, uint32_t n)
{
    assert (policy);
    return policy->max_attempts > 0 && n >= policy->max_attempts;
}

void
shf_retry_test (bool verbose)
{
    if (verbose)
        printf (" * shf_retry: ");
    shf_retry_t policy = {3, 1000, 2.0, 60000, NULL};
    assert (shf_retry_backoff (&policy, 1) == 1000);
    assert (shf_retry_backoff (&policy, 2) == 2000);
    assert (shf_retry_backoff (&policy, 3) == 4000);
    assert (shf_retry_backoff (&policy, 6) == 32000);
    assert (shf_retry_backoff (&policy, 7) == 60000);
    assert (shf_retry_backoff (&policy, 4000000000u) == 60000);
    assert (!shf_retry_exhausted (&policy, 2));
    assert (shf_retry_exhausted (&policy, 3));
    assert (shf_retry_exhausted (&policy, 4));

    policy = (shf_retry_t){0, 100, 1.5, 0, NULL};
    assert (shf_retry_backoff (&policy, 1) == 100);
    assert (shf_retry_backoff (&policy, 2) == 150);
    assert (shf_retry_backoff (&policy, 3) == 225);
    assert (shf_retry_backoff (&policy, 5000) > 0);  //  saturates, no cap
    assert (!shf_retry_exhausted (&policy, 4000000000u));

    policy = (shf_retry_t){5, 1000, 1.0, 5000, NULL};
    assert (shf_retry_backoff (&policy, 100) == 1000);
    policy.initial_interval = 0;
    assert (shf_retry_backoff (&policy, 3) == 0);

    json_t *types = json_pack ("[ss]", "Declined", "Fraud");
    policy.non_retryable = types;
    assert (shf_retry_non_retryable (&policy, "Declined"));
    assert (shf_retry_non_retryable (&policy, "Fraud"));
    assert (!shf_retry_non_retryable (&policy, "Timeout"));
    assert (!shf_retry_non_retryable (&policy, NULL));
    policy.non_retryable = NULL;
    assert (!shf_retry_non_retryable (&policy, "Declined"));
    json_decref (types);
    if (verbose)
        printf ("OK\n");
}
