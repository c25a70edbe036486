/* tests/unit/test_logread.c - unit tests for store/logread: reading every record of a
 * multi-segment log by offset with the right length, with length 0, with a wrong length and
 * with a buffer too small (-ENOSPC, then success); offsets in a deleted or forgotten segment
 * and beyond the end (-ENOENT); offsets inside a record, in a segment's zero tail and over a
 * flipped byte (-EBADMSG); a segment created after the reader was opened; the descriptor
 * cache's limit; the pread count per record.
 *
 * Logs are built directly with store/segment.h (preallocated files) and the record encoders,
 * written with pwrite on an ordinary descriptor. Every test works in its own directory from
 * tests/helpers/store_dir.h (the ext4 disk), removed in .fini. Single-threaded.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/logread.h"
#include "store/record.h"
#include "store/segment.h"
#include "tests/helpers/store_dir.h"

#define SEG_SIZE (64u * 1024u)
#define RECS_MAX 4096u
#define REC_BUF_LEN (32u * 1024u)
#define PATH_LEN 512u
#define CHECK(cond, ...)                                                                        \
    do {                                                                                        \
        if (!(cond))                                                                            \
            cr_assert_fail(__VA_ARGS__);                                                        \
    } while (0)

/* Payload lengths cycled by record id: empty, small, around a block (the len = 0 path reads
 * one block first), and large (two reads). */
static const uint32_t payload_lens[] = { 0, 1, 17, 100, 1000, 4000, 4040, 4100, 9000, 20000, 33 };

struct rec {
    uint64_t off;
    uint32_t len;
    uint32_t id;
};

struct test_log {
    uint64_t seg_base;
    uint64_t pos;      /* next write position in the current segment */
    int fd;            /* current segment, ordinary O_WRONLY descriptor */
    uint32_t next_id;
    uint32_t segments;
    struct rec recs[RECS_MAX];
    uint32_t count;
};

static char test_root[256];
static char test_dir[PATH_LEN];
static struct test_log g_log;
static uint8_t enc_buf[REC_BUF_LEN];
static uint8_t read_buf[REC_BUF_LEN];
static uint8_t payload_buf[REC_BUF_LEN];

static void dir_setup(void)
{
    store_dir_create(test_root, sizeof(test_root), "logread");
    snprintf(test_dir, sizeof(test_dir), "%s/shard-0", test_root);
    cr_assert_eq(segment_dir_ensure(test_dir), 0);
    memset(&g_log, 0, sizeof(g_log));
    g_log.fd = -1;
}

static void dir_teardown(void)
{
    if (g_log.fd >= 0)
        (void)close(g_log.fd);
    g_log.fd = -1;
    (void)store_dir_remove(test_root); /* best effort */
}

TestSuite(logread, .init = dir_setup, .fini = dir_teardown, .timeout = 60);

/* ---- building a log ---- */

static void seg_path(uint64_t base, char *out)
{
    segment_path(test_dir, base, out, PATH_LEN);
}

/* Creates (preallocated, zero-filled) segment `base` and opens it for ordinary writes. */
static int seg_create(uint64_t base)
{
    int dfd = segment_open(test_dir, base, SEG_SIZE);
    cr_assert_geq(dfd, 0, "segment_open: %s", strerror(-dfd));
    (void)close(dfd);
    char path[PATH_LEN];
    seg_path(base, path);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    cr_assert_geq(fd, 0);
    return fd;
}

static void log_write(const uint8_t *p, uint32_t len)
{
    ssize_t n = pwrite(g_log.fd, p, len, (off_t)g_log.pos);
    cr_assert_eq(n, (ssize_t)len);
    g_log.pos += len;
}

/* Fills the rest of the segment with a PAD (or leaves a zero tail shorter than a header) and
 * starts the next one. */
static void log_roll(void)
{
    uint64_t left = SEG_SIZE - g_log.pos;
    if (left >= RECORD_HEADER_LEN) {
        uint32_t n = record_encode_typed(RECORD_PAD, (struct slice){ NULL, 0 }, (uint32_t)left,
                                         enc_buf);
        log_write(enc_buf, n);
    }
    (void)close(g_log.fd);
    g_log.seg_base += SEG_SIZE;
    g_log.pos = 0;
    g_log.fd = seg_create(g_log.seg_base);
    g_log.segments++;
}

