/*  shf_err.h - the one error enum of shardflow.

    Every fallible function returns shf_err_t. Each code has a stable string
    (shf_err_code) that travels on the wire and in `--json` output, and a
    human sentence (shf_strerror). Only storage/ sees MDB_* and errno and
    maps them here.
*/
#ifndef SHF_ERR_H_INCLUDED
#define SHF_ERR_H_INCLUDED
#include <stddef.h>

typedef enum {
    SHF_OK = 0,
    SHF_EINVAL,       //  bad_request: malformed or wrong-typed input
    SHF_EDEFINITION,  //  invalid_definition
    SHF_ENOTFOUND,    //  not_found
    SHF_ERUNNING,     //  already_running
    SHF_ECLOSED,      //  closed: the run is no longer open
    SHF_EVERSION,     //  version_exists with another document
    SHF_ETOOLARGE,    //  too_large: over a size limit
    SHF_EUNAVAIL,     //  unavailable: server down, shard fenced or moving
    SHF_EAUTH,        //  unauthorized
    SHF_EINTERNAL,    //  internal: a bug or an impossible state
    SHF_EIO,          //  internal: disk or commit failure; shard fenced
    SHF_EFULL,        //  internal: map full even after growth
    SHF_ECORRUPT,     //  internal: a stored record failed to decode
    SHF_ETIMEOUT,     //  unavailable: no answer within the deadline
    SHF_ERR_COUNT
} shf_err_t;

#define SHF_MUST_CHECK __attribute__ ((warn_unused_result))

//  Stable wire code ("bad_request", "not_found", ...). Never NULL.
const char *shf_err_code (shf_err_t err);

//  Human sentence for logs and CLI messages. Never NULL.
const char *shf_strerror (shf_err_t err);

//  Parse a wire code back to an error; unknown codes give SHF_EINTERNAL.
shf_err_t shf_err_from_code (const char *code);

//  Writes why into err (when err is given: decoders take an optional
//  reason buffer) and returns rc, so a check can fail in one statement.
shf_err_t shf_err_format (shf_err_t rc, char *err, size_t errlen,
                          const char *format, ...)
    __attribute__ ((format (printf, 4, 5)));

#endif
