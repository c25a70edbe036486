/* store/commitlog.c - append, group commit and durability of one shard's log.
 *
 * Shard thread only. Invariants:
 * - `cur` always starts at a RECORD_BLOCK boundary of the current segment (after a restart
 *   that cut a torn tail inside a block, it starts with that block's surviving bytes, which
 *   are rewritten unchanged with the first write);
 * - a record is accepted into the current segment only if the segment keeps room to seal the
 *   batch afterwards (a PAD of up to RECORD_BLOCK + RECORD_HEADER_LEN bytes); otherwise the
 *   segment is closed with one PAD to its end and a new one starts;
 * - one write is in flight at a time, and writes go out in log order, so the log on disk never
 *   has a hole before the durable offset.
 */
#include "store/commitlog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "io/uring.h"
#include "store/segment.h"

#define SEAL_ROOM (RECORD_BLOCK + RECORD_HEADER_LEN)
#define BATCH_KEEP (RECORD_BLOCK * 64) /* a batch buffer's initial size, and where it shrinks to */

/* A failed write or flush: the data's fate on disk is unknown, and retrying fsync is unsafe
 * (STYLE 5). Nothing beyond the durable offset was acknowledged, so stopping loses nothing
 * that was promised. */
__attribute__((noreturn)) static void fatal_io(const struct commitlog *log, const char *what,
                                               int res)
{
    fprintf(stderr, "keelmq: FATAL shard=%u store: %s failed in %s: %s (res=%d); stopping "
            "without acknowledging anything more\n", log->shard_id, what, log->dir,
            res < 0 ? strerror(-res) : "short write", res);
    _exit(70);
}

static int roll(struct commitlog *log);

static int batch_alloc(struct commitlog_batch *b, uint32_t cap)
{
    void *p = NULL;
    int rc = posix_memalign(&p, RECORD_BLOCK, cap);
    if (rc != 0)
        return -rc;
    memset(b, 0, sizeof(*b));
    b->buf = p;
    b->cap = cap;
    return 0;
}

/* Makes room for `need` more bytes in `b`, keeping its contents and alignment. */
static int batch_reserve(struct commitlog_batch *b, uint32_t need)
{
    if (b->len + (uint64_t)need <= b->cap)
        return 0;
    uint64_t cap = b->cap ? b->cap : RECORD_BLOCK * 16;
    while (cap < b->len + (uint64_t)need)
        cap *= 2;
    if (cap > COMMITLOG_BATCH_MAX + SEAL_ROOM + RECORD_LEN_MAX)
        return -ENOBUFS;
    void *p = NULL;
    if (posix_memalign(&p, RECORD_BLOCK, cap) != 0)
        return -ENOMEM;
    memcpy(p, b->buf, b->len);
    free(b->buf);
    b->buf = p;
    b->cap = (uint32_t)cap;
    return 0;
}

/* A written batch buffer of more than BATCH_KEEP that carried at most a quarter of its size
 * (the one after a burst, such as a snapshot of every session) goes back to BATCH_KEEP: without
 * this the two batch buffers keep the size of the largest burst for good. A failed allocation
 * keeps the large buffer, which is still correct. */
static void batch_trim(struct commitlog_batch *b)
{
    if (b->cap <= BATCH_KEEP || b->len > b->cap / 4)
        return;
    void *p = NULL;
    if (posix_memalign(&p, RECORD_BLOCK, BATCH_KEEP) != 0)
        return;
    free(b->buf);
    b->buf = p;
    b->cap = BATCH_KEEP;
}

static void batch_start(struct commitlog_batch *b, int fd, uint64_t base_off, uint64_t seg_base)
{
    ASSERT(base_off % RECORD_BLOCK == 0 && base_off >= seg_base);
    b->len = 0;
    b->has_read_back = false;
    b->records = 0;
    b->first_ns = 0;
    b->fd = fd;
    b->base_off = base_off;
    b->file_off = base_off - seg_base;
}

/* The segment holding `end_off`: the newest one whose base is at or below it. */
static int find_tail_segment(struct commitlog *log, uint64_t end_off, uint64_t *base,
                             char *err, size_t err_len)
{
    struct segment_list list = { 0 };
    int rc = segment_list(log->dir, &list, err, err_len);
    if (rc < 0)
        return rc;
    *base = end_off - end_off % log->segment_bytes; /* a new log */
    for (uint32_t i = list.count; i-- > 0;) {
        if (list.base_offs[i] <= end_off) {
            *base = list.base_offs[i];
            break;
        }
    }
    segment_list_free(&list);
    return 0;
}

