/* tests/unit/test_retention.c - unit tests for store/retention: the pure decision over a table
 * of segment layouts (size limit, age limit, both, the pinned floor, the active segment, exact
 * boundaries), and retention_apply on real directories of small preallocated segments (files
 * removed, survivors, the returned watermark, ages set with futimens, an empty directory, a
 * directory holding only the active segment, foreign files).
 *
 * Directories come from tests/helpers/store_dir.h (build/scratch/, on the real disk, not
 * tmpfs) and are removed in .fini. Single-threaded; no sleeps: ages come from explicit mtimes and an explicit now.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/config.h"
#include "store/retention.h"
#include "store/segment.h"
#include "tests/helpers/store_dir.h"

#define SEG_BYTES (UINT64_C(64) << 10) /* small segments: 64 KiB */
#define NS_PER_HOUR (UINT64_C(3600) * 1000000000)
#define NOW_NS (UINT64_C(1700000000) * 1000000000) /* a fixed wall time, late 2023 */
#define CASE_SEG_MAX 8

static char g_root[256]; /* the mkdtemp directory */
static char g_dir[512];  /* the shard's log directory inside it */

static void tmp_setup(void)
{
    store_dir_create(g_root, sizeof(g_root), "retention");
    snprintf(g_dir, sizeof(g_dir), "%s/shard-0", g_root);
    cr_assert_eq(segment_dir_ensure(g_dir), 0);
}

static void tmp_teardown(void) { (void)store_dir_remove(g_root); /* best effort */ }

/* The pure tests touch no disk; the ones on real directories take DISK (a directory per test,
 * removed after it). One suite-level timeout: per-test timeouts leak under ASan. */
TestSuite(retention, .timeout = 60);
#define DISK .init = tmp_setup, .fini = tmp_teardown

/* ---- The pure decision ------------------------------------------------------------------ */

/* Arrays, not pointers: criterion runs each case in a new process image. */
struct decide_case {
    char name[64];
    uint32_t count;
    struct retention_segment segs[CASE_SEG_MAX];
    struct retention_policy policy;
    uint64_t now_ns;
    uint64_t pinned_off;
    uint32_t expect;
};

/* Four closed segments of 100 bytes written at hours 1..4, and an active one holding 50
 * bytes, written now (hour 10): 450 bytes in all. */
#define FOUR_CLOSED                                                                              \
    { { 0, 100, 1 * NS_PER_HOUR },                                                                \
      { 100, 200, 2 * NS_PER_HOUR },                                                              \
      { 200, 300, 3 * NS_PER_HOUR },                                                              \
      { 300, 400, 4 * NS_PER_HOUR },                                                              \
      { 400, 450, 10 * NS_PER_HOUR } }
#define NOW_10H (10 * NS_PER_HOUR)
#define NO_PIN RETENTION_UNPINNED

