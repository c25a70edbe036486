/* tests/unit/test_consumeq.c - the consume-queue index (store/consumeq): appends and reads
 * across the write buffer and runs, a million small queues, compaction and GC at the watermark,
 * next offsets across compaction and reopen, seeks by log offset against a brute force,
 * checkpoint + replay after a simulated crash, and damaged run files (leftover temp file,
 * truncation, flipped bytes, missing run).
 *
 * Every test works in its own directory from tests/helpers/store_dir.h (the ext4 disk),
 * removed in .fini. A "log" is simulated: record i lives at log offset i * LOG_STRIDE.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/consumeq.h"
#include "tests/helpers/store_dir.h"

#define LOG_STRIDE 128u
#define RECORD_LEN 100u
#define REPORT_KEEP 16u
#define QUEUE_UNIVERSE_MAX 4096u
#define QUEUE_ENTRIES_MAX 8192u
#define PATH_LEN 512u

static char test_dir[64];
static char report_lines[REPORT_KEEP][320];
static uint32_t report_count;

static void collect_report(void *ctx, const char *line)
{
    (void)ctx;
    if (report_count < REPORT_KEEP)
        snprintf(report_lines[report_count], sizeof(report_lines[0]), "%s", line);
    report_count++;
}

static bool report_contains(const char *needle)
{
    for (uint32_t i = 0; i < MIN(report_count, REPORT_KEEP); i++)
        if (strstr(report_lines[i], needle) != NULL)
            return true;
    return false;
}

static void dir_setup(void)
{
    store_dir_create(test_dir, sizeof(test_dir), "consumeq");
    report_count = 0;
}

static void dir_teardown(void) { (void)store_dir_remove(test_dir); /* best effort */ }

TestSuite(consumeq, .init = dir_setup, .fini = dir_teardown, .timeout = 120);

static struct consumeq *open_index(uint32_t flush_entries, struct consumeq_open_info *info)
{
    struct consumeq_config cfg = {
        .dir = test_dir,
        .flush_entries = flush_entries,
        .report = collect_report,
    };
    struct consumeq_open_info scratch;
    struct consumeq *q = NULL;
    int rc = consumeq_open(&cfg, &q, info != NULL ? info : &scratch);
    cr_assert_eq(rc, 0, "open: %s", strerror(-rc));
    return q;
}

static int try_open(uint32_t flush_entries, struct consumeq **q, struct consumeq_open_info *info)
{
    struct consumeq_config cfg = { .dir = test_dir, .flush_entries = flush_entries,
                                   .report = collect_report };
    return consumeq_open(&cfg, q, info);
}

static struct consumeq_record record_at(uint64_t record_idx)
{
    return (struct consumeq_record){
        .log_off = record_idx * LOG_STRIDE,
        .timestamp_ns = 1000000000ull + record_idx,
        .record_len = RECORD_LEN,
        .topic_hash = (uint32_t)(record_idx * 2654435761u),
    };
}

static uint64_t append(struct consumeq *q, uint64_t queue_id, uint64_t record_idx)
{
    struct consumeq_record rec = record_at(record_idx);
    uint64_t off = CONSUMEQ_OFF_NONE;
    int rc = consumeq_append(q, queue_id, &rec, &off);
    cr_assert_eq(rc, 0, "append: %s", strerror(-rc));
    return off;
}

/* Reads all of a queue from `from` in batches of `batch`; returns the count. */
static uint32_t read_all(struct consumeq *q, uint64_t queue_id, uint64_t from, uint32_t batch,
                         struct consumeq_entry *out, uint32_t cap)
{
    uint32_t count = 0;
    for (;;) {
        cr_assert_lt(count, cap + 1);
        ssize_t n = consumeq_read(q, queue_id, from, out + count, MIN(batch, cap - count));
        cr_assert_geq(n, 0, "read: %s", strerror((int)-n));
        if (n == 0 || count + (uint32_t)n == cap)
            return count + (uint32_t)n;
        from = out[count + n - 1].queue_off + 1;
        count += (uint32_t)n;
    }
}

static void expect_entry(const struct consumeq_entry *e, uint64_t queue_id, uint64_t queue_off,
                         uint64_t record_idx)
{
    struct consumeq_record r = record_at(record_idx);
    cr_assert_eq(e->queue_id, queue_id);
    cr_assert_eq(e->queue_off, queue_off, "queue_off %lu, want %lu", e->queue_off, queue_off);
    cr_assert_eq(e->log_off, r.log_off);
    cr_assert_eq(e->timestamp_ns, r.timestamp_ns);
    cr_assert_eq(e->record_len, r.record_len);
    cr_assert_eq(e->topic_hash, r.topic_hash);
}

static uint32_t run_file_count(void)
{
    uint32_t n = 0;
    DIR *d = opendir(test_dir);
    cr_assert_not_null(d);
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strncmp(de->d_name, "cq-", 3) == 0)
            n++;
    (void)closedir(d);
    return n;
}

/* The path of the `idx`-th run file in name order (sequence order). */
static void run_file_path(uint32_t idx, char *out, size_t out_len)
{
    struct dirent **names = NULL;
    int n = scandir(test_dir, &names, NULL, alphasort);
    cr_assert_gt(n, 0);
    uint32_t seen = 0;
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        if (strncmp(names[i]->d_name, "cq-", 3) == 0 && seen++ == idx)
            snprintf(out, out_len, "%s/%s", test_dir, names[i]->d_name);
        free(names[i]);
    }
    free(names);
    cr_assert_neq(out[0], '\0', "no run file %u", idx);
}

/* ---- ids ---- */

Test(consumeq, queue_ids_separate_topics_from_filters)
{
    struct slice name = slice_from_cstr("a/b");
    uint64_t topic = consumeq_queue_id(CONSUMEQ_KIND_TOPIC, name);
    uint64_t filter = consumeq_queue_id(CONSUMEQ_KIND_FILTER, name);
    cr_assert_neq(topic, 0);
    cr_assert_neq(filter, 0);
    cr_assert_neq(topic, filter);
    cr_assert_eq(topic, consumeq_queue_id(CONSUMEQ_KIND_TOPIC, slice_from_cstr("a/b")));
    cr_assert_eq(consumeq_topic_hash(name), (uint32_t)(topic >> 32));
    cr_assert_neq(consumeq_queue_id(CONSUMEQ_KIND_TOPIC, slice_from_cstr("")), 0);
}

