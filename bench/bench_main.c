/* bench/bench_main.c - keelmq-bench: the bundled MQTT load generator (usage: --help).
 * Parses the command line, runs one scenario on the main thread, prints the summary, writes
 * the JSON and exits 0 when the run passed its correctness checks, 1 when it did not (or
 * could not run), 2 on bad usage.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>

#include "bench/bench_engine.h"
#include "bench/bench_options.h"
#include "bench/bench_report.h"

/* Set by SIGINT/SIGTERM, read by the event loop: the one mutable global, because a signal
 * handler can reach nothing else. */
static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int signum)
{
    (void)signum;
    stop_requested = 1;
}

int main(int argc, char **argv)
{
    static struct bench_options options;
    static struct bench_result result; /* 16 KiB histogram: keep it off the stack */
    char err[512];
    int rc = bench_options_parse(argc, argv, &options, err, sizeof(err));
    if (rc == 1) {
        fputs(bench_options_usage(), stdout);
        return 0;
    }
    if (rc < 0) {
        fprintf(stderr, "keelmq-bench: %s\n", err);
        return 2;
    }
    /* The default 50 us timer slack would delay every open-loop wake-up, and the latency
     * measured from the intended send time would include it. */
    (void)prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL); /* Only precision is at stake. */
    struct sigaction sa = { .sa_handler = on_stop_signal };
    sigemptyset(&sa.sa_mask);
    (void)sigaction(SIGINT, &sa, NULL);  /* Cannot fail with valid arguments. */
    (void)sigaction(SIGTERM, &sa, NULL);
    rc = bench_run(&options, &stop_requested, &result, err, sizeof(err));
    if (rc < 0) {
        fprintf(stderr, "keelmq-bench: %s\n", err);
        return 1;
    }
    bench_report_print(&options, &result, stderr);
    if (options.json_path[0] != '\0') {
        rc = bench_report_json(&options, &result, options.json_path);
        if (rc < 0) {
            fprintf(stderr, "keelmq-bench: cannot write %s: %s\n", options.json_path,
                    strerror(-rc));
            return 1;
        }
    }
    char why[160];
    if (!bench_report_passed(&result, why, sizeof(why))) {
        fprintf(stderr, "keelmq-bench: FAILED: %s\n", why);
        return 1;
    }
    return 0;
}
