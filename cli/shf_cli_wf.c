/*  shf_cli_wf.c - `shardflow wf ...`: start, result, describe, history,
    list, signal, cancel, terminate.

    --json prints the reply body as the node sent it (the SPEC.md shapes);
    without it a few readable lines or a table. A command that waits for a
    run (start --wait, result) exits 1 unless the run completed. Waiting
    is a loop of held wf_result requests (30 s each), so a long run costs
    one request per 30 s, and a node restart while waiting costs at most
    one repeat.
*/
#include "shf_cli.h"
#include <czmq.h>
#include <stdlib.h>
#include <string.h>

#define WAIT_SLICE_MS 30000

static const char *s_usage =
    "usage: shardflow wf COMMAND ...\n"
    "\n"
    "  start NAME[@V] [--id ID] [--input JSON|@FILE] [--request-id R] "
    "[--wait]\n"
    "  result ID [--wait]                 status, output or failure\n"
    "  describe ID                        status, steps, timers\n"
    "  history ID                         the event list\n"
    "  list [--status S] [--name N] [--limit K]\n"
    "  signal ID NAME [--input JSON|@FILE]\n"
    "  cancel ID [--reason T]             graceful cancel\n"
    "  terminate ID [--reason T]          hard stop\n"
    "\n"
    "Global flags --server, --namespace, --json apply. `shardflow wf CMD "
    "--help`\n"
    "describes one command.\n";

static const char *s_start_usage =
    "usage: shardflow wf start NAME[@VERSION] [--id ID] [--input JSON|@FILE]\n"
    "                          [--request-id R] [--wait]\n"
    "\n"
    "Start a run of definition NAME (default: its newest version).\n"
    "  --id ID          workflow ID (default: from --request-id, else "
    "random)\n"
    "  --input JSON     the workflow input; @FILE reads it from a file\n"
    "  --request-id R   makes the start idempotent for 24 hours\n"
    "  --wait           wait for the run to close and print its outcome;\n"
    "                   exit 1 unless it completed\n"
    "--json prints {\"workflow_id\",\"run_id\",\"shard\"}, with --wait\n"
    "{\"workflow_id\",\"run_id\",\"status\",\"output\",\"failure\"}.\n";

static const char *s_result_usage =
    "usage: shardflow wf result ID [--wait]\n"
    "\n"
    "The outcome of the current run of ID: status, output or failure.\n"
    "  --wait   wait until the run closes\n"
    "Exits 1 unless the run completed. --json prints\n"
    "{\"workflow_id\",\"run_id\",\"status\",\"output\",\"failure\"}.\n";

static const char *s_describe_usage =
    "usage: shardflow wf describe ID\n"
    "\n"
    "Status, input, output, failure, the steps (status, attempt, times,\n"
    "last failure) and open timers of the current run of ID.\n";

static const char *s_history_usage =
    "usage: shardflow wf history ID\n"
    "\n"
    "The history events of the current run of ID. --json prints\n"
    "{\"events\":[{\"id\",\"type\",\"time\",...}]}.\n";

static const char *s_list_usage =
    "usage: shardflow wf list [--status S] [--name N] [--limit K]\n"
    "\n"
    "Workflows across all shards, newest first.\n"
    "  --status S   running, completed, failed, canceled, terminated, "
    "timed_out\n"
    "  --name N     only runs of definition N\n"
    "  --limit K    at most K entries\n";

static const char *s_signal_usage =
    "usage: shardflow wf signal ID NAME [--input JSON|@FILE]\n"
    "\n"
    "Deliver signal NAME to the current run of ID (buffered if no step\n"
    "waits for it yet). A closed run fails with code \"closed\".\n";

static const char *s_cancel_usage =
    "usage: shardflow wf cancel ID [--reason TEXT]\n"
    "\n"
    "Cancel the current run of ID: it closes as canceled at once and its\n"
    "running activities are told.\n";

static const char *s_terminate_usage =
    "usage: shardflow wf terminate ID [--reason TEXT]\n"
    "\n"
    "Terminate the current run of ID: a hard stop, status terminated.\n";

static const char *
s_str (const json_t *obj, const char *key)
{
    const char *value = json_string_value (json_object_get (obj, key));
    return value ? value : "-";
}

