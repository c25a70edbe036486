/* store/tailcache.c - the commit log's hot tail (store/tailcache.h). */
#include "store/tailcache.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int tailcache_init(struct tailcache *c, uint64_t cap)
{
    memset(c, 0, sizeof(*c));
    if (cap == 0)
        return 0;
    c->buf = malloc(cap);
    if (c->buf == NULL)
        return -ENOMEM;
    c->cap = cap;
    return 0;
}

void tailcache_free(struct tailcache *c)
{
    free(c->buf);
    memset(c, 0, sizeof(*c));
}

/* Drops the holes that lie wholly below `lo` (their bytes left the ring) and clips the
 * oldest one to it. */
static void holes_prune(struct tailcache *c)
{
    uint32_t gone = 0;
    while (gone < c->hole_count && c->holes[gone].end <= c->lo)
        gone++;
    if (gone > 0) {
        memmove(c->holes, c->holes + gone, (c->hole_count - gone) * sizeof(c->holes[0]));
        c->hole_count -= gone;
    }
    if (c->hole_count > 0 && c->holes[0].off < c->lo)
        c->holes[0].off = c->lo;
}

/* Starts the new bytes at `off`: after a gap, what is held no longer continues into them. */
static void continue_at(struct tailcache *c, uint64_t off)
{
    if (off != c->hi) {
        c->lo = c->hi = off;
        c->hole_count = 0;
    }
}

void tailcache_skip(struct tailcache *c, uint64_t off, uint64_t len)
{
    if (c->cap == 0 || len == 0)
        return;
    continue_at(c, off);
    c->hi = off + len;
    c->lo = MAX(c->lo, c->hi - MIN(c->hi, c->cap));
    holes_prune(c);
    struct tailcache_hole *last = c->hole_count > 0 ? &c->holes[c->hole_count - 1] : NULL;
    if (last != NULL && last->end == off) {
        last->end = c->hi; /* a run of skipped batches is one hole */
        return;
    }
    if (c->hole_count == TAILCACHE_HOLES_MAX) {
        c->lo = c->holes[0].end; /* no room to remember one more: forget what precedes it */
        holes_prune(c);
    }
    c->holes[c->hole_count++] = (struct tailcache_hole){ .off = MAX(off, c->lo), .end = c->hi };
}

void tailcache_put(struct tailcache *c, uint64_t off, const uint8_t *p, uint64_t len)
{
    if (c->cap == 0 || len == 0)
        return;
    continue_at(c, off);
    if (len > c->cap) {
        p += len - c->cap;
        off += len - c->cap;
        len = c->cap;
        c->lo = c->hi = off;
    }
    uint64_t at = off % c->cap;
    uint64_t first = MIN(len, c->cap - at);
    memcpy(c->buf + at, p, first);
    memcpy(c->buf, p + first, len - first);
    c->hi = off + len;
    c->lo = MAX(c->lo, c->hi - MIN(c->hi, c->cap));
    holes_prune(c);
}

static bool touches_hole(const struct tailcache *c, uint64_t off, uint32_t len)
{
    for (uint32_t i = 0; i < c->hole_count; i++)
        if (off < c->holes[i].end && off + len > c->holes[i].off)
            return true;
    return false;
}

const uint8_t *tailcache_get(struct tailcache *c, uint64_t off, uint32_t len, uint8_t *scratch,
                             uint32_t scratch_cap)
{
    if (off < c->lo || off > c->hi || len > c->hi - off || c->cap == 0 ||
        touches_hole(c, off, len)) {
        c->misses++;
        return NULL;
    }
    uint64_t at = off % c->cap;
    if (at + len <= c->cap) {
        c->hits++;
        return c->buf + at;
    }
    if (len > scratch_cap) {
        c->misses++;
        return NULL;
    }
    uint64_t first = c->cap - at;
    memcpy(scratch, c->buf + at, first);
    memcpy(scratch + first, c->buf, len - first);
    c->hits++;
    return scratch;
}
