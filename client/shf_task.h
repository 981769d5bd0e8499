/*  shf_task.h - a task as the SDK hands it to the application (internal
    to libshardflow; the accessors are public, in shardflow.h).

    Made from the task frame as it came off the wire, read in place
    (shf_taskmsg): the fields the accessors return are copied once into
    one block, and the payloads become the JSON text the application
    reads. No JSON tree of the message is built.

    Thread rule: a task belongs to one thread at a time (the worker's link
    makes it, the application's thread takes it over).
*/
#ifndef SHF_TASK_H_INCLUDED
#define SHF_TASK_H_INCLUDED
#include "shardflow.h"

//  A task from a task frame, data[0..size). SHF_EINVAL or SHF_ETOOLARGE,
//  with why in err, for a frame shf_msg_decode would refuse (or that is
//  no task).
shf_err_t shf_task_read (const void *data, size_t size, shf_task_t **task_p,
                         char *err, size_t errlen) SHF_MUST_CHECK;

#endif
