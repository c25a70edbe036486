/* bench/storebench.c - keelmq-storebench: a micro-benchmark of the commit log alone
 * (store/commitlog.h) on its own io_uring, next to the raw disk it writes to.
 *
 * What it measures, in a fresh directory under --dir (removed at exit):
 * 1. raw: the disk's reference figures, measured here in the same run on a preallocated file:
 *    O_DIRECT 4 KiB sequential writes with RWF_DSYNC at queue depth 1 (latency), first into
 *    fallocated blocks (as a commit log segment is) and then over blocks written before; and
 *    O_DIRECT 1 MiB sequential writes at queue depth 4 (bandwidth).
 * 2. append: records of --size payload bytes appended as fast as the log takes them, with
 *    store.flush = sync and then async: records/s and MB/s of durable data.
 * 3. commit: group commit as the broker does it for QoS 1 with store.flush = sync. N simulated
 *    publishers each keep --inflight records outstanding; a record is acknowledged when
 *    durable_off passes its end, and its publisher appends the next one at once (no network
 *    in between). Commit latency is from the append to the completion that made it durable.
 *
 * It drives the log the way core/shard.c does: commitlog_flush once per loop iteration, then
 * submit and reap, dispatching URING_OP_STORE_WRITE / _SYNC completions to commitlog_on_write /
 * commitlog_on_sync. The loop differs from the shard's in one way: it has nothing else to do,
 * so it waits for a completion whenever appending cannot go on.
 *
 * What it does not do: no network, no index (consumeq), no recovery. A failed write is fatal
 * inside the commit log (it _exits and leaves the directory behind).
 *
 * Single-threaded: main() owns everything. Pin it (taskset -c 1). Exits 0, 1 on a failure
 * while running, 2 on bad usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <limits.h>
#include <mntent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "core/histogram.h"
#include "core/config.h"
#include "core/log.h"
#include "io/uring.h"
#include "store/commitlog.h"
#include "store/record.h"

#ifndef KEELMQ_VERSION
#define KEELMQ_VERSION "unknown"
#endif

#define SB_RING_ENTRIES 64u          /* the log submits at most 2 SQEs per loop; raw, 4 */
#define SB_SWEEP_MAX 16u             /* --publishers list entries */
#define SB_PUBLISHERS_MAX 65536u
#define SB_INFLIGHT_MAX 1024u
#define SB_OUTSTANDING_MAX 65536u    /* publishers x inflight: records waiting at once */
#define SB_SIZE_MAX (1u << 20)       /* --size: payload bytes */
#define SB_DURATION_MAX_S 3600.0
#define SB_SEGMENT_MB_MAX 2048u      /* store.segment_bytes is a uint32_t */
#define SB_RAW_MB_MAX (64u << 10)
#define SB_CHUNK_RECORDS 1024u       /* append phase: records appended per loop iteration */
#define SB_MARKS_MAX (1u << 16)      /* append phase: chunk ends waiting to become durable */
#define SB_RAW_SMALL 4096u
#define SB_RAW_LARGE (1u << 20)
#define SB_RAW_LARGE_QD 4u
#define SB_WAIT_NS 1000000           /* a wait's timeout: the async flush interval's grain */
#define SB_PATH_MAX COMMITLOG_DIR_MAX /* a phase directory is a log directory */
#define SB_CLIENT_ID_LEN 16          /* "storebench-NNNNN" */

static const char usage_text[] =
    "usage: keelmq-storebench [options]\n"
    "\n"
    "Measures keelmq's commit log (store/commitlog.h) on its own io_uring and the raw disk\n"
    "under it, in a temporary directory DIR/storebench-XXXXXX that is removed at exit.\n"
    "\n"
    "options (defaults in brackets):\n"
    "  --dir DIR              parent of the temporary directory; use the disk the broker's\n"
    "                         store.dir is on [./build/scratch]\n"
    "  --size BYTES           payload bytes per record, 0..1048576 [256]\n"
    "  --duration S           measured seconds of every phase [5]\n"
    "  --warmup S             unmeasured seconds before each phase's measurement [1]\n"
    "  --publishers N[,N...]  commit phase: simulated publishers, one run per entry, at most\n"
    "                         16 entries of 1..65536 [1,16,256]\n"
    "  --inflight W           commit phase: records each publisher keeps outstanding,\n"
    "                         1..1024, publishers x W at most 65536 [1]\n"
    "  --segment-mb MB        store.segment_bytes in MiB, 1..2048 [128]\n"
    "  --flush-interval-ms MS store.flush_interval_ms of the async append run, 1..10000 [10]\n"
    "  --raw-mb MB            size of the preallocated raw test file in MiB, 16..65536 [1024]\n"
    "  --phases LIST          comma-separated subset of raw,append,commit [raw,append,commit]\n"
    "  --json FILE            write every figure and the machine facts as JSON\n"
    "  --help                 print this text\n"
    "\n"
    "Exits 0, 1 when a phase failed, 2 on bad usage.\n";

struct sb_options {
    const char *dir;
    const char *json_path;
    uint32_t size;
    double duration_s;
    double warmup_s;
    uint32_t publishers[SB_SWEEP_MAX];
    uint32_t publishers_count;
    uint32_t inflight;
    uint32_t segment_mb;
    uint32_t flush_interval_ms;
    uint32_t raw_mb;
    bool run_raw;
    bool run_append;
    bool run_commit;
};

struct sb_latency {
    uint64_t count;
    double p50_us, p90_us, p99_us, p999_us, max_us;
};

struct sb_raw_result {
    bool is_done;
    struct sb_latency dsync;       /* 4 KiB RWF_DSYNC QD 1 into fallocated blocks */
    double dsync_per_s;
    struct sb_latency dsync_over;  /* the same over blocks written before */
    double dsync_over_per_s;
    double bw_mb_s;                /* 1 MiB QD 4, MB = 10^6 bytes */
};

struct sb_append_result {
    bool is_done;
    enum store_flush flush;
    double records_per_s;
    double payload_mb_s;
    double log_mb_s;               /* durable_off progress (records, PADs) */
    double disk_mb_s;              /* bytes written */
    uint64_t writes;
    uint64_t syncs;
    double avg_write_kib;
};

