/*  shf_frames.h - one message as raw libzmq frames, for the loops that
    read every message a node handles: the router (frontend, shard pipes,
    readers' answers) and each shard (its pipe).

    Raw zmq_msg_t rather than CZMQ's zmsg: no allocation per frame, and a
    receive that finds nothing is the only extra system call per wake-up.
    Pointers (json_t * handed over inside the process) travel as the bytes
    of the pointer in a frame of their own.

    Thread rule: stateless; the caller's socket.
*/
#ifndef SHF_FRAMES_H_INCLUDED
#define SHF_FRAMES_H_INCLUDED
#include <stdbool.h>
#include <stddef.h>
#include <zmq.h>

//  Receives one message without waiting for its first frame: -1 when none
//  is queued (zmq_errno () says why: EAGAIN, or ETERM when the context
//  ends), else how many frames it had. The first max are in frames; any
//  past them are read and dropped. The caller closes the ones it got
//  (shf_frames_close).
int
    shf_frames_recv (void *socket, zmq_msg_t *frames, int max);

//  Closes what shf_frames_recv put in frames (count as it returned).
void
    shf_frames_close (zmq_msg_t *frames, int count, int max);

//  True when the frame holds exactly word.
bool
    shf_frames_is (zmq_msg_t *frame, const char *word);

//  The pointer a frame carries, or NULL when it is not one.
void *
    shf_frames_ptr (zmq_msg_t *frame);

#endif