ParameterizedTestParameters(retention, decide_cases)
{
    static struct decide_case cases[] = {
        /* Degenerate logs. */
        { "no segments", 0, { { 0 } }, { 1, 1 }, NOW_10H, NO_PIN, 0 },
        { "only the active segment, over both limits", 1, { { 0, 1000, 0 } }, { 1, 1 },
          NOW_10H, NO_PIN, 0 },
        { "no limits keep everything", 5, FOUR_CLOSED, { 0, 0 }, NOW_10H, NO_PIN, 0 },
        /* Size: 450 bytes in all, the active 50 never deleted. */
        { "size: exactly at the limit keeps all", 5, FOUR_CLOSED, { 450, 0 }, NOW_10H, NO_PIN,
          0 },
        { "size: one byte over deletes the oldest", 5, FOUR_CLOSED, { 449, 0 }, NOW_10H, NO_PIN,
          1 },
        { "size: 350 left after one is exactly enough", 5, FOUR_CLOSED, { 350, 0 }, NOW_10H,
          NO_PIN, 1 },
        { "size: 349 needs two", 5, FOUR_CLOSED, { 349, 0 }, NOW_10H, NO_PIN, 2 },
        { "size: 50 keeps only the active", 5, FOUR_CLOSED, { 50, 0 }, NOW_10H, NO_PIN, 4 },
        { "size: 1 still keeps the active", 5, FOUR_CLOSED, { 1, 0 }, NOW_10H, NO_PIN, 4 },
        { "size: an empty active segment counts 0", 3,
          { { 0, 100, 0 }, { 100, 200, 0 }, { 200, 200, 0 } }, { 100, 0 }, NOW_10H, NO_PIN, 1 },
        { "size: gaps between segments are not counted", 3,
          { { 0, 100, 0 }, { 1000, 1100, 0 }, { 5000, 5000, 0 } }, { 200, 0 }, NOW_10H, NO_PIN,
          0 },
        /* Age at hour 10: segments written at hours 1..4. */
        { "age: all young", 5, FOUR_CLOSED, { 0, 10 * NS_PER_HOUR }, NOW_10H, NO_PIN, 0 },
        { "age: exactly max_age old is kept", 5, FOUR_CLOSED, { 0, 9 * NS_PER_HOUR }, NOW_10H,
          NO_PIN, 0 },
        { "age: one ns older than max_age goes", 5, FOUR_CLOSED, { 0, 9 * NS_PER_HOUR - 1 },
          NOW_10H, NO_PIN, 1 },
        { "age: 7 h deletes hours 1 and 2", 5, FOUR_CLOSED, { 0, 7 * NS_PER_HOUR }, NOW_10H,
          NO_PIN, 2 },
        { "age: 1 ns deletes every closed one, not the active", 5, FOUR_CLOSED, { 0, 1 },
          NOW_10H, NO_PIN, 4 },
        { "age: an old active segment is kept", 2, { { 0, 100, 0 }, { 100, 150, 0 } },
          { 0, 1 }, NOW_10H, NO_PIN, 1 },
        { "age: stops at the first young segment", 4,
          { { 0, 100, 1 * NS_PER_HOUR }, { 100, 200, 9 * NS_PER_HOUR },
            { 200, 300, 1 * NS_PER_HOUR }, { 300, 350, 0 } },
          { 0, 5 * NS_PER_HOUR }, NOW_10H, NO_PIN, 1 },
        { "age: a newest_ns after now is young", 2,
          { { 0, 100, 20 * NS_PER_HOUR }, { 100, 150, 0 } }, { 0, 1 }, NOW_10H, NO_PIN, 0 },
        { "age: now before every segment deletes nothing", 5, FOUR_CLOSED, { 0, 1 }, 0, NO_PIN,
          0 },
        /* Both rules: the larger count wins. */
        { "both: size 1, age 2 -> 2", 5, FOUR_CLOSED, { 449, 7 * NS_PER_HOUR }, NOW_10H,
          NO_PIN, 2 },
        { "both: size 3, age 1 -> 3", 5, FOUR_CLOSED, { 150, 8 * NS_PER_HOUR + 1 }, NOW_10H,
          NO_PIN, 3 },
        { "both: neither wants any", 5, FOUR_CLOSED, { 450, 9 * NS_PER_HOUR }, NOW_10H, NO_PIN,
          0 },
        /* The pinned floor: only segments ending at or below pinned_off may go. */
        { "pin: at the end of segment 1 allows two", 5, FOUR_CLOSED, { 1, 1 }, NOW_10H, 200, 2 },
        { "pin: one below the end of segment 1 allows one", 5, FOUR_CLOSED, { 1, 1 }, NOW_10H,
          199, 1 },
        { "pin: at the first base allows none", 5, FOUR_CLOSED, { 1, 1 }, NOW_10H, 0, 0 },
        { "pin: past the append offset still spares the active", 5, FOUR_CLOSED, { 1, 1 },
          NOW_10H, 1000, 4 },
        { "pin: above what the rules want changes nothing", 5, FOUR_CLOSED, { 349, 0 }, NOW_10H,
          300, 2 },
        { "pin: caps the age rule", 5, FOUR_CLOSED, { 0, 1 }, NOW_10H, 150, 1 },
    };
    return cr_make_param_array(struct decide_case, cases, ARRAY_LEN(cases));
}

ParameterizedTest(struct decide_case *c, retention, decide_cases)
{
    uint32_t n = retention_decide(c->segs, c->count, &c->policy, c->now_ns, c->pinned_off);
    cr_assert_eq(n, c->expect, "%s: deleted %u, want %u", c->name, n, c->expect);
}

