/* core/main.c - the keelmq binary: command line, configuration, startup checks, the shard
 * set, signals and log output.
 *
 * Main thread only. After the shards start, the main thread does three things: it drains the
 * shards' log rings to stderr, it waits for SIGINT/SIGTERM (first: orderly stop; second: exit
 * at once), and it joins the shards.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/config.h"
#include "core/log.h"
#include "core/recovery.h"
#include "core/shard.h"
#include "io/uring.h"

#ifndef KEELMQ_VERSION
#define KEELMQ_VERSION "unknown"
#endif

#define MAIN_LOG_DRAIN_MS 50

static void usage(FILE *out)
{
    fprintf(out,
            "usage: keelmq [-c FILE] [-o KEY=VALUE]... [--print-config]\n"
            "\n"
            "An MQTT 3.1, 3.1.1 and 5.0 broker: one io_uring thread per core.\n"
            "\n"
            "  -c, --config FILE    read a sysctl-style file (key = value, # comments)\n"
            "  -o, --option K=V     override one key (repeatable; applied after -c)\n"
            "      --print-config   print every key with its effective value and exit\n"
            "  -h, --help           show this help and exit\n"
            "  -V, --version        show the version and exit\n"
            "\n"
            "Keys are listed in docs/configuration.md. SIGINT/SIGTERM stop the broker cleanly;\n"
            "a second signal exits at once.\n");
}

/* Parses the command line into `cfg`. Returns -1 to go on, or an exit status. */
static int parse_args(int argc, char **argv, struct config *cfg, bool *print_config)
{
    static const struct option longopts[] = {
        { "config", required_argument, NULL, 'c' }, { "option", required_argument, NULL, 'o' },
        { "print-config", no_argument, NULL, 'p' }, { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },      { NULL, 0, NULL, 0 },
    };
    const char *file = NULL;
    char err[CONFIG_ERR_MAX];
    int opt;
    /* Two passes: the file first, then every -o on top, whatever their order. */
    while ((opt = getopt_long(argc, argv, "c:o:hV", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            file = optarg;
            break;
        case 'o':
            break;
        case 'p':
            *print_config = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("keelmq %s\n", KEELMQ_VERSION);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "keelmq: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (file != NULL && config_load_file(cfg, file, err, sizeof(err)) != 0) {
        fprintf(stderr, "keelmq: config: %s\n", err);
        return 1;
    }
    optind = 1;
    while ((opt = getopt_long(argc, argv, "c:o:hV", longopts, NULL)) != -1) {
        if (opt == 'o' && config_set_override(cfg, optarg, err, sizeof(err)) != 0) {
            fprintf(stderr, "keelmq: -o %s: %s\n", optarg, err);
            return 1;
        }
    }
    if (config_finalize(cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "keelmq: config: %s\n", err);
        return 1;
    }
    return -1;
}

/* Checks what the platform must give us before any thread starts. */
static int check_platform(const struct config *cfg)
{
    char err[512];
    if (uring_probe(err, sizeof(err)) != 0) {
        LOG_ERROR("main", "%s", err);
        return 1;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        cfg->shard_max_connections > rl.rlim_cur) {
        LOG_ERROR("main",
                  "shard.max_connections=%u exceeds RLIMIT_NOFILE=%llu: the kernel caps each "
                  "ring's direct-descriptor table at the fd limit; lower the key or raise "
                  "the limit (each shard has its own table, so total connections are "
                  "shard.count times this)",
                  cfg->shard_max_connections, (unsigned long long)rl.rlim_cur);
        return 1;
    }
    if (mkdir(cfg->store_dir, 0750) == -1 && errno != EEXIST) {
        LOG_ERROR("main", "store.dir=%s cannot be created: %s", cfg->store_dir,
                  strerror(errno));
        return 1;
    }
    return 0;
}

/* Waits for signals while draining logs; returns when every shard has stopped. */
static void run_until_stopped(struct shard_set *set, const sigset_t *sigs)
{
    bool stopping = false;
    for (;;) { /* Ends when all shards have been joined. */
        struct timespec ts = { 0, MAIN_LOG_DRAIN_MS * 1000000L };
        int sig = sigtimedwait(sigs, NULL, &ts);
        shard_set_drain_logs(set);
        if (sig == SIGINT || sig == SIGTERM) {
            if (stopping) {
                LOG_WARN("main", "second signal: exiting at once");
                _exit(130);
            }
            stopping = true;
            LOG_INFO("main", "signal=%s: stopping all shards", sig == SIGINT ? "INT" : "TERM");
            shard_set_stop(set);
        }
        bool all_done = true;
        for (uint16_t i = 0; i < set->started; i++) {
            struct shard *s = &set->shards[i];
            if (s->thread_joined)
                continue;
            if (pthread_tryjoin_np(s->thread, NULL) == 0)
                s->thread_joined = true;
            else
                all_done = false;
        }
        if (all_done)
            return;
    }
}

int main(int argc, char **argv)
{
    static struct config cfg;
    config_defaults(&cfg);
    bool print_config = false;
    int rc = parse_args(argc, argv, &cfg, &print_config);
    if (rc >= 0)
        return rc;
    if (print_config) {
        config_print(&cfg, stdout);
        return 0;
    }
    log_set_level(cfg.log_level);
    LOG_INFO("main", "keelmq %s starting shards=%u store.dir=%s", KEELMQ_VERSION,
             cfg.shard_count, cfg.store_dir);
    if (check_platform(&cfg) != 0)
        return 1;

    /* Signals are taken synchronously by the main thread; shards inherit the mask. SIGPIPE
     * never matters (sends use MSG_NOSIGNAL) but is blocked for safety. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigset_t blocked = sigs;
    sigaddset(&blocked, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &blocked, NULL);

    static struct shard_set set;
    static struct recovery recovered;
    char err[512];
    rc = recovery_run(&recovered, &cfg, err, sizeof(err));
    if (rc < 0) {
        LOG_ERROR("main", "store recovery failed: %s", err);
        recovery_free(&recovered);
        return 1;
    }
    uint16_t port = 0;
    rc = shard_set_create(&set, &cfg, &port, err, sizeof(err));
    if (rc < 0) {
        LOG_ERROR("main", "startup failed: %s", err);
        shard_set_destroy(&set);
        recovery_free(&recovered);
        return 1;
    }
    set.recovery = &recovered;
    rc = shard_set_start(&set, err, sizeof(err));
    /* Every shard has copied what it keeps of the recovered state (they finish setup before
     * shard_set_start returns), so the main thread's copy goes now. */
    set.recovery = NULL;
    recovery_free(&recovered);
    if (rc < 0) {
        LOG_ERROR("main", "startup failed: %s", err);
        (void)shard_set_join(&set); /* They were told to abort. */
        shard_set_destroy(&set);
        return 1;
    }
    LOG_INFO("main", "listening tcp %s:%u", cfg.tcp_bind, port);
    run_until_stopped(&set, &sigs);
    int code = shard_set_join(&set);
    shard_set_destroy(&set);
    LOG_INFO("main", "stopped exit=%d", code);
    return code;
}
