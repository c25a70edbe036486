/* store/segment.c - segment files and the recovery scan (see store/segment.h, docs/storage.md).
 *
 * Plain blocking syscalls at startup and on roll/delete; never on the per-message path, which
 * is the shard's io_uring (store/commitlog). Any thread, one caller per directory.
 *
 * The scan reads with buffered preads on its own O_RDWR descriptor, not O_DIRECT. Reading data
 * that was written with O_DIRECT through the page cache is coherent on Linux (a direct write
 * invalidates the cached pages it covers), buffered reads need no aligned buffers for the tail
 * of a segment or for one large record, and the kernel's readahead keeps a sequential scan at
 * disk speed. The cost is page cache: each segment's pages are dropped (POSIX_FADV_DONTNEED)
 * when the scan leaves it, so recovering a 4 GiB log does not evict the rest of the machine.
 * The same descriptor zeroes a torn tail with pwrite + fdatasync; the commit log's O_DIRECT
 * writes that follow invalidate those (clean) pages.
 */
#include "store/segment.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEGMENT_DIGITS 20
#define SEGMENT_SUFFIX ".log"
#define SCAN_CHUNK_LEN (1u << 20)           /* bytes read per pread while scanning */
#define SCAN_LINE_MAX 320                   /* one report line */
#define SCAN_PROBE_BIG_MAX (UINT64_C(1) << 30) /* bytes read to check large resync candidates */
#define PATH_LEN_MAX 4096

STATIC_ASSERT(SEGMENT_NAME_LEN == SEGMENT_DIGITS + sizeof(SEGMENT_SUFFIX) - 1,
              "segment name length");
STATIC_ASSERT(SCAN_CHUNK_LEN % RECORD_BLOCK == 0, "chunks hold whole blocks");
STATIC_ASSERT(SCAN_CHUNK_LEN >= RECORD_HEADER_LEN, "a chunk holds a header");
STATIC_ASSERT(SCAN_PROBE_BIG_MAX >= 2 * (uint64_t)RECORD_LEN_MAX, "budget for two records");

static void set_err(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t err_len, const char *fmt, ...)
{
    if (err == NULL || err_len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

int segment_sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd == -1)
        return -errno;
    int rc = 0;
    if (fsync(fd) == -1)
        rc = -errno;
    (void)close(fd); /* read-only directory descriptor: nothing to lose on close */
    return rc;
}

