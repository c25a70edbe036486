/* core/offset_set.c - a multiset of (origin, log offset) (core/offset_set.h). */
#include "core/offset_set.h"

#include <errno.h>
#include <stdlib.h>

#define OFFSET_SET_SLOTS_MIN 16u

static uint32_t slot_hash(uint16_t origin, uint64_t log_off)
{
    uint64_t x = log_off ^ ((uint64_t)origin << 48);
    x ^= x >> 33; /* a 64-bit finalizer: log offsets are multiples of 8, often close */
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return (uint32_t)x;
}

/* The slot holding (origin, log_off), or the free slot where it would go. */
static struct offset_slot *slot_find(const struct offset_set *set, uint16_t origin,
                                     uint64_t log_off)
{
    for (uint32_t i = slot_hash(origin, log_off) & set->mask;; i = (i + 1) & set->mask) {
        struct offset_slot *e = &set->slots[i];
        if (e->count == 0 || (e->log_off == log_off && e->origin == origin))
            return e;
    }
}

static int rebuild(struct offset_set *set, uint32_t cap)
{
    struct offset_slot *old = set->slots;
    uint32_t old_cap = old != NULL ? set->mask + 1 : 0;
    struct offset_slot *n = calloc(cap, sizeof(*n));
    if (n == NULL)
        return -ENOMEM;
    set->slots = n;
    set->mask = cap - 1;
    for (uint32_t i = 0; i < old_cap; i++)
        if (old[i].count > 0)
            *slot_find(set, old[i].origin, old[i].log_off) = old[i];
    free(old);
    return 0;
}

int offset_set_add(struct offset_set *set, uint16_t origin, uint64_t log_off)
{
    uint32_t cap = set->slots != NULL ? set->mask + 1 : 0;
    if ((uint64_t)(set->used + 1) * 2 > cap) {
        if (cap >= (1u << 31))
            return -ENOMEM;
        int rc = rebuild(set, cap ? cap * 2 : OFFSET_SET_SLOTS_MIN);
        if (rc != 0)
            return rc;
    }
    struct offset_slot *e = slot_find(set, origin, log_off);
    if (e->count == UINT32_MAX)
        return -ENOMEM;
    if (e->count == 0) {
        *e = (struct offset_slot){ .log_off = log_off, .origin = origin };
        set->used++;
    }
    e->count++;
    return 0;
}

bool offset_set_remove(struct offset_set *set, uint16_t origin, uint64_t log_off)
{
    if (set->used == 0)
        return false;
    struct offset_slot *e = slot_find(set, origin, log_off);
    if (e->count == 0)
        return false;
    if (--e->count > 0)
        return true;
    set->used--;
    if (set->used == 0 && set->mask + 1 > OFFSET_SET_SLOTS_MIN) {
        offset_set_clear(set); /* A burst's table goes; the smallest one stays. */
        return true;
    }
    /* Backward shift: an entry later in the probe run moves into the hole unless its home
     * slot lies in the cyclic range (hole, i], where it would no longer be found. */
    uint32_t hole = (uint32_t)(e - set->slots);
    for (uint32_t i = (hole + 1) & set->mask; set->slots[i].count > 0;
         i = (i + 1) & set->mask) {
        uint32_t home = slot_hash(set->slots[i].origin, set->slots[i].log_off) & set->mask;
        if (((i - home) & set->mask) >= ((i - hole) & set->mask)) {
            set->slots[hole] = set->slots[i];
            hole = i;
        }
    }
    set->slots[hole].count = 0;
    return true;
}

uint32_t offset_set_count(const struct offset_set *set, uint16_t origin, uint64_t log_off)
{
    return set->used > 0 ? slot_find(set, origin, log_off)->count : 0;
}

void offset_set_floor(const struct offset_set *set, uint64_t *floor, uint16_t origin_count)
{
    for (uint32_t i = 0; set->used > 0 && i <= set->mask; i++) {
        const struct offset_slot *e = &set->slots[i];
        if (e->count > 0 && e->origin < origin_count)
            floor[e->origin] = MIN(floor[e->origin], e->log_off);
    }
}

void offset_set_clear(struct offset_set *set)
{
    free(set->slots);
    *set = (struct offset_set){ 0 };
}