int commitlog_open(struct commitlog *log, const char *dir, const struct config *cfg,
                   uint16_t shard_id, uint64_t end_off, char *err, size_t err_len)
{
    memset(log, 0, sizeof(*log));
    log->seg_fd = -1;
    log->old_fd = -1;
    log->shard_id = shard_id;
    log->segment_bytes = cfg->store_segment_bytes;
    log->flush = cfg->store_flush;
    log->flush_interval_ms = cfg->store_flush_interval_ms;
    if (snprintf(log->dir, sizeof(log->dir), "%s", dir) >= (int)sizeof(log->dir)) {
        snprintf(err, err_len, "store directory path too long: %s", dir);
        return -ENAMETOOLONG;
    }
    int rc = segment_dir_ensure(dir);
    if (rc < 0) {
        snprintf(err, err_len, "%s: %s", dir, strerror(-rc));
        return rc;
    }
    rc = find_tail_segment(log, end_off, &log->seg_base, err, err_len);
    if (rc < 0)
        return rc;
    int fd = segment_open(dir, log->seg_base, log->segment_bytes);
    if (fd < 0) {
        snprintf(err, err_len, "segment %llu in %s: %s", (unsigned long long)log->seg_base,
                 dir, strerror(-fd));
        return fd;
    }
    struct stat st;
    if (fstat(fd, &st) == -1) {
        rc = -errno;
        close(fd);
        snprintf(err, err_len, "fstat segment in %s: %s", dir, strerror(-rc));
        return rc;
    }
    log->seg_fd = fd;
    /* An existing segment keeps the size it was created with. */
    uint64_t seg_size = (uint64_t)st.st_size;
    if ((rc = batch_alloc(&log->cur, BATCH_KEEP)) < 0 ||
        (rc = batch_alloc(&log->inflight, BATCH_KEEP)) < 0 ||
        (rc = batch_alloc(&log->sealed, RECORD_BLOCK)) < 0 ||
        (rc = tailcache_init(&log->cache, cfg->store_cache_bytes)) < 0) {
        snprintf(err, err_len, "out of memory for the log batches");
        commitlog_close(log);
        return rc;
    }
    /* The recovery scan ends on a block boundary (it pads a torn batch's survivors). */
    ASSERT(end_off % RECORD_BLOCK == 0);
    batch_start(&log->cur, fd, end_off, log->seg_base);
    histogram_reset(&log->commit_us);
    log->append_off = log->written_off = log->durable_off = end_off;
    log->segment_bytes = seg_size > 0 ? seg_size : log->segment_bytes;
    if (end_off + SEAL_ROOM > log->seg_base + log->segment_bytes) {
        /* The last segment is (nearly) full: start the next one before the first append. */
        rc = roll(log);
        if (rc < 0) {
            snprintf(err, err_len, "rolling to a new segment in %s: %s", dir, strerror(-rc));
            commitlog_close(log);
            return rc;
        }
    }
    return 0;
}

void commitlog_close(struct commitlog *log)
{
    if (log->seg_fd >= 0)
        close(log->seg_fd);
    if (log->old_fd >= 0 && log->old_fd != log->seg_fd)
        close(log->old_fd);
    free(log->cur.buf);
    free(log->sealed.buf);
    free(log->inflight.buf);
    tailcache_free(&log->cache);
    log->seg_fd = log->old_fd = -1;
    log->cur.buf = log->sealed.buf = log->inflight.buf = NULL;
}

/* Appends one PAD record of exactly `len` bytes (>= RECORD_HEADER_LEN) to `cur`. */
static int append_pad(struct commitlog *log, uint32_t len)
{
    ASSERT(len >= RECORD_HEADER_LEN && len % RECORD_ALIGN == 0);
    int rc = batch_reserve(&log->cur, len);
    if (rc < 0)
        return rc;
    uint32_t n = record_encode_typed(RECORD_PAD, (struct slice){ NULL, 0 }, len,
                                     log->cur.buf + log->cur.len);
    ASSERT(n == len);
    log->cur.len += len;
    log->append_off += len;
    return 0;
}