int segment_dir_ensure(const char *dir)
{
    char path[PATH_LEN_MAX];
    size_t len = strlen(dir);
    if (len == 0 || len >= sizeof(path))
        return -ENAMETOOLONG;
    memcpy(path, dir, len + 1);
    /* mkdir -p, fsyncing the parent of every directory this call creates. */
    for (size_t i = 1; i <= len; i++) {
        if (path[i] != '/' && path[i] != '\0')
            continue;
        char saved = path[i];
        path[i] = '\0';
        if (mkdir(path, 0755) == 0) {
            char *slash = strrchr(path, '/');
            int rc;
            if (slash == NULL) {
                rc = segment_sync_dir(".");
            } else if (slash == path) {
                rc = segment_sync_dir("/");
            } else {
                *slash = '\0';
                rc = segment_sync_dir(path);
                *slash = '/';
            }
            if (rc < 0)
                return rc;
        } else if (errno != EEXIST) {
            return -errno;
        }
        path[i] = saved;
    }
    struct stat st;
    if (stat(dir, &st) == -1)
        return -errno;
    return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

/* 1 and *base_off for a segment name, 0 for a name that is not ours, -1 for a malformed name
 * of ours (all digits + ".log", but not 20 of them or out of range). */
static int segment_name_parse(const char *name, uint64_t *base_off)
{
    size_t digits = 0;
    while (name[digits] >= '0' && name[digits] <= '9')
        digits++;
    if (digits == 0 || strcmp(name + digits, SEGMENT_SUFFIX) != 0)
        return 0;
    if (digits != SEGMENT_DIGITS)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < digits; i++) {
        uint64_t d = (uint64_t)(name[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *base_off = v;
    return 1;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static int list_push(struct segment_list *l, uint64_t base_off)
{
    if (l->count == l->cap) {
        uint32_t cap = l->cap == 0 ? 16 : l->cap * 2;
        uint64_t *p = realloc(l->base_offs, (size_t)cap * sizeof(*p));
        if (p == NULL)
            return -ENOMEM;
        l->base_offs = p;
        l->cap = cap;
    }
    l->base_offs[l->count++] = base_off;
    return 0;
}

int segment_list(const char *dir, struct segment_list *out, char *err, size_t err_len)
{
    *out = (struct segment_list){ 0 };
    DIR *d = opendir(dir);
    if (d == NULL) {
        int rc = -errno;
        set_err(err, err_len, "%s: cannot open: %s", dir, strerror(-rc));
        return rc;
    }
    int rc = 0;
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(d);
        if (e == NULL) {
            rc = errno != 0 ? -errno : 0;
            if (rc < 0)
                set_err(err, err_len, "%s: readdir: %s", dir, strerror(-rc));
            break;
        }
        uint64_t base_off = 0;
        int kind = segment_name_parse(e->d_name, &base_off);
        if (kind == 0)
            continue;
        if (kind < 0) {
            set_err(err, err_len, "%s/%s: malformed segment name (want %d digits + .log)", dir,
                    e->d_name, SEGMENT_DIGITS);
            rc = -EINVAL;
            break;
        }
        if (out->count == SEGMENT_MAX_COUNT) {
            set_err(err, err_len, "%s: more than %d segments", dir, SEGMENT_MAX_COUNT);
            rc = -E2BIG;
            break;
        }
        rc = list_push(out, base_off);
        if (rc < 0) {
            set_err(err, err_len, "%s: out of memory listing segments", dir);
            break;
        }
    }
    (void)closedir(d); /* read-only directory stream */
    if (rc < 0) {
        segment_list_free(out);
        return rc;
    }
    if (out->count > 1)
        qsort(out->base_offs, out->count, sizeof(uint64_t), cmp_u64);
    return 0;
}

void segment_list_free(struct segment_list *l)
{
    free(l->base_offs);
    *l = (struct segment_list){ 0 };
}

void segment_path(const char *dir, uint64_t base_off, char *out, size_t out_len)
{
    int n = snprintf(out, out_len, "%s/%020" PRIu64 SEGMENT_SUFFIX, dir, base_off);
    ASSERT(n > 0 && (size_t)n < out_len);
}

int segment_open(const char *dir, uint64_t base_off, uint64_t size)
{
    ASSERT(size > 0 && size % RECORD_BLOCK == 0);
    ASSERT(base_off % RECORD_BLOCK == 0);
    char path[PATH_LEN_MAX];
    segment_path(dir, base_off, path, sizeof(path));
    bool is_created = true;
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_DIRECT | O_CLOEXEC, 0644);
    if (fd == -1 && errno == EEXIST) {
        is_created = false;
        fd = open(path, O_RDWR | O_DIRECT | O_CLOEXEC);
    }
    if (fd == -1)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) == -1)
        goto fail_errno;
    /* A segment shorter than `size` is one whose creation was cut short by a crash: finish it.
     * A longer one (segment_bytes lowered since) keeps its size. */
    if ((uint64_t)st.st_size < size) {
        if (fallocate(fd, 0, 0, (off_t)size) == -1)
            goto fail_errno;
        if (fsync(fd) == -1)
            goto fail_errno;
        int rc = segment_sync_dir(dir);
        if (rc < 0) {
            errno = -rc;
            goto fail_errno;
        }
    }
    return fd;

fail_errno:;
    int rc = -errno;
    (void)close(fd); /* nothing was written through it */
    if (is_created) {
        /* Leave no half-made segment behind; the caller sees the original error. */
        (void)unlink(path);
        (void)segment_sync_dir(dir);
    }
    return rc;
}

