/*  shf_clock.c - real and injected time.

    The offset file lets a test jump a separate node process's clock (a
    30-day sleep must fire without waiting 30 days). It is re-read at most
    every 10 ms of monotonic time so the hot path stays cheap.
*/
#include "shf_clock.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static shf_clock_fn s_fn;
static void *s_arg;
static _Atomic int64_t s_offset;
static _Atomic int64_t s_offset_read_at = -1;

int64_t
shf_clock_mono_us (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

//  The test clock's file, looked up once: the clock is read per input.
static const char *s_offset_path;
static pthread_once_t s_offset_once = PTHREAD_ONCE_INIT;

static void
s_offset_init (void)
{
    s_offset_path = getenv ("SHF_CLOCK_OFFSET_FILE");
}

static int64_t
s_offset_ms (void)
{
    pthread_once (&s_offset_once, s_offset_init);
    const char *path = s_offset_path;
    if (!path)
        return 0;
    int64_t now = shf_clock_mono_us ();
    int64_t last = atomic_load (&s_offset_read_at);
    if (last >= 0 && now - last < 10000)
        return atomic_load (&s_offset);
    long long value = 0;
    FILE *f = fopen (path, "r");
    if (f) {
        if (fscanf (f, "%lld", &value) != 1)
            value = 0;
        fclose (f);
    }
    atomic_store (&s_offset, (int64_t) value);
    atomic_store (&s_offset_read_at, now);
    return value;
}

int64_t
shf_clock_now (void)
{
    if (s_fn)
        return s_fn (s_arg);
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + s_offset_ms ();
}

void
shf_clock_set (shf_clock_fn fn, void *arg)
{
    s_fn = fn;
    s_arg = arg;
}

void
shf_clock_format (int64_t ms, char *buf, size_t size)
{
    time_t secs = (time_t) (ms / 1000);
    int millis = (int) (ms % 1000);
    if (millis < 0) {
        millis += 1000;
        secs -= 1;
    }
    struct tm tm;
    gmtime_r (&secs, &tm);
    snprintf (buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
              tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
              tm.tm_min, tm.tm_sec, millis);
}