/* Closes the current segment with a PAD to its end and starts the next one. */
static int roll(struct commitlog *log)
{
    if (log->sealed.len > 0 || log->old_fd >= 0)
        return -ENOBUFS; /* The previous roll's tail has not been written yet, or is being
                          * written (its segment closes after that write: one old_fd). */
    uint64_t seg_end = log->seg_base + log->segment_bytes;
    /* A tail shorter than a header stays zero: the scan reads it as the segment's end. */
    if (seg_end - log->append_off >= RECORD_HEADER_LEN) {
        int rc = append_pad(log, (uint32_t)(seg_end - log->append_off));
        if (rc < 0)
            return rc;
    }
    int fd = segment_open(log->dir, seg_end, log->segment_bytes);
    if (fd < 0) {
        LOG_ERROR("store", "segment_create_failed dir=%s base=%llu err=%s", log->dir,
                  (unsigned long long)seg_end, strerror(-fd));
        return fd;
    }
    struct commitlog_batch t = log->sealed;
    log->sealed = log->cur;
    log->cur = t;
    log->old_fd = log->seg_fd;
    log->seg_fd = fd;
    log->seg_base = seg_end;
    log->append_off = seg_end;
    batch_start(&log->cur, fd, seg_end, seg_end);
    if (log->sealed.len == 0 && !log->write_inflight) {
        close(log->old_fd); /* Nothing of it is left to write (a full segment at open). */
        log->old_fd = -1;
    }
    LOG_INFO("store", "segment_roll dir=%s base=%llu", log->dir, (unsigned long long)seg_end);
    return 0;
}

/* Makes room for a record of `len` bytes in `cur` (rolling first if the segment is full) and
 * returns where it goes, or -ENOBUFS (more than `limit` bytes would wait for the disk) /
 * -ENOMEM / a roll error. */
static int64_t reserve_record(struct commitlog *log, uint32_t len, uint32_t limit)
{
    ASSERT(len <= RECORD_LEN_MAX);
    if ((uint64_t)log->cur.len + log->sealed.len + len > limit)
        return -ENOBUFS;
    if (log->append_off + len + SEAL_ROOM > log->seg_base + log->segment_bytes) {
        int rc = roll(log);
        if (rc < 0)
            return rc;
    }
    int rc = batch_reserve(&log->cur, len + SEAL_ROOM);
    if (rc < 0)
        return rc;
    if (log->cur.records++ == 0)
        log->cur.first_ns = base_now_ns();
    return (int64_t)log->append_off;
}

int64_t commitlog_append_message(struct commitlog *log, const struct record_message *m)
{
    uint32_t len = record_message_len(m);
    int64_t off = reserve_record(log, len, COMMITLOG_BATCH_MAX - COMMITLOG_TYPED_ROOM);
    if (off < 0)
        return off;
    uint32_t n = record_encode_message_raw(m, len, log->cur.buf + log->cur.len);
    ASSERT_HOT(n == len);
    log->cur.has_read_back |= m->qos > 0;
    log->cur.len += len;
    log->append_off += len;
    return off;
}

int64_t commitlog_append_typed(struct commitlog *log, enum record_type type, struct slice body)
{
    ASSERT(type == RECORD_SESSION || type == RECORD_CHECKPOINT);
    uint32_t len = record_body_len(body.len);
    int64_t off = reserve_record(log, len, COMMITLOG_BATCH_MAX);
    if (off < 0)
        return off;
    uint32_t n = record_encode_typed(type, body, 0, log->cur.buf + log->cur.len);
    ASSERT(n == len);
    log->cur.has_read_back = true;
    log->cur.len += len;
    log->append_off += len;
    return off;
}

/* Pads `cur` to a block boundary (a PAD of at least RECORD_HEADER_LEN bytes). */
static void seal(struct commitlog *log)
{
    uint32_t gap = (uint32_t)((RECORD_BLOCK - log->append_off % RECORD_BLOCK) % RECORD_BLOCK);
    if (gap == 0)
        return;
    if (gap < RECORD_HEADER_LEN)
        gap += RECORD_BLOCK;
    int rc = append_pad(log, gap);
    ASSERT(rc == 0); /* append reserved SEAL_ROOM for this */
}