int segment_remove(const char *dir, uint64_t base_off)
{
    char path[PATH_LEN_MAX];
    segment_path(dir, base_off, path, sizeof(path));
    if (unlink(path) == -1)
        return -errno;
    return segment_sync_dir(dir);
}

/* ---- The recovery scan --------------------------------------------------------------------
 *
 * The log is a sequence of segments; each holds records back to back from its start, and the
 * writer (store/commitlog) keeps one write in flight, writes each batch at a RECORD_BLOCK
 * boundary and closes it with a PAD, and never rewrites durable data. So after a crash only
 * the newest batch can be torn, and everything after it is still zero (preallocated).
 *
 * The scan walks records from `from_off`. At the first spot where no valid record starts (a
 * corrupt or truncated record, or an all-zero header) it searches every later RECORD_BLOCK
 * boundary, in this segment and then in later ones, for a valid record:
 *  - found: the bytes in between are mid-log corruption. It is reported with its log offset
 *    and length, counted, skipped, and the scan goes on from the record found. A batch
 *    always starts at a block boundary, so at worst the rest of one batch is lost.
 *  - not found: this is the end of the log. Every non-zero byte from the spot to the end of
 *    its segment is zeroed and fdatasynced (a torn tail: cut and reported), and later segments
 *    are removed (they hold no valid record). With an all-zero header and nothing after it,
 *    this is the normal, clean end and nothing is reported.
 * An all-zero header followed by a valid record later is therefore mid-log corruption, not a
 * torn tail: cutting there would delete records that were acknowledged (a zeroed block in the
 * middle of durable data), while the writer alone never leaves such a pattern except inside
 * its newest, unacknowledged batch.
 *
 * Alternatives rejected: resyncing at every 8-byte offset finds records inside a payload (a
 * client can store a well-formed record in its payload); cutting at the first bad spot
 * always (as for a torn tail) turns one flipped bit into the loss of the rest of the log.
 *
 * Memory is one SCAN_CHUNK_LEN window plus, for a record longer than that, one buffer of its
 * length (at most RECORD_LEN_MAX and within its segment). Every loop advances by at least
 * RECORD_ALIGN bytes or one segment, so the scan ends.
 */

struct scanner {
    const char *dir;
    struct segment_list list;
    uint64_t *sizes;         /* file size of each segment */
    int fd;                  /* open segment (buffered O_RDWR), or -1 */
    uint32_t fd_idx;
    uint8_t *chunk;          /* SCAN_CHUNK_LEN window of segment chunk_idx */
    uint32_t chunk_idx;
    uint64_t chunk_pos;      /* file position of chunk[0] */
    uint32_t chunk_len;      /* valid bytes; 0 = empty */
    uint8_t *big;            /* one record longer than the window */
    uint32_t big_cap;
    uint64_t probe_big_left; /* budget for checking large resync candidates */
    void (*report)(void *ctx, const char *line);
    void *ctx;
    char *err;
    size_t err_len;
};

static void scan_report(struct scanner *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void scan_report(struct scanner *s, const char *fmt, ...)
{
    if (s->report == NULL)
        return;
    char line[SCAN_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    s->report(s->ctx, line);
}

static void scan_close_fd(struct scanner *s)
{
    if (s->fd < 0)
        return;
    /* Drop the pages this scan pulled in; advice only, so its failure changes nothing. */
    (void)posix_fadvise(s->fd, 0, 0, POSIX_FADV_DONTNEED);
    (void)close(s->fd); /* every write through it was fdatasynced */
    s->fd = -1;
}

static int scan_fd(struct scanner *s, uint32_t idx)
{
    if (s->fd >= 0 && s->fd_idx == idx)
        return s->fd;
    scan_close_fd(s);
    s->chunk_len = 0;
    char path[PATH_LEN_MAX];
    segment_path(s->dir, s->list.base_offs[idx], path, sizeof(path));
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd == -1) {
        int rc = -errno;
        set_err(s->err, s->err_len, "%s: open: %s", path, strerror(-rc));
        return rc;
    }
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL); /* advice only */
    s->fd = fd;
    s->fd_idx = idx;
    return fd;
}

