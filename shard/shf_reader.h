/*  shf_reader.h - a shard's reader: answers the read-only requests
    (wf_describe, wf_history) and gathers (wf_list, def_list, def_show)
    from short read-only LMDB transactions on a thread of its own, so a
    long history or list scan never holds the shard's write batch
    (ARCHITECTURE.md: readers never block the writer).

    The shard actor starts it (zactor_new (shf_reader, &args)) once its
    store is open and recovered, forwards it the read messages it takes
    from its pipe, and destroys it before closing the store. Messages on
    the pipe (shard -> reader), as the router sends them to the shard:
      "REQ"    frame identity (empty: no reply wanted), ptr json_t *msg
      "GATHER" uint32 gather id, ptr json_t *msg
      "$TERM"
    (ownership of each msg passes with its pointer). Answers go straight
    to the router, on a PUSH socket connected to args->endpoint, in the
    shard's own formats:
      "REPLY"    frame identity, frame encoded reply
      "GATHERED" uint32 gather id, ptr json_t *reply (ownership passes)

    Each message is served in one read-only transaction (begin, read,
    abort) that ends before anything is sent, so the reader never holds a
    snapshot while it waits on a socket (a held snapshot would pin old
    pages and make shf_store_grow wait). It sees the last committed state.

    Failpoint "reader.history" runs inside the history read's transaction
    (tests give it a sleep action to hold a snapshot open).
*/
#ifndef SHF_READER_H_INCLUDED
#define SHF_READER_H_INCLUDED
#include "shf_store.h"
#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct {
    uint32_t id;           //  the shard's id ("shard" in describe)
    shf_store_t *store;    //  borrowed; open for the reader's whole life
    const char *endpoint;  //  where the router pulls answers (inproc)
} shf_reader_args_t;

//  The actor function (zactor_new (shf_reader, &args)); args must outlive
//  the actor. Signals ready once its socket to the router is connected.
void shf_reader (zsock_t *pipe, void *args);

//  True when a "REQ" with this op, or a "GATHER" (gather true) with this
//  op, is the reader's to answer. Cheap: a few byte compares.
bool shf_reader_serves (const char *op, bool gather);

void shf_reader_test (bool verbose);

#endif
