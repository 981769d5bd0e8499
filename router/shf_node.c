/*  shf_node.c - a node: its cluster file, its router and shards.

    DATA/cluster.json fixes what must never change after creation: the
    number of shards, the cluster key (routing hash) and the node secret
    (task token MAC). It is written once, atomically (temp file, fsync,
    rename, fsync of the directory), before any shard exists.
*/
#include "shf_node.h"
#include "shf_fs.h"
#include "shf_log.h"
#include "shf_router.h"
#include <jansson.h>
#include <sodium.h>
#include <unistd.h>

struct shf_node {
    zactor_t *router;
    shf_router_args_t args;
    char *data_dir;
    char *listen;
};

static shf_err_t
s_hex_field (json_t *doc, const char *field, uint8_t *out, size_t size)
{
    const char *hex = json_string_value (json_object_get (doc, field));
    size_t len = 0;
    if (!hex
        || sodium_hex2bin (out, size, hex, strlen (hex), NULL, &len, NULL) != 0
        || len != size)
        return SHF_ECORRUPT;
    return SHF_OK;
}

static shf_err_t
s_cluster_file (shf_node_t *self, uint32_t *shards)
{
    char path [4096], tmp [4200];
    snprintf (path, sizeof path, "%s/cluster.json", self->data_dir);
    json_error_t jerr;
    json_t *doc = json_load_file (path, 0, &jerr);
    if (doc) {
        json_int_t n = json_integer_value (json_object_get (doc, "shards"));
        shf_err_t rc = s_hex_field (doc, "cluster_key", self->args.cluster_key,
                                    SHF_SHARDMAP_KEY_BYTES);
        if (rc == SHF_OK)
            rc = s_hex_field (doc, "node_secret", self->args.token_key,
                              SHF_TOKEN_KEY_BYTES);
        json_decref (doc);
        if (rc || n < 1 || n > SHF_SHARDMAP_MAX_SHARDS || (n & (n - 1))) {
            shf_error ("%s is corrupt", path);
            return SHF_ECORRUPT;
        }
        if ((uint32_t) n != *shards)
            shf_info ("data dir has %lld shards (fixed at creation)",
                      (long long) n);
        *shards = (uint32_t) n;
        return SHF_OK;
    }
    if (access (path, F_OK) == 0) {
        shf_error ("%s: %s", path, jerr.text);
        return SHF_ECORRUPT;
    }
    //  Shards without their cluster file: a new key would route every
    //  workflow to another shard and void every task token. Refuse.
    char shards_dir [4200];
    snprintf (shards_dir, sizeof shards_dir, "%s/shards", self->data_dir);
    if (access (shards_dir, F_OK) == 0) {
        shf_error ("%s is missing but %s exists: restore the cluster file, "
                   "it cannot be made anew",
                   path, shards_dir);
        return SHF_ECORRUPT;
    }
    randombytes_buf (self->args.cluster_key, SHF_SHARDMAP_KEY_BYTES);
    randombytes_buf (self->args.token_key, SHF_TOKEN_KEY_BYTES);
    char key_hex [SHF_SHARDMAP_KEY_BYTES * 2 + 1];
    char secret_hex [SHF_TOKEN_KEY_BYTES * 2 + 1];
    sodium_bin2hex (key_hex, sizeof key_hex, self->args.cluster_key,
                    SHF_SHARDMAP_KEY_BYTES);
    sodium_bin2hex (secret_hex, sizeof secret_hex, self->args.token_key,
                    SHF_TOKEN_KEY_BYTES);
    doc = json_pack ("{s:i, s:s, s:s, s:i}", "shards", (int) *shards,
                     "cluster_key", key_hex, "node_secret", secret_hex,
                     "format", 1);
    snprintf (tmp, sizeof tmp, "%s.tmp", path);
    int rc = json_dump_file (doc, tmp, JSON_INDENT (2));
    json_decref (doc);
    if (rc != 0)
        return SHF_EIO;
    FILE *f = fopen (tmp, "r+");
    if (!f)
        return SHF_EIO;
    int synced = fsync (fileno (f));
    fclose (f);
    if (synced != 0 || rename (tmp, path) != 0)
        return SHF_EIO;
    chmod (path, 0600);
    return shf_fs_sync_dir (self->data_dir);
}

shf_err_t
shf_node_open (shf_node_t **self_p, const shf_node_config_t *config)
{
    *self_p = NULL;
    if (!config->data_dir || !config->listen || config->shards < 1
        || config->shards > SHF_SHARDMAP_MAX_SHARDS
        || (config->shards & (config->shards - 1)))
        return SHF_EINVAL;
    if (sodium_init () < 0)
        return SHF_EINTERNAL;
    shf_err_t rc = shf_fs_mkdirs (config->data_dir);
    if (rc)
        return rc;
    shf_node_t *self = calloc (1, sizeof *self);
    assert (self);
    self->data_dir = strdup (config->data_dir);
    self->listen = strdup (config->listen);
    uint32_t shards = (uint32_t) config->shards;
    rc = s_cluster_file (self, &shards);
    if (rc == SHF_OK) {
        self->args.data_dir = self->data_dir;
        self->args.shards = shards;
        self->args.listen = self->listen;
        self->args.durable = config->durable;
        self->router = zactor_new (shf_router, &self->args);
        rc = self->args.status;
    }
    if (rc) {
        shf_node_destroy (&self);
        return rc;
    }
    shf_info ("node serving on %s, %u shards, data %s", self->args.endpoint,
              shards, self->data_dir);
    *self_p = self;
    return SHF_OK;
}

const char *
shf_node_endpoint (shf_node_t *self)
{
    return self->args.endpoint;
}

void
shf_node_destroy (shf_node_t **self_p)
{
    shf_node_t *self = *self_p;
    if (!self)
        return;
    zactor_destroy (&self->router);
    free (self->data_dir);
    free (self->listen);
    free (self);
    *self_p = NULL;
}