//  "Type: message (step S)" or "-".
static char *
s_failure_text (const json_t *failure)
{
    if (!json_is_object (failure))
        return strdup ("-");
    const char *step = json_string_value (json_object_get (failure, "step"));
    char *text = NULL;
    if (step)
        text = zsys_sprintf ("%s: %s (step %s)", s_str (failure, "type"),
                             s_str (failure, "message"), step);
    else
        text = zsys_sprintf ("%s: %s", s_str (failure, "type"),
                             s_str (failure, "message"));
    assert (text);
    return text;
}

//  Display text clipped to max bytes (on a UTF-8 boundary).
static char *
s_clipped (const json_t *value, size_t max)
{
    char *text = shf_cli_text (value);
    size_t len = strlen (text);
    if (len > max) {
        size_t cut = max - 3;
        while (cut > 0 && ((unsigned char) text [cut] & 0xC0) == 0x80)
            cut--;
        memcpy (text + cut, "...", 4);
    }
    //  One line per cell.
    for (char *c = text; *c; c++)
        if (*c == '\n' || *c == '\t')
            *c = ' ';
    return text;
}

static bool
s_completed (const json_t *result)
{
    return strcmp (s_str (result, "status"), "completed") == 0;
}

static void
s_print_result (const json_t *result)
{
    printf ("workflow %s (run %s): %s\n", s_str (result, "workflow_id"),
            s_str (result, "run_id"), s_str (result, "status"));
    if (s_completed (result)) {
        char *output = shf_cli_text (json_object_get (result, "output"));
        printf ("output: %s\n", output);
        free (output);
    }
    else if (json_is_object (json_object_get (result, "failure"))) {
        char *failure = s_failure_text (json_object_get (result, "failure"));
        printf ("failure: %s\n", failure);
        free (failure);
    }
}

//  Wait until the current run of wf_id closes; *body_p is its result.
static shf_err_t
s_await (shf_client_t *client, const char *wf_id, json_t **body_p)
{
    while (true) {
        int64_t asked = zclock_mono ();
        json_t *body = NULL;
        shf_err_t rc =
            shf_client_result (client, wf_id, true, WAIT_SLICE_MS, &body);
        if (rc != SHF_OK)
            return rc;
        if (strcmp (s_str (body, "status"), "running") != 0) {
            *body_p = body;
            return SHF_OK;
        }
        json_decref (body);
        //  A node that answers at once does not hold waits: do not spin.
        if (zclock_mono () - asked < 100)
            zclock_sleep (200);
    }
}

static int
s_output_result (shf_cli_t *cli, json_t *result)
{
    if (cli->json)
        shf_cli_print_json (result);
    else
        s_print_result (result);
    return s_completed (result) ? SHF_CLI_OK : SHF_CLI_FAILED;
}

static int
s_start (shf_cli_t *cli, shf_client_t **client_p, int argc, char **argv)
{
    const char *pos [1];
    const char *id = NULL, *input_arg = NULL, *request_id = NULL;
    bool wait = false;
    shf_cli_opt_t opts [] = {{"--id", &id, NULL},
                             {"--input", &input_arg, NULL},
                             {"--request-id", &request_id, NULL},
                             {"--wait", NULL, &wait},
                             {NULL, NULL, NULL}};
    int rc =
        shf_cli_parse (cli, argc, argv, opts, pos, 1, 1, NULL, s_start_usage);
    if (rc != SHF_CLI_CONTINUE)
        return rc;
    if ((rc = shf_cli_client (cli, client_p)) != SHF_CLI_CONTINUE)
        return rc;
    shf_client_t *client = *client_p;
    char *input = NULL;
    if (input_arg
        && (rc = shf_cli_input (cli, input_arg, &input)) != SHF_CLI_CONTINUE)
        return rc;
    char *name = NULL;
    int64_t version = 0;
    rc = shf_cli_name_version (cli, pos [0], &name, &version);
    if (rc != SHF_CLI_CONTINUE) {
        free (input);
        return rc;
    }
    json_t *body = NULL;
    shf_err_t err =
        shf_client_start (client, name, version, id, input, request_id, &body);
    free (name);
    free (input);
    if (err != SHF_OK)
        return shf_cli_client_error (cli, client, err);
    if (!wait) {
        if (cli->json)
            shf_cli_print_json (body);
        else {
            char *shard = shf_cli_text (json_object_get (body, "shard"));
            printf ("started workflow %s (run %s, shard %s)\n",
                    s_str (body, "workflow_id"), s_str (body, "run_id"), shard);
            free (shard);
        }
        json_decref (body);
        return SHF_CLI_OK;
    }
    if (!cli->json)
        printf ("started workflow %s (run %s), waiting...\n",
                s_str (body, "workflow_id"), s_str (body, "run_id"));
    fflush (stdout);
    char *wf_id = strdup (s_str (body, "workflow_id"));
    json_t *shard = json_incref (json_object_get (body, "shard"));
    json_decref (body);
    json_t *result = NULL;
    err = s_await (client, wf_id, &result);
    free (wf_id);
    if (err != SHF_OK) {
        json_decref (shard);
        return shf_cli_client_error (cli, client, err);
    }
    if (shard && !json_object_get (result, "shard"))
        json_object_set (result, "shard", shard);
    json_decref (shard);
    rc = s_output_result (cli, result);
    json_decref (result);
    return rc;
}

