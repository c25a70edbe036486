/* store/logread.c - random-access record reads from a commit log directory (see
 * store/logread.h; the record format is store/record.h, the files store/segment.h).
 *
 * One thread per reader. A read finds the segment holding the offset by a binary search over
 * the sorted list of segment bases, takes its descriptor from a small LRU cache (opening the
 * file on a miss), and preads the record. Nothing read from disk is trusted: lengths come
 * from a header only after record_verify judged it sane, every read is bounded by the end of
 * the segment file and by the caller's buffer, and the record is verified over the bytes that
 * the pread actually returned.
 */
#include "store/logread.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/segment.h"

#define PATH_LEN_MAX (LOGREAD_DIR_LEN_MAX + 1 + SEGMENT_NAME_LEN + 1)
#define OFF_TOTAL_LEN 12u /* docs/storage.md: total_len is the little-endian u32 at byte 12 */

STATIC_ASSERT(OFF_TOTAL_LEN + 4 <= RECORD_HEADER_LEN, "total_len lies in the header");

/* An open segment file. base_off UINT64_MAX marks a free slot. */
struct logread_fd {
    uint64_t base_off;
    uint64_t size;        /* the file's size when opened (segments are preallocated) */
    uint64_t last_use;    /* LRU tick */
    int fd;
};

struct logread {
    char dir[LOGREAD_DIR_LEN_MAX + 1];
    struct segment_list segs;     /* sorted bases, all >= start_off */
    bool has_listed;
    uint64_t start_off;           /* nothing below it is read (logread_forget_below) */
    uint64_t tick;
    struct logread_fd fds[LOGREAD_FDS_MAX];
    struct logread_stats stats;
};

int logread_open(const char *dir, struct logread **out)
{
    ASSERT(dir != NULL && out != NULL);
    size_t len = strlen(dir);
    if (len == 0 || len > LOGREAD_DIR_LEN_MAX)
        return -ENAMETOOLONG;
    struct logread *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return -ENOMEM;
    memcpy(r->dir, dir, len + 1);
    for (uint32_t i = 0; i < LOGREAD_FDS_MAX; i++)
        r->fds[i] = (struct logread_fd){ .base_off = UINT64_MAX, .fd = -1 };
    *out = r;
    return 0;
}

static void fd_release(struct logread_fd *f)
{
    ASSERT(f->fd >= 0);
    (void)close(f->fd); /* read-only descriptor: close cannot lose data */
    *f = (struct logread_fd){ .base_off = UINT64_MAX, .fd = -1 };
}

void logread_close(struct logread *r)
{
    if (r == NULL)
        return;
    for (uint32_t i = 0; i < LOGREAD_FDS_MAX; i++)
        if (r->fds[i].fd >= 0)
            fd_release(&r->fds[i]);
    segment_list_free(&r->segs);
    free(r);
}

void logread_stats(const struct logread *r, struct logread_stats *out)
{
    *out = r->stats;
}

/* ---- segments and descriptors ---- */

/* Drops the bases below start_off from the sorted list, in place. */
static void list_trim(struct logread *r)
{
    uint32_t drop = 0;
    while (drop < r->segs.count && r->segs.base_offs[drop] < r->start_off)
        drop++;
    if (drop == 0)
        return;
    memmove(r->segs.base_offs, r->segs.base_offs + drop,
            (size_t)(r->segs.count - drop) * sizeof(*r->segs.base_offs));
    r->segs.count -= drop;
}

/* Re-reads the directory's segment list. On failure the old list stays. */
static int list_refresh(struct logread *r)
{
    struct segment_list fresh;
    int rc = segment_list(r->dir, &fresh, NULL, 0);
    r->stats.lists++;
    if (rc != 0)
        return rc;
    segment_list_free(&r->segs);
    r->segs = fresh;
    r->has_listed = true;
    list_trim(r);
    return 0;
}

/* The index in the list of the newest segment whose base is <= `log_off`, or -1. */
static int64_t list_find(const struct logread *r, uint64_t log_off)
{
    /* lo ends as the count of bases <= log_off. */
    uint32_t lo = 0;
    uint32_t hi = r->segs.count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (r->segs.base_offs[mid] <= log_off)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (int64_t)lo - 1;
}

