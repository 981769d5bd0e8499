/*  shf_err.c - stable codes and messages for shf_err_t.

    The code strings are part of the user's contract (SPEC.md, "Errors"):
    never rename one; add new ones at the end.
*/
#include "shf_err.h"
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const struct {
    const char *code;
    const char *text;
} s_table [SHF_ERR_COUNT] = {
    [SHF_OK] = {"ok", "success"},
    [SHF_EINVAL] = {"bad_request", "malformed request"},
    [SHF_EDEFINITION] = {"invalid_definition", "invalid definition"},
    [SHF_ENOTFOUND] = {"not_found", "not found"},
    [SHF_ERUNNING] = {"already_running", "workflow is already running"},
    [SHF_ECLOSED] = {"closed", "workflow run is closed"},
    [SHF_EVERSION] = {"version_exists",
                      "definition version exists with another document"},
    [SHF_ETOOLARGE] = {"too_large", "over the size limit"},
    [SHF_EUNAVAIL] = {"unavailable", "service unavailable"},
    [SHF_EAUTH] = {"unauthorized", "unauthorized"},
    [SHF_EINTERNAL] = {"internal", "internal error"},
    [SHF_EIO] = {"internal", "I/O error; shard fenced"},
    [SHF_EFULL] = {"internal", "storage map full"},
    [SHF_ECORRUPT] = {"internal", "stored record is corrupt"},
    [SHF_ETIMEOUT] = {"unavailable", "timed out waiting for an answer"},
};

const char *
shf_err_code (shf_err_t err)
{
    if ((unsigned) err >= SHF_ERR_COUNT)
        return "internal";
    return s_table [err].code;
}

const char *
shf_strerror (shf_err_t err)
{
    if ((unsigned) err >= SHF_ERR_COUNT)
        return "unknown error";
    return s_table [err].text;
}

shf_err_t
shf_err_from_code (const char *code)
{
    if (!code)
        return SHF_EINTERNAL;
    for (int i = 0; i < SHF_ERR_COUNT; i++)
        if (strcmp (s_table [i].code, code) == 0)
            return (shf_err_t) i;
    return SHF_EINTERNAL;
}

shf_err_t
shf_err_format (shf_err_t rc, char *err, size_t errlen, const char *format, ...)
{
    if (err && errlen > 0) {
        va_list args;
        va_start (args, format);
        vsnprintf (err, errlen, format, args);
        va_end (args);
    }
    return rc;
}
