/*  shf_cli_dev.c - `shardflow dev`: a single-node cluster in the
    foreground.

    Opens an embedded node (router/shf_node.h) on --data with durable
    commits, prints one line saying where it listens, and runs until
    SIGINT or SIGTERM, then stops every thread cleanly and exits 0. The
    two signals are blocked before any thread exists and taken with
    sigwait, so no thread of the node ever runs a handler.
*/
#include "shf_cli.h"
#include "shf_node.h"
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *s_usage =
    "usage: shardflow dev [--data DIR] [--shards N] [--listen EP]\n"
    "\n"
    "Run a single-node cluster in the foreground until Ctrl-C or SIGTERM.\n"
    "A restart on the same --data carries on every workflow.\n"
    "  --data DIR    data directory (default ./shardflow-data)\n"
    "  --shards N    number of shards, a power of two, fixed when DIR is\n"
    "                created (default: one per core, 1 to 8)\n"
    "  --listen EP   endpoint (default tcp://127.0.0.1:7400; port 0 picks\n"
    "                a free one)\n";

//  One shard per core, rounded down to a power of two, 1 to 8. A shard
//  commits its batches one after the other on its own thread, and every
//  commit pays for its flushes: on 2 cores, W3 ran at 2,944 wf/s with 8
//  shards against 4,767 with 2 (bench/RESULTS.md, session 8). A data
//  directory keeps the count it was created with.
static int64_t
s_default_shards (void)
{
    long cores = sysconf (_SC_NPROCESSORS_ONLN);
    int64_t shards = 1;
    while (shards * 2 <= cores && shards < 8)
        shards *= 2;
    return shards;
}

int
shf_cli_dev (shf_cli_t *cli, int argc, char **argv)
{
    const char *data = "./shardflow-data";
    const char *shards_arg = NULL;
    const char *listen = "tcp://127.0.0.1:7400";
    shf_cli_opt_t opts [] = {{"--data", &data, NULL},
                             {"--shards", &shards_arg, NULL},
                             {"--listen", &listen, NULL},
                             {NULL, NULL, NULL}};
    const char *pos [1];
    int rc = shf_cli_parse (cli, argc, argv, opts, pos, 0, 0, NULL, s_usage);
    if (rc != SHF_CLI_CONTINUE)
        return rc;
    int64_t shards = s_default_shards ();
    if (shards_arg
        && (!shf_cli_int (shards_arg, 1, 65536, &shards)
            || (shards & (shards - 1)) != 0))
        return shf_cli_usage_error (
            cli, "--shards must be a power of two from 1 to 65536");

    sigset_t stop;
    sigemptyset (&stop);
    sigaddset (&stop, SIGINT);
    sigaddset (&stop, SIGTERM);
    pthread_sigmask (SIG_BLOCK, &stop, NULL);

    shf_node_config_t config = {data, (int) shards, listen, true};
    shf_node_t *node = NULL;
    shf_err_t err = shf_node_open (&node, &config);
    if (err != SHF_OK) {
        int code = shf_cli_error (cli, shf_err_code (err),
                                  "cannot start the node (data %s, listen "
                                  "%s): %s",
                                  data, listen, shf_strerror (err));
        return err == SHF_EINVAL
                   ? SHF_CLI_USAGE
                   : (code == SHF_CLI_USAGE ? code : SHF_CLI_FAILED);
    }
    const char *endpoint = shf_node_endpoint (node);
    if (cli->json) {
        json_t *doc = json_pack ("{s:s, s:s, s:I}", "listening", endpoint,
                                 "data", data, "shards", (json_int_t) shards);
        shf_cli_print_json (doc);
        json_decref (doc);
    }
    else
        printf ("shardflow dev: listening on %s, data %s, %d shards\n",
                endpoint, data, (int) shards);
    fflush (stdout);

    int sig = 0;
    while (sigwait (&stop, &sig) != 0)
        ;
    shf_node_destroy (&node);
    if (!cli->json)
        fprintf (stderr, "shardflow dev: stopped (%s)\n",
                 sig == SIGINT ? "SIGINT" : "SIGTERM");
    return SHF_CLI_OK;
}
