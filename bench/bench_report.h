/* bench/bench_report.h - keelmq-bench's verdict, human summary and JSON file.
 *
 * Main thread, after bench_run returned. The verdict is what makes every benchmark a
 * correctness check: a run fails when a message was lost, duplicated, delivered to a receiver
 * whose filter does not match it, or arrived without a valid stamp, or when a connection
 * failed. Duplicates fail at every QoS: the bench never reconnects, so a broker has no
 * legitimate reason to redeliver (MQTT allows QoS 1 duplicates only as redeliveries after a
 * reconnect). Reordering is reported but does not fail a run: members of a shared
 * subscription legitimately see one publisher's messages in different orders.
 */
#ifndef KEELMQ_BENCH_BENCH_REPORT_H
#define KEELMQ_BENCH_BENCH_REPORT_H

#include <stdio.h>

#include "bench/bench_engine.h"
#include "bench/bench_options.h"

/* True when the run in `r` passed the checks above. Writes the reason for failing into
 * `why` (`why_len` bytes) otherwise. */
bool bench_report_passed(const struct bench_result *r, char *why, size_t why_len);

/* Prints the end-of-run summary to `out`. */
void bench_report_print(const struct bench_options *o, const struct bench_result *r, FILE *out);

/* Writes every figure and parameter as one JSON object to `path`. Returns 0 or -errno. */
int bench_report_json(const struct bench_options *o, const struct bench_result *r,
                      const char *path);

#endif