/* Reads exactly `len` bytes at `pos` of segment `idx`. */
static int scan_pread(struct scanner *s, uint32_t idx, uint64_t pos, uint8_t *buf, uint32_t len)
{
    int fd = scan_fd(s, idx);
    if (fd < 0)
        return fd;
    uint32_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, buf + done, len - done, (off_t)(pos + done));
        if (n == -1 && errno == EINTR)
            continue;
        if (n <= 0) {
            int rc = n == -1 ? -errno : -EIO; /* 0: the file shrank under the scan */
            set_err(s->err, s->err_len, "segment %020" PRIu64 ": read at %" PRIu64 ": %s",
                    s->list.base_offs[idx], pos + done, strerror(-rc));
            return rc;
        }
        done += (uint32_t)n;
    }
    return 0;
}

static int window_load(struct scanner *s, uint32_t idx, uint64_t pos)
{
    uint64_t left = s->sizes[idx] - pos;
    uint32_t len = left < SCAN_CHUNK_LEN ? (uint32_t)left : SCAN_CHUNK_LEN;
    s->chunk_len = 0;
    int rc = scan_pread(s, idx, pos, s->chunk, len);
    if (rc < 0)
        return rc;
    s->chunk_idx = idx;
    s->chunk_pos = pos;
    s->chunk_len = len;
    return 0;
}

/* Makes the window hold [pos, pos + len) of segment `idx`; returns a pointer to pos. */
static int window_cover(struct scanner *s, uint32_t idx, uint64_t pos, uint32_t len,
                        const uint8_t **p)
{
    bool is_held = s->chunk_len > 0 && s->chunk_idx == idx && pos >= s->chunk_pos &&
                   pos + len <= s->chunk_pos + s->chunk_len;
    if (!is_held) {
        int rc = window_load(s, idx, pos);
        if (rc < 0)
            return rc;
    }
    *p = s->chunk + (pos - s->chunk_pos);
    return 0;
}

static bool bytes_are_zero(const uint8_t *p, uint64_t len)
{
    uint64_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, sizeof(w));
        if (w != 0)
            return false;
    }
    for (; i < len; i++)
        if (p[i] != 0)
            return false;
    return true;
}

static uint32_t raw_total_len(const uint8_t *p)
{
    return (uint32_t)p[12] | (uint32_t)p[13] << 8 | (uint32_t)p[14] << 16 |
           (uint32_t)p[15] << 24;
}

/* Verifies the record at `pos` of segment `idx`, reading it whole however long it is. Returns
 * a record_check (>= 0; *rec and *h set on RECORD_OK) or -errno. Fewer than a header's bytes
 * left in the segment are RECORD_END if zero (the writer leaves a tail too short for a PAD
 * unwritten), else RECORD_TRUNCATED. `is_probe` (a resync candidate) limits large reads to the
 * probe budget, so crafted headers at many block boundaries cannot make the scan read the
 * same region over and over without end. */
