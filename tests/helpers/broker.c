/* tests/helpers/broker.c - broker process control for the integration tests.
 *
 * Startup is synchronised on the broker's own "listening" log line (never on a sleep); exit on
 * a pidfd (poll), with a waitpid loop as fallback on kernels without pidfd_open. The child gets
 * PR_SET_PDEATHSIG so a test process killed by criterion's timeout takes its broker with it.
 * Called from one test process's main thread; the drain thread only appends to the log.
 */
#include "tests/helpers/broker.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define KEELMQ_LISTENING_MARKER "listening tcp 127.0.0.1:"
#define MOSQUITTO_PATH "/usr/sbin/mosquitto"
#define MOSQUITTO_RUNNING_MARKER " running"
#define ARGV_MAX (2 * BROKER_OPTION_MAX + 16)
#define READ_CHUNK 4096

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Appends `len` bytes to the log, keeping the newest BROKER_LOG_CAP bytes. */
static void log_append(struct broker *broker, const char *bytes, uint32_t len)
{
    pthread_mutex_lock(&broker->log_lock);
    if (len >= BROKER_LOG_CAP) {
        bytes += len - BROKER_LOG_CAP;
        len = BROKER_LOG_CAP;
        broker->log_len = 0;
        broker->is_log_truncated = true;
    } else if (broker->log_len + len > BROKER_LOG_CAP) {
        uint32_t drop = broker->log_len + len - BROKER_LOG_CAP;
        memmove(broker->log, broker->log + drop, broker->log_len - drop);
        broker->log_len -= drop;
        broker->is_log_truncated = true;
    }
    memcpy(broker->log + broker->log_len, bytes, len);
    broker->log_len += len;
    pthread_mutex_unlock(&broker->log_lock);
}

const char *broker_log(struct broker *broker)
{
    pthread_mutex_lock(&broker->log_lock);
    int prefix = snprintf(broker->log_snapshot, sizeof(broker->log_snapshot), "%s",
                          broker->is_log_truncated ? "[older log lines dropped]\n" : "");
    memcpy(broker->log_snapshot + prefix, broker->log, broker->log_len);
    broker->log_snapshot[(uint32_t)prefix + broker->log_len] = '\0';
    pthread_mutex_unlock(&broker->log_lock);
    return broker->log_snapshot;
}

static void *drain_thread_main(void *arg)
{
    struct broker *broker = arg;
    char chunk[READ_CHUNK];
    for (;;) {
        ssize_t n = read(broker->stderr_fd, chunk, sizeof(chunk));
        if (n == -1 && errno == EINTR)
            continue;
        if (n <= 0)
            return NULL; /* EOF: the broker exited (or closed stderr) */
        log_append(broker, chunk, (uint32_t)n);
    }
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) == -1 ? -1 : 0;
}

static void remove_store_dir(struct broker *broker)
{
    if (broker->store_dir[0] == '\0')
        return;
    /* Best effort: a failure leaves a directory behind, which the test log shows. */
    if (nftw(broker->store_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) == -1)
        fprintf(stderr, "broker: cannot remove %s: %s\n", broker->store_dir, strerror(errno));
    broker->store_dir[0] = '\0';
}

/* Returns a port that was free a moment ago (mosquitto cannot report an ephemeral port). */
static int free_port(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -errno;
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t addr_len = sizeof(addr);
    int rc = 0;
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) == -1 ||
        getsockname(fd, (struct sockaddr *)&addr, &addr_len) == -1)
        rc = -errno;
    close(fd);
    *port = ntohs(addr.sin_port);
    return rc;
}

