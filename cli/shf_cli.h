/*  shf_cli.h - what the files of the `shardflow` command share.

    main.c parses the global flags and dispatches; each command group lives
    in its own file (shf_cli_def.c, shf_cli_wf.c, shf_cli_dev.c,
    shf_cli_worker.c); shf_cli_out.c holds flag parsing, output (human or
    --json), error reporting and the exit codes of SPEC.md. Commands
    return the process exit code.
*/
#ifndef SHF_CLI_H_INCLUDED
#define SHF_CLI_H_INCLUDED
#include "shardflow.h"
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

//  Exit codes (SPEC.md).
#define SHF_CLI_OK       0
#define SHF_CLI_FAILED   1
#define SHF_CLI_USAGE    2
#define SHF_CLI_NOTFOUND 3
#define SHF_CLI_UNAVAIL  4
//  Returned by the parsing helpers: go on with the command.
#define SHF_CLI_CONTINUE (-1)

typedef struct {
    const char *server;  //  effective endpoint (flag, env, default)
    const char *ns;      //  namespace
    bool json;           //  --json
} shf_cli_t;

//  One flag of a command: value flags set *value, boolean ones *flag.
typedef struct {
    const char *name;  //  "--id"
    const char **value;
    bool *flag;
} shf_cli_opt_t;

//  Parse argv[0..argc) against opts (terminated by a zeroed entry) plus
//  the global flags; positionals go to pos[0..max_pos), their count to
//  *npos_p. Prints usage (stdout) for --help and returns SHF_CLI_OK;
//  reports a usage error and returns SHF_CLI_USAGE; else
//  SHF_CLI_CONTINUE. Fewer than min_pos positionals is a usage error.
int shf_cli_parse (shf_cli_t *cli, int argc, char **argv,
                   const shf_cli_opt_t *opts, const char **pos, int min_pos,
                   int max_pos, int *npos_p, const char *usage);

//  Consume the global flags at argv[*i...] (before a subcommand word).
//  Returns like shf_cli_parse.
int shf_cli_globals (shf_cli_t *cli, int argc, char **argv, int *i,
                     const char *usage);

//  Report a usage error (with a pointer to --help) and return
//  SHF_CLI_USAGE.
int shf_cli_usage_error (shf_cli_t *cli, const char *fmt, ...)
    __attribute__ ((format (printf, 2, 3)));

//  Report an error with a stable code; returns the exit code for it.
int shf_cli_error (shf_cli_t *cli, const char *code, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

//  Report the last failure of client (rc its status); returns exit code.
int shf_cli_client_error (shf_cli_t *cli, shf_client_t *client, shf_err_t rc);

//  The exit code for an error code string.
int shf_cli_exit_code (const char *code);

//  Open a client on cli's server and namespace, or report and return the
//  exit code (SHF_CLI_CONTINUE on success).
int shf_cli_client (shf_cli_t *cli, shf_client_t **client_p);

//  Print a JSON document on stdout, one line.
void shf_cli_print_json (const json_t *value);

//  A value as display text (strings raw, null "-", else compact JSON).
//  Caller frees.
char *shf_cli_text (const json_t *value);

//  Read a whole file ("-": stdin), at most max bytes. Caller frees; NULL
//  with errno set on failure (EFBIG when too large).
char *shf_cli_read_file (const char *path, size_t max, size_t *size_p);

//  --input JSON|@FILE: *text_p (caller's) is validated JSON text.
//  Returns SHF_CLI_CONTINUE or a reported usage error.
int shf_cli_input (shf_cli_t *cli, const char *arg, char **text_p);

//  "NAME" or "NAME@V" -> name (caller frees) and version (0: newest).
int shf_cli_name_version (shf_cli_t *cli, const char *arg, char **name_p,
                          int64_t *version_p);

//  "10s", "1500ms", "2m", or plain seconds -> ms. false if malformed.
bool shf_cli_duration (const char *text, int64_t *ms_p);

//  Positive decimal integer; false if malformed.
bool shf_cli_int (const char *text, int64_t min, int64_t max, int64_t *value_p);

//  A column-aligned text table.
typedef struct shf_cli_table shf_cli_table_t;
shf_cli_table_t *shf_cli_table_new (int columns);
//  Add a row of `columns` strings (NULL shows "-"); copied.
void shf_cli_table_row (shf_cli_table_t *self, const char **cells);
void shf_cli_table_print (shf_cli_table_t *self, FILE *out);
void shf_cli_table_destroy (shf_cli_table_t **self_p);

//  The commands.
int shf_cli_dev (shf_cli_t *cli, int argc, char **argv);
int shf_cli_def (shf_cli_t *cli, int argc, char **argv);
int shf_cli_wf (shf_cli_t *cli, int argc, char **argv);
int shf_cli_worker (shf_cli_t *cli, int argc, char **argv);

#endif
