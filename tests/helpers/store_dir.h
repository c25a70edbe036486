/* tests/helpers/store_dir.h - a temporary directory on the real disk for the store's tests.
 *
 * Store tests must run on the ext4 disk the broker's store.dir lives on, not on tmpfs, which
 * ignores O_DIRECT alignment (PLATFORM.md). Every store test file makes its directories here:
 * build/scratch/keelmq-<name>-XXXXXX, relative to the repository root the tests run from
 * (git-ignored), and removes them in its .fini. Test code only; criterion assertions.
 */
#ifndef KEELMQ_TESTS_HELPERS_STORE_DIR_H
#define KEELMQ_TESTS_HELPERS_STORE_DIR_H

#include <stddef.h>

/* Creates build/scratch/keelmq-`name`-XXXXXX into `root` (`cap` bytes) or fails the test;
 * also fails it when build/scratch is on tmpfs. */
void store_dir_create(char *root, size_t cap, const char *name);

/* Removes `root` and everything under it and empties `root`. Returns 0, or -1 when something
 * could not be removed (callers that only clean up ignore it). A no-op when `root` is empty. */
int store_dir_remove(char *root);

#endif
