/* store/retention.h - segment retention for one shard's commit log: decide which of the oldest
 * segments the size and age limits (store.retention.bytes, store.retention.hours) allow to
 * delete, delete them, and report the new oldest offset (the GC watermark).
 *
 * It deletes whole segment files, oldest first, and never the active segment (the one being
 * written). It does not read records, touch the index or sessions: the caller hands the
 * returned watermark to consumeq_set_gc, and sessions whose offsets fell below it resume at the
 * watermark, the loss counted and logged per client (docs/storage.md, Read path).
 *
 * retention_decide is pure and may run anywhere. retention_apply does blocking syscalls (list,
 * stat, unlink, directory fsync); the shard that owns the log calls it from its tick, at most
 * once per RETENTION_INTERVAL_MS, never per message. One caller per directory.
 *
 * Pinning. `pinned_off` is an optional floor: no segment holding a byte at or above it is
 * deleted. The broker passes RETENTION_UNPINNED: retention is a hard disk budget, and a session
 * that falls behind loses data (counted) rather than growing the log without limit. The floor
 * is there for a caller that must keep its data (e.g. a checkpoint not yet written).
 */
#ifndef KEELMQ_STORE_RETENTION_H
#define KEELMQ_STORE_RETENTION_H

#include "core/base.h"
#include "core/config.h"

#define RETENTION_UNPINNED UINT64_MAX  /* pinned_off when nothing pins the log */
#define RETENTION_INTERVAL_MS 5000     /* how often a shard's tick should apply retention */

/* One segment as retention sees it: the log offsets [base_off, end_off) it holds and the wall
 * time (ns since the epoch) of its newest record. */
struct retention_segment {
    uint64_t base_off;
    uint64_t end_off;        /* closed segments: base + file size; the active one: append_off */
    uint64_t newest_ns;
};

/* The limits, 0 = no limit. max_bytes counts log bytes (end_off - base_off summed over the
 * segments, the active one up to its append offset), not blocks on disk. */
struct retention_policy {
    uint64_t max_bytes;
    uint64_t max_age_ns;
};

/* The policy of store.retention.bytes and store.retention.hours. `cfg` is borrowed. */
struct retention_policy retention_policy_from_config(const struct config *cfg);

/* Pure. Given the shard's `count` segments in `segs` (borrowed), oldest first, sorted and not
 * overlapping, the last one being the active segment, returns how many of the oldest segments
 * to delete (0..count-1; 0 when count is 0). Deletions form a prefix, and a segment is deleted
 * only when it is not the active one and lies entirely below `pinned_off` (end_off <=
 * pinned_off); among those it is deleted when either rule wants it:
 *   - size: while the bytes of the segments that remain exceed `p->max_bytes`, the oldest goes;
 *     so a total of exactly max_bytes is kept.
 *   - age: while the oldest segment's newest record is older than `p->max_age_ns` at `now_ns`
 *     (now_ns - newest_ns > max_age_ns; exactly max_age_ns old is kept, a newest_ns after
 *     now_ns is age 0), it goes. The age rule stops at the first young segment even if an
 *     older-looking one follows.
 * `now_ns` is wall time (base_wall_ns), the clock newest_ns is in. */
uint32_t retention_decide(const struct retention_segment *segs, uint32_t count,
                          const struct retention_policy *p, uint64_t now_ns,
                          uint64_t pinned_off);

/* Applies `p` to the log in `dir`, whose writer's active segment starts at `active_base` and
 * whose next append goes to `append_off`: lists the segments, decides with retention_decide,
 * deletes the chosen ones oldest first with segment_remove (each removal fsyncs the
 * directory), and stores in *start_off the oldest log offset still in the log, the GC
 * watermark: the base of the oldest segment left, or `append_off` if the directory holds no
 * segment (nothing below it is readable).
 *
 * Every segment file at or after `active_base` counts as the active segment [active_base,
 * append_off) and is never deleted. So a caller whose previous segment still has a write in
 * flight right after a roll may pass that segment's base as `active_base` to protect it too.
 *
 * Age without reading records: a closed segment's newest_ns is its file's mtime (st_mtim). A
 * segment file is written only while it is active (the recovery scan's repairs touch only the
 * newest segments), so its mtime is the time of its last write, which is at or after the
 * append time of its newest record: the approximation can only keep a segment longer, never
 * delete it early. How much longer is unbounded in one case: a segment that sat nearly full
 * and idle gets its closing PAD written at the next append, which refreshes its mtime.
 * Copying the files without preserving mtimes resets their ages too. A closed segment's
 * end_off is its base plus its file size, cut at the next segment's base.
 *
 * Blocking syscalls (see the top of this file). Returns the number of segments deleted, or
 * -errno: from listing (nothing deleted, *start_off untouched; -EINVAL for a malformed
 * segment name, -E2BIG past SEGMENT_MAX_COUNT files), from a stat or -ENOMEM (nothing deleted,
 * *start_off untouched), or from a removal. After a failed removal the segments before it are
 * gone and the failed one counts as gone too (its unlink may have succeeded before the
 * directory fsync failed): *start_off is the base of the segment after it. */
int retention_apply(const char *dir, uint64_t active_base, uint64_t append_off,
                    const struct retention_policy *p, uint64_t now_ns, uint64_t pinned_off,
                    uint64_t *start_off);

#endif
