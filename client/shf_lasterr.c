/*  shf_lasterr.c - last-error record shared by the client and the worker.
*/
#include "shf_lasterr.h"
#include <stdarg.h>
#include <stdio.h>

shf_err_t
shf_lasterr_fail (shf_lasterr_t *self, shf_err_t rc, const char *fmt, ...)
{
    snprintf (self->code, sizeof self->code, "%s", shf_err_code (rc));
    va_list args;
    va_start (args, fmt);
    vsnprintf (self->message, sizeof self->message, fmt, args);
    va_end (args);
    return rc;
}

shf_err_t
shf_lasterr_reply (shf_lasterr_t *self, const json_t *reply, json_t **body_p)
{
    if (json_is_true (json_object_get (reply, "ok"))) {
        if (body_p) {
            json_t *body = json_object_get (reply, "body");
            *body_p = body ? json_incref (body) : json_null ();
        }
        self->code [0] = 0;
        self->message [0] = 0;
        return SHF_OK;
    }
    const json_t *error = json_object_get (reply, "error");
    const char *code = json_string_value (json_object_get (error, "code"));
    const char *message =
        json_string_value (json_object_get (error, "message"));
    if (!code)
        code = "internal";
    snprintf (self->code, sizeof self->code, "%s", code);
    snprintf (self->message, sizeof self->message, "%s",
              message ? message : code);
    return shf_err_from_code (code);
}

const char *
shf_lasterr_code (const shf_lasterr_t *self)
{
    return self->code [0] ? self->code : "ok";
}
