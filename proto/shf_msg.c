/*  shf_msg.c - the wire messages of shardflow, version 1.

    Decodes one frame into a JSON object and checks it against the table of
    ops below: the frame size first (before any decoding), then the msgpack
    (through shf_mpack, which trusts nothing), then "v", "op", "id", and
    each field of the op: presence, type, length or range. Fields that the
    table does not know are ignored, so a newer peer may add fields; an
    optional field sent as nil counts as absent. Every rejection says what
    to fix, prefixed with the op once it is known.

    The router decodes requests with it, the client decodes replies and
    tasks with the same code, and both encode with shf_msg_encode.
    docs/protocol.md is the prose version of the table: change both.
*/
#include "shf_msg.h"
#include "shf_mpack.h"
#include "shf_token.h"
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_MAX_REASON  4096
#define S_MAX_DOC     (1024 * 1024)
#define S_MAX_MESSAGE (64 * 1024)
#define S_MAX_ITEMS   10000
#define S_MAX_CREDIT  100000
#define S_MAX_LIMIT   10000
#define S_MAX_FIELDS  16

typedef enum {
    S_NAME,     //  string, shf_msg_valid_name
    S_STR,      //  string of min..max bytes, no NUL byte
    S_INT,      //  integer in min..max
    S_BOOL,     //  true or false
    S_PAYLOAD,  //  any value, encoded size <= SHF_MSG_MAX_PAYLOAD
    S_ANY,      //  any value (bounded by the frame)
    S_STATUS,   //  one of the workflow statuses
    S_ERROR,    //  {type: name, message: str <= 64 KiB} (fail)
    S_RERROR,   //  {code: name, message: str <= 64 KiB} (reply)
    S_ITEMS     //  [{token: str, details: payload}] <= 10000 (heartbeat)
} s_kind_t;

typedef struct {
    const char *name;
    s_kind_t kind;
    bool required;
    int64_t min, max;  //  bytes (S_STR) or value (S_INT)
} s_field_t;

typedef struct {
    const char *name;
    s_field_t fields [S_MAX_FIELDS];
} s_opdef_t;

#define F_NS                                                                   \
    {                                                                          \
        "ns", S_NAME, true, 0, 0                                               \
    }
#define F_WF_ID                                                                \
    {                                                                          \
        "wf_id", S_NAME, true, 0, 0                                            \
    }
#define F_TOKEN                                                                \
    {                                                                          \
        "token", S_STR, true, 1, SHF_TOKEN_MAX_TEXT                            \
    }
#define F_VERSION                                                              \
    {                                                                          \
        "version", S_INT, false, 1, INT64_MAX                                  \
    }
#define F_REASON                                                               \
    {                                                                          \
        "reason", S_STR, false, 0, S_MAX_REASON                                \
    }
#define F_INPUT                                                                \
    {                                                                          \
        "input", S_PAYLOAD, false, 0, 0                                        \
    }

static const s_opdef_t s_ops [SHF_OP_COUNT] = {
    [SHF_OP_DEF_REGISTER] = {"def_register",
                             {F_NS, {"doc", S_STR, true, 1, S_MAX_DOC}}},
    [SHF_OP_DEF_LIST] = {"def_list", {F_NS}},
    [SHF_OP_DEF_SHOW] = {"def_show",
                         {F_NS, {"name", S_NAME, true, 0, 0}, F_VERSION}},
    [SHF_OP_WF_START] = {"wf_start",
                         {F_NS,
                          {"name", S_NAME, true, 0, 0},
                          F_VERSION,
                          {"wf_id", S_NAME, false, 0, 0},
                          F_INPUT,
                          {"request_id", S_STR, false, 1, SHF_MSG_MAX_NAME},
                          {"wait", S_BOOL, false, 0, 0},
                          {"timeout_ms", S_INT, false, 0, INT64_MAX}}},
    [SHF_OP_WF_RESULT] = {"wf_result",
                          {F_NS,
                           F_WF_ID,
                           {"wait", S_BOOL, false, 0, 0},
                           {"timeout_ms", S_INT, false, 0, INT64_MAX}}},
    [SHF_OP_WF_DESCRIBE] = {"wf_describe", {F_NS, F_WF_ID}},
    [SHF_OP_WF_HISTORY] = {"wf_history",
                           {F_NS,
                            F_WF_ID,
                            {"page_size", S_INT, false, 1, S_MAX_LIMIT},
                            {"page_token", S_STR, false, 1,
                             SHF_MSG_PAGE_TOKEN_MAX - 1}}},
    [SHF_OP_WF_LIST] = {"wf_list",
                        {F_NS,
                         {"status", S_STATUS, false, 0, 0},
                         {"name", S_NAME, false, 0, 0},
                         {"limit", S_INT, false, 1, S_MAX_LIMIT}}},
    [SHF_OP_WF_SIGNAL] =
        {"wf_signal", {F_NS, F_WF_ID, {"signal", S_NAME, true, 0, 0}, F_INPUT}},
    [SHF_OP_WF_CANCEL] = {"wf_cancel", {F_NS, F_WF_ID, F_REASON}},
    [SHF_OP_WF_TERMINATE] = {"wf_terminate", {F_NS, F_WF_ID, F_REASON}},
    [SHF_OP_POLL] = {"poll",
                     {{"queue", S_NAME, true, 0, 0},
                      {"credit", S_INT, true, 0, S_MAX_CREDIT},
                      {"stop", S_BOOL, false, 0, 0},
                      {"reset", S_BOOL, false, 0, 0},
                      {"gen", S_INT, false, 0, UINT32_MAX}}},
    [SHF_OP_COMPLETE] = {"complete",
                         {F_TOKEN, {"output", S_PAYLOAD, false, 0, 0}}},
    [SHF_OP_FAIL] = {"fail", {F_TOKEN, {"error", S_ERROR, true, 0, 0}}},
    [SHF_OP_HEARTBEAT] = {"heartbeat", {{"items", S_ITEMS, true, 0, 0}}},
    [SHF_OP_TASK] = {"task",
                     {F_TOKEN,
                      F_NS,
                      F_WF_ID,
                      {"run_id", S_NAME, true, 0, 0},
                      {"step", S_NAME, true, 0, 0},
                      {"activity", S_NAME, true, 0, 0},
                      {"queue", S_NAME, true, 0, 0},
                      {"attempt", S_INT, true, 0, UINT32_MAX},
                      F_INPUT,
                      {"heartbeat_details", S_PAYLOAD, false, 0, 0},
                      {"start_to_close_ms", S_INT, false, 0, INT64_MAX},
                      {"heartbeat_timeout_ms", S_INT, false, 0, INT64_MAX}}},
    [SHF_OP_REPLY] = {"reply",
                      {{"ok", S_BOOL, true, 0, 0},
                       {"body", S_ANY, false, 0, 0},
                       {"error", S_RERROR, false, 0, 0}}},
};

static const char *s_statuses [] = {"running",  "completed",  "failed",
                                    "canceled", "terminated", "timed_out",
                                    NULL};

const char *
shf_msg_op_name (shf_op_t op)
{
    if (op <= SHF_OP_INVALID || op >= SHF_OP_COUNT)
        return NULL;
    return s_ops [op].name;
}

