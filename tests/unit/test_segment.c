/* tests/unit/test_segment.c - unit tests for store/segment: naming and listing, preallocation
 * and O_DIRECT, the recovery scan over multi-segment logs, segment roll, a torn last batch cut
 * at every byte offset, mid-log corruption, huge lengths, empty logs, random damage.
 *
 * Every file lives under a directory from tests/helpers/store_dir.h (the ext4 disk, never
 * tmpfs, which ignores O_DIRECT alignment), removed in .fini. The logs are written the way
 * the commit log writes them: 4 KiB-aligned batches through an O_DIRECT descriptor, each closed
 * with a PAD, segments rolled with a PAD to their end. Single-threaded.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/record.h"
#include "store/segment.h"
#include "tests/helpers/store_dir.h"

#define PATH_MAX_LEN 4096
/* A check that costs nothing when it passes: criterion reports every passing cr_assert to the
 * runner, and the every-offset tests make millions of them. */
#define CHECK(cond, ...)                                                                        \
    do {                                                                                        \
        if (!(cond))                                                                            \
            cr_assert_fail(__VA_ARGS__);                                                        \
    } while (0)

static char g_root[256]; /* the mkdtemp directory */
static char g_dir[512];  /* the log directory inside it */

static void tmp_setup(void)
{
    store_dir_create(g_root, sizeof(g_root), "segment");
    snprintf(g_dir, sizeof(g_dir), "%s/shard-0", g_root);
    cr_assert_eq(segment_dir_ensure(g_dir), 0);
}

static void tmp_teardown(void) { (void)store_dir_remove(g_root); /* best effort */ }

TestSuite(segment, .init = tmp_setup, .fini = tmp_teardown, .timeout = 240);

/* ---- A small commit-log writer for building test logs ----------------------------------- */

struct rec_info {
    uint64_t off;
    uint32_t len;
    uint8_t type;
    uint32_t id;
};

struct builder {
    uint64_t seg_size;
    uint64_t seg_base;
    int fd;
    uint8_t *batch;       /* seg_size bytes, 4096-aligned */
    uint64_t batch_start; /* file position of the open batch */
    uint32_t batch_len;
    struct rec_info *recs; /* every record, PADs included, in log order */
    size_t count;
    size_t cap;
    uint32_t next_id;
};

static void rec_push(struct builder *b, uint64_t off, uint32_t len, uint8_t type, uint32_t id)
{
    if (b->count == b->cap) {
        b->cap = b->cap == 0 ? 256 : b->cap * 2;
        b->recs = realloc(b->recs, b->cap * sizeof(*b->recs));
        cr_assert_not_null(b->recs);
    }
    b->recs[b->count++] = (struct rec_info){ off, len, type, id };
}

static void builder_init(struct builder *b, uint64_t seg_size)
{
    *b = (struct builder){ .seg_size = seg_size };
    void *p = NULL;
    cr_assert_eq(posix_memalign(&p, RECORD_BLOCK, seg_size), 0);
    b->batch = p;
    memset(b->batch, 0, seg_size);
    b->fd = segment_open(g_dir, 0, seg_size);
    cr_assert_geq(b->fd, 0, "segment_open: %d", b->fd);
}

static void builder_free(struct builder *b)
{
    if (b->fd >= 0)
        close(b->fd);
    free(b->batch);
    free(b->recs);
}

static void pad_at(struct builder *b, uint32_t len)
{
    uint64_t off = b->seg_base + b->batch_start + b->batch_len;
    record_encode_typed(RECORD_PAD, (struct slice){ NULL, 0 }, len, b->batch + b->batch_len);
    rec_push(b, off, len, RECORD_PAD, 0);
    b->batch_len += len;
}

/* Writes the open batch (already a whole number of blocks) with O_DIRECT. */
static void batch_write(struct builder *b)
{
    cr_assert_eq(b->batch_len % RECORD_BLOCK, 0);
    if (b->batch_len == 0)
        return;
    ssize_t n = pwrite(b->fd, b->batch, b->batch_len, (off_t)b->batch_start);
    cr_assert_eq(n, (ssize_t)b->batch_len, "O_DIRECT pwrite: %zd errno %d", n, errno);
    b->batch_start += b->batch_len;
    memset(b->batch, 0, b->batch_len);
    b->batch_len = 0;
}

/* Closes the batch: a PAD to the next block boundary (one block further if the gap is too
 * short for a PAD, or nothing at a segment end too close for one), then one write. */
static void builder_close_batch(struct builder *b)
{
    uint64_t pos = b->batch_start + b->batch_len;
    uint32_t gap = (uint32_t)((RECORD_BLOCK - pos % RECORD_BLOCK) % RECORD_BLOCK);
    if (gap >= RECORD_HEADER_LEN)
        pad_at(b, gap);
    else if (gap > 0 && pos + gap + RECORD_BLOCK <= b->seg_size)
        pad_at(b, gap + RECORD_BLOCK);
    else
        b->batch_len += gap; /* zero tail shorter than a header at the segment end */
    batch_write(b);
}

