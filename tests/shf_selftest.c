/*  shf_selftest.c - runs the class self-tests (CZMQ style).

    `shf_selftest CLASS [-v]` runs one class's test; with no CLASS, all.
    The table is generated at configure time from the headers that declare
    `shf_<class>_test (bool verbose)`.
*/
#include "shf_selftest_list.h"
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    const char *name;
    void (*test) (bool verbose);
} s_entry_t;

static const s_entry_t s_tests [] = {SHF_SELFTESTS{NULL, NULL}};

int
main (int argc, char **argv)
{
    bool verbose = false;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp (argv [i], "-v") == 0)
            verbose = true;
        else
            only = argv [i];
    }
    int ran = 0;
    for (const s_entry_t *e = s_tests; e->name; e++) {
        if (only && strcmp (only, e->name) != 0)
            continue;
        printf ("running %s\n", e->name);
        fflush (stdout);
        if (!e->test) {
            fprintf (stderr, "%s: not linked\n", e->name);
            return 1;
        }
        e->test (verbose);
        ran++;
    }
    if (ran == 0) {
        fprintf (stderr, "no test named %s\n", only ? only : "(any)");
        return 2;
    }
    printf ("%d passed, 0 failed\n", ran);
    return 0;
}
