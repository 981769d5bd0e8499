/*  shf_reply.h - a shard-side answer on its way to the router.

    The shard and its reader answer a client the same way: the frames
    "REPLY", the client's identity, the encoded reply, which the router
    forwards as they are. An answer too large for a frame becomes an
    error saying so, so a client is never left waiting.

    Thread rule: stateless; the caller's socket.
*/
#ifndef SHF_REPLY_H_INCLUDED
#define SHF_REPLY_H_INCLUDED
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  Encodes reply and sends it on socket (a raw libzmq socket) for the
//  client of that identity; the encoded bytes are handed over, not copied.
//  release (may be NULL): the task token whose report this answers, sent
//  as a fourth frame so the router stops tracking it for WorkerLost.
void shf_reply_send (void *socket, const void *identity, size_t identity_size,
                     const json_t *reply, const char *release);

//  As shf_reply_send with shf_msg_reply_ok (id, body), body given packed
//  (msgpack): a closed run's result to each client that waits for it,
//  encoded without a tree.
void shf_reply_send_packed (void *socket, const void *identity,
                            size_t identity_size, uint64_t id, const void *body,
                            size_t body_size);

//  Acknowledgements of task reports (shf_msg_reply_ok (id, {})), three a
//  workflow: a shard gathers those of a batch and sends them as one
//  message, "ACKS" and one frame of entries, each the client's identity,
//  the request id and the token whose report it answers (the router stops
//  tracking it); the router encodes each ack and sends it on. One message
//  a batch instead of four frames an ack.
typedef struct {
    uint8_t *data;
    size_t size;
    size_t alloc;
} shf_reply_acks_t;

//  identity: 1..255 bytes; release: NULL or a token.
void shf_reply_acks_add (shf_reply_acks_t *self, const void *identity,
                         size_t identity_size, uint64_t id,
                         const char *release);
//  Sends what was added, if anything, on socket (the buffer is handed
//  over) and leaves self empty.
void shf_reply_acks_send (shf_reply_acks_t *self, void *socket);
void shf_reply_acks_free (shf_reply_acks_t *self);
//  Reads the entry at *pos of an ACKS frame and moves *pos past it; false
//  at the end or at a malformed entry. Pointers are into data.
bool shf_reply_acks_next (const void *data, size_t size, size_t *pos,
                          const void **identity, size_t *identity_size,
                          uint64_t *id, const char **release,
                          size_t *release_size);

void shf_reply_test (bool verbose);

#endif
