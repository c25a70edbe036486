/* core/base.c - assertion failure path and clocks. Any thread. */
#include "core/base.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

void base_assert_fail(const char *cond, const char *file, int line)
{
    fprintf(stderr, "keelmq: assertion failed: %s at %s:%d\n", cond, file, line);
    fflush(stderr);
    abort();
}

uint64_t base_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t base_wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