/* The cached descriptor of segment `base_off`, opened (evicting the least recently used) on a
 * miss. Returns 0 and the slot (borrowed) in *out, or -errno (-ENOENT: the file is gone). */
static int fd_get(struct logread *r, uint64_t base_off, struct logread_fd **out)
{
    struct logread_fd *victim = &r->fds[0];
    for (uint32_t i = 0; i < LOGREAD_FDS_MAX; i++) {
        struct logread_fd *f = &r->fds[i];
        if (f->base_off == base_off) {
            f->last_use = ++r->tick;
            *out = f;
            return 0;
        }
        if (f->fd < 0 || (victim->fd >= 0 && f->last_use < victim->last_use))
            victim = f;
    }
    char path[PATH_LEN_MAX];
    segment_path(r->dir, base_off, path, sizeof(path));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd == -1)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) == -1) {
        int rc = -errno;
        (void)close(fd); /* read-only descriptor */
        return rc;
    }
    if (victim->fd >= 0) {
        fd_release(victim);
        r->stats.fd_evictions++;
    }
    *victim = (struct logread_fd){
        .base_off = base_off, .size = (uint64_t)st.st_size, .last_use = ++r->tick, .fd = fd
    };
    r->stats.fd_opens++;
    *out = victim;
    return 0;
}

/* Finds the segment holding `log_off` among the known ones. Returns 0 with its descriptor,
 * -ENOENT, or -errno; *is_beyond says the offset lies past the newest known segment (a newer
 * one may exist). */
static int segment_find(struct logread *r, uint64_t log_off, struct logread_fd **out,
                        bool *is_beyond)
{
    int64_t idx = list_find(r, log_off);
    *is_beyond = r->segs.count == 0 || idx == (int64_t)r->segs.count - 1;
    if (idx < 0)
        return -ENOENT;
    int rc = fd_get(r, r->segs.base_offs[idx], out);
    if (rc != 0)
        return rc;
    if (log_off - (*out)->base_off >= (*out)->size)
        return -ENOENT; /* past the file's end: a gap, or beyond the newest known segment */
    *is_beyond = false;
    return 0;
}

/* The segment holding `log_off`: looks among the known segments, and lists the directory
 * again (once) when the offset lies beyond the newest of them. */
static int segment_locate(struct logread *r, uint64_t log_off, struct logread_fd **out)
{
    if (log_off < r->start_off)
        return -ENOENT;
    bool is_beyond = false;
    if (r->has_listed) {
        int rc = segment_find(r, log_off, out, &is_beyond);
        if (rc != -ENOENT || !is_beyond)
            return rc;
    }
    int rc = list_refresh(r);
    if (rc != 0)
        return rc;
    return segment_find(r, log_off, out, &is_beyond);
}

/* ---- reads ---- */

/* preads up to `len` bytes; returns the count (short only at the file's end) or -errno.
 * Bounded: every round reads at least one byte or ends. */
static ssize_t read_at(struct logread *r, const struct logread_fd *f, uint64_t file_off,
                       uint8_t *buf, uint32_t len)
{
    uint32_t done = 0;
    while (done < len) {
        r->stats.preads++;
        ssize_t n = pread(f->fd, buf + done, len - done, (off_t)(file_off + done));
        if (n == -1) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            break;
        done += (uint32_t)n;
    }
    return done;
}

/* The length a header claims. Only call it when record_verify answered RECORD_TRUNCATED for
 * at least RECORD_HEADER_LEN bytes: the header was then judged sane (magic, version, type,
 * reserved fields, a length in range that matches the body parts). record.h exports no
 * header-only decode, so this reads the one field here. */