/* Fills the rest of the segment with a PAD and opens the next segment. */
static void builder_roll(struct builder *b)
{
    uint64_t left = b->seg_size - b->batch_start - b->batch_len;
    if (left >= RECORD_HEADER_LEN)
        pad_at(b, (uint32_t)left);
    else
        b->batch_len += (uint32_t)left;
    batch_write(b);
    close(b->fd);
    b->seg_base += b->seg_size;
    b->batch_start = 0;
    b->fd = segment_open(g_dir, b->seg_base, b->seg_size);
    cr_assert_geq(b->fd, 0);
}

static uint8_t payload_byte(uint32_t id, uint32_t i)
{
    return (uint8_t)(id * 31u + i * 7u + 1u);
}

static uint8_t *g_payload; /* shared payload source, refilled per record */

/* Appends a message of `payload_len` bytes; rolls the segment if it does not fit. */
static uint64_t builder_message(struct builder *b, uint32_t payload_len)
{
    uint32_t id = b->next_id++;
    char topic[32];
    snprintf(topic, sizeof(topic), "t/%u", id);
    g_payload = realloc(g_payload, payload_len + 1);
    for (uint32_t i = 0; i < payload_len; i++)
        g_payload[i] = payload_byte(id, i);
    struct record_message m = {
        .timestamp_ns = 1000u + id,
        .qos = (uint8_t)(id % 3),
        .retain = id % 5 == 0,
        .topic = slice_from_cstr(topic),
        .client_id = slice_from_cstr("pub"),
        .payload = { g_payload, payload_len },
    };
    uint32_t len = record_message_len(&m);
    if (b->batch_start + b->batch_len + len > b->seg_size)
        builder_roll(b);
    cr_assert_leq(b->batch_start + b->batch_len + len, b->seg_size);
    uint64_t off = b->seg_base + b->batch_start + b->batch_len;
    cr_assert_eq(record_encode_message(&m, b->batch + b->batch_len), len);
    rec_push(b, off, len, RECORD_MESSAGE, id);
    b->batch_len += len;
    return off;
}

/* The log offset where the next batch goes. */
static uint64_t builder_end(const struct builder *b)
{
    return b->seg_base + b->batch_start + b->batch_len;
}

/* ---- Scan helpers ---------------------------------------------------------------------- */

struct seen {
    uint64_t *offs;
    uint32_t *ids;
    size_t count;
    size_t cap;
    int reports;
    char last_report[512];
    uint64_t stop_after; /* return 7 after this many records; 0 = never */
};

static int on_record(void *ctx, uint64_t off, const uint8_t *p, const struct record_header *h)
{
    struct seen *s = ctx;
    if (s->count == s->cap) {
        s->cap = s->cap == 0 ? 256 : s->cap * 2;
        s->offs = realloc(s->offs, s->cap * sizeof(*s->offs));
        s->ids = realloc(s->ids, s->cap * sizeof(*s->ids));
    }
    CHECK(h->type == RECORD_MESSAGE, "type %u at %" PRIu64, h->type, off);
    struct record_message m;
    CHECK(record_decode_message(p, h, &m), "decode at %" PRIu64, off);
    uint32_t id = (uint32_t)(m.timestamp_ns - 1000u);
    for (uint32_t i = 0; i < m.payload.len; i++)
        CHECK(m.payload.ptr[i] == payload_byte(id, i), "record %u byte %u", id, i);
    s->offs[s->count] = off;
    s->ids[s->count] = id;
    s->count++;
    if (s->stop_after != 0 && s->count == s->stop_after)
        return 7;
    return 0;
}

static void on_report(void *ctx, const char *line)
{
    struct seen *s = ctx;
    s->reports++;
    snprintf(s->last_report, sizeof(s->last_report), "%s", line);
}

static void seen_free(struct seen *s)
{
    free(s->offs);
    free(s->ids);
    *s = (struct seen){ 0 };
}

static int scan(uint64_t from_off, struct seen *s, struct segment_scan *out)
{
    char err[256] = "";
    seen_free(s);
    int rc = segment_scan(g_dir, from_off, on_record, s, on_report, out, err, sizeof(err));
    if (rc < 0)
        cr_log_info("segment_scan: %d %s", rc, err);
    return rc;
}

/* Checks that `s` saw exactly the messages of `b` whose offsets are in [from, to) minus the
 * skipped range [skip_from, skip_to). */
static void expect_records(const struct builder *b, const struct seen *s, uint64_t from,
                           uint64_t to, uint64_t skip_from, uint64_t skip_to)
{
    size_t j = 0;
    for (size_t i = 0; i < b->count; i++) {
        const struct rec_info *r = &b->recs[i];
        if (r->type == RECORD_PAD || r->off < from || r->off + r->len > to)
            continue;
        if (r->off >= skip_from && r->off < skip_to)
            continue;
        CHECK(j < s->count, "missing record at %" PRIu64, r->off);
        CHECK(s->offs[j] == r->off, "record %zu: offset %" PRIu64 " want %" PRIu64, j,
              s->offs[j], r->off);
        CHECK(s->ids[j] == r->id, "record %zu: id %u want %u", j, s->ids[j], r->id);
        j++;
    }
    CHECK(j == s->count, "scan returned %zu records, want %zu", s->count, j);
}

