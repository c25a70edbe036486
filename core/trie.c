/* core/trie.c - the topic-level trie behind core/subtree.c and core/retain.c.
 *
 * One shard's thread only. Knows topic levels and the two wildcard levels, nothing about
 * subscribers or retained messages (those are the `value` of a node, owned by the user).
 *
 * The child table uses linear probing over 8-byte slots {node index, hash tag} kept at most
 * half full, with backward-shift deletion, so there are no tombstones and a lookup stops at
 * the first empty slot. The key (parent index, level bytes) is hashed as the level bytes with
 * the parent index as the seed; a hit is confirmed against the full hash (its high half is the
 * slot's tag, its low half is kept in the node), the parent and the level bytes stored in the
 * node. Rejected alternatives: a hash table per node (millions of
 * small tables waste memory) and sorted child arrays (O(log n) with shifting on insert).
 */
#include "core/trie.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "core/topic.h"

#define TRIE_NODES_INITIAL 64u
#define TRIE_SLOTS_INITIAL 64u
#define TRIE_SLOTS_MAX (1u << 31)

STATIC_ASSERT((TRIE_SLOTS_INITIAL & (TRIE_SLOTS_INITIAL - 1)) == 0, "slot count power of two");
STATIC_ASSERT(TRIE_NODES_MAX < TRIE_NONE, "TRIE_NONE is never a node index");
STATIC_ASSERT(TRIE_NODES_MAX <= TRIE_SLOTS_MAX / 2, "a full node array fits the table");

static void node_reset(struct trie_node *n, uint32_t parent)
{
    memset(n, 0, sizeof(*n));
    n->parent = parent;
    n->first_child = TRIE_NONE;
    n->next_sibling = TRIE_NONE;
    n->prev_sibling = TRIE_NONE;
    n->plus_child = TRIE_NONE;
    n->pound_child = TRIE_NONE;
}

int trie_init(struct trie *t)
{
    ASSERT(t != NULL);
    memset(t, 0, sizeof(*t));
    t->nodes = malloc(TRIE_NODES_INITIAL * sizeof(*t->nodes));
    if (t->nodes == NULL)
        goto fail_nodes;
    t->slots = malloc(TRIE_SLOTS_INITIAL * sizeof(*t->slots));
    if (t->slots == NULL)
        goto fail_slots;
    for (uint32_t i = 0; i < TRIE_SLOTS_INITIAL; i++)
        t->slots[i].node_idx = TRIE_NONE;
    t->slot_mask = TRIE_SLOTS_INITIAL - 1;
    t->node_cap = TRIE_NODES_INITIAL;
    t->node_used = 1;
    t->node_live = 1;
    t->free_head = TRIE_NONE;
    node_reset(&t->nodes[TRIE_ROOT], TRIE_NONE);
    return 0;
fail_slots:
    free(t->nodes);
fail_nodes:
    return -ENOMEM;
}

int trie_init_tails(struct trie *t)
{
    int rc = trie_init(t);
    if (rc == 0)
        t->has_tails = true;
    return rc;
}

void trie_fini(struct trie *t)
{
    ASSERT(t != NULL);
    for (uint32_t i = 0; i < t->node_used; i++)
        if (trie_level_len(&t->nodes[i]) > TRIE_LEVEL_INLINE_MAX)
            free(t->nodes[i].level.heap);
    free(t->nodes);
    free(t->slots);
    memset(t, 0, sizeof(*t));
}

static bool is_wildcard(struct slice level, uint8_t wildcard)
{
    return level.len == 1 && level.ptr[0] == wildcard;
}

static uint64_t level_hash(uint32_t parent, struct slice level)
{
    return hash_bytes_seeded(level.ptr, level.len, parent);
}

/* A tail matches the key of its first level. */
static bool node_is(const struct trie_node *n, uint64_t hash, uint32_t parent, struct slice level)
{
    if (n->hash_lo != (uint32_t)hash || n->parent != parent)
        return false;
    const uint8_t *bytes = trie_level_bytes(n);
    if (n->level_len == level.len) /* not a tail */
        return memcmp(bytes, level.ptr, level.len) == 0;
    return trie_is_tail(n) && trie_level_len(n) > level.len && bytes[level.len] == '/' &&
           memcmp(bytes, level.ptr, level.len) == 0;
}

