/* tests/unit/test_commitlog.c - the commit log's write path through a real io_uring: group
 * commit, the durable offset, segment rolls, reopening after a restart, both flush modes, what the hot tail keeps.
 * Files live on the ext4 disk under build/ (tmpfs ignores O_DIRECT alignment: PLATFORM.md). */
#include <criterion/criterion.h>

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/config.h"
#include "io/uring.h"
#include "store/commitlog.h"
#include "store/segment.h"
#include "tests/helpers/store_dir.h"

static char dir[256];
static struct io_uring ring;
static struct config cfg;

static void setup(void)
{
    store_dir_create(dir, sizeof(dir), "commitlog");
    cr_assert_eq(io_uring_queue_init(64, &ring, 0), 0);
    config_defaults(&cfg);
    cfg.store_segment_bytes = 1u << 20; /* small: rolls happen */
    cfg.max_packet_size = 65536;
}

static void teardown(void)
{
    io_uring_queue_exit(&ring);
    cr_assert_eq(store_dir_remove(dir), 0);
}

/* Submits what the log queued and handles completions until it is idle. */
static void drain(struct commitlog *log)
{
    for (int rounds = 0; commitlog_busy(log); rounds++) {
        cr_assert_lt(rounds, 100000, "the log never became idle");
        commitlog_flush(log, &ring, base_now_ms());
        io_uring_submit(&ring);
        struct io_uring_cqe *cqe;
        if (io_uring_peek_cqe(&ring, &cqe) != 0) {
            if (!log->write_inflight && !log->sync_inflight)
                continue;
            cr_assert_eq(io_uring_wait_cqe(&ring, &cqe), 0);
        }
        if (uring_ud_op(cqe->user_data) == URING_OP_STORE_WRITE)
            commitlog_on_write(log, cqe->res);
        else
            commitlog_on_sync(log, cqe->res);
        io_uring_cqe_seen(&ring, cqe);
    }
}

static struct record_message message(uint32_t i, char *topic, size_t topic_cap, uint8_t *payload,
                                     uint32_t payload_len)
{
    snprintf(topic, topic_cap, "t/%u", i);
    for (uint32_t k = 0; k < payload_len; k++)
        payload[k] = (uint8_t)(i + k);
    return (struct record_message){
        .timestamp_ns = 1000 + i, .qos = (uint8_t)(i % 3), .retain = (i % 5) == 0,
        .topic = slice_from_cstr(topic), .client_id = slice_from_cstr("writer"),
        .payload = { payload, payload_len },
    };
}

struct seen {
    uint32_t count;
    uint64_t offs[4096];
};

static int collect(void *ctx, uint64_t off, const uint8_t *p, const struct record_header *h)
{
    struct seen *seen = ctx;
    struct record_message m;
    cr_assert(record_decode_message(p, h, &m));
    char topic[32];
    snprintf(topic, sizeof(topic), "t/%u", seen->count);
    cr_assert_eq(m.topic.len, strlen(topic));
    cr_assert_eq(memcmp(m.topic.ptr, topic, m.topic.len), 0, "record %u out of order",
                 seen->count);
    cr_assert_lt(seen->count, 4096);
    seen->offs[seen->count++] = off;
    return 0;
}

static void ignore_report(void *ctx, const char *line)
{
    (void)ctx;
    cr_assert_fail("unexpected corruption report: %s", line);
}

/* Scans the whole log back (records in order, no corruption report) into `scan` and returns
 * how many records it holds. */
static uint32_t scan_back(struct segment_scan *scan)
{
    struct seen *seen = calloc(1, sizeof(*seen));
    cr_assert_not_null(seen);
    char err[256];
    cr_assert_eq(segment_scan(dir, 0, collect, seen, ignore_report, scan, err, sizeof(err)), 0,
                 "%s", err);
    uint32_t count = seen->count;
    free(seen);
    return count;
}

TestSuite(commitlog, .init = setup, .fini = teardown, .timeout = 60);