static void read_file(uint64_t base_off, uint8_t *out, size_t len)
{
    char path[PATH_MAX_LEN];
    segment_path(g_dir, base_off, path, sizeof(path));
    int fd = open(path, O_RDONLY);
    cr_assert_geq(fd, 0);
    cr_assert_eq(pread(fd, out, len, 0), (ssize_t)len);
    close(fd);
}

static void write_file(uint64_t base_off, const uint8_t *in, size_t len, off_t at)
{
    char path[PATH_MAX_LEN];
    segment_path(g_dir, base_off, path, sizeof(path));
    int fd = open(path, O_WRONLY);
    cr_assert_geq(fd, 0);
    cr_assert_eq(pwrite(fd, in, len, at), (ssize_t)len);
    close(fd);
}

/* Reads a whole segment with O_DIRECT, so the bytes come from the disk, not the page cache. */
static uint8_t *read_file_direct(uint64_t base_off, size_t len)
{
    char path[PATH_MAX_LEN];
    segment_path(g_dir, base_off, path, sizeof(path));
    void *p = NULL;
    cr_assert_eq(posix_memalign(&p, RECORD_BLOCK, len), 0);
    int fd = open(path, O_RDONLY | O_DIRECT);
    cr_assert_geq(fd, 0);
    cr_assert_eq(pread(fd, p, len, 0), (ssize_t)len);
    close(fd);
    return p;
}

static void touch(const char *name)
{
    char path[PATH_MAX_LEN];
    cr_assert_lt(strlen(name), 256);
    snprintf(path, sizeof(path), "%s/%.255s", g_dir, name);
    int fd = open(path, O_CREAT | O_WRONLY, 0644);
    cr_assert_geq(fd, 0);
    close(fd);
}

/* ---- Naming, listing, files ------------------------------------------------------------ */

Test(segment, path_is_base_offset_in_20_digits)
{
    char path[PATH_MAX_LEN];
    segment_path("/d", 134217728, path, sizeof(path));
    cr_assert_str_eq(path, "/d/00000000000134217728.log");
    segment_path("/d", UINT64_MAX, path, sizeof(path));
    cr_assert_str_eq(path, "/d/18446744073709551615.log");
    cr_assert_eq(strlen("00000000000134217728.log"), SEGMENT_NAME_LEN);
}

