/*  bench_fsync_growth.c - what a commit's fdatasync costs when the file
    grows, against the same writes into a file already written that far:
    the measurement behind shf_store_prealloc.

    In a temporary file on the data disk (DIR, default /tmp), ROUNDS
    commits each write PAGES random 4 KiB pages inside the first 16 MiB
    (written and synced beforehand) plus one page, then fdatasync. The one
    page goes at the file's end ("append": the file grows, as an LMDB
    environment does while its history grows) or, in the other mode, into
    a region written with zeros and synced beforehand ("preallocated").
    The two modes alternate ALTERNATIONS times; medians of the fdatasync
    p50 of each mode are printed, in microseconds.

    bench_fsync_growth [ROUNDS (300) [PAGES (5) [ALTERNATIONS (5) [DIR]]]]
*/
#include "bench_util.h"
#include <fcntl.h>
#include <unistd.h>

#define S_PAGE 4096
#define S_BASE (16u << 20)

//  p50 fdatasync microseconds of one run; -1 on an I/O error.
static double
s_run (const char *path, bool prealloc, int rounds, int pages)
{
    int fd = open (path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return -1;
    static char page [S_PAGE];
    memset (page, 7, sizeof page);
    size_t ahead = prealloc ? (size_t) rounds * S_PAGE : 0;
    bool ok = true;
    for (size_t at = 0; ok && at < S_BASE + ahead; at += S_PAGE)
        ok = pwrite (fd, page, S_PAGE, (off_t) at) == S_PAGE;
    ok = ok && fdatasync (fd) == 0;
    double *us = calloc ((size_t) rounds, sizeof *us);
    assert (us);
    off_t end = S_BASE;
    for (int i = 0; ok && i < rounds; i++) {
        for (int k = 0; ok && k < pages; k++) {
            off_t at = (off_t) (rand () % (S_BASE / S_PAGE)) * S_PAGE;
            ok = pwrite (fd, page, S_PAGE, at) == S_PAGE;
        }
        ok = ok && pwrite (fd, page, S_PAGE, end) == S_PAGE;
        end += S_PAGE;
        int64_t t0 = shf_clock_mono_us ();
        ok = ok && fdatasync (fd) == 0;
        us [i] = (double) (shf_clock_mono_us () - t0);
    }
    close (fd);
    unlink (path);
    qsort (us, (size_t) rounds, sizeof *us, bench_cmp_double);
    double p50 = ok ? bench_pct (us, rounds, 50) : -1;
    free (us);
    return p50;
}

int
main (int argc, char **argv)
{
    bench_watchdog ();
    int rounds = argc > 1 ? atoi (argv [1]) : 300;
    int pages = argc > 2 ? atoi (argv [2]) : 5;
    int alternations = argc > 3 ? atoi (argv [3]) : 5;
    const char *dir = argc > 4 ? argv [4] : "/tmp";
    if (rounds < 1 || pages < 0 || alternations < 1 || alternations > 100) {
        fprintf (stderr, "usage: bench_fsync_growth [ROUNDS [PAGES "
                         "[ALTERNATIONS [DIR]]]]\n");
        return 2;
    }
    char path [512];
    snprintf (path, sizeof path, "%s/bench_fsync_growth.%d", dir,
              (int) getpid ());
    double append [100], prealloc [100];
    for (int i = 0; i < alternations; i++) {
        append [i] = s_run (path, false, rounds, pages);
        prealloc [i] = s_run (path, true, rounds, pages);
        if (append [i] < 0 || prealloc [i] < 0) {
            fprintf (stderr, "bench_fsync_growth: I/O error in %s\n", dir);
            return 1;
        }
    }
    qsort (append, (size_t) alternations, sizeof (double), bench_cmp_double);
    qsort (prealloc, (size_t) alternations, sizeof (double), bench_cmp_double);
    printf ("workload=fsync_growth rounds=%d pages=%d alternations=%d "
            "append_fdatasync_p50_us=%.0f preallocated_fdatasync_p50_us=%.0f\n",
            rounds, pages, alternations, append [alternations / 2],
            prealloc [alternations / 2]);
    return 0;
}
