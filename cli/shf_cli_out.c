/*  shf_cli_out.c - flags, output and exit codes of the `shardflow` command.

    Everything a user's script depends on beyond the JSON bodies is here:
    how flags are read (--flag VALUE or --flag=VALUE, global flags accepted
    anywhere), how errors look (`{"error":{"code","message"}}` on stdout
    with --json, `error: CODE: MESSAGE` on stderr without) and which exit
    code each error code maps to (SPEC.md: 1 failed, 2 usage, 3 not found,
    4 cannot reach the server).
*/
#include "shf_cli.h"
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

//  ---------------------------------------------------------------------
//  Errors

int
shf_cli_exit_code (const char *code)
{
    if (!code)
        return SHF_CLI_FAILED;
    if (strcmp (code, "not_found") == 0)
        return SHF_CLI_NOTFOUND;
    if (strcmp (code, "unavailable") == 0)
        return SHF_CLI_UNAVAIL;
    if (strcmp (code, "bad_request") == 0)
        return SHF_CLI_USAGE;
    return SHF_CLI_FAILED;
}

static void
s_report (shf_cli_t *cli, const char *code, const char *message)
{
    if (cli->json) {
        json_t *doc = json_pack ("{s:{s:s, s:s}}", "error", "code", code,
                                 "message", message);
        if (!doc)  //  message was not UTF-8
            doc = json_pack ("{s:{s:s, s:s}}", "error", "code", code, "message",
                             "(unprintable message)");
        shf_cli_print_json (doc);
        json_decref (doc);
    }
    else
        fprintf (stderr, "error: %s: %s\n", code, message);
}

int
shf_cli_error (shf_cli_t *cli, const char *code, const char *fmt, ...)
{
    char message [2048];
    va_list args;
    va_start (args, fmt);
    vsnprintf (message, sizeof message, fmt, args);
    va_end (args);
    s_report (cli, code, message);
    return shf_cli_exit_code (code);
}

int
shf_cli_usage_error (shf_cli_t *cli, const char *fmt, ...)
{
    char message [2048];
    va_list args;
    va_start (args, fmt);
    vsnprintf (message, sizeof message, fmt, args);
    va_end (args);
    s_report (cli, "bad_request", message);
    if (!cli->json)
        fprintf (stderr, "(see shardflow --help)\n");
    return SHF_CLI_USAGE;
}

int
shf_cli_client_error (shf_cli_t *cli, shf_client_t *client, shf_err_t rc)
{
    const char *code = shf_client_errcode (client);
    const char *message = shf_client_errmsg (client);
    if (rc == SHF_ETIMEOUT || strcmp (code, "unavailable") == 0)
        return shf_cli_error (cli, "unavailable",
                              "cannot reach the server at %s: %s", cli->server,
                              message);
    return shf_cli_error (cli, code, "%s", *message ? message : code);
}

int
shf_cli_client (shf_cli_t *cli, shf_client_t **client_p)
{
    if (!cli->server || !*cli->server)
        cli->server = getenv ("SHARDFLOW_SERVER");
    if (!cli->server || !*cli->server)
        cli->server = SHF_DEFAULT_SERVER;
    shf_err_t rc = shf_client_open (client_p, cli->server, cli->ns);
    if (rc != SHF_OK)
        return shf_cli_usage_error (cli,
                                    "bad --server \"%s\" or --namespace \"%s\"",
                                    cli->server, cli->ns);
    const char *timeout = getenv ("SHARDFLOW_TIMEOUT_MS");
    int64_t ms;
    if (timeout && shf_cli_int (timeout, 1, 3600000, &ms))
        shf_client_set_timeout (*client_p, (int) ms);
    return SHF_CLI_CONTINUE;
}

//  ---------------------------------------------------------------------
//  Flags

//  Apply a global flag; false when name is not one.
static bool
s_global (shf_cli_t *cli, const char *name, const char *value, bool *needs_p)
{
    if (strcmp (name, "--server") == 0) {
        *needs_p = true;
        if (value)
            cli->server = value;
        return true;
    }
    if (strcmp (name, "--namespace") == 0) {
        *needs_p = true;
        if (value)
            cli->ns = value;
        return true;
    }
    if (strcmp (name, "--json") == 0) {
        *needs_p = false;
        cli->json = true;
        return true;
    }
    return false;
}

