/*  shf_hbman.c - the heartbeat manager of a worker (shf_hbman.h).

    Each task has at most two sets of details: pending (recorded, not yet
    handed out in a batch) and in flight (in the batch that waits for its
    reply). A batch moves pending to in flight; its reply clears in
    flight; losing it (a failed send, no reply within an interval) moves
    in flight back to pending unless newer details were recorded since,
    so a retry never sends older details than the task last wrote.

    The schedule has one state at a time: a batch being handed out
    (between shf_hbman_batch and _sent/_failed), one in flight, a retry
    due, a cut batch's rest due, or the next regular slot (the last
    regular batch + the interval). Retries and rests do not move the slot:
    the node still sees at most one regular batch per interval.
*/
#include "shf_hbman.h"
#include "shf_msg.h"
#include "shf_token.h"
#include <assert.h>
#include <czmq.h>
#include <stdlib.h>
#include <string.h>

//  Shortest interval when a heartbeat timeout is very short and the node
//  sets no minimum.
#define S_FLOOR_MS 20
//  A node-given minimum above this is taken as this.
#define S_MAX_MIN_MS (10 * 60 * 1000)
//  Items in one batch (the node accepts 10000).
#define S_MAX_ITEMS 10000
//  Encoded bytes of one item besides its details.
#define S_ITEM_OVERHEAD 64

typedef struct {
    char *token;
    int64_t heartbeat_timeout;  //  0: none
    json_t *pending;            //  newest unsent details, NULL if none
    size_t pending_size;
    json_t *in_flight;  //  details in the batch in flight, NULL if none
    size_t in_flight_size;
    bool canceled;  //  a reply listed the token
} s_task_t;

struct shf_hbman {
    zhashx_t *tasks;        //  token -> s_task_t
    size_t n_pending;       //  tasks with pending details
    int64_t interval;       //  cached, see s_interval
    bool interval_dirty;    //  a heartbeat timeout came or went
    int64_t server_min;     //  min_interval_ms of the last reply
    int64_t slot_start;     //  when the last regular batch went
    bool building;          //  items handed out, not yet sent or failed
    bool in_flight;         //  a batch waits for its reply
    uint64_t flight_id;     //  its request id
    int64_t flight_expiry;  //  when it counts as lost
    int64_t retry_at;       //  a retry is due at this time (0: none)
    bool more;              //  the last batch was cut: its rest is due
};

static void
s_task_free (void **item)
{
    s_task_t *task = *item;
    if (!task)
        return;
    json_decref (task->pending);
    json_decref (task->in_flight);
    free (task->token);
    free (task);
    *item = NULL;
}

shf_hbman_t *
shf_hbman_new (void)
{
    shf_hbman_t *self = calloc (1, sizeof *self);
    assert (self);
    self->tasks = zhashx_new ();
    assert (self->tasks);
    //  Keyed by token: hashing the whole text cost ~1,000 instructions a
    //  lookup, three lookups per task.
    zhashx_set_key_hasher (self->tasks, shf_token_hash);
    zhashx_set_destructor (self->tasks, s_task_free);
    self->interval = SHF_HBMAN_INTERVAL_MS;
    //  Far enough back that the first batch is due at once.
    self->slot_start = INT64_MIN / 4;
    return self;
}

void
shf_hbman_destroy (shf_hbman_t **self_p)
{
    assert (self_p);
    shf_hbman_t *self = *self_p;
    if (!self)
        return;
    zhashx_destroy (&self->tasks);
    free (self);
    *self_p = NULL;
}

static s_task_t *
s_task (shf_hbman_t *self, const char *token)
{
    s_task_t *task = zhashx_lookup (self->tasks, token);
    if (!task) {
        task = calloc (1, sizeof *task);
        assert (task);
        task->token = strdup (token);
        assert (task->token);
        zhashx_insert (self->tasks, token, task);
    }
    return task;
}

int64_t
shf_hbman_interval (shf_hbman_t *self)
{
    assert (self);
    if (self->interval_dirty) {
        //  Half the shortest heartbeat timeout leaves room for a lost
        //  batch to be retried before the timeout fires.
        int64_t interval = SHF_HBMAN_INTERVAL_MS;
        for (s_task_t *task = zhashx_first (self->tasks); task;
             task = zhashx_next (self->tasks))
            if (task->heartbeat_timeout > 0
                && task->heartbeat_timeout / 2 < interval)
                interval = task->heartbeat_timeout / 2;
        self->interval = interval < S_FLOOR_MS ? S_FLOOR_MS : interval;
        self->interval_dirty = false;
    }
    return self->interval > self->server_min ? self->interval
                                             : self->server_min;
}