static int
s_result (shf_cli_t *cli, shf_client_t **client_p, int argc, char **argv)
{
    const char *pos [1];
    bool wait = false;
    shf_cli_opt_t opts [] = {{"--wait", NULL, &wait}, {NULL, NULL, NULL}};
    int rc =
        shf_cli_parse (cli, argc, argv, opts, pos, 1, 1, NULL, s_result_usage);
    if (rc != SHF_CLI_CONTINUE)
        return rc;
    if ((rc = shf_cli_client (cli, client_p)) != SHF_CLI_CONTINUE)
        return rc;
    shf_client_t *client = *client_p;
    json_t *result = NULL;
    shf_err_t err =
        wait ? s_await (client, pos [0], &result)
             : shf_client_result (client, pos [0], false, 0, &result);
    if (err != SHF_OK)
        return shf_cli_client_error (cli, client, err);
    rc = s_output_result (cli, result);
    json_decref (result);
    return rc;
}

static void
s_print_describe (const json_t *body)
{
    char *input = s_clipped (json_object_get (body, "input"), 200);
    char *output = s_clipped (json_object_get (body, "output"), 200);
    char *failure = s_failure_text (json_object_get (body, "failure"));
    char *version = shf_cli_text (json_object_get (body, "version"));
    char *shard = shf_cli_text (json_object_get (body, "shard"));
    printf ("workflow    %s\n", s_str (body, "workflow_id"));
    printf ("run         %s\n", s_str (body, "run_id"));
    printf ("definition  %s@%s\n", s_str (body, "name"), version);
    printf ("status      %s\n", s_str (body, "status"));
    printf ("shard       %s\n", shard);
    printf ("started     %s\n", s_str (body, "started_at"));
    printf ("closed      %s\n", s_str (body, "closed_at"));
    printf ("input       %s\n", input);
    printf ("output      %s\n", output);
    printf ("failure     %s\n", failure);
    free (input);
    free (output);
    free (failure);
    free (version);
    free (shard);

    json_t *steps = json_object_get (body, "steps");
    if (json_array_size (steps) > 0) {
        printf ("\n");
        shf_cli_table_t *table = shf_cli_table_new (6);
        const char *header [] = {"STEP",    "STATUS", "ATTEMPT",
                                 "STARTED", "CLOSED", "RESULT"};
        shf_cli_table_row (table, header);
        size_t i;
        json_t *step;
        json_array_foreach (steps, i, step)
        {
            json_t *step_failure = json_object_get (step, "failure");
            char *result =
                json_is_object (step_failure)
                    ? s_failure_text (step_failure)
                    : s_clipped (json_object_get (step, "output"), 60);
            char *attempt = shf_cli_text (json_object_get (step, "attempt"));
            const char *cells [6] = {
                s_str (step, "id"),         s_str (step, "status"),    attempt,
                s_str (step, "started_at"), s_str (step, "closed_at"), result};
            shf_cli_table_row (table, cells);
            free (result);
            free (attempt);
        }
        shf_cli_table_print (table, stdout);
        shf_cli_table_destroy (&table);
    }
    json_t *timers = json_object_get (body, "timers");
    if (json_array_size (timers) > 0) {
        printf ("\n");
        shf_cli_table_t *table = shf_cli_table_new (2);
        const char *header [] = {"TIMER", "DUE"};
        shf_cli_table_row (table, header);
        size_t i;
        json_t *timer;
        json_array_foreach (timers, i, timer)
        {
            const char *cells [2] = {s_str (timer, "step"),
                                     s_str (timer, "due_at")};
            shf_cli_table_row (table, cells);
        }
        shf_cli_table_print (table, stdout);
        shf_cli_table_destroy (&table);
    }
}