//  Handle one flag at argv[*i]; returns SHF_CLI_CONTINUE or an exit code.
static int
s_flag (shf_cli_t *cli, int argc, char **argv, int *i,
        const shf_cli_opt_t *opts, const char *usage)
{
    const char *arg = argv [*i];
    if (strcmp (arg, "--help") == 0 || strcmp (arg, "-h") == 0) {
        fputs (usage, stdout);
        return SHF_CLI_OK;
    }
    if (strncmp (arg, "--", 2) != 0)
        return shf_cli_usage_error (cli, "unknown flag \"%s\"", arg);
    char name [64];
    const char *eq = strchr (arg, '=');
    size_t len = eq ? (size_t) (eq - arg) : strlen (arg);
    if (len >= sizeof name)
        return shf_cli_usage_error (cli, "unknown flag \"%s\"", arg);
    memcpy (name, arg, len);
    name [len] = 0;
    const shf_cli_opt_t *opt = NULL;
    for (int k = 0; opts && opts [k].name; k++)
        if (strcmp (opts [k].name, name) == 0)
            opt = &opts [k];
    bool needs = false;
    bool global = !opt && s_global (cli, name, NULL, &needs);
    if (!opt && !global)
        return shf_cli_usage_error (cli, "unknown flag \"%s\"", name);
    if (opt)
        needs = opt->value != NULL;
    const char *value = NULL;
    if (needs) {
        if (eq)
            value = eq + 1;
        else if (*i + 1 < argc)
            value = argv [++*i];
        else
            return shf_cli_usage_error (cli, "%s needs a value", name);
    }
    else if (eq)
        return shf_cli_usage_error (cli, "%s takes no value", name);
    if (global)
        s_global (cli, name, value, &needs);
    else if (opt->value)
        *opt->value = value;
    else
        *opt->flag = true;
    return SHF_CLI_CONTINUE;
}

int
shf_cli_parse (shf_cli_t *cli, int argc, char **argv, const shf_cli_opt_t *opts,
               const char **pos, int min_pos, int max_pos, int *npos_p,
               const char *usage)
{
    int npos = 0;
    bool flags_done = false;
    for (int i = 0; i < argc; i++) {
        const char *arg = argv [i];
        if (!flags_done && strcmp (arg, "--") == 0) {
            flags_done = true;
            continue;
        }
        if (!flags_done && arg [0] == '-' && arg [1] != 0) {
            int rc = s_flag (cli, argc, argv, &i, opts, usage);
            if (rc != SHF_CLI_CONTINUE)
                return rc;
            continue;
        }
        if (npos >= max_pos)
            return shf_cli_usage_error (cli, "unexpected argument \"%s\"", arg);
        pos [npos++] = arg;
    }
    if (npos < min_pos)
        return shf_cli_usage_error (cli, "missing arguments");
    if (npos_p)
        *npos_p = npos;
    return SHF_CLI_CONTINUE;
}

int
shf_cli_globals (shf_cli_t *cli, int argc, char **argv, int *i,
                 const char *usage)
{
    while (*i < argc && argv [*i][0] == '-' && argv [*i][1] != 0
           && strcmp (argv [*i], "--") != 0) {
        int rc = s_flag (cli, argc, argv, i, NULL, usage);
        if (rc != SHF_CLI_CONTINUE)
            return rc;
        ++*i;
    }
    if (*i < argc && strcmp (argv [*i], "--") == 0)
        ++*i;
    return SHF_CLI_CONTINUE;
}

//  ---------------------------------------------------------------------
//  Values

bool
shf_cli_int (const char *text, int64_t min, int64_t max, int64_t *value_p)
{
    if (!text || !*text)
        return false;
    char *end = NULL;
    errno = 0;
    long long value = strtoll (text, &end, 10);
    if (errno || *end || value < min || value > max)
        return false;
    *value_p = value;
    return true;
}

bool
shf_cli_duration (const char *text, int64_t *ms_p)
{
    if (!text || *text < '0' || *text > '9')
        return false;
    char *end = NULL;
    errno = 0;
    long long value = strtoll (text, &end, 10);
    if (errno || value < 0)
        return false;
    int64_t unit = 0;
    if (*end == 0 || strcmp (end, "s") == 0)
        unit = 1000;
    else if (strcmp (end, "ms") == 0)
        unit = 1;
    else if (strcmp (end, "m") == 0)
        unit = 60000;
    else if (strcmp (end, "h") == 0)
        unit = 3600000;
    else
        return false;
    if (value > INT64_MAX / unit)
        return false;
    *ms_p = value * unit;
    return true;
}