Test(consumeq, bad_config_is_einval)
{
    struct consumeq *q = NULL;
    struct consumeq_open_info info;
    struct consumeq_config cfg = { .dir = test_dir, .flush_entries = 3 };
    cr_assert_eq(consumeq_open(&cfg, &q, &info), -EINVAL);
    cfg = (struct consumeq_config){ .dir = test_dir, .compact_trigger = CONSUMEQ_RUN_MAX };
    cr_assert_eq(consumeq_open(&cfg, &q, &info), -EINVAL);
    cfg = (struct consumeq_config){ .dir = NULL };
    cr_assert_eq(consumeq_open(&cfg, &q, &info), -EINVAL);
    cfg = (struct consumeq_config){ .dir = "/nonexistent/consumeq" };
    cr_assert_eq(consumeq_open(&cfg, &q, &info), -ENOENT);
}

/* ---- append and read ---- */

Test(consumeq, append_then_read_from_memory)
{
    struct consumeq *q = open_index(0, NULL);
    cr_assert_eq(consumeq_next_off(q, 7), CONSUMEQ_OFF_NONE);
    cr_assert_not(consumeq_exists(q, 7));
    for (uint64_t i = 0; i < 10; i++) {
        cr_assert_eq(append(q, 7, i), i);
        if (i % 2 == 1)
            cr_assert_eq(append(q, 8, i), i / 2); /* the same record in a second queue */
    }
    cr_assert(consumeq_exists(q, 7));
    cr_assert_eq(consumeq_next_off(q, 7), 10);
    cr_assert_eq(consumeq_next_off(q, 8), 5);
    struct consumeq_entry out[16];
    cr_assert_eq(consumeq_read(q, 7, 0, out, 16), 10);
    for (uint64_t i = 0; i < 10; i++)
        expect_entry(&out[i], 7, i, i);
    cr_assert_eq(consumeq_read(q, 8, 2, out, 2), 2);
    expect_entry(&out[0], 8, 2, 5);
    expect_entry(&out[1], 8, 3, 7);
    cr_assert_eq(consumeq_read(q, 8, 5, out, 16), 0);
    cr_assert_eq(consumeq_read(q, 9, 0, out, 16), -ENOENT);
    uint64_t oldest = 99;
    cr_assert_eq(consumeq_oldest_off(q, 7, &oldest), 0);
    cr_assert_eq(oldest, 0);
    consumeq_close(q);
}

Test(consumeq, read_batches_continue_across_runs)
{
    struct consumeq *q = open_index(16, NULL);
    uint64_t record = 0;
    for (uint64_t i = 0; i < 1000; i++) {
        cr_assert_eq(append(q, 42, record++), i);
        append(q, 1000 + i % 13, record++); /* neighbours in every run */
        if (i % 97 == 0)
            cr_assert_geq(consumeq_compact(q, CONSUMEQ_COMPACT_AUTO), 0);
    }
    struct consumeq_stats st;
    consumeq_stats(q, &st);
    cr_assert_gt(st.run_count, 1, "entries spread over several runs");
    cr_assert_gt(st.mem_entry_count, 0, "and the write buffer");
    static struct consumeq_entry out[1100];
    for (uint32_t batch = 1; batch <= 1024; batch = batch * 3 + 1) {
        uint32_t n = read_all(q, 42, 0, batch, out, 1100);
        cr_assert_eq(n, 1000, "batch %u", batch);
        for (uint64_t i = 0; i < n; i++)
            expect_entry(&out[i], 42, i, 2 * i);
    }
    cr_assert_eq(read_all(q, 42, 990, 4, out, 1100), 10);
    expect_entry(&out[0], 42, 990, 1980);
    consumeq_close(q);
}

Test(consumeq, flush_and_reopen_reads_from_runs)
{
    struct consumeq *q = open_index(0, NULL);
    for (uint64_t i = 0; i < 300; i++)
        append(q, 1 + i % 3, i);
    cr_assert_eq(consumeq_flush(q, 0), 0);
    consumeq_close(q);
    struct consumeq_open_info info;
    q = open_index(0, &info);
    cr_assert_eq(info.covered_off, 299 * LOG_STRIDE + RECORD_LEN);
    cr_assert_eq(info.run_count, 1);
    cr_assert_eq(info.entry_count, 300);
    cr_assert_eq(info.queue_count, 3);
    struct consumeq_entry out[128];
    for (uint64_t queue = 1; queue <= 3; queue++) {
        cr_assert_eq(consumeq_next_off(q, queue), 100);
        cr_assert_eq(read_all(q, queue, 0, 33, out, 128), 100);
        for (uint64_t i = 0; i < 100; i++)
            expect_entry(&out[i], queue, i, i * 3 + queue - 1);
    }
    cr_assert_eq(append(q, 2, 300), 100, "appends continue after reopen");
    consumeq_close(q);
}

/* ---- a million small queues ---- */

#define MILLION_QUEUES 1000000u

static uint32_t million_entries_of(uint64_t queue_idx)
{
    return 1 + (uint32_t)((queue_idx * 7919u) % 3); /* 1, 2 or 3 entries */
}