struct sb_commit_result {
    uint32_t publishers;
    uint32_t inflight;
    double records_per_s;
    uint64_t records;
    uint64_t writes;
    double records_per_write;
    double payload_mb_s;
    double disk_mb_s;
    uint64_t segment_rolls;        /* segments created in the loop during the window */
    struct sb_latency latency;
};

struct sb_machine {
    char kernel[256];
    char cpu_model[256];
    long cpus;
    char fs_type[64];
    char fs_device[256];
    char dir[PATH_MAX];
};

/* Everything one run owns. */
struct sb {
    struct sb_options opt;
    struct io_uring ring;
    char tmp_dir[SB_PATH_MAX - 64]; /* room for a phase's name under it */
    uint8_t *payload;
    struct histogram hist;
    struct sb_machine machine;
    struct sb_raw_result raw;
    struct sb_append_result append[2];
    struct sb_commit_result commit[SB_SWEEP_MAX];
    uint32_t commit_count;
};

/* Set by SIGINT/SIGTERM, read by every phase loop: the one mutable global, because a signal
 * handler has no other way to reach the loop. */
static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

/* ---- options ---------------------------------------------------------------------------- */

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "keelmq-storebench: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(--help lists the options)\n");
    return 2;
}

static bool parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v < lo || v > hi)
        return false;
    *out = (uint32_t)v;
    return true;
}

static bool parse_seconds(const char *s, double lo, double *out)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(v >= lo) || v > SB_DURATION_MAX_S)
        return false;
    *out = v;
    return true;
}

static bool parse_publishers(const char *s, struct sb_options *o)
{
    char buf[256];
    if (snprintf(buf, sizeof(buf), "%s", s) >= (int)sizeof(buf))
        return false;
    o->publishers_count = 0;
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
        if (o->publishers_count == SB_SWEEP_MAX ||
            !parse_u32(t, 1, SB_PUBLISHERS_MAX, &o->publishers[o->publishers_count]))
            return false;
        o->publishers_count++;
    }
    return o->publishers_count > 0;
}

static bool parse_phases(const char *s, struct sb_options *o)
{
    char buf[64];
    if (snprintf(buf, sizeof(buf), "%s", s) >= (int)sizeof(buf))
        return false;
    o->run_raw = o->run_append = o->run_commit = false;
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
        if (strcmp(t, "raw") == 0)
            o->run_raw = true;
        else if (strcmp(t, "append") == 0)
            o->run_append = true;
        else if (strcmp(t, "commit") == 0)
            o->run_commit = true;
        else
            return false;
    }
    return o->run_raw || o->run_append || o->run_commit;
}

/* Returns -1 to go on, else the exit code (0 after --help, 2 on bad usage). */
static int parse_options(int argc, char **argv, struct sb_options *o)
{
    static const struct option longs[] = {
        { "dir", required_argument, NULL, 'd' },
        { "size", required_argument, NULL, 's' },
        { "duration", required_argument, NULL, 't' },
        { "warmup", required_argument, NULL, 'w' },
        { "publishers", required_argument, NULL, 'p' },
        { "inflight", required_argument, NULL, 'i' },
        { "segment-mb", required_argument, NULL, 'g' },
        { "flush-interval-ms", required_argument, NULL, 'f' },
        { "raw-mb", required_argument, NULL, 'r' },
        { "phases", required_argument, NULL, 'P' },
        { "json", required_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    *o = (struct sb_options){ .dir = "./build/scratch", .size = 256, .duration_s = 5.0,
                              .warmup_s = 1.0, .publishers = { 1, 16, 256 },
                              .publishers_count = 3, .inflight = 1, .segment_mb = 128,
                              .flush_interval_ms = 10, .raw_mb = 1024, .run_raw = true,
                              .run_append = true, .run_commit = true };
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":", longs, NULL)) != -1) {
        bool ok = true;
        switch (c) {
        case 'd': o->dir = optarg; break;
        case 'j': o->json_path = optarg; break;
        case 's': ok = parse_u32(optarg, 0, SB_SIZE_MAX, &o->size); break;
        case 't': ok = parse_seconds(optarg, 0.1, &o->duration_s); break;
        case 'w': ok = parse_seconds(optarg, 0.0, &o->warmup_s); break;
        case 'p': ok = parse_publishers(optarg, o); break;
        case 'i': ok = parse_u32(optarg, 1, SB_INFLIGHT_MAX, &o->inflight); break;
        case 'g': ok = parse_u32(optarg, 1, SB_SEGMENT_MB_MAX, &o->segment_mb); break;
        case 'f': ok = parse_u32(optarg, 1, 10000, &o->flush_interval_ms); break;
        case 'r': ok = parse_u32(optarg, 16, SB_RAW_MB_MAX, &o->raw_mb); break;
        case 'P': ok = parse_phases(optarg, o); break;
        case 'h': fputs(usage_text, stdout); return 0;
        case ':': return usage_error("option %s needs a value", argv[optind - 1]);
        default: return usage_error("unknown option %s", argv[optind - 1]);
        }
        if (!ok)
            return usage_error("bad value '%s' (see --help for the ranges)", optarg);
    }
    if (optind < argc)
        return usage_error("unexpected argument %s", argv[optind]);
    for (uint32_t i = 0; i < o->publishers_count; i++)
        if ((uint64_t)o->publishers[i] * o->inflight > SB_OUTSTANDING_MAX)
            return usage_error("--publishers x --inflight above 65536%s", "");
    if ((uint64_t)o->segment_mb << 20 > UINT32_MAX - RECORD_BLOCK)
        return usage_error("--segment-mb %s too large", "");
    if (record_message_len(&(struct record_message){ .payload.len = o->size }) + 2 * 4096ull >
        (uint64_t)o->segment_mb << 20)
        return usage_error("a record of --size bytes does not fit a segment%s", "");
    return -1;
}

/* ---- machine facts ---------------------------------------------------------------------- */

static void read_cpu_model(char *out, size_t out_len)
{
    snprintf(out, out_len, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f == NULL)
        return;
    char line[512];
    while (fgets(line, sizeof(line), f) != NULL) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) == 0 && colon != NULL) {
            colon += colon[1] == ' ' ? 2 : 1;
            colon[strcspn(colon, "\n")] = '\0';
            snprintf(out, out_len, "%s", colon);
            break;
        }
    }
    fclose(f);
}