/* Writes the mosquitto configuration into the store directory. */
static int write_mosquitto_config(struct broker *broker, const struct broker_options *options,
                                  char *path, size_t path_cap)
{
    snprintf(path, path_cap, "%s/mosquitto.conf", broker->store_dir);
    FILE *file = fopen(path, "w");
    if (file == NULL)
        return -errno;
    /* "user root" keeps mosquitto from switching users when run as root: a credential change
     * would clear PR_SET_PDEATHSIG, and a timed-out test would leave it running. */
    fprintf(file, "persistence false\nlog_dest stderr\nlog_type all\nuser root\n");
    for (uint32_t i = 0; options != NULL && i < BROKER_OPTION_MAX; i++) {
        const char *item = options->overrides[i];
        if (item == NULL)
            break;
        if (strncmp(item, "mqtt.keepalive_max=", 19) == 0)
            fprintf(file, "max_keepalive %s\n", item + 19);
        else if (strncmp(item, "mqtt.max_packet_size=", 21) == 0)
            fprintf(file, "max_packet_size %s\n", item + 21);
    }
    fprintf(file, "listener %u 127.0.0.1\nallow_anonymous true\n", broker->port);
    if (fclose(file) == EOF)
        return -errno;
    return 0;
}

/* Builds argv into `argv` (strings in `storage`). Returns 0 or -1 with broker->error. */
static int build_argv(struct broker *broker, const struct broker_options *options,
                      char *argv[ARGV_MAX], char storage[][PATH_MAX + 64])
{
    uint32_t argc = 0;
    uint32_t used = 0;
    if (broker->is_mosquitto) {
        int rc = free_port(&broker->port);
        if (rc == 0)
            rc = write_mosquitto_config(broker, options, storage[used], PATH_MAX + 64);
        if (rc != 0) {
            snprintf(broker->error, sizeof(broker->error), "mosquitto setup: %s", strerror(-rc));
            return -1;
        }
        argv[argc++] = MOSQUITTO_PATH;
        argv[argc++] = "-c";
        argv[argc++] = storage[used++];
        argv[argc] = NULL;
        return 0;
    }
    const char *build = getenv("BUILD");
    snprintf(storage[used], PATH_MAX + 64, "%s/keelmq", build != NULL ? build : "build");
    argv[argc++] = storage[used++];
    snprintf(storage[used], PATH_MAX + 64, "store.dir=%s", broker->store_dir);
    uint32_t shard_count = options != NULL ? options->shard_count : 0;
    const char *shards_env = getenv("KEELMQ_INTEG_SHARDS");
    if (shard_count == 0 && shards_env != NULL && atoi(shards_env) > 0)
        shard_count = (uint32_t)atoi(shards_env);
    if (shard_count == 0)
        shard_count = BROKER_SHARD_COUNT_DEFAULT;
    snprintf(storage[used + 1], PATH_MAX + 64, "shard.count=%u", shard_count);
    const char *fixed[] = { "listener.tcp.port=0", "listener.tcp.bind=127.0.0.1",
                            storage[used], storage[used + 1] };
    used += 2;
    for (uint32_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        argv[argc++] = "-o";
        argv[argc++] = (char *)fixed[i];
    }
    for (uint32_t i = 0; options != NULL && i < BROKER_OPTION_MAX; i++) {
        if (options->overrides[i] == NULL)
            break;
        argv[argc++] = "-o";
        argv[argc++] = (char *)options->overrides[i];
    }
    argv[argc] = NULL;
    return 0;
}

/* Forks and execs `argv` with stderr on a pipe. Returns 0 or -1 with broker->error. */
static int spawn(struct broker *broker, char *const argv[])
{
    if (access(argv[0], X_OK) == -1) {
        snprintf(broker->error, sizeof(broker->error), "cannot execute %s: %s (build it, or set "
                 "BUILD)", argv[0], strerror(errno));
        return -1;
    }
    int pipe_fds[2];
    if (pipe2(pipe_fds, O_CLOEXEC) == -1) {
        snprintf(broker->error, sizeof(broker->error), "pipe2: %s", strerror(errno));
        return -1;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == -1) {
        snprintf(broker->error, sizeof(broker->error), "fork: %s", strerror(errno));
        close(pipe_fds[0]);
        close(pipe_fds[1]);
        return -1;
    }
    if (pid == 0) {
        /* Child: only async-signal-safe calls until execv. */
        int null_fd = open("/dev/null", O_RDWR);
        if (null_fd != -1) {
            dup2(null_fd, STDIN_FILENO);
            dup2(null_fd, STDOUT_FILENO);
        }
        dup2(pipe_fds[1], STDERR_FILENO);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(126); /* the test process died before prctl took effect */
        execv(argv[0], argv);
        static const char message[] = "broker: execv failed\n";
        ssize_t ignored = write(STDERR_FILENO, message, sizeof(message) - 1);
        (void)ignored; /* nothing left to report to */
        _exit(127);
    }
    close(pipe_fds[1]);
    broker->pid = pid;
    broker->stderr_fd = pipe_fds[0];
    return 0;
}

