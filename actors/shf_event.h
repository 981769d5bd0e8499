/*  shf_event.h - history events as they are stored: packed by position,
    with numbers for the names every event repeats.

    A transition's events are one record (shf_workflow writes it; the shard
    stores it under the run's placed key and the first event's id). Each
    event is an array:

      [type, time - started_at, name, value, name, value, ...]

    type is the number of a known event type (SPEC.md) or its name; each
    attribute name is the number of a known one or the name itself. The id
    is not stored: the key holds the first, the others follow on (a
    transition's events are numbered in a row). Nor are WorkflowStarted's
    workflow_id, run_id and namespace: the key holds them. A W3 run's
    records take about a quarter of the bytes the maps did (61 against
    236 on average). The numbers are stored: new names go last in
    shf_event.c's tables, never reordered.

    Records written before are an array of event maps, or (older) one
    map; shf_event_unpack reads all three forms.

    Thread rule: stateless; any thread.
*/
#ifndef SHF_EVENT_H_INCLUDED
#define SHF_EVENT_H_INCLUDED
#include "shf_run.h"
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

//  The stored number of an event type, or of an attribute name; -1 when
//  it has none (it is stored as its name).
int shf_event_type_code (const char *type);
int shf_event_attr_code (const char *name);

//  The events of a stored record as SPEC.md event objects ("id", "type",
//  "time" first, then the attributes in the order written), the
//  caller's. first_id: the id in the record's key; ids: the run's, from
//  the key (started_at: ms). NULL when record is none of the stored forms.
json_t *shf_event_unpack (const json_t *record, int64_t first_id,
                          const shf_run_ids_t *ids);

void shf_event_test (bool verbose);

#endif
