/* bench/bench_proc.c - /proc/PID/stat and /proc/PID/status readers. Any thread. */
#include "bench/bench_proc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Reads up to `cap` - 1 bytes of `path` into `buf`, NUL-terminated. Returns 0 or -errno. */
static int read_small_file(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return -errno;
    size_t n = fread(buf, 1, cap - 1, f);
    int saved = ferror(f) ? EIO : 0;
    fclose(f);
    if (saved != 0)
        return -saved;
    buf[n] = '\0';
    return 0;
}

int bench_proc_cpu_s(int pid, double *out)
{
    ASSERT(pid > 0);
    char path[64];
    char buf[2048];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    int rc = read_small_file(path, buf, sizeof(buf));
    if (rc < 0)
        return rc;
    /* The command name (field 2) may hold spaces and parentheses: fields resume after the
     * last ')'. utime and stime are fields 14 and 15, i.e. the 12th and 13th after it. */
    const char *p = strrchr(buf, ')');
    if (p == NULL)
        return -EINVAL;
    unsigned long long utime = 0;
    unsigned long long stime = 0;
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime,
               &stime) != 2)
        return -EINVAL;
    long ticks = sysconf(_SC_CLK_TCK);
    if (ticks <= 0)
        return -EINVAL;
    *out = (double)(utime + stime) / (double)ticks;
    return 0;
}

int bench_proc_rss_kib(int pid, uint64_t *out)
{
    ASSERT(pid > 0);
    char path[64];
    char buf[4096];
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    int rc = read_small_file(path, buf, sizeof(buf));
    if (rc < 0)
        return rc;
    const char *p = strstr(buf, "\nVmRSS:");
    if (p == NULL)
        return -EINVAL;
    unsigned long long kib = 0;
    if (sscanf(p + 7, "%llu", &kib) != 1)
        return -EINVAL;
    *out = kib;
    return 0;
}