Test(consumeq, million_queues_with_few_entries_stay_compact)
{
    struct consumeq *q = open_index(0, NULL);
    /* Three rounds: round r appends to every queue that has more than r entries, so each
     * queue's entries land in different runs, like sparse traffic over time. */
    uint64_t record = 0;
    uint64_t entry_total = 0;
    for (uint32_t round = 0; round < 3; round++)
        for (uint64_t i = 0; i < MILLION_QUEUES; i++)
            if (million_entries_of(i) > round) {
                cr_assert_eq(append(q, 0x1000000 + i, record++), round);
                entry_total++;
            }
    cr_assert_eq(consumeq_compact(q, CONSUMEQ_COMPACT_FULL), 1);
    struct consumeq_stats st;
    consumeq_stats(q, &st);
    cr_assert_eq(st.queue_count, MILLION_QUEUES);
    cr_assert_eq(st.disk_entry_count, entry_total);
    cr_assert_eq(st.run_count, 1);
    double disk_per_entry = (double)st.disk_bytes / (double)entry_total;
    double memory_per_entry = (double)st.memory_bytes / (double)entry_total;
    double memory_per_queue = (double)st.memory_bytes / MILLION_QUEUES;
    fprintf(stderr,
            "consumeq: %u queues, %lu entries, %lu flushes: disk %lu B (%.1f B/entry), "
            "memory %lu B (%.1f B/entry, %.1f B/queue)\n",
            MILLION_QUEUES, entry_total, st.flushes, st.disk_bytes, disk_per_entry,
            st.memory_bytes, memory_per_entry, memory_per_queue);
    /* 40-byte entries plus a 32-byte queue record per queue (16 B/entry at 2 entries a queue),
     * block trailers and one header. */
    cr_assert_lt(disk_per_entry, 60.0);
    /* The queue table (32 B a slot, <= 3/4 full) dominates; the buffer is fixed. */
    cr_assert_lt(memory_per_queue, 100.0);
    consumeq_close(q);

    struct consumeq_open_info info;
    q = open_index(0, &info);
    cr_assert_eq(info.queue_count, MILLION_QUEUES);
    cr_assert_eq(info.entry_count, entry_total);
    struct consumeq_entry out[4];
    for (uint64_t i = 0; i < MILLION_QUEUES; i += 9973) {
        uint32_t want = million_entries_of(i);
        cr_assert_eq(consumeq_next_off(q, 0x1000000 + i), want);
        cr_assert_eq(consumeq_read(q, 0x1000000 + i, 0, out, 4), want);
        for (uint32_t k = 0; k < want; k++) {
            cr_assert_eq(out[k].queue_id, 0x1000000 + i);
            cr_assert_eq(out[k].queue_off, k);
            cr_assert(k == 0 || out[k].log_off > out[k - 1].log_off);
        }
    }
    consumeq_close(q);
}

/* ---- compaction and GC ---- */

/* Queue q (1..5) gets records i with i % 5 == q - 1; 2000 records over many small runs. */
static struct consumeq *gc_fixture(uint32_t record_count)
{
    struct consumeq *q = open_index(64, NULL);
    for (uint64_t i = 0; i < record_count; i++)
        append(q, 1 + i % 5, i);
    return q;
}

static void expect_gc_view(struct consumeq *q, uint64_t watermark_record, uint32_t record_count)
{
    static struct consumeq_entry out[QUEUE_ENTRIES_MAX];
    for (uint64_t queue = 1; queue <= 5; queue++) {
        uint64_t first_kept = queue - 1; /* first record of this queue at/after the watermark */
        while (first_kept < watermark_record)
            first_kept += 5;
        uint32_t n = read_all(q, queue, 0, 50, out, QUEUE_ENTRIES_MAX);
        uint32_t want = 0;
        for (uint64_t rec = first_kept; rec < record_count; rec += 5)
            expect_entry(&out[want++], queue, rec / 5, rec);
        cr_assert_eq(n, want, "queue %lu: %u entries, want %u", queue, n, want);
        uint64_t oldest = 0;
        cr_assert_eq(consumeq_oldest_off(q, queue, &oldest), 0);
        cr_assert_eq(oldest, first_kept / 5);
        cr_assert_eq(consumeq_next_off(q, queue), (record_count - queue) / 5 + 1);
    }
}

Test(consumeq, compaction_keeps_entries_at_or_above_the_watermark_and_drops_the_rest)
{
    const uint32_t records = 2000;
    struct consumeq *q = gc_fixture(records);
    cr_assert_eq(consumeq_flush(q, 0), 0);
    struct consumeq_stats before;
    consumeq_stats(q, &before);
    cr_assert_gt(before.run_count, 3);
    cr_assert_eq(before.disk_entry_count, records);

    uint64_t watermark_record = 777;
    consumeq_set_gc(q, watermark_record * LOG_STRIDE);
    expect_gc_view(q, watermark_record, records); /* reads hide them before compaction */
    cr_assert_eq(consumeq_compact(q, CONSUMEQ_COMPACT_FULL), 1);
    struct consumeq_stats after;
    consumeq_stats(q, &after);
    cr_assert_eq(after.run_count, 1);
    cr_assert_eq(after.disk_entry_count, records - watermark_record, "dropped exactly those below");
    cr_assert_eq(after.entries_dropped_gc, watermark_record);
    cr_assert_lt(after.disk_bytes, before.disk_bytes);
    expect_gc_view(q, watermark_record, records);

    consumeq_set_gc(q, 10); /* never lowers */
    consumeq_close(q);
    struct consumeq_open_info info;
    q = open_index(64, &info);
    cr_assert_eq(info.gc_off, watermark_record * LOG_STRIDE);
    expect_gc_view(q, watermark_record, records);
    consumeq_close(q);
}

Test(consumeq, auto_compaction_bounds_runs_and_preserves_entries)
{
    const uint32_t records = 6000;
    struct consumeq *q = open_index(32, NULL);
    uint32_t max_runs = 0;
    for (uint64_t i = 0; i < records; i++) {
        append(q, 1 + i % 5, i);
        if (i % 50 == 0) {
            cr_assert_geq(consumeq_compact(q, CONSUMEQ_COMPACT_AUTO), 0);
            struct consumeq_stats st;
            consumeq_stats(q, &st);
            max_runs = MAX(max_runs, st.run_count);
        }
    }
    cr_assert_leq(max_runs, CONSUMEQ_COMPACT_TRIGGER_DEFAULT + 1);
    struct consumeq_stats st;
    consumeq_stats(q, &st);
    cr_assert_gt(st.compactions, 3);
    expect_gc_view(q, 0, records);
    consumeq_close(q);
}

Test(consumeq, run_count_is_capped_without_explicit_compaction)
{
    struct consumeq *q = open_index(16, NULL);
    for (uint64_t i = 0; i < 16 * (CONSUMEQ_RUN_MAX + 5); i++)
        append(q, 1 + i % 5, i);
    struct consumeq_stats st;
    consumeq_stats(q, &st);
    cr_assert_leq(st.run_count, CONSUMEQ_RUN_MAX);
    cr_assert_geq(st.compactions, 1);
    expect_gc_view(q, 0, 16 * (CONSUMEQ_RUN_MAX + 5));
    consumeq_close(q);
}