/* The filesystem `path` is on: the longest mount point that is a prefix of its real path. */
static void read_fs_type(const char *path, struct sb_machine *m)
{
    snprintf(m->fs_type, sizeof(m->fs_type), "unknown");
    snprintf(m->fs_device, sizeof(m->fs_device), "unknown");
    if (realpath(path, m->dir) == NULL)
        snprintf(m->dir, sizeof(m->dir), "%s", path);
    FILE *f = setmntent("/proc/self/mounts", "r");
    if (f == NULL)
        return;
    size_t best = 0;
    struct mntent *e;
    while ((e = getmntent(f)) != NULL) {
        size_t n = strlen(e->mnt_dir);
        bool is_prefix = strncmp(m->dir, e->mnt_dir, n) == 0 &&
                         (m->dir[n] == '/' || m->dir[n] == '\0' || strcmp(e->mnt_dir, "/") == 0);
        if (is_prefix && n >= best) {
            best = n;
            snprintf(m->fs_type, sizeof(m->fs_type), "%s", e->mnt_type);
            snprintf(m->fs_device, sizeof(m->fs_device), "%s", e->mnt_fsname);
        }
    }
    endmntent(f);
}

static void read_machine(const char *dir, struct sb_machine *m)
{
    struct utsname u;
    if (uname(&u) == 0)
        snprintf(m->kernel, sizeof(m->kernel), "%s %s %s", u.sysname, u.release, u.machine);
    else
        snprintf(m->kernel, sizeof(m->kernel), "unknown");
    read_cpu_model(m->cpu_model, sizeof(m->cpu_model));
    m->cpus = sysconf(_SC_NPROCESSORS_ONLN);
    read_fs_type(dir, m);
}

/* ---- small helpers ---------------------------------------------------------------------- */

static struct sb_latency latency_of(const struct histogram *h)
{
    return (struct sb_latency){
        .count = h->total_count,
        .p50_us = (double)histogram_percentile(h, 50.0) / 1e3,
        .p90_us = (double)histogram_percentile(h, 90.0) / 1e3,
        .p99_us = (double)histogram_percentile(h, 99.0) / 1e3,
        .p999_us = (double)histogram_percentile(h, 99.9) / 1e3,
        .max_us = h->total_count > 0 ? (double)h->max / 1e3 : 0.0,
    };
}

static uint64_t seconds_ns(double s)
{
    return (uint64_t)(s * 1e9);
}

static double per_s(uint64_t n, uint64_t ns)
{
    return ns > 0 ? (double)n * 1e9 / (double)ns : 0.0;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    if (remove(path) == -1)
        fprintf(stderr, "keelmq-storebench: cannot remove %s: %s\n", path, strerror(errno));
    return 0; /* Go on: remove as much as can be removed. */
}

/* Removes `dir` and everything in it (a directory this program created). */
static void remove_tree(const char *dir)
{
    (void)nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS); /* errors printed per entry */
}

/* Commits the filesystem's journal and writeback after a phase, so the removal of its
 * gigabytes is not paid for inside the next phase's measurement. */
static void settle_fs(const struct sb *b)
{
    int fd = open(b->tmp_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd == -1)
        return; /* only a quieter start of the next phase is lost */
    (void)syncfs(fd); /* the same */
    close(fd);
}

/* ---- the commit log's loop ---------------------------------------------------------------- */

/* One iteration of the shard's store work: flush, submit, and (with `wait`) wait up to
 * SB_WAIT_NS for a completion; then dispatch every completion to the log. */
static void log_pump(struct sb *b, struct commitlog *log, bool wait)
{
    commitlog_flush(log, &b->ring, base_now_ms());
    int rc;
    if (wait) {
        struct __kernel_timespec ts = { .tv_sec = 0, .tv_nsec = SB_WAIT_NS };
        struct io_uring_cqe *cqe;
        rc = io_uring_submit_and_wait_timeout(&b->ring, &cqe, 1, &ts, NULL);
        ASSERT(rc >= 0 || rc == -ETIME || rc == -EINTR || rc == -EAGAIN || rc == -EBUSY);
    } else {
        rc = io_uring_submit_and_get_events(&b->ring);
        ASSERT(rc >= 0 || rc == -EINTR || rc == -EAGAIN || rc == -EBUSY);
    }
    unsigned head;
    unsigned n = 0;
    struct io_uring_cqe *cqe;
    io_uring_for_each_cqe(&b->ring, head, cqe)
    {
        uint64_t ud = io_uring_cqe_get_data64(cqe);
        if (uring_ud_op(ud) == URING_OP_STORE_WRITE)
            commitlog_on_write(log, cqe->res);
        else if (uring_ud_op(ud) == URING_OP_STORE_SYNC)
            commitlog_on_sync(log, cqe->res);
        else
            ASSERT(!"a completion the log did not submit");
        n++;
    }
    io_uring_cq_advance(&b->ring, n);
}

/* Opens a fresh log in tmp_dir/`name`. */
static int log_open(struct sb *b, struct commitlog *log, const char *name,
                    enum store_flush flush, char *dir, size_t dir_len)
{
    struct config cfg;
    config_defaults(&cfg);
    cfg.store_flush = flush;
    cfg.store_segment_bytes = b->opt.segment_mb << 20;
    cfg.store_flush_interval_ms = b->opt.flush_interval_ms;
    if (snprintf(dir, dir_len, "%s/%s", b->tmp_dir, name) >= (int)dir_len)
        return -ENAMETOOLONG;
    char err[512];
    int rc = commitlog_open(log, dir, &cfg, 0, 0, err, sizeof(err));
    if (rc < 0)
        fprintf(stderr, "keelmq-storebench: commitlog_open: %s\n", err);
    return rc;
}

/* Waits until everything appended is durable, closes the log and removes its directory. */
static void log_finish(struct sb *b, struct commitlog *log, const char *dir)
{
    while (commitlog_busy(log))
        log_pump(b, log, true);
    commitlog_close(log);
    remove_tree(dir);
    settle_fs(b);
}

