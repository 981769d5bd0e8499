/*  shf_failpoint.h - SQLite-style countdown fault injection.

    SHF_FAILPOINTS="shard.after_commit=exit@3;store.commit=eio@1" makes the
    3rd pass through "shard.after_commit" _exit(137) the process (as a
    SIGKILL would, no cleanup) and the 1st pass through "store.commit"
    report an I/O error. "@N" defaults to 1; "eio@N+" fires on the N-th and
    every later pass. Without the variable every check is one load.
    "reader.history=sleep:3000@1" holds the thread that passes the point
    for 3000 ms (it then goes on: the check returns false), to keep a
    moment open, such as a reader's snapshot, while a test acts.
*/
#ifndef SHF_FAILPOINT_H_INCLUDED
#define SHF_FAILPOINT_H_INCLUDED
#include <stdbool.h>

//  Returns true when the named point should fail with an error now.
//  An "exit" action never returns; a "sleep:MS" action returns false
//  after sleeping.
bool
    shf_failpoint (const char *name);

#endif