Test(segment, list_is_sorted_and_ignores_foreign_files)
{
    touch("00000000000000409600.log");
    touch("00000000000000000000.log");
    touch("00000000000000008192.log");
    touch("notes.txt");
    touch("00000000000000000000.log.tmp");
    touch("abc.log");
    touch("index-0001.run");
    char sub[PATH_MAX_LEN];
    snprintf(sub, sizeof(sub), "%s/index", g_dir);
    cr_assert_eq(mkdir(sub, 0755), 0);
    struct segment_list l;
    char err[256] = "";
    cr_assert_eq(segment_list(g_dir, &l, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(l.count, 3);
    cr_assert_eq(l.base_offs[0], 0);
    cr_assert_eq(l.base_offs[1], 8192);
    cr_assert_eq(l.base_offs[2], 409600);
    segment_list_free(&l);
    cr_assert_null(l.base_offs);
}

Test(segment, list_rejects_malformed_names_of_ours)
{
    touch("00000000000000000000.log");
    touch("123.log");
    struct segment_list l;
    char err[256] = "";
    cr_assert_eq(segment_list(g_dir, &l, err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, "123.log") != NULL, "%s", err);
    char path[PATH_MAX_LEN];
    snprintf(path, sizeof(path), "%s/123.log", g_dir);
    unlink(path);
    touch("99999999999999999999.log"); /* 20 digits, but past UINT64_MAX */
    cr_assert_eq(segment_list(g_dir, &l, err, sizeof(err)), -EINVAL);
}

Test(segment, list_of_missing_dir_is_enoent)
{
    struct segment_list l;
    char err[256] = "";
    char path[PATH_MAX_LEN];
    snprintf(path, sizeof(path), "%s/nope", g_root);
    cr_assert_eq(segment_list(path, &l, err, sizeof(err)), -ENOENT);
    cr_assert_neq(err[0], '\0');
}

Test(segment, dir_ensure_creates_parents)
{
    char path[PATH_MAX_LEN];
    snprintf(path, sizeof(path), "%s/a/b/c", g_root);
    cr_assert_eq(segment_dir_ensure(path), 0);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert(S_ISDIR(st.st_mode));
    cr_assert_eq(segment_dir_ensure(path), 0); /* idempotent */
}

Test(segment, open_preallocates_and_is_o_direct_writable)
{
    uint64_t size = 1u << 20;
    int fd = segment_open(g_dir, 4096 * 7, size);
    cr_assert_geq(fd, 0);
    struct stat st;
    cr_assert_eq(fstat(fd, &st), 0);
    cr_assert_eq((uint64_t)st.st_size, size);
    cr_assert_geq((uint64_t)st.st_blocks * 512, size, "blocks %ld", (long)st.st_blocks);
    cr_assert_neq(fcntl(fd, F_GETFL) & O_DIRECT, 0);
    void *p = NULL;
    cr_assert_eq(posix_memalign(&p, 4096, 8192), 0);
    memset(p, 0xAB, 8192);
    cr_assert_eq(pwrite(fd, p, 8192, 4096), 8192);
    /* An unaligned buffer is refused: the descriptor really is O_DIRECT on this disk. */
    errno = 0;
    cr_assert_eq(pwrite(fd, (uint8_t *)p + 1, 4096, 0), -1);
    cr_assert_eq(errno, EINVAL);
    close(fd);
    /* Reopening keeps the size and the data. */
    fd = segment_open(g_dir, 4096 * 7, size);
    cr_assert_geq(fd, 0);
    cr_assert_eq(fstat(fd, &st), 0);
    cr_assert_eq((uint64_t)st.st_size, size);
    memset(p, 0, 8192);
    cr_assert_eq(pread(fd, p, 4096, 4096), 4096);
    cr_assert_eq(((uint8_t *)p)[0], 0xAB);
    close(fd);
    free(p);
    cr_assert_eq(segment_remove(g_dir, 4096 * 7), 0);
    cr_assert_eq(segment_remove(g_dir, 4096 * 7), -ENOENT);
}

Test(segment, open_finishes_a_short_segment)
{
    touch("00000000000000000000.log"); /* a crash between create and fallocate */
    int fd = segment_open(g_dir, 0, 65536);
    cr_assert_geq(fd, 0);
    struct stat st;
    cr_assert_eq(fstat(fd, &st), 0);
    cr_assert_eq(st.st_size, 65536);
    close(fd);
}

/* ---- Scans --------------------------------------------------------------------------- */

/* Builds a log of `count` messages of varied sizes in batches of 1-7 records. */
static void build_log(struct builder *b, uint64_t seg_size, uint32_t count, uint32_t len_max)
{
    builder_init(b, seg_size);
    uint32_t seed = 12345;
    uint32_t in_batch = 0;
    uint32_t batch_target = 3;
    for (uint32_t i = 0; i < count; i++) {
        seed = seed * 1103515245u + 12345u;
        builder_message(b, (seed >> 8) % len_max);
        if (++in_batch == batch_target) {
            builder_close_batch(b);
            in_batch = 0;
            batch_target = 1 + (seed >> 20) % 7;
        }
    }
    builder_close_batch(b);
}

Test(segment, scan_of_empty_directory)
{
    struct seen s = { 0 };
    struct segment_scan out;
    cr_assert_eq(scan(0, &s, &out), 0);
    cr_assert_eq(out.segments, 0);
    cr_assert_eq(out.records, 0);
    cr_assert_eq(out.start_off, 0);
    cr_assert_eq(out.end_off, 0);
    cr_assert_eq(s.reports, 0);
}

Test(segment, scan_of_one_empty_preallocated_segment)
{
    int fd = segment_open(g_dir, 0, 65536);
    cr_assert_geq(fd, 0);
    close(fd);
    struct seen s = { 0 };
    struct segment_scan out;
    cr_assert_eq(scan(0, &s, &out), 0);
    cr_assert_eq(out.segments, 1);
    cr_assert_eq(out.records, 0);
    cr_assert_eq(out.end_off, 0);
    cr_assert_eq(out.cut_bytes, 0);
    cr_assert_eq(out.corrupt_regions, 0);
    cr_assert_eq(s.reports, 0);
}

Test(segment, scan_of_missing_dir_fails_with_err)
{
    char err[256] = "";
    struct segment_scan out;
    struct seen s = { 0 };
    char path[PATH_MAX_LEN];
    snprintf(path, sizeof(path), "%s/nope", g_root);
    cr_assert_eq(segment_scan(path, 0, on_record, &s, on_report, &out, err, sizeof(err)),
                 -ENOENT);
    cr_assert_neq(err[0], '\0');
}

Test(segment, scan_returns_every_record_of_a_multi_segment_log)
{
    struct builder b;
    build_log(&b, 65536, 400, 1500);
    cr_assert_geq(b.seg_base, 3 * 65536u, "want at least 4 segments");
    struct seen s = { 0 };
    struct segment_scan out;
    cr_assert_eq(scan(0, &s, &out), 0);
    expect_records(&b, &s, 0, UINT64_MAX, 0, 0);
    cr_assert_eq(out.records, 400);
    cr_assert_eq(out.end_off, builder_end(&b));
    cr_assert_eq(out.start_off, 0);
    cr_assert_eq(out.segments, b.seg_base / 65536 + 1);
    cr_assert_eq(out.cut_bytes, 0);
    cr_assert_eq(out.corrupt_regions, 0);
    cr_assert_eq(s.reports, 0, "%s", s.last_report);
    /* From a record boundary in the middle (a checkpoint), in the second segment. */
    uint64_t from = 0;
    for (size_t i = 0; i < b.count && from == 0; i++)
        if (b.recs[i].type == RECORD_MESSAGE && b.recs[i].off > 65536 + 1000)
            from = b.recs[i].off;
    cr_assert_eq(scan(from, &s, &out), 0);
    expect_records(&b, &s, from, UINT64_MAX, 0, 0);
    cr_assert_eq(out.end_off, builder_end(&b));
    /* A callback's non-zero value stops the scan. */
    s.stop_after = 3;
    char err[64];
    s.count = 0;
    cr_assert_eq(segment_scan(g_dir, 0, on_record, &s, on_report, &out, err, sizeof(err)), 7);
    cr_assert_eq(s.count, 3);
    seen_free(&s);
    builder_free(&b);
}

Test(segment, roll_pads_the_end_of_a_segment)
{
    struct builder b;
    builder_init(&b, 16384);
    uint64_t offs[6];
    for (int i = 0; i < 6; i++) {
        offs[i] = builder_message(&b, 3000);
        if (i % 2 == 1)
            builder_close_batch(&b);
    }
    builder_close_batch(&b);
    cr_assert_eq(offs[4] % 16384, 0, "the fifth record starts the second segment");
    cr_assert_eq(offs[4], 16384);
    /* The first segment ends with a PAD that reaches its end exactly. */
    uint8_t *seg = malloc(16384);
    read_file(0, seg, 16384);
    uint64_t pos = 0;
    struct record_header h = { 0 };
    while (pos < 16384) {
        cr_assert_eq(record_verify(seg + pos, (uint32_t)(16384 - pos), &h), RECORD_OK);
        pos += h.total_len;
    }
    cr_assert_eq(pos, 16384);
    cr_assert_eq(h.type, RECORD_PAD);
    free(seg);
    struct seen s = { 0 };
    struct segment_scan out;
    cr_assert_eq(scan(0, &s, &out), 0);
    expect_records(&b, &s, 0, UINT64_MAX, 0, 0);
    cr_assert_eq(s.count, 6);
    cr_assert_eq(s.offs[4], 16384);
    cr_assert_eq(out.segments, 2);
    cr_assert_eq(out.end_off, builder_end(&b));
    seen_free(&s);
    builder_free(&b);
}

Test(segment, record_longer_than_a_scan_chunk)
{
    struct builder b;
    builder_init(&b, 8u << 20);
    builder_message(&b, 100);
    builder_message(&b, 3u << 20);
    builder_message(&b, 100);
    builder_close_batch(&b);
    builder_message(&b, (5u << 20) + 10000); /* does not fit: rolls */
    builder_close_batch(&b);
    struct seen s = { 0 };
    struct segment_scan out;
    cr_assert_eq(scan(0, &s, &out), 0);
    expect_records(&b, &s, 0, UINT64_MAX, 0, 0);
    cr_assert_eq(out.records, 4);
    cr_assert_eq(out.segments, 2);
    cr_assert_eq(out.end_off, builder_end(&b));
    seen_free(&s);
    builder_free(&b);
}

static bool all_zero(const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] != 0)
            return false;
    return true;
}