static struct record_message make_record(const struct sb *b, const char *client_id)
{
    return (struct record_message){
        .timestamp_ns = 0,
        .qos = 1,
        .topic = slice_from_cstr("storebench/t"),
        .client_id = slice_from_cstr(client_id),
        .payload = { b->payload, b->opt.size },
    };
}

/* ---- phase: append throughput ------------------------------------------------------------- */

/* Where a chunk of appends ends, and how many records were appended up to it. */
struct sb_mark {
    uint64_t end_off;
    uint64_t records;
};

/* What the append phase counts, read at the window's start and end. */
struct sb_append_snap {
    uint64_t ns;
    uint64_t records;      /* durable records */
    uint64_t durable_off;
    uint64_t bytes_written;
    uint64_t writes;
    uint64_t syncs;
};

/* Appends up to SB_CHUNK_RECORDS records. Returns how many, or -errno other than -ENOBUFS;
 * sets *is_full when the log said -ENOBUFS. */
static int64_t append_chunk(struct sb *b, struct commitlog *log, bool *is_full)
{
    struct record_message m = make_record(b, "storebench-00000");
    m.timestamp_ns = base_now_ns(); /* one clock read per chunk: the cost is the log's */
    int64_t n = 0;
    while (n < SB_CHUNK_RECORDS) {
        int64_t off = commitlog_append_message(log, &m);
        if (off == -ENOBUFS) {
            *is_full = true;
            break;
        }
        if (off < 0)
            return off;
        n++;
    }
    return n;
}

static int run_append(struct sb *b, enum store_flush flush, struct sb_append_result *out)
{
    struct commitlog log;
    char dir[SB_PATH_MAX];
    int rc = log_open(b, &log, flush == STORE_FLUSH_SYNC ? "append-sync" : "append-async",
                      flush, dir, sizeof(dir));
    if (rc < 0)
        return rc;
    struct sb_mark *marks = calloc(SB_MARKS_MAX, sizeof(*marks));
    if (marks == NULL) {
        log_finish(b, &log, dir);
        return -ENOMEM;
    }
    uint32_t mark_head = 0, mark_count = 0;
    uint64_t appended = 0, durable = 0;
    uint64_t start = base_now_ns();
    uint64_t window_start = start + seconds_ns(b->opt.warmup_s);
    uint64_t window_end = window_start + seconds_ns(b->opt.duration_s);
    struct sb_append_snap snap[2] = { 0 };
    bool is_paused = false, has_window_start = false;
    for (;;) {
        uint64_t now = base_now_ns();
        if (!has_window_start && now >= window_start) {
            snap[0] = (struct sb_append_snap){ now, durable, log.durable_off,
                                               log.bytes_written, log.writes, log.syncs };
            has_window_start = true;
        }
        if (now >= window_end || stop_requested) {
            snap[1] = (struct sb_append_snap){ now, durable, log.durable_off,
                                               log.bytes_written, log.writes, log.syncs };
            break;
        }
        if (!is_paused && mark_count < SB_MARKS_MAX) {
            int64_t n = append_chunk(b, &log, &is_paused);
            if (n < 0) {
                rc = (int)n;
                break;
            }
            if (n > 0) {
                appended += (uint64_t)n;
                marks[(mark_head + mark_count) % SB_MARKS_MAX] =
                    (struct sb_mark){ log.append_off, appended };
                mark_count++;
            }
        }
        bool must_wait = is_paused || mark_count == SB_MARKS_MAX;
        log_pump(b, &log, must_wait);
        if (is_paused && commitlog_has_room(&log))
            is_paused = false;
        while (mark_count > 0 && marks[mark_head].end_off <= log.durable_off) {
            durable = marks[mark_head].records;
            mark_head = (mark_head + 1) % SB_MARKS_MAX;
            mark_count--;
        }
    }
    free(marks);
    log_finish(b, &log, dir);
    if (rc < 0 || stop_requested || !has_window_start)
        return rc < 0 ? rc : -EINTR;
    uint64_t ns = snap[1].ns - snap[0].ns;
    uint64_t records = snap[1].records - snap[0].records;
    uint64_t writes = snap[1].writes - snap[0].writes;
    uint64_t bytes = snap[1].bytes_written - snap[0].bytes_written;
    *out = (struct sb_append_result){
        .is_done = true,
        .flush = flush,
        .records_per_s = per_s(records, ns),
        .payload_mb_s = per_s(records * b->opt.size, ns) / 1e6,
        .log_mb_s = per_s(snap[1].durable_off - snap[0].durable_off, ns) / 1e6,
        .disk_mb_s = per_s(bytes, ns) / 1e6,
        .writes = writes,
        .syncs = snap[1].syncs - snap[0].syncs,
        .avg_write_kib = writes > 0 ? (double)bytes / (double)writes / 1024.0 : 0.0,
    };
    return 0;
}

/* ---- phase: durable commit latency with group commit ---------------------------------------- */

/* One record a publisher waits for, in append (= log) order. */
struct sb_pending {
    uint64_t end_off;
    uint64_t append_ns;
    uint32_t publisher;
};

struct sb_commit_state {
    struct sb_pending *fifo;
    uint32_t cap;
    uint32_t head;
    uint32_t count;
    char (*client_ids)[SB_CLIENT_ID_LEN + 1];
};

static int commit_append(struct sb *b, struct commitlog *log, struct sb_commit_state *st,
                         uint32_t publisher)
{
    ASSERT(st->count < st->cap);
    struct record_message m = make_record(b, st->client_ids[publisher]);
    uint64_t now = base_now_ns();
    m.timestamp_ns = now;
    int64_t off = commitlog_append_message(log, &m);
    if (off < 0)
        return (int)off;
    st->fifo[(st->head + st->count) % st->cap] = (struct sb_pending){
        .end_off = (uint64_t)off + record_message_len(&m), .append_ns = now,
        .publisher = publisher };
    st->count++;
    return 0;
}

/* The measured window and the log's counters at its edges, taken by the first loop
 * iteration past each edge. */
struct sb_commit_window {
    uint64_t start_ns;
    uint64_t end_ns;
    bool has_start;
    bool has_end;
    uint64_t writes[2];
    uint64_t bytes[2];
    uint64_t seg_base[2];
    uint64_t records;      /* completions inside the window */
};