static int record_at(struct scanner *s, uint32_t idx, uint64_t pos, bool is_probe,
                     const uint8_t **rec, struct record_header *h)
{
    uint64_t left = s->sizes[idx] - pos;
    const uint8_t *p;
    if (left < RECORD_HEADER_LEN) {
        int rc = window_cover(s, idx, pos, (uint32_t)left, &p);
        if (rc < 0)
            return rc;
        return bytes_are_zero(p, left) ? RECORD_END : RECORD_TRUNCATED;
    }
    int rc = window_cover(s, idx, pos, RECORD_HEADER_LEN, &p);
    if (rc < 0)
        return rc;
    uint32_t in_window = (uint32_t)(s->chunk_pos + s->chunk_len - pos);
    enum record_check c = record_verify(p, in_window, h);
    *rec = p;
    if (c != RECORD_TRUNCATED || in_window == left)
        return (int)c;
    /* Truncated by the window only; record_verify checked the length is sane. */
    uint32_t total_len = raw_total_len(p);
    if (total_len > left)
        return RECORD_TRUNCATED;
    if (total_len <= SCAN_CHUNK_LEN) {
        rc = window_load(s, idx, pos);
        if (rc < 0)
            return rc;
        *rec = s->chunk;
        return (int)record_verify(s->chunk, s->chunk_len, h);
    }
    if (is_probe) {
        if (s->probe_big_left < total_len)
            return RECORD_CORRUPT;
        s->probe_big_left -= total_len;
    }
    if (s->big_cap < total_len) {
        free(s->big);
        s->big_cap = 0;
        s->big = malloc(total_len);
        if (s->big == NULL) {
            set_err(s->err, s->err_len, "no memory for a record of %u bytes", total_len);
            return -ENOMEM;
        }
        s->big_cap = total_len;
    }
    rc = scan_pread(s, idx, pos, s->big, total_len);
    if (rc < 0)
        return rc;
    *rec = s->big;
    return (int)record_verify(s->big, total_len, h);
}

/* Searches RECORD_BLOCK boundaries after `pos` of segment `idx`, then in later segments, for a
 * valid record. Returns 1 with (*found_idx, *found_pos), 0 if there is none, or -errno. */
static int resync_search(struct scanner *s, uint32_t idx, uint64_t pos, uint32_t *found_idx,
                         uint64_t *found_pos)
{
    uint64_t b = (pos / RECORD_BLOCK + 1) * RECORD_BLOCK;
    for (uint32_t i = idx; i < s->list.count; i++, b = 0) {
        for (; b < s->sizes[i]; b += RECORD_BLOCK) {
            const uint8_t *rec;
            struct record_header h;
            int c = record_at(s, i, b, true, &rec, &h);
            if (c < 0)
                return c;
            if (c == RECORD_OK) {
                *found_idx = i;
                *found_pos = b;
                return 1;
            }
        }
    }
    return 0;
}

/* The end of the last non-zero byte in [pos, size) of segment `idx`, or `pos` if none. */
static int last_nonzero_end(struct scanner *s, uint32_t idx, uint64_t pos, uint64_t *end)
{
    *end = pos;
    for (uint64_t at = pos; at < s->sizes[idx]; at += s->chunk_len) {
        int rc = window_load(s, idx, at);
        if (rc < 0)
            return rc;
        ASSERT(s->chunk_len > 0);
        if (bytes_are_zero(s->chunk, s->chunk_len))
            continue;
        uint32_t i = s->chunk_len;
        while (s->chunk[i - 1] == 0)
            i--;
        *end = at + i;
    }
    return 0;
}

/* Writes `len` bytes of `buf` at `pos` of segment `idx` (page cache; see scan_sync). */
static int scan_pwrite(struct scanner *s, uint32_t idx, uint64_t pos, const uint8_t *buf,
                       uint64_t len)
{
    int fd = scan_fd(s, idx);
    if (fd < 0)
        return fd;
    s->chunk_len = 0; /* the window may be stale now */
    for (uint64_t done = 0; done < len;) {
        ssize_t n = pwrite(fd, buf + done, len - done, (off_t)(pos + done));
        if (n == -1 && errno == EINTR)
            continue;
        if (n <= 0) {
            int rc = n == -1 ? -errno : -EIO;
            set_err(s->err, s->err_len, "segment %020" PRIu64 ": write at %" PRIu64 ": %s",
                    s->list.base_offs[idx], pos + done, strerror(-rc));
            return rc;
        }
        done += (uint64_t)n;
    }
    return 0;
}