/* The end of the last non-zero byte of p[from, len), or `from`. */
static size_t nonzero_end(const uint8_t *p, size_t from, size_t len)
{
    size_t end = from;
    for (size_t i = from; i < len; i++)
        if (p[i] != 0)
            end = i + 1;
    return end;
}

/* The test: a log whose last batch is torn at every byte offset k, either left as
 * zeros (never written) or as old garbage. The scan must return exactly the records that are
 * intact (those wholly before k, and one that k only touched in bytes that were zero
 * anyway), end right after them (padded to the next block boundary), zero the cut region on
 * disk, and a second scan must be clean. */
static void torn_at_every_offset(int mode)
{
    const uint64_t seg_size = 16384;
    struct builder b;
    builder_init(&b, seg_size);
    for (uint32_t i = 0; i < 9; i++) {
        builder_message(&b, 200 + i * 150);
        if (i % 3 == 2)
            builder_close_batch(&b);
    }
    if (b.seg_base == 0)
        builder_roll(&b);
    builder_message(&b, 10); /* batch A */
    builder_message(&b, 500);
    builder_close_batch(&b);
    const uint64_t seg1 = b.seg_base;
    const uint64_t last_start = b.batch_start; /* batch B, the last one */
    size_t first_last = b.count;
    uint32_t sizes[] = { 3, 1700, 31, 2900, 0, 2300 }; /* two blocks with the closing PAD */
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++)
        builder_message(&b, sizes[i]);
    builder_close_batch(&b);
    const uint64_t last_end = b.batch_start;
    cr_assert_eq(b.seg_base, seg1, "the last batch stays in one segment");
    cr_assert_eq(last_end - last_start, 2 * RECORD_BLOCK);

    uint8_t *orig = malloc(seg_size);
    uint8_t *img = NULL;
    cr_assert_eq(posix_memalign((void **)&img, RECORD_BLOCK, seg_size), 0);
    read_file(seg1, orig, seg_size);
    struct seen s = { 0 };
    struct segment_scan out;
    uint32_t seed = 99;
    for (uint64_t k = last_start; k < last_end; k++) {
        memcpy(img, orig, seg_size);
        for (uint64_t i = k; i < last_end; i++) {
            seed = seed * 1103515245u + 12345u;
            uint8_t mask = (uint8_t)(1 + (seed >> 16) % 255); /* every byte changes */
            img[i] = mode == 0 ? 0 : orig[i] ^ mask;
        }
        write_file(seg1, img, seg_size, 0);
        /* What survives: the last batch's records up to the first changed one. */
        uint64_t end = seg1 + last_end;
        for (size_t i = first_last; i < b.count; i++) {
            uint64_t at = b.recs[i].off - seg1;
            if (memcmp(img + at, orig + at, b.recs[i].len) != 0) {
                end = b.recs[i].off;
                break;
            }
        }
        size_t cut = nonzero_end(img, end - seg1, seg_size) - (end - seg1);
        /* The scan pads an unaligned end to the next block boundary (a PAD is >= 48 bytes). */
        uint64_t gap = (RECORD_BLOCK - end % RECORD_BLOCK) % RECORD_BLOCK;
        if (gap > 0 && gap < RECORD_HEADER_LEN)
            gap += RECORD_BLOCK;
        uint64_t end_off = end + gap;
        CHECK(scan(0, &s, &out) == 0, "mode %d k %" PRIu64, mode, k);
        expect_records(&b, &s, 0, end, 0, 0);
        CHECK(out.end_off == end_off, "mode %d k %" PRIu64 ": end %" PRIu64 " want %" PRIu64,
              mode, k, out.end_off, end_off);
        CHECK(out.cut_bytes == cut, "mode %d k %" PRIu64 ": cut %" PRIu64, mode, k, out.cut_bytes);
        CHECK(out.corrupt_regions == 0, "k %" PRIu64, k);
        CHECK(out.segments == 2, "k %" PRIu64, k);
        CHECK(s.reports == (cut > 0 ? 1 : 0) + (gap > 0 ? 1 : 0), "mode %d k %" PRIu64 ": %s",
              mode, k, s.last_report);
        uint8_t *disk = read_file_direct(seg1, seg_size);
        CHECK(all_zero(disk + (end_off - seg1), seg_size - (end_off - seg1)),
              "mode %d k %" PRIu64 ": the cut region is not zero on disk", mode, k);
        CHECK(memcmp(disk, orig, end - seg1) == 0, "k %" PRIu64 ": kept bytes changed", k);
        if (gap > 0) {
            struct record_header h;
            CHECK(record_verify(disk + (end - seg1), (uint32_t)gap, &h) == RECORD_OK &&
                      h.type == RECORD_PAD && h.total_len == gap,
                  "k %" PRIu64 ": no PAD to the block boundary", k);
        }
        free(disk);
        /* A second scan is clean. */
        s.reports = 0;
        CHECK(scan(0, &s, &out) == 0, "k %" PRIu64 ": second scan", k);
        expect_records(&b, &s, 0, end, 0, 0);
        CHECK(out.end_off == end_off, "k %" PRIu64 ": second scan end", k);
        CHECK(out.cut_bytes == 0, "k %" PRIu64 ": second scan cut", k);
        CHECK(out.corrupt_regions == 0, "k %" PRIu64, k);
        CHECK(s.reports == 0, "k %" PRIu64 ": second scan: %s", k, s.last_report);
        s.reports = 0;
    }
    seen_free(&s);
    free(img);
    free(orig);
    builder_free(&b);
}

