/* bench/bench_options.h - keelmq-bench's command line: the scenario and its parameters.
 *
 * Parsing is pure (no I/O besides nothing): it fills a struct and, on error, a sentence
 * naming the option and the accepted range, so it is unit-tested directly. Main thread only.
 *
 *   keelmq-bench conn|pubsub [--option VALUE | --option=VALUE]...
 */
#ifndef KEELMQ_BENCH_BENCH_OPTIONS_H
#define KEELMQ_BENCH_BENCH_OPTIONS_H

#include "core/base.h"

#define BENCH_HOST_LEN_MAX 64u
#define BENCH_PATTERN_LEN_MAX 200u
#define BENCH_PATH_LEN_MAX 512u
#define BENCH_PAYLOAD_MAX (1u << 20)      /* 1 MiB per message */
#define BENCH_CLIENTS_MAX (1u << 20)      /* publishers + subscribers, or --connections */
#define BENCH_INFLIGHT_MAX 65535u         /* packet identifiers are 16 bits */
#define BENCH_SOURCES_MAX 250u            /* 127.0.0.1 .. 127.0.0.250 */
#define BENCH_DURATION_MAX_S 28800.0     /* 8 h each for --duration and --warmup: the stamp
                                           * clock covers 9.7 h */
#define BENCH_RATE_MAX 100000000.0        /* 1e8 msgs/s: far beyond what one core can send */
#define BENCH_TOPIC_EXPANDED_LEN_MAX (BENCH_PATTERN_LEN_MAX + 64u)

enum bench_scenario {
    BENCH_SCENARIO_CONN = 1,
    BENCH_SCENARIO_PUBSUB = 2,
};

struct bench_options {
    enum bench_scenario scenario;
    char host[BENCH_HOST_LEN_MAX];
    uint16_t port;
    uint8_t mqtt_version;         /* enum mqtt_version: MQTT_V311 for --mqtt 3, MQTT_V5 */
    uint8_t qos;
    uint32_t payload_len;
    uint32_t publisher_count;
    uint32_t subscriber_count;
    char topic[BENCH_PATTERN_LEN_MAX];  /* pattern, %i = publisher index */
    char filter[BENCH_PATTERN_LEN_MAX]; /* pattern, %i = subscriber index */
    uint32_t inflight;
    double rate;                  /* msgs/s over all publishers; 0 = closed loop */
    bool clean;
    uint16_t keepalive_s;
    double duration_s;
    double warmup_s;
    uint32_t connection_count;    /* conn scenario */
    uint32_t source_count;
    int broker_pid;               /* 0 = none */
    char json_path[BENCH_PATH_LEN_MAX]; /* empty = no JSON */
};

/* Parses `argv` (argc entries, argv[0] is the program) into `out`, starting from defaults:
 * host 127.0.0.1, port 1883, --mqtt 3 (3.1.1), QoS 0, payload 16, 1 publisher, 1 subscriber,
 * topic t/%i, filter = the topic pattern (pubsub) or c/%i (conn), inflight 16, rate 0, clean 1,
 * keepalive 60, duration 10, warmup 1, connections 1000, sources 1.
 * Returns 0 on success, 1 when --help was asked for (nothing else checked), or -EINVAL with a
 * sentence in `err`. */
int bench_options_parse(int argc, char **argv, struct bench_options *out, char *err,
                        size_t err_len);

/* Writes `pattern` with every "%i" replaced by `idx` and "%%" by "%" into `out` (`out_cap`
 * bytes, NUL-terminated). Returns the length, or -1 when it does not fit or the pattern has
 * another '%' sequence. Pure. */
int bench_pattern_expand(const char *pattern, uint32_t idx, char *out, size_t out_cap);

/* The usage text printed by --help. */
const char *bench_options_usage(void);

#endif
