/* store/logread.h - random-access reads of records from one shard's commit log by log offset,
 * for catching up offline sessions (the consume-queue index gives the offset and length).
 *
 * A reader belongs to one thread (a reading shard) and one log directory (store.dir/shard-N,
 * possibly another shard's). Segment files are append-only and durable bytes are never
 * rewritten (store/commitlog.h), so any thread may pread records below the writer's durable
 * offset while the owning shard keeps appending; the caller guarantees that bound. This module
 * does not write, scan, recover, delete segments or decode message bodies: it finds the
 * segment, reads the record's bytes and verifies them with record_verify.
 *
 * Reads use plain O_RDONLY descriptors (no O_DIRECT): the page cache serves repeated and
 * nearby reads, and reading data that the writer wrote with O_DIRECT through the page cache is
 * coherent on Linux (see store/segment.c). Up to LOGREAD_FDS_MAX descriptors stay open, least
 * recently used closed first. The segment list (store/segment.h) is read lazily, at the first
 * read, and again when an offset lies beyond the newest known segment.
 *
 * Known limitations of this version:
 *   - pread, open and the directory listing are blocking syscalls on the calling thread; they
 *     move to the shard's io_uring later. A read of an offset beyond the newest segment lists
 *     the directory each time (callers stay below the durable offset, so this is rare).
 *   - Reads go through the page cache, so catching up a long backlog evicts other pages.
 */
#ifndef KEELMQ_STORE_LOGREAD_H
#define KEELMQ_STORE_LOGREAD_H

#include <sys/types.h>

#include "core/base.h"
#include "store/record.h"

#define LOGREAD_FDS_MAX 8u                 /* open segment descriptors per reader */
#define LOGREAD_DIR_LEN_MAX 512u           /* bytes of the directory path */
#define LOGREAD_FIRST_READ_LEN RECORD_BLOCK /* bytes read when the length is unknown */

STATIC_ASSERT(LOGREAD_FDS_MAX >= 2, "the segment being read and the one being rolled to");
STATIC_ASSERT(LOGREAD_FIRST_READ_LEN >= RECORD_HEADER_LEN, "the first read holds a header");

struct logread_stats {
    uint64_t records;       /* successful logread_record calls */
    uint64_t preads;        /* preads issued (one per record when the length is right) */
    uint64_t fd_opens;      /* segment files opened (cache misses) */
    uint64_t fd_evictions;  /* descriptors closed to make room */
    uint64_t lists;         /* directory listings */
};

struct logread;   /* one per reading shard per log directory; single thread */

/* Opens a reader for the log in `dir` (borrowed during the call; copied). Lists segments
 * lazily, so `dir` need not hold any segment yet. Returns 0 and the reader in *out (the caller
 * owns it; free with logread_close), -ENAMETOOLONG when `dir` is longer than
 * LOGREAD_DIR_LEN_MAX, or -ENOMEM. */
int logread_open(const char *dir, struct logread **out);

/* Closes every descriptor and frees `r` (takes ownership; NULL is a no-op). */
void logread_close(struct logread *r);

/* Reads the record at `log_off` (a record boundary the index gave) whose total length is `len`
 * (from the index; 0 = unknown) into `buf` (borrowed caller memory, `cap` bytes), verifies the
 * bytes actually read with record_verify and fills *h. One pread when `len` is right, or when
 * `len` is 0 and the record is at most LOGREAD_FIRST_READ_LEN bytes; two otherwise (a wrong
 * `len` costs the second read, never a wrong answer). Returns:
 *   - the record's total length (h->total_len); the record is buf[0, total_len);
 *   - -ENOENT if no segment holds `log_off`: below the oldest segment (deleted by retention,
 *     or forgotten with logread_forget_below) or beyond the newest segment file on disk;
 *   - -EBADMSG if the bytes at `log_off` are not a valid record (not a record boundary, a
 *     corrupt record, a record crossing the end of its segment, a short read, or the zero
 *     preallocated tail of a segment, which the caller never asks for below the durable
 *     offset). The caller reports it;
 *   - -ENOSPC if `cap` is too small: only h->total_len is set (the header was judged sane but
 *     the checksum is not yet checked; every other field of *h is zero). The caller grows its
 *     buffer to h->total_len bytes and calls again;
 *   - or -errno of open, fstat or pread, or of listing the directory (-ENOMEM, -E2BIG...).
 * `buf` may be clobbered on any error. */
ssize_t logread_record(struct logread *r, uint64_t log_off, uint32_t len, uint8_t *buf,
                       uint32_t cap, struct record_header *h);

/* Forgets the segments whose base offset is below `start_off` (the log's new start, a segment
 * base, after retention deleted them): their descriptors are closed and reads below
 * `start_off` return -ENOENT from now on. Never moves the start back. */
void logread_forget_below(struct logread *r, uint64_t start_off);

/* Fills *out (borrowed) with the reader's counters. */
void logread_stats(const struct logread *r, struct logread_stats *out);

#endif
