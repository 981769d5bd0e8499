/*  shf_duration.c - "1500ms", "30s", "2d" <-> milliseconds.

    The one duration syntax of definitions (SPEC.md "Durations"): decimal
    digits, then one unit of ms, s, m, h or d, nothing else. No sign, no
    fraction, no spaces, no empty number; the value in milliseconds must
    fit in int64. Called by the definition compiler for every duration
    field. Pure.
*/
#include "shf_duration.h"
#include <assert.h>
#include <stdio.h>
#include <string.h>

static const struct {
    const char *unit;
    int64_t ms;
} s_units [] = {
    {"ms", 1},
    {"s", 1000},
    {"m", 60 * 1000},
    {"h", 3600 * 1000},
    {"d", 24 * 3600 * 1000},
};

shf_err_t
shf_duration_parse (const char *text, int64_t *ms_p)
{
    assert (ms_p);
    if (!text)
        return SHF_EINVAL;
    int64_t number = 0;
    const char *p = text;
    while (*p >= '0' && *p <= '9') {
        if (__builtin_mul_overflow (number, 10, &number)
            || __builtin_add_overflow (number, *p - '0', &number))
            return SHF_EINVAL;
        p++;
    }
    if (p == text)
        return SHF_EINVAL;
    for (size_t i = 0; i < sizeof s_units / sizeof s_units [0]; i++) {
        if (strcmp (p, s_units [i].unit) == 0) {
            int64_t ms;
            if (__builtin_mul_overflow (number, s_units [i].ms, &ms))
                return SHF_EINVAL;
            *ms_p = ms;
            return SHF_OK;
        }
    }
    return SHF_EINVAL;
}

void
shf_duration_test (bool verbose)
{
    if (verbose)
        printf (" * shf_duration: ");
    static const struct {
        const char *text;
        int64_t ms;  //  -1: rejected
    } cases [] = {
        {"1500ms", 1500},
        {"0ms", 0},
        {"30s", 30000},
        {"5m", 300000},
        {"2h", 7200000},
        {"30d", 2592000000},
        {"100ms", 100},
        {"007s", 7000},
        {"9223372036854775807ms", INT64_MAX},
        {"9223372036854775808ms", -1},
        {"9223372036854775s", 9223372036854775000},
        {"9223372036854776s", -1},
        {"106751991167d", 106751991167LL * 86400000LL},
        {"106751991168d", -1},
        {"106751991167300d", -1},
        {"", -1},
        {"s", -1},
        {"10", -1},
        {"-5s", -1},
        {"+5s", -1},
        {"1.5s", -1},
        {" 5s", -1},
        {"5 s", -1},
        {"5s ", -1},
        {"5x", -1},
        {"5sec", -1},
        {"5S", -1},
        {"5ms5", -1},
        {"5us", -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        int64_t ms = -42;
        shf_err_t rc = shf_duration_parse (cases [i].text, &ms);
        if (cases [i].ms < 0) {
            assert (rc == SHF_EINVAL);
            assert (ms == -42);
        }
        else {
            assert (rc == SHF_OK);
            assert (ms == cases [i].ms);
        }
    }
    int64_t ms = 0;
    assert (shf_duration_parse (NULL, &ms) == SHF_EINVAL);
    if (verbose)
        printf ("OK\n");
}