static int64_t
s_retry_delay (shf_hbman_t *self)
{
    int64_t half = shf_hbman_interval (self) / 2;
    return half < SHF_HBMAN_RETRY_MS ? half : SHF_HBMAN_RETRY_MS;
}

void
shf_hbman_track (shf_hbman_t *self, const char *token,
                 int64_t heartbeat_timeout_ms)
{
    assert (self);
    assert (token);
    s_task_t *task = s_task (self, token);
    task->heartbeat_timeout =
        heartbeat_timeout_ms > 0 ? heartbeat_timeout_ms : 0;
    if (task->heartbeat_timeout)
        self->interval_dirty = true;
}

void
shf_hbman_forget (shf_hbman_t *self, const char *token)
{
    assert (self);
    assert (token);
    s_task_t *task = zhashx_lookup (self->tasks, token);
    if (!task)
        return;
    if (task->pending)
        self->n_pending--;
    if (task->heartbeat_timeout)
        self->interval_dirty = true;
    zhashx_delete (self->tasks, token);
}

void
shf_hbman_record (shf_hbman_t *self, const char *token, json_t **details_p,
                  size_t size, int64_t now)
{
    assert (self);
    assert (token);
    assert (details_p);
    (void) now;
    s_task_t *task = s_task (self, token);
    if (task->pending)
        json_decref (task->pending);
    else
        self->n_pending++;
    task->pending = *details_p ? *details_p : json_null ();
    task->pending_size = size;
    *details_p = NULL;
}

json_t *
shf_hbman_take (shf_hbman_t *self, const char *token)
{
    assert (self);
    assert (token);
    s_task_t *task = zhashx_lookup (self->tasks, token);
    if (!task)
        return NULL;
    if (task->pending) {
        json_t *details = task->pending;
        task->pending = NULL;
        self->n_pending--;
        return details;
    }
    return task->in_flight ? json_incref (task->in_flight) : NULL;
}

//  The batch in flight is lost: its details become pending again where
//  nothing newer was recorded.
static void
s_requeue (shf_hbman_t *self)
{
    for (s_task_t *task = zhashx_first (self->tasks); task;
         task = zhashx_next (self->tasks)) {
        if (!task->in_flight)
            continue;
        if (task->pending)
            json_decref (task->in_flight);
        else {
            task->pending = task->in_flight;
            task->pending_size = task->in_flight_size;
            self->n_pending++;
        }
        task->in_flight = NULL;
    }
}

//  The batch in flight is done (answered or dropped).
static void
s_clear_flight (shf_hbman_t *self)
{
    for (s_task_t *task = zhashx_first (self->tasks); task;
         task = zhashx_next (self->tasks)) {
        json_decref (task->in_flight);
        task->in_flight = NULL;
    }
}

int64_t
shf_hbman_next_due (shf_hbman_t *self)
{
    assert (self);
    if (self->building)
        return INT64_MAX;
    if (self->in_flight)
        return self->flight_expiry;
    if (self->n_pending == 0)
        return INT64_MAX;
    if (self->retry_at)
        return self->retry_at;
    if (self->more)
        return INT64_MIN / 4;
    return self->slot_start + shf_hbman_interval (self);
}

json_t *
shf_hbman_batch (shf_hbman_t *self, int64_t now)
{
    assert (self);
    assert (!self->building);
    if (self->in_flight && now >= self->flight_expiry) {
        //  No reply within the interval: retry at once.
        s_requeue (self);
        self->in_flight = false;
        self->retry_at = now;
    }
    if (self->in_flight)
        return NULL;
    if (self->n_pending == 0) {
        self->retry_at = 0;
        self->more = false;
        return NULL;
    }
    bool regular = !self->retry_at && !self->more;
    int64_t due = self->retry_at ? self->retry_at
                  : self->more   ? now
                                 : self->slot_start + shf_hbman_interval (self);
    if (now < due)
        return NULL;
    if (regular)
        self->slot_start = now;
    self->retry_at = 0;
    self->more = false;

    json_t *items = json_array ();
    assert (items);
    size_t bytes = 0;
    for (s_task_t *task = zhashx_first (self->tasks); task;
         task = zhashx_next (self->tasks)) {
        if (!task->pending)
            continue;
        size_t size = task->pending_size + S_ITEM_OVERHEAD;
        if (json_array_size (items) >= S_MAX_ITEMS
            || (json_array_size (items) > 0
                && bytes + size > SHF_MSG_MAX_PAYLOAD)) {
            self->more = true;
            continue;
        }
        bytes += size;
        json_t *item = json_pack ("{s:s, s:O}", "token", task->token, "details",
                                  task->pending);
        assert (item);
        json_array_append_new (items, item);
        json_decref (task->in_flight);
        task->in_flight = task->pending;
        task->in_flight_size = task->pending_size;
        task->pending = NULL;
        self->n_pending--;
    }
    self->building = true;
    return items;
}

