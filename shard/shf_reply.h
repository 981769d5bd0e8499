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
#include <stddef.h>
#include <stdint.h>

//  Encodes reply and sends it on socket (a raw libzmq socket) for the
//  client of that identity; the encoded bytes are handed over, not copied.
//  release (may be NULL): the task token whose report this answers, sent
//  as a fourth frame so the router stops tracking it for WorkerLost.
void shf_reply_send (void *socket, const void *identity, size_t identity_size,
                     const json_t *reply, const char *release);

//  As shf_reply_send with shf_msg_reply_ok (id, {}), encoded without a
//  tree: how a task's report is acknowledged, three times a workflow.
void shf_reply_send_ack (void *socket, const void *identity,
                         size_t identity_size, uint64_t id,
                         const char *release);

#endif