static uint8_t payload_byte(uint32_t id, uint32_t i)
{
    return (uint8_t)(id * 31u + i * 7u + 1u);
}

static struct record_message message_of(uint32_t id, char *topic, size_t topic_len)
{
    uint32_t payload_len = payload_lens[id % ARRAY_LEN(payload_lens)];
    snprintf(topic, topic_len, "t/%u", id);
    for (uint32_t i = 0; i < payload_len; i++)
        payload_buf[i] = payload_byte(id, i);
    return (struct record_message){
        .timestamp_ns = 1000u + id,
        .qos = (uint8_t)(id % 3),
        .topic = slice_from_cstr(topic),
        .client_id = slice_from_cstr("pub"),
        .payload = { payload_buf, payload_len },
    };
}

/* Appends one message record (rolling when it does not fit) and returns its index. */
static uint32_t log_message(void)
{
    if (g_log.fd < 0) {
        g_log.fd = seg_create(0);
        g_log.segments = 1;
    }
    cr_assert_lt(g_log.count, RECS_MAX);
    uint32_t id = g_log.next_id++;
    char topic[32];
    struct record_message m = message_of(id, topic, sizeof(topic));
    uint32_t len = record_message_len(&m);
    cr_assert_leq(len, REC_BUF_LEN);
    if (g_log.pos + len > SEG_SIZE)
        log_roll();
    cr_assert_eq(record_encode_message(&m, enc_buf), len);
    g_log.recs[g_log.count] = (struct rec){ g_log.seg_base + g_log.pos, len, id };
    log_write(enc_buf, len);
    return g_log.count++;
}

static void log_messages(uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        log_message();
}

/* Checks that `p` (with header *h) is message `r`. */
static void expect_message(const struct rec *r, const uint8_t *p, const struct record_header *h)
{
    CHECK(h->type == RECORD_MESSAGE, "record %u: type %u", r->id, h->type);
    CHECK(h->total_len == r->len, "record %u: len %u, want %u", r->id, h->total_len, r->len);
    struct record_message m;
    CHECK(record_decode_message(p, h, &m), "record %u decodes", r->id);
    CHECK(m.timestamp_ns == 1000u + r->id, "record %u: timestamp", r->id);
    char topic[32];
    snprintf(topic, sizeof(topic), "t/%u", r->id);
    CHECK(m.topic.len == strlen(topic) && memcmp(m.topic.ptr, topic, m.topic.len) == 0,
          "record %u: topic", r->id);
    CHECK(m.payload.len == payload_lens[r->id % ARRAY_LEN(payload_lens)], "record %u: payload",
          r->id);
    for (uint32_t i = 0; i < m.payload.len; i++)
        CHECK(m.payload.ptr[i] == payload_byte(r->id, i), "record %u byte %u", r->id, i);
}

static struct logread *reader_open(void)
{
    struct logread *r = NULL;
    int rc = logread_open(test_dir, &r);
    cr_assert_eq(rc, 0, "logread_open: %s", strerror(-rc));
    cr_assert_not_null(r);
    return r;
}

static void read_expect(struct logread *r, const struct rec *rec, uint32_t len)
{
    struct record_header h;
    memset(read_buf, 0xAB, sizeof(read_buf));
    ssize_t n = logread_record(r, rec->off, len, read_buf, sizeof(read_buf), &h);
    CHECK(n == (ssize_t)rec->len, "record %u at %lu (len %u): %zd", rec->id, rec->off, len, n);
    expect_message(rec, read_buf, &h);
}

static ssize_t read_at(struct logread *r, uint64_t off, uint32_t len)
{
    struct record_header h;
    return logread_record(r, off, len, read_buf, sizeof(read_buf), &h);
}

/* ---- tests ---- */

