/*  shf_thread.h - what every thread of ours does first.

    Our actor threads (router, shards, readers, the SDK's worker link)
    carry a name, so `top -H`, perf and gdb say which is which, and block
    every signal: signals belong to the process's main thread, and one
    delivered to an actor would only interrupt its socket calls (CZMQ's
    do not all retry; a worker that forks commands gets SIGCHLD all the
    time).

    Thread rule: call from the thread itself, before anything else.
*/
#ifndef SHF_THREAD_H_INCLUDED
#define SHF_THREAD_H_INCLUDED

//  Names the calling thread (printf format; cut to the kernel's 15
//  characters) and blocks every signal in it.
void
    shf_thread_enter (const char *format, ...)
        __attribute__ ((format (printf, 1, 2)));

#endif