/* The closed loop: pops every record that durable_off passed, records its latency when it
 * completed inside the window, and lets its publisher append the next one until the window
 * ends; then drains. Returns 0 or -errno. */
static int commit_loop(struct sb *b, struct commitlog *log, struct sb_commit_state *st,
                       struct sb_commit_window *w)
{
    while (st->count > 0) {
        log_pump(b, log, true);
        uint64_t now = base_now_ns();
        if (!w->has_start && now >= w->start_ns) {
            w->writes[0] = log->writes;
            w->bytes[0] = log->bytes_written;
            w->seg_base[0] = log->seg_base;
            w->has_start = true;
        }
        if (!w->has_end && (now >= w->end_ns || stop_requested)) {
            w->writes[1] = log->writes;
            w->bytes[1] = log->bytes_written;
            w->seg_base[1] = log->seg_base;
            w->has_end = true;
        }
        bool in_window = w->has_start && !w->has_end;
        while (st->count > 0 && st->fifo[st->head].end_off <= log->durable_off) {
            struct sb_pending p = st->fifo[st->head];
            st->head = (st->head + 1) % st->cap;
            st->count--;
            if (in_window) {
                histogram_record(&b->hist, now - p.append_ns);
                w->records++;
            }
            if (!w->has_end) {
                int rc = commit_append(b, log, st, p.publisher);
                if (rc < 0)
                    return rc;
            }
        }
    }
    return 0;
}

static int run_commit(struct sb *b, uint32_t publishers, struct sb_commit_result *out)
{
    struct commitlog log;
    char dir[SB_PATH_MAX];
    char name[32];
    snprintf(name, sizeof(name), "commit-%u", publishers);
    int rc = log_open(b, &log, name, STORE_FLUSH_SYNC, dir, sizeof(dir));
    if (rc < 0)
        return rc;
    struct sb_commit_state st = { .cap = publishers * b->opt.inflight };
    st.fifo = calloc(st.cap, sizeof(*st.fifo));
    st.client_ids = calloc(publishers, sizeof(*st.client_ids));
    if (st.fifo == NULL || st.client_ids == NULL) {
        rc = -ENOMEM;
        goto done;
    }
    for (uint32_t i = 0; i < publishers; i++)
        snprintf(st.client_ids[i], sizeof(st.client_ids[i]), "storebench-%05u", i % 100000u);
    histogram_reset(&b->hist);
    struct sb_commit_window w = { .start_ns = base_now_ns() + seconds_ns(b->opt.warmup_s) };
    w.end_ns = w.start_ns + seconds_ns(b->opt.duration_s);
    /* Every publisher starts with its --inflight records. */
    for (uint32_t i = 0; i < st.cap && rc == 0; i++)
        rc = commit_append(b, &log, &st, i % publishers);
    if (rc == 0)
        rc = commit_loop(b, &log, &st, &w);
    if (rc == 0 && !stop_requested) {
        ASSERT(w.has_start && w.has_end);
        uint64_t ns = w.end_ns - w.start_ns;
        uint64_t writes = w.writes[1] - w.writes[0];
        *out = (struct sb_commit_result){
            .publishers = publishers,
            .inflight = b->opt.inflight,
            .records_per_s = per_s(w.records, ns),
            .records = w.records,
            .writes = writes,
            .records_per_write = writes > 0 ? (double)w.records / (double)writes : 0.0,
            .payload_mb_s = per_s(w.records * b->opt.size, ns) / 1e6,
            .disk_mb_s = per_s(w.bytes[1] - w.bytes[0], ns) / 1e6,
            .segment_rolls = (w.seg_base[1] - w.seg_base[0]) / ((uint64_t)b->opt.segment_mb << 20),
            .latency = latency_of(&b->hist),
        };
    }
done:
    free(st.fifo);
    free(st.client_ids);
    log_finish(b, &log, dir);
    return rc < 0 ? rc : stop_requested ? -EINTR : 0;
}

/* ---- phase: the raw disk ------------------------------------------------------------------ */

/* Submits one O_DIRECT write of `len` bytes at `off` tagged with `slot`. */
static void raw_submit(struct sb *b, int fd, const uint8_t *buf, uint32_t len, uint64_t off,
                       bool is_dsync, uint32_t slot)
{
    struct io_uring_sqe *sqe = uring_sqe(&b->ring);
    io_uring_prep_write(sqe, fd, buf, len, off);
    if (is_dsync)
        sqe->rw_flags = RWF_DSYNC;
    io_uring_sqe_set_data64(sqe, uring_ud(URING_OP_NONE, 0, slot));
}

/* Waits for one completion; returns its slot, or -errno (a failed or short write). */
static int raw_reap(struct sb *b, uint32_t len)
{
    struct io_uring_cqe *cqe;
    int rc = io_uring_submit_and_wait(&b->ring, 1);
    if (rc < 0 && rc != -EINTR)
        return rc;
    rc = io_uring_peek_cqe(&b->ring, &cqe);
    if (rc < 0)
        return rc == -EAGAIN ? raw_reap(b, len) : rc; /* woken by a signal: wait again */
    int res = cqe->res;
    uint32_t slot = uring_ud_idx(io_uring_cqe_get_data64(cqe));
    io_uring_cqe_seen(&b->ring, cqe);
    if (res < 0 || (uint32_t)res != len) {
        fprintf(stderr, "keelmq-storebench: raw write failed: %s\n",
                res < 0 ? strerror(-res) : "short write");
        return res < 0 ? res : -EIO;
    }
    return (int)slot;
}

/* 4 KiB RWF_DSYNC writes at queue depth 1, sequential over [0, range) and wrapping. */
static int raw_dsync(struct sb *b, int fd, uint64_t range, const uint8_t *buf,
                     struct sb_latency *lat, double *writes_per_s)
{
    histogram_reset(&b->hist);
    uint64_t start = base_now_ns();
    uint64_t window_start = start + seconds_ns(b->opt.warmup_s);
    uint64_t window_end = window_start + seconds_ns(b->opt.duration_s);
    uint64_t off = 0;
    for (;;) {
        uint64_t t0 = base_now_ns();
        if (t0 >= window_end || stop_requested)
            break;
        raw_submit(b, fd, buf, SB_RAW_SMALL, off, true, 0);
        int rc = raw_reap(b, SB_RAW_SMALL);
        if (rc < 0)
            return rc;
        if (t0 >= window_start)
            histogram_record(&b->hist, base_now_ns() - t0);
        off = (off + SB_RAW_SMALL) % range;
    }
    *lat = latency_of(&b->hist);
    *writes_per_s = per_s(b->hist.total_count, window_end - window_start);
    return stop_requested ? -EINTR : 0;
}