/* Two tests, so criterion runs the modes in parallel: each does a few thousand fdatasyncs. */
Test(segment, recovery_of_last_batch_torn_to_zeros_at_every_offset)
{
    torn_at_every_offset(0);
}

Test(segment, recovery_of_last_batch_torn_to_garbage_at_every_offset)
{
    torn_at_every_offset(1);
}

Test(segment, torn_tail_removes_later_segments)
{
    struct builder b;
    build_log(&b, 16384, 20, 900);
    if (b.seg_base + 16384 - builder_end(&b) < 700)
        builder_roll(&b);
    uint64_t end = builder_end(&b);
    uint64_t next = b.seg_base + 16384;
    cr_assert_geq(b.seg_base, 16384, "want two segments or more");
    /* Garbage where the next batch would go, and a next segment made in advance. */
    uint8_t garbage[700];
    size_t garbage_len = MIN(sizeof(garbage), (size_t)(b.seg_base + 16384 - end));
    cr_assert_geq(garbage_len, 100);
    for (size_t i = 0; i < sizeof(garbage); i++)
        garbage[i] = (uint8_t)(i * 13 + 5);
    write_file(b.seg_base, garbage, garbage_len, (off_t)(end - b.seg_base));
    int fd = segment_open(g_dir, next, 16384);
    cr_assert_geq(fd, 0);
    close(fd);
    struct seen s = { 0 };
    struct segment_scan out;
    cr_assert_eq(scan(0, &s, &out), 0);
    expect_records(&b, &s, 0, UINT64_MAX, 0, 0);
    cr_assert_eq(out.end_off, end);
    cr_assert_eq(out.cut_bytes, garbage_len);
    cr_assert_eq(out.segments, next / 16384);
    cr_assert_eq(s.reports, 2, "the cut and the removal are both reported");
    struct stat st;
    char path[PATH_MAX_LEN];
    segment_path(g_dir, next, path, sizeof(path));
    cr_assert_eq(stat(path, &st), -1);
    seen_free(&s);
    builder_free(&b);
}

