/* core/subtree.h - one shard's subscription tree: filters -> subscribers, and matching a topic.
 *
 * Owned by one shard; only that shard's thread calls it. Subscribers are opaque `owner`
 * pointers (a struct session * in the broker) with the subscription's options byte and v5
 * subscription identifier (0 = none). A trie of levels; children are found through one hash
 * table per tree keyed by (parent node, level), so a match costs O(levels of the topic) plus
 * the '+' and '#' branches, and allocates nothing. Empty nodes are freed on removal.
 */
#ifndef KEELMQ_CORE_SUBTREE_H
#define KEELMQ_CORE_SUBTREE_H

#include "core/base.h"

struct subtree;

/* Returns a new empty tree, or NULL when out of memory. Caller owns it. */
struct subtree *subtree_create(void);
void subtree_destroy(struct subtree *tree);

/* Adds `owner`'s subscription to `filter` (valid, non-shared), or replaces its options and
 * identifier if it already has one. Returns 1 when added, 0 when replaced, -ENOMEM. */
int subtree_add(struct subtree *tree, struct slice filter, void *owner, uint8_t options,
                uint32_t sub_id);

/* Removes `owner`'s subscription to `filter`. Returns 0, or -ENOENT if it had none. */
int subtree_remove(struct subtree *tree, struct slice filter, void *owner);

typedef void (*subtree_match_fn)(void *ctx, void *owner, uint8_t options, uint32_t sub_id);

/* Calls `fn` once per subscription whose filter matches `topic` (a valid name), with the '$'
 * rule applied. An owner with several matching filters is reported once per filter; the
 * caller merges (overlapping subscriptions). The callback must not modify the tree. */
void subtree_match(const struct subtree *tree, struct slice topic, subtree_match_fn fn,
                   void *ctx);

/* Marks: at most one opaque non-NULL pointer per filter beside its subscribers (the persist
 * registry's wildcard filters, core/persist.h), so that a filter held both ways has one path
 * of nodes. A mark is not a subscription: subtree_match and subtree_count ignore it.
 * A mark is an aligned pointer (its low bit is free: a filter with a mark and no subscriber
 * keeps it in the node without an array, core/subtree.c).
 * subtree_mark_set sets or replaces `filter`'s mark (0 or -ENOMEM with nothing changed);
 * subtree_mark_clear removes it (0, or -ENOENT if it had none). */
int subtree_mark_set(struct subtree *tree, struct slice filter, void *mark);
int subtree_mark_clear(struct subtree *tree, struct slice filter);
/* Removes every mark. */
void subtree_marks_clear(struct subtree *tree);

/* Calls `fn` (options and identifier 0) once per mark whose filter matches `topic`, with the
 * '$' rule applied. The callback must not modify the tree. */
void subtree_match_marks(const struct subtree *tree, struct slice topic, subtree_match_fn fn,
                         void *ctx);

/* Number of subscriptions held. */
uint32_t subtree_count(const struct subtree *tree);

#endif
