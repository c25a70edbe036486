/* bench/bench_track.c - sequence tracking per (receiver, publisher) pair (see the header for
 * the counting rules). Event-loop thread only.
 */
#include "bench/bench_track.h"

#include <errno.h>
#include <stdlib.h>

static uint32_t hash_idx(uint32_t publisher_idx)
{
    return publisher_idx * 0x9E3779B1u;
}

int track_init(struct track *t, uint32_t pair_max)
{
    ASSERT(pair_max > 0 && pair_max <= (1u << 30));
    uint32_t cap = 2;
    while (cap < 2u * pair_max)
        cap <<= 1;
    t->slots = malloc((size_t)cap * sizeof(*t->slots));
    if (t->slots == NULL)
        return -ENOMEM;
    for (uint32_t i = 0; i < cap; i++)
        t->slots[i] = (struct track_pair){ .publisher_idx = UINT32_MAX };
    t->slot_mask = cap - 1;
    t->pair_count = 0;
    t->pair_max = pair_max;
    return 0;
}

void track_destroy(struct track *t)
{
    free(t->slots);
    t->slots = NULL;
}

/* The slot of `publisher_idx`, or the empty slot where it would go. */
static struct track_pair *find_slot(const struct track *t, uint32_t publisher_idx)
{
    uint32_t i = hash_idx(publisher_idx) & t->slot_mask;
    for (;;) { /* Ends: the table is at most half full. */
        struct track_pair *p = &t->slots[i];
        if (p->publisher_idx == publisher_idx || p->publisher_idx == UINT32_MAX)
            return p;
        i = (i + 1) & t->slot_mask;
    }
}

void track_expect(struct track *t, uint32_t publisher_idx)
{
    ASSERT(publisher_idx != UINT32_MAX);
    struct track_pair *p = find_slot(t, publisher_idx);
    if (p->publisher_idx == publisher_idx)
        return;
    ASSERT(t->pair_count < t->pair_max);
    *p = (struct track_pair){ .publisher_idx = publisher_idx };
    t->pair_count++;
}

bool track_receive(struct track *t, uint32_t publisher_idx, uint64_t seq,
                   struct track_counts *counts)
{
    counts->received++;
    struct track_pair *p = find_slot(t, publisher_idx);
    if (UNLIKELY(p->publisher_idx != publisher_idx)) {
        counts->unexpected++;
        return false;
    }
    if (LIKELY(seq >= p->next_seq)) {
        uint64_t shift = seq - p->next_seq + 1; /* this one and the gap below it */
        p->window = shift >= TRACK_WINDOW_BITS ? 1u : (p->window << shift) | 1u;
        p->next_seq = seq + 1;
        p->unique_count++;
        counts->unique++;
        return true;
    }
    uint64_t below = p->next_seq - 1 - seq;
    if (below >= TRACK_WINDOW_BITS || (p->window >> below) & 1u) {
        counts->duplicated++;
        return false;
    }
    p->window |= 1ull << below;
    p->unique_count++;
    counts->unique++;
    counts->reordered++;
    return true;
}

uint64_t track_lost(const struct track *t, const uint64_t *sent_count)
{
    uint64_t lost = 0;
    for (uint32_t i = 0; i <= t->slot_mask; i++) {
        const struct track_pair *p = &t->slots[i];
        if (p->publisher_idx == UINT32_MAX)
            continue;
        uint64_t sent = sent_count[p->publisher_idx];
        if (sent > p->unique_count)
            lost += sent - p->unique_count;
    }
    return lost;
}

uint64_t track_expected(const struct track *t, const uint64_t *sent_count)
{
    uint64_t expected = 0;
    for (uint32_t i = 0; i <= t->slot_mask; i++)
        if (t->slots[i].publisher_idx != UINT32_MAX)
            expected += sent_count[t->slots[i].publisher_idx];
    return expected;
}