Test(commitlog, appended_records_become_durable_and_scan_back_in_order)
{
    struct commitlog log;
    char err[256];
    cr_assert_eq(commitlog_open(&log, dir, &cfg, 0, 0, err, sizeof(err)), 0, "%s", err);
    uint8_t payload[700];
    char topic[32];
    uint64_t last_end = 0;
    for (uint32_t i = 0; i < 3000; i++) {
        struct record_message m = message(i, topic, sizeof(topic), payload, 100 + i % 600);
        int64_t off = commitlog_append_message(&log, &m);
        cr_assert_geq(off, 0);
        last_end = (uint64_t)off + record_message_len(&m);
        if (i % 97 == 0)
            drain(&log); /* many batches, some with one record, some with hundreds */
    }
    cr_assert_lt(log.durable_off, last_end, "nothing should be durable before the flush");
    drain(&log);
    cr_assert_geq(log.durable_off, last_end);
    /* Every record's commit latency is counted once (sync mode), pads and rolls included. */
    cr_assert_eq(log.commit_us.total_count, 3000);
    cr_assert_leq(histogram_percentile(&log.commit_us, 99.0), log.commit_us.max);
    cr_assert_eq(log.durable_off % RECORD_BLOCK, 0, "batches end on block boundaries");
    commitlog_close(&log);

    struct segment_scan scan;
    cr_assert_eq(scan_back(&scan), 3000);
    cr_assert_gt(scan.segments, 1, "1 MiB segments must have rolled");
    cr_assert_eq(scan.end_off, log.durable_off);
}

Test(commitlog, reopening_appends_after_the_last_record)
{
    struct commitlog log;
    char err[256];
    uint8_t payload[64];
    char topic[32];
    cr_assert_eq(commitlog_open(&log, dir, &cfg, 0, 0, err, sizeof(err)), 0, "%s", err);
    for (uint32_t i = 0; i < 10; i++) {
        struct record_message m = message(i, topic, sizeof(topic), payload, sizeof(payload));
        cr_assert_geq(commitlog_append_message(&log, &m), 0);
    }
    drain(&log);
    commitlog_close(&log);

    struct segment_scan scan;
    cr_assert_eq(scan_back(&scan), 10);
    cr_assert_eq(commitlog_open(&log, dir, &cfg, 0, scan.end_off, err, sizeof(err)), 0, "%s",
                 err);
    for (uint32_t i = 10; i < 20; i++) {
        struct record_message m = message(i, topic, sizeof(topic), payload, sizeof(payload));
        cr_assert_geq(commitlog_append_message(&log, &m), (int64_t)scan.end_off);
    }
    drain(&log);
    commitlog_close(&log);
    cr_assert_eq(scan_back(&scan), 20, "records before and after the reopen, in order");
}

/* Regression: a roll while a write to the old segment was in flight closed the old segment's
 * fd when that write completed, before the sealed rest of the segment was written (EBADF,
 * fatal). Found by tests/e2e/test_chaos.py pushing 200 MB through one shard. */
Test(commitlog, a_roll_while_a_write_is_in_flight_keeps_the_old_segment_open)
{
    struct commitlog log;
    char err[256];
    uint8_t payload[2000];
    char topic[32];
    cr_assert_eq(commitlog_open(&log, dir, &cfg, 0, 0, err, sizeof(err)), 0, "%s", err);
    uint32_t i = 0;
    while (log.seg_base == 0) {
        struct record_message m = message(i++, topic, sizeof(topic), payload, sizeof(payload));
        cr_assert_geq(commitlog_append_message(&log, &m), 0);
        if (i % 50 == 0) {
            commitlog_flush(&log, &ring, base_now_ms()); /* submitted, not awaited */
            io_uring_submit(&ring);
        }
    }
    cr_assert(log.write_inflight || log.sealed.len > 0);
    for (uint32_t k = 0; k < 10; k++) {
        struct record_message m = message(i++, topic, sizeof(topic), payload, sizeof(payload));
        cr_assert_geq(commitlog_append_message(&log, &m), 0);
    }
    drain(&log);
    commitlog_close(&log);
    struct segment_scan scan;
    cr_assert_eq(scan_back(&scan), i);
    cr_assert_eq(scan.segments, 2);
}

