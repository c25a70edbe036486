/* tests/helpers/store_dir.c - see store_dir.h. */
#include "tests/helpers/store_dir.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#define TMPFS_MAGIC_NUMBER 0x01021994

void store_dir_create(char *root, size_t cap, const char *name)
{
    (void)mkdir("build", 0755);         /* may exist */
    (void)mkdir("build/scratch", 0755); /* may exist */
    struct statfs fs;
    cr_assert_eq(statfs("build/scratch", &fs), 0, "statfs: %s", strerror(errno));
    cr_assert_neq(fs.f_type, TMPFS_MAGIC_NUMBER, "store tests need a real disk, not tmpfs");
    int n = snprintf(root, cap, "build/scratch/keelmq-%s-XXXXXX", name);
    cr_assert(n > 0 && (size_t)n < cap, "directory name too long");
    cr_assert_not_null(mkdtemp(root), "mkdtemp: %s", strerror(errno));
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int store_dir_remove(char *root)
{
    int rc = root[0] != '\0' ? nftw(root, remove_one, 16, FTW_DEPTH | FTW_PHYS) : 0;
    root[0] = '\0';
    return rc == 0 ? 0 : -1;
}
