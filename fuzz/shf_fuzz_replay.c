/*  shf_fuzz_replay.c - replays a fuzz target's corpus without libFuzzer.

    `fuzz_X_replay DIR...` feeds every file under each DIR (and any file
    argument) to LLVMFuzzerTestOneInput once, so every ctest run re-checks
    the corpus and the saved crashers with whatever compiler and sanitizers
    the build uses.
*/
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static int
s_run_file (const char *path)
{
    FILE *f = fopen (path, "rb");
    if (!f)
        return -1;
    fseek (f, 0, SEEK_END);
    long size = ftell (f);
    fseek (f, 0, SEEK_SET);
    uint8_t *buf = malloc (size > 0 ? (size_t) size : 1);
    size_t got = fread (buf, 1, (size_t) size, f);
    fclose (f);
    LLVMFuzzerTestOneInput (buf, got);
    free (buf);
    return 0;
}

static int
s_run (const char *path)
{
    struct stat st;
    if (stat (path, &st) != 0)
        return 0;
    if (!S_ISDIR (st.st_mode))
        return s_run_file (path) == 0 ? 1 : 0;
    DIR *dir = opendir (path);
    if (!dir)
        return 0;
    int count = 0;
    struct dirent *e;
    while ((e = readdir (dir))) {
        if (e->d_name [0] == '.')
            continue;
        char child [4096];
        snprintf (child, sizeof child, "%s/%s", path, e->d_name);
        count += s_run (child);
    }
    closedir (dir);
    return count;
}

int
main (int argc, char **argv)
{
    int count = 0;
    for (int i = 1; i < argc; i++)
        count += s_run (argv [i]);
    printf ("replayed %d inputs\n", count);
    return count > 0 ? 0 : 1;
}