void
shf_hbman_sent (shf_hbman_t *self, uint64_t id, int64_t now)
{
    assert (self);
    assert (self->building);
    self->building = false;
    self->in_flight = true;
    self->flight_id = id;
    self->flight_expiry = now + shf_hbman_interval (self);
}

void
shf_hbman_failed (shf_hbman_t *self, bool retry, int64_t now)
{
    assert (self);
    assert (self->building);
    self->building = false;
    if (retry) {
        s_requeue (self);
        self->retry_at = now + s_retry_delay (self);
        if (self->retry_at == 0)
            self->retry_at = 1;
    }
    else
        s_clear_flight (self);
}

json_t *
shf_hbman_reply (shf_hbman_t *self, uint64_t id, const json_t *body,
                 int64_t now)
{
    assert (self);
    (void) now;
    json_t *canceled = json_array ();
    assert (canceled);
    if (body) {
        size_t i;
        json_t *item;
        json_array_foreach (json_object_get (body, "canceled"), i, item)
        {
            const char *token = json_string_value (item);
            s_task_t *task = token ? zhashx_lookup (self->tasks, token) : NULL;
            if (task && !task->canceled) {
                task->canceled = true;
                json_array_append_new (canceled, json_string (token));
            }
        }
        json_t *min = json_object_get (body, "min_interval_ms");
        if (json_is_integer (min)) {
            json_int_t value = json_integer_value (min);
            self->server_min = value < 0              ? 0
                               : value > S_MAX_MIN_MS ? S_MAX_MIN_MS
                                                      : (int64_t) value;
        }
    }
    if (self->in_flight && id == self->flight_id) {
        self->in_flight = false;
        s_clear_flight (self);
    }
    return canceled;
}

bool
shf_hbman_canceled (shf_hbman_t *self, const char *token)
{
    assert (self);
    s_task_t *task = zhashx_lookup (self->tasks, token);
    return task && task->canceled;
}

bool
shf_hbman_in_flight (shf_hbman_t *self)
{
    assert (self);
    return self->in_flight || self->building;
}

//  ---------------------------------------------------------------------
//  Self-test: a clock in the test's hands, events in, batches out.

static void
s_record (shf_hbman_t *self, const char *token, const char *text, int64_t now)
{
    json_t *details = json_loads (text, JSON_DECODE_ANY, NULL);
    assert (details);
    shf_hbman_record (self, token, &details, strlen (text), now);
    assert (details == NULL);
}