/* 1 MiB writes at queue depth SB_RAW_LARGE_QD, sequential over [0, size) and wrapping. Sets
 * *written_end to the end of the highest range written. */
static int raw_bandwidth(struct sb *b, int fd, uint64_t size, const uint8_t *bufs,
                         double *mb_s, uint64_t *written_end)
{
    uint64_t start = base_now_ns();
    uint64_t window_start = start + seconds_ns(b->opt.warmup_s);
    uint64_t window_end = window_start + seconds_ns(b->opt.duration_s);
    uint64_t off = 0, window_bytes = 0, end = 0;
    uint32_t inflight = 0;
    for (uint32_t i = 0; i < SB_RAW_LARGE_QD; i++) {
        raw_submit(b, fd, bufs + (size_t)i * SB_RAW_LARGE, SB_RAW_LARGE, off, false, i);
        off = (off + SB_RAW_LARGE) % size;
        inflight++;
    }
    uint64_t t_first = 0, t_last = 0;
    while (inflight > 0) {
        int slot = raw_reap(b, SB_RAW_LARGE);
        if (slot < 0)
            return slot;
        inflight--;
        uint64_t now = base_now_ns();
        end = MAX(end, MIN(size, off == 0 ? size : off));
        if (now >= window_start && now < window_end) {
            if (t_first == 0)
                t_first = now;
            else
                window_bytes += SB_RAW_LARGE; /* bytes completed after the first stamp */
            t_last = now;
        }
        if (now < window_end && !stop_requested) {
            raw_submit(b, fd, bufs + (size_t)slot * SB_RAW_LARGE, SB_RAW_LARGE, off, false,
                       (uint32_t)slot);
            off = (off + SB_RAW_LARGE) % size;
            inflight++;
        }
    }
    *mb_s = per_s(window_bytes, t_last - t_first) / 1e6;
    *written_end = end;
    return stop_requested ? -EINTR : 0;
}

static int run_raw(struct sb *b)
{
    char path[SB_PATH_MAX];
    if (snprintf(path, sizeof(path), "%s/raw.dat", b->tmp_dir) >= (int)sizeof(path))
        return -ENAMETOOLONG;
    uint64_t size = (uint64_t)b->opt.raw_mb << 20;
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_DIRECT | O_CLOEXEC, 0600);
    if (fd == -1) {
        int err = errno;
        fprintf(stderr, "keelmq-storebench: %s: %s\n", path, strerror(err));
        return -err;
    }
    uint8_t *bufs = NULL;
    int rc = 0;
    /* Preallocated like a segment (store/segment.c): fallocate, then fsync. */
    if (fallocate(fd, 0, 0, (off_t)size) == -1 || fsync(fd) == -1) {
        rc = -errno;
        fprintf(stderr, "keelmq-storebench: preallocating %s: %s\n", path, strerror(-rc));
        goto done;
    }
    if (posix_memalign((void **)&bufs, RECORD_BLOCK, (size_t)SB_RAW_LARGE * SB_RAW_LARGE_QD)) {
        rc = -ENOMEM;
        goto done;
    }
    for (size_t i = 0; i < (size_t)SB_RAW_LARGE * SB_RAW_LARGE_QD; i++)
        bufs[i] = (uint8_t)(i * 131u + 7u); /* not zeros: nothing below may elide them */
    rc = raw_dsync(b, fd, size, bufs, &b->raw.dsync, &b->raw.dsync_per_s);
    uint64_t written_end = 0;
    if (rc == 0)
        rc = raw_bandwidth(b, fd, size, bufs, &b->raw.bw_mb_s, &written_end);
    if (rc == 0)
        rc = raw_dsync(b, fd, written_end, bufs, &b->raw.dsync_over, &b->raw.dsync_over_per_s);
    b->raw.is_done = rc == 0;
done:
    free(bufs);
    close(fd);
    if (unlink(path) == -1)
        fprintf(stderr, "keelmq-storebench: cannot remove %s: %s\n", path, strerror(errno));
    settle_fs(b);
    return rc;
}

/* ---- output ----------------------------------------------------------------------------- */

#define SB_TARGET_RECORDS_PER_S 100000.0 /* issue target: durable QoS 1 messages/s ... */
#define SB_TARGET_P99_US 2000.0          /* ... with commit p99 at most this */

static bool commit_meets_target(const struct sb_commit_result *c)
{
    return c->records_per_s >= SB_TARGET_RECORDS_PER_S && c->latency.p99_us <= SB_TARGET_P99_US;
}

static double ratio_to_raw(const struct sb *b, double mb_s)
{
    return b->raw.is_done && b->raw.bw_mb_s > 0 ? mb_s / b->raw.bw_mb_s : 0.0;
}

/* " (0.123 of raw)", or nothing when the raw phase did not run. */
static const char *ratio_text(const struct sb *b, double mb_s, char *buf, size_t buf_len)
{
    if (!b->raw.is_done)
        return "";
    snprintf(buf, buf_len, " (%.3f of raw)", ratio_to_raw(b, mb_s));
    return buf;
}

static void print_latency_row(const char *name, double per_sec, const struct sb_latency *l)
{
    printf("  %-34s %10.0f/s  p50 %8.1f  p90 %8.1f  p99 %8.1f  p99.9 %8.1f  max %8.1f us\n",
           name, per_sec, l->p50_us, l->p90_us, l->p99_us, l->p999_us, l->max_us);
}

