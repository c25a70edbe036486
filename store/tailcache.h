/* store/tailcache.h - the hot tail of one shard's commit log: its newest written bytes, kept
 * in memory (store.cache_bytes) so that a session catching up on recent records reads them
 * from memory instead of the disk.
 *
 * Owned by the shard's struct commitlog and fed by it when a batch write completes; read by
 * the same shard (core/catchup.c). Single thread, no locks. A ring of `cap` bytes holding the
 * log bytes [lo, hi): writes go out in log order and are contiguous, so each completed write
 * extends `hi` and pushes `lo` up once the ring is full. A record that wraps around the ring's
 * end is copied out into the caller's scratch; any other is returned in place.
 *
 * A written range that holds no record a reader asks for (a batch of QoS 0 messages, which
 * nothing indexes) is skipped instead of copied (tailcache_skip): `hi` moves past it and it
 * is remembered as a hole, so a get that touches it misses rather than returning the stale
 * bytes of an older lap. Under a QoS 0 load this keeps the copy (a memcpy of every written
 * byte) off the loop. At most TAILCACHE_HOLES_MAX holes are kept (adjacent ones merge); one
 * more drops everything up to the end of the oldest.
 */
#ifndef KEELMQ_STORE_TAILCACHE_H
#define KEELMQ_STORE_TAILCACHE_H

#include "core/base.h"

#define TAILCACHE_HOLES_MAX 16u

struct tailcache_hole {
    uint64_t off;            /* log bytes [off, end) are in [lo, hi) but not held */
    uint64_t end;
};

struct tailcache {
    uint8_t *buf;            /* cap bytes (pages become resident as they are first written) */
    uint64_t cap;            /* 0: no cache */
    uint64_t lo;             /* log bytes [lo, hi) are held; hi - lo <= cap */
    uint64_t hi;
    uint64_t hits;           /* tailcache_get calls that found their bytes */
    uint64_t misses;
    struct tailcache_hole holes[TAILCACHE_HOLES_MAX]; /* oldest first, within [lo, hi) */
    uint32_t hole_count;
};

/* Sets up an empty cache of `cap` bytes (0: none; every get misses). Returns 0 or -ENOMEM. */
int tailcache_init(struct tailcache *c, uint64_t cap);
void tailcache_free(struct tailcache *c);

/* The log bytes [off, off + len) were written (`p`, borrowed during the call): keeps the last
 * `cap` of them. `off` normally equals c->hi; anything else (a gap) restarts the cache at
 * `off`. */
void tailcache_put(struct tailcache *c, uint64_t off, const uint8_t *p, uint64_t len);

/* The log bytes [off, off + len) were written but will never be asked for: moves past them
 * without copying (a hole). `off` is treated as in tailcache_put. */
void tailcache_skip(struct tailcache *c, uint64_t off, uint64_t len);

/* The log bytes [off, off + len) if the cache holds all of them: a pointer into the cache, or,
 * when they wrap around its end, into `scratch` (caller memory of `scratch_cap` bytes) after
 * copying them there. NULL when they are not all held (or touch a hole) or a wrapped range does not fit in
 * `scratch`. The pointer is valid until the next tailcache_put. Counts hits and misses. */
const uint8_t *tailcache_get(struct tailcache *c, uint64_t off, uint32_t len, uint8_t *scratch,
                             uint32_t scratch_cap);

#endif
