/* bench/bench_engine.h - runs one keelmq-bench scenario (conn or pubsub) against a broker and
 * collects every figure the report prints.
 *
 * The run is one event loop on the calling thread over one io_uring (bench/bench_net.h):
 *   pubsub: connect all subscribers and publishers, wait for every CONNACK and SUBACK, publish
 *           for --warmup + --duration seconds (figures count only the --duration part), stop
 *           publishing, drain until every expected message and acknowledgement is in, or
 *           nothing arrived for BENCH_DRAIN_IDLE_NS (a slow broker still delivering has not
 *           lost anything), or BENCH_DRAIN_MAX_NS passed, then count losses, disconnect and
 *           return.
 *   conn:   open --connections connections with at most BENCH_CONNECTING_MAX connects in flight,
 *           each subscribing to its --filter, hold them for --duration with keepalive, then
 *           disconnect.
 * Not reentrant; one run per thread at a time.
 */
#ifndef KEELMQ_BENCH_BENCH_ENGINE_H
#define KEELMQ_BENCH_BENCH_ENGINE_H

#include <signal.h>

#include "bench/bench_options.h"
#include "bench/bench_track.h"
#include "core/histogram.h"

#define BENCH_CONNECTING_MAX 512u            /* connects (until CONNACK) in flight */
#define BENCH_DRAIN_IDLE_NS 2000000000ull    /* drain ends after this long without a delivery */
#define BENCH_DRAIN_MAX_NS 30000000000ull    /* and in any case after this long */
#define BENCH_SETUP_MAX_NS 60000000000ull    /* connect + subscribe phase */
#define BENCH_CLOSED_LOOP_BATCH_LEN 16384u   /* QoS 0 closed loop: bytes queued per send */
#define BENCH_QOS0_INFLIGHT_MAX 262144u    /* QoS 0 closed loop: deliveries in flight */
#define BENCH_QOS0_WINDOW_MIN 256u           /* messages per (publisher, receiver) */
#define BENCH_QOS0_WINDOW_BATCHES_MAX 16u
#define BENCH_OPEN_LOOP_BACKLOG_LEN (4u << 20) /* open loop: output a publisher may pile up */

struct bench_result {
    double measured_s;        /* the measurement window actually run */
    uint64_t sent;            /* within the window */
    uint64_t received;
    uint64_t acked;
    uint64_t sent_total;      /* whole run, warm-up and drain included */
    uint64_t received_total;
    uint64_t expected_total;  /* deliveries the receivers should have seen */
    struct histogram latency_ns; /* deliveries within the window */
    struct track_counts track;
    uint64_t lost;
    uint64_t corrupt;         /* payloads without a valid stamp */
    uint64_t foreign;         /* valid stamps of another run (ignored, reported) */
    uint64_t failures;        /* connects, CONNACK/SUBACK refusals, lost connections */
    uint64_t connack_count;
    uint64_t connect_ns;      /* first connect to last CONNACK (and SUBACK) */
    uint32_t connections;     /* ready at the end of setup */
    uint32_t connections_at_end; /* still up when the measurement ended */
    bool has_broker;
    double broker_cpu_s;      /* over the measurement window (conn: connect + hold) */
    uint64_t broker_rss_before_kib;
    uint64_t broker_rss_after_kib;
    char first_failure[160];  /* the first failure, for the summary */
};

/* Runs the scenario in `o` and fills `r` (zeroed first). When *stop (a signal handler's flag,
 * may be NULL) becomes non-zero, the measurement ends early and the run drains and closes as
 * usual. Returns 0 when the run happened (its figures may still show losses or failures), or
 * -errno with a sentence in `err` when it could not start (too many connections, io_uring
 * missing, out of memory). */
int bench_run(const struct bench_options *o, const volatile sig_atomic_t *stop,
              struct bench_result *r, char *err, size_t err_len);

#endif