//  The batch due at now as compact text ("" when none), sent as id.
static char *
s_send (shf_hbman_t *self, int64_t now, uint64_t id)
{
    json_t *items = shf_hbman_batch (self, now);
    if (!items)
        return strdup ("");
    json_t *sorted = json_object ();
    size_t i;
    json_t *item;
    json_array_foreach (items, i, item)
    {
        json_object_set (sorted,
                         json_string_value (json_object_get (item, "token")),
                         json_object_get (item, "details"));
    }
    char *text = json_dumps (sorted, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref (sorted);
    json_decref (items);
    shf_hbman_sent (self, id, now);
    return text;
}

static void
s_expect (shf_hbman_t *self, int64_t now, uint64_t id, const char *want,
          bool verbose)
{
    char *got = s_send (self, now, id);
    if (verbose)
        printf ("  t=%lld: %s\n", (long long) now, *got ? got : "(nothing)");
    if (strcmp (got, want) != 0) {
        fprintf (stderr, "shf_hbman: at t=%lld expected '%s', got '%s'\n",
                 (long long) now, want, got);
        assert (false);
    }
    free (got);
}

static void
s_reply (shf_hbman_t *self, uint64_t id, const char *body_text, int64_t now,
         const char *want_canceled)
{
    json_t *body = body_text ? json_loads (body_text, 0, NULL) : NULL;
    assert (body || !body_text);
    json_t *canceled = shf_hbman_reply (self, id, body, now);
    char *got = json_dumps (canceled, JSON_COMPACT);
    assert (streq (got, want_canceled));
    free (got);
    json_decref (canceled);
    json_decref (body);
}

void
shf_hbman_test (bool verbose)
{
    printf (" * shf_hbman: ");
    if (verbose)
        printf ("\n");

    //  Batching and throttling: the first batch goes at once, later
    //  details wait for the next slot and the newest wins; all tasks with
    //  new details share one batch; silent tasks are never sent.
    shf_hbman_t *hb = shf_hbman_new ();
    shf_hbman_track (hb, "a", 0);
    shf_hbman_track (hb, "b", 0);
    shf_hbman_track (hb, "silent", 0);
    assert (shf_hbman_next_due (hb) == INT64_MAX);
    s_expect (hb, 0, 1, "", verbose);
    s_record (hb, "a", "{\"i\":1}", 10);
    assert (shf_hbman_next_due (hb) <= 10);
    s_expect (hb, 10, 1, "{\"a\":{\"i\":1}}", verbose);
    assert (shf_hbman_in_flight (hb));
    assert (shf_hbman_next_due (hb) == 10 + 1000);  //  reply deadline
    s_reply (hb, 1, "{\"canceled\":[]}", 12, "[]");
    assert (!shf_hbman_in_flight (hb));
    s_record (hb, "a", "{\"i\":2}", 20);
    s_record (hb, "b", "\"b1\"", 30);
    s_record (hb, "a", "{\"i\":3}", 40);
    assert (shf_hbman_next_due (hb) == 1010);
    s_expect (hb, 500, 2, "", verbose);
    s_expect (hb, 1010, 2, "{\"a\":{\"i\":3},\"b\":\"b1\"}", verbose);
    s_reply (hb, 2, "{\"canceled\":[]}", 1011, "[]");
    assert (shf_hbman_next_due (hb) == INT64_MAX);
    //  Details after a quiet interval go at once.
    s_record (hb, "b", "null", 5000);
    s_expect (hb, 5000, 3, "{\"b\":null}", verbose);
    s_reply (hb, 3, "{\"canceled\":[]}", 5001, "[]");

    //  A failed send is retried 100 ms later, within the same interval,
    //  with the newest details; the slot does not move.
    s_record (hb, "a", "{\"i\":4}", 5100);
    json_t *items = shf_hbman_batch (hb, 6000);
    assert (items && json_array_size (items) == 1);
    json_decref (items);
    shf_hbman_failed (hb, true, 6000);
    assert (shf_hbman_next_due (hb) == 6100);
    s_expect (hb, 6050, 4, "", verbose);
    s_record (hb, "b", "\"b2\"", 6060);
    s_expect (hb, 6100, 4, "{\"a\":{\"i\":4},\"b\":\"b2\"}", verbose);
    s_reply (hb, 4, "{\"canceled\":[]}", 6101, "[]");
    s_record (hb, "a", "{\"i\":5}", 6200);
    assert (shf_hbman_next_due (hb) == 7000);

    //  No reply within the interval: retried at once; newer details
    //  recorded meanwhile replace the lost ones; a late reply to the lost
    //  batch changes nothing but is read for cancellations.
    s_expect (hb, 7000, 5, "{\"a\":{\"i\":5}}", verbose);
    s_record (hb, "b", "\"b3\"", 7100);
    assert (shf_hbman_next_due (hb) == 8000);
    s_expect (hb, 7999, 6, "", verbose);
    s_record (hb, "a", "{\"i\":6}", 7999);
    s_expect (hb, 8000, 6, "{\"a\":{\"i\":6},\"b\":\"b3\"}", verbose);
    s_reply (hb, 5, "{\"canceled\":[\"b\",\"unknown\"]}", 8001, "[\"b\"]");
    assert (shf_hbman_canceled (hb, "b"));
    assert (!shf_hbman_canceled (hb, "a"));
    assert (shf_hbman_in_flight (hb));                      //  6 still waits
    s_reply (hb, 6, "{\"canceled\":[\"b\"]}", 8002, "[]");  //  told once
    assert (!shf_hbman_in_flight (hb));
    //  A lost batch's details are not resent once newer ones went.
    s_expect (hb, 9000, 7, "", verbose);

    //  Take: details not yet sent are handed over for a flush before the
    //  result, and no longer batched; in-flight ones are handed too.
    s_record (hb, "a", "{\"i\":7}", 9100);
    json_t *last = shf_hbman_take (hb, "a");
    assert (last && json_integer_value (json_object_get (last, "i")) == 7);
    json_decref (last);
    assert (shf_hbman_take (hb, "a") == NULL);
    assert (shf_hbman_next_due (hb) == INT64_MAX);
    s_record (hb, "a", "{\"i\":8}", 9200);
    s_expect (hb, 9200, 8, "{\"a\":{\"i\":8}}", verbose);
    last = shf_hbman_take (hb, "a");
    assert (last && json_integer_value (json_object_get (last, "i")) == 8);
    json_decref (last);
    shf_hbman_forget (hb, "a");
    s_reply (hb, 8, "{\"canceled\":[\"a\"]}", 9201, "[]");  //  forgotten
    shf_hbman_forget (hb, "b");
    shf_hbman_forget (hb, "nobody");

    //  The node's min_interval_ms throttles; it lasts until changed.
    s_record (hb, "c", "1", 20000);
    s_expect (hb, 20000, 9, "{\"c\":1}", verbose);
    s_reply (hb, 9, "{\"canceled\":[],\"min_interval_ms\":3000}", 20001, "[]");
    assert (shf_hbman_interval (hb) == 3000);
    s_record (hb, "c", "2", 20100);
    assert (shf_hbman_next_due (hb) == 23000);
    s_expect (hb, 21000, 10, "", verbose);
    s_expect (hb, 23000, 10, "{\"c\":2}", verbose);
    s_reply (hb, 10, "{\"canceled\":[],\"min_interval_ms\":0}", 23001, "[]");
    assert (shf_hbman_interval (hb) == 1000);

    //  A short heartbeat timeout shortens the interval to half of it,
    //  while that task runs; the node's minimum still wins.
    shf_hbman_track (hb, "quick", 500);
    assert (shf_hbman_interval (hb) == 250);
    s_record (hb, "c", "3", 23100);
    assert (shf_hbman_next_due (hb) == 23250);
    s_expect (hb, 23250, 11, "{\"c\":3}", verbose);
    s_reply (hb, 11, "{\"min_interval_ms\":400}", 23251, "[]");
    assert (shf_hbman_interval (hb) == 400);
    s_reply (hb, 11, "{\"min_interval_ms\":100}", 23252, "[]");
    shf_hbman_track (hb, "tiny", 10);
    assert (shf_hbman_interval (hb) == 100);
    s_reply (hb, 11, "{\"min_interval_ms\":0}", 23253, "[]");
    assert (shf_hbman_interval (hb) == 20);
    shf_hbman_forget (hb, "tiny");
    shf_hbman_forget (hb, "quick");
    assert (shf_hbman_interval (hb) == 1000);

    //  An error reply counts as delivered; a send that can never succeed
    //  is dropped, not retried.
    s_record (hb, "c", "4", 30000);
    s_expect (hb, 30000, 12, "{\"c\":4}", verbose);
    s_reply (hb, 12, NULL, 30001, "[]");
    assert (!shf_hbman_in_flight (hb));
    s_record (hb, "c", "5", 31000);
    items = shf_hbman_batch (hb, 31000);
    assert (items);
    json_decref (items);
    shf_hbman_failed (hb, false, 31000);
    assert (shf_hbman_next_due (hb) == INT64_MAX);
    assert (shf_hbman_take (hb, "c") == NULL);
    shf_hbman_forget (hb, "c");

    //  Batches stay under the frame limit: the rest goes as soon as the
    //  first part is answered.
    char *big = malloc (SHF_MSG_MAX_PAYLOAD / 2 + 3);
    assert (big);
    memset (big, 'x', SHF_MSG_MAX_PAYLOAD / 2 + 2);
    big [0] = big [SHF_MSG_MAX_PAYLOAD / 2 + 1] = '"';
    big [SHF_MSG_MAX_PAYLOAD / 2 + 2] = 0;
    s_record (hb, "x1", big, 40000);
    s_record (hb, "x2", big, 40000);
    s_record (hb, "x3", big, 40000);
    items = shf_hbman_batch (hb, 40000);
    assert (items && json_array_size (items) == 1);
    json_decref (items);
    shf_hbman_sent (hb, 13, 40000);
    assert (shf_hbman_next_due (hb) == 41000);
    json_decref (shf_hbman_reply (hb, 13, NULL, 40001));
    assert (shf_hbman_next_due (hb) <= 40001);
    items = shf_hbman_batch (hb, 40001);
    assert (items && json_array_size (items) == 1);
    json_decref (items);
    shf_hbman_sent (hb, 14, 40001);
    json_decref (shf_hbman_reply (hb, 14, NULL, 40002));
    items = shf_hbman_batch (hb, 40002);
    assert (items && json_array_size (items) == 1);
    json_decref (items);
    shf_hbman_sent (hb, 15, 40002);
    json_decref (shf_hbman_reply (hb, 15, NULL, 40003));
    assert (shf_hbman_next_due (hb) == INT64_MAX);
    free (big);
    shf_hbman_destroy (&hb);
    shf_hbman_destroy (&hb);
    printf ("OK\n");
}
