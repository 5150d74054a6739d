/*
 * tmpdir.h — scratch directories for the unit suites, fuzz harnesses and
 * micro-benchmarks that write files (the spool's): remove a whole tree, or
 * empty a directory of its files and keep it.
 */
#ifndef FX_TEST_TMPDIR_H
#define FX_TEST_TMPDIR_H

#include <dirent.h>
#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static inline int fx_test_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

/* rm -rf dir */
static inline void fx_test_rm_rf(const char *dir)
{
    nftw(dir, fx_test_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Unlinks every file directly in dir and keeps dir. 0, or -1 when dir cannot be opened. */
static inline int fx_test_clear_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    struct dirent *e;
    char p[4096];
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
            unlink(p);
        }
    closedir(d);
    return 0;
}

#endif
