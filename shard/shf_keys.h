/*  shf_keys.h - the byte layout of every key in a shard's databases.

    Strings in keys are names validated by proto (no control characters),
    so NUL separates components unambiguously. Integers are big-endian so
    byte order is numeric order:
      exec     ns \0 wf_id                  -> the current run's placed key
      run key  ns \0 wf_id \0 run_id \0
      placed   started_at(8) run key        (schema 2)
      runs     placed                       -> the run's mutable state
      history  placed event_id(8)
      timers   due(8) run key timer_id(8)     -> nothing (the key says all)
      tasks    placed step \0 attempt(4)
      index    ns \0 (INT64_MAX - started_at)(8) wf_id \0 run_id
               (newest first)               -> SHF_INDEX_PACKED entry
      dedup    ns \0 request_id
      defs     ns \0 name \0 version(8)
*/
#ifndef SHF_KEYS_H_INCLUDED
#define SHF_KEYS_H_INCLUDED
#include <stddef.h>
#include <stdint.h>

#define SHF_KEY_MAX 511

//  The form tag of an index entry: msgpack [SHF_INDEX_PACKED, name,
//  version, status (shf_run_status_t number), closed_at - started_at (nil
//  while open)]; the IDs and the start time are read from the key. Entries
//  written before it are maps that spell every field out. The shard writes
//  an entry once, when the run starts; a listing takes the status and the
//  close time from the run's state (shf_reader.c, s_wf_status).
#define SHF_INDEX_PACKED 1

typedef struct {
    unsigned char data [SHF_KEY_MAX + 1];
    size_t size;
    int overflow;  //  set when a component did not fit
} shf_key_t;

void shf_key_init (shf_key_t *self);
void shf_key_str (shf_key_t *self, const char *s);  //  appends s and \0
void shf_key_raw (shf_key_t *self, const char *s);  //  appends s only
void shf_key_u64 (shf_key_t *self, uint64_t v);
void shf_key_u32 (shf_key_t *self, uint32_t v);
uint64_t shf_key_get_u64 (const void *data);

void shf_key_exec (shf_key_t *self, const char *ns, const char *wf_id);
//  Appends the run key (with its terminator).
void shf_key_run (shf_key_t *self, const char *ns, const char *wf_id,
                  const char *run_id);

//  A run's placed key: the run key behind its start time, so that the
//  records of runs started together (the ones in flight together) share
//  B-tree leaves whatever their workflow IDs. Appends it.
void shf_key_placed (shf_key_t *self, int64_t started_at, const char *ns,
                     const char *wf_id, const char *run_id);

#endif
