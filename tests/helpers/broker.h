/* tests/helpers/broker.h - starts and stops a broker process for the integration tests.
 *
 * broker_start() forks and execs the keelmq binary ($BUILD/keelmq, BUILD defaulting to "build",
 * relative to the repository root, which is the tests' working directory) on 127.0.0.1 with an
 * ephemeral port and a fresh store directory made with mkdtemp(), waits until its stderr shows
 * the "listening tcp 127.0.0.1:PORT" line, and keeps draining stderr into a bounded in-memory
 * log from a background thread so the broker never blocks on a full pipe.
 * With KEELMQ_INTEG_BROKER=mosquitto in the environment, /usr/sbin/mosquitto is started instead
 * on a free port, so the tests can be checked against a reference broker.
 *
 * It does not speak MQTT (see tests/helpers/rawclient.h). Test code only: one struct broker is
 * owned by one test process and used from its main thread (the drain thread only appends to the
 * log, under the log lock).
 */
#ifndef KEELMQ_TESTS_HELPERS_BROKER_H
#define KEELMQ_TESTS_HELPERS_BROKER_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define BROKER_LOG_CAP (64u * 1024u)   /* keeps the newest bytes; older ones are dropped */
#define BROKER_START_TIMEOUT_MS 10000  /* until the listening line */
#define BROKER_STOP_TIMEOUT_MS 10000   /* from SIGTERM until exit, then SIGKILL */
#define BROKER_OPTION_MAX 16           /* "-o key=value" overrides per start */
/* Two shards by default, so that clients routinely land on different home shards and the
 * cross-shard paths are exercised; KEELMQ_INTEG_SHARDS=N in the environment overrides it. */
#define BROKER_SHARD_COUNT_DEFAULT 2

struct broker_options {
    uint32_t shard_count;              /* shard.count; 0: $KEELMQ_INTEG_SHARDS or the default */
    /* "key=value" overrides passed as -o, ends at the first NULL. With mosquitto, the keys
     * mqtt.keepalive_max and mqtt.max_packet_size are translated; other keys are ignored. */
    const char *overrides[BROKER_OPTION_MAX];
};

struct broker {
    pid_t pid;                         /* 0 when never started or already reaped */
    bool has_exited;                   /* reaped; wait_status says how it ended */
    int wait_status;
    uint16_t port;
    bool is_mosquitto;
    bool has_drain_thread;
    int stderr_fd;                     /* read end of the child's stderr pipe, -1 when closed */
    char store_dir[PATH_MAX];          /* mkdtemp() directory, removed by broker_stop() */
    char error[256];                   /* why start or stop failed */

    pthread_t drain_thread;
    pthread_mutex_t log_lock;
    char log[BROKER_LOG_CAP];          /* written by the drain thread under log_lock */
    uint32_t log_len;
    bool is_log_truncated;
    char log_snapshot[BROKER_LOG_CAP + 64]; /* broker_log()'s copy, NUL-terminated */
};

/* Starts the broker described by `options` (may be NULL for the defaults) into `broker`,
 * which the caller owns (it is large: make it static). Returns 0 once the broker accepts
 * connections on broker->port, or -1 with broker->error and broker_log() telling why; on
 * failure everything that was started is already cleaned up. */
int broker_start(struct broker *broker, const struct broker_options *options);

/* Sends SIGTERM, waits up to BROKER_STOP_TIMEOUT_MS for the exit (SIGKILL after that), joins
 * the drain thread and removes the store directory. Returns 0 if the broker exited by itself
 * with status 0, -1 otherwise (broker->error says how it ended). Safe to call when the start
 * failed or the broker was already stopped (returns 0 then). The log stays readable. */
int broker_stop(struct broker *broker);

/* Returns a snapshot of the captured stderr (the newest BROKER_LOG_CAP bytes), NUL-terminated,
 * for failure messages. Borrowed from `broker`: valid until the next broker_log() call. Safe
 * while the broker runs (copied under the log lock) and after broker_stop(). */
const char *broker_log(struct broker *broker);

/* Returns true while the broker process has not exited (reaps it if it has, recording how). */
bool broker_is_alive(struct broker *broker);

#endif