/* Zeroes [pos, end) of segment `idx`; scan_sync makes it durable. */
static int zero_range(struct scanner *s, uint32_t idx, uint64_t pos, uint64_t end)
{
    memset(s->chunk, 0, SCAN_CHUNK_LEN);
    s->chunk_len = 0;
    for (uint64_t at = pos; at < end; at += SCAN_CHUNK_LEN) {
        int rc = scan_pwrite(s, idx, at, s->chunk, MIN(end - at, (uint64_t)SCAN_CHUNK_LEN));
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int scan_sync(struct scanner *s, uint32_t idx)
{
    int fd = scan_fd(s, idx);
    if (fd < 0)
        return fd;
    if (fdatasync(fd) == -1) {
        int rc = -errno;
        set_err(s->err, s->err_len, "segment %020" PRIu64 ": fdatasync: %s",
                s->list.base_offs[idx], strerror(-rc));
        return rc;
    }
    return 0;
}

/* Makes the end of the log block-aligned, so that the writer's first O_DIRECT batch never has
 * to rewrite a block that holds records: after a torn batch whose complete records survived,
 * a PAD is written from `pos` to the next block boundary (one block further when the gap is
 * too short for a PAD). At a segment's end too close for a PAD, the zero tail stays and the
 * segment is full. Sets *end_pos; *is_written if it wrote. */
static int scan_pad_end(struct scanner *s, uint32_t idx, uint64_t pos, uint64_t *end_pos,
                        bool *is_written)
{
    uint64_t size = s->sizes[idx];
    *end_pos = pos;
    *is_written = false;
    if (pos % RECORD_BLOCK == 0 || size % RECORD_BLOCK != 0)
        return 0;
    uint64_t gap = RECORD_BLOCK - pos % RECORD_BLOCK;
    if (gap < RECORD_HEADER_LEN)
        gap += RECORD_BLOCK;
    if (pos + gap > size) {
        *end_pos = size;
        return 0;
    }
    STATIC_ASSERT(SCAN_CHUNK_LEN >= 2 * RECORD_BLOCK, "a PAD to the next block fits the chunk");
    record_encode_typed(RECORD_PAD, (struct slice){ NULL, 0 }, (uint32_t)gap, s->chunk);
    int rc = scan_pwrite(s, idx, pos, s->chunk, gap);
    if (rc < 0)
        return rc;
    *end_pos = pos + gap;
    *is_written = true;
    scan_report(s, "padded the end of the log at %" PRIu64 " to the block boundary %" PRIu64,
                s->list.base_offs[idx] + pos, s->list.base_offs[idx] + pos + gap);
    return 0;
}

static const char *check_name(int c)
{
    switch (c) {
    case RECORD_END:
        return "zero header followed by data";
    case RECORD_TRUNCATED:
        return "truncated record";
    default:
        return "corrupt record";
    }
}

/* Ends the log at `pos` of segment `idx`: zeroes what follows in that segment, pads the end
 * to a block boundary, and removes the later segments (resync_search found no valid record in
 * any of them). Sets *end_pos, where the next append goes. */
static int scan_cut_tail(struct scanner *s, uint32_t idx, uint64_t pos, int c,
                         uint64_t *end_pos, struct segment_scan *out)
{
    uint64_t base_off = s->list.base_offs[idx];
    uint64_t end;
    int rc = last_nonzero_end(s, idx, pos, &end);
    if (rc < 0)
        return rc;
    if (end > pos) {
        rc = zero_range(s, idx, pos, end);
        if (rc < 0)
            return rc;
        out->cut_bytes += end - pos;
        scan_report(s, "torn tail at log offset %" PRIu64 " (%s): zeroed %" PRIu64
                    " bytes of segment %020" PRIu64, base_off + pos, check_name(c), end - pos,
                    base_off);
    }
    bool is_padded;
    rc = scan_pad_end(s, idx, pos, end_pos, &is_padded);
    if (rc < 0)
        return rc;
    if (end > pos || is_padded) {
        rc = scan_sync(s, idx); /* one flush for the zeros and the PAD */
        if (rc < 0)
            return rc;
    }
    scan_close_fd(s);
    for (uint32_t i = s->list.count; i-- > idx + 1;) {
        rc = last_nonzero_end(s, i, 0, &end);
        if (rc < 0)
            return rc;
        scan_close_fd(s);
        uint64_t gone = s->list.base_offs[i];
        rc = segment_remove(s->dir, gone);
        if (rc < 0) {
            set_err(s->err, s->err_len, "segment %020" PRIu64 ": remove: %s", gone,
                    strerror(-rc));
            return rc;
        }
        out->cut_bytes += end;
        s->list.count = i;
        scan_report(s, "removed segment %020" PRIu64 " after the end of the log at %" PRIu64
                    " (no valid record; %" PRIu64 " non-zero bytes)", gone, base_off + pos, end);
    }
    return 0;
}

/* Opens the scan: lists the segments, learns their sizes and checks they do not overlap. */
static int scan_setup(struct scanner *s)
{
    int rc = segment_list(s->dir, &s->list, s->err, s->err_len);
    if (rc < 0)
        return rc;
    s->chunk = malloc(SCAN_CHUNK_LEN);
    s->sizes = calloc(s->list.count + 1, sizeof(uint64_t));
    if (s->chunk == NULL || s->sizes == NULL) {
        set_err(s->err, s->err_len, "%s: out of memory for the scan", s->dir);
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < s->list.count; i++) {
        char path[PATH_LEN_MAX];
        segment_path(s->dir, s->list.base_offs[i], path, sizeof(path));
        struct stat st;
        if (stat(path, &st) == -1) {
            rc = -errno;
            set_err(s->err, s->err_len, "%s: stat: %s", path, strerror(-rc));
            return rc;
        }
        s->sizes[i] = (uint64_t)st.st_size;
        if (i > 0 && s->list.base_offs[i - 1] + s->sizes[i - 1] > s->list.base_offs[i]) {
            set_err(s->err, s->err_len, "segments %020" PRIu64 " and %020" PRIu64 " overlap",
                    s->list.base_offs[i - 1], s->list.base_offs[i]);
            return -EUCLEAN;
        }
    }
    return 0;
}

/* Where the scan starts: the segment holding `from_off` and the position in it. */
static int scan_locate(struct scanner *s, uint64_t from_off, uint32_t *idx, uint64_t *pos)
{
    *idx = 0;
    *pos = 0;
    if (from_off % RECORD_ALIGN != 0) {
        set_err(s->err, s->err_len, "scan start %" PRIu64 " is not a record boundary", from_off);
        return -EINVAL;
    }
    if (from_off <= s->list.base_offs[0])
        return 0; /* 0, or a checkpoint older than what retention kept: scan everything */
    uint32_t i = s->list.count - 1;
    while (s->list.base_offs[i] > from_off)
        i--;
    if (from_off - s->list.base_offs[i] > s->sizes[i]) {
        set_err(s->err, s->err_len, "scan start %" PRIu64 " is past the end of segment %020"
                PRIu64, from_off, s->list.base_offs[i]);
        return -ERANGE;
    }
    *idx = i;
    *pos = from_off - s->list.base_offs[i];
    return 0;
}

/* Handles the spot at (idx, pos) where no valid record starts (`c`). Returns 1 and moves
 * (*idx, *pos) to the record after a mid-log corruption, 0 at the end of the log, or -errno. */
static int scan_bad_spot(struct scanner *s, int c, uint32_t *idx, uint64_t *pos,
                         struct segment_scan *out)
{
    uint32_t found_idx = 0;
    uint64_t found_pos = 0;
    int rc = resync_search(s, *idx, *pos, &found_idx, &found_pos);
    if (rc < 0)
        return rc;
    if (rc == 0) {
        uint64_t end_pos;
        rc = scan_cut_tail(s, *idx, *pos, c, &end_pos, out);
        if (rc < 0)
            return rc;
        out->end_off = s->list.base_offs[*idx] + end_pos;
        return 0;
    }
    uint64_t from = s->list.base_offs[*idx] + *pos;
    uint64_t to = s->list.base_offs[found_idx] + found_pos;
    out->corrupt_regions++;
    scan_report(s, "corrupt region at log offset %" PRIu64 " (%s): skipped %" PRIu64
                " bytes to the valid record at %" PRIu64, from, check_name(c), to - from, to);
    *idx = found_idx;
    *pos = found_pos;
    return 1;
}

/* The scan proper: walks records from (idx, pos) to the end of the log. */
static int scan_walk(struct scanner *s, uint32_t idx, uint64_t pos, segment_record_fn fn,
                     void *ctx, struct segment_scan *out)
{
    for (;;) {
        uint64_t base_off = s->list.base_offs[idx];
        if (pos == s->sizes[idx]) {
            if (idx + 1 == s->list.count) {
                out->end_off = base_off + pos;
                return 0;
            }
            scan_close_fd(s);
            idx++;
            pos = 0;
            uint64_t next = s->list.base_offs[idx];
            if (next != base_off + s->sizes[idx - 1]) {
                out->corrupt_regions++;
                scan_report(s, "corrupt region at log offset %" PRIu64 ": no segment holds the %"
                            PRIu64 " bytes before segment %020" PRIu64,
                            base_off + s->sizes[idx - 1], next - base_off - s->sizes[idx - 1],
                            next);
            }
            continue;
        }
        const uint8_t *rec = NULL;
        struct record_header h;
        int c = record_at(s, idx, pos, false, &rec, &h);
        if (c < 0)
            return c;
        if (c == RECORD_OK) {
            ASSERT(h.total_len >= RECORD_HEADER_LEN && h.total_len <= s->sizes[idx] - pos);
            if (h.type != RECORD_PAD) {
                out->records++;
                out->bytes += h.total_len;
                int rc = fn(ctx, base_off + pos, rec, &h);
                if (rc != 0)
                    return rc;
            }
            pos += h.total_len;
            continue;
        }
        if (c == RECORD_END && s->sizes[idx] - pos < RECORD_HEADER_LEN) {
            pos = s->sizes[idx]; /* a zero tail too short for a PAD: the segment is full */
            continue;
        }
        int rc = scan_bad_spot(s, c, &idx, &pos, out);
        if (rc <= 0)
            return rc;
    }
}

int segment_scan(const char *dir, uint64_t from_off, segment_record_fn fn, void *ctx,
                 void (*report)(void *ctx, const char *line), struct segment_scan *out,
                 char *err, size_t err_len)
{
    ASSERT(fn != NULL);
    *out = (struct segment_scan){ 0 };
    struct scanner s = {
        .dir = dir, .fd = -1, .probe_big_left = SCAN_PROBE_BIG_MAX,
        .report = report, .ctx = ctx, .err = err, .err_len = err_len,
    };
    int rc = scan_setup(&s);
    if (rc < 0)
        goto done;
    if (s.list.count == 0) {
        out->start_off = from_off;
        out->end_off = from_off;
        goto done;
    }
    out->start_off = s.list.base_offs[0];
    uint32_t idx;
    uint64_t pos;
    rc = scan_locate(&s, from_off, &idx, &pos);
    if (rc < 0)
        goto done;
    rc = scan_walk(&s, idx, pos, fn, ctx, out);
    ASSERT(rc != 0 || out->end_off >= out->start_off);

done:
    out->segments = s.list.count;
    scan_close_fd(&s);
    free(s.big);
    free(s.chunk);
    free(s.sizes);
    segment_list_free(&s.list);
    return rc;
}