Test(consumeq, next_offsets_survive_compaction_and_reopen)
{
    struct consumeq *q = gc_fixture(500);
    consumeq_set_gc(q, 10000 * LOG_STRIDE); /* everything is garbage */
    cr_assert_eq(consumeq_compact(q, CONSUMEQ_COMPACT_FULL), 1);
    struct consumeq_stats st;
    consumeq_stats(q, &st);
    cr_assert_eq(st.disk_entry_count, 0);
    for (uint64_t queue = 1; queue <= 5; queue++) {
        cr_assert_eq(consumeq_next_off(q, queue), 100);
        uint64_t oldest = 0;
        cr_assert_eq(consumeq_oldest_off(q, queue, &oldest), 0);
        cr_assert_eq(oldest, 100, "nothing readable: oldest is the next offset");
    }
    consumeq_close(q);
    q = open_index(64, NULL);
    struct consumeq_entry out[4];
    for (uint64_t queue = 1; queue <= 5; queue++) {
        cr_assert_eq(consumeq_next_off(q, queue), 100);
        cr_assert_eq(consumeq_read(q, queue, 0, out, 4), 0);
        cr_assert_eq(append(q, queue, 10000 + queue), 100, "numbering continues");
    }
    consumeq_close(q);
}

Test(consumeq, seek_log_finds_the_first_offset_at_a_log_position)
{
    struct consumeq *q = gc_fixture(1000);
    uint64_t off = 0;
    cr_assert_eq(consumeq_seek_log(q, 3, 0, &off), 0);
    cr_assert_eq(off, 0);
    cr_assert_eq(consumeq_seek_log(q, 3, 500 * LOG_STRIDE, &off), 0);
    cr_assert_eq(off, 100, "record 502 is queue 3's 100th");
    cr_assert_eq(consumeq_seek_log(q, 3, 5000 * LOG_STRIDE, &off), 0);
    cr_assert_eq(off, 200);
    cr_assert_eq(consumeq_seek_log(q, 99, 0, &off), -ENOENT);
    consumeq_close(q);
}

/* A big queue for seek tests: SEEK_QUEUE gets SEEK_ENTRIES entries from records picked by a
 * hash (so the gaps between its log offsets vary), queue 8 gets the others. seek_log[i] is
 * the log offset of SEEK_QUEUE's entry i (its queue offset is i). */
#define SEEK_QUEUE 7u
#define SEEK_ENTRIES 100000u
#define SEEK_EXTRA 5000u
#define SEEK_STEP 997u

static uint64_t seek_log[SEEK_ENTRIES + SEEK_EXTRA];
static uint32_t seek_count;
static uint64_t seek_next_record;

static bool seek_picks(uint64_t record_idx)
{
    return ((record_idx * 2654435761u) >> 7) % 3 != 0;
}

/* Appends records until SEEK_QUEUE holds `until` entries; a full compaction when it reaches
 * `compact_at` (0: none). */
static void seek_fill(struct consumeq *q, uint32_t until, uint32_t compact_at)
{
    while (seek_count < until) {
        uint64_t rec = seek_next_record++;
        if (!seek_picks(rec)) {
            append(q, 8, rec);
            continue;
        }
        cr_assert_eq(append(q, SEEK_QUEUE, rec), seek_count);
        seek_log[seek_count++] = rec * LOG_STRIDE;
        if (seek_count == compact_at)
            cr_assert_eq(consumeq_compact(q, CONSUMEQ_COMPACT_FULL), 1);
    }
}

/* Checks consumeq_seek_log at targets given in increasing order against a brute-force walk:
 * the answer is the first entry at or above both the target and the watermark `gc_off`. */
struct seek_check {
    struct consumeq *q;
    uint64_t gc_off;
    uint32_t brute_idx;
    uint64_t last_target;
    uint64_t checked;
};

static void seek_expect(struct seek_check *c, uint64_t target)
{
    cr_assert_geq(target, c->last_target, "targets come in order");
    c->last_target = target;
    while (c->brute_idx < seek_count &&
           (seek_log[c->brute_idx] < target || seek_log[c->brute_idx] < c->gc_off))
        c->brute_idx++;
    uint64_t off = CONSUMEQ_OFF_NONE;
    cr_assert_eq(consumeq_seek_log(c->q, SEEK_QUEUE, target, &off), 0);
    cr_assert_eq(off, c->brute_idx, "seek to %lu: %lu, want %u", target, off, c->brute_idx);
    c->checked++;
}

/* Every SEEK_STEP-th log offset, before the first entry, exactly at and just after every
 * `entry_stride`-th entry and every entry near the watermark (just after is between two
 * entries: records are LOG_STRIDE apart), and after the last. Returns the number of seeks. */
static uint64_t seek_expect_all(struct consumeq *q, uint64_t gc_off, uint32_t entry_stride)
{
    uint64_t end = seek_log[seek_count - 1] + 2 * SEEK_STEP;
    struct seek_check c = { .q = q, .gc_off = gc_off };
    for (uint64_t t = 0; t <= end; t += SEEK_STEP)
        seek_expect(&c, t);
    c = (struct seek_check){ .q = q, .gc_off = gc_off };
    seek_expect(&c, 0);
    for (uint32_t i = 0; i < seek_count; i++) {
        bool is_near_gc = seek_log[i] + 64 * LOG_STRIDE > gc_off &&
                          seek_log[i] < gc_off + 64 * LOG_STRIDE;
        if (i % entry_stride != 0 && !is_near_gc && i + 1 != seek_count)
            continue;
        seek_expect(&c, seek_log[i]);
        seek_expect(&c, seek_log[i] + 1);
    }
    seek_expect(&c, seek_log[seek_count - 1] + RECORD_LEN);
    seek_expect(&c, UINT64_MAX);
    cr_assert_eq(c.brute_idx, seek_count, "past the end is the next offset");
    return c.checked;
}