shf_op_t
shf_msg_op_lookup (const char *name, size_t len)
{
    //  By length, not strcmp: an op string is not NUL-terminated inside a
    //  frame, and "poll\0x" must not pass for "poll".
    //  The first byte before the length: every message asks this.
    if (len == 0)
        return SHF_OP_INVALID;
    for (int op = SHF_OP_INVALID + 1; op < SHF_OP_COUNT; op++)
        if (s_ops [op].name [0] == name [0] && strlen (s_ops [op].name) == len
            && memcmp (s_ops [op].name, name, len) == 0)
            return (shf_op_t) op;
    return SHF_OP_INVALID;
}

bool
shf_msg_valid_name_chars (const char *s, size_t len)
{
    if (len < 1 || len > SHF_MSG_MAX_NAME)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char) s [i];
        if (c < 0x20 || c == 0x7f)
            return false;
    }
    return true;
}

bool
shf_msg_valid_namen (const char *s, size_t len)
{
    return shf_msg_valid_name_chars (s, len) && shf_mpack_utf8_valid (s, len);
}

bool
shf_msg_valid_name (const char *s)
{
    return s && shf_msg_valid_namen (s, strnlen (s, SHF_MSG_MAX_NAME + 1));
}

//  Checks a string value; path names it in the message ("ns", "error.type").
static shf_err_t
s_check_str (const char *op, const char *path, const json_t *value,
             bool is_name, int64_t min, int64_t max, char *err, size_t errlen)
{
    if (!json_is_string (value))
        return shf_err_format (SHF_EINVAL, err, errlen,
                               "%s: field \"%s\" must be a string", op, path);
    const char *s = json_string_value (value);
    size_t len = json_string_length (value);
    if (is_name) {
        if (!shf_msg_valid_namen (s, len))
            return shf_err_format (
                SHF_EINVAL, err, errlen,
                "%s: field \"%s\" must be a name: 1 to %d bytes "
                "of UTF-8, no control characters",
                op, path, SHF_MSG_MAX_NAME);
        return SHF_OK;
    }
    if (min == 0 && (int64_t) len > max)
        return shf_err_format (
            SHF_EINVAL, err, errlen,
            "%s: field \"%s\" must be a string of at most %lld "
            "bytes (it has %zu)",
            op, path, (long long) max, len);
    if ((int64_t) len < min || (int64_t) len > max)
        return shf_err_format (
            SHF_EINVAL, err, errlen,
            "%s: field \"%s\" must be a string of %lld to %lld "
            "bytes (it has %zu)",
            op, path, (long long) min, (long long) max, len);
    if (memchr (s, 0, len))
        return shf_err_format (SHF_EINVAL, err, errlen,
                               "%s: field \"%s\" must not contain NUL bytes",
                               op, path);
    return SHF_OK;
}

static shf_err_t
s_check_payload (const char *op, const char *path, const json_t *value,
                 char *err, size_t errlen)
{
    size_t size;
    if (shf_mpack_size (value, &size) != SHF_OK)
        return shf_err_format (SHF_EINVAL, err, errlen,
                               "%s: field \"%s\" is nested too deeply", op,
                               path);
    if (size > SHF_MSG_MAX_PAYLOAD)
        return shf_err_format (SHF_ETOOLARGE, err, errlen,
                               "%s: field \"%s\" is larger than %u MiB", op,
                               path, SHF_MSG_MAX_PAYLOAD / (1024 * 1024));
    //  What clients send is stored inside run states, events and replies
    //  (and may be templated into deeper values): keep room for that under
    //  the codec's depth limit. Tasks carry rendered values: exempt.
    if (strcmp (op, "task") != 0
        && shf_mpack_depth (value) > SHF_MSG_MAX_PAYLOAD_DEPTH)
        return shf_err_format (
            SHF_EINVAL, err, errlen,
            "%s: field \"%s\" is nested deeper than %d levels", op, path,
            SHF_MSG_MAX_PAYLOAD_DEPTH);
    return SHF_OK;
}

//  error objects of fail ({type, message}) and reply ({code, message}).
static shf_err_t
s_check_error (const char *op, const char *path, const json_t *value,
               const char *first, char *err, size_t errlen)
{
    if (!json_is_object (value))
        return shf_err_format (SHF_EINVAL, err, errlen,
                               "%s: field \"%s\" must be a map {%s, message}",
                               op, path, first);
    char sub [64];
    const json_t *member = json_object_get (value, first);
    snprintf (sub, sizeof sub, "%s.%s", path, first);
    if (!member)
        return shf_err_format (SHF_EINVAL, err, errlen,
                               "%s: missing field \"%s\"", op, sub);
    shf_err_t rc = s_check_str (op, sub, member, true, 0, 0, err, errlen);
    if (rc)
        return rc;
    member = json_object_get (value, "message");
    snprintf (sub, sizeof sub, "%s.message", path);
    if (!member)
        return shf_err_format (SHF_EINVAL, err, errlen,
                               "%s: missing field \"%s\"", op, sub);
    return s_check_str (op, sub, member, false, 0, S_MAX_MESSAGE, err, errlen);
}

static shf_err_t
s_check_items (const char *op, const json_t *value, char *err, size_t errlen)
{
    if (!json_is_array (value) || json_array_size (value) > S_MAX_ITEMS)
        return shf_err_format (
            SHF_EINVAL, err, errlen,
            "%s: field \"items\" must be an array of at most %d "
            "entries",
            op, S_MAX_ITEMS);
    for (size_t i = 0; i < json_array_size (value); i++) {
        const json_t *item = json_array_get (value, i);
        char path [64];
        snprintf (path, sizeof path, "items[%zu]", i);
        if (!json_is_object (item))
            return shf_err_format (
                SHF_EINVAL, err, errlen,
                "%s: field \"%s\" must be a map {token, details}", op, path);
        const json_t *token = json_object_get (item, "token");
        snprintf (path, sizeof path, "items[%zu].token", i);
        if (!token)
            return shf_err_format (SHF_EINVAL, err, errlen,
                                   "%s: missing field \"%s\"", op, path);
        shf_err_t rc = s_check_str (op, path, token, false, 1,
                                    SHF_TOKEN_MAX_TEXT, err, errlen);
        if (rc)
            return rc;
        const json_t *details = json_object_get (item, "details");
        snprintf (path, sizeof path, "items[%zu].details", i);
        if (details) {
            rc = s_check_payload (op, path, details, err, errlen);
            if (rc)
                return rc;
        }
    }
    return SHF_OK;
}

static shf_err_t
s_check_field (const char *op, const s_field_t *f, const json_t *value,
               char *err, size_t errlen)
{
    switch (f->kind) {
        case S_NAME:
            return s_check_str (op, f->name, value, true, 0, 0, err, errlen);
        case S_STR:
            return s_check_str (op, f->name, value, false, f->min, f->max, err,
                                errlen);
        case S_INT:
            if (!json_is_integer (value) || json_integer_value (value) < f->min
                || json_integer_value (value) > f->max) {
                if (f->max == INT64_MAX)
                    return shf_err_format (
                        SHF_EINVAL, err, errlen,
                        "%s: field \"%s\" must be an integer >= "
                        "%lld",
                        op, f->name, (long long) f->min);
                return shf_err_format (
                    SHF_EINVAL, err, errlen,
                    "%s: field \"%s\" must be an integer from "
                    "%lld to %lld",
                    op, f->name, (long long) f->min, (long long) f->max);
            }
            return SHF_OK;
        case S_BOOL:
            if (!json_is_boolean (value))
                return shf_err_format (SHF_EINVAL, err, errlen,
                                       "%s: field \"%s\" must be true or false",
                                       op, f->name);
            return SHF_OK;
        case S_PAYLOAD:
            return s_check_payload (op, f->name, value, err, errlen);
        case S_ANY:
            return SHF_OK;
        case S_STATUS:
            if (json_is_string (value))
                for (const char **s = s_statuses; *s; s++)
                    if (strcmp (*s, json_string_value (value)) == 0)
                        return SHF_OK;
            return shf_err_format (SHF_EINVAL, err, errlen,
                                   "%s: field \"%s\" must be one of running, "
                                   "completed, failed, canceled, terminated, "
                                   "timed_out",
                                   op, f->name);
        case S_ERROR:
            return s_check_error (op, f->name, value, "type", err, errlen);
        case S_RERROR:
            return s_check_error (op, f->name, value, "code", err, errlen);
        case S_ITEMS:
            return s_check_items (op, value, err, errlen);
    }
    return shf_err_format (SHF_EINTERNAL, err, errlen, "%s: bad field table",
                           op);
}