/* Looks `level` up under `parent` in the table; `hash` is level_hash(parent, level). */
static uint32_t table_find(const struct trie *t, uint64_t hash, uint32_t parent,
                           struct slice level)
{
    uint32_t tag = (uint32_t)(hash >> 32);
    for (uint32_t i = (uint32_t)hash & t->slot_mask;; i = (i + 1) & t->slot_mask) {
        struct trie_slot slot = t->slots[i];
        if (slot.node_idx == TRIE_NONE)
            return TRIE_NONE;
        if (slot.tag == tag && node_is(&t->nodes[slot.node_idx], hash, parent, level))
            return slot.node_idx;
    }
}

uint32_t trie_child(const struct trie *t, uint32_t parent, struct slice level)
{
    ASSERT_HOT(parent < t->node_used);
    const struct trie_node *p = &t->nodes[parent];
    if (is_wildcard(level, '+'))
        return p->plus_child;
    if (is_wildcard(level, '#'))
        return p->pound_child;
    if (p->first_child == TRIE_NONE)
        return TRIE_NONE; /* leaves are common: skip hashing */
    return table_find(t, level_hash(parent, level), parent, level);
}

/* Places `node_idx` in its first free probe slot. The table must have room. */
static void table_place(struct trie_slot *slots, uint32_t mask, uint64_t hash, uint32_t node_idx)
{
    uint32_t i = (uint32_t)hash & mask;
    while (slots[i].node_idx != TRIE_NONE)
        i = (i + 1) & mask;
    slots[i] = (struct trie_slot){ .node_idx = node_idx, .tag = (uint32_t)(hash >> 32) };
}

/* Doubles the table when one more entry would fill it past one half. */
static int table_reserve(struct trie *t)
{
    uint32_t cap = t->slot_mask + 1;
    if ((t->slot_used + 1) * 2 <= cap)
        return 0;
    if (cap >= TRIE_SLOTS_MAX)
        return -ENOMEM;
    uint32_t new_cap = cap * 2;
    struct trie_slot *slots = malloc((size_t)new_cap * sizeof(*slots));
    if (slots == NULL)
        return -ENOMEM;
    for (uint32_t i = 0; i < new_cap; i++)
        slots[i].node_idx = TRIE_NONE;
    for (uint32_t i = 0; i < cap; i++) {
        uint32_t idx = t->slots[i].node_idx;
        if (idx != TRIE_NONE)
            table_place(slots, new_cap - 1,
                        (uint64_t)t->slots[i].tag << 32 | t->nodes[idx].hash_lo, idx);
    }
    free(t->slots);
    t->slots = slots;
    t->slot_mask = new_cap - 1;
    return 0;
}

/* Removes `node_idx` (present) by backward shift: each later entry of the probe run moves
 * into the hole unless its home slot lies cyclically after the hole, up to its position. */
static void table_remove(struct trie *t, uint32_t node_idx)
{
    uint32_t mask = t->slot_mask;
    uint32_t hole = t->nodes[node_idx].hash_lo & mask;
    while (t->slots[hole].node_idx != node_idx) {
        ASSERT_HOT(t->slots[hole].node_idx != TRIE_NONE);
        hole = (hole + 1) & mask;
    }
    for (uint32_t j = (hole + 1) & mask; t->slots[j].node_idx != TRIE_NONE; j = (j + 1) & mask) {
        uint32_t home = t->nodes[t->slots[j].node_idx].hash_lo & mask;
        bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
        if (stays)
            continue;
        t->slots[hole] = t->slots[j];
        hole = j;
    }
    t->slots[hole].node_idx = TRIE_NONE;
    t->slot_used--;
}

/* Takes a node index from the free list or the end of the array. Returns 0 or -ENOMEM. */
static int node_alloc(struct trie *t, uint32_t *idx)
{
    if (t->free_head != TRIE_NONE) {
        *idx = t->free_head;
        t->free_head = t->nodes[*idx].next_sibling;
        return 0;
    }
    if (t->node_used == t->node_cap) {
        if (t->node_cap >= TRIE_NODES_MAX)
            return -ENOMEM;
        uint32_t new_cap = MIN(t->node_cap * 2, (uint32_t)TRIE_NODES_MAX);
        struct trie_node *nodes = realloc(t->nodes, (size_t)new_cap * sizeof(*nodes));
        if (nodes == NULL)
            return -ENOMEM;
        t->nodes = nodes;
        t->node_cap = new_cap;
    }
    *idx = t->node_used++;
    return 0;
}