char *
shf_cli_read_file (const char *path, size_t max, size_t *size_p)
{
    FILE *file = strcmp (path, "-") == 0 ? stdin : fopen (path, "rb");
    if (!file)
        return NULL;
    size_t cap = 4096, size = 0;
    char *data = malloc (cap + 1);
    assert (data);
    while (true) {
        if (size == cap) {
            if (cap > max) {
                free (data);
                if (file != stdin)
                    fclose (file);
                errno = EFBIG;
                return NULL;
            }
            cap *= 2;
            data = realloc (data, cap + 1);
            assert (data);
        }
        size_t n = fread (data + size, 1, cap - size, file);
        size += n;
        if (n == 0)
            break;
    }
    int failed = ferror (file);
    if (file != stdin)
        fclose (file);
    if (failed || size > max) {
        free (data);
        errno = failed ? EIO : EFBIG;
        return NULL;
    }
    data [size] = 0;
    if (size_p)
        *size_p = size;
    return data;
}

int
shf_cli_input (shf_cli_t *cli, const char *arg, char **text_p)
{
    *text_p = NULL;
    char *text = NULL;
    if (arg [0] == '@') {
        text = shf_cli_read_file (arg + 1, 64u << 20, NULL);
        if (!text)
            return shf_cli_usage_error (cli, "--input %s: %s", arg,
                                        strerror (errno));
    }
    else {
        text = strdup (arg);
        assert (text);
    }
    json_error_t jerr;
    json_t *value = json_loads (text, JSON_DECODE_ANY, &jerr);
    if (!value) {
        free (text);
        return shf_cli_usage_error (
            cli, "--input is not valid JSON: %s (line %d, column %d)",
            jerr.text, jerr.line, jerr.column);
    }
    json_decref (value);
    *text_p = text;
    return SHF_CLI_CONTINUE;
}

int
shf_cli_name_version (shf_cli_t *cli, const char *arg, char **name_p,
                      int64_t *version_p)
{
    *name_p = NULL;
    *version_p = 0;
    const char *at = strrchr (arg, '@');
    if (at) {
        if (!shf_cli_int (at + 1, 1, INT64_MAX, version_p))
            return shf_cli_usage_error (
                cli, "bad version in \"%s\": use NAME or NAME@VERSION", arg);
        *name_p = strndup (arg, (size_t) (at - arg));
    }
    else
        *name_p = strdup (arg);
    assert (*name_p);
    if (!**name_p) {
        free (*name_p);
        *name_p = NULL;
        return shf_cli_usage_error (cli, "empty definition name");
    }
    return SHF_CLI_CONTINUE;
}

//  ---------------------------------------------------------------------
//  Output

void
shf_cli_print_json (const json_t *value)
{
    char *text = json_dumps (value, JSON_ENCODE_ANY | JSON_COMPACT);
    assert (text);
    fputs (text, stdout);
    fputc ('\n', stdout);
    free (text);
    fflush (stdout);
}

char *
shf_cli_text (const json_t *value)
{
    char *text;
    if (!value || json_is_null (value))
        text = strdup ("-");
    else if (json_is_string (value))
        text = strdup (json_string_value (value));
    else
        text = json_dumps (value, JSON_ENCODE_ANY | JSON_COMPACT);
    assert (text);
    return text;
}

struct shf_cli_table {
    int columns;
    json_t *rows;  //  array of arrays of strings
};

shf_cli_table_t *
shf_cli_table_new (int columns)
{
    shf_cli_table_t *self = calloc (1, sizeof *self);
    assert (self);
    self->columns = columns;
    self->rows = json_array ();
    return self;
}

void
shf_cli_table_row (shf_cli_table_t *self, const char **cells)
{
    json_t *row = json_array ();
    for (int c = 0; c < self->columns; c++) {
        const char *cell = cells [c] ? cells [c] : "-";
        json_array_append_new (row, json_stringn_nocheck (cell, strlen (cell)));
    }
    json_array_append_new (self->rows, row);
}

void
shf_cli_table_print (shf_cli_table_t *self, FILE *out)
{
    size_t width [32] = {0};
    assert (self->columns <= 32);
    size_t r;
    json_t *row;
    json_array_foreach (self->rows, r, row)
    {
        for (int c = 0; c < self->columns; c++) {
            size_t len = json_string_length (json_array_get (row, (size_t) c));
            if (len > width [c])
                width [c] = len;
        }
    }
    json_array_foreach (self->rows, r, row)
    {
        for (int c = 0; c < self->columns; c++) {
            const char *cell =
                json_string_value (json_array_get (row, (size_t) c));
            if (c == self->columns - 1)
                fprintf (out, "%s\n", cell);
            else
                fprintf (out, "%-*s  ", (int) width [c], cell);
        }
    }
    fflush (out);
}

void
shf_cli_table_destroy (shf_cli_table_t **self_p)
{
    if (!*self_p)
        return;
    json_decref ((*self_p)->rows);
    free (*self_p);
    *self_p = NULL;
}