static uint32_t sane_header_total_len(const uint8_t *p)
{
    const uint8_t *q = p + OFF_TOTAL_LEN;
    return (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 | (uint32_t)q[3] << 24;
}

/* Judges `got` bytes read at the record's start: 0 with *h filled for a whole valid record,
 * 1 with *total_len when the header is sane but claims more than `got`, or -EBADMSG. */
static int record_judge(const uint8_t *p, uint32_t got, struct record_header *h,
                        uint32_t *total_len)
{
    switch (record_verify(p, got, h)) {
    case RECORD_OK:
        return 0;
    case RECORD_TRUNCATED:
        if (got < RECORD_HEADER_LEN)
            return -EBADMSG;
        *total_len = sane_header_total_len(p);
        return *total_len > got ? 1 : -EBADMSG; /* record_verify promises the former */
    case RECORD_END:
    case RECORD_CORRUPT:
        return -EBADMSG;
    }
    return -EBADMSG;
}

/* The total length the header at `file_off` claims, read into a local buffer (the caller's
 * may be smaller than a header). Returns 0, -EBADMSG, or -errno. */
static int header_peek(struct logread *r, const struct logread_fd *f, uint64_t file_off,
                       uint32_t *total_len)
{
    uint8_t hdr[RECORD_HEADER_LEN];
    ssize_t n = read_at(r, f, file_off, hdr, sizeof(hdr));
    if (n < 0)
        return (int)n;
    struct record_header h;
    int rc = record_judge(hdr, (uint32_t)n, &h, total_len);
    if (rc == 0)
        *total_len = h.total_len; /* a header-only record */
    return rc < 0 ? rc : 0;
}

static bool is_plausible_len(uint32_t len)
{
    return len >= RECORD_HEADER_LEN && len % RECORD_ALIGN == 0 && len <= RECORD_LEN_MAX;
}

/* How many bytes the first read takes: `len` when the index's length is plausible, else a
 * block's worth (most records fit, so one read does), never more than the segment holds.
 * 0 means "peek at the header first" (`len` is larger than `cap`, or `cap` is smaller than a
 * header). */
static uint32_t first_read_len(uint32_t len, uint32_t cap, uint64_t avail)
{
    uint64_t want = is_plausible_len(len) ? len : MIN(cap, LOGREAD_FIRST_READ_LEN);
    want = MIN(want, avail);
    if (want > cap || want < MIN(avail, RECORD_HEADER_LEN))
        return 0;
    return (uint32_t)want;
}

ssize_t logread_record(struct logread *r, uint64_t log_off, uint32_t len, uint8_t *buf,
                       uint32_t cap, struct record_header *h)
{
    ASSERT(r != NULL && h != NULL);
    ASSERT(buf != NULL || cap == 0);
    struct logread_fd *f = NULL;
    int rc = segment_locate(r, log_off, &f);
    if (rc != 0)
        return rc;
    uint64_t file_off = log_off - f->base_off;
    ASSERT(file_off < f->size);
    uint64_t avail = f->size - file_off; /* records never span segments */
    uint32_t want = first_read_len(len, cap, avail);
    if (want == 0) {
        rc = header_peek(r, f, file_off, &want);
        if (rc != 0)
            return rc;
    }
    /* At most two rounds: the second reads exactly the length the first one's header gave. */
    for (int round = 0; round < 2; round++) {
        if (want > avail)
            return -EBADMSG; /* the record would cross the segment's end */
        if (want > cap) {
            *h = (struct record_header){ .total_len = want };
            return -ENOSPC;
        }
        ssize_t n = read_at(r, f, file_off, buf, want);
        if (n < 0)
            return n;
        uint32_t total_len = 0;
        rc = record_judge(buf, (uint32_t)n, h, &total_len);
        if (rc < 0)
            return rc;
        if (rc == 0) {
            ASSERT(h->total_len <= (uint32_t)n);
            r->stats.records++;
            return h->total_len;
        }
        if ((uint32_t)n < want)
            return -EBADMSG; /* a short read: the file ends inside the record */
        want = total_len;
    }
    return -EBADMSG; /* the second read disagreed with the header it was sized by */
}

void logread_forget_below(struct logread *r, uint64_t start_off)
{
    if (start_off <= r->start_off)
        return;
    r->start_off = start_off;
    for (uint32_t i = 0; i < LOGREAD_FDS_MAX; i++)
        if (r->fds[i].fd >= 0 && r->fds[i].base_off < start_off)
            fd_release(&r->fds[i]);
    list_trim(r);
}
