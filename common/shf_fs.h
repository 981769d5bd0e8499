/*  shf_fs.h - the few platform file-system bits the engine needs.
*/
#ifndef SHF_FS_H_INCLUDED
#define SHF_FS_H_INCLUDED
#include "shf_err.h"

//  mkdir -p with mode 0700 for created directories. SHF_EIO on failure.
shf_err_t
    shf_fs_mkdirs (const char *path) SHF_MUST_CHECK;

//  fsync a directory so a created or renamed entry survives power loss.
shf_err_t
    shf_fs_sync_dir (const char *path) SHF_MUST_CHECK;

#endif