static void print_table(const struct sb *b)
{
    const struct sb_machine *m = &b->machine;
    printf("keelmq-storebench %s: %s, %ld CPUs, %s on %s (%s)\n", KEELMQ_VERSION, m->kernel,
           m->cpus, m->dir, m->fs_type, m->fs_device);
    printf("record: %u B payload, %u B in the log; segment %u MiB; warmup %.1f s, measured "
           "%.1f s per phase\n", b->opt.size,
           record_message_len(&(struct record_message){ .topic = slice_from_cstr("storebench/t"),
                                                         .client_id.len = SB_CLIENT_ID_LEN,
                                                         .payload.len = b->opt.size }),
           b->opt.segment_mb, b->opt.warmup_s, b->opt.duration_s);
    if (b->raw.is_done) {
        printf("\nraw disk (O_DIRECT, preallocated file, %u MiB)\n", b->opt.raw_mb);
        print_latency_row("4 KiB RWF_DSYNC QD1, fallocated", b->raw.dsync_per_s, &b->raw.dsync);
        print_latency_row("4 KiB RWF_DSYNC QD1, overwrite", b->raw.dsync_over_per_s,
                          &b->raw.dsync_over);
        printf("  %-34s %10.1f MB/s\n", "1 MiB writes QD4", b->raw.bw_mb_s);
    }
    for (uint32_t i = 0; i < 2; i++) {
        const struct sb_append_result *a = &b->append[i];
        if (!a->is_done)
            continue;
        if (i == 0 || !b->append[0].is_done)
            printf("\nappend throughput (durable)\n");
        char ratio[32];
        printf("  flush=%-5s %10.0f rec/s  payload %7.1f MB/s  log %7.1f MB/s  disk %7.1f MB/s"
               "%s  writes %llu of %.0f KiB avg  syncs %llu\n",
               a->flush == STORE_FLUSH_SYNC ? "sync" : "async", a->records_per_s,
               a->payload_mb_s, a->log_mb_s, a->disk_mb_s,
               ratio_text(b, a->disk_mb_s, ratio, sizeof(ratio)),
               (unsigned long long)a->writes, a->avg_write_kib, (unsigned long long)a->syncs);
    }
    if (b->commit_count > 0)
        printf("\ncommit latency, flush=sync, group commit (inflight %u per publisher)\n",
               b->opt.inflight);
    for (uint32_t i = 0; i < b->commit_count; i++) {
        const struct sb_commit_result *c = &b->commit[i];
        char name[64], ratio[32], payload_ratio[32];
        snprintf(name, sizeof(name), "%u publishers, %.1f rec/write", c->publishers,
                 c->records_per_write);
        print_latency_row(name, c->records_per_s, &c->latency);
        printf("  %-34s disk %.1f MB/s%s, payload %.1f MB/s%s, %llu writes, %llu segment "
               "rolls; target %s\n", "", c->disk_mb_s,
               ratio_text(b, c->disk_mb_s, ratio, sizeof(ratio)), c->payload_mb_s,
               ratio_text(b, c->payload_mb_s, payload_ratio, sizeof(payload_ratio)),
               (unsigned long long)c->writes, (unsigned long long)c->segment_rolls,
               commit_meets_target(c) ? "met" : "not met");
    }
}

static void json_latency(FILE *f, const char *key, const struct sb_latency *l)
{
    fprintf(f, "\"%s\": {\"count\": %llu, \"p50\": %.1f, \"p90\": %.1f, \"p99\": %.1f, "
            "\"p999\": %.1f, \"max\": %.1f}", key, (unsigned long long)l->count, l->p50_us,
            l->p90_us, l->p99_us, l->p999_us, l->max_us);
}

/* Writes `s` as a JSON string (the facts are plain text; escape the few that matter). */
static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s != '\0'; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', f);
        if ((unsigned char)*s >= 0x20)
            fputc(*s, f);
    }
    fputc('"', f);
}

static void json_raw_and_append(FILE *f, const struct sb *b)
{
    fprintf(f, "  \"raw\": ");
    if (!b->raw.is_done) {
        fprintf(f, "null,\n");
    } else {
        fprintf(f, "{\"dsync_4k_qd1\": {\"writes_per_s\": %.0f, ", b->raw.dsync_per_s);
        json_latency(f, "latency_us", &b->raw.dsync);
        fprintf(f, "},\n    \"dsync_4k_qd1_overwrite\": {\"writes_per_s\": %.0f, ",
                b->raw.dsync_over_per_s);
        json_latency(f, "latency_us", &b->raw.dsync_over);
        fprintf(f, "},\n    \"write_1m_qd4\": {\"mb_per_s\": %.1f}},\n", b->raw.bw_mb_s);
    }
    fprintf(f, "  \"append\": [");
    bool is_first = true;
    for (uint32_t i = 0; i < 2; i++) {
        const struct sb_append_result *a = &b->append[i];
        if (!a->is_done)
            continue;
        fprintf(f, "%s\n    {\"flush\": \"%s\", \"records_per_s\": %.0f, \"payload_mb_per_s\": "
                "%.2f, \"log_mb_per_s\": %.2f, \"disk_mb_per_s\": %.2f, \"ratio_to_raw\": "
                "%.4f, \"writes\": %llu, \"avg_write_kib\": %.1f, \"syncs\": %llu}",
                is_first ? "" : ",", a->flush == STORE_FLUSH_SYNC ? "sync" : "async",
                a->records_per_s, a->payload_mb_s, a->log_mb_s, a->disk_mb_s,
                ratio_to_raw(b, a->disk_mb_s), (unsigned long long)a->writes,
                a->avg_write_kib, (unsigned long long)a->syncs);
        is_first = false;
    }
    fprintf(f, "],\n");
}

