/* core/offset_set.h - a multiset of log positions (origin shard, log offset): what a shared
 * subscription group has given to its members and not yet seen end (core/shared.c).
 *
 * Owned by one shard; only that shard's thread calls it. No globals. Open addressing with
 * linear probing, at most half full; removal shifts the rest of a probe run back, so there
 * are no tombstones. A grown slot array goes when the set empties (a burst's table does not
 * stay); the smallest stays until offset_set_clear.
 */
#ifndef KEELMQ_CORE_OFFSET_SET_H
#define KEELMQ_CORE_OFFSET_SET_H

#include "core/base.h"

struct offset_slot {
    uint64_t log_off;
    uint32_t count;          /* occurrences; 0 = free slot */
    uint16_t origin;
};

/* Embedded by value; all zero is an empty set. */
struct offset_set {
    struct offset_slot *slots;
    uint32_t mask;           /* slot count - 1; 0 while `slots` is NULL */
    uint32_t used;           /* distinct positions */
};

/* Counts one more (origin, log_off). Returns 0, or -ENOMEM with nothing changed. */
int offset_set_add(struct offset_set *set, uint16_t origin, uint64_t log_off);

/* Counts one fewer (origin, log_off). Returns false (nothing changed) if it is not in the set. */
bool offset_set_remove(struct offset_set *set, uint16_t origin, uint64_t log_off);

/* Occurrences of (origin, log_off). */
uint32_t offset_set_count(const struct offset_set *set, uint16_t origin, uint64_t log_off);

/* Lowers floor[o] to the smallest log offset held for origin o, for every o < origin_count
 * (other origins are ignored). Visits every slot: for a periodic journal, not a hot path. */
void offset_set_floor(const struct offset_set *set, uint64_t *floor, uint16_t origin_count);

/* Frees the slots; the set is empty again. */
void offset_set_clear(struct offset_set *set);

#endif