static void submit_write(struct commitlog *log, struct io_uring *ring,
                         struct commitlog_batch *b)
{
    ASSERT(!log->write_inflight && b->len > 0 && b->len % RECORD_BLOCK == 0);
    struct commitlog_batch t = log->inflight;
    log->inflight = *b;
    *b = t;
    b->len = 0;
    b->has_read_back = false;
    b->records = 0;
    b->first_ns = 0;
    struct io_uring_sqe *sqe = uring_sqe(ring);
    io_uring_prep_write(sqe, log->inflight.fd, log->inflight.buf, log->inflight.len,
                        log->inflight.file_off);
    io_uring_sqe_set_data64(sqe, uring_ud(URING_OP_STORE_WRITE, 0, log->shard_id));
    if (log->flush == STORE_FLUSH_SYNC) {
        /* Linked: the datasync starts when the write succeeded, else completes -ECANCELED
         * (and the write's failure is fatal first). Not RWF_DSYNC: see the header. */
        sqe->flags |= IOSQE_IO_LINK;
        struct io_uring_sqe *f = uring_sqe(ring);
        io_uring_prep_fsync(f, log->inflight.fd, IORING_FSYNC_DATASYNC);
        io_uring_sqe_set_data64(f, uring_ud(URING_OP_STORE_SYNC, 0, log->shard_id));
        log->synced_target = log->inflight.base_off + log->inflight.len;
        log->sync_inflight = true;
        log->syncs++;
    }
    log->write_inflight = true;
    log->writes++;
}

void commitlog_flush(struct commitlog *log, struct io_uring *ring, uint64_t now_ms)
{
    if (!log->write_inflight) {
        if (log->sealed.len > 0) {
            submit_write(log, ring, &log->sealed);
        } else if (log->cur.len > 0 && log->append_off > log->written_off) {
            seal(log);
            uint64_t next = log->append_off;
            submit_write(log, ring, &log->cur);
            batch_start(&log->cur, log->seg_fd, next, log->seg_base);
        }
    }
    if (log->flush == STORE_FLUSH_ASYNC && !log->sync_inflight &&
        log->written_off > log->durable_off &&
        now_ms - log->last_sync_ms >= log->flush_interval_ms) {
        struct io_uring_sqe *sqe = uring_sqe(ring);
        io_uring_prep_fsync(sqe, log->seg_fd, IORING_FSYNC_DATASYNC);
        io_uring_sqe_set_data64(sqe, uring_ud(URING_OP_STORE_SYNC, 0, log->shard_id));
        log->synced_target = log->written_off;
        log->sync_inflight = true;
        log->last_sync_ms = now_ms;
        log->syncs++;
    }
}

/* The in-flight batch is done: written, and with store.flush = sync durable. */
static void batch_done(struct commitlog *log)
{
    log->write_inflight = false;
    if (log->inflight.fd == log->old_fd && log->sealed.len == 0) {
        /* The last write of the previous segment (its sealed tail, which may have waited
         * behind a write that was in flight at the roll). In async mode its data must be
         * durable before the fd goes: one blocking datasync per segment. In sync mode its
         * linked datasync has completed, so no operation uses the fd any more. */
        if (log->flush == STORE_FLUSH_ASYNC && fdatasync(log->old_fd) == -1)
            fatal_io(log, "fdatasync of a full segment", -errno);
        close(log->old_fd);
        log->old_fd = -1;
    }
}

void commitlog_on_write(struct commitlog *log, int res)
{
    ASSERT(log->write_inflight);
    if (res < 0 || (uint32_t)res != log->inflight.len)
        fatal_io(log, "O_DIRECT write", res);
    log->written_off = log->inflight.base_off + log->inflight.len;
    if (log->inflight.has_read_back)
        tailcache_put(&log->cache, log->inflight.base_off, log->inflight.buf, log->inflight.len);
    else
        tailcache_skip(&log->cache, log->inflight.base_off, log->inflight.len);
    batch_trim(&log->inflight); /* its bytes are written (and copied to the tail) */
    log->bytes_written += (uint64_t)res;
    if (log->flush == STORE_FLUSH_ASYNC)
        batch_done(log);
}

void commitlog_on_sync(struct commitlog *log, int res)
{
    ASSERT(log->sync_inflight);
    log->sync_inflight = false;
    if (res < 0)
        fatal_io(log, "fdatasync", res);
    if (log->synced_target > log->durable_off)
        log->durable_off = log->synced_target;
    if (log->flush == STORE_FLUSH_SYNC) {
        ASSERT(log->write_inflight && log->written_off == log->synced_target);
        if (log->inflight.records > 0)
            histogram_record_n(&log->commit_us,
                               (base_now_ns() - log->inflight.first_ns) / 1000u,
                               log->inflight.records);
        batch_done(log);
    }
}

bool commitlog_busy(const struct commitlog *log)
{
    return log->write_inflight || log->sync_inflight || log->sealed.len > 0 ||
           log->append_off > log->written_off || log->durable_off < log->written_off;
}
