/*  shf_failpoint.c - parse SHF_FAILPOINTS once, count passes atomically.
*/
#include "shf_failpoint.h"
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SHF_FP_MAX 16

typedef struct {
    char name [64];
    bool do_exit;
    long sleep_ms;  //  "sleep:MS": hold the calling thread, then go on
    bool sticky;
    long at;
    _Atomic long passes;
} s_point_t;

static s_point_t s_points [SHF_FP_MAX];
static int s_count;
static pthread_once_t s_once = PTHREAD_ONCE_INIT;

static void
s_parse (void)
{
    const char *env = getenv ("SHF_FAILPOINTS");
    if (!env || !*env)
        return;
    char *copy = strdup (env);
    char *save = NULL;
    for (char *tok = strtok_r (copy, ";", &save); tok && s_count < SHF_FP_MAX;
         tok = strtok_r (NULL, ";", &save)) {
        char *eq = strchr (tok, '=');
        if (!eq)
            continue;
        *eq = 0;
        s_point_t *p = &s_points [s_count];
        snprintf (p->name, sizeof p->name, "%s", tok);
        char *action = eq + 1;
        char *at = strchr (action, '@');
        p->at = 1;
        if (at) {
            *at = 0;
            p->at = strtol (at + 1, NULL, 10);
            p->sticky = strchr (at + 1, '+') != NULL;
        }
        p->do_exit = strcmp (action, "exit") == 0;
        if (strncmp (action, "sleep:", 6) == 0)
            p->sleep_ms = strtol (action + 6, NULL, 10);
        s_count++;
    }
    free (copy);
}

bool
shf_failpoint (const char *name)
{
    pthread_once (&s_once, s_parse);
    for (int i = 0; i < s_count; i++) {
        s_point_t *p = &s_points [i];
        if (strcmp (p->name, name) != 0)
            continue;
        long n = atomic_fetch_add (&p->passes, 1) + 1;
        if (n == p->at || (p->sticky && n > p->at)) {
            if (p->do_exit) {
                fprintf (stderr, "failpoint %s: exit\n", name);
                _exit (137);
            }
            if (p->sleep_ms > 0) {
                fprintf (stderr, "failpoint %s: sleep %ld ms\n", name,
                         p->sleep_ms);
                struct timespec ts = {p->sleep_ms / 1000,
                                      (p->sleep_ms % 1000) * 1000000L};
                while (nanosleep (&ts, &ts) != 0 && errno == EINTR)
                    ;
                fprintf (stderr, "failpoint %s: slept\n", name);
                return false;
            }
            return true;
        }
    }
    return false;
}