/* Files of `dir` this process holds open. */
static int open_files_in_dir(void)
{
    char prefix[PATH_MAX];
    cr_assert_not_null(realpath(dir, prefix));
    strcat(prefix, "/");
    DIR *d = opendir("/proc/self/fd");
    cr_assert_not_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char link[320], target[512];
        snprintf(link, sizeof(link), "/proc/self/fd/%s", e->d_name);
        ssize_t len = readlink(link, target, sizeof(target) - 1);
        if (len <= 0)
            continue;
        target[len] = '\0';
        n += strncmp(target, prefix, strlen(prefix)) == 0;
    }
    closedir(d);
    return n;
}

/* A segment filled while the previous segment's last write is still in flight: rolling then
 * would replace the one old_fd the log keeps, and the older segment would stay open for good
 * (after retention deleted it, its disk space too). The append waits instead (-ENOBUFS). */
Test(commitlog, a_segment_filled_during_the_previous_ones_last_write_waits_for_it)
{
    struct commitlog log;
    char err[256];
    uint8_t payload[2000];
    char topic[32];
    cr_assert_eq(commitlog_open(&log, dir, &cfg, 0, 0, err, sizeof(err)), 0, "%s", err);
    uint32_t i = 0;
    while (log.seg_base == 0) {
        struct record_message m = message(i++, topic, sizeof(topic), payload, sizeof(payload));
        cr_assert_geq(commitlog_append_message(&log, &m), 0);
    }
    commitlog_flush(&log, &ring, base_now_ms()); /* the first segment's tail: in flight */
    io_uring_submit(&ring);
    cr_assert(log.write_inflight && log.old_fd >= 0);
    int64_t rc = 0;
    while (rc >= 0) {
        struct record_message m = message(i, topic, sizeof(topic), payload, sizeof(payload));
        rc = commitlog_append_message(&log, &m);
        i += rc >= 0;
        cr_assert_lt(i, 2000, "the second segment never filled");
    }
    cr_assert_eq(rc, -ENOBUFS);
    cr_assert_eq(log.seg_base, 1u << 20, "rolled over a segment still being written");
    drain(&log);
    cr_assert_eq(log.old_fd, -1);
    struct record_message m = message(i++, topic, sizeof(topic), payload, sizeof(payload));
    cr_assert_geq(commitlog_append_message(&log, &m), 0, "no room once the write completed");
    cr_assert_eq(log.seg_base, 2u << 20);
    drain(&log);
    cr_assert_eq(open_files_in_dir(), 1, "only the current segment stays open");
    commitlog_close(&log);
    cr_assert_eq(open_files_in_dir(), 0);
    struct segment_scan scan;
    cr_assert_eq(scan_back(&scan), i);
    cr_assert_eq(scan.segments, 3);
}

Test(commitlog, async_mode_becomes_durable_through_datasync)
{
    cfg.store_flush = STORE_FLUSH_ASYNC;
    cfg.store_flush_interval_ms = 1;
    struct commitlog log;
    char err[256];
    uint8_t payload[32];
    char topic[32];
    cr_assert_eq(commitlog_open(&log, dir, &cfg, 0, 0, err, sizeof(err)), 0, "%s", err);
    struct record_message m = message(0, topic, sizeof(topic), payload, sizeof(payload));
    int64_t off = commitlog_append_message(&log, &m);
    cr_assert_eq(off, 0);
    drain(&log);
    cr_assert_geq(log.durable_off, (uint64_t)record_message_len(&m));
    cr_assert_geq(log.syncs, 1);
    commitlog_close(&log);
}

Test(commitlog, a_full_batch_refuses_with_enobufs)
{
    struct commitlog log;
    char err[256];
    cfg.store_segment_bytes = 1u << 30;
    cr_assert_eq(commitlog_open(&log, dir, &cfg, 0, 0, err, sizeof(err)), 0, "%s", err);
    static uint8_t payload[60000];
    char topic[32];
    int64_t rc = 0;
    uint32_t i = 0;
    while (rc >= 0 && i < 10000) {
        struct record_message m = message(i++, topic, sizeof(topic), payload, sizeof(payload));
        rc = commitlog_append_message(&log, &m);
    }
    cr_assert_eq(rc, -ENOBUFS, "appends beyond COMMITLOG_BATCH_MAX without a write must fail");
    uint64_t waiting = (uint64_t)log.cur.len + log.sealed.len;
    cr_assert_leq(waiting, COMMITLOG_BATCH_MAX - COMMITLOG_TYPED_ROOM);
    /* The journal still has room: a SUBSCRIBE is not acknowledged unlogged while publishers
     * are held. */
    static uint8_t body[4000];
    uint32_t typed = 0;
    while (commitlog_append_typed(&log, RECORD_SESSION, (struct slice){ body, sizeof(body) }) >= 0)
        typed++;
    cr_assert_geq(typed, COMMITLOG_TYPED_ROOM / 2 / record_body_len(sizeof(body)),
                  "only %u journal records fit after messages were refused", typed);
    cr_assert_leq((uint64_t)log.cur.len + log.sealed.len, COMMITLOG_BATCH_MAX);
    drain(&log);
    commitlog_close(&log);
}