//  Everything after the msgpack: envelope, then the op's fields.
static shf_err_t
s_validate (const json_t *msg, shf_op_t *op_p, uint64_t *id_p, char *err,
            size_t errlen)
{
    if (!json_is_object (msg))
        return shf_err_format (SHF_EINVAL, err, errlen,
                               "a message must be a msgpack map");
    //  The id first, so that any later error can be answered to it.
    const json_t *id = json_object_get (msg, "id");
    bool has_id = id && !json_is_null (id);
    if (has_id) {
        if (!json_is_integer (id) || json_integer_value (id) < 0)
            return shf_err_format (SHF_EINVAL, err, errlen,
                                   "field \"id\" must be an unsigned integer");
        *id_p = (uint64_t) json_integer_value (id);
    }
    const json_t *v = json_object_get (msg, "v");
    if (!v)
        return shf_err_format (
            SHF_EINVAL, err, errlen,
            "missing field \"v\" (the protocol version; this "
            "node speaks %d)",
            SHF_MSG_VERSION);
    if (!json_is_integer (v) || json_integer_value (v) != SHF_MSG_VERSION) {
        if (json_is_integer (v))
            return shf_err_format (
                SHF_EINVAL, err, errlen,
                "unsupported protocol version %lld (this node "
                "speaks %d)",
                (long long) json_integer_value (v), SHF_MSG_VERSION);
        return shf_err_format (
            SHF_EINVAL, err, errlen,
            "unsupported protocol version (field \"v\" must be "
            "the integer %d)",
            SHF_MSG_VERSION);
    }
    const json_t *opv = json_object_get (msg, "op");
    if (!opv)
        return shf_err_format (SHF_EINVAL, err, errlen, "missing field \"op\"");
    if (!json_is_string (opv))
        return shf_err_format (SHF_EINVAL, err, errlen,
                               "field \"op\" must be a string");
    shf_op_t op =
        shf_msg_op_lookup (json_string_value (opv), json_string_length (opv));
    if (op == SHF_OP_INVALID)
        return shf_err_format (SHF_EINVAL, err, errlen, "unknown op \"%.64s\"",
                               json_string_value (opv));
    const char *name = s_ops [op].name;
    //  One pass over the members finds each field's value (a lookup per
    //  table field cost a hash each, ~10 per message); the checks then go
    //  in table order, so the first problem reported is as before.
    const s_field_t *fields = s_ops [op].fields;
    const json_t *values [S_MAX_FIELDS] = {NULL};
    for (void *it = json_object_iter ((json_t *) msg); it;
         it = json_object_iter_next ((json_t *) msg, it)) {
        const char *key = json_object_iter_key (it);
        for (size_t i = 0; fields [i].name; i++)
            if (fields [i].name [0] == key [0]
                && strcmp (fields [i].name, key) == 0) {
                values [i] = json_object_iter_value (it);
                break;
            }
    }
    for (const s_field_t *f = fields; f->name; f++) {
        const json_t *value = values [f - fields];
        if (value && json_is_null (value) && !f->required)
            value = NULL;  //  an optional nil is an absent field
        if (!value) {
            if (f->required)
                return shf_err_format (SHF_EINVAL, err, errlen,
                                       "%s: missing field \"%s\"", name,
                                       f->name);
            continue;
        }
        shf_err_t rc = s_check_field (name, f, value, err, errlen);
        if (rc)
            return rc;
    }
    if (op == SHF_OP_REPLY) {
        if (!has_id)
            return shf_err_format (SHF_EINVAL, err, errlen,
                                   "reply: missing field \"id\"");
        const json_t *error = json_object_get (msg, "error");
        if (!json_is_true (json_object_get (msg, "ok"))
            && (!error || json_is_null (error)))
            return shf_err_format (
                SHF_EINVAL, err, errlen,
                "reply: missing field \"error\" (ok is false)");
    }
    *op_p = op;
    return SHF_OK;
}

shf_err_t
shf_msg_decode (const void *data, size_t size, json_t **msg_p, shf_op_t *op_p,
                uint64_t *id_p, char *err, size_t errlen)
{
    assert (msg_p);
    assert (op_p);
    assert (id_p);
    *msg_p = NULL;
    *op_p = SHF_OP_INVALID;
    *id_p = 0;
    if (err && errlen > 0)
        err [0] = 0;
    if (size > SHF_MSG_MAX_FRAME)
        return shf_err_format (
            SHF_ETOOLARGE, err, errlen,
            "frame of %zu bytes is larger than the limit of %u "
            "bytes",
            size, (unsigned) SHF_MSG_MAX_FRAME);
    json_t *msg;
    char reason [200];
    if (shf_mpack_decode (data, size, &msg, reason, sizeof reason))
        return shf_err_format (SHF_EINVAL, err, errlen, "bad frame: %s",
                               reason);
    shf_err_t rc = s_validate (msg, op_p, id_p, err, errlen);
    if (rc) {
        *op_p = SHF_OP_INVALID;
        json_decref (msg);
        return rc;
    }
    *msg_p = msg;
    return SHF_OK;
}

shf_err_t
shf_msg_encode (const json_t *msg, char **data_p, size_t *size_p)
{
    assert (msg);
    assert (data_p);
    assert (size_p);
    *data_p = NULL;
    *size_p = 0;
    if (!json_is_object (msg))
        return SHF_EINVAL;
    char *data;
    size_t size;
    shf_err_t rc =
        shf_mpack_encode_tagged (msg, "v", SHF_MSG_VERSION, &data, &size);
    if (rc)
        return rc;
    if (size > SHF_MSG_MAX_FRAME) {
        free (data);
        return SHF_ETOOLARGE;
    }
    *data_p = data;
    *size_p = size;
    return SHF_OK;
}

//  Ends a message's map: SHF_ETOOLARGE (and nothing) over the frame limit.
static shf_err_t
s_finish_frame (shf_mpack_map_t **map_p, char **data_p, size_t *size_p)
{
    shf_err_t rc = shf_mpack_map_finish (map_p, data_p, size_p);
    if (rc == SHF_OK && *size_p > SHF_MSG_MAX_FRAME) {
        free (*data_p);
        *data_p = NULL;
        *size_p = 0;
        rc = SHF_ETOOLARGE;
    }
    return rc;
}

