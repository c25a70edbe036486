/* core/topicalias.c - server -> client topic aliases of one connection (core/topicalias.h).
 *
 * A linear scan over at most TOPICALIAS_OUT_MAX hashes per PUBLISH: a few dozen compares of
 * one word each, cheaper than keeping a second index in step. The hash is never 0 for a used
 * entry, so an unused one never matches.
 */
#include "core/topicalias.h"

#include <stdlib.h>
#include <string.h>

#include "core/hash.h"

void topicalias_init(struct topicalias_out *t, uint16_t client_max)
{
    ASSERT(t->entries == NULL);
    *t = (struct topicalias_out){ .max = (uint16_t)MIN(client_max, TOPICALIAS_OUT_MAX) };
}

static uint64_t topic_hash(struct slice topic)
{
    return hash_bytes(topic.ptr, topic.len) | 1u;
}

/* The index of the entry holding `topic`, or -1. */
static int32_t find(const struct topicalias_out *t, struct slice topic, uint64_t h)
{
    for (uint32_t i = 0; i < t->used; i++) {
        const struct topicalias_entry *e = &t->entries[i];
        if (e->hash == h && e->len == topic.len && memcmp(e->topic, topic.ptr, topic.len) == 0)
            return (int32_t)i;
    }
    return -1;
}

/* The entry to give a new topic: the next unused alias, else an empty one (forgotten after
 * running out of memory), else the least recently used. */
static uint32_t victim(const struct topicalias_out *t)
{
    if (t->used < t->max)
        return t->used;
    uint32_t best = 0;
    for (uint32_t i = 0; i < t->used; i++) {
        if (t->entries[i].topic == NULL)
            return i;
        /* Unsigned difference: correct across a wrap of the clock. */
        if (t->clock - t->entries[i].last_use > t->clock - t->entries[best].last_use)
            best = i;
    }
    return best;
}

enum topicalias_verdict topicalias_pick(struct topicalias_out *t, struct slice topic,
                                        uint16_t *alias)
{
    if (t->max == 0 || topic.len == 0)
        return TOPICALIAS_NONE;
    if (t->entries == NULL) {
        t->entries = calloc(t->max, sizeof(*t->entries));
        if (t->entries == NULL)
            return TOPICALIAS_NONE; /* Out of memory: plain topic names work as well. */
    }
    int32_t i = find(t, topic, topic_hash(topic));
    if (i >= 0) {
        *alias = (uint16_t)(i + 1);
        return TOPICALIAS_KNOWN;
    }
    *alias = (uint16_t)(victim(t) + 1);
    ASSERT_HOT(*alias >= 1 && *alias <= t->max);
    return TOPICALIAS_NEW;
}

void topicalias_commit(struct topicalias_out *t, struct slice topic, uint16_t alias,
                       enum topicalias_verdict verdict)
{
    ASSERT(verdict != TOPICALIAS_NONE && t->entries != NULL);
    ASSERT(alias >= 1 && alias <= t->max && alias <= t->used + 1u);
    struct topicalias_entry *e = &t->entries[alias - 1];
    e->last_use = ++t->clock;
    if (verdict == TOPICALIAS_KNOWN)
        return;
    if (alias == t->used + 1u)
        t->used++;
    if (e->cap < topic.len) {
        uint8_t *n = realloc(e->topic, topic.len);
        if (n == NULL) {
            /* The client maps the alias, we do not: we never send it bare, so no harm. */
            free(e->topic);
            *e = (struct topicalias_entry){ 0 };
            return;
        }
        e->topic = n;
        e->cap = (uint16_t)topic.len;
    }
    memcpy(e->topic, topic.ptr, topic.len);
    e->len = (uint16_t)topic.len;
    e->hash = topic_hash(topic);
}

void topicalias_free(struct topicalias_out *t)
{
    if (t->entries != NULL) {
        for (uint32_t i = 0; i < t->used; i++)
            free(t->entries[i].topic);
        free(t->entries);
    }
    *t = (struct topicalias_out){ 0 };
}