/* The hot tail copies a written batch that holds a record catch-up may read (QoS 1/2) and
 * skips one of only QoS 0 messages (never indexed, never read back): those bytes miss. The
 * skipped batch is still written and scans back like any other. */
Test(commitlog, the_hot_tail_skips_batches_of_only_qos0)
{
    cfg.store_cache_bytes = 1u << 20;
    struct commitlog log;
    char err[256];
    cr_assert_eq(commitlog_open(&log, dir, &cfg, 0, 0, err, sizeof(err)), 0, "%s", err);
    uint8_t payload[64];
    char topic[32];
    uint8_t scratch[256];
    int64_t offs[6];
    uint32_t lens[6];
    for (uint32_t i = 0; i < 6; i++) {
        struct record_message m = message(i, topic, sizeof(topic), payload, sizeof(payload));
        m.qos = i < 3 ? 0 : 1; /* batch 1: three QoS 0; batch 2: QoS 1 */
        m.retain = false;
        offs[i] = commitlog_append_message(&log, &m);
        lens[i] = record_message_len(&m);
        cr_assert_geq(offs[i], 0);
        if (i == 2 || i == 5)
            drain(&log);
    }
    cr_assert_eq(log.writes, 2);
    for (uint32_t i = 0; i < 6; i++) {
        const uint8_t *p = tailcache_get(&log.cache, (uint64_t)offs[i], lens[i], scratch,
                                         sizeof(scratch));
        if (i < 3) {
            cr_assert_null(p, "QoS 0 record %u is not in the hot tail", i);
            continue;
        }
        cr_assert_not_null(p, "QoS 1 record %u is in the hot tail", i);
        struct record_header h;
        cr_assert_eq(record_verify(p, lens[i], &h), RECORD_OK);
    }
    commitlog_close(&log);

    struct segment_scan scan;
    cr_assert_eq(scan_back(&scan), 6, "the skipped batch reached the disk");
}

/* A burst (a snapshot of every session, say) grows the batch buffers; once small batches
 * follow, both give the memory back, and what was written scans back whole. */
Test(commitlog, batch_buffers_shrink_after_a_burst)
{
    struct commitlog log;
    char err[256];
    cfg.store_segment_bytes = 1u << 30;
    cr_assert_eq(commitlog_open(&log, dir, &cfg, 0, 0, err, sizeof(err)), 0, "%s", err);
    static uint8_t payload[60000];
    char topic[32];
    uint32_t i = 0;
    for (; i < 100; i++) { /* 6 MB in one batch */
        struct record_message m = message(i, topic, sizeof(topic), payload, sizeof(payload));
        cr_assert_geq(commitlog_append_message(&log, &m), 0);
    }
    cr_assert_geq(log.cur.cap, 6000000u);
    drain(&log);
    uint32_t big = log.inflight.cap;
    cr_assert_geq(big, 6000000u, "the burst's buffer was just written: kept until reused");
    for (uint32_t round = 0; round < 3; round++, i++) {
        struct record_message m = message(i, topic, sizeof(topic), payload, 100);
        cr_assert_geq(commitlog_append_message(&log, &m), 0);
        drain(&log);
    }
    cr_expect_leq(log.cur.cap, 1u << 20);
    cr_expect_leq(log.inflight.cap, 1u << 20);
    cr_expect_leq(log.sealed.cap, 1u << 20);
    commitlog_close(&log);
    struct segment_scan scan;
    cr_expect_eq(scan_back(&scan), i);
}
