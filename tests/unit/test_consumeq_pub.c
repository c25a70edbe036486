/* tests/unit/test_consumeq_pub.c - the consume-queue index's work off the shard's loop:
 * publication of runs through an io_uring (store/consumeq_pub.c) - a flushed run is in use at
 * once but stays a temp file until its fsync, rename and directory fsync complete; a merge of
 * runs that were never published replaces them without publishing them; a failed publication
 * is reported, stops further ones and leaves the last published state for the next open - and
 * merges in bounded steps (consumeq_compact_start/step) while appends, flushes and reads go
 * on. A real ring; the completions are fed to consumeq_on_io as the shard's loop would.
 *
 * Every test works in its own directory from tests/helpers/store_dir.h (the ext4 disk).
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <liburing.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "store/consumeq.h"
#include "tests/helpers/store_dir.h"

#define LOG_STRIDE 128u
#define RECORD_LEN 100u
#define PUB_UD 0x7770u

static char test_dir[64];
static char last_report[320];
static uint32_t report_count;
static struct io_uring ring;

static void collect_report(void *ctx, const char *line)
{
    (void)ctx;
    snprintf(last_report, sizeof(last_report), "%s", line);
    report_count++;
}

static void setup(void)
{
    store_dir_create(test_dir, sizeof(test_dir), "consumeq-pub");
    report_count = 0;
    last_report[0] = '\0';
    cr_assert_eq(io_uring_queue_init(64, &ring, 0), 0);
}

static void teardown(void)
{
    io_uring_queue_exit(&ring);
    (void)store_dir_remove(test_dir); /* best effort */
}

TestSuite(consumeq_pub, .init = setup, .fini = teardown, .timeout = 60);

static struct consumeq *open_index(struct consumeq_open_info *info)
{
    struct consumeq_config cfg = { .dir = test_dir, .report = collect_report };
    struct consumeq_open_info scratch;
    struct consumeq *q = NULL;
    int rc = consumeq_open(&cfg, &q, info != NULL ? info : &scratch);
    cr_assert_eq(rc, 0, "open: %s", strerror(-rc));
    return q;
}

static void append_range(struct consumeq *q, uint64_t from, uint64_t to)
{
    for (uint64_t i = from; i < to; i++) {
        struct consumeq_record rec = { .log_off = i * LOG_STRIDE, .timestamp_ns = i,
                                       .record_len = RECORD_LEN, .topic_hash = (uint32_t)i };
        uint64_t off;
        cr_assert_eq(consumeq_append(q, 1 + i % 4, &rec, &off), 0);
    }
}

/* Files in the directory whose name ends with `suffix` ("" counts every run file). */
static uint32_t files_ending(const char *suffix)
{
    uint32_t n = 0;
    DIR *d = opendir(test_dir);
    cr_assert_not_null(d);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        size_t sl = strlen(suffix);
        if (strncmp(de->d_name, "cq-", 3) == 0 && len >= sl &&
            strcmp(de->d_name + len - sl, suffix) == 0)
            n++;
    }
    (void)closedir(d);
    return n;
}

/* Submits what the index prepared and feeds completions back until none is in flight. */
static void run_ring(struct consumeq *q)
{
    while (consumeq_busy(q)) {
        cr_assert_geq(io_uring_submit_and_wait(&ring, 1), 0);
        struct io_uring_cqe *cqe;
        while (io_uring_peek_cqe(&ring, &cqe) == 0) {
            uint64_t ud = cqe->user_data;
            cr_assert_eq(ud & ~(uint64_t)CONSUMEQ_IO_UNLINK, PUB_UD);
            int res = cqe->res;
            io_uring_cqe_seen(&ring, cqe);
            consumeq_on_io(q, ud, res);
        }
    }
}

