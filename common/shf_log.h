/*  shf_log.h - one-line log records on stderr.

    SHF_LOG=debug|info|warn|error sets the threshold (default info).
*/
#ifndef SHF_LOG_H_INCLUDED
#define SHF_LOG_H_INCLUDED

typedef enum {
    SHF_LOG_DEBUG,
    SHF_LOG_INFO,
    SHF_LOG_WARN,
    SHF_LOG_ERROR
} shf_log_level_t;

void
    shf_log (shf_log_level_t level, const char *fmt, ...)
        __attribute__ ((format (printf, 2, 3)));

#define shf_debug(...) shf_log (SHF_LOG_DEBUG, __VA_ARGS__)
#define shf_info(...)  shf_log (SHF_LOG_INFO, __VA_ARGS__)
#define shf_warn(...)  shf_log (SHF_LOG_WARN, __VA_ARGS__)
#define shf_error(...) shf_log (SHF_LOG_ERROR, __VA_ARGS__)

#endif
