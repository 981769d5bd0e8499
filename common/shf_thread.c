/*  shf_thread.c - naming an actor thread and keeping signals out of it.
*/
#include "shf_thread.h"
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>

void
shf_thread_enter (const char *format, ...)
{
    char name [16];  //  the kernel keeps 15 characters and the NUL
    va_list ap;
    va_start (ap, format);
    vsnprintf (name, sizeof name, format, ap);
    va_end (ap);
    pthread_setname_np (pthread_self (), name);
    sigset_t all;
    sigfillset (&all);
    pthread_sigmask (SIG_BLOCK, &all, NULL);
}