/* Every queue holds its entries of records [0, count) in order. */
static void expect_all(struct consumeq *q, uint64_t count)
{
    static struct consumeq_entry out[CONSUMEQ_READ_MAX];
    for (uint64_t queue = 1; queue <= 4; queue++) {
        uint64_t got = 0;
        for (;;) {
            ssize_t n = consumeq_read(q, queue, got, out, CONSUMEQ_READ_MAX);
            cr_assert_geq(n, 0);
            for (ssize_t i = 0; i < n; i++) {
                cr_assert_eq(out[i].queue_off, got + (uint64_t)i);
                cr_assert_eq(out[i].log_off, ((got + (uint64_t)i) * 4 + queue - 1) * LOG_STRIDE);
            }
            got += (uint64_t)n;
            if (n < (ssize_t)CONSUMEQ_READ_MAX)
                break;
        }
        cr_assert_eq(got, count / 4, "queue %lu: %lu entries", queue, got);
    }
}

static struct consumeq_stats stats_of(const struct consumeq *q)
{
    struct consumeq_stats st;
    consumeq_stats(q, &st);
    return st;
}

Test(consumeq_pub, a_flushed_run_is_used_at_once_and_published_by_the_ring)
{
    struct consumeq *q = open_index(NULL);
    consumeq_attach_ring(q, &ring, PUB_UD);
    append_range(q, 0, 400);
    cr_assert_eq(consumeq_flush(q, 0), 0);
    /* Written and in use, not yet durable under its name. */
    cr_assert_eq(files_ending(".tmp"), 1);
    cr_assert_eq(files_ending(".run"), 0);
    cr_assert(consumeq_busy(q));
    cr_assert_eq(stats_of(q).publications_waiting, 1);
    expect_all(q, 400);
    run_ring(q);
    cr_assert_eq(files_ending(".tmp"), 0);
    cr_assert_eq(files_ending(".run"), 1);
    cr_assert_eq(stats_of(q).publications, 1);
    cr_assert_eq(stats_of(q).publications_waiting, 0);
    consumeq_attach_ring(q, NULL, 0);
    consumeq_close(q);
    struct consumeq_open_info info;
    q = open_index(&info);
    cr_assert_eq(info.covered_off, 399 * LOG_STRIDE + RECORD_LEN);
    expect_all(q, 400);
    consumeq_close(q);
    cr_assert_eq(report_count, 0, "%s", last_report);
}

Test(consumeq_pub, a_merge_replaces_runs_that_were_never_published)
{
    struct consumeq *q = open_index(NULL);
    consumeq_attach_ring(q, &ring, PUB_UD);
    for (uint64_t r = 0; r < 3; r++) {
        append_range(q, r * 400, (r + 1) * 400);
        cr_assert_eq(consumeq_flush(q, 0), 0);
    }
    cr_assert_eq(stats_of(q).publications_waiting, 3, "the first in flight, two queued");
    cr_assert_eq(consumeq_compact(q, CONSUMEQ_COMPACT_FULL), 1);
    /* The queued inputs were forgotten; the one in flight and the merged run remain. */
    cr_assert_eq(stats_of(q).publications_waiting, 2);
    expect_all(q, 1200);
    run_ring(q);
    cr_assert_eq(stats_of(q).publications_waiting, 0);
    cr_assert_eq(files_ending(".tmp"), 0);
    cr_assert_eq(files_ending(""), 1, "only the merged run is left");
    consumeq_attach_ring(q, NULL, 0);
    consumeq_close(q);
    struct consumeq_open_info info;
    q = open_index(&info);
    cr_assert_eq(info.run_count, 1);
    cr_assert_eq(info.obsolete_runs_removed, 0);
    expect_all(q, 1200);
    consumeq_close(q);
    cr_assert_eq(report_count, 0, "%s", last_report);
}

