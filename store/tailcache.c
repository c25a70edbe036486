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

void tailcache_put(struct tailcache *c, uint64_t off, const uint8_t *p, uint64_t len)
{
    if (c->cap == 0 || len == 0)
        return;
    if (off != c->hi)
        c->lo = c->hi = off; /* a gap: what is held no longer continues into the new bytes */
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
}

const uint8_t *tailcache_get(struct tailcache *c, uint64_t off, uint32_t len, uint8_t *scratch,
                             uint32_t scratch_cap)
{
    if (off < c->lo || off > c->hi || len > c->hi - off || c->cap == 0) {
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