Test(retention, decide_asserts_on_overlapping_segments, .signal = SIGABRT)
{
    struct retention_segment segs[] = { { 0, 200, 0 }, { 100, 300, 0 } };
    struct retention_policy p = { 1, 0 };
    (void)retention_decide(segs, 2, &p, NOW_10H, NO_PIN);
}

Test(retention, policy_from_config_defaults_is_10_gib_and_7_days)
{
    struct config cfg;
    config_defaults(&cfg);
    struct retention_policy p = retention_policy_from_config(&cfg);
    cr_assert_eq(p.max_bytes, UINT64_C(10737418240));
    cr_assert_eq(p.max_age_ns, 168 * NS_PER_HOUR);
    cfg.store_retention_bytes = 0;
    cfg.store_retention_hours = 0;
    p = retention_policy_from_config(&cfg);
    cr_assert_eq(p.max_bytes, 0);
    cr_assert_eq(p.max_age_ns, 0);
    cfg.store_retention_hours = 876000; /* the largest the config accepts */
    p = retention_policy_from_config(&cfg);
    cr_assert_eq(p.max_age_ns, 876000 * NS_PER_HOUR);
}

/* ---- retention_apply on real directories ------------------------------------------------- */

static void make_segment(uint64_t base_off, uint64_t size)
{
    int fd = segment_open(g_dir, base_off, size);
    cr_assert_geq(fd, 0, "segment_open %" PRIu64 ": %s", base_off, strerror(-fd));
    cr_assert_eq(close(fd), 0);
}

/* Makes `count` segments of SEG_BYTES at bases 0, SEG_BYTES, ... */
static void make_segments(uint32_t count)
{
    for (uint32_t i = 0; i < count; i++)
        make_segment(i * SEG_BYTES, SEG_BYTES);
}

static void set_mtime(uint64_t base_off, uint64_t mtime_ns)
{
    char path[1024];
    segment_path(g_dir, base_off, path, sizeof(path));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    cr_assert_neq(fd, -1, "open %s: %s", path, strerror(errno));
    struct timespec times[2] = {
        { .tv_sec = (time_t)(mtime_ns / 1000000000), .tv_nsec = (long)(mtime_ns % 1000000000) },
        { .tv_sec = (time_t)(mtime_ns / 1000000000), .tv_nsec = (long)(mtime_ns % 1000000000) },
    };
    cr_assert_eq(futimens(fd, times), 0, "futimens: %s", strerror(errno));
    cr_assert_eq(close(fd), 0);
}

/* Sets every segment of make_segments(count) to `mtime_ns`, so only the test's own ages count. */
static void set_all_mtimes(uint32_t count, uint64_t mtime_ns)
{
    for (uint32_t i = 0; i < count; i++)
        set_mtime(i * SEG_BYTES, mtime_ns);
}

