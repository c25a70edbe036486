/* core/spsc.c - bounded single-producer/single-consumer ring of fixed-size entries.
 *
 * Implements core/spsc.h. It does not allocate after spsc_init, block, or wake anyone (that is
 * io/wake and core/mailbox). spsc_init/spsc_destroy run while neither side is running; the
 * producer functions belong to exactly one thread and the consumer functions to exactly one
 * other thread (or the same one).
 *
 * Indexes. Four free-running 32-bit counters, compared only by unsigned difference, so they may
 * wrap past UINT32_MAX freely:
 *
 *     reclaimed <= head <= tail <= tail_local,   tail_local - reclaimed <= capacity
 *
 * tail_local counts slots the producer has handed out, tail those it has published, head those
 * the consumer has finished with, reclaimed those the producer has taken back. A slot is free
 * for spsc_slot() only once it is reclaimed, so between head and reclaimed the producer may read
 * entries the consumer has finished with (and anything the consumer wrote into them). Capacity is
 * at most 2^31 so that every difference above fits in 31 bits and is unambiguous.
 *
 * Synchronisation. Exactly two atomics carry data between the threads:
 *   - tail: the producer's release store in spsc_publish() pairs with the consumer's acquire
 *     loads in spsc_available()/spsc_is_empty(): entry contents written before publish are
 *     visible to the consumer once it sees the new tail.
 *   - head: the consumer's release store in spsc_consumed() pairs with the producer's acquire
 *     load in spsc_reclaimable(): the consumer's reads (and writes) of an entry happen before
 *     the producer inspects or reuses it.
 * Each side also reads its own index with a relaxed load (it is the only writer).
 *
 * Caching. Each side keeps a plain copy of the other side's index (head_cache, tail_cache) and
 * reloads it only when its cached view is exhausted: the consumer when it has consumed all it
 * knew to be published, the producer when it has reclaimed all it knew to be consumed. This
 * keeps the other side's cache line out of the fast path. The rejected alternative was for the
 * producer to reload head only when the ring is full: that saves loads, but a quiet pair would
 * then hold whatever the consumer borrowed until the ring wraps, which may be never.
 */
#include "core/spsc.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define SPSC_CAPACITY_MAX (UINT32_C(1) << 31)

STATIC_ASSERT(offsetof(struct spsc, head) - offsetof(struct spsc, tail) >= CACHE_LINE,
              "producer and consumer indexes share a cache line pair");
STATIC_ASSERT(offsetof(struct spsc, mask) - offsetof(struct spsc, head) >= CACHE_LINE,
              "read-only fields share a line with the consumer index");

static bool is_power_of_two(uint32_t x)
{
    return x != 0 && (x & (x - 1)) == 0;
}

static uint8_t *entry_at(const struct spsc *r, uint32_t index)
{
    return r->entries + (size_t)(index & r->mask) * r->entry_size;
}

int spsc_init(struct spsc *r, uint32_t capacity, uint32_t entry_size)
{
    ASSERT(r != NULL);
    ASSERT(capacity >= 2);
    ASSERT(capacity <= SPSC_CAPACITY_MAX);
    ASSERT(is_power_of_two(capacity));
    ASSERT(entry_size >= 8);
    ASSERT(entry_size % 8 == 0);

    memset(r, 0, sizeof(*r));
    size_t bytes = (size_t)capacity * entry_size;
    /* Round up so the allocation is a whole number of lines: aligned_alloc's contract. */
    bytes = (bytes + CACHE_LINE - 1) / CACHE_LINE * CACHE_LINE;
    r->entries = aligned_alloc(CACHE_LINE, bytes);
    if (r->entries == NULL)
        return -ENOMEM;
    memset(r->entries, 0, bytes);
    r->mask = capacity - 1;
    r->entry_size = entry_size;
    /* No other thread runs yet; spawning them orders these stores before their first access. */
    atomic_init(&r->tail, 0);
    atomic_init(&r->head, 0);
    ASSERT(r->tail_local == 0 && r->reclaimed == 0);
    return 0;
}

void spsc_destroy(struct spsc *r)
{
    ASSERT(r != NULL);
    ASSERT(r->entries != NULL);
    free(r->entries);
    r->entries = NULL;
}

void *spsc_slot(struct spsc *r)
{
    ASSERT_HOT(r->tail_local - r->reclaimed <= r->mask + 1);
    if (r->tail_local - r->reclaimed == r->mask + 1)
        return NULL; /* Full: the producer must reclaim before it can reuse a slot. */
    uint8_t *slot = entry_at(r, r->tail_local);
    r->tail_local++;
    return slot;
}

void spsc_publish(struct spsc *r)
{
    ASSERT_HOT(r->tail_local - atomic_load_explicit(&r->tail, memory_order_relaxed) <=
               r->mask + 1);
    /* Release: pairs with the acquire loads of tail in spsc_available and spsc_is_empty. */
    atomic_store_explicit(&r->tail, r->tail_local, memory_order_release);
}

uint32_t spsc_reclaimable(struct spsc *r)
{
    if (r->head_cache == r->reclaimed) {
        /* Acquire: pairs with the release store of head in spsc_consumed. */
        r->head_cache = atomic_load_explicit(&r->head, memory_order_acquire);
    }
    uint32_t count = r->head_cache - r->reclaimed;
    ASSERT_HOT(count <= r->tail_local - r->reclaimed);
    return count;
}

void *spsc_reclaim_entry(struct spsc *r, uint32_t i)
{
    ASSERT_HOT(i < r->head_cache - r->reclaimed);
    return entry_at(r, r->reclaimed + i);
}

void spsc_reclaim(struct spsc *r, uint32_t n)
{
    ASSERT_HOT(n <= r->head_cache - r->reclaimed);
    r->reclaimed += n;
}

uint32_t spsc_available(struct spsc *r)
{
    uint32_t head = atomic_load_explicit(&r->head, memory_order_relaxed); /* Our own index. */
    if (r->tail_cache == head) {
        /* Acquire: pairs with the release store of tail in spsc_publish. */
        r->tail_cache = atomic_load_explicit(&r->tail, memory_order_acquire);
    }
    uint32_t count = r->tail_cache - head;
    ASSERT_HOT(count <= r->mask + 1);
    return count;
}

void *spsc_entry(struct spsc *r, uint32_t i)
{
    uint32_t head = atomic_load_explicit(&r->head, memory_order_relaxed); /* Our own index. */
    ASSERT_HOT(i < r->tail_cache - head);
    return entry_at(r, head + i);
}

void spsc_consumed(struct spsc *r, uint32_t n)
{
    uint32_t head = atomic_load_explicit(&r->head, memory_order_relaxed); /* Our own index. */
    ASSERT_HOT(n <= r->tail_cache - head);
    /* Release: pairs with the acquire load of head in spsc_reclaimable. */
    atomic_store_explicit(&r->head, head + n, memory_order_release);
}

bool spsc_is_empty(struct spsc *r)
{
    uint32_t head = atomic_load_explicit(&r->head, memory_order_relaxed); /* Our own index. */
    /* Acquire: pairs with the release store of tail in spsc_publish. */
    r->tail_cache = atomic_load_explicit(&r->tail, memory_order_acquire);
    ASSERT_HOT(r->tail_cache - head <= r->mask + 1);
    return r->tail_cache == head;
}
