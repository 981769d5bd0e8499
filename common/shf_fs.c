/*  shf_fs.c - mkdir -p and directory fsync.
*/
#include "shf_fs.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

shf_err_t
shf_fs_mkdirs (const char *path)
{
    char buf [PATH_MAX];
    if (snprintf (buf, sizeof buf, "%s", path) >= (int) sizeof buf)
        return SHF_EINVAL;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir (buf, 0700) != 0 && errno != EEXIST)
            return SHF_EIO;
        *p = '/';
    }
    if (mkdir (buf, 0700) != 0 && errno != EEXIST)
        return SHF_EIO;
    return SHF_OK;
}

shf_err_t
shf_fs_sync_dir (const char *path)
{
    int fd = open (path, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return SHF_EIO;
    int rc = fsync (fd);
    close (fd);
    return rc == 0 ? SHF_OK : SHF_EIO;
}