static void json_commit_and_target(FILE *f, const struct sb *b)
{
    fprintf(f, "  \"commit\": [");
    const struct sb_commit_result *best = NULL;
    for (uint32_t i = 0; i < b->commit_count; i++) {
        const struct sb_commit_result *c = &b->commit[i];
        fprintf(f, "%s\n    {\"publishers\": %u, \"inflight\": %u, \"records_per_s\": %.0f, "
                "\"records\": %llu, \"writes\": %llu, \"records_per_write\": %.2f, "
                "\"payload_mb_per_s\": %.2f, \"disk_mb_per_s\": %.2f, \"ratio_to_raw\": %.4f, "
                "\"payload_ratio_to_raw\": %.4f, \"segment_rolls\": %llu, \"meets_target\": %s, ",
                i == 0 ? "" : ",", c->publishers, c->inflight, c->records_per_s,
                (unsigned long long)c->records, (unsigned long long)c->writes,
                c->records_per_write, c->payload_mb_s, c->disk_mb_s,
                ratio_to_raw(b, c->disk_mb_s), ratio_to_raw(b, c->payload_mb_s),
                (unsigned long long)c->segment_rolls, commit_meets_target(c) ? "true" : "false");
        json_latency(f, "latency_us", &c->latency);
        fprintf(f, "}");
        if (commit_meets_target(c) && (best == NULL || c->records_per_s > best->records_per_s))
            best = c;
    }
    fprintf(f, "],\n  \"target\": {\"records_per_s\": %.0f, \"p99_us\": %.0f, \"met\": %s, "
            "\"met_by_publishers\": ", SB_TARGET_RECORDS_PER_S, SB_TARGET_P99_US,
            best != NULL ? "true" : "false");
    if (best != NULL)
        fprintf(f, "%u}\n", best->publishers);
    else
        fprintf(f, "null}\n");
}

static int write_json(const struct sb *b, const char *path)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "keelmq-storebench: %s: %s\n", path, strerror(errno));
        return -1;
    }
    const struct sb_machine *m = &b->machine;
    fprintf(f, "{\n  \"tool\": \"keelmq-storebench\",\n  \"version\": ");
    json_string(f, KEELMQ_VERSION);
    fprintf(f, ",\n  \"machine\": {\"kernel\": ");
    json_string(f, m->kernel);
    fprintf(f, ", \"cpu_model\": ");
    json_string(f, m->cpu_model);
    fprintf(f, ", \"cpus\": %ld, \"fs_type\": ", m->cpus);
    json_string(f, m->fs_type);
    fprintf(f, ", \"fs_device\": ");
    json_string(f, m->fs_device);
    fprintf(f, ", \"dir\": ");
    json_string(f, m->dir);
    fprintf(f, "},\n  \"parameters\": {\"size\": %u, \"duration_s\": %.3f, \"warmup_s\": %.3f, "
            "\"inflight\": %u, \"segment_mb\": %u, \"flush_interval_ms\": %u, \"raw_mb\": %u, "
            "\"publishers\": [", b->opt.size, b->opt.duration_s, b->opt.warmup_s,
            b->opt.inflight, b->opt.segment_mb, b->opt.flush_interval_ms, b->opt.raw_mb);
    for (uint32_t i = 0; i < b->opt.publishers_count; i++)
        fprintf(f, "%s%u", i == 0 ? "" : ", ", b->opt.publishers[i]);
    fprintf(f, "]},\n");
    json_raw_and_append(f, b);
    json_commit_and_target(f, b);
    fprintf(f, "}\n");
    if (fclose(f) != 0) {
        fprintf(stderr, "keelmq-storebench: writing %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* ---- main ------------------------------------------------------------------------------- */

static int run_phases(struct sb *b)
{
    int rc = 0;
    if (b->opt.run_raw) {
        fprintf(stderr, "storebench: raw disk...\n");
        rc = run_raw(b);
    }
    for (uint32_t i = 0; i < 2 && rc == 0 && b->opt.run_append; i++) {
        fprintf(stderr, "storebench: append flush=%s...\n", i == 0 ? "sync" : "async");
        rc = run_append(b, i == 0 ? STORE_FLUSH_SYNC : STORE_FLUSH_ASYNC, &b->append[i]);
    }
    for (uint32_t i = 0; i < b->opt.publishers_count && rc == 0 && b->opt.run_commit; i++) {
        fprintf(stderr, "storebench: commit publishers=%u...\n", b->opt.publishers[i]);
        rc = run_commit(b, b->opt.publishers[i], &b->commit[i]);
        if (rc == 0)
            b->commit_count++;
    }
    if (rc < 0)
        fprintf(stderr, "keelmq-storebench: %s\n",
                rc == -EINTR ? "interrupted" : strerror(-rc));
    return rc;
}

static int setup(struct sb *b)
{
    if (mkdir(b->opt.dir, 0755) == -1 && errno != EEXIST) {
        fprintf(stderr, "keelmq-storebench: --dir %s: %s\n", b->opt.dir, strerror(errno));
        return -1;
    }
    if (snprintf(b->tmp_dir, sizeof(b->tmp_dir), "%s/storebench-XXXXXX", b->opt.dir) >=
        (int)sizeof(b->tmp_dir)) {
        fprintf(stderr, "keelmq-storebench: --dir too long\n");
        return -1;
    }
    if (mkdtemp(b->tmp_dir) == NULL) {
        fprintf(stderr, "keelmq-storebench: mkdtemp %s: %s\n", b->tmp_dir, strerror(errno));
        return -1;
    }
    read_machine(b->tmp_dir, &b->machine);
    int rc = uring_init(&b->ring, SB_RING_ENTRIES, 1);
    if (rc < 0) {
        fprintf(stderr, "keelmq-storebench: io_uring setup: %s\n", strerror(-rc));
        remove_tree(b->tmp_dir);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct sb *b = calloc(1, sizeof(*b));
    ASSERT(b != NULL);
    int code = parse_options(argc, argv, &b->opt);
    if (code >= 0) {
        free(b);
        return code;
    }
    log_set_level(LOG_WARN); /* segment rolls are INFO lines; the figures go to stdout */
    struct sigaction sa = { .sa_handler = on_signal };
    sigemptyset(&sa.sa_mask);
    (void)sigaction(SIGINT, &sa, NULL);  /* cannot fail with a valid signal number */
    (void)sigaction(SIGTERM, &sa, NULL);
    b->payload = malloc(MAX(b->opt.size, 1u));
    ASSERT(b->payload != NULL);
    for (uint32_t i = 0; i < b->opt.size; i++)
        b->payload[i] = (uint8_t)(i * 31u + 1u);
    if (setup(b) < 0) {
        free(b->payload);
        free(b);
        return 1;
    }
    int rc = run_phases(b);
    io_uring_queue_exit(&b->ring);
    remove_tree(b->tmp_dir);
    if (rc == 0) {
        print_table(b);
        if (b->opt.json_path != NULL && write_json(b, b->opt.json_path) < 0)
            rc = -1;
    }
    free(b->payload);
    free(b);
    return rc == 0 ? 0 : 1;
}