static void node_release(struct trie *t, uint32_t idx)
{
    struct trie_node *n = &t->nodes[idx];
    if (trie_level_len(n) > TRIE_LEVEL_INLINE_MAX)
        free(n->level.heap);
    node_reset(n, TRIE_NONE);
    n->next_sibling = t->free_head;
    t->free_head = idx;
}

/* Creates the child `level` of `parent` (absent): a tail holding `bytes` (`level` and the
 * levels after it) when `bytes` is longer than `level`. Returns 0 or -ENOMEM with nothing
 * changed. */
static int child_create(struct trie *t, uint32_t parent, struct slice level, struct slice bytes,
                        uint32_t *child)
{
    bool is_plus = is_wildcard(level, '+');
    bool is_pound = is_wildcard(level, '#');
    if (!is_plus && !is_pound && table_reserve(t) != 0)
        return -ENOMEM;
    uint32_t idx;
    if (node_alloc(t, &idx) != 0)
        return -ENOMEM;
    struct trie_node *n = &t->nodes[idx];
    node_reset(n, parent);
    if (bytes.len > TRIE_LEVEL_INLINE_MAX) {
        n->level.heap = malloc(bytes.len);
        if (n->level.heap == NULL) {
            node_release(t, idx);
            return -ENOMEM;
        }
        memcpy(n->level.heap, bytes.ptr, bytes.len);
    } else if (bytes.len > 0) {
        memcpy(n->level.bytes, bytes.ptr, bytes.len);
    }
    n->level_len = bytes.len | (bytes.len > level.len ? TRIE_TAIL : 0u);
    struct trie_node *p = &t->nodes[parent];
    if (is_plus) {
        p->plus_child = idx;
    } else if (is_pound) {
        p->pound_child = idx;
    } else {
        uint64_t hash = level_hash(parent, level);
        n->hash_lo = (uint32_t)hash;
        table_place(t->slots, t->slot_mask, hash, idx);
        t->slot_used++;
    }
    n->next_sibling = p->first_child;
    if (p->first_child != TRIE_NONE)
        t->nodes[p->first_child].prev_sibling = idx;
    p->first_child = idx;
    t->node_live++;
    *child = idx;
    return 0;
}

/* `path` from `level` (one of its levels) to its end. */
static struct slice path_rest(struct slice path, struct slice level)
{
    uint32_t start = (uint32_t)(level.ptr - path.ptr);
    return (struct slice){ level.ptr, path.len - start };
}

static bool tail_is(const struct trie_node *n, struct slice rest)
{
    return trie_level_len(n) == rest.len && memcmp(trie_level_bytes(n), rest.ptr, rest.len) == 0;
}

uint32_t trie_find(const struct trie *t, struct slice path)
{
    ASSERT_HOT(path.len > 0);
    uint32_t idx = TRIE_ROOT;
    uint32_t pos = 0;
    struct slice level;
    while (idx != TRIE_NONE && topic_level_next(path, &pos, &level)) {
        idx = trie_child(t, idx, level);
        if (idx != TRIE_NONE && trie_is_tail(&t->nodes[idx]))
            return tail_is(&t->nodes[idx], path_rest(path, level)) ? idx : TRIE_NONE;
    }
    return idx;
}

/* Finds the slot of the hashed node `idx`. */
static uint32_t table_slot_of(const struct trie *t, uint32_t idx)
{
    uint32_t i = t->nodes[idx].hash_lo & t->slot_mask;
    while (t->slots[i].node_idx != idx) {
        ASSERT_HOT(t->slots[i].node_idx != TRIE_NONE);
        i = (i + 1) & t->slot_mask;
    }
    return i;
}

/* Node `to` takes the place of `from` under `from`'s parent: same key (the parent's wildcard
 * pointer or the table slot, with from's hash), same place in the sibling list. `to` must be
 * unlinked. */
static void node_replace(struct trie *t, uint32_t from, uint32_t to)
{
    struct trie_node *f = &t->nodes[from];
    struct trie_node *n = &t->nodes[to];
    struct trie_node *p = &t->nodes[f->parent];
    n->parent = f->parent;
    n->hash_lo = f->hash_lo;
    if (p->plus_child == from)
        p->plus_child = to;
    else if (p->pound_child == from)
        p->pound_child = to;
    else
        t->slots[table_slot_of(t, from)].node_idx = to;
    n->prev_sibling = f->prev_sibling;
    n->next_sibling = f->next_sibling;
    if (f->prev_sibling != TRIE_NONE)
        t->nodes[f->prev_sibling].next_sibling = to;
    else
        p->first_child = to;
    if (f->next_sibling != TRIE_NONE)
        t->nodes[f->next_sibling].prev_sibling = to;
    f->prev_sibling = TRIE_NONE;
    f->next_sibling = TRIE_NONE;
}

