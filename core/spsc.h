/* core/spsc.h - bounded single-producer/single-consumer ring of fixed-size entries.
 *
 * One thread produces, one thread consumes; they share nothing else. Producers batch: they
 * fill slots with spsc_slot() and make them visible with one spsc_publish(). Consumers batch:
 * spsc_available() then spsc_entry() for each, then one spsc_consumed(). Because a slot is
 * only reused after the producer has seen it consumed (spsc_reclaimable/spsc_reclaim), the
 * producer can look at its consumed entries before reuse: the per-pair acknowledged sequence
 * that lets the producer free what the consumer borrowed (DESIGN 1), without a message back.
 * Producer and consumer indexes live on separate CACHE_LINE-aligned lines.
 */
#ifndef KEELMQ_CORE_SPSC_H
#define KEELMQ_CORE_SPSC_H

#include "core/base.h"

struct spsc {
    /* Written by the producer. */
    _Alignas(CACHE_LINE) _Atomic uint32_t tail; /* published entries; release by producer */
    uint32_t tail_local;                        /* written but not yet published */
    uint32_t reclaimed;                         /* entries the producer has reclaimed */
    uint32_t head_cache;                        /* producer's last view of head */
    /* Written by the consumer. */
    _Alignas(CACHE_LINE) _Atomic uint32_t head; /* consumed entries; release by consumer */
    uint32_t tail_cache;                        /* consumer's last view of tail */
    /* Read-only after init. */
    _Alignas(CACHE_LINE) uint32_t mask;
    uint32_t entry_size;
    uint8_t *entries;
};

/* `capacity` must be a power of two >= 2; `entry_size` a multiple of 8. Returns 0 or -ENOMEM.
 * Call before either thread starts; the ring is empty. */
int spsc_init(struct spsc *r, uint32_t capacity, uint32_t entry_size);
void spsc_destroy(struct spsc *r);

/* Producer: the next free slot, or NULL when the ring is full (nothing reclaimable). The slot
 * becomes visible only at the next spsc_publish(). */
void *spsc_slot(struct spsc *r);
/* Producer: makes every slot obtained since the last publish visible (one release store). */
void spsc_publish(struct spsc *r);
/* Producer: number of entries the consumer has finished with and the producer has not yet
 * reclaimed, and the i-th of them (0 = oldest). spsc_reclaim(n) frees n slots for reuse. */
uint32_t spsc_reclaimable(struct spsc *r);
void *spsc_reclaim_entry(struct spsc *r, uint32_t i);
void spsc_reclaim(struct spsc *r, uint32_t n);

/* Consumer: number of published entries not yet consumed (one acquire load when the cached
 * view is exhausted), the i-th of them, and marking the first n consumed (one release store). */
uint32_t spsc_available(struct spsc *r);
void *spsc_entry(struct spsc *r, uint32_t i);
void spsc_consumed(struct spsc *r, uint32_t n);

/* Consumer: true if nothing is published and unconsumed (acquire; used before sleeping). */
bool spsc_is_empty(struct spsc *r);

#endif
