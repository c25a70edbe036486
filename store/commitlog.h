/* store/commitlog.h - one shard's commit log: append records, group-commit them to disk with
 * O_DIRECT through the shard's io_uring, and say how far the log is durable.
 *
 * Shard thread only (the log and its ring belong to one shard). Appends go into the current
 * batch, an aligned buffer; once per loop iteration, if no write is in flight, the batch is
 * sealed - padded with a RECORD_PAD to the next RECORD_BLOCK boundary, so a block that was
 * written is never written again and a torn write can only hit the newest batch - and written
 * in one O_DIRECT write. store.flush = sync links a datasync (IORING_OP_FSYNC) to that write
 * and the durable offset moves when the datasync completes; store.flush = async writes plainly
 * and a datasync follows at least every store.flush_interval_ms. One write (with its datasync)
 * is in flight at a time: while it runs, the next batch fills (that is the group commit: the
 * records of every client that arrived during one disk round trip share the next write and
 * flush).
 *
 * Why a linked datasync and not RWF_DSYNC: without FUA (virtio disks), ext4 finishes an
 * RWF_DSYNC write in the dio workqueue of the CPU that took the disk interrupt, and that
 * kworker waits for its CPU like any task: behind a load generator's loopback softirqs it ran
 * only at the next 4 ms tick (ftrace, docs/benchmarks.md "Durable commit latency inside the
 * broker"). The ring's datasync runs in its io-wq worker, on the shard's own CPU.
 *
 * A failed or short write or flush is fatal (STYLE 5: never retry fsync): the process exits
 * with a message naming the file and the error.
 *
 * Every completed write is also copied into the log's hot tail (store/tailcache.h,
 * store.cache_bytes), where catch-up reads of recent records find it without the disk; a
 * batch of only QoS 0 messages (which nothing indexes, so nothing reads back) is skipped
 * instead, which keeps that copy off a QoS 0 load.
 *
 * Segment files come from store/segment.h. Rolling to a new segment creates and preallocates
 * it with blocking syscalls in the loop (once per store.segment_bytes of data; a known cost,
 * to move off the loop later).
 */
#ifndef KEELMQ_STORE_COMMITLOG_H
#define KEELMQ_STORE_COMMITLOG_H

#include <liburing.h>

#include "core/base.h"
#include "core/config.h"
#include "core/histogram.h"
#include "store/record.h"
#include "store/tailcache.h"

#define COMMITLOG_BATCH_MAX (64u << 20) /* bytes appended but not yet written, beyond: -ENOBUFS */
/* The last part of COMMITLOG_BATCH_MAX only typed records (session journal, checkpoints) may
 * use: messages are refused first, so a journal record that acknowledges a SUBSCRIBE or a
 * CONNECT still finds room while publishers are held. */
#define COMMITLOG_TYPED_ROOM (1u << 20)
#define COMMITLOG_DIR_MAX 512

struct commitlog_batch {
    uint8_t *buf;            /* RECORD_BLOCK-aligned */
    uint32_t len;            /* bytes used */
    uint32_t cap;
    uint64_t base_off;       /* log offset of buf[0] (RECORD_BLOCK-aligned) */
    int fd;                  /* segment file it belongs to */
    uint64_t file_off;       /* offset of buf[0] in that file */
    bool has_read_back;      /* holds a record catch-up may read: anything but QoS 0 messages
                              * (never indexed) and pads; else the hot tail skips it */
    uint32_t records;        /* appended records (pads not counted) */
    uint64_t first_ns;       /* monotonic time of the first of them */
};

struct commitlog {
    char dir[COMMITLOG_DIR_MAX];
    uint64_t segment_bytes;
    enum store_flush flush;
    uint32_t flush_interval_ms;
    uint16_t shard_id;
    int seg_fd;              /* current segment, O_DIRECT */
    uint64_t seg_base;       /* log offset of its first byte */
    int old_fd;              /* previous segment, closed once its last write completed */
    uint64_t append_off;     /* log offset of the next record */
    uint64_t written_off;    /* end of the last completed write */
    uint64_t durable_off;    /* end of what is known durable */
    uint64_t synced_target;  /* the end the datasync in flight makes durable */
    uint64_t last_sync_ms;
    bool write_inflight;
    bool sync_inflight;
    struct commitlog_batch cur;      /* filling */
    struct commitlog_batch sealed;   /* the rest of a segment, sealed at a roll, not yet sent */
    struct commitlog_batch inflight; /* owned by the kernel while write_inflight */
    struct tailcache cache;          /* the newest written bytes (store.cache_bytes) */
    uint64_t bytes_written;
    uint64_t writes;
    uint64_t syncs;
    /* store.flush = sync: per record, microseconds from the first append of its batch to the
     * completion of the batch's write (an upper bound of the record's own commit latency). */
    struct histogram commit_us;
};

/* Opens the log of one shard in `dir` (created if missing) for appending at `end_off`, the
 * end found by the recovery scan (0 for a new log). Blocking; call on the shard's thread
 * before its loop. Returns 0 or -errno with `err`. */
int commitlog_open(struct commitlog *log, const char *dir, const struct config *cfg,
                   uint16_t shard_id, uint64_t end_off, char *err, size_t err_len);
void commitlog_close(struct commitlog *log);

/* Appends a message record. Returns its log offset (the record ends at the returned offset
 * plus record_message_len()), or a negative errno: -ENOBUFS when COMMITLOG_BATCH_MAX bytes
 * less COMMITLOG_TYPED_ROOM already wait for the disk, or a new segment is needed while the
 * previous one's last write is in flight (the caller holds its publisher), -ENOMEM. */
int64_t commitlog_append_message(struct commitlog *log, const struct record_message *m);

/* Appends a RECORD_SESSION or RECORD_CHECKPOINT record with `body` (borrowed, copied).
 * Returns its log offset (it ends at that plus record_body_len(body.len)) or a negative errno
 * as commitlog_append_message, except that the whole of COMMITLOG_BATCH_MAX is open to it. */
int64_t commitlog_append_typed(struct commitlog *log, enum record_type type, struct slice body);

/* Once per loop iteration: submits the next write (or async datasync) if one is due. */
void commitlog_flush(struct commitlog *log, struct io_uring *ring, uint64_t now_ms);

/* Completions of the write and the datasync (user_data URING_OP_STORE_WRITE / _SYNC).
 * Fatal on error. */
void commitlog_on_write(struct commitlog *log, int res);
void commitlog_on_sync(struct commitlog *log, int res);

/* True when appends are welcome again after -ENOBUFS: less than half of COMMITLOG_BATCH_MAX
 * waits for the disk (the gap avoids pausing and resuming publishers on every write). */
static inline bool commitlog_has_room(const struct commitlog *log)
{
    return (uint64_t)log->cur.len + log->sealed.len < COMMITLOG_BATCH_MAX / 2;
}

/* How far readers may see the log: the durable offset with store.flush = sync, the written one
 * with async (written data survives a process crash; only a power loss can cut it, and the
 * index notices at recovery). */
static inline uint64_t commitlog_visible_off(const struct commitlog *log)
{
    return log->flush == STORE_FLUSH_SYNC ? log->durable_off : log->written_off;
}

/* True while appended data has not reached the disk yet (shutdown waits for false). */
bool commitlog_busy(const struct commitlog *log);

#endif
