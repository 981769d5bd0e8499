/*  shf_lasterr.h - the last error of an SDK object (client or worker).

    Keeps the server's error code string exactly as sent (so a newer
    server's code survives) and a message, and turns a reply frame into a
    status. Internal to libshardflow.
*/
#ifndef SHF_LASTERR_H_INCLUDED
#define SHF_LASTERR_H_INCLUDED
#include "shf_err.h"
#include <jansson.h>

typedef struct {
    char code [64];
    char message [1024];
} shf_lasterr_t;

//  Record a local failure rc with a formatted message; returns rc.
shf_err_t shf_lasterr_fail (shf_lasterr_t *self, shf_err_t rc, const char *fmt,
                            ...) __attribute__ ((format (printf, 3, 4)));

//  Take a decoded reply: on ok clear the record and (if body_p) give the
//  body (the caller's; JSON null when absent); else record the server's
//  code and message and return the matching status.
shf_err_t shf_lasterr_reply (shf_lasterr_t *self, const json_t *reply,
                             json_t **body_p);

//  The code, "ok" when nothing failed. Borrowed.
const char *shf_lasterr_code (const shf_lasterr_t *self);

#endif
