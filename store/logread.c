/* store/logread.c - random-access record reads from a commit log directory (see
 * store/logread.h; the record format is store/record.h, the files store/segment.h).
 *
 * One thread per reader. A span finds the segment holding the offset by a binary search over
 * the sorted list of segment bases and takes its descriptor from a small LRU cache (opening
 * the file on a miss). Nothing read from disk is trusted: a record is verified over the bytes
 * the caller's read actually returned, and its length must fit in them.
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
    int fd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
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

/* ---- spans ---- */

int logread_span(struct logread *r, uint64_t log_off, uint32_t len, struct logread_span *out)
{
    ASSERT(r != NULL && out != NULL && len > 0);
    struct logread_fd *f = NULL;
    int rc = segment_locate(r, log_off, &f);
    if (rc != 0)
        return rc;
    uint64_t file_off = log_off - f->base_off;
    ASSERT(file_off < f->size);
    if (len > f->size - file_off)
        return -EBADMSG; /* records never span segments */
    uint64_t start = file_off - file_off % RECORD_BLOCK;
    uint64_t end = MIN(ALIGN_UP(file_off + len, RECORD_BLOCK), f->size);
    *out = (struct logread_span){ .fd = f->fd, .seg_base = f->base_off,
                                  .log_off = f->base_off + start, .file_off = start,
                                  .len = (uint32_t)(end - start), .seg_size = f->size };
    r->stats.spans++;
    return 0;
}

bool logread_span_join(struct logread_span *span, uint64_t log_off, uint32_t len,
                       uint32_t max_len)
{
    if (log_off < span->seg_base || log_off - span->seg_base >= span->seg_size ||
        len > span->seg_size - (log_off - span->seg_base))
        return false;
    uint64_t lo = MIN(span->log_off, log_off - (log_off - span->seg_base) % RECORD_BLOCK);
    uint64_t hi = MAX(span->log_off + span->len,
                      MIN(span->seg_base + ALIGN_UP(log_off - span->seg_base + len, RECORD_BLOCK),
                          span->seg_base + span->seg_size));
    if (hi - lo > max_len)
        return false;
    span->log_off = lo;
    span->file_off = lo - span->seg_base;
    span->len = (uint32_t)(hi - lo);
    return true;
}

ssize_t logread_pick(struct logread *r, const struct logread_span *span, const uint8_t *buf,
                     uint32_t got, uint64_t log_off, struct record_header *h)
{
    ASSERT(got <= span->len);
    if (log_off < span->log_off || log_off - span->log_off >= got)
        return -EBADMSG; /* a short read ended before the record */
    uint32_t at = (uint32_t)(log_off - span->log_off);
    if (record_verify(buf + at, got - at, h) != RECORD_OK)
        return -EBADMSG;
    r->stats.records++;
    return h->total_len;
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