Test(consumeq, seek_log_matches_brute_force_over_runs_and_buffer)
{
    seek_count = 0;
    seek_next_record = 1; /* log offset 0 holds nothing of the queue: "before the first" */
    struct consumeq *q = open_index(8192, NULL);
    seek_fill(q, SEEK_ENTRIES, 70000);
    struct consumeq_stats st;
    consumeq_stats(q, &st);
    cr_assert_geq(st.run_count, 4, "one merged run and newer flushed runs");
    cr_assert_gt(st.mem_entry_count, 0, "the newest entries are in the write buffer");
    cr_assert_eq(consumeq_next_off(q, SEEK_QUEUE), SEEK_ENTRIES);
    cr_assert_gt(seek_expect_all(q, 0, 1), 2 * (uint64_t)SEEK_ENTRIES);

    /* A watermark between two entries, before compaction (GC'd entries are still in runs)
     * and after it (they are gone: probes land above their offset). */
    uint64_t gc_off = seek_log[31234] + 1;
    consumeq_set_gc(q, gc_off);
    seek_expect_all(q, gc_off, 11);
    cr_assert_eq(consumeq_compact(q, CONSUMEQ_COMPACT_FULL), 1);
    consumeq_stats(q, &st);
    cr_assert_eq(st.mem_entry_count, 0);
    cr_assert_geq(st.entries_dropped_gc, 31235);
    seek_expect_all(q, gc_off, 1);
    uint64_t off = 0;
    cr_assert_eq(consumeq_seek_log(q, SEEK_QUEUE, 0, &off), 0);
    cr_assert_eq(off, 31235, "the oldest readable entry");

    /* New entries in the buffer, then a watermark inside them: every run entry is garbage. */
    seek_fill(q, SEEK_ENTRIES + SEEK_EXTRA, 0);
    consumeq_stats(q, &st);
    cr_assert_geq(st.mem_entry_count, SEEK_EXTRA);
    seek_expect_all(q, gc_off, 11);
    gc_off = seek_log[SEEK_ENTRIES + 17];
    consumeq_set_gc(q, gc_off);
    seek_expect_all(q, gc_off, 11);
    cr_assert_eq(consumeq_seek_log(q, SEEK_QUEUE, 0, &off), 0);
    cr_assert_eq(off, SEEK_ENTRIES + 17);
    consumeq_close(q);
}

Test(consumeq, seek_log_skips_entries_below_the_head_of_a_recreated_queue)
{
    struct consumeq *q = open_index(64, NULL);
    const uint64_t filter = 9;
    cr_assert_eq(consumeq_create(q, filter), 0);
    for (uint64_t i = 0; i < 1000; i++)
        append(q, filter, i); /* in runs and the buffer */
    cr_assert_eq(consumeq_drop(q, filter), 0);
    cr_assert_eq(consumeq_create(q, filter), 0);
    uint64_t off = 0;
    cr_assert_eq(consumeq_seek_log(q, filter, 0, &off), 0);
    cr_assert_eq(off, 1000, "nothing readable: the next offset");
    for (uint64_t i = 1000; i < 1100; i++)
        cr_assert_eq(append(q, filter, i), i);
    for (uint64_t i = 0; i < 1100; i += 7) {
        cr_assert_eq(consumeq_seek_log(q, filter, i * LOG_STRIDE, &off), 0);
        cr_assert_eq(off, MAX(i, 1000), "seek to record %lu", i);
    }
    cr_assert_eq(consumeq_flush(q, 0), 0);
    cr_assert_eq(consumeq_seek_log(q, filter, 5 * LOG_STRIDE, &off), 0);
    cr_assert_eq(off, 1000);
    cr_assert_eq(consumeq_seek_log(q, filter, 1050 * LOG_STRIDE + 1, &off), 0);
    cr_assert_eq(off, 1051);
    cr_assert_eq(consumeq_seek_log(q, filter, 1100 * LOG_STRIDE, &off), 0);
    cr_assert_eq(off, 1100);
    consumeq_close(q);
}

/* ---- create and drop ---- */

Test(consumeq, drop_queue_hides_and_discards_its_entries)
{
    struct consumeq *q = open_index(64, NULL);
    uint64_t filter = consumeq_queue_id(CONSUMEQ_KIND_FILTER, slice_from_cstr("a/+"));
    cr_assert_eq(consumeq_create(q, filter), 0);
    cr_assert_eq(consumeq_create(q, filter), 1, "idempotent");
    cr_assert_eq(consumeq_next_off(q, filter), 0);
    for (uint64_t i = 0; i < 300; i++) {
        append(q, filter, i);
        append(q, 5, i);
    }
    cr_assert_eq(consumeq_drop(q, filter), 0);
    cr_assert_eq(consumeq_drop(q, filter), -ENOENT);
    cr_assert_not(consumeq_exists(q, filter));
    struct consumeq_entry out[8];
    cr_assert_eq(consumeq_read(q, filter, 0, out, 8), -ENOENT);
    cr_assert_eq(consumeq_next_off(q, filter), CONSUMEQ_OFF_NONE);

    /* Re-created before a full compaction: numbering continues, old entries stay hidden. */
    cr_assert_eq(consumeq_create(q, filter), 0);
    cr_assert_eq(consumeq_next_off(q, filter), 300);
    cr_assert_eq(consumeq_read(q, filter, 0, out, 8), 0);
    cr_assert_eq(append(q, filter, 300), 300);
    cr_assert_eq(consumeq_read(q, filter, 0, out, 8), 1);
    expect_entry(&out[0], filter, 300, 300);
    cr_assert_eq(consumeq_drop(q, filter), 0);

    cr_assert_eq(consumeq_compact(q, CONSUMEQ_COMPACT_FULL), 1);
    struct consumeq_stats st;
    consumeq_stats(q, &st);
    cr_assert_eq(st.disk_entry_count, 300, "only queue 5's entries remain");
    cr_assert_eq(st.tombstone_count, 0, "a full compaction forgets tombstones");
    cr_assert_eq(st.queue_count, 1);
    consumeq_close(q);

    q = open_index(64, NULL);
    cr_assert_not(consumeq_exists(q, filter));
    cr_assert_eq(consumeq_create(q, filter), 0);
    cr_assert_eq(consumeq_next_off(q, filter), 0, "a forgotten queue starts again at 0");
    cr_assert_eq(consumeq_next_off(q, 5), 300);
    consumeq_close(q);
}

Test(consumeq, appends_out_of_log_order_abort, .signal = SIGABRT)
{
    struct consumeq *q = open_index(0, NULL);
    append(q, 1, 10);
    /* The abort skips .fini: remove the (still empty) directory now. */
    cr_assert_eq(rmdir(test_dir), 0);
    struct consumeq_record rec = record_at(9);
    uint64_t off = 0;
    (void)consumeq_append(q, 1, &rec, &off);
}

/* ---- checkpoint, crash and replay ----
 *
 * A simulated log of records: messages go to one of TOPICS topic queues and to up to three of
 * FILTERS filter queues that are live; session records create or drop a filter queue. Replay
 * applies the records at or after the checkpoint, in order, as the broker's recovery will. */

#define TOPICS 200u
#define FILTERS 20u
#define TOPIC_ID(t) (100u + (t))
#define FILTER_ID(f) (10000u + (f))
#define LOG_OPS_MAX 4000u
#define SNAP_ENTRIES_MAX 20000u