//  payloads: the two as msgpack bytes (raw), or NULL for the trees
static shf_err_t
s_encode_task (const shf_msg_task_t *task, const void *input, size_t input_size,
               const void *details, size_t details_size, bool raw,
               char **data_p, size_t *size_p)
{
    shf_mpack_map_t *map = shf_mpack_map_new (14);
    shf_mpack_map_int (map, "v", SHF_MSG_VERSION);
    shf_mpack_map_str (map, "op", "task");
    shf_mpack_map_str (map, "token", task->token);
    shf_mpack_map_str (map, "ns", task->ns);
    shf_mpack_map_str (map, "wf_id", task->wf_id);
    shf_mpack_map_str (map, "run_id", task->run_id);
    shf_mpack_map_str (map, "step", task->step);
    shf_mpack_map_str (map, "activity", task->activity);
    shf_mpack_map_str (map, "queue", task->queue);
    shf_mpack_map_int (map, "attempt", task->attempt);
    if (raw) {
        shf_mpack_map_raw (map, "input", input, input_size);
        shf_mpack_map_raw (map, "heartbeat_details", details, details_size);
    }
    else {
        shf_mpack_map_json (map, "input", task->input);
        shf_mpack_map_json (map, "heartbeat_details", task->heartbeat_details);
    }
    shf_mpack_map_int (map, "start_to_close_ms", task->start_to_close_ms);
    shf_mpack_map_int (map, "heartbeat_timeout_ms", task->heartbeat_timeout_ms);
    return s_finish_frame (&map, data_p, size_p);
}

shf_err_t
shf_msg_encode_task (const shf_msg_task_t *task, char **data_p, size_t *size_p)
{
    return s_encode_task (task, NULL, 0, NULL, 0, false, data_p, size_p);
}

shf_err_t
shf_msg_encode_task_packed (const shf_msg_task_t *task, const void *input,
                            size_t input_size, const void *details,
                            size_t details_size, char **data_p, size_t *size_p)
{
    assert (input_size > 0 && details_size > 0);
    return s_encode_task (task, input, input_size, details, details_size, true,
                          data_p, size_p);
}

void
shf_msg_default_ns (json_t *msg, shf_op_t op)
{
    if (op != SHF_OP_POLL && op != SHF_OP_COMPLETE && op != SHF_OP_FAIL
        && op != SHF_OP_HEARTBEAT && !json_object_get (msg, "ns"))
        json_object_set_new (msg, "ns", json_string (SHF_MSG_DEFAULT_NS));
}

//  Built field by field: every request is answered with one, and
//  json_pack's format parsing cost more than the object itself.
static json_t *
s_reply (uint64_t id, bool ok)
{
    json_t *reply = json_object ();
    assert (reply);
    json_object_set_new_nocheck (reply, "op", json_string_nocheck ("reply"));
    json_object_set_new_nocheck (reply, "id", json_integer ((json_int_t) id));
    json_object_set_new_nocheck (reply, "ok", json_boolean (ok));
    return reply;
}

shf_err_t
shf_msg_encode_reply_raw (uint64_t id, const void *body, size_t body_size,
                          char **data_p, size_t *size_p)
{
    //  s_reply's members, then body, then encode's "v"
    shf_mpack_map_t *map = shf_mpack_map_new (5);
    shf_mpack_map_str (map, "op", "reply");
    shf_mpack_map_int (map, "id", (int64_t) id);
    shf_mpack_map_raw (map, "ok", "\xc3", 1);  //  true
    shf_mpack_map_raw (map, "body", body, body_size);
    shf_mpack_map_int (map, "v", SHF_MSG_VERSION);
    return s_finish_frame (&map, data_p, size_p);
}

shf_err_t
shf_msg_encode_ack (uint64_t id, char **data_p, size_t *size_p)
{
    return shf_msg_encode_reply_raw (id, "\x80", 1, data_p, size_p);  //  {}
}

bool
shf_msg_ack_read (const void *data, size_t size, uint64_t *id_p)
{
    //  shf_msg_encode_ack's bytes around the id, which is written in the
    //  smallest of msgpack's unsigned forms
    static const uint8_t head [] = {0x85, 0xa2, 'o', 'p',  0xa5, 'r', 'e',
                                    'p',  'l',  'y', 0xa2, 'i',  'd'};
    static const uint8_t tail [] = {
        0xa2, 'o',  'k',  0xc3, 0xa4,           'b', 'o', 'd',
        'y',  0x80, 0xa1, 'v',  SHF_MSG_VERSION};
    const uint8_t *p = data;
    if (size < sizeof head + 1 + sizeof tail
        || memcmp (p, head, sizeof head) != 0)
        return false;
    p += sizeof head;
    size_t left = size - sizeof head;
    uint8_t type = *p++;
    left--;
    size_t n = type < 0x80    ? 0
               : type == 0xcc ? 1
               : type == 0xcd ? 2
               : type == 0xce ? 4
               : type == 0xcf ? 8
                              : 9;
    if (n > 8 || left != n + sizeof tail
        || memcmp (p + n, tail, sizeof tail) != 0)
        return false;
    uint64_t id = type < 0x80 ? type : 0;
    for (size_t i = 0; i < n; i++)
        id = id << 8 | p [i];
    //  the smallest form only, as the encoder writes it
    uint64_t least = n == 0   ? 0
                     : n == 1 ? 0x80
                     : n == 2 ? 0x100
                     : n == 4 ? 0x10000
                              : 0x100000000ull;
    if (id < least || id > INT64_MAX)
        return false;
    *id_p = id;
    return true;
}

json_t *
shf_msg_reply_ok (uint64_t id, json_t *body)
{
    json_t *reply = s_reply (id, true);
    json_object_set_new_nocheck (reply, "body", body ? body : json_null ());
    return reply;
}

json_t *
shf_msg_reply_error (uint64_t id, shf_err_t err, const char *message)
{
    json_t *reply = json_pack ("{s:s, s:I, s:b, s:{s:s, s:s}}", "op", "reply",
                               "id", (json_int_t) id, "ok", 0, "error", "code",
                               shf_err_code (err), "message",
                               message ? message : shf_strerror (err));
    if (!reply)  //  a message that is not UTF-8: send the code alone
        reply = json_pack ("{s:s, s:I, s:b, s:{s:s, s:s}}", "op", "reply", "id",
                           (json_int_t) id, "ok", 0, "error", "code",
                           shf_err_code (err), "message", shf_strerror (err));
    assert (reply);
    return reply;
}

const char *
shf_msg_str (const json_t *msg, const char *field)
{
    return json_string_value (json_object_get (msg, field));
}

int64_t
shf_msg_int (const json_t *msg, const char *field, int64_t dflt)
{
    const json_t *value = json_object_get (msg, field);
    return json_is_integer (value) ? json_integer_value (value) : dflt;
}

bool
shf_msg_bool (const json_t *msg, const char *field, bool dflt)
{
    const json_t *value = json_object_get (msg, field);
    return json_is_boolean (value) ? json_is_true (value) : dflt;
}


//  --------------------------------------------------------------------
//  Self-test

//  Encodes msg (stolen) and decodes it; returns the decode status.
static shf_err_t
s_try (json_t *msg, char *err, size_t errlen, uint64_t *id_p)
{
    char *data;
    size_t size;
    shf_err_t rc = shf_msg_encode (msg, &data, &size);
    assert (rc == SHF_OK);
    json_decref (msg);
    json_t *back = NULL;
    shf_op_t op;
    uint64_t id;
    rc = shf_msg_decode (data, size, &back, &op, &id, err, errlen);
    free (data);
    json_decref (back);
    if (id_p)
        *id_p = id;
    return rc;
}