/* Asserts that the directory holds exactly the segments with the `count` bases in `bases`. */
static void assert_segments(const uint64_t *bases, uint32_t count)
{
    struct segment_list list;
    char err[256] = "";
    cr_assert_eq(segment_list(g_dir, &list, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(list.count, count, "segments left: %u, want %u", list.count, count);
    for (uint32_t i = 0; i < count; i++)
        cr_assert_eq(list.base_offs[i], bases[i], "segment %u: %" PRIu64 ", want %" PRIu64, i,
                     list.base_offs[i], bases[i]);
    segment_list_free(&list);
}

Test(retention, apply_by_size_removes_the_oldest_and_returns_the_watermark, DISK)
{
    make_segments(5);
    set_all_mtimes(5, NOW_NS);
    uint64_t active = 4 * SEG_BYTES;
    uint64_t append_off = active + 4096;
    /* 4 * 64 KiB + 4 KiB in the log; keeping 2 * 64 KiB + 4 KiB means two must go. */
    struct retention_policy p = { 2 * SEG_BYTES + 4096, 0 };
    uint64_t start_off = 12345;
    int rc = retention_apply(g_dir, active, append_off, &p, NOW_NS, NO_PIN, &start_off);
    cr_assert_eq(rc, 2, "rc %d", rc);
    cr_assert_eq(start_off, 2 * SEG_BYTES);
    uint64_t left[] = { 2 * SEG_BYTES, 3 * SEG_BYTES, 4 * SEG_BYTES };
    assert_segments(left, ARRAY_LEN(left));

    /* A second pass finds nothing to do and reports the same watermark. */
    start_off = 12345;
    rc = retention_apply(g_dir, active, append_off, &p, NOW_NS, NO_PIN, &start_off);
    cr_assert_eq(rc, 0, "rc %d", rc);
    cr_assert_eq(start_off, 2 * SEG_BYTES);
    assert_segments(left, ARRAY_LEN(left));
}

Test(retention, apply_at_the_size_limit_exactly_removes_nothing, DISK)
{
    make_segments(3);
    set_all_mtimes(3, NOW_NS);
    uint64_t active = 2 * SEG_BYTES;
    struct retention_policy p = { 2 * SEG_BYTES + 8192, 0 };
    uint64_t start_off = 12345;
    int rc = retention_apply(g_dir, active, active + 8192, &p, NOW_NS, NO_PIN, &start_off);
    cr_assert_eq(rc, 0, "rc %d", rc);
    cr_assert_eq(start_off, 0);
    uint64_t left[] = { 0, SEG_BYTES, 2 * SEG_BYTES };
    assert_segments(left, ARRAY_LEN(left));
    /* One byte further and the oldest goes. */
    rc = retention_apply(g_dir, active, active + 8193, &p, NOW_NS, NO_PIN, &start_off);
    cr_assert_eq(rc, 1, "rc %d", rc);
    cr_assert_eq(start_off, SEG_BYTES);
}

Test(retention, apply_counts_closed_segments_by_their_file_size, DISK)
{
    /* A 128 KiB segment (written under a larger store.segment_bytes), then 64 KiB ones. */
    make_segment(0, 2 * SEG_BYTES);
    make_segment(2 * SEG_BYTES, SEG_BYTES);
    make_segment(3 * SEG_BYTES, SEG_BYTES);
    uint64_t bases[] = { 0, 2 * SEG_BYTES, 3 * SEG_BYTES };
    for (uint32_t i = 0; i < ARRAY_LEN(bases); i++)
        set_mtime(bases[i], NOW_NS);
    /* 192 KiB closed + an empty active: over 128 KiB by the 128 KiB segment's size alone. */
    struct retention_policy p = { 2 * SEG_BYTES, 0 };
    uint64_t start_off = 0;
    int rc = retention_apply(g_dir, 3 * SEG_BYTES, 3 * SEG_BYTES, &p, NOW_NS, NO_PIN,
                             &start_off);
    cr_assert_eq(rc, 1, "rc %d", rc);
    cr_assert_eq(start_off, 2 * SEG_BYTES);
    assert_segments(bases + 1, 2);
}

Test(retention, apply_does_not_count_a_gap_between_segments, DISK)
{
    /* Segments 1 and 2 are missing (lost or removed by hand): 128 KiB of log that no file
     * holds. What is on disk, 2 * 64 KiB, is within the limit. */
    make_segment(0, SEG_BYTES);
    make_segment(3 * SEG_BYTES, SEG_BYTES);
    make_segment(4 * SEG_BYTES, SEG_BYTES);
    uint64_t bases[] = { 0, 3 * SEG_BYTES, 4 * SEG_BYTES };
    for (uint32_t i = 0; i < ARRAY_LEN(bases); i++)
        set_mtime(bases[i], NOW_NS);
    struct retention_policy p = { 2 * SEG_BYTES, 0 };
    uint64_t start_off = 1;
    int rc = retention_apply(g_dir, 4 * SEG_BYTES, 4 * SEG_BYTES, &p, NOW_NS, NO_PIN,
                             &start_off);
    cr_assert_eq(rc, 0, "rc %d", rc);
    cr_assert_eq(start_off, 0);
    assert_segments(bases, ARRAY_LEN(bases));
}

Test(retention, apply_by_age_uses_file_mtimes, DISK)
{
    make_segments(5);
    uint64_t max_age = 5 * NS_PER_HOUR;
    set_mtime(0, NOW_NS - 10 * NS_PER_HOUR);
    set_mtime(SEG_BYTES, NOW_NS - max_age - 1);      /* one ns too old */
    set_mtime(2 * SEG_BYTES, NOW_NS - max_age);      /* exactly max_age: kept */
    set_mtime(3 * SEG_BYTES, NOW_NS - 20 * NS_PER_HOUR); /* old, but after a young one */
    set_mtime(4 * SEG_BYTES, NOW_NS - 30 * NS_PER_HOUR); /* the active: never by age */
    struct retention_policy p = { 0, max_age };
    uint64_t start_off = 0;
    int rc = retention_apply(g_dir, 4 * SEG_BYTES, 4 * SEG_BYTES + 4096, &p, NOW_NS, NO_PIN,
                             &start_off);
    cr_assert_eq(rc, 2, "rc %d", rc);
    cr_assert_eq(start_off, 2 * SEG_BYTES);
    uint64_t left[] = { 2 * SEG_BYTES, 3 * SEG_BYTES, 4 * SEG_BYTES };
    assert_segments(left, ARRAY_LEN(left));

    /* An hour later segment 2 has expired, and segment 3 behind it goes too. */
    rc = retention_apply(g_dir, 4 * SEG_BYTES, 4 * SEG_BYTES + 4096, &p,
                         NOW_NS + NS_PER_HOUR, NO_PIN, &start_off);
    cr_assert_eq(rc, 2, "rc %d", rc);
    cr_assert_eq(start_off, 4 * SEG_BYTES);
    assert_segments(left + 2, 1);
}

Test(retention, apply_by_size_and_age_takes_the_larger_count, DISK)
{
    make_segments(5);
    set_all_mtimes(5, NOW_NS);
    set_mtime(0, NOW_NS - 2 * NS_PER_HOUR);
    set_mtime(SEG_BYTES, NOW_NS - 2 * NS_PER_HOUR);
    set_mtime(2 * SEG_BYTES, NOW_NS - 2 * NS_PER_HOUR);
    /* Size wants one (5 * 64 KiB - 1 fits after one), age wants three. */
    struct retention_policy p = { 4 * SEG_BYTES, NS_PER_HOUR };
    uint64_t start_off = 0;
    int rc = retention_apply(g_dir, 4 * SEG_BYTES, 5 * SEG_BYTES - 1, &p, NOW_NS, NO_PIN,
                             &start_off);
    cr_assert_eq(rc, 3, "rc %d", rc);
    cr_assert_eq(start_off, 3 * SEG_BYTES);
}

Test(retention, apply_respects_the_pinned_floor, DISK)
{
    make_segments(5);
    set_all_mtimes(5, NOW_NS - 100 * NS_PER_HOUR);
    struct retention_policy p = { 2 * SEG_BYTES, NS_PER_HOUR }; /* both want all four */
    uint64_t start_off = 0;
    /* Something still needs offset SEG_BYTES + 1, inside segment 1: only segment 0 may go. */
    int rc = retention_apply(g_dir, 4 * SEG_BYTES, 4 * SEG_BYTES + 4096, &p, NOW_NS,
                             SEG_BYTES + 1, &start_off);
    cr_assert_eq(rc, 1, "rc %d", rc);
    cr_assert_eq(start_off, SEG_BYTES);
    /* A floor at the end of segment 2 lets segments 1 and 2 go. */
    rc = retention_apply(g_dir, 4 * SEG_BYTES, 4 * SEG_BYTES + 4096, &p, NOW_NS,
                         3 * SEG_BYTES, &start_off);
    cr_assert_eq(rc, 2, "rc %d", rc);
    cr_assert_eq(start_off, 3 * SEG_BYTES);
    uint64_t left[] = { 3 * SEG_BYTES, 4 * SEG_BYTES };
    assert_segments(left, ARRAY_LEN(left));
}

Test(retention, apply_never_removes_segments_at_or_after_active_base, DISK)
{
    /* Right after a roll the writer may still write segment 3: it passes that base. */
    make_segments(5);
    set_all_mtimes(5, NOW_NS - 100 * NS_PER_HOUR);
    struct retention_policy p = { 1, 1 };
    uint64_t start_off = 0;
    int rc = retention_apply(g_dir, 3 * SEG_BYTES, 4 * SEG_BYTES + 4096, &p, NOW_NS, NO_PIN,
                             &start_off);
    cr_assert_eq(rc, 3, "rc %d", rc);
    cr_assert_eq(start_off, 3 * SEG_BYTES);
    uint64_t left[] = { 3 * SEG_BYTES, 4 * SEG_BYTES };
    assert_segments(left, ARRAY_LEN(left));
}

Test(retention, apply_on_an_empty_directory_does_nothing, DISK)
{
    struct retention_policy p = { 1, 1 };
    uint64_t start_off = 0;
    int rc = retention_apply(g_dir, 0, 0, &p, NOW_NS, NO_PIN, &start_off);
    cr_assert_eq(rc, 0, "rc %d", rc);
    cr_assert_eq(start_off, 0);
    /* A log whose files are all gone: nothing below the append offset is readable. */
    start_off = 0;
    rc = retention_apply(g_dir, 3 * SEG_BYTES, 3 * SEG_BYTES + 4096, &p, NOW_NS, NO_PIN,
                         &start_off);
    cr_assert_eq(rc, 0, "rc %d", rc);
    cr_assert_eq(start_off, 3 * SEG_BYTES + 4096);
    assert_segments(NULL, 0);
}

Test(retention, apply_with_only_the_active_segment_keeps_it, DISK)
{
    make_segment(7 * SEG_BYTES, SEG_BYTES);
    set_mtime(7 * SEG_BYTES, NOW_NS - 100 * NS_PER_HOUR);
    struct retention_policy p = { 1, 1 }; /* over both limits */
    uint64_t start_off = 0;
    int rc = retention_apply(g_dir, 7 * SEG_BYTES, 8 * SEG_BYTES, &p, NOW_NS, NO_PIN,
                             &start_off);
    cr_assert_eq(rc, 0, "rc %d", rc);
    cr_assert_eq(start_off, 7 * SEG_BYTES);
    uint64_t left[] = { 7 * SEG_BYTES };
    assert_segments(left, ARRAY_LEN(left));
}

Test(retention, apply_leaves_other_files_alone, DISK)
{
    make_segments(3);
    set_all_mtimes(3, NOW_NS);
    char path[1024];
    snprintf(path, sizeof(path), "%s/cq-1-2.run", g_dir);
    int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    cr_assert_neq(fd, -1, "%s", strerror(errno));
    cr_assert_eq(close(fd), 0);
    struct retention_policy p = { 1, 0 };
    uint64_t start_off = 0;
    int rc = retention_apply(g_dir, 2 * SEG_BYTES, 2 * SEG_BYTES, &p, NOW_NS, NO_PIN,
                             &start_off);
    cr_assert_eq(rc, 2, "rc %d", rc);
    cr_assert_eq(start_off, 2 * SEG_BYTES);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "the index file is still there");
}

Test(retention, apply_on_a_missing_directory_fails_and_leaves_start_off, DISK)
{
    char missing[600];
    snprintf(missing, sizeof(missing), "%s/shard-9", g_root);
    struct retention_policy p = { 1, 1 };
    uint64_t start_off = 777;
    int rc = retention_apply(missing, 0, 0, &p, NOW_NS, NO_PIN, &start_off);
    cr_assert_eq(rc, -ENOENT, "rc %d", rc);
    cr_assert_eq(start_off, 777);
}

Test(retention, apply_with_a_malformed_segment_name_deletes_nothing, DISK)
{
    make_segments(3);
    set_all_mtimes(3, NOW_NS);
    char path[1024];
    snprintf(path, sizeof(path), "%s/123.log", g_dir);
    int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    cr_assert_neq(fd, -1, "%s", strerror(errno));
    cr_assert_eq(close(fd), 0);
    struct retention_policy p = { 1, 1 };
    uint64_t start_off = 777;
    int rc = retention_apply(g_dir, 2 * SEG_BYTES, 2 * SEG_BYTES, &p, NOW_NS, NO_PIN,
                             &start_off);
    cr_assert_eq(rc, -EINVAL, "rc %d", rc);
    cr_assert_eq(start_off, 777);
    cr_assert_eq(unlink(path), 0);
    uint64_t left[] = { 0, SEG_BYTES, 2 * SEG_BYTES };
    assert_segments(left, ARRAY_LEN(left));
}