enum log_op_kind { OP_MESSAGE, OP_CREATE, OP_DROP };

struct log_op {
    enum log_op_kind kind;
    uint32_t queue_count;
    uint64_t queue_ids[4];
};

static struct log_op log_ops[LOG_OPS_MAX];

/* Fills log_ops deterministically from `seed`; record i is log_ops[i]. */
static void log_generate(uint32_t count, uint64_t seed)
{
    bool live[FILTERS] = { false };
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
    for (uint32_t i = 0; i < count; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        struct log_op *op = &log_ops[i];
        uint32_t f = (uint32_t)(x >> 40) % FILTERS;
        if ((x & 0xff) < 40) {
            op->kind = live[f] ? OP_DROP : OP_CREATE;
            op->queue_count = 1;
            op->queue_ids[0] = FILTER_ID(f);
            live[f] = !live[f];
            continue;
        }
        op->kind = OP_MESSAGE;
        op->queue_count = 1;
        op->queue_ids[0] = TOPIC_ID((uint32_t)(x >> 16) % TOPICS);
        for (uint32_t k = 0; k < 3; k++)
            if (live[(f + k * 7) % FILTERS] && ((x >> (8 + k)) & 1))
                op->queue_ids[op->queue_count++] = FILTER_ID((f + k * 7) % FILTERS);
    }
}

static void log_apply(struct consumeq *q, uint32_t idx)
{
    const struct log_op *op = &log_ops[idx];
    if (op->kind == OP_CREATE) {
        cr_assert_geq(consumeq_create(q, op->queue_ids[0]), 0);
    } else if (op->kind == OP_DROP) {
        int rc = consumeq_drop(q, op->queue_ids[0]);
        cr_assert(rc == 0 || rc == -ENOENT); /* a replayed drop may find it dropped */
    } else {
        for (uint32_t k = 0; k < op->queue_count; k++)
            append(q, op->queue_ids[k], idx);
    }
}

/* Applies records [from, to), with an explicit flush or compaction now and then. */
static void log_run(struct consumeq *q, uint32_t from, uint32_t to, bool with_maintenance)
{
    for (uint32_t i = from; i < to; i++) {
        log_apply(q, i);
        if (with_maintenance && i % 487 == 486)
            cr_assert_eq(consumeq_flush(q, 0), 0);
        if (with_maintenance && i % 1301 == 1300)
            cr_assert_geq(consumeq_compact(q, CONSUMEQ_COMPACT_AUTO), 0);
    }
}

/* Replays every record at or after the checkpoint `covered_off`, up to `to`. */
static void log_replay(struct consumeq *q, uint64_t covered_off, uint32_t to)
{
    uint32_t from = (uint32_t)((covered_off + LOG_STRIDE - 1) / LOG_STRIDE);
    cr_assert_leq(from, to);
    log_run(q, from, to, false);
}

struct snapshot {
    bool exists[TOPICS + FILTERS];
    uint64_t next_off[TOPICS + FILTERS];
    uint32_t first[TOPICS + FILTERS];
    uint32_t count[TOPICS + FILTERS];
    uint32_t entry_count;
    struct consumeq_entry entries[SNAP_ENTRIES_MAX];
};

static uint64_t universe_id(uint32_t i)
{
    return i < TOPICS ? TOPIC_ID(i) : FILTER_ID(i - TOPICS);
}

static void snapshot_take(struct consumeq *q, struct snapshot *s)
{
    s->entry_count = 0;
    for (uint32_t i = 0; i < TOPICS + FILTERS; i++) {
        uint64_t id = universe_id(i);
        s->exists[i] = consumeq_exists(q, id);
        s->next_off[i] = consumeq_next_off(q, id);
        s->first[i] = s->entry_count;
        s->count[i] = 0;
        if (!s->exists[i])
            continue;
        s->count[i] = read_all(q, id, 0, 64, s->entries + s->entry_count,
                               SNAP_ENTRIES_MAX - s->entry_count);
        s->entry_count += s->count[i];
    }
}

/* Compares two snapshots. A rebuild renumbers a filter queue that was dropped and created
 * again (its offsets restart at 0, where a live index may have continued the old numbering),
 * so with `is_rebuild` filter queues are compared by content: the same records in order. */
static void snapshot_expect_equal_raw(const struct snapshot *a, const struct snapshot *b,
                                      bool is_rebuild)
{
    for (uint32_t i = 0; i < TOPICS + FILTERS; i++) {
        cr_assert_eq(a->exists[i], b->exists[i], "queue %lu exists", universe_id(i));
        if (is_rebuild && i >= TOPICS) {
            cr_assert_eq(a->count[i], b->count[i], "queue %lu entry count", universe_id(i));
            for (uint32_t k = 0; k < a->count[i]; k++)
                cr_assert_eq(a->entries[a->first[i] + k].log_off,
                             b->entries[b->first[i] + k].log_off);
            continue;
        }
        cr_assert_eq(a->next_off[i], b->next_off[i], "queue %lu next offset", universe_id(i));
        cr_assert_eq(a->count[i], b->count[i], "queue %lu entry count", universe_id(i));
        cr_assert_eq(memcmp(a->entries + a->first[i], b->entries + b->first[i],
                            a->count[i] * sizeof(struct consumeq_entry)),
                     0, "queue %lu entries", universe_id(i));
    }
}

static void snapshot_expect_equal(const struct snapshot *a, const struct snapshot *b)
{
    snapshot_expect_equal_raw(a, b, false);
}

static struct snapshot snap_before;
static struct snapshot snap_after;

Test(consumeq, checkpoint_reopen_and_replay_give_the_same_answers)
{
    const uint32_t total = 3000;
    const uint32_t crash_points[] = { 1, 63, 64, 65, 500, 1299, 1301, 2222, 2999, 3000 };
    for (uint32_t c = 0; c < ARRAY_LEN(crash_points); c++) {
        uint32_t crash = crash_points[c];
        cr_assert_eq(consumeq_wipe(test_dir, NULL, NULL), 0);
        log_generate(total, c + 1);
        struct consumeq *q = open_index(64, NULL);
        log_run(q, 0, crash, true);
        snapshot_take(q, &snap_before);
        consumeq_close(q); /* the crash: the write buffer is lost */

        struct consumeq_open_info info;
        q = open_index(64, &info);
        cr_assert_leq(info.covered_off, crash * (uint64_t)LOG_STRIDE);
        log_replay(q, info.covered_off, crash);
        snapshot_take(q, &snap_after);
        snapshot_expect_equal(&snap_before, &snap_after);

        /* And the index keeps working: the rest of the log, then a clean reopen. */
        log_run(q, crash, total, true);
        snapshot_take(q, &snap_before);
        cr_assert_eq(consumeq_flush(q, 0), 0);
        consumeq_close(q);
        q = open_index(64, &info);
        uint32_t last_message = total - 1;
        while (log_ops[last_message].kind != OP_MESSAGE)
            last_message--;
        cr_assert_eq(info.covered_off, last_message * (uint64_t)LOG_STRIDE + RECORD_LEN);
        snapshot_take(q, &snap_after);
        snapshot_expect_equal(&snap_before, &snap_after);
        consumeq_close(q);
    }
}