/* Stores `bytes` as the level of `n`, whose own storage (if on the heap) is `old_heap`, freed
 * after the copy (`bytes` may point into it or into the node). `heap` is a buffer of
 * bytes.len bytes when that is over TRIE_LEVEL_INLINE_MAX, else NULL. */
static void level_set(struct trie_node *n, struct slice bytes, uint8_t *heap, uint8_t *old_heap,
                      bool is_tail)
{
    if (heap != NULL) {
        memcpy(heap, bytes.ptr, bytes.len);
        n->level.heap = heap;
    } else {
        memmove(n->level.bytes, bytes.ptr, bytes.len);
    }
    free(old_heap);
    n->level_len = bytes.len | (is_tail ? TRIE_TAIL : 0u);
}

/* A heap buffer for a level of `len` bytes, or NULL (*failed set) when inline or out of
 * memory. */
static uint8_t *level_heap(uint32_t len, bool *failed)
{
    if (len <= TRIE_LEVEL_INLINE_MAX)
        return NULL;
    uint8_t *heap = malloc(len);
    *failed |= heap == NULL;
    return heap;
}

/* Splits the tail `idx` after its first level: a new plain node for that level takes its
 * place, and `idx` (keeping its value) becomes that node's child holding the other levels.
 * Returns 0 and the new node in *head, or -ENOMEM with nothing changed. */
static int tail_split(struct trie *t, uint32_t idx, uint32_t *head)
{
    const struct trie_node *tn = &t->nodes[idx];
    uint32_t len = trie_level_len(tn);
    const uint8_t *slash = memchr(trie_level_bytes(tn), '/', len);
    ASSERT(slash != NULL);
    uint32_t first_len = (uint32_t)(slash - trie_level_bytes(tn));
    uint32_t rest_len = len - first_len - 1;
    if (table_reserve(t) != 0) /* the rest's first level may be a literal */
        return -ENOMEM;
    uint32_t h;
    if (node_alloc(t, &h) != 0)
        return -ENOMEM;
    bool failed = false;
    uint8_t *head_heap = level_heap(first_len, &failed);
    uint8_t *rest_heap = level_heap(rest_len, &failed);
    if (failed) {
        free(head_heap);
        free(rest_heap);
        node_reset(&t->nodes[h], TRIE_NONE);
        node_release(t, h);
        return -ENOMEM;
    }
    struct trie_node *n = &t->nodes[h]; /* both pointers after node_alloc moved the array */
    struct trie_node *tail = &t->nodes[idx];
    node_reset(n, TRIE_NONE);
    node_replace(t, idx, h);
    const uint8_t *bytes = trie_level_bytes(tail);
    uint8_t *old_heap = len > TRIE_LEVEL_INLINE_MAX ? tail->level.heap : NULL;
    level_set(n, (struct slice){ bytes, first_len }, head_heap, NULL, false);
    struct slice rest = { bytes + first_len + 1, rest_len };
    const uint8_t *rest_slash = memchr(rest.ptr, '/', rest.len);
    struct slice key = { rest.ptr, rest_slash != NULL ? (uint32_t)(rest_slash - rest.ptr)
                                                      : rest.len };
    bool is_plus = is_wildcard(key, '+');
    bool is_pound = is_wildcard(key, '#');
    uint64_t hash = is_plus || is_pound ? 0 : level_hash(h, key);
    level_set(tail, rest, rest_heap, old_heap, rest_slash != NULL); /* `rest` read first */
    tail->parent = h;
    n->first_child = idx;
    if (is_plus) {
        n->plus_child = idx;
    } else if (is_pound) {
        n->pound_child = idx;
    } else {
        tail->hash_lo = (uint32_t)hash;
        table_place(t->slots, t->slot_mask, hash, idx);
        t->slot_used++;
    }
    t->node_live++;
    *head = h;
    return 0;
}