Test(logread, reads_every_record_with_the_index_length_in_one_pread_each)
{
    log_messages(100);
    cr_assert_geq(g_log.segments, 4, "several segments");
    cr_assert_leq(g_log.segments, LOGREAD_FDS_MAX, "all fit in the descriptor cache");
    struct logread *r = reader_open();
    for (uint32_t i = 0; i < g_log.count; i++)
        read_expect(r, &g_log.recs[i], g_log.recs[i].len);
    /* And in reverse, across segments, through the descriptor cache. */
    for (uint32_t i = g_log.count; i-- > 0;)
        read_expect(r, &g_log.recs[i], g_log.recs[i].len);
    struct logread_stats st;
    logread_stats(r, &st);
    cr_assert_eq(st.records, 2 * g_log.count);
    cr_assert_eq(st.preads, 2 * g_log.count, "one pread per record");
    cr_assert_eq(st.lists, 1, "listed once, lazily");
    cr_assert_eq(st.fd_opens, g_log.segments, "each segment opened once (fewer than the cap)");
    logread_close(r);
}

Test(logread, reads_every_record_with_unknown_length)
{
    log_messages(300);
    struct logread *r = reader_open();
    uint64_t big = 0;
    for (uint32_t i = 0; i < g_log.count; i++) {
        read_expect(r, &g_log.recs[i], 0);
        big += g_log.recs[i].len > LOGREAD_FIRST_READ_LEN;
    }
    struct logread_stats st;
    logread_stats(r, &st);
    cr_assert_gt(big, 0);
    cr_assert_lt(big, g_log.count);
    cr_assert_eq(st.preads, g_log.count + big, "two preads only for records above a block");
    logread_close(r);
}

Test(logread, wrong_index_length_costs_a_read_not_a_wrong_answer)
{
    log_messages(120);
    struct logread *r = reader_open();
    for (uint32_t i = 0; i < g_log.count; i++) {
        const struct rec *rec = &g_log.recs[i];
        read_expect(r, rec, rec->len + 8);                           /* too long */
        read_expect(r, rec, RECORD_HEADER_LEN);                      /* too short */
        read_expect(r, rec, 13);                                     /* implausible */
        read_expect(r, rec, RECORD_LEN_MAX + 8);                     /* implausible */
    }
    logread_close(r);
}

Test(logread, too_small_buffer_is_enospc_then_success)
{
    log_messages(60);
    struct logread *r = reader_open();
    static uint8_t small[REC_BUF_LEN];
    const uint32_t caps[] = { 0, 1, RECORD_HEADER_LEN - 1, RECORD_HEADER_LEN };
    for (uint32_t i = 0; i < g_log.count; i++) {
        const struct rec *rec = &g_log.recs[i];
        const uint32_t lens[] = { rec->len, 0 };
        for (uint32_t l = 0; l < ARRAY_LEN(lens); l++) {
            for (uint32_t c = 0; c <= ARRAY_LEN(caps); c++) {
                uint32_t cap = c < ARRAY_LEN(caps) ? caps[c] : rec->len - 8;
                if (cap >= rec->len)
                    continue;
                struct record_header h;
                memset(&h, 0xFF, sizeof(h));
                ssize_t n = logread_record(r, rec->off, lens[l], small, cap, &h);
                CHECK(n == -ENOSPC, "record %u cap %u len %u: %zd", rec->id, cap, lens[l], n);
                CHECK(h.total_len == rec->len, "record %u: needs %u, told %u", rec->id,
                      rec->len, h.total_len);
            }
            struct record_header h;
            ssize_t n = logread_record(r, rec->off, lens[l], small, rec->len, &h);
            CHECK(n == (ssize_t)rec->len, "record %u with an exact buffer: %zd", rec->id, n);
            expect_message(rec, small, &h);
        }
    }
    logread_close(r);
}