/* ---- damaged files ---- */

/* Builds an index from 3000 records in several runs and snapshots it (after a flush). */
static void damaged_fixture(void)
{
    log_generate(3000, 77);
    struct consumeq *q = open_index(256, NULL);
    log_run(q, 0, 3000, true);
    cr_assert_eq(consumeq_flush(q, 0), 0);
    snapshot_take(q, &snap_before);
    consumeq_close(q);
    cr_assert_geq(run_file_count(), 3);
}

/* The caller's rebuild path: wipe, open (checkpoint 0), replay the whole log. */
static void rebuild_and_check(void)
{
    cr_assert_eq(consumeq_wipe(test_dir, collect_report, NULL), 0);
    cr_assert_eq(run_file_count(), 0);
    struct consumeq_open_info info;
    struct consumeq *q = open_index(256, &info);
    cr_assert_eq(info.covered_off, 0);
    log_replay(q, 0, 3000);
    snapshot_take(q, &snap_after);
    snapshot_expect_equal_raw(&snap_before, &snap_after, true);
    consumeq_close(q);
}

static void expect_open_ok_and_equal(void)
{
    struct consumeq_open_info info;
    struct consumeq *q = open_index(256, &info);
    snapshot_take(q, &snap_after);
    snapshot_expect_equal(&snap_before, &snap_after);
    consumeq_close(q);
}

static void expect_open_corrupt(const char *why)
{
    struct consumeq *q = NULL;
    struct consumeq_open_info info;
    report_count = 0;
    cr_assert_eq(try_open(256, &q, &info), -EBADMSG, "%s is detected", why);
    cr_assert_null(q);
    cr_assert_geq(report_count, 1, "%s is reported", why);
    cr_assert(report_contains("rebuild"), "the report says what to do: %s", report_lines[0]);
}

Test(consumeq, leftover_temp_run_is_removed_at_open)
{
    damaged_fixture();
    char path[PATH_LEN];
    snprintf(path, sizeof(path), "%s/cq-00000000000000ff-00000000000000ff.run.tmp", test_dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, "half a run", 10), 10);
    close(fd);
    struct consumeq_open_info info;
    struct consumeq *q = open_index(256, &info);
    cr_assert_eq(info.temp_files_removed, 1);
    cr_assert(report_contains("temp"));
    cr_assert_eq(access(path, F_OK), -1, "the temp file is gone");
    snapshot_take(q, &snap_after);
    snapshot_expect_equal(&snap_before, &snap_after);
    consumeq_close(q);
}

Test(consumeq, truncated_run_is_detected_and_rebuilt)
{
    damaged_fixture();
    char path[PATH_LEN];
    run_file_path(0, path, sizeof(path));
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(truncate(path, st.st_size - 4096), 0);
    expect_open_corrupt("a run missing its last block");
    cr_assert(report_contains("truncated"));
    cr_assert_eq(truncate(path, 100), 0);
    expect_open_corrupt("a run shorter than its header");
    rebuild_and_check();
}

static void flip_byte(const char *path, off_t at)
{
    int fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0);
    uint8_t b = 0;
    cr_assert_eq(pread(fd, &b, 1, at), 1);
    b ^= 0x10;
    cr_assert_eq(pwrite(fd, &b, 1, at), 1);
    close(fd);
}

Test(consumeq, flipped_byte_anywhere_in_a_run_is_detected)
{
    damaged_fixture();
    char path[PATH_LEN];
    run_file_path(1, path, sizeof(path));
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    const off_t positions[] = {
        0,                   /* magic */
        40,                  /* entry count */
        100,                 /* header checksum */
        4096 + 17,           /* first entry */
        4096 + 4080,         /* first block's item count */
        4096 + 4095,         /* first block's checksum */
        st.st_size - 4096 + 5, /* last (queue) block */
        st.st_size - 1,
    };
    for (uint32_t i = 0; i < ARRAY_LEN(positions); i++) {
        flip_byte(path, positions[i]);
        expect_open_corrupt("a flipped byte");
        flip_byte(path, positions[i]); /* restore */
        expect_open_ok_and_equal();
    }
    flip_byte(path, 4096 * 2 + 333);
    expect_open_corrupt("a flipped byte in a later block");
    rebuild_and_check();
}

Test(consumeq, missing_run_is_detected)
{
    damaged_fixture();
    char path[PATH_LEN];
    run_file_path(1, path, sizeof(path));
    cr_assert_eq(unlink(path), 0);
    expect_open_corrupt("a run missing from the sequence");
    rebuild_and_check();
}

/* A compaction that crashed after renaming its output but before deleting its inputs leaves
 * both; open must use the merged run and delete the inputs. */
Test(consumeq, inputs_of_a_crashed_compaction_are_removed_at_open)
{
    damaged_fixture();
    uint32_t inputs = run_file_count();
    char paths[CONSUMEQ_RUN_MAX][PATH_LEN];
    static uint8_t contents[CONSUMEQ_RUN_MAX][1 << 20];
    ssize_t lens[CONSUMEQ_RUN_MAX];
    for (uint32_t i = 0; i < inputs; i++) {
        run_file_path(i, paths[i], sizeof(paths[i]));
        int fd = open(paths[i], O_RDONLY);
        lens[i] = read(fd, contents[i], sizeof(contents[i]));
        cr_assert_gt(lens[i], 0);
        cr_assert_lt(lens[i], (ssize_t)sizeof(contents[i]));
        close(fd);
    }
    struct consumeq *q = open_index(256, NULL);
    cr_assert_eq(consumeq_compact(q, CONSUMEQ_COMPACT_FULL), 1);
    consumeq_close(q);
    cr_assert_eq(run_file_count(), 1);
    for (uint32_t i = 0; i < inputs; i++) {
        int fd = open(paths[i], O_WRONLY | O_CREAT | O_TRUNC, 0644);
        cr_assert_eq(write(fd, contents[i], (size_t)lens[i]), lens[i]);
        close(fd);
    }
    struct consumeq_open_info info;
    q = open_index(256, &info);
    cr_assert_eq(info.obsolete_runs_removed, inputs);
    cr_assert_eq(info.run_count, 1);
    cr_assert_eq(run_file_count(), 1);
    snapshot_take(q, &snap_after);
    snapshot_expect_equal(&snap_before, &snap_after);
    consumeq_close(q);
}

