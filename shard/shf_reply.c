/*  shf_reply.c - REPLY frames from a shard or its reader (shf_reply.h).
*/
#include "shf_reply.h"
#include "shf_msg.h"
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

static void
s_free_data (void *data, void *hint)
{
    (void) hint;
    free (data);
}

//  The frames of an encoded reply (data handed over).
static void
s_send (void *socket, const void *identity, size_t identity_size, char *data,
        size_t size, const char *release)
{
    zmq_send (socket, "REPLY", 5, ZMQ_SNDMORE);
    zmq_send (socket, identity, identity_size, ZMQ_SNDMORE);
    zmq_msg_t body;  //  handed over, not copied
    zmq_msg_init_data (&body, data, size, s_free_data, NULL);
    if (zmq_msg_send (&body, socket, release ? ZMQ_SNDMORE : 0) < 0)
        zmq_msg_close (&body);
    else if (release)
        zmq_send (socket, release, strlen (release), 0);
}

void
shf_reply_send (void *socket, const void *identity, size_t identity_size,
                const json_t *reply, const char *release)
{
    char *data;
    size_t size;
    if (shf_msg_encode (reply, &data, &size) != SHF_OK) {
        //  Never leave a client waiting: say why there is no answer.
        json_t *error = shf_msg_reply_error (
            (uint64_t) shf_msg_int (reply, "id", 0), SHF_ETOOLARGE,
            "the answer is larger than the frame limit");
        shf_err_t rc = shf_msg_encode (error, &data, &size);
        json_decref (error);
        if (rc != SHF_OK)
            return;
    }
    s_send (socket, identity, identity_size, data, size, release);
}

void
shf_reply_send_ack (void *socket, const void *identity, size_t identity_size,
                    uint64_t id, const char *release)
{
    char *data;
    size_t size;
    if (shf_msg_encode_ack (id, &data, &size) == SHF_OK)
        s_send (socket, identity, identity_size, data, size, release);
}