int trie_insert(struct trie *t, struct slice path, uint32_t *node)
{
    ASSERT(node != NULL);
    ASSERT_HOT(path.len > 0);
    uint32_t idx = TRIE_ROOT;
    uint32_t pos = 0;
    struct slice level;
    while (topic_level_next(path, &pos, &level)) {
        struct slice rest = path_rest(path, level);
        uint32_t child = trie_child(t, idx, level);
        while (child != TRIE_NONE && trie_is_tail(&t->nodes[child])) {
            if (tail_is(&t->nodes[child], rest)) {
                *node = child;
                return 0;
            }
            if (tail_split(t, child, &child) != 0)
                goto fail;
        }
        if (child == TRIE_NONE) {
            /* A new path's last levels are one tail (no other path shares them yet). */
            struct slice bytes = t->has_tails ? rest : level;
            if (child_create(t, idx, level, bytes, &child) != 0)
                goto fail;
            if (bytes.len > level.len) {
                *node = child;
                return 0;
            }
        }
        idx = child;
    }
    *node = idx;
    return 0;
fail:
    trie_prune(t, idx); /* undo the nodes this call created, if any */
    return -ENOMEM;
}

/* Unlinks the empty node `idx` from its parent and frees it. */
static void node_unlink(struct trie *t, uint32_t idx)
{
    struct trie_node *n = &t->nodes[idx];
    struct trie_node *p = &t->nodes[n->parent];
    ASSERT_HOT(n->value == NULL && n->first_child == TRIE_NONE);
    if (p->plus_child == idx)
        p->plus_child = TRIE_NONE;
    else if (p->pound_child == idx)
        p->pound_child = TRIE_NONE;
    else
        table_remove(t, idx);
    if (n->prev_sibling != TRIE_NONE)
        t->nodes[n->prev_sibling].next_sibling = n->next_sibling;
    else
        p->first_child = n->next_sibling;
    if (n->next_sibling != TRIE_NONE)
        t->nodes[n->next_sibling].prev_sibling = n->prev_sibling;
    t->node_live--;
    node_release(t, idx);
}

/* Joins `idx` (no value, one child without children) and its child into one tail in its
 * place, keeping the child's index. Returns false (nothing changed) when it cannot. */
static bool tail_join(struct trie *t, uint32_t idx)
{
    const struct trie_node *n = &t->nodes[idx];
    uint32_t c = n->first_child;
    if (idx == TRIE_ROOT || n->value != NULL || c == TRIE_NONE)
        return false;
    const struct trie_node *child = &t->nodes[c];
    if (child->next_sibling != TRIE_NONE || child->first_child != TRIE_NONE)
        return false;
    uint32_t head_len = trie_level_len(n);
    uint32_t child_len = trie_level_len(child);
    uint32_t len = head_len + 1 + child_len;
    uint8_t joined[TRIE_LEVEL_INLINE_MAX];
    bool failed = false;
    uint8_t *heap = level_heap(len, &failed);
    if (failed)
        return false;
    uint8_t *out = heap != NULL ? heap : joined;
    memcpy(out, trie_level_bytes(n), head_len);
    out[head_len] = '/';
    memcpy(out + head_len + 1, trie_level_bytes(child), child_len);
    if (n->plus_child != c && n->pound_child != c)
        table_remove(t, c);
    struct trie_node *cn = &t->nodes[c];
    uint8_t *old_heap = child_len > TRIE_LEVEL_INLINE_MAX ? cn->level.heap : NULL;
    /* level_set copies from `joined` into the node; a heap buffer already holds the bytes. */
    if (heap != NULL) {
        free(old_heap);
        cn->level.heap = heap;
        cn->level_len = len | TRIE_TAIL;
    } else {
        level_set(cn, (struct slice){ joined, len }, NULL, old_heap, true);
    }
    node_replace(t, idx, c);
    struct trie_node *hn = &t->nodes[idx];
    hn->first_child = TRIE_NONE;
    hn->plus_child = TRIE_NONE;
    hn->pound_child = TRIE_NONE;
    t->node_live--;
    node_release(t, idx);
    return true;
}

void trie_prune(struct trie *t, uint32_t node)
{
    ASSERT(node < t->node_used);
    while (node != TRIE_ROOT) {
        const struct trie_node *n = &t->nodes[node];
        if (n->value != NULL || n->first_child != TRIE_NONE)
            break;
        uint32_t parent = n->parent;
        node_unlink(t, node);
        node = parent;
    }
    while (t->has_tails && node != TRIE_ROOT) {
        uint32_t parent = t->nodes[node].parent;
        if (!tail_join(t, node))
            return;
        node = parent;
    }
}