Test(consumeq, corruption_after_open_fails_the_read_not_the_process)
{
    struct consumeq *q = open_index(0, NULL);
    for (uint64_t i = 0; i < 500; i++)
        append(q, 1 + i % 2, i);
    cr_assert_eq(consumeq_flush(q, 0), 0);
    append(q, 1, 500);
    cr_assert_eq(consumeq_flush(q, 0), 0); /* a second run, so a full compaction has work */
    char path[PATH_LEN];
    run_file_path(0, path, sizeof(path));
    flip_byte(path, 4096 + 200); /* queue 1's entries, first block */
    report_count = 0;
    struct consumeq_entry out[8];
    cr_assert_eq(consumeq_read(q, 1, 0, out, 8), -EBADMSG);
    cr_assert(report_contains("block 1"));
    cr_assert_eq(consumeq_compact(q, CONSUMEQ_COMPACT_FULL), -EBADMSG, "compaction stops too");
    cr_assert_eq(consumeq_read(q, 2, 200, out, 8), 8, "other blocks still read");
    consumeq_close(q);
}

/* ---- limits ---- */

Test(consumeq, one_record_to_too_many_queues_is_enobufs)
{
    struct consumeq *q = open_index(16, NULL);
    uint64_t limit = 16 + CONSUMEQ_RECORD_QUEUES_MAX;
    for (uint64_t k = 0; k < limit; k++)
        append(q, 1 + k, 0); /* one record, never split by a flush */
    struct consumeq_record rec = record_at(0);
    uint64_t off = 0;
    cr_assert_eq(consumeq_append(q, 99999, &rec, &off), -ENOBUFS);
    cr_assert_eq(append(q, 1, 1), 1, "the next record flushes first");
    struct consumeq_stats st;
    consumeq_stats(q, &st);
    cr_assert_eq(st.disk_entry_count, limit);
    cr_assert_eq(st.mem_entry_count, 1);
    consumeq_close(q);
}

Test(consumeq, queue_table_is_capped_at_queue_max)
{
    struct consumeq_config cfg = { .dir = test_dir, .queue_max = 1000 };
    struct consumeq_open_info info;
    struct consumeq *q = NULL;
    cr_assert_eq(consumeq_open(&cfg, &q, &info), 0);
    for (uint64_t i = 0; i < 1000; i++)
        cr_assert_eq(consumeq_create(q, 1 + i), 0);
    cr_assert_eq(consumeq_create(q, 5000), -ENOSPC);
    struct consumeq_record rec = record_at(0);
    uint64_t off = 0;
    cr_assert_eq(consumeq_append(q, 5000, &rec, &off), -ENOSPC);
    cr_assert_eq(consumeq_append(q, 7, &rec, &off), 0, "existing queues still take appends");
    consumeq_close(q);
}

Test(consumeq, compacting_a_single_run_rewrites_it_in_place)
{
    struct consumeq *q = open_index(0, NULL);
    for (uint64_t i = 0; i < 1000; i++)
        append(q, 1 + i % 5, i);
    cr_assert_eq(consumeq_flush(q, 0), 0);
    cr_assert_eq(consumeq_compact(q, CONSUMEQ_COMPACT_FULL), 0, "nothing to gain");
    consumeq_set_gc(q, 100 * LOG_STRIDE);
    cr_assert_eq(consumeq_compact(q, CONSUMEQ_COMPACT_AUTO), 0, "10% garbage is not worth it");
    consumeq_set_gc(q, 600 * LOG_STRIDE);
    cr_assert_eq(consumeq_compact(q, CONSUMEQ_COMPACT_AUTO), 1, "60% garbage is");
    cr_assert_eq(consumeq_compact(q, CONSUMEQ_COMPACT_AUTO), 0, "and only once");
    cr_assert_eq(run_file_count(), 1);
    consumeq_close(q);
    struct consumeq_open_info info;
    q = open_index(0, &info);
    cr_assert_eq(info.run_count, 1);
    cr_assert_eq(info.entry_count, 400);
    expect_gc_view(q, 600, 1000);
    consumeq_close(q);
}

Test(consumeq, failed_flush_keeps_the_buffer_readable_and_retries)
{
    struct consumeq *q = open_index(64, NULL);
    for (uint64_t i = 0; i < 50; i++)
        append(q, 1 + i % 3, i);
    char moved[PATH_LEN];
    snprintf(moved, sizeof(moved), "%s-moved", test_dir);
    cr_assert_eq(rename(test_dir, moved), 0); /* the directory vanishes: every write fails */
    report_count = 0;
    cr_assert_eq(consumeq_flush(q, 0), -ENOENT);
    cr_assert(report_contains("flush"));
    for (uint64_t i = 50; i < 60; i++)
        append(q, 1 + i % 3, i); /* the buffer, sorted by the failed flush, still takes appends */
    struct consumeq_entry out[32];
    for (uint64_t queue = 1; queue <= 3; queue++) {
        uint32_t n = read_all(q, queue, 0, 7, out, 32);
        cr_assert_eq(n, consumeq_next_off(q, queue));
        for (uint32_t k = 0; k < n; k++)
            expect_entry(&out[k], queue, k, k * 3 + queue - 1);
    }
    cr_assert_eq(rename(moved, test_dir), 0);
    cr_assert_eq(consumeq_flush(q, 0), 0);
    consumeq_close(q);
    q = open_index(64, NULL);
    for (uint64_t queue = 1; queue <= 3; queue++)
        cr_assert_eq(read_all(q, queue, 0, 7, out, 32), consumeq_next_off(q, queue));
    cr_assert_eq(consumeq_next_off(q, 1), 20);
    consumeq_close(q);
}