/* Searches the log for the readiness line; sets broker->port for keelmq. */
static bool is_listening(struct broker *broker)
{
    pthread_mutex_lock(&broker->log_lock);
    bool found = false;
    const char *marker = broker->is_mosquitto ? MOSQUITTO_RUNNING_MARKER
                                              : KEELMQ_LISTENING_MARKER;
    const char *hit = memmem(broker->log, broker->log_len, marker, strlen(marker));
    if (hit != NULL && broker->is_mosquitto) {
        found = true;
    } else if (hit != NULL) {
        const char *digits = hit + strlen(marker);
        const char *end = broker->log + broker->log_len;
        uint32_t port = 0;
        const char *cursor = digits;
        while (cursor < end && *cursor >= '0' && *cursor <= '9' && port <= 65535)
            port = port * 10 + (uint32_t)(*cursor++ - '0');
        /* The number is complete once a non-digit follows it. */
        if (cursor < end && cursor > digits && port > 0 && port <= 65535) {
            broker->port = (uint16_t)port;
            found = true;
        }
    }
    pthread_mutex_unlock(&broker->log_lock);
    return found;
}

/* Reads stderr until the readiness line, EOF or the start timeout. Returns 0 or -1. */
static int wait_listening(struct broker *broker)
{
    uint64_t deadline_ms = now_ms() + BROKER_START_TIMEOUT_MS;
    char chunk[READ_CHUNK];
    while (!is_listening(broker)) {
        uint64_t now = now_ms();
        if (now >= deadline_ms) {
            snprintf(broker->error, sizeof(broker->error), "no listening line within %u ms",
                     BROKER_START_TIMEOUT_MS);
            return -1;
        }
        struct pollfd pfd = { .fd = broker->stderr_fd, .events = POLLIN };
        int ready = poll(&pfd, 1, (int)(deadline_ms - now));
        if (ready == -1 && errno == EINTR)
            continue;
        if (ready == -1) {
            snprintf(broker->error, sizeof(broker->error), "poll: %s", strerror(errno));
            return -1;
        }
        if (ready == 0)
            continue;
        ssize_t n = read(broker->stderr_fd, chunk, sizeof(chunk));
        if (n == -1 && errno == EINTR)
            continue;
        if (n <= 0) {
            snprintf(broker->error, sizeof(broker->error),
                     "broker closed stderr (exited?) before listening");
            return -1;
        }
        log_append(broker, chunk, (uint32_t)n);
    }
    return 0;
}