Test(logread, offset_inside_a_record_or_over_damage_is_ebadmsg)
{
    log_messages(100);
    struct logread *r = reader_open();
    for (uint32_t i = 0; i < g_log.count; i++) {
        const struct rec *rec = &g_log.recs[i];
        const uint32_t deltas[] = { 8, 16, 48, rec->len / 2 & ~7u, rec->len - 8 };
        for (uint32_t d = 0; d < ARRAY_LEN(deltas); d++) {
            if (deltas[d] == 0 || deltas[d] >= rec->len)
                continue;
            uint64_t off = rec->off + deltas[d];
            ssize_t n = read_at(r, off, rec->len);
            CHECK(n == -EBADMSG, "record %u + %u with len: %zd", rec->id, deltas[d], n);
            n = read_at(r, off, 0);
            CHECK(n == -EBADMSG, "record %u + %u with len 0: %zd", rec->id, deltas[d], n);
        }
        /* Unaligned offsets too (no record starts there). */
        CHECK(read_at(r, rec->off + 3, 0) == -EBADMSG, "record %u + 3", rec->id);
    }

    /* A flipped byte in a record's payload: the checksum catches it. */
    const struct rec *victim = &g_log.recs[9];
    cr_assert_gt(victim->len, RECORD_HEADER_LEN + 100);
    char path[PATH_LEN];
    seg_path(victim->off / SEG_SIZE * SEG_SIZE, path);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    cr_assert_geq(fd, 0);
    off_t at = (off_t)(victim->off % SEG_SIZE + victim->len - 20);
    uint8_t byte = 0;
    cr_assert_eq(pread(fd, &byte, 1, at), 1);
    byte ^= 0x10;
    cr_assert_eq(pwrite(fd, &byte, 1, at), 1);
    (void)close(fd);
    cr_assert_eq(read_at(r, victim->off, victim->len), -EBADMSG);
    cr_assert_eq(read_at(r, victim->off, 0), -EBADMSG);
    read_expect(r, &g_log.recs[8], g_log.recs[8].len); /* the neighbours are fine */
    read_expect(r, &g_log.recs[10], 0);
    logread_close(r);
}

Test(logread, offsets_beyond_the_end)
{
    log_messages(100);
    const struct rec *last = &g_log.recs[g_log.count - 1];
    uint64_t end = last->off + last->len;
    uint64_t last_seg_end = g_log.seg_base + SEG_SIZE;
    cr_assert_lt(end + RECORD_HEADER_LEN, last_seg_end, "the last segment has a zero tail");
    struct logread *r = reader_open();
    /* The preallocated zero tail of the newest segment is not a record. */
    cr_assert_eq(read_at(r, end, 0), -EBADMSG);
    cr_assert_eq(read_at(r, end, 128), -EBADMSG);
    cr_assert_eq(read_at(r, last_seg_end - 8, 0), -EBADMSG, "fewer bytes than a header left");
    /* Past every segment file: no segment holds it, even after listing again. */
    struct logread_stats before;
    logread_stats(r, &before);
    cr_assert_eq(read_at(r, last_seg_end, 0), -ENOENT);
    cr_assert_eq(read_at(r, last_seg_end + 10 * SEG_SIZE, 64), -ENOENT);
    cr_assert_eq(read_at(r, UINT64_MAX - 7, 64), -ENOENT);
    struct logread_stats after;
    logread_stats(r, &after);
    cr_assert_eq(after.lists, before.lists + 3, "each miss beyond the end lists once");
    read_expect(r, last, last->len);
    logread_close(r);
}

Test(logread, a_segment_created_after_open_is_found)
{
    log_messages(40);
    uint32_t first_count = g_log.count;
    uint32_t segments = g_log.segments;
    struct logread *r = reader_open();
    for (uint32_t i = 0; i < first_count; i++)
        read_expect(r, &g_log.recs[i], g_log.recs[i].len);
    while (g_log.segments < segments + 2)
        log_message(); /* rolls into two new segments */
    for (uint32_t i = first_count; i < g_log.count; i++)
        read_expect(r, &g_log.recs[i], i % 2 ? 0 : g_log.recs[i].len);
    struct logread_stats st;
    logread_stats(r, &st);
    cr_assert_geq(st.lists, 2);
    cr_assert_leq(st.lists, 3, "a list per new segment at most");
    logread_close(r);
}

Test(logread, a_reader_opened_on_an_empty_directory_finds_later_segments)
{
    struct logread *r = reader_open();
    cr_assert_eq(read_at(r, 0, 0), -ENOENT);
    log_messages(10);
    read_expect(r, &g_log.recs[0], 0);
    read_expect(r, &g_log.recs[9], g_log.recs[9].len);
    logread_close(r);
}

