/*  shf_cli_def.c - `shardflow def register|list|show`: definitions.

    The document is sent as the file's text, untouched, so the node can
    point at the line and column of a syntax error. With --json each
    subcommand prints the reply body (SPEC.md shapes).
*/
#include "shf_cli.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *s_usage =
    "usage: shardflow def register FILE   register a definition (FILE - "
    "reads stdin)\n"
    "       shardflow def list            the definitions of the namespace\n"
    "       shardflow def show NAME[@V]   one definition (default: newest)\n"
    "\n"
    "Global flags --server, --namespace, --json apply.\n";

static const char *s_register_usage =
    "usage: shardflow def register FILE\n"
    "\n"
    "Register the definition in FILE (JSON; - reads stdin). A document\n"
    "without \"version\" becomes the next version. Registering an existing\n"
    "version again is a no-op if identical, else fails (version_exists).\n"
    "--json prints {\"name\",\"version\"}.\n";

static const char *s_list_usage =
    "usage: shardflow def list\n"
    "\n"
    "List the definitions of the namespace. --json prints\n"
    "{\"definitions\":[{\"name\",\"version\",\"registered_at\"}]}.\n";

static const char *s_show_usage =
    "usage: shardflow def show NAME[@VERSION]\n"
    "\n"
    "Print a definition document (default: the newest version).\n"
    "--json prints {\"name\",\"version\",\"registered_at\",\"definition\"}.\n";

static int
s_register (shf_cli_t *cli, int argc, char **argv)
{
    const char *pos [1];
    int rc = shf_cli_parse (cli, argc, argv, NULL, pos, 1, 1, NULL,
                            s_register_usage);
    if (rc != SHF_CLI_CONTINUE)
        return rc;
    size_t size = 0;
    char *doc = shf_cli_read_file (pos [0], 64u << 20, &size);
    if (!doc)
        return shf_cli_usage_error (cli, "cannot read %s: %s", pos [0],
                                    strerror (errno));
    if (strlen (doc) != size) {
        free (doc);
        return shf_cli_error (cli, "invalid_definition",
                              "%s: contains a NUL byte", pos [0]);
    }
    shf_client_t *client = NULL;
    rc = shf_cli_client (cli, &client);
    if (rc != SHF_CLI_CONTINUE) {
        free (doc);
        return rc;
    }
    json_t *body = NULL;
    shf_err_t err = shf_client_def_register (client, doc, &body);
    free (doc);
    if (err != SHF_OK)
        rc = shf_cli_client_error (cli, client, err);
    else {
        if (cli->json)
            shf_cli_print_json (body);
        else
            printf ("registered %s version %lld\n",
                    json_string_value (json_object_get (body, "name")),
                    (long long) json_integer_value (
                        json_object_get (body, "version")));
        rc = SHF_CLI_OK;
    }
    json_decref (body);
    shf_client_destroy (&client);
    return rc;
}

static int
s_list (shf_cli_t *cli, int argc, char **argv)
{
    const char *pos [1];
    int rc =
        shf_cli_parse (cli, argc, argv, NULL, pos, 0, 0, NULL, s_list_usage);
    if (rc != SHF_CLI_CONTINUE)
        return rc;
    shf_client_t *client = NULL;
    rc = shf_cli_client (cli, &client);
    if (rc != SHF_CLI_CONTINUE)
        return rc;
    json_t *body = NULL;
    shf_err_t err = shf_client_def_list (client, &body);
    if (err != SHF_OK)
        rc = shf_cli_client_error (cli, client, err);
    else if (cli->json) {
        shf_cli_print_json (body);
        rc = SHF_CLI_OK;
    }
    else {
        shf_cli_table_t *table = shf_cli_table_new (3);
        const char *header [] = {"NAME", "VERSION", "REGISTERED_AT"};
        shf_cli_table_row (table, header);
        size_t i;
        json_t *def;
        json_array_foreach (json_object_get (body, "definitions"), i, def)
        {
            char *cells [3] = {
                shf_cli_text (json_object_get (def, "name")),
                shf_cli_text (json_object_get (def, "version")),
                shf_cli_text (json_object_get (def, "registered_at"))};
            shf_cli_table_row (table, (const char **) cells);
            for (int c = 0; c < 3; c++)
                free (cells [c]);
        }
        shf_cli_table_print (table, stdout);
        shf_cli_table_destroy (&table);
        rc = SHF_CLI_OK;
    }
    json_decref (body);
    shf_client_destroy (&client);
    return rc;
}

static int
s_show (shf_cli_t *cli, int argc, char **argv)
{
    const char *pos [1];
    int rc =
        shf_cli_parse (cli, argc, argv, NULL, pos, 1, 1, NULL, s_show_usage);
    if (rc != SHF_CLI_CONTINUE)
        return rc;
    char *name = NULL;
    int64_t version = 0;
    rc = shf_cli_name_version (cli, pos [0], &name, &version);
    if (rc != SHF_CLI_CONTINUE)
        return rc;
    shf_client_t *client = NULL;
    rc = shf_cli_client (cli, &client);
    if (rc != SHF_CLI_CONTINUE) {
        free (name);
        return rc;
    }
    json_t *body = NULL;
    shf_err_t err = shf_client_def_show (client, name, version, &body);
    if (err != SHF_OK)
        rc = shf_cli_client_error (cli, client, err);
    else if (cli->json) {
        shf_cli_print_json (body);
        rc = SHF_CLI_OK;
    }
    else {
        char *text = json_dumps (json_object_get (body, "definition"),
                                 JSON_ENCODE_ANY | JSON_INDENT (2));
        printf ("%s\n", text ? text : "null");
        free (text);
        rc = SHF_CLI_OK;
    }
    json_decref (body);
    free (name);
    shf_client_destroy (&client);
    return rc;
}

int
shf_cli_def (shf_cli_t *cli, int argc, char **argv)
{
    int i = 0;
    int rc = shf_cli_globals (cli, argc, argv, &i, s_usage);
    if (rc != SHF_CLI_CONTINUE)
        return rc;
    if (i >= argc)
        return shf_cli_usage_error (cli, "def: missing subcommand "
                                         "(register, list, show)");
    const char *sub = argv [i++];
    if (strcmp (sub, "register") == 0)
        return s_register (cli, argc - i, argv + i);
    if (strcmp (sub, "list") == 0)
        return s_list (cli, argc - i, argv + i);
    if (strcmp (sub, "show") == 0)
        return s_show (cli, argc - i, argv + i);
    return shf_cli_usage_error (cli, "def: unknown subcommand \"%s\"", sub);
}
