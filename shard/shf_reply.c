/*  shf_reply.c - REPLY frames from a shard or its reader (shf_reply.h).
*/
#include "shf_reply.h"
#include "shf_msg.h"
#include <assert.h>
#include <stdio.h>
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

//  Never leave a client waiting: an answer that cannot be encoded is an
//  error saying why. false when even that cannot be.
static bool
s_too_large (uint64_t id, char **data_p, size_t *size_p)
{
    json_t *error = shf_msg_reply_error (
        id, SHF_ETOOLARGE, "the answer is larger than the frame limit");
    shf_err_t rc = shf_msg_encode (error, data_p, size_p);
    json_decref (error);
    return rc == SHF_OK;
}

void
shf_reply_send (void *socket, const void *identity, size_t identity_size,
                const json_t *reply, const char *release)
{
    char *data;
    size_t size;
    if (shf_msg_encode (reply, &data, &size) != SHF_OK
        && !s_too_large ((uint64_t) shf_msg_int (reply, "id", 0), &data, &size))
        return;
    s_send (socket, identity, identity_size, data, size, release);
}

void
shf_reply_send_packed (void *socket, const void *identity, size_t identity_size,
                       uint64_t id, const void *body, size_t body_size)
{
    char *data;
    size_t size;
    if (shf_msg_encode_reply_raw (id, body, body_size, &data, &size) != SHF_OK
        && !s_too_large (id, &data, &size))
        return;
    s_send (socket, identity, identity_size, data, size, NULL);
}

static void
s_acks_put (shf_reply_acks_t *self, const void *data, size_t size)
{
    if (size == 0)
        return;  //  data may be NULL
    if (self->size + size > self->alloc) {
        size_t alloc = self->alloc ? self->alloc * 2 : 1024;
        while (alloc < self->size + size)
            alloc *= 2;
        self->data = realloc (self->data, alloc);
        assert (self->data);
        self->alloc = alloc;
    }
    memcpy (self->data + self->size, data, size);
    self->size += size;
}

void
shf_reply_acks_add (shf_reply_acks_t *self, const void *identity,
                    size_t identity_size, uint64_t id, const char *release)
{
    assert (identity_size >= 1 && identity_size <= 255);
    size_t release_size = release ? strlen (release) : 0;
    assert (release_size <= UINT16_MAX);
    uint8_t n = (uint8_t) identity_size;
    uint16_t r = (uint16_t) release_size;
    s_acks_put (self, &n, 1);
    s_acks_put (self, identity, identity_size);
    s_acks_put (self, &id, sizeof id);
    s_acks_put (self, &r, sizeof r);
    s_acks_put (self, release, release_size);
}

void
shf_reply_acks_send (shf_reply_acks_t *self, void *socket)
{
    if (self->size == 0)
        return;
    zmq_send (socket, "ACKS", 4, ZMQ_SNDMORE);
    zmq_msg_t body;  //  handed over, not copied
    zmq_msg_init_data (&body, self->data, self->size, s_free_data, NULL);
    if (zmq_msg_send (&body, socket, 0) < 0)
        zmq_msg_close (&body);
    *self = (shf_reply_acks_t){0};
}

void
shf_reply_acks_free (shf_reply_acks_t *self)
{
    free (self->data);
    *self = (shf_reply_acks_t){0};
}

bool
shf_reply_acks_next (const void *data, size_t size, size_t *pos,
                     const void **identity, size_t *identity_size, uint64_t *id,
                     const char **release, size_t *release_size)
{
    const uint8_t *p = (const uint8_t *) data + *pos;
    size_t left = size - *pos;
    if (*pos >= size || left < 1 + (size_t) p [0] + sizeof *id + 2
        || p [0] == 0)
        return false;
    *identity_size = p [0];
    *identity = p + 1;
    memcpy (id, p + 1 + *identity_size, sizeof *id);
    uint16_t r;
    memcpy (&r, p + 1 + *identity_size + sizeof *id, sizeof r);
    size_t head = 1 + *identity_size + sizeof *id + sizeof r;
    if (left - head < r)
        return false;
    *release = (const char *) p + head;
    *release_size = r;
    *pos += head + r;
    return true;
}

void
shf_reply_test (bool verbose)
{
    if (verbose)
        printf (" * shf_reply: ");
    shf_reply_acks_t acks = {0};
    char token [300];
    memset (token, 'k', sizeof token - 1);
    token [sizeof token - 1] = 0;
    uint8_t big [255];
    memset (big, 7, sizeof big);
    shf_reply_acks_add (&acks, "\0A", 2, 1, NULL);
    shf_reply_acks_add (&acks, big, sizeof big, UINT64_MAX, token);
    shf_reply_acks_add (&acks, "w", 1, 42, "t.1");
    size_t pos = 0, identity_size, release_size;
    const void *identity;
    const char *release;
    uint64_t id;
    assert (shf_reply_acks_next (acks.data, acks.size, &pos, &identity,
                                 &identity_size, &id, &release, &release_size));
    assert (identity_size == 2 && memcmp (identity, "\0A", 2) == 0);
    assert (id == 1 && release_size == 0);
    assert (shf_reply_acks_next (acks.data, acks.size, &pos, &identity,
                                 &identity_size, &id, &release, &release_size));
    assert (identity_size == 255 && memcmp (identity, big, 255) == 0);
    assert (id == UINT64_MAX && release_size == strlen (token)
            && memcmp (release, token, release_size) == 0);
    assert (shf_reply_acks_next (acks.data, acks.size, &pos, &identity,
                                 &identity_size, &id, &release, &release_size));
    assert (id == 42 && release_size == 3 && memcmp (release, "t.1", 3) == 0);
    assert (!shf_reply_acks_next (acks.data, acks.size, &pos, &identity,
                                  &identity_size, &id, &release,
                                  &release_size));
    //  Every cut of the frame reads the whole entries before it, then stops.
    for (size_t cut = 0; cut < acks.size; cut++) {
        size_t at = 0, n = 0;
        while (shf_reply_acks_next (acks.data, cut, &at, &identity,
                                    &identity_size, &id, &release,
                                    &release_size))
            n++;
        assert (at <= cut && n < 3);
    }
    shf_reply_acks_free (&acks);
    if (verbose)
        printf ("OK\n");
}