/* The offset of the first record at a block boundary after `off`: where the scan resyncs. */
static uint64_t next_block_record(const struct builder *b, uint64_t off)
{
    for (size_t i = 0; i < b->count; i++)
        if (b->recs[i].off > off && b->recs[i].off % RECORD_BLOCK == 0)
            return b->recs[i].off;
    return UINT64_MAX;
}

static const struct rec_info *middle_message(const struct builder *b, uint64_t after)
{
    for (size_t i = 0; i < b->count; i++)
        if (b->recs[i].type == RECORD_MESSAGE && b->recs[i].off > after &&
            b->recs[i].off % RECORD_BLOCK != 0 && b->recs[i].len > 100)
            return &b->recs[i];
    cr_assert_fail("no record to corrupt");
    return NULL;
}

Test(segment, mid_log_corruption_is_reported_and_skipped)
{
    struct builder b;
    build_log(&b, 65536, 300, 1500);
    const struct rec_info *bad = middle_message(&b, 20000);
    cr_assert_lt(bad->off, 65536);
    uint8_t *seg = malloc(65536);
    read_file(0, seg, 65536);
    seg[bad->off + 90] ^= 0x10;
    write_file(0, seg, 65536, 0);
    free(seg);
    uint64_t resync = next_block_record(&b, bad->off);
    cr_assert_lt(resync, builder_end(&b));
    for (int round = 0; round < 2; round++) { /* the corruption stays; so does the report */
        struct seen s = { 0 };
        struct segment_scan out;
        cr_assert_eq(scan(0, &s, &out), 0);
        expect_records(&b, &s, 0, UINT64_MAX, bad->off, resync);
        cr_assert_eq(out.corrupt_regions, 1);
        cr_assert_eq(out.cut_bytes, 0);
        cr_assert_eq(out.end_off, builder_end(&b));
        cr_assert_eq(s.reports, 1);
        char want[128];
        snprintf(want, sizeof(want), "log offset %" PRIu64 " ", bad->off);
        cr_assert(strstr(s.last_report, want) != NULL, "%s", s.last_report);
        snprintf(want, sizeof(want), "skipped %" PRIu64 " bytes", resync - bad->off);
        cr_assert(strstr(s.last_report, want) != NULL, "%s", s.last_report);
        seen_free(&s);
    }
    builder_free(&b);
}

/* Overwrites the header at log offset `off` (in segment `base`) with a sane-looking PAD header
 * claiming `total_len`, with a wrong checksum. */
static uint64_t forge_header(uint64_t base, uint64_t off, uint32_t total_len)
{
    uint8_t h[RECORD_HEADER_LEN];
    uint8_t *pad = aligned_alloc(8, 64);
    record_encode_typed(RECORD_PAD, (struct slice){ NULL, 0 }, 64, pad);
    memcpy(h, pad, sizeof(h));
    free(pad);
    for (int i = 0; i < 4; i++)
        h[12 + i] = (uint8_t)(total_len >> (8 * i));
    write_file(base, h, sizeof(h), (off_t)(off - base));
    return nonzero_end(h, 0, sizeof(h)); /* the bytes a cut there must zero */
}

Test(segment, huge_length_at_the_tail_is_cut)
{
    uint32_t lens[] = { RECORD_LEN_MAX, 0xFFFFFFF8u, 1u << 30 };
    for (size_t i = 0; i < ARRAY_LEN(lens); i++) {
        struct builder b;
        build_log(&b, 65536, 30, 1000);
        uint64_t end = builder_end(&b);
        uint64_t forged = forge_header(b.seg_base, end, lens[i]);
        struct seen s = { 0 };
        struct segment_scan out;
        cr_assert_eq(scan(0, &s, &out), 0);
        expect_records(&b, &s, 0, UINT64_MAX, 0, 0);
        cr_assert_eq(out.end_off, end);
        cr_assert_eq(out.cut_bytes, forged);
        cr_assert_eq(out.corrupt_regions, 0);
        seen_free(&s);
        builder_free(&b);
        tmp_teardown();
        tmp_setup();
    }
}

Test(segment, huge_length_in_the_middle_is_skipped)
{
    /* 4 MiB: longer than a scan chunk, within the segment: read whole, checksum fails. */
    uint32_t lens[] = { 4u << 20, RECORD_LEN_MAX };
    for (size_t i = 0; i < ARRAY_LEN(lens); i++) {
        struct builder b;
        build_log(&b, 8u << 20, 2000, 6000);
        const struct rec_info *bad = middle_message(&b, 1u << 20);
        uint64_t base = bad->off / (8u << 20) * (8u << 20);
        forge_header(base, bad->off, lens[i]);
        uint64_t resync = next_block_record(&b, bad->off);
        struct seen s = { 0 };
        struct segment_scan out;
        cr_assert_eq(scan(0, &s, &out), 0);
        expect_records(&b, &s, 0, UINT64_MAX, bad->off, resync);
        cr_assert_eq(out.corrupt_regions, 1);
        cr_assert_eq(out.end_off, builder_end(&b));
        seen_free(&s);
        builder_free(&b);
        tmp_teardown();
        tmp_setup();
    }
}