static void
s_expect (json_t *msg, shf_err_t want, const char *needle, bool verbose)
{
    char err [512] = "";
    shf_err_t rc = s_try (msg, err, sizeof err, NULL);
    if (verbose)
        printf ("  %-14s %s\n", shf_err_code (rc), err);
    if (rc != want || (needle && !strstr (err, needle)))
        fprintf (stderr, "want %s '%s', got %s '%s'\n", shf_err_code (want),
                 needle ? needle : "", shf_err_code (rc), err);
    assert (rc == want);
    assert (!needle || strstr (err, needle));
}

//  A valid value for a field of the table.
static json_t *
s_sample (const s_field_t *f)
{
    switch (f->kind) {
        case S_NAME:
            return json_string ("x");
        case S_STR: {
            char buf [8] = "abcdefg";
            buf [f->min > 7 ? 7 : f->min < 1 ? 1 : f->min] = 0;
            return json_string (buf);
        }
        case S_INT:
            return json_integer (f->min);
        case S_BOOL:
            return json_true ();
        case S_PAYLOAD:
        case S_ANY:
            return json_pack ("{s:[i, s]}", "a", 1, "b");
        case S_STATUS:
            return json_string ("timed_out");
        case S_ERROR:
            return json_pack ("{s:s, s:s}", "type", "E", "message", "m");
        case S_RERROR:
            return json_pack ("{s:s, s:s}", "code", "not_found", "message", "");
        case S_ITEMS:
            return json_pack ("[{s:s, s:n}, {s:s}]", "token", "t", "details",
                              "token", "u");
    }
    return NULL;
}

//  A valid message of op with every field (or only the required ones).
static json_t *
s_valid (shf_op_t op, bool all)
{
    json_t *msg = json_pack ("{s:s, s:i}", "op", s_ops [op].name, "id", 7);
    for (const s_field_t *f = s_ops [op].fields; f->name; f++)
        if (f->required || all)
            json_object_set_new (msg, f->name, s_sample (f));
    return msg;
}

//  A decimal of len digits without a leading zero (but "0"), at most max.
static bool
s_decimal (const char *text, size_t len, uint64_t max, uint64_t *value_p)
{
    if (len == 0 || (len > 1 && text [0] == '0'))
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (text [i] < '0' || text [i] > '9' || v > (max - 9) / 10)
            return false;
        v = v * 10 + (uint64_t) (text [i] - '0');
    }
    *value_p = v;
    return true;
}

bool
shf_msg_page_token_parse (const char *token, char *run_id, size_t run_id_size,
                          int64_t *started_at_p, uint64_t *event_id_p)
{
    const char *dot = strrchr (token, '.');
    uint64_t event_id;
    if (!dot || dot == token
        || !s_decimal (dot + 1, strlen (dot + 1), UINT64_MAX, &event_id)
        || event_id == 0)
        return false;
    //  The start time, when the part before the last dot has one
    const char *end = dot;
    int64_t started_at = -1;
    const char *mid = dot - 1;
    while (mid > token && *mid != '.')
        mid--;
    uint64_t at;
    if (mid != token
        && s_decimal (mid + 1, (size_t) (dot - mid - 1), INT64_MAX, &at)) {
        started_at = (int64_t) at;
        end = mid;
    }
    if ((size_t) (end - token) >= run_id_size)
        return false;
    memcpy (run_id, token, (size_t) (end - token));
    run_id [end - token] = 0;
    if (!shf_msg_valid_name (run_id))
        return false;
    *started_at_p = started_at;
    *event_id_p = event_id;
    return true;
}

void
shf_msg_page_token_format (char *buf, size_t size, const char *run_id,
                           int64_t started_at, uint64_t event_id)
{
    snprintf (buf, size, "%s.%" PRId64 ".%" PRIu64, run_id, started_at,
              event_id);
}

