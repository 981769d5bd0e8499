/*  shf_empty.c - keeps a folder's library valid while it has no sources. */
static int shf_empty_unit_marker __attribute__ ((unused));
