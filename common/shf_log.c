/*  shf_log.c - stderr logger with a threshold from SHF_LOG.
*/
#include "shf_log.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int
s_threshold (void)
{
    static int level = -1;
    if (level < 0) {
        const char *env = getenv ("SHF_LOG");
        level = SHF_LOG_INFO;
        if (env && strcmp (env, "debug") == 0)
            level = SHF_LOG_DEBUG;
        else if (env && strcmp (env, "warn") == 0)
            level = SHF_LOG_WARN;
        else if (env && strcmp (env, "error") == 0)
            level = SHF_LOG_ERROR;
    }
    return level;
}

void
shf_log (shf_log_level_t level, const char *fmt, ...)
{
    if ((int) level < s_threshold ())
        return;
    static const char *names [] = {"D", "I", "W", "E"};
    char line [1024];
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r (&ts.tv_sec, &tm);
    int n = snprintf (line, sizeof line, "%02d:%02d:%02d.%03ld %s ",
                      tm.tm_hour, tm.tm_min, tm.tm_sec,
                      ts.tv_nsec / 1000000, names [level]);
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (line + n, sizeof line - (size_t) n, fmt, ap);
    va_end (ap);
    fprintf (stderr, "%s\n", line);
}