static void
s_print_history (const json_t *body)
{
    shf_cli_table_t *table = shf_cli_table_new (6);
    const char *header [] = {"ID",   "TIME",    "TYPE",
                             "STEP", "ATTEMPT", "DETAILS"};
    shf_cli_table_row (table, header);
    size_t i;
    json_t *event;
    json_array_foreach (json_object_get (body, "events"), i, event)
    {
        json_t *rest = json_copy (event);
        const char *shown [] = {"id", "type", "time", "step", "attempt"};
        for (size_t k = 0; k < 5; k++)
            json_object_del (rest, shown [k]);
        char *id = shf_cli_text (json_object_get (event, "id"));
        char *attempt = shf_cli_text (json_object_get (event, "attempt"));
        char *details =
            json_object_size (rest) ? s_clipped (rest, 120) : strdup ("");
        const char *cells [6] = {id,
                                 s_str (event, "time"),
                                 s_str (event, "type"),
                                 s_str (event, "step"),
                                 attempt,
                                 details};
        shf_cli_table_row (table, cells);
        free (id);
        free (attempt);
        free (details);
        json_decref (rest);
    }
    shf_cli_table_print (table, stdout);
    shf_cli_table_destroy (&table);
}

static void
s_print_list (const json_t *body)
{
    shf_cli_table_t *table = shf_cli_table_new (6);
    const char *header [] = {"WORKFLOW_ID", "NAME",      "STATUS",
                             "STARTED_AT",  "CLOSED_AT", "RUN_ID"};
    shf_cli_table_row (table, header);
    size_t i;
    json_t *wf;
    json_array_foreach (json_object_get (body, "workflows"), i, wf)
    {
        const char *cells [6] = {
            s_str (wf, "workflow_id"), s_str (wf, "name"),
            s_str (wf, "status"),      s_str (wf, "started_at"),
            s_str (wf, "closed_at"),   s_str (wf, "run_id")};
        shf_cli_table_row (table, cells);
    }
    shf_cli_table_print (table, stdout);
    shf_cli_table_destroy (&table);
}

//  describe and history: one ID, print the body.
static int
s_read (shf_cli_t *cli, shf_client_t **client_p, int argc, char **argv,
        bool describe)
{
    const char *pos [1];
    int rc = shf_cli_parse (cli, argc, argv, NULL, pos, 1, 1, NULL,
                            describe ? s_describe_usage : s_history_usage);
    if (rc != SHF_CLI_CONTINUE)
        return rc;
    if ((rc = shf_cli_client (cli, client_p)) != SHF_CLI_CONTINUE)
        return rc;
    shf_client_t *client = *client_p;
    json_t *body = NULL;
    shf_err_t err = describe ? shf_client_describe (client, pos [0], &body)
                             : shf_client_history (client, pos [0], &body);
    if (err != SHF_OK)
        return shf_cli_client_error (cli, client, err);
    if (cli->json)
        shf_cli_print_json (body);
    else if (describe)
        s_print_describe (body);
    else
        s_print_history (body);
    json_decref (body);
    return SHF_CLI_OK;
}

static int
s_list (shf_cli_t *cli, shf_client_t **client_p, int argc, char **argv)
{
    const char *status = NULL, *name = NULL, *limit_arg = NULL;
    shf_cli_opt_t opts [] = {{"--status", &status, NULL},
                             {"--name", &name, NULL},
                             {"--limit", &limit_arg, NULL},
                             {NULL, NULL, NULL}};
    const char *pos [1];
    int rc =
        shf_cli_parse (cli, argc, argv, opts, pos, 0, 0, NULL, s_list_usage);
    if (rc != SHF_CLI_CONTINUE)
        return rc;
    if ((rc = shf_cli_client (cli, client_p)) != SHF_CLI_CONTINUE)
        return rc;
    shf_client_t *client = *client_p;
    int64_t limit = 0;
    if (limit_arg && !shf_cli_int (limit_arg, 1, 1000000, &limit))
        return shf_cli_usage_error (cli, "--limit must be a positive integer");
    json_t *body = NULL;
    shf_err_t err = shf_client_list (client, status, name, limit, &body);
    if (err != SHF_OK)
        return shf_cli_client_error (cli, client, err);
    if (cli->json)
        shf_cli_print_json (body);
    else
        s_print_list (body);
    json_decref (body);
    return SHF_CLI_OK;
}

