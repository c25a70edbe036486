/* tests/unit/test_logread.c - unit tests for store/logread: reading every record of a
 * multi-segment log by offset (a span, an O_DIRECT pread of it as the ring would do, a pick),
 * with the right length and a wrong one; one read for many records through joined spans;
 * offsets in a deleted or forgotten segment and beyond the end (-ENOENT); offsets inside a
 * record, in a segment's zero tail and over a flipped byte (-EBADMSG); a segment created
 * after the reader was opened; the descriptor cache's limit.
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
static struct record_header g_last_h;

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

/* What catch-up does through the ring, synchronously: the span of [off, off + len), one
 * O_DIRECT pread of it into an aligned buffer, the pick. On success the record is copied to
 * read_buf. */
static ssize_t read_at(struct logread *r, uint64_t off, uint32_t len)
{
    struct logread_span span;
    int rc = logread_span(r, off, len, &span);
    if (rc != 0)
        return rc;
    CHECK(span.len % RECORD_BLOCK == 0 && span.file_off % RECORD_BLOCK == 0 &&
          span.log_off <= off && off + MIN(len, span.seg_size) <= span.log_off + span.len + 0,
          "span of %lu+%u: %lu+%u", off, len, span.log_off, span.len);
    void *buf = NULL;
    cr_assert_eq(posix_memalign(&buf, RECORD_BLOCK, span.len), 0);
    ssize_t got = pread(span.fd, buf, span.len, (off_t)span.file_off);
    cr_assert_eq(got, (ssize_t)span.len, "O_DIRECT pread: %s", got < 0 ? strerror(errno) : "");
    struct record_header h;
    ssize_t n = logread_pick(r, &span, buf, (uint32_t)got, off, &h);
    if (n > 0) {
        CHECK((uint32_t)n <= sizeof(read_buf), "record fits");
        memcpy(read_buf, (uint8_t *)buf + (off - span.log_off), (size_t)n);
        g_last_h = h;
    }
    free(buf);
    return n;
}

static void read_expect(struct logread *r, const struct rec *rec, uint32_t len)
{
    memset(read_buf, 0xAB, sizeof(read_buf));
    ssize_t n = read_at(r, rec->off, len);
    CHECK(n == (ssize_t)rec->len, "record %u at %lu (len %u): %zd", rec->id, rec->off, len, n);
    expect_message(rec, read_buf, &g_last_h);
}

/* ---- tests ---- */

Test(logread, reads_every_record_with_the_index_length)
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
    cr_assert_eq(st.spans, 2 * g_log.count, "one span per record");
    cr_assert_eq(st.lists, 1, "listed once, lazily");
    cr_assert_eq(st.fd_opens, g_log.segments, "each segment opened once (fewer than the cap)");
    logread_close(r);
}

Test(logread, joined_spans_read_many_records_at_once)
{
    log_messages(300);
    struct logread *r = reader_open();
    uint32_t i = 0;
    uint32_t reads = 0;
    while (i < g_log.count) {
        struct logread_span span;
        cr_assert_eq(logread_span(r, g_log.recs[i].off, g_log.recs[i].len, &span), 0);
        uint32_t j = i + 1;
        while (j < g_log.count &&
               logread_span_join(&span, g_log.recs[j].off, g_log.recs[j].len, 65536))
            j++;
        cr_assert(span.len <= 65536 || j == i + 1, "joined only up to the limit");
        void *buf = NULL;
        cr_assert_eq(posix_memalign(&buf, RECORD_BLOCK, span.len), 0);
        cr_assert_eq(pread(span.fd, buf, span.len, (off_t)span.file_off), (ssize_t)span.len);
        reads++;
        for (uint32_t k = i; k < j; k++) {
            const struct rec *rec = &g_log.recs[k];
            struct record_header h;
            ssize_t n = logread_pick(r, &span, buf, span.len, rec->off, &h);
            CHECK(n == (ssize_t)rec->len, "record %u in a joined span: %zd", rec->id, n);
            expect_message(rec, (uint8_t *)buf + (rec->off - span.log_off), &h);
        }
        /* A short read is not trusted: the record must lie wholly in what was read. */
        const struct rec *last = &g_log.recs[j - 1];
        struct record_header h;
        uint32_t short_got = (uint32_t)(last->off - span.log_off) + last->len - 8;
        CHECK(logread_pick(r, &span, buf, short_got, last->off, &h) == -EBADMSG,
              "record %u cut by a short read", last->id);
        free(buf);
        i = j;
    }
    cr_assert_lt(reads, g_log.count / 2, "joined: %u reads for %u records", reads, g_log.count);
    /* Never across a segment's end. */
    for (uint32_t k = 1; k < g_log.count; k++) {
        const struct rec *a = &g_log.recs[k - 1];
        const struct rec *b = &g_log.recs[k];
        if (a->off / SEG_SIZE == b->off / SEG_SIZE)
            continue;
        struct logread_span span;
        cr_assert_eq(logread_span(r, a->off, a->len, &span), 0);
        cr_assert_not(logread_span_join(&span, b->off, b->len, UINT32_MAX));
    }
    logread_close(r);
}