Test(consumeq_pub, a_failed_publication_stops_and_the_last_published_state_stays)
{
    struct consumeq *q = open_index(NULL);
    consumeq_attach_ring(q, &ring, PUB_UD);
    append_range(q, 0, 400);
    cr_assert_eq(consumeq_flush(q, 0), 0);
    run_ring(q); /* run 1 is published */
    append_range(q, 400, 800);
    cr_assert_eq(consumeq_flush(q, 0), 0);
    /* Run 2's temp file vanishes before its rename: the rename fails. */
    DIR *d = opendir(test_dir);
    struct dirent *de;
    char path[512] = "";
    while ((de = readdir(d)) != NULL)
        if (strstr(de->d_name, ".tmp") != NULL)
            snprintf(path, sizeof(path), "%s/%s", test_dir, de->d_name);
    (void)closedir(d);
    cr_assert_neq(path[0], '\0');
    cr_assert_eq(unlink(path), 0);
    run_ring(q);
    cr_assert_geq(report_count, 1);
    cr_assert_not_null(strstr(last_report, "cannot be published"), "%s", last_report);
    /* Still serves everything from memory and its open runs; publishes nothing more. */
    append_range(q, 800, 1200);
    cr_assert_eq(consumeq_flush(q, 0), 0);
    cr_assert(!consumeq_busy(q));
    expect_all(q, 1200);
    consumeq_attach_ring(q, NULL, 0);
    consumeq_close(q);
    /* The disk holds run 1 and its checkpoint: the caller replays the log from there. */
    struct consumeq_open_info info;
    q = open_index(&info);
    cr_assert_eq(info.run_count, 1);
    cr_assert_eq(info.covered_off, 399 * LOG_STRIDE + RECORD_LEN);
    cr_assert_eq(info.entry_count, 400);
    consumeq_close(q);
}

Test(consumeq_pub, a_background_merge_runs_in_steps_while_appends_and_reads_go_on)
{
    struct consumeq_config cfg = { .dir = test_dir, .flush_entries = 4096, .compact_trigger = 4,
                                   .report = collect_report };
    struct consumeq_open_info info;
    struct consumeq *q = NULL;
    cr_assert_eq(consumeq_open(&cfg, &q, &info), 0);
    consumeq_attach_ring(q, &ring, PUB_UD);
    uint64_t next = 0;
    uint32_t started = 0;
    uint32_t steps_with_more = 0;
    for (uint32_t round = 0; round < 40; round++) {
        append_range(q, next, next + 4096);
        next += 4096;
        int rc = consumeq_compact_start(q); /* flushes, maybe starts a merge */
        cr_assert_geq(rc, 0);
        started += (uint32_t)rc;
        /* A few steps per round, as loop iterations would do between appends. */
        for (uint32_t i = 0; i < 3; i++) {
            rc = consumeq_compact_step(q);
            cr_assert_geq(rc, 0);
            steps_with_more += (uint32_t)rc;
            expect_all(q, next); /* reads see everything, mid-merge too */
        }
        run_ring(q);
    }
    while ((consumeq_compact_step(q)) == 1)
        steps_with_more++;
    run_ring(q);
    cr_assert_gt(started, 0);
    cr_assert_gt(steps_with_more, 0, "some merge took more than one step");
    struct consumeq_stats st = stats_of(q);
    cr_assert_leq(st.run_count, 5, "%u runs", st.run_count);
    cr_assert_eq(st.publications_waiting, 0);
    expect_all(q, next);
    consumeq_attach_ring(q, NULL, 0);
    consumeq_close(q);
    q = open_index(&info);
    cr_assert_eq(info.entry_count, next);
    cr_assert_eq(info.temp_files_removed, 0);
    cr_assert_eq(info.obsolete_runs_removed, 0);
    expect_all(q, next);
    consumeq_close(q);
    cr_assert_eq(report_count, 0, "%s", last_report);
}

Test(consumeq_pub, close_abandons_a_merge_in_progress_and_keeps_its_inputs)
{
    struct consumeq_config cfg = { .dir = test_dir, .flush_entries = 4096, .compact_trigger = 2,
                                   .report = collect_report };
    struct consumeq_open_info info;
    struct consumeq *q = NULL;
    cr_assert_eq(consumeq_open(&cfg, &q, &info), 0);
    for (uint32_t round = 0; round < 4; round++) {
        append_range(q, round * 4096u, (round + 1) * 4096u);
        cr_assert_eq(consumeq_flush(q, 0), 0);
    }
    cr_assert_eq(consumeq_compact_start(q), 1);
    cr_assert_eq(consumeq_compact_step(q), 1, "16384 entries take more than one step");
    consumeq_close(q);
    q = open_index(&info);
    cr_assert_eq(info.run_count, 4, "the inputs are still the index");
    cr_assert_eq(files_ending(".tmp"), 0, "the merge's unfinished output is gone");
    expect_all(q, 4 * 4096u);
    consumeq_close(q);
}