Test(segment, zero_block_in_the_middle_is_corruption_not_a_tail)
{
    /* A zeroed block inside durable data, with valid records after it: cutting there would
     * drop acknowledged records, so it is reported and skipped. */
    struct builder b;
    build_log(&b, 65536, 300, 1500);
    const struct rec_info *bad = middle_message(&b, 20000);
    uint64_t block = bad->off / RECORD_BLOCK * RECORD_BLOCK;
    uint8_t zeros[RECORD_BLOCK] = { 0 };
    uint64_t base = block / 65536 * 65536;
    write_file(base, zeros, sizeof(zeros), (off_t)(block - base));
    struct seen s = { 0 };
    struct segment_scan out;
    cr_assert_eq(scan(0, &s, &out), 0);
    cr_assert_eq(out.corrupt_regions, 1, "%s", s.last_report);
    cr_assert_eq(out.end_off, builder_end(&b));
    cr_assert_eq(out.cut_bytes, 0);
    seen_free(&s);
    builder_free(&b);
}

/* Random damage anywhere in a three-segment log: flipped bytes, zeroed or garbled blocks,
 * forged headers with random lengths. The scan never fails or crashes, returns records in
 * increasing offsets, and a second scan finds nothing more to cut. */
Test(segment, random_damage_is_survived_and_the_second_scan_is_stable)
{
    const uint64_t seg_size = 65536;
    struct builder b;
    build_log(&b, seg_size, 250, 1500);
    uint32_t segs = (uint32_t)(b.seg_base / seg_size + 1);
    cr_assert_geq(segs, 3);
    uint8_t *orig = malloc(seg_size * segs);
    for (uint32_t i = 0; i < segs; i++)
        read_file(i * seg_size, orig + i * seg_size, seg_size);
    uint8_t *img = malloc(seg_size * segs);
    uint32_t seed = 7;
    struct seen s = { 0 };
    struct segment_scan out;
    uint32_t rounds_corrupt = 0;
    uint32_t rounds_cut = 0;
    for (int round = 0; round < 150; round++) {
        memcpy(img, orig, seg_size * segs);
        int hits = 1 + round % 4;
        for (int h = 0; h < hits; h++) {
            seed = seed * 1103515245u + 12345u;
            uint64_t at = (seed >> 4) % (seg_size * segs - 64) / 8 * 8;
            seed = seed * 1103515245u + 12345u;
            switch ((seed >> 16) % 4) {
            case 0:
                img[at] ^= (uint8_t)(1 + (seed >> 24) % 255);
                break;
            case 1:
                memset(img + at / RECORD_BLOCK * RECORD_BLOCK, 0, RECORD_BLOCK);
                break;
            case 2:
                for (uint32_t i = 0; i < 512; i++)
                    img[at + i < seg_size * segs ? at + i : at] = (uint8_t)(seed >> (i % 24));
                break;
            default: {
                uint8_t pad[64] __attribute__((aligned(8)));
                record_encode_typed(RECORD_PAD, (struct slice){ NULL, 0 }, 64, pad);
                uint32_t len = (seed >> 8) % (seg_size * 2) / 8 * 8;
                memcpy(pad + 12, &len, 4);
                memcpy(img + at, pad, RECORD_HEADER_LEN);
                break;
            }
            }
        }
        for (uint32_t i = 0; i < segs; i++)
            write_file(i * seg_size, img + i * seg_size, seg_size, 0);
        CHECK(scan(0, &s, &out) == 0, "round %d", round);
        for (size_t i = 1; i < s.count; i++)
            CHECK(s.offs[i] > s.offs[i - 1], "round %d: offsets out of order", round);
        uint64_t end = out.end_off;
        size_t count = s.count;
        rounds_corrupt += out.corrupt_regions > 0;
        rounds_cut += out.cut_bytes > 0;
        CHECK(scan(0, &s, &out) == 0, "round %d: second scan", round);
        CHECK(out.cut_bytes == 0, "round %d: second scan cut %" PRIu64, round, out.cut_bytes);
        CHECK(out.end_off == end && s.count == count, "round %d: second scan differs", round);
        /* Put back segments the cut removed. */
        for (uint32_t i = 0; i < segs; i++) {
            int fd = segment_open(g_dir, i * seg_size, seg_size);
            CHECK(fd >= 0, "reopen %u", i);
            close(fd);
        }
    }
    cr_log_info("random damage: %u rounds with corruption, %u with a cut", rounds_corrupt,
                rounds_cut);
    cr_assert_gt(rounds_corrupt, 50);
    cr_assert_gt(rounds_cut, 0);
    seen_free(&s);
    free(img);
    free(orig);
    builder_free(&b);
}
