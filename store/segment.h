/* store/segment.h - the commit log's segment files and the recovery scan.
 *
 * A shard's log lives in `dir` (store.dir/shard-N/) as files named by the log offset of their
 * first byte: 20 decimal digits, e.g. 00000000000134217728.log. Each is preallocated with
 * fallocate to the segment size, so appends never grow a file (PLATFORM: growing writes are
 * slow). Creating a segment fsyncs the file and the directory.
 *
 * These functions do plain blocking syscalls: they run at startup (recovery) and when a
 * segment is rolled or deleted, never per message. The per-message write path is the shard's
 * io_uring (store/commitlog.h). Any thread, one caller per directory.
 */
#ifndef KEELMQ_STORE_SEGMENT_H
#define KEELMQ_STORE_SEGMENT_H

#include "core/base.h"
#include "store/record.h"

#define SEGMENT_NAME_LEN 24 /* 20 digits + ".log" */
#define SEGMENT_MAX_COUNT 65536

struct segment_list {
    uint64_t *base_offs;     /* sorted ascending */
    uint32_t count;
    uint32_t cap;
};

/* fsyncs the directory `dir` (after creating, renaming or removing a file in it), so the
 * change survives a crash. Returns 0 or -errno. Used by every store module. */
int segment_sync_dir(const char *dir);

/* Creates `dir` (and parents) if missing and fsyncs the parent. Returns 0 or -errno. */
int segment_dir_ensure(const char *dir);

/* Lists the segments in `dir`, sorted. Files that are not segment names are ignored; a
 * malformed name of ours ("123.log" with the wrong digit count) is -EINVAL with `err`.
 * Returns 0 or -errno; the caller frees with segment_list_free. */
int segment_list(const char *dir, struct segment_list *out, char *err, size_t err_len);
void segment_list_free(struct segment_list *l);

/* The path of the segment with `base_off` in `dir`. */
void segment_path(const char *dir, uint64_t base_off, char *out, size_t out_len);

/* Creates and preallocates a segment of `size` bytes (a multiple of RECORD_BLOCK), fsyncs it
 * and the directory, and returns an fd opened O_RDWR | O_DIRECT | O_CLOEXEC, or -errno. An
 * existing segment is opened as is (size unchanged), except that one shorter than `size` (a
 * crash during creation) is extended to `size` first. A failed creation leaves no file. */
int segment_open(const char *dir, uint64_t base_off, uint64_t size);

/* Deletes a segment and fsyncs the directory. Returns 0 or -errno. */
int segment_remove(const char *dir, uint64_t base_off);

/* What the recovery scan found in one shard's log. */
struct segment_scan {
    uint64_t start_off;      /* first byte still in the log (base of the oldest segment) */
    uint64_t end_off;        /* where the next append goes: after the last valid record;
                              * a multiple of RECORD_BLOCK (an unaligned end is padded with a
                              * PAD on disk); the segment's end means: roll first */
    uint64_t records;        /* valid records seen (PAD excluded) */
    uint64_t bytes;          /* bytes of valid records */
    uint64_t cut_bytes;      /* bytes of a torn or corrupt tail that were cut */
    uint32_t segments;
    uint32_t corrupt_regions; /* corruption in the middle of the log, skipped and reported */
};

/* Called for every valid record (PAD excluded) in log order. `p` is valid during the call
 * only. Returning non-zero stops the scan with that value. */
typedef int (*segment_record_fn)(void *ctx, uint64_t off, const uint8_t *p,
                                 const struct record_header *h);

/* Scans the log in `dir` from `from_off` (0 = everything; else a record boundary, e.g. a
 * checkpoint): verifies every record, calls `fn` for each, and finds the end. A bad record
 * followed by valid records (found at a later RECORD_BLOCK boundary) is mid-log corruption:
 * it is reported through `report` with its offset, skipped, and the scan goes on. A bad record
 * with nothing valid after it is a torn tail: the scan ends there and the bytes from it to the
 * end of that segment are zeroed on disk (and fsynced) so later appends and scans are clean;
 * later segment files (which then hold no valid record) are removed. The same holds for an
 * all-zero header: followed by nothing valid it is the end (non-zero bytes after it are cut),
 * followed by a valid record it is mid-log corruption. Cuts and removals are reported too;
 * `report` may be NULL. An empty directory gives start_off = end_off = `from_off`.
 * Reads with pread in large chunks. Returns 0, fn's non-zero value, or -errno (with `err`). */
int segment_scan(const char *dir, uint64_t from_off, segment_record_fn fn, void *ctx,
                 void (*report)(void *ctx, const char *line), struct segment_scan *out,
                 char *err, size_t err_len);

#endif
