/*  shf_clock.h - the engine's one source of time.

    Wall time (ms since the Unix epoch, UTC) comes only from here, so tests
    can move it: shf_clock_set installs another source in-process, and the
    environment variable SHF_CLOCK_OFFSET_FILE names a file holding a signed
    millisecond offset that a test rewrites to jump a running node forward
    (read at most every 10 ms). actors/ never calls this: time is an input.
*/
#ifndef SHF_CLOCK_H_INCLUDED
#define SHF_CLOCK_H_INCLUDED
#include <stddef.h>
#include <stdint.h>

typedef int64_t (*shf_clock_fn) (void *arg);

//  Current wall time in ms since the epoch, as the engine sees it.
int64_t
    shf_clock_now (void);

//  Replace the source (NULL restores the real clock). Not thread-safe:
//  call before starting threads.
void
    shf_clock_set (shf_clock_fn fn, void *arg);

//  Monotonic microseconds for measuring intervals; never moved by tests.
int64_t
    shf_clock_mono_us (void);

//  Format ms since the epoch as RFC 3339 UTC with milliseconds
//  ("2026-11-22T16:00:00.123Z") into buf (at least 32 bytes).
void
    shf_clock_format (int64_t ms, char *buf, size_t size);

#endif
