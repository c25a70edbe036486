/* bench/bench_track.c - sequence tracking per (receiver, publisher) pair (see the header for
 * the counting rules). Event-loop thread only.
 */
#include "bench/bench_track.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

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
    for (uint32_t i = 0; t->slots != NULL && i <= t->slot_mask; i++)
        free(t->slots[i].seen);
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

/* Makes room in `p`'s bitmap for `seq`. Returns false when it cannot. */
static bool seen_reserve(struct track_pair *p, uint64_t seq)
{
    uint64_t word = seq / 64u;
    if (LIKELY(word < p->seen_words))
        return true;
    if (seq >= TRACK_SEQ_MAX)
        return false;
    uint64_t words = MAX(p->seen_words * 2u, 1024u);
    while (words <= word)
        words *= 2u;
    uint64_t *seen = realloc(p->seen, words * sizeof(*seen));
    if (seen == NULL)
        return false;
    memset(seen + p->seen_words, 0, (words - p->seen_words) * sizeof(*seen));
    p->seen = seen;
    p->seen_words = words;
    return true;
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
    uint64_t bit = 1ull << (seq % 64u);
    if (UNLIKELY(!seen_reserve(p, seq)) || (p->seen[seq / 64u] & bit) != 0) {
        counts->duplicated++;
        return false;
    }
    p->seen[seq / 64u] |= bit;
    p->unique_count++;
    counts->unique++;
    if (LIKELY(seq >= p->next_seq))
        p->next_seq = seq + 1;
    else
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