int broker_start(struct broker *broker, const struct broker_options *options)
{
    memset(broker, 0, sizeof(*broker));
    broker->stderr_fd = -1;
    pthread_mutex_init(&broker->log_lock, NULL);
    const char *kind = getenv("KEELMQ_INTEG_BROKER");
    broker->is_mosquitto = kind != NULL && strcmp(kind, "mosquitto") == 0;

    const char *tmp = getenv("TMPDIR");
    snprintf(broker->store_dir, sizeof(broker->store_dir), "%s/keelmq-integ-XXXXXX",
             tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    if (mkdtemp(broker->store_dir) == NULL) {
        snprintf(broker->error, sizeof(broker->error), "mkdtemp: %s", strerror(errno));
        broker->store_dir[0] = '\0';
        return -1;
    }
    char *argv[ARGV_MAX];
    static char storage[3][PATH_MAX + 64]; /* one test process, one broker at a time */
    if (build_argv(broker, options, argv, storage) != 0 || spawn(broker, argv) != 0)
        goto fail_dir;
    if (wait_listening(broker) != 0)
        goto fail_process;
    if (pthread_create(&broker->drain_thread, NULL, drain_thread_main, broker) != 0) {
        snprintf(broker->error, sizeof(broker->error), "pthread_create failed");
        goto fail_process;
    }
    broker->has_drain_thread = true;
    return 0;

fail_process:
    kill(broker->pid, SIGKILL);
    waitpid(broker->pid, &broker->wait_status, 0);
    broker->has_exited = true;
    broker->pid = 0; /* reaped: broker_stop() has nothing left to stop */
    close(broker->stderr_fd);
    broker->stderr_fd = -1;
fail_dir:
    remove_store_dir(broker);
    return -1;
}

bool broker_is_alive(struct broker *broker)
{
    if (broker->pid == 0 || broker->has_exited)
        return false;
    pid_t reaped = waitpid(broker->pid, &broker->wait_status, WNOHANG);
    if (reaped == broker->pid)
        broker->has_exited = true;
    return !broker->has_exited;
}

/* Waits for the exit until `timeout_ms`. Returns true if the broker was reaped. */
static bool wait_exit(struct broker *broker, uint32_t timeout_ms)
{
    int pidfd = (int)syscall(SYS_pidfd_open, broker->pid, 0);
    uint64_t deadline_ms = now_ms() + timeout_ms;
    while (broker_is_alive(broker)) {
        uint64_t now = now_ms();
        if (now >= deadline_ms)
            break;
        if (pidfd != -1) {
            struct pollfd pfd = { .fd = pidfd, .events = POLLIN };
            (void)poll(&pfd, 1, (int)(deadline_ms - now)); /* the loop re-checks either way */
        } else {
            struct timespec step = { .tv_nsec = 10 * 1000 * 1000 }; /* no pidfd: poll waitpid */
            nanosleep(&step, NULL);
        }
    }
    if (pidfd != -1)
        close(pidfd);
    return broker->has_exited;
}

static void describe_exit(struct broker *broker, bool was_killed)
{
    int status = broker->wait_status;
    if (was_killed)
        snprintf(broker->error, sizeof(broker->error),
                 "did not exit within %u ms of SIGTERM; killed", BROKER_STOP_TIMEOUT_MS);
    else if (WIFSIGNALED(status))
        snprintf(broker->error, sizeof(broker->error), "killed by signal %d (%s)",
                 WTERMSIG(status), strsignal(WTERMSIG(status)));
    else if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
        snprintf(broker->error, sizeof(broker->error), "exit status %d", WEXITSTATUS(status));
}

int broker_stop(struct broker *broker)
{
    bool was_killed = false;
    bool had_exited = broker->has_exited || !broker_is_alive(broker);
    if (broker->pid != 0 && !had_exited) {
        kill(broker->pid, SIGTERM);
        if (!wait_exit(broker, BROKER_STOP_TIMEOUT_MS)) {
            kill(broker->pid, SIGKILL);
            waitpid(broker->pid, &broker->wait_status, 0);
            broker->has_exited = true;
            was_killed = true;
        }
    }
    if (broker->has_drain_thread) {
        pthread_join(broker->drain_thread, NULL);
        broker->has_drain_thread = false;
    }
    if (broker->stderr_fd != -1) {
        close(broker->stderr_fd);
        broker->stderr_fd = -1;
    }
    remove_store_dir(broker);
    if (broker->pid == 0)
        return 0;
    broker->pid = 0;
    describe_exit(broker, was_killed);
    if (had_exited && broker->error[0] == '\0')
        snprintf(broker->error, sizeof(broker->error), "exited before SIGTERM (status 0)");
    bool is_clean = !was_killed && WIFEXITED(broker->wait_status) &&
                    WEXITSTATUS(broker->wait_status) == 0;
    return is_clean && !had_exited ? 0 : -1;
}
