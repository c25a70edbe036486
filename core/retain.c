/* core/retain.c - one shard's retained-message index over the topic-level trie (core/trie.h).
 *
 * Owned by one shard; only that shard's thread calls it. Maps exact topic names to opaque
 * values and walks the topics a filter matches; it does not own or free the values, expire
 * them, or persist anything.
 *
 * Each trie node that ends a stored topic holds an entry with the value and a copy of the
 * whole topic, so a walk can hand the topic to the callback without rebuilding it.
 */
#include "core/retain.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/topic.h"
#include "core/trie.h"

struct retain_entry {
    void *value; /* the caller's; never NULL */
    uint32_t topic_len;
    uint8_t topic[];
};

struct retain {
    struct trie trie;
    uint32_t count;
};

struct retain *retain_create(void)
{
    struct retain *r = malloc(sizeof(*r));
    if (r == NULL)
        goto fail_retain;
    if (trie_init(&r->trie) != 0)
        goto fail_trie;
    r->count = 0;
    return r;
fail_trie:
    free(r);
fail_retain:
    return NULL;
}

void retain_destroy(struct retain *r, void (*release)(void *ctx, void *value), void *ctx)
{
    if (r == NULL)
        return;
    for (uint32_t i = 0; i < trie_node_used(&r->trie); i++) {
        struct retain_entry *entry = trie_value(&r->trie, i);
        if (entry == NULL)
            continue;
        if (release != NULL)
            release(ctx, entry->value);
        free(entry);
    }
    trie_fini(&r->trie);
    free(r);
}

uint32_t retain_count(const struct retain *r)
{
    ASSERT(r != NULL);
    return r->count;
}

void *retain_set(struct retain *r, struct slice topic, void *value, int *err)
{
    ASSERT(r != NULL && value != NULL && err != NULL);
    ASSERT_HOT(topic_name_valid(topic));
    uint32_t node;
    *err = trie_insert(&r->trie, topic, &node);
    if (*err != 0)
        return NULL;
    struct trie_node *n = trie_node(&r->trie, node);
    struct retain_entry *entry = n->value;
    if (entry != NULL) {
        void *previous = entry->value;
        entry->value = value;
        return previous;
    }
    entry = malloc(sizeof(*entry) + topic.len);
    if (entry == NULL) {
        trie_prune(&r->trie, node); /* frees the path this call created */
        *err = -ENOMEM;
        return NULL;
    }
    entry->value = value;
    entry->topic_len = topic.len;
    memcpy(entry->topic, topic.ptr, topic.len);
    n->value = entry;
    r->count++;
    ASSERT(r->count != 0);
    return NULL;
}

void *retain_clear(struct retain *r, struct slice topic)
{
    ASSERT(r != NULL);
    ASSERT_HOT(topic_name_valid(topic));
    uint32_t node = trie_find(&r->trie, topic);
    if (node == TRIE_NONE)
        return NULL;
    struct trie_node *n = trie_node(&r->trie, node);
    struct retain_entry *entry = n->value;
    if (entry == NULL)
        return NULL;
    void *value = entry->value;
    free(entry);
    n->value = NULL;
    ASSERT(r->count > 0);
    r->count--;
    trie_prune(&r->trie, node);
    return value;
}

void *retain_get(const struct retain *r, struct slice topic)
{
    ASSERT(r != NULL);
    ASSERT_HOT(topic_name_valid(topic));
    uint32_t node = trie_find(&r->trie, topic);
    if (node == TRIE_NONE)
        return NULL;
    const struct retain_entry *entry = trie_value(&r->trie, node);
    return entry != NULL ? entry->value : NULL;
}

struct match_walk {
    const struct trie *trie;
    struct slice filter;
    retain_walk_fn fn;
    void *ctx;
};

static void entry_report(const struct match_walk *w, uint32_t node)
{
    const struct retain_entry *entry = trie_value(w->trie, node);
    if (entry != NULL)
        w->fn(w->ctx, (struct slice){ entry->topic, entry->topic_len }, entry->value);
}

/* Whether a first-level child is hidden from a first-level wildcard (MQTT-4.7.2-1). */
static bool is_dollar_level(const struct trie_node *n)
{
    return n->level_len > 0 && trie_level_bytes(n)[0] == '$';
}

/* Reports every value in the subtree under `top`, `top` included, without a stack: it goes
 * down through first children and climbs back through parents to the next sibling. */
static void walk_subtree(const struct match_walk *w, uint32_t top)
{
    uint32_t node = top;
    for (;;) {
        entry_report(w, node);
        const struct trie_node *n = trie_node(w->trie, node);
        if (n->first_child != TRIE_NONE) {
            node = n->first_child;
            continue;
        }
        while (node != top && trie_node(w->trie, node)->next_sibling == TRIE_NONE)
            node = trie_node(w->trie, node)->parent;
        if (node == top)
            return;
        node = trie_node(w->trie, node)->next_sibling;
    }
}

/* Walks the filter's levels from `pos` starting at `node`, which matched the levels before.
 * A literal level follows one child; '+' tries every child, recursing once per '+' level, so
 * the depth is bounded by TOPIC_LEVELS_MAX; '#' (always last) reports the whole subtree,
 * `node` included since '#' matches the parent level. At the root, children whose level
 * starts with '$' are skipped for '+' and '#'. Stored names never contain wildcards, so the
 * trie's wildcard children are always absent here.
 */
static void match_from(const struct match_walk *w, uint32_t node, uint32_t pos)
{
    struct slice level;
    while (topic_level_next(w->filter, &pos, &level)) {
        bool is_plus = level.len == 1 && level.ptr[0] == '+';
        bool is_pound = level.len == 1 && level.ptr[0] == '#';
        if (!is_plus && !is_pound) {
            node = trie_child(w->trie, node, level);
            if (node == TRIE_NONE)
                return;
            continue;
        }
        if (is_pound)
            entry_report(w, node);
        for (uint32_t c = trie_node(w->trie, node)->first_child; c != TRIE_NONE;
             c = trie_node(w->trie, c)->next_sibling) {
            if (node == TRIE_ROOT && is_dollar_level(trie_node(w->trie, c)))
                continue;
            if (is_pound)
                walk_subtree(w, c);
            else
                match_from(w, c, pos);
        }
        return;
    }
    entry_report(w, node);
}

void retain_match(const struct retain *r, struct slice filter, retain_walk_fn fn, void *ctx)
{
    ASSERT(r != NULL && fn != NULL);
    ASSERT_HOT(topic_filter_valid(filter));
    struct match_walk w = { .trie = &r->trie, .filter = filter, .fn = fn, .ctx = ctx };
    match_from(&w, TRIE_ROOT, 0);
}

void retain_walk_all(const struct retain *r, retain_walk_fn fn, void *ctx)
{
    ASSERT(r != NULL && fn != NULL);
    for (uint32_t i = 0; i < trie_node_used(&r->trie); i++) {
        const struct retain_entry *entry = trie_value(&r->trie, i);
        if (entry != NULL)
            fn(ctx, (struct slice){ entry->topic, entry->topic_len }, entry->value);
    }
}
