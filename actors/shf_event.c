/*  shf_event.c - the stored numbers of event types and attribute names,
    and the reader of every stored form of a history record. See
    shf_event.h for the layout.
*/
#include "shf_event.h"
#include <assert.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

//  Stored by number: append only.
static const char *s_types [] = {
    "WorkflowStarted",  "WorkflowCompleted",  "WorkflowFailed",
    "WorkflowCanceled", "WorkflowTerminated", "WorkflowTimedOut",
    "StepScheduled",    "StepSkipped",        "StepCanceled",
    "ActivityStarted",  "ActivityCompleted",  "ActivityFailed",
    "ActivityTimedOut", "TimerStarted",       "TimerFired",
    "SignalReceived",   "CancelRequested"};
#define S_TYPES ((int) (sizeof s_types / sizeof s_types [0]))

static const char *s_attrs [] = {
    "step",    "attempt",   "timer_id", "input",        "output",
    "failure", "signal",    "worker",   "activity",     "queue",
    "due",     "kind",      "reason",   "signal_taken", "workflow_id",
    "run_id",  "namespace", "name",     "version",      "details"};
#define S_ATTRS ((int) (sizeof s_attrs / sizeof s_attrs [0]))

//  A short linear search: the first byte rules out most names, and this
//  runs a few times per event.
static int
s_code (const char *const *names, int count, const char *name)
{
    for (int i = 0; i < count; i++)
        if (names [i][0] == name [0] && strcmp (names [i], name) == 0)
            return i;
    return -1;
}

int
shf_event_type_code (const char *type)
{
    assert (type);
    return s_code (s_types, S_TYPES, type);
}

int
shf_event_attr_code (const char *name)
{
    assert (name);
    return s_code (s_attrs, S_ATTRS, name);
}

//  A name stored as a number of names [count) or as itself; NULL when it
//  is neither.
static const char *
s_name (const json_t *value, const char *const *names, int count)
{
    if (json_is_string (value))
        return json_string_value (value);
    if (!json_is_integer (value))
        return NULL;
    json_int_t code = json_integer_value (value);
    return code >= 0 && code < count ? names [code] : NULL;
}

//  One packed event as its object; NULL when it is not one.
static json_t *
s_unpack_one (const json_t *packed, int64_t id, const shf_run_ids_t *ids)
{
    size_t n = json_array_size (packed);
    const char *type = s_name (json_array_get (packed, 0), s_types, S_TYPES);
    const json_t *time = json_array_get (packed, 1);
    if (n < 2 || n % 2 || !type || !json_is_integer (time))
        return NULL;
    //  Differences wrap, as the state's times do: any int64 goes there
    //  and back.
    int64_t at = (int64_t) ((uint64_t) ids->started_at
                            + (uint64_t) json_integer_value (time));
    json_t *event = json_pack ("{s:I, s:s, s:I}", "id", (json_int_t) id, "type",
                               type, "time", (json_int_t) at);
    if (!event)
        return NULL;  //  a type name that is not UTF-8 text
    //  WorkflowStarted's IDs are the key's, where SPEC.md puts them.
    bool started = strcmp (type, "WorkflowStarted") == 0;
    if (started) {
        json_object_set_new (event, "workflow_id",
                             json_string (ids->workflow_id));
        json_object_set_new (event, "run_id", json_string (ids->run_id));
        json_object_set_new (event, "namespace", json_string (ids->ns));
    }
    //  Attributes go after, each once; "id", "type" and "time" are not
    //  attributes. An ID a WorkflowStarted still carries is the key's.
    for (size_t i = 2; i < n; i += 2) {
        const char *name =
            s_name (json_array_get (packed, i), s_attrs, S_ATTRS);
        if (started && name
            && (strcmp (name, "workflow_id") == 0
                || strcmp (name, "run_id") == 0
                || strcmp (name, "namespace") == 0))
            continue;
        if (!name || json_object_get (event, name)
            || json_object_set (event, name, json_array_get (packed, i + 1))) {
            json_decref (event);
            return NULL;
        }
    }
    return event;
}

