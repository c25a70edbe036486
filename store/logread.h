/* store/logread.h - reading records of one shard's commit log by log offset, with O_DIRECT
 * reads the caller issues itself (through its io_uring), for catching up offline sessions (the
 * consume-queue index gives each record's offset and length).
 *
 * A reader belongs to one thread (a reading shard) and one log directory (store.dir/shard-N).
 * Segment files are append-only and durable bytes are never rewritten (store/commitlog.h), so
 * a shard may read records below its log's visible offset while it keeps appending; the caller
 * guarantees that bound. Reading is two steps, so the read itself can be asynchronous:
 *   1. logread_span finds the segment and gives the RECORD_BLOCK-aligned range of the file
 *      (descriptor, file offset, length) that covers the wanted bytes; the caller may widen it
 *      to cover several records of the same segment (logread_span_join);
 *   2. once the caller has read that range into a RECORD_BLOCK-aligned buffer (an O_DIRECT
 *      read: the page cache is neither used nor polluted), logread_pick verifies each record in
 *      it with record_verify.
 * Descriptors are opened O_RDONLY | O_DIRECT. Up to LOGREAD_FDS_MAX stay open, least recently
 * used closed first: a span's descriptor stays valid until the next logread_span for another
 * segment, logread_forget_below or logread_close, so the caller submits its read before
 * asking for a span in another segment (io_uring takes its own reference to the file at
 * submission). The segment list (store/segment.h) is read lazily, at the first span, and again
 * when an offset lies beyond the newest known segment. This module does not write, scan,
 * recover, delete segments or decode message bodies.
 *
 * Known limitations: opening a descriptor and listing the directory are blocking syscalls
 * (once per segment, not per read).
 */
#ifndef KEELMQ_STORE_LOGREAD_H
#define KEELMQ_STORE_LOGREAD_H

#include <sys/types.h>

#include "core/base.h"
#include "store/record.h"

#define LOGREAD_FDS_MAX 8u                 /* open segment descriptors per reader */
#define LOGREAD_DIR_LEN_MAX 512u           /* bytes of the directory path */

STATIC_ASSERT(LOGREAD_FDS_MAX >= 2, "the segment being read and the one being rolled to");

struct logread_stats {
    uint64_t records;       /* records logread_pick verified */
    uint64_t spans;         /* logread_span calls that succeeded */
    uint64_t fd_opens;      /* segment files opened (cache misses) */
    uint64_t fd_evictions;  /* descriptors closed to make room */
    uint64_t lists;         /* directory listings */
};

/* An aligned range of one segment file to read. */
struct logread_span {
    int fd;                  /* the reader's O_DIRECT descriptor (see above for how long) */
    uint64_t seg_base;       /* log offset of the segment's first byte */
    uint64_t log_off;        /* log offset of the range's first byte (RECORD_BLOCK-aligned) */
    uint64_t file_off;       /* the same in the file: log_off - seg_base */
    uint32_t len;            /* bytes, a multiple of RECORD_BLOCK, within the file */
    uint64_t seg_size;       /* the file's size (segments are preallocated) */
};

struct logread;   /* one per reading shard per log directory; single thread */

/* Opens a reader for the log in `dir` (borrowed during the call; copied). Lists segments
 * lazily, so `dir` need not hold any segment yet. Returns 0 and the reader in *out (the caller
 * owns it; free with logread_close), -ENAMETOOLONG when `dir` is longer than
 * LOGREAD_DIR_LEN_MAX, or -ENOMEM. */
int logread_open(const char *dir, struct logread **out);

/* Closes every descriptor and frees `r` (takes ownership; NULL is a no-op). */
void logread_close(struct logread *r);

/* The aligned range covering log bytes [log_off, log_off + len) (`len` > 0, a record's length
 * from the index). Returns 0 with *out, -ENOENT if no segment holds `log_off` (below the
 * oldest segment - deleted by retention or forgotten - or beyond the newest file on disk),
 * -EBADMSG if the bytes would cross the segment's end (not a record the log wrote), or -errno
 * of open, fstat or listing the directory. */
int logread_span(struct logread *r, uint64_t log_off, uint32_t len, struct logread_span *out);

/* Widens `span` to also cover [log_off, log_off + len) if that lies in the same segment and
 * the widened range stays at most `max_len` bytes. Returns whether it did. */
bool logread_span_join(struct logread_span *span, uint64_t log_off, uint32_t len,
                       uint32_t max_len);

/* Verifies the record at `log_off` in `buf`, which holds the first `got` bytes of `span`
 * (what the read returned). Fills *h and returns the record's total length (the record is at
 * buf + (log_off - span->log_off)), or -EBADMSG when the bytes there are not one whole valid
 * record (not a record boundary, corrupt, a short read, the zero tail of a segment). */
ssize_t logread_pick(struct logread *r, const struct logread_span *span, const uint8_t *buf,
                     uint32_t got, uint64_t log_off, struct record_header *h);

/* Forgets the segments whose base offset is below `start_off` (the log's new start, a segment
 * base, after retention deleted them): their descriptors are closed and spans below
 * `start_off` are -ENOENT from now on. Never moves the start back. */
void logread_forget_below(struct logread *r, uint64_t start_off);

/* Fills *out (borrowed) with the reader's counters. */
void logread_stats(const struct logread *r, struct logread_stats *out);

#endif