Test(logread, wrong_index_length_never_gives_a_wrong_answer)
{
    log_messages(120);
    struct logread *r = reader_open();
    for (uint32_t i = 0; i < g_log.count; i++) {
        const struct rec *rec = &g_log.recs[i];
        read_expect(r, rec, rec->len + 8); /* too long: a wider read */
        /* Too short: right while the aligned read still covers the record, else -EBADMSG. */
        ssize_t n = read_at(r, rec->off, RECORD_HEADER_LEN);
        CHECK(n == (ssize_t)rec->len || n == -EBADMSG, "record %u: %zd", rec->id, n);
        if (n > 0)
            expect_message(rec, read_buf, &g_last_h);
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
        }
        /* Unaligned offsets too (no record starts there). */
        CHECK(read_at(r, rec->off + 3, 64) == -EBADMSG, "record %u + 3", rec->id);
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
        read_expect(r, &g_log.recs[8], g_log.recs[8].len); /* the neighbours are fine */
    read_expect(r, &g_log.recs[10], g_log.recs[10].len);
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
        cr_assert_eq(read_at(r, end, 128), -EBADMSG);
    cr_assert_eq(read_at(r, last_seg_end - 8, 8), -EBADMSG, "fewer bytes than a header left");
    /* Past every segment file: no segment holds it, even after listing again. */
    struct logread_stats before;
    logread_stats(r, &before);
    cr_assert_eq(read_at(r, last_seg_end, 64), -ENOENT);
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
        read_expect(r, &g_log.recs[i], g_log.recs[i].len);
    struct logread_stats st;
    logread_stats(r, &st);
    cr_assert_geq(st.lists, 2);
    cr_assert_leq(st.lists, 3, "a list per new segment at most");
    logread_close(r);
}

Test(logread, a_reader_opened_on_an_empty_directory_finds_later_segments)
{
    struct logread *r = reader_open();
    cr_assert_eq(read_at(r, 0, 64), -ENOENT);
    log_messages(10);
    read_expect(r, &g_log.recs[0], g_log.recs[0].len);
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
    cr_assert_eq(read_at(r, 2 * SEG_SIZE - 8, 8), -ENOENT);
    logread_forget_below(r, SEG_SIZE); /* never moves back */
    cr_assert_eq(read_at(r, SEG_SIZE, 64), -ENOENT);
    for (uint32_t i = 0; i < g_log.count; i++)
        if (g_log.recs[i].off >= 2 * SEG_SIZE)
            read_expect(r, &g_log.recs[i], g_log.recs[i].len);
    logread_close(r);

    /* A new reader lists after the deletion: below the oldest segment is -ENOENT. */
    r = reader_open();
    cr_assert_eq(read_at(r, first->off, 64), -ENOENT);
    cr_assert_eq(read_at(r, g_log.recs[in_seg1].off, 64), -ENOENT);
    read_expect(r, &g_log.recs[g_log.count - 1], g_log.recs[g_log.count - 1].len);
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
        read_expect(r, a, a->len);
        read_expect(r, b, b->len);
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
