/* core/trie.h - a trie of topic levels, shared by the subscription tree (core/subtree.c) and
 * the retained-message index (core/retain.c).
 *
 * Owned by one shard; only that shard's thread calls it. Not thread-safe, no globals.
 *
 * Nodes live in one growable array and are named by a uint32_t index (stable across growth;
 * pointers into the array are not). Node TRIE_ROOT is the empty root. Each node stores its own
 * level bytes and one opaque `value` owned by the user module (NULL = none). Literal children
 * are found through ONE open-addressing hash table per trie keyed by (parent index, level
 * bytes); the '+' and '#' children are kept in the parent (plus_child, pound_child), so they
 * cost no lookup and their absence costs nothing. Every node is also on its parent's sibling
 * list, so the children of a node can be enumerated (retained-message walks).
 *
 * Invariant: every node other than the root has a value or a child. Users restore it with
 * trie_prune after clearing a value or after a failed insert. Freed nodes go on a free list;
 * the node array and hash table keep their high-water capacity.
 *
 * Tails (a trie made with trie_init_tails; the subscription tree's): a path's last levels that
 * nothing else shares are one node, a *tail*, holding those levels joined by '/' (TRIE_TAIL in
 * level_len) and the path's value; it has no children. It is found like a node of its first
 * level (a literal first level through the table, a '+' as plus_child; never '#'), so a reader
 * that meets one (trie_child, trie_is_tail) must compare the rest of its path against the
 * tail's bytes. trie_insert splits a tail where a new path leaves it; trie_prune joins a
 * node without value to its only child when that child has no children. So a filter of its
 * own under shared levels (`plant/12345/+/alarm` under `plant`) costs one node, not three.
 */
#ifndef KEELMQ_CORE_TRIE_H
#define KEELMQ_CORE_TRIE_H

#include "core/base.h"

#define TRIE_NONE UINT32_MAX /* "no node" */
#define TRIE_ROOT 0u
#define TRIE_LEVEL_INLINE_MAX 8u /* levels up to this many bytes are stored inside the node */
#define TRIE_NODES_MAX (1u << 30) /* node array limit; past it inserts fail -ENOMEM */
#define TRIE_TAIL (1u << 31) /* in level_len: the node is a tail (several levels) */

/* 48 bytes: a node per level of every filter held, so its size is most of what a filter of
 * its own costs (bench/session-memory). */
struct trie_node {
    uint32_t hash_lo; /* low half of the hash of (parent, level), the high half is the table
                       * slot's tag; meaningful for literal children only */
    uint32_t level_len;   /* bytes of the level (TRIE_TAIL: of the tail's levels), maybe
                           * with TRIE_TAIL set: read it with trie_level_len */
    union {
        uint8_t bytes[TRIE_LEVEL_INLINE_MAX];
        uint8_t *heap; /* owned; when level_len > TRIE_LEVEL_INLINE_MAX */
    } level;
    uint32_t parent;
    uint32_t first_child;  /* every child, wildcards included, is on this list; TRIE_NONE for
                            * none */
    uint32_t next_sibling; /* also the free-list link of a freed node */
    uint32_t prev_sibling;
    uint32_t plus_child;  /* the '+' child or TRIE_NONE */
    uint32_t pound_child; /* the '#' child or TRIE_NONE */
    void *value;          /* owned by the user module; NULL in free nodes */
};
STATIC_ASSERT(sizeof(struct trie_node) == 48, "trie node size");

struct trie_slot {
    uint32_t node_idx; /* TRIE_NONE when empty */
    uint32_t tag;      /* high 32 bits of the node's hash: skips most mismatches unread */
};

/* Embedded by value in its user; the fields are read by trie.c and the inline accessors. */
struct trie {
    struct trie_node *nodes;
    uint32_t node_cap;
    uint32_t node_used; /* high-water mark: indexes below it were handed out once */
    uint32_t node_live;
    uint32_t free_head;
    struct trie_slot *slots;
    uint32_t slot_mask; /* slot count - 1, a power of two minus one */
    uint32_t slot_used;
    bool has_tails;     /* trie_init_tails */
};

/* Prepares an empty trie holding only the root. Returns 0 or -ENOMEM. */
int trie_init(struct trie *t);
/* The same, for a trie that keeps tails (see above). */
int trie_init_tails(struct trie *t);
/* Frees the trie's own memory. Values are not touched: release them first (trie_node_used
 * and trie_value let the user walk every index). */
void trie_fini(struct trie *t);

/* Returns the child of `parent` for `level` ("+" and "#" give the wildcard children), or
 * TRIE_NONE. Allocates nothing. The child may be a tail whose first level is `level`. */
uint32_t trie_child(const struct trie *t, uint32_t parent, struct slice level);

/* Returns the node reached from the root by every level of `path` (a tail only when its levels
 * are exactly the rest of `path`), or TRIE_NONE. */
uint32_t trie_find(const struct trie *t, struct slice path);

/* Finds or creates the node for every level of `path` (non-empty, at most TOPIC_LEVELS_MAX
 * levels) and stores its index in *node. New nodes have no value: the caller must give the
 * node a value or call trie_prune on it. Returns 0, or -ENOMEM with nothing changed. */
int trie_insert(struct trie *t, struct slice path, uint32_t *node);

/* Frees `node` and then its ancestors, for as long as they have no value and no child. The
 * root is never freed. With tails, it then joins the first node left, and its ancestors while
 * this goes on, to its only child when the node has no value and the child no children (the
 * child becomes a tail in its place); a join without memory is skipped (still correct). A
 * node holding a value keeps its index through splits and joins. */
void trie_prune(struct trie *t, uint32_t node);

/* Number of nodes in use, the root included (1 for an empty trie). */
static inline uint32_t trie_node_count(const struct trie *t)
{
    return t->node_live;
}

/* Indexes below this may hold values; freed indexes hold NULL. */
static inline uint32_t trie_node_used(const struct trie *t)
{
    return t->node_used;
}

/* Borrows the node at `idx` until the next insert (which may move the array). */
static inline struct trie_node *trie_node(const struct trie *t, uint32_t idx)
{
    ASSERT_HOT(idx < t->node_used);
    return &t->nodes[idx];
}

static inline void *trie_value(const struct trie *t, uint32_t idx)
{
    return trie_node(t, idx)->value;
}

static inline uint32_t trie_level_len(const struct trie_node *n)
{
    return n->level_len & ~TRIE_TAIL;
}

static inline bool trie_is_tail(const struct trie_node *n)
{
    return (n->level_len & TRIE_TAIL) != 0;
}

static inline const uint8_t *trie_level_bytes(const struct trie_node *n)
{
    return trie_level_len(n) > TRIE_LEVEL_INLINE_MAX ? n->level.heap : n->level.bytes;
}

#endif