static int
s_signal (shf_cli_t *cli, shf_client_t **client_p, int argc, char **argv)
{
    const char *pos [2];
    const char *input_arg = NULL;
    shf_cli_opt_t opts [] = {{"--input", &input_arg, NULL}, {NULL, NULL, NULL}};
    int rc =
        shf_cli_parse (cli, argc, argv, opts, pos, 2, 2, NULL, s_signal_usage);
    if (rc != SHF_CLI_CONTINUE)
        return rc;
    if ((rc = shf_cli_client (cli, client_p)) != SHF_CLI_CONTINUE)
        return rc;
    shf_client_t *client = *client_p;
    char *input = NULL;
    if (input_arg
        && (rc = shf_cli_input (cli, input_arg, &input)) != SHF_CLI_CONTINUE)
        return rc;
    json_t *body = NULL;
    shf_err_t err = shf_client_signal (client, pos [0], pos [1], input, &body);
    free (input);
    if (err != SHF_OK)
        return shf_cli_client_error (cli, client, err);
    if (cli->json)
        shf_cli_print_json (body);
    else
        printf ("signal %s sent to %s (run %s)\n", pos [1],
                s_str (body, "workflow_id"), s_str (body, "run_id"));
    json_decref (body);
    return SHF_CLI_OK;
}

static int
s_close (shf_cli_t *cli, shf_client_t **client_p, int argc, char **argv,
         bool terminate)
{
    const char *pos [1];
    const char *reason = NULL;
    shf_cli_opt_t opts [] = {{"--reason", &reason, NULL}, {NULL, NULL, NULL}};
    int rc = shf_cli_parse (cli, argc, argv, opts, pos, 1, 1, NULL,
                            terminate ? s_terminate_usage : s_cancel_usage);
    if (rc != SHF_CLI_CONTINUE)
        return rc;
    if ((rc = shf_cli_client (cli, client_p)) != SHF_CLI_CONTINUE)
        return rc;
    shf_client_t *client = *client_p;
    json_t *body = NULL;
    shf_err_t err = terminate
                        ? shf_client_terminate (client, pos [0], reason, &body)
                        : shf_client_cancel (client, pos [0], reason, &body);
    if (err != SHF_OK)
        return shf_cli_client_error (cli, client, err);
    if (cli->json)
        shf_cli_print_json (body);
    else
        printf ("%s %s (run %s)\n", terminate ? "terminated" : "canceled",
                s_str (body, "workflow_id"), s_str (body, "run_id"));
    json_decref (body);
    return SHF_CLI_OK;
}

int
shf_cli_wf (shf_cli_t *cli, int argc, char **argv)
{
    int i = 0;
    int rc = shf_cli_globals (cli, argc, argv, &i, s_usage);
    if (rc != SHF_CLI_CONTINUE)
        return rc;
    if (i >= argc)
        return shf_cli_usage_error (cli, "wf: missing subcommand");
    static const char *subs [] = {"start",   "result",    "describe",
                                  "history", "list",      "signal",
                                  "cancel",  "terminate", NULL};
    const char *sub = argv [i++];
    int which = -1;
    for (int k = 0; subs [k]; k++)
        if (strcmp (subs [k], sub) == 0)
            which = k;
    if (which < 0)
        return shf_cli_usage_error (cli, "wf: unknown subcommand \"%s\"", sub);
    argc -= i;
    argv += i;
    //  Each subcommand connects once its flags (--server...) are read.
    shf_client_t *client = NULL;
    switch (which) {
        case 0:
            rc = s_start (cli, &client, argc, argv);
            break;
        case 1:
            rc = s_result (cli, &client, argc, argv);
            break;
        case 2:
            rc = s_read (cli, &client, argc, argv, true);
            break;
        case 3:
            rc = s_read (cli, &client, argc, argv, false);
            break;
        case 4:
            rc = s_list (cli, &client, argc, argv);
            break;
        case 5:
            rc = s_signal (cli, &client, argc, argv);
            break;
        case 6:
            rc = s_close (cli, &client, argc, argv, false);
            break;
        default:
            rc = s_close (cli, &client, argc, argv, true);
            break;
    }
    shf_client_destroy (&client);
    return rc;
}