void
shf_msg_test (bool verbose)
{
    printf (" * shf_msg: ");
    if (verbose)
        printf ("\n");
    char err [512];

    //  A task encoded from its fields is the message shf_msg_encode makes
    //  of the same fields, and decodes as a valid task.
    {
        json_t *input = json_pack ("{s:[i, s, {s:n}]}", "items", 1, "x", "y");
        shf_msg_task_t task = {.token = "tok",
                               .ns = "default",
                               .wf_id = "order-1",
                               .run_id = "r1",
                               .step = "charge",
                               .activity = "charge_card",
                               .queue = "payments",
                               .attempt = 3,
                               .input = input,
                               .start_to_close_ms = 60000};
        char *data;
        size_t size;
        assert (shf_msg_encode_task (&task, &data, &size) == SHF_OK);
        json_t *msg;
        shf_op_t op;
        uint64_t id;
        assert (shf_msg_decode (data, size, &msg, &op, &id, err, sizeof err)
                == SHF_OK);
        free (data);
        assert (op == SHF_OP_TASK);
        json_t *want = json_pack (
            "{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:O, s:n, s:i, "
            "s:i, s:i}",
            "op", "task", "token", "tok", "ns", "default", "wf_id", "order-1",
            "run_id", "r1", "step", "charge", "activity", "charge_card",
            "queue", "payments", "attempt", 3, "input", input,
            "heartbeat_details", "start_to_close_ms", 60000,
            "heartbeat_timeout_ms", 0, "v", SHF_MSG_VERSION);
        assert (json_equal (msg, want));
        json_decref (want);
        json_decref (msg);
        //  Payloads given packed: the same bytes as from the trees.
        {
            json_t *details = json_pack ("{s:i}", "done", 40);
            char *input_bytes, *details_bytes, *trees, *packed;
            size_t input_size, details_size, trees_size, packed_size;
            assert (shf_mpack_encode (input, &input_bytes, &input_size)
                    == SHF_OK);
            assert (shf_mpack_encode (details, &details_bytes, &details_size)
                    == SHF_OK);
            task.heartbeat_details = details;
            assert (shf_msg_encode_task (&task, &trees, &trees_size) == SHF_OK);
            assert (shf_msg_encode_task_packed (&task, input_bytes, input_size,
                                                details_bytes, details_size,
                                                &packed, &packed_size)
                    == SHF_OK);
            assert (packed_size == trees_size
                    && memcmp (packed, trees, trees_size) == 0);
            free (packed);
            free (trees);
            //  nil payloads, as a record holds them
            task.heartbeat_details = NULL;
            task.input = NULL;
            assert (shf_msg_encode_task (&task, &trees, &trees_size) == SHF_OK);
            assert (shf_msg_encode_task_packed (&task, "\xc0", 1, "\xc0", 1,
                                                &packed, &packed_size)
                    == SHF_OK);
            assert (packed_size == trees_size
                    && memcmp (packed, trees, trees_size) == 0);
            task.input = input;
            free (packed);
            free (trees);
            free (input_bytes);
            free (details_bytes);
            json_decref (details);
        }
        task.token = "tok";
        //  A reply around a body given encoded: what the tree gives.
        {
            json_t *body = json_pack ("{s:s, s:O}", "status", "completed",
                                      "output", input);
            char *packed, *raw, *tree;
            size_t packed_size, raw_size, tree_size;
            assert (shf_mpack_encode (body, &packed, &packed_size) == SHF_OK);
            assert (shf_msg_encode_reply_raw (7, packed, packed_size, &raw,
                                              &raw_size)
                    == SHF_OK);
            json_t *reply = shf_msg_reply_ok (7, body);
            assert (shf_msg_encode (reply, &tree, &tree_size) == SHF_OK);
            assert (raw_size == tree_size && memcmp (raw, tree, raw_size) == 0);
            json_decref (reply);
            free (packed);
            free (raw);
            free (tree);
        }
        //  A payload nested past the codec's limit is refused.
        json_t *deep = json_array ();
        for (int i = 0; i < SHF_MPACK_MAX_DEPTH; i++) {
            json_t *outer = json_array ();
            json_array_append_new (outer, deep);
            deep = outer;
        }
        task.input = deep;
        assert (shf_msg_encode_task (&task, &data, &size) == SHF_EINVAL);
        json_decref (deep);
        json_decref (input);
    }

    //  Every op: a full and a minimal message round-trip; each required
    //  field missing, and each field of the wrong type, is refused.
    for (int o = SHF_OP_INVALID + 1; o < SHF_OP_COUNT; o++) {
        shf_op_t op = (shf_op_t) o;
        assert (shf_msg_op_name (op));
        const char *op_name = shf_msg_op_name (op);
        assert (shf_msg_op_lookup (op_name, strlen (op_name)) == op);
        for (int all = 0; all < 2; all++) {
            json_t *msg = s_valid (op, all);
            json_object_set_new (msg, "future_field", json_string ("ignored"));
            char *data;
            size_t size;
            assert (shf_msg_encode (msg, &data, &size) == SHF_OK);
            json_t *back;
            shf_op_t got;
            uint64_t id;
            shf_err_t rc =
                shf_msg_decode (data, size, &back, &got, &id, err, sizeof err);
            if (rc)
                fprintf (stderr, "%s: %s\n", s_ops [op].name, err);
            assert (rc == SHF_OK);
            assert (got == op);
            assert (id == 7);
            assert (json_integer_value (json_object_get (back, "v")) == 1);
            json_object_del (back, "v");
            assert (json_equal (back, msg));
            json_decref (back);
            json_decref (msg);
            free (data);
        }
        for (const s_field_t *f = s_ops [op].fields; f->name; f++) {
            char want [128];
            if (f->required) {
                json_t *msg = s_valid (op, true);
                json_object_del (msg, f->name);
                snprintf (want, sizeof want, "%s: missing field \"%s\"",
                          s_ops [op].name, f->name);
                s_expect (msg, SHF_EINVAL, want, verbose);
                //  nil is not a value for a required field
                msg = s_valid (op, true);
                json_object_set_new (msg, f->name, json_null ());
                s_expect (msg, SHF_EINVAL, f->name, verbose);
            }
            else {
                json_t *msg = s_valid (op, false);
                json_object_set_new (msg, f->name, json_null ());
                s_expect (msg, SHF_OK, NULL, false);
            }
            if (f->kind == S_PAYLOAD || f->kind == S_ANY)
                continue;
            json_t *msg = s_valid (op, true);
            json_object_set_new (msg, f->name,
                                 f->kind == S_ITEMS ? json_string ("x")
                                                    : json_array ());
            snprintf (want, sizeof want, "%s: field \"%s\" must be",
                      s_ops [op].name, f->name);
            s_expect (msg, SHF_EINVAL, want, verbose);
        }
    }

    //  The envelope
    json_t *msg = s_valid (SHF_OP_WF_START, false);
    json_object_set_new (msg, "ns", json_integer (3));
    s_expect (msg, SHF_EINVAL, "wf_start: field \"ns\" must be a string",
              verbose);
    msg = json_pack ("{s:s, s:s, s:i}", "op", "wf_describe", "ns", "default",
                     "id", 9);
    uint64_t id = 0;
    assert (s_try (msg, err, sizeof err, &id) == SHF_EINVAL);
    assert (strstr (err, "missing field \"wf_id\""));
    assert (id == 9);  //  the error reply can still name its request
    msg = json_pack ("{s:s, s:i}", "op", "frobnicate", "id", 4);
    assert (s_try (msg, err, sizeof err, &id) == SHF_EINVAL);
    assert (strstr (err, "unknown op \"frobnicate\""));
    assert (id == 4);
    msg = json_pack ("{s:i}", "op", 3);
    s_expect (msg, SHF_EINVAL, "field \"op\" must be a string", verbose);
    //  An op is its whole string: "poll" and a NUL are no op.
    msg = json_pack ("{s:s%, s:s, s:i}", "op", "poll\0x", (size_t) 6, "queue",
                     "q", "credit", 1);
    s_expect (msg, SHF_EINVAL, "unknown op \"poll\"", verbose);
    msg = json_pack ("{s:i}", "id", -1);
    s_expect (msg, SHF_EINVAL, "\"id\" must be an unsigned integer", verbose);
    msg = json_pack ("{s:s}", "id", "x");
    s_expect (msg, SHF_EINVAL, "\"id\" must be an unsigned integer", verbose);

    //  Versions: v is added by encode, so hand-pack the bad ones.
    const uint8_t v2 [] = {0x82, 0xa1, 'v', 0x02, 0xa2, 'o', 'p', 0xa8,
                           'd',  'e',  'f', '_',  'l',  'i', 's', 't'};
    json_t *back = NULL;
    shf_op_t op;
    assert (shf_msg_decode (v2, sizeof v2, &back, &op, &id, err, sizeof err)
            == SHF_EINVAL);
    assert (strstr (err, "unsupported protocol version 2"));
    assert (!back && op == SHF_OP_INVALID);
    const uint8_t vstr [] = {0x81, 0xa1, 'v', 0xa1, '1'};
    assert (shf_msg_decode (vstr, sizeof vstr, &back, &op, &id, err, sizeof err)
            == SHF_EINVAL);
    assert (strstr (err, "unsupported protocol version"));
    const uint8_t nov [] = {0x81, 0xa2, 'o', 'p', 0xa4, 'p', 'o', 'l', 'l'};
    assert (shf_msg_decode (nov, sizeof nov, &back, &op, &id, err, sizeof err)
            == SHF_EINVAL);
    assert (strstr (err, "missing field \"v\""));
    const uint8_t notmap [] = {0x91, 0x01};
    assert (
        shf_msg_decode (notmap, sizeof notmap, &back, &op, &id, err, sizeof err)
        == SHF_EINVAL);
    assert (strstr (err, "must be a msgpack map"));
    const uint8_t lie [] = {0xdd, 0xff, 0xff, 0xff, 0xff};
    assert (shf_msg_decode (lie, sizeof lie, &back, &op, &id, err, sizeof err)
            == SHF_EINVAL);
    assert (strstr (err, "bad frame"));
    if (verbose)
        printf ("  dd ff ff ff ff: %s\n", err);
    assert (shf_msg_decode ("", 0, &back, &op, &id, err, sizeof err)
            == SHF_EINVAL);

    //  Frames: a 3 MiB frame is refused before decoding, a 100k-deep
    //  one is refused by the decoder.
    size_t big_size = 3 * 1024 * 1024;
    uint8_t *big = calloc (1, big_size);
    assert (big);
    assert (shf_msg_decode (big, big_size, &back, &op, &id, err, sizeof err)
            == SHF_ETOOLARGE);
    if (verbose)
        printf ("  3 MiB: %s\n", err);
    memset (big, 0x91, 100000);
    big [100000] = 0xc0;
    assert (shf_msg_decode (big, 100001, &back, &op, &id, err, sizeof err)
            == SHF_EINVAL);
    assert (strstr (err, "deeper"));
    free (big);

    //  Payloads: 2 MiB encoded is the limit, whatever the frame.
    size_t len = SHF_MSG_MAX_PAYLOAD - 5;  //  str32 header: 5 bytes
    char *text = malloc (len + 1);
    assert (text);
    memset (text, 'a', len + 1);
    msg = s_valid (SHF_OP_WF_START, false);
    json_object_set_new (msg, "input", json_stringn (text, len));
    s_expect (msg, SHF_OK, NULL, false);
    msg = s_valid (SHF_OP_WF_START, false);
    json_object_set_new (msg, "input", json_stringn (text, len + 1));
    s_expect (msg, SHF_ETOOLARGE,
              "wf_start: field \"input\" is larger than 2 MiB", verbose);
    msg = json_pack ("{s:s, s:[{s:s, s:s%}]}", "op", "heartbeat", "items",
                     "token", "t", "details", text, len + 1);
    s_expect (msg, SHF_ETOOLARGE, "\"items[0].details\" is larger", verbose);
    msg = s_valid (SHF_OP_COMPLETE, false);
    json_object_set_new (msg, "output", json_stringn (text, len + 1));
    s_expect (msg, SHF_ETOOLARGE, "field \"output\"", verbose);
    //  An encoding over the frame limit is refused by encode.
    msg = json_pack ("{s:s, s:[s%, s%]}", "op", "complete", "x", text, len,
                     text, len);
    char *data;
    size_t size;
    assert (shf_msg_encode (msg, &data, &size) == SHF_ETOOLARGE);
    json_decref (msg);
    free (text);
    json_t *arr = json_array ();
    assert (shf_msg_encode (arr, &data, &size) == SHF_EINVAL);
    json_decref (arr);

    //  Names and bounded strings
    assert (shf_msg_valid_name ("order-42"));
    assert (shf_msg_valid_name ("\xc3\xa9t\xc3\xa9"));
    assert (!shf_msg_valid_name (""));
    assert (!shf_msg_valid_name (NULL));
    assert (!shf_msg_valid_name ("a\tb"));
    assert (!shf_msg_valid_name ("a\x7f"));
    assert (!shf_msg_valid_name ("\xc3("));
    char name [300];
    memset (name, 'n', sizeof name);
    name [255] = 0;
    assert (shf_msg_valid_name (name));
    name [255] = 'n';
    name [256] = 0;
    assert (!shf_msg_valid_name (name));
    msg = s_valid (SHF_OP_WF_DESCRIBE, false);
    json_object_set_new (msg, "wf_id", json_string (name));
    s_expect (msg, SHF_EINVAL, "\"wf_id\" must be a name", verbose);
    msg = s_valid (SHF_OP_WF_DESCRIBE, false);
    json_object_set_new (msg, "wf_id", json_stringn ("a\0b", 3));
    s_expect (msg, SHF_EINVAL, "\"wf_id\" must be a name", verbose);
    msg = s_valid (SHF_OP_WF_START, false);
    json_object_set_new (msg, "request_id", json_string (""));
    s_expect (msg, SHF_EINVAL, "\"request_id\" must be a string of 1 to 255",
              verbose);
    msg = s_valid (SHF_OP_WF_START, false);
    json_object_set_new (msg, "version", json_integer (0));
    s_expect (msg, SHF_EINVAL, "\"version\" must be an integer >= 1", verbose);
    char *reason = calloc (1, S_MAX_DOC + 2);
    assert (reason);
    memset (reason, 'r', S_MAX_REASON + 1);
    msg = s_valid (SHF_OP_WF_CANCEL, false);
    json_object_set_new (msg, "reason", json_string (reason));
    s_expect (msg, SHF_EINVAL, "\"reason\" must be a string of at most 4096",
              verbose);
    reason [S_MAX_REASON] = 0;
    msg = s_valid (SHF_OP_WF_CANCEL, false);
    json_object_set_new (msg, "reason", json_string (reason));
    s_expect (msg, SHF_OK, NULL, false);
    memset (reason, 'd', S_MAX_DOC + 1);
    msg = s_valid (SHF_OP_DEF_REGISTER, false);
    json_object_set_new (msg, "doc", json_string (reason));
    s_expect (msg, SHF_EINVAL, "\"doc\" must be a string of 1 to 1048576",
              verbose);
    free (reason);
    msg = s_valid (SHF_OP_WF_CANCEL, false);
    json_object_set_new (msg, "reason", json_stringn ("a\0b", 3));
    s_expect (msg, SHF_EINVAL, "must not contain NUL", verbose);

    //  Ranges and shapes
    //  Payload depth: 20 levels pass, 21 are refused; tasks are exempt.
    json_t *deep = json_integer (1);
    for (int level = 0; level < SHF_MSG_MAX_PAYLOAD_DEPTH; level++)
        deep = json_pack ("[o]", deep);
    msg = s_valid (SHF_OP_WF_SIGNAL, false);
    json_object_set (msg, "input", deep);
    s_expect (msg, SHF_OK, NULL, false);
    deep = json_pack ("[o]", deep);
    msg = s_valid (SHF_OP_WF_SIGNAL, false);
    json_object_set (msg, "input", deep);
    s_expect (msg, SHF_EINVAL, "nested deeper than 20 levels", verbose);
    msg = s_valid (SHF_OP_TASK, false);
    json_object_set (msg, "input", deep);
    s_expect (msg, SHF_OK, NULL, false);
    json_decref (deep);
    msg = s_valid (SHF_OP_POLL, false);
    json_object_set_new (msg, "credit", json_integer (-1));
    s_expect (msg, SHF_EINVAL, "\"credit\" must be an integer from 0 to 100000",
              verbose);
    msg = s_valid (SHF_OP_POLL, false);
    json_object_set_new (msg, "credit", json_integer (100001));
    s_expect (msg, SHF_EINVAL, "credit", verbose);
    msg = s_valid (SHF_OP_POLL, false);
    json_object_set_new (msg, "credit", json_real (1.0));
    s_expect (msg, SHF_EINVAL, "credit", verbose);
    msg = s_valid (SHF_OP_WF_LIST, false);
    json_object_set_new (msg, "limit", json_integer (10001));
    s_expect (msg, SHF_EINVAL, "\"limit\" must be an integer from 1 to 10000",
              verbose);
    msg = s_valid (SHF_OP_WF_LIST, false);
    json_object_set_new (msg, "status", json_string ("sleeping"));
    s_expect (msg, SHF_EINVAL, "\"status\" must be one of", verbose);
    msg = s_valid (SHF_OP_FAIL, false);
    json_object_set_new (msg, "error", json_pack ("{s:s}", "message", "m"));
    s_expect (msg, SHF_EINVAL, "missing field \"error.type\"", verbose);
    msg = s_valid (SHF_OP_FAIL, false);
    json_object_set_new (msg, "error",
                         json_pack ("{s:s, s:i}", "type", "E", "message", 1));
    s_expect (msg, SHF_EINVAL, "\"error.message\" must be a string", verbose);
    msg = s_valid (SHF_OP_HEARTBEAT, false);
    json_object_set_new (msg, "items",
                         json_pack ("[{s:s}, i]", "token", "t", 3));
    s_expect (msg, SHF_EINVAL, "\"items[1]\" must be a map", verbose);
    msg = s_valid (SHF_OP_HEARTBEAT, false);
    json_object_set_new (msg, "items", json_pack ("[{s:n}]", "details"));
    s_expect (msg, SHF_EINVAL, "missing field \"items[0].token\"", verbose);
    json_t *items = json_array ();
    for (int i = 0; i <= S_MAX_ITEMS; i++)
        json_array_append_new (items, json_pack ("{s:s}", "token", "t"));
    msg = s_valid (SHF_OP_HEARTBEAT, false);
    json_object_set (msg, "items", items);
    s_expect (msg, SHF_EINVAL, "at most 10000 entries", verbose);
    json_array_remove (items, 0);
    msg = s_valid (SHF_OP_HEARTBEAT, false);
    json_object_set_new (msg, "items", items);
    s_expect (msg, SHF_OK, NULL, false);

    //  Replies
    json_t *reply = shf_msg_reply_ok (12, json_pack ("{s:i}", "shard", 3));
    assert (s_try (reply, err, sizeof err, &id) == SHF_OK);
    assert (id == 12);
    reply = shf_msg_reply_ok (13, NULL);
    assert (json_is_null (json_object_get (reply, "body")));
    assert (s_try (reply, err, sizeof err, &id) == SHF_OK);
    reply = shf_msg_reply_error (14, SHF_ENOTFOUND, "no workflow \"w\"");
    assert (strcmp (json_string_value (json_object_get (
                        json_object_get (reply, "error"), "code")),
                    "not_found")
            == 0);
    assert (!shf_msg_bool (reply, "ok", true));
    char *wire;
    size_t wire_size;
    assert (shf_msg_encode (reply, &wire, &wire_size) == SHF_OK);
    json_decref (reply);
    assert (shf_msg_decode (wire, wire_size, &back, &op, &id, err, sizeof err)
            == SHF_OK);
    assert (op == SHF_OP_REPLY && id == 14);
    free (wire);
    json_decref (back);
    reply = shf_msg_reply_error (15, SHF_EINVAL, NULL);
    assert (strcmp (json_string_value (json_object_get (
                        json_object_get (reply, "error"), "message")),
                    shf_strerror (SHF_EINVAL))
            == 0);
    json_decref (reply);
    reply = shf_msg_reply_error (16, SHF_EINVAL, "\xff not UTF-8");
    assert (reply);
    json_decref (reply);
    msg = json_pack ("{s:s, s:i, s:b}", "op", "reply", "id", 1, "ok", 0);
    s_expect (msg, SHF_EINVAL, "reply: missing field \"error\"", verbose);
    msg = json_pack ("{s:s, s:b}", "op", "reply", "ok", 1);
    s_expect (msg, SHF_EINVAL, "reply: missing field \"id\"", verbose);

    //  Readers
    msg = json_pack ("{s:s, s:i, s:b, s:n}", "s", "x", "i", 5, "b", 1, "n");
    assert (strcmp (shf_msg_str (msg, "s"), "x") == 0);
    assert (shf_msg_str (msg, "i") == NULL);
    assert (shf_msg_str (msg, "none") == NULL);
    assert (shf_msg_int (msg, "i", 0) == 5);
    assert (shf_msg_int (msg, "s", -1) == -1);
    assert (shf_msg_bool (msg, "b", false));
    assert (shf_msg_bool (msg, "n", false) == false);
    json_decref (msg);
    assert (shf_msg_op_name (SHF_OP_INVALID) == NULL);
    assert (shf_msg_op_name (SHF_OP_COUNT) == NULL);

    //  page tokens: "RUN_ID.STARTED_AT.EVENT_ID" with an id from 1, and
    //  "RUN_ID.EVENT_ID" as given before
    char run [64];
    uint64_t first;
    int64_t at;
    assert (shf_msg_page_token_parse ("r1.7", run, sizeof run, &at, &first));
    assert (strcmp (run, "r1") == 0 && first == 7 && at == -1);
    assert (shf_msg_page_token_parse ("r1.1700000000000.7", run, sizeof run,
                                      &at, &first));
    assert (strcmp (run, "r1") == 0 && first == 7 && at == 1700000000000);
    assert (shf_msg_page_token_parse ("r1.0.7", run, sizeof run, &at, &first));
    assert (strcmp (run, "r1") == 0 && first == 7 && at == 0);
    //  not a start time: the run ID has the dot
    assert (shf_msg_page_token_parse ("r1.05.7", run, sizeof run, &at, &first));
    assert (strcmp (run, "r1.05") == 0 && first == 7 && at == -1);
    const char *bad [] = {
        "r1",    "r1.",   ".7",    "r1.0", "r1.07",
        "r1.7x", "r1.-7", "r1. 7", "",     "r1.99999999999999999999",
        "r1.5.0"};
    for (size_t b = 0; b < sizeof bad / sizeof bad [0]; b++)
        assert (
            !shf_msg_page_token_parse (bad [b], run, sizeof run, &at, &first));

    char formatted [SHF_MSG_PAGE_TOKEN_MAX];
    shf_msg_page_token_format (formatted, sizeof formatted, "r1", 1700000000000,
                               7);
    assert (strcmp (formatted, "r1.1700000000000.7") == 0);
    //  An id in a wider form than needed is no ack (the encoder never
    //  writes it), nor is a reply with another body.
    {
        const uint8_t wide [] = {0x85, 0xa2, 'o', 'p',  0xa5, 'r',  'e',
                                 'p',  'l',  'y', 0xa2, 'i',  'd',  0xcc,
                                 0x05, 0xa2, 'o', 'k',  0xc3, 0xa4, 'b',
                                 'o',  'd',  'y', 0x80, 0xa1, 'v',  0x01};
        uint64_t got;
        assert (!shf_msg_ack_read (wide, sizeof wide, &got));
        json_t *other = shf_msg_reply_ok (5, json_pack ("{s:i}", "x", 1));
        char *bytes;
        size_t bytes_size;
        assert (shf_msg_encode (other, &bytes, &bytes_size) == SHF_OK);
        assert (!shf_msg_ack_read (bytes, bytes_size, &got));
        free (bytes);
        json_decref (other);
    }
    //  A plain acknowledgement: the bytes of the reply it stands for.
    {
        const uint64_t ids [] = {0, 1, 127, 128, 65536, 1ull << 40};
        for (size_t i = 0; i < sizeof ids / sizeof ids [0]; i++) {
            char *ack, *ref;
            size_t ack_size, ref_size;
            assert (shf_msg_encode_ack (ids [i], &ack, &ack_size) == SHF_OK);
            json_t *plain = shf_msg_reply_ok (ids [i], json_object ());
            assert (shf_msg_encode (plain, &ref, &ref_size) == SHF_OK);
            assert (ack_size == ref_size && memcmp (ack, ref, ack_size) == 0);
            uint64_t read_id = 0;
            assert (shf_msg_ack_read (ack, ack_size, &read_id)
                    && read_id == ids [i]);
            //  not an ack: cut short, one byte changed, a longer id form
            assert (!shf_msg_ack_read (ack, ack_size - 1, &read_id));
            for (size_t b = 0; b < ack_size; b++) {
                ack [b] ^= 0x01;
                uint64_t other;
                assert (!shf_msg_ack_read (ack, ack_size, &other)
                        || other != ids [i]);
                ack [b] ^= 0x01;
            }
            json_decref (plain);
            free (ack);
            free (ref);
        }
    }

    printf ("OK\n");
}