json_t *
shf_event_unpack (const json_t *record, int64_t first_id,
                  const shf_run_ids_t *ids)
{
    assert (ids && ids->ns && ids->workflow_id && ids->run_id);
    if (json_is_object (record))
        return json_pack ("[O]", record);  //  one event, the oldest form
    if (!json_is_array (record))
        return NULL;
    size_t n = json_array_size (record);
    if (n == 0 || json_is_object (json_array_get (record, 0))) {
        for (size_t i = 0; i < n; i++)
            if (!json_is_object (json_array_get (record, i)))
                return NULL;
        return json_incref ((json_t *) record);  //  event maps, as before
    }
    json_t *events = json_array ();
    for (size_t i = 0; i < n; i++) {
        const json_t *packed = json_array_get (record, i);
        json_t *event = json_is_array (packed) ? s_unpack_one (
                            packed, (int64_t) ((uint64_t) first_id + i), ids)
                                               : NULL;
        if (!event) {
            json_decref (events);
            return NULL;
        }
        json_array_append_new (events, event);
    }
    return events;
}

//  --- self-test ------------------------------------------------------------

void
shf_event_test (bool verbose)
{
    if (verbose)
        printf (" * shf_event: ");
    assert (shf_event_type_code ("WorkflowStarted") == 0);
    assert (shf_event_type_code ("CancelRequested") == S_TYPES - 1);
    assert (shf_event_type_code ("Nope") == -1);
    assert (shf_event_attr_code ("step") == 0);
    assert (shf_event_attr_code ("signal_taken") == 13);
    assert (shf_event_attr_code ("signal") == 6);
    assert (shf_event_attr_code ("x") == -1);
    for (int i = 0; i < S_TYPES; i++)
        assert (shf_event_type_code (s_types [i]) == i);
    for (int i = 0; i < S_ATTRS; i++)
        assert (shf_event_attr_code (s_attrs [i]) == i);

    //  Packed: numbers and names alike; ids follow the key's.
    json_error_t error;
    json_t *record =
        json_loads ("[[0, 0, 14, \"elsewhere\", 3, {\"n\": 1}], "
                    "[13, 5, 0, \"nap\", \"extra\", [1], 10, 900]]",
                    0, &error);
    assert (record);
    const shf_run_ids_t ids = {"default", "w", "r", 1000};
    json_t *events = shf_event_unpack (record, 41, &ids);
    json_t *expect = json_loads (
        "[{\"id\": 41, \"type\": \"WorkflowStarted\", \"time\": 1000, "
        "\"workflow_id\": \"w\", \"run_id\": \"r\", \"namespace\": "
        "\"default\", \"input\": {\"n\": 1}}, "
        "{\"id\": 42, \"type\": \"TimerStarted\", \"time\": 1005, "
        "\"step\": \"nap\", \"extra\": [1], \"due\": 900}]",
        0, &error);
    assert (expect && events && json_equal (events, expect));
    //  "id", "type", "time" come first, as SPEC.md writes them, then
    //  WorkflowStarted's IDs.
    const char *order [] = {"id",     "type",      "time", "workflow_id",
                            "run_id", "namespace", "input"};
    json_t *started = json_array_get (events, 0);
    void *it = json_object_iter (started);
    for (size_t i = 0; i < 7; i++) {
        assert (it && strcmp (json_object_iter_key (it), order [i]) == 0);
        it = json_object_iter_next (started, it);
    }
    json_decref (events);
    json_decref (record);

    //  The forms written before read as they are.
    events = shf_event_unpack (expect, 7, &ids);
    assert (json_equal (events, expect));
    json_decref (events);
    events = shf_event_unpack (json_array_get (expect, 0), 7, &ids);
    assert (
        json_array_size (events) == 1
        && json_equal (json_array_get (events, 0), json_array_get (expect, 0)));
    json_decref (events);
    json_decref (expect);

    //  Not records
    const char *bad [] = {
        "5",
        "[[0]]",                  //  no time
        "[[0, 1, 0]]",            //  a name without its value
        "[[99, 1]]",              //  no such type
        "[[0, \"x\"]]",           //  time not an integer
        "[[0, 1, 99, 2]]",        //  no such attribute
        "[[0, 1, 1.5, 2]]",       //  attribute neither number nor name
        "[[0, 1, \"time\", 2]]",  //  an attribute named as a member
        "[[0, 1, 0, 2, 0, 3]]",   //  an attribute twice
        "[[0, 1], {\"id\": 1}]",  //  forms mixed
        "[{\"id\": 1}, [0, 1]]",  //  forms mixed
        "[7]",                    //  neither form
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad [0]; i++) {
        record = json_loads (bad [i], JSON_DECODE_ANY, &error);
        assert (record);
        assert (shf_event_unpack (record, 1, &ids) == NULL);
        json_decref (record);
    }
    if (verbose)
        printf ("OK\n");
}
