/*  shf_frames.c - raw-frame messages (shf_frames.h).
*/
#include "shf_frames.h"
#include <string.h>

int
shf_frames_recv (void *socket, zmq_msg_t *frames, int max)
{
    int count = 0;
    while (true) {
        zmq_msg_t extra;
        zmq_msg_t *frame = count < max ? &frames [count] : &extra;
        zmq_msg_init (frame);
        //  Only the first frame may be missing: ZeroMQ delivers the rest
        //  of a message together with it.
        if (zmq_msg_recv (frame, socket, count ? 0 : ZMQ_DONTWAIT) < 0) {
            zmq_msg_close (frame);
            return count ? count : -1;
        }
        count++;
        bool more = zmq_msg_more (frame);
        if (frame == &extra)
            zmq_msg_close (frame);
        if (!more)
            return count;
    }
}

void
shf_frames_close (zmq_msg_t *frames, int count, int max)
{
    for (int i = 0; i < count && i < max; i++)
        zmq_msg_close (&frames [i]);
}

bool
shf_frames_is (zmq_msg_t *frame, const char *word)
{
    size_t len = strlen (word);
    return zmq_msg_size (frame) == len
           && memcmp (zmq_msg_data (frame), word, len) == 0;
}

void *
shf_frames_ptr (zmq_msg_t *frame)
{
    void *ptr = NULL;
    if (zmq_msg_size (frame) == sizeof ptr)
        memcpy (&ptr, zmq_msg_data (frame), sizeof ptr);
    return ptr;
}
