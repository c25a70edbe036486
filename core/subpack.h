/* core/subpack.h - a session's subscriptions, packed back to back in one buffer.
 *
 * Owned by its session (one shard's thread). Each entry is its options byte, its v5
 * subscription identifier (0 = none) as a varint of 1-4 bytes, the filter's length as a varint
 * of 1-3 bytes, then the filter's bytes: `plant/12345/temp` without identifier takes 19 bytes,
 * where an array of entries with a copy of each filter took 40 plus the copy's size class. Most
 * sessions hold a handful of subscriptions, and an offline persistent session holds nothing
 * else of them (its filters are out of the subscription tree: core/session.c), so this is most
 * of what a subscription costs it (bench/session-memory, docs/benchmarks.md).
 *
 * The buffer is sized to its content (realloc on every change: subscribing is not on the data
 * path, and within jemalloc's size class a realloc moves nothing). Lookups scan: O(bytes).
 * Entries are unordered: removing one moves the last entry into its place (as the array did),
 * replacing one keeps its place.
 */
#ifndef KEELMQ_CORE_SUBPACK_H
#define KEELMQ_CORE_SUBPACK_H

#include "core/base.h"

#define SUBPACK_SUB_ID_MAX 268435455u /* MQTT's largest varint, the v5 limit */
#define SUBPACK_FILTER_MAX UINT16_MAX

/* Embedded in struct session; zero-initialised is empty. */
struct subpack {
    uint8_t *buf;   /* owned; NULL when empty */
    uint32_t len;   /* bytes used (and allocated) */
    uint32_t count; /* entries */
};

/* One entry, borrowed from the buffer until the next change. */
struct subpack_entry {
    struct slice filter;
    uint8_t options;
    uint32_t sub_id;
};

/* Reads one varint at buf[*pos] (written by this module, so trusted). */
static inline uint32_t subpack_varint_read(const uint8_t *buf, uint32_t *pos)
{
    uint32_t value = 0;
    for (uint32_t shift = 0;; shift += 7) {
        uint8_t b = buf[(*pos)++];
        value |= (uint32_t)(b & 0x7Fu) << shift;
        if ((b & 0x80u) == 0)
            return value;
    }
}

/* Iterates: `uint32_t pos = 0; struct subpack_entry e; while (subpack_next(p, &pos, &e))`.
 * Returns false past the last entry. */
static inline bool subpack_next(const struct subpack *p, uint32_t *pos, struct subpack_entry *e)
{
    if (*pos >= p->len)
        return false;
    e->options = p->buf[(*pos)++];
    e->sub_id = subpack_varint_read(p->buf, pos);
    e->filter.len = subpack_varint_read(p->buf, pos);
    e->filter.ptr = p->buf + *pos;
    *pos += e->filter.len;
    ASSERT_HOT(*pos <= p->len);
    return true;
}

/* Bytes one entry takes. */
uint32_t subpack_entry_len(struct slice filter, uint32_t sub_id);

/* Finds `filter`'s entry: fills *e (may be NULL) and returns true, or false. */
bool subpack_find(const struct subpack *p, struct slice filter, struct subpack_entry *e);

/* Adds `filter` (at most SUBPACK_FILTER_MAX bytes) with `options` and `sub_id` (at most
 * SUBPACK_SUB_ID_MAX), or replaces the options and identifier of its entry. Returns 1 when
 * added, 0 when replaced, -ENOMEM with nothing changed. */
int subpack_put(struct subpack *p, struct slice filter, uint8_t options, uint32_t sub_id);

/* Removes `filter`'s entry. Returns 0, or -ENOENT. */
int subpack_remove(struct subpack *p, struct slice filter);

/* Frees the buffer; `p` is empty again. */
void subpack_free(struct subpack *p);

#endif
