/* bench/bench_proc.h - reads another process's CPU time and resident memory from /proc (the
 * broker under test, given by --broker-pid). Any thread; blocking file reads, so call them
 * outside the measured loop's hot path (once at the start and end of a measurement).
 */
#ifndef KEELMQ_BENCH_BENCH_PROC_H
#define KEELMQ_BENCH_BENCH_PROC_H

#include "core/base.h"

/* utime + stime of `pid` (all its threads) in seconds. Returns 0, or -errno when the process
 * is gone or the file cannot be parsed (-EINVAL). */
int bench_proc_cpu_s(int pid, double *out);

/* VmRSS of `pid` in KiB. Returns 0 or -errno. */
int bench_proc_rss_kib(int pid, uint64_t *out);

#endif