Test(logread, deleted_and_forgotten_segments_are_enoent)
{
    log_messages(300);
    cr_assert_geq(g_log.segments, 5);
    struct logread *r = reader_open();
    const struct rec *first = &g_log.recs[0];
    read_expect(r, first, first->len); /* segment 0 is now open in the cache */

    /* Retention deletes segments 0 and 1; segment 1 was never opened by the reader. */
    cr_assert_eq(segment_remove(test_dir, 0), 0);
    cr_assert_eq(segment_remove(test_dir, SEG_SIZE), 0);
    uint32_t in_seg1 = 0;
    while (g_log.recs[in_seg1].off < SEG_SIZE)
        in_seg1++;
    cr_assert_eq(read_at(r, g_log.recs[in_seg1].off, g_log.recs[in_seg1].len), -ENOENT,
                 "a deleted file that was never opened");

    logread_forget_below(r, 2 * SEG_SIZE);
    cr_assert_eq(read_at(r, first->off, first->len), -ENOENT, "forgotten, though it was open");
    cr_assert_eq(read_at(r, 2 * SEG_SIZE - 8, 0), -ENOENT);
    logread_forget_below(r, SEG_SIZE); /* never moves back */
    cr_assert_eq(read_at(r, SEG_SIZE, 0), -ENOENT);
    for (uint32_t i = 0; i < g_log.count; i++)
        if (g_log.recs[i].off >= 2 * SEG_SIZE)
            read_expect(r, &g_log.recs[i], g_log.recs[i].len);
    logread_close(r);

    /* A new reader lists after the deletion: below the oldest segment is -ENOENT. */
    r = reader_open();
    cr_assert_eq(read_at(r, first->off, 0), -ENOENT);
    cr_assert_eq(read_at(r, g_log.recs[in_seg1].off, 0), -ENOENT);
    read_expect(r, &g_log.recs[g_log.count - 1], 0);
    logread_close(r);
}

static uint32_t open_fd_count(void)
{
    DIR *d = opendir("/proc/self/fd");
    cr_assert_not_null(d);
    uint32_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        n += de->d_name[0] != '.';
    (void)closedir(d);
    return n;
}

Test(logread, descriptor_cache_is_capped_and_least_recently_used)
{
    while (g_log.segments < 2 * LOGREAD_FDS_MAX + 3)
        log_message();
    (void)close(g_log.fd); /* the builder's descriptor must not count */
    g_log.fd = -1;
    uint32_t fds_before = open_fd_count();
    struct logread *r = reader_open();
    for (uint32_t round = 0; round < 3; round++)
        for (uint32_t i = 0; i < g_log.count; i++)
            read_expect(r, &g_log.recs[i], g_log.recs[i].len);
    cr_assert_leq(open_fd_count(), fds_before + LOGREAD_FDS_MAX);
    struct logread_stats st;
    logread_stats(r, &st);
    cr_assert_eq(st.fd_opens, 3 * (uint64_t)g_log.segments, "sequential sweeps miss each time");
    cr_assert_eq(st.fd_evictions, st.fd_opens - LOGREAD_FDS_MAX);

    /* Hot segments stay open: alternating between two segments opens nothing new. */
    const struct rec *a = &g_log.recs[0];
    const struct rec *b = &g_log.recs[g_log.count - 1];
    read_expect(r, a, a->len);
    read_expect(r, b, b->len);
    logread_stats(r, &st);
    uint64_t opens = st.fd_opens;
    for (uint32_t i = 0; i < 100; i++) {
        read_expect(r, a, 0);
        read_expect(r, b, 0);
    }
    logread_stats(r, &st);
    cr_assert_eq(st.fd_opens, opens);
    logread_close(r);
    cr_assert_eq(open_fd_count(), fds_before, "close releases every descriptor");
}

Test(logread, long_directory_is_enametoolong)
{
    char dir[LOGREAD_DIR_LEN_MAX + 2];
    memset(dir, 'a', sizeof(dir) - 1);
    dir[sizeof(dir) - 1] = '\0';
    struct logread *r = NULL;
    cr_assert_eq(logread_open(dir, &r), -ENAMETOOLONG);
    cr_assert_null(r);
    cr_assert_eq(logread_open("", &r), -ENAMETOOLONG);
    logread_close(NULL);
}
