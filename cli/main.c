/*  main.c - the `shardflow` command: global flags and dispatch.

    shardflow [--server EP] [--namespace NS] [--json] COMMAND ... where the
    global flags may also follow the command. Exit codes and output shapes
    are the user's contract in SPEC.md; each command group lives in its
    own file.
*/
#include "shf_cli.h"
#include <czmq.h>
#include <stdlib.h>
#include <string.h>

static const char *s_usage =
    "usage: shardflow [--server EP] [--namespace NS] [--json] COMMAND ...\n"
    "\n"
    "commands:\n"
    "  dev      run a single-node cluster in the foreground\n"
    "  def      register, list and show workflow definitions\n"
    "  wf       start, inspect, signal, cancel and terminate workflows\n"
    "  worker   run a shell command once per activity task\n"
    "  shard    the shard map (not available yet)\n"
    "  node     a node of a multi-node cluster (not available yet)\n"
    "\n"
    "global flags (before or after the command):\n"
    "  --server tcp://HOST:PORT  the node (env SHARDFLOW_SERVER,\n"
    "                            default tcp://127.0.0.1:7400)\n"
    "  --namespace NS            namespace (default \"default\")\n"
    "  --json                    machine output: one JSON document on stdout\n"
    "  --help                    usage of any command or subcommand\n"
    "\n"
    "exit codes: 0 ok, 1 failed (or the awaited workflow did not complete),\n"
    "2 usage error, 3 not found, 4 cannot reach the server\n";

static const char *s_shard_usage =
    "usage: shardflow shard list\n"
    "       shardflow shard move S --to NODE\n"
    "       shardflow shard rebalance\n"
    "\n"
    "The shard map and moving shards between nodes (not available yet).\n";

static const char *s_node_usage =
    "usage: shardflow node [FLAGS]\n"
    "\n"
    "A node of a multi-node cluster (not available yet; use `shardflow "
    "dev`).\n";

//  Commands of a later milestone: usage works, the rest says so.
static int
s_not_yet (shf_cli_t *cli, int argc, char **argv, const char *what,
           const char *usage)
{
    const char *pos [8];
    static bool ignored;
    const char *ignored_value = NULL;
    shf_cli_opt_t opts [] = {{"--to", &ignored_value, NULL},
                             {"--config", &ignored_value, NULL},
                             {"--all", NULL, &ignored},
                             {NULL, NULL, NULL}};
    int rc = shf_cli_parse (cli, argc, argv, opts, pos, 0, 8, NULL, usage);
    if (rc != SHF_CLI_CONTINUE)
        return rc;
    return shf_cli_usage_error (cli, "shardflow %s: not available yet", what);
}

int
main (int argc, char **argv)
{
    //  No CZMQ signal handler: commands decide what a signal means.
    zsys_handler_set (NULL);
    shf_cli_t cli = {NULL, SHF_DEFAULT_NAMESPACE, false};
    //  --json anywhere decides how even a usage error is printed.
    for (int i = 1; i < argc && strcmp (argv [i], "--") != 0; i++)
        if (strcmp (argv [i], "--json") == 0)
            cli.json = true;

    int i = 1;
    int rc = shf_cli_globals (&cli, argc, argv, &i, s_usage);
    if (rc != SHF_CLI_CONTINUE)
        return rc;
    if (i >= argc) {
        if (cli.json)
            return shf_cli_usage_error (&cli, "missing command");
        fputs (s_usage, stderr);
        return SHF_CLI_USAGE;
    }
    const char *command = argv [i++];
    int sub_argc = argc - i;
    char **sub_argv = argv + i;
    //  The server flag may come later; resolve the default at use.
    if (strcmp (command, "dev") == 0)
        rc = shf_cli_dev (&cli, sub_argc, sub_argv);
    else if (strcmp (command, "def") == 0)
        rc = shf_cli_def (&cli, sub_argc, sub_argv);
    else if (strcmp (command, "wf") == 0)
        rc = shf_cli_wf (&cli, sub_argc, sub_argv);
    else if (strcmp (command, "worker") == 0)
        rc = shf_cli_worker (&cli, sub_argc, sub_argv);
    else if (strcmp (command, "shard") == 0)
        rc = s_not_yet (&cli, sub_argc, sub_argv, "shard", s_shard_usage);
    else if (strcmp (command, "node") == 0)
        rc = s_not_yet (&cli, sub_argc, sub_argv, "node", s_node_usage);
    else if (strcmp (command, "help") == 0) {
        fputs (s_usage, stdout);
        rc = SHF_CLI_OK;
    }
    else
        rc = shf_cli_usage_error (&cli, "unknown command \"%s\"", command);
    fflush (stdout);
    return rc;
}
