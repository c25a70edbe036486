/* core/subtree.c - one shard's subscription tree over the topic-level trie (core/trie.h).
 *
 * Owned by one shard; only that shard's thread calls it. Stores who subscribed to which
 * filter and answers "who wants this topic"; it does not know about sessions, shared-group
 * selection or delivery, and it does not validate peer input (the caller already did).
 *
 * Each trie node that ends a filter holds a compact growable array of {owner, options,
 * sub_id}; matching walks these arrays and nothing else. To find one owner in an array (add,
 * replace, remove), small arrays are scanned, which is fastest for the usual handful of
 * subscribers per filter. Once an array outgrows SUBTREE_SCAN_MAX it is indexed for good (until
 * it empties): one open-addressing table per tree maps (node, owner) to the owner's position,
 * so a filter with a million subscribers still adds and removes in O(1) instead of O(n).
 * The array is unordered: removal moves the last entry into the hole and updates its index.
 *
 * A filter's mark (subtree_mark_set) is one more entry of the same array, kept first
 * (`has_mark`): an owner's entry is never at position 0 of a marked array, so removing an owner
 * never moves the mark, and subtree_match starts after it. Removing the mark moves the last
 * entry into position 0 like any removal. The mark is in the owner index like the others.
 * A filter with its mark and no subscriber (a wildcard filter held by offline sessions only,
 * whose subscriptions left the tree: core/session.c) has no array: the node's value is the
 * mark's pointer with its low bit set (MARK_ONLY), which saves an array per such filter.
 */
#include "core/subtree.h"

#include <errno.h>
#include <stdlib.h>

#include "core/hash.h"
#include "core/topic.h"
#include "core/trie.h"

#define SUBTREE_LIST_INITIAL 1u /* most filters have one subscriber (and a mark, see below) */
#define SUBTREE_SCAN_MAX 16u /* arrays up to this many subscribers are scanned, not indexed */
#define SUBTREE_OWNER_SLOTS_INITIAL 64u
#define SUBTREE_OWNER_SLOTS_MAX (1u << 31)
#define SUBTREE_LIST_MAX (UINT32_MAX / 2) /* subscribers per filter; add fails -ENOMEM past it */
/* A '+' branch and a literal branch may both be pending at each topic level, plus the root. */
#define SUBTREE_STACK_MAX (TOPIC_LEVELS_MAX + 2u)

#define MARK_ONLY ((uintptr_t)1) /* in a node's value: the mark alone (pointers are aligned) */

static inline bool is_mark_only(const void *value)
{
    return ((uintptr_t)value & MARK_ONLY) != 0;
}

static inline void *mark_of(const void *value)
{
    return (void *)((uintptr_t)value & ~MARK_ONLY);
}

static inline void *mark_only(void *mark)
{
    return (void *)((uintptr_t)mark | MARK_ONLY);
}

struct subtree_sub {
    void *owner;
    uint32_t sub_id;
    uint8_t options;
};

STATIC_ASSERT(SUBTREE_SCAN_MAX >= SUBTREE_LIST_INITIAL, "new arrays start scanned");
STATIC_ASSERT((SUBTREE_OWNER_SLOTS_INITIAL & (SUBTREE_OWNER_SLOTS_INITIAL - 1)) == 0,
              "owner slot count is a power of two");

/* A node's subscribers: the trie node's value. */
struct subtree_list {
    uint32_t count;
    uint32_t cap;
    bool is_indexed; /* every entry is in the owner index; set once, kept until freed */
    bool has_mark;   /* subs[0] is the filter's mark, not a subscriber */
    struct subtree_sub subs[];
};

/* One entry of the owner index: subs[pos] of node `node1 - 1`'s array. The owner is read
 * from there (8 bytes a slot, not 16: the index holds one slot per subscriber of a large
 * filter at a load of at most one half, so its size counts per subscription). */
struct owner_slot {
    uint32_t node1; /* node index + 1; 0 when the slot is empty */
    uint32_t pos;
};

struct subtree {
    struct trie trie;
    uint32_t count;
    struct owner_slot *owner_slots; /* NULL until the first array is indexed */
    uint32_t owner_mask;
    uint32_t owner_used;
};

struct subtree *subtree_create(void)
{
    struct subtree *tree = malloc(sizeof(*tree));
    if (tree == NULL)
        goto fail_tree;
    if (trie_init_tails(&tree->trie) != 0)
        goto fail_trie;
    tree->count = 0;
    tree->owner_slots = NULL;
    tree->owner_mask = 0;
    tree->owner_used = 0;
    return tree;
fail_trie:
    free(tree);
fail_tree:
    return NULL;
}

void subtree_destroy(struct subtree *tree)
{
    if (tree == NULL)
        return;
    for (uint32_t i = 0; i < trie_node_used(&tree->trie); i++)
        if (!is_mark_only(trie_value(&tree->trie, i)))
            free(trie_value(&tree->trie, i));
    trie_fini(&tree->trie);
    free(tree->owner_slots);
    free(tree);
}

uint32_t subtree_count(const struct subtree *tree)
{
    ASSERT(tree != NULL);
    return tree->count;
}

/* The owner index: linear probing over a table at most half full, backward-shift deletion
 * (no tombstones), keyed by the owner pointer hashed with the node index as the seed. */

static uint32_t owner_home(const struct subtree *tree, uint32_t node, const void *owner)
{
    return (uint32_t)hash_bytes_seeded(&owner, sizeof(owner), node) & tree->owner_mask;
}

/* The owner of a used slot: every indexed array is consistent with the index whenever the
 * index is probed (callers update the index before they move entries). */
static const void *slot_owner(const struct subtree *tree, const struct owner_slot *slot)
{
    const struct subtree_list *list = trie_value(&tree->trie, slot->node1 - 1);
    ASSERT_HOT(list != NULL && slot->pos < list->count);
    return list->subs[slot->pos].owner;
}

static struct owner_slot *owner_find(const struct subtree *tree, uint32_t node, const void *owner)
{
    ASSERT_HOT(tree->owner_slots != NULL);
    for (uint32_t i = owner_home(tree, node, owner);; i = (i + 1) & tree->owner_mask) {
        struct owner_slot *slot = &tree->owner_slots[i];
        if (slot->node1 == 0)
            return NULL;
        if (slot->node1 == node + 1 && slot_owner(tree, slot) == owner)
            return slot;
    }
}

/* Places an entry known to be absent: `owner` is (or is about to be) subs[pos] of `node`'s
 * array. The table must have room (owner_reserve). */
static void owner_place(struct subtree *tree, uint32_t node, const void *owner, uint32_t pos)
{
    uint32_t i = owner_home(tree, node, owner);
    while (tree->owner_slots[i].node1 != 0)
        i = (i + 1) & tree->owner_mask;
    tree->owner_slots[i] = (struct owner_slot){ .node1 = node + 1, .pos = pos };
    tree->owner_used++;
}

/* Makes room for `extra` more entries, keeping the table at most half full. Returns 0 or
 * -ENOMEM with nothing changed. */
static int owner_reserve(struct subtree *tree, uint32_t extra)
{
    uint64_t need = ((uint64_t)tree->owner_used + extra) * 2;
    uint64_t cap = tree->owner_slots != NULL ? (uint64_t)tree->owner_mask + 1 : 0;
    if (need <= cap)
        return 0;
    uint64_t new_cap = cap != 0 ? cap : SUBTREE_OWNER_SLOTS_INITIAL;
    while (new_cap < need)
        new_cap *= 2;
    if (new_cap > SUBTREE_OWNER_SLOTS_MAX)
        return -ENOMEM;
    struct owner_slot *slots = calloc((size_t)new_cap, sizeof(*slots));
    if (slots == NULL)
        return -ENOMEM;
    struct owner_slot *old = tree->owner_slots;
    tree->owner_slots = slots;
    tree->owner_mask = (uint32_t)(new_cap - 1);
    tree->owner_used = 0;
    for (uint64_t i = 0; i < cap; i++)
        if (old[i].node1 != 0)
            owner_place(tree, old[i].node1 - 1, slot_owner(tree, &old[i]), old[i].pos);
    free(old);
    return 0;
}

static void owner_remove(struct subtree *tree, struct owner_slot *slot)
{
    uint32_t mask = tree->owner_mask;
    uint32_t hole = (uint32_t)(slot - tree->owner_slots);
    for (uint32_t j = (hole + 1) & mask; tree->owner_slots[j].node1 != 0; j = (j + 1) & mask) {
        const struct owner_slot *next = &tree->owner_slots[j];
        uint32_t home = owner_home(tree, next->node1 - 1, slot_owner(tree, next));
        bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
        if (stays)
            continue;
        tree->owner_slots[hole] = *next;
        hole = j;
    }
    tree->owner_slots[hole].node1 = 0;
    tree->owner_used--;
}

/* Returns the position of `owner` in `node`'s array, or UINT32_MAX. */
static uint32_t list_find(const struct subtree *tree, uint32_t node,
                          const struct subtree_list *list, const void *owner)
{
    if (list == NULL || is_mark_only(list))
        return UINT32_MAX;
    if (list->is_indexed) {
        const struct owner_slot *slot = owner_find(tree, node, owner);
        return slot != NULL ? slot->pos : UINT32_MAX;
    }
    for (uint32_t i = 0; i < list->count; i++)
        if (list->subs[i].owner == owner)
            return i;
    return UINT32_MAX;
}

/* Returns `list` (may be NULL) with room for one more subscriber, or NULL when out of memory
 * (then `list` is unchanged). */
static struct subtree_list *list_reserve(struct subtree_list *list)
{
    uint32_t count = list != NULL ? list->count : 0;
    uint32_t cap = list != NULL ? list->cap : 0;
    if (count < cap)
        return list;
    if (cap >= SUBTREE_LIST_MAX)
        return NULL;
    uint32_t new_cap = cap == 0 ? SUBTREE_LIST_INITIAL : cap * 2;
    struct subtree_list *grown =
        realloc(list, sizeof(*grown) + (size_t)new_cap * sizeof(grown->subs[0]));
    if (grown == NULL)
        return NULL;
    if (list == NULL) {
        grown->is_indexed = false;
        grown->has_mark = false;
    }
    grown->count = count;
    grown->cap = new_cap;
    return grown;
}

/* Appends a new subscriber to `node`'s array, indexing the array first if it is about to
 * outgrow scanning. Returns 0, or -ENOMEM with the tree unchanged except for spare room. */
static int list_append(struct subtree *tree, uint32_t node, const struct subtree_sub *sub)
{
    struct trie_node *n = trie_node(&tree->trie, node);
    if (is_mark_only(n->value)) { /* the mark goes into an array first */
        struct subtree_list *marked = list_reserve(NULL);
        if (marked == NULL)
            return -ENOMEM;
        marked->subs[0] = (struct subtree_sub){ .owner = mark_of(n->value) };
        marked->count = 1;
        marked->has_mark = true;
        n->value = marked;
    }
    struct subtree_list *list = n->value;
    uint32_t count = list != NULL ? list->count : 0;
    bool must_index = list != NULL && !list->is_indexed && count >= SUBTREE_SCAN_MAX;
    bool is_indexed = must_index || (list != NULL && list->is_indexed);
    if (is_indexed && owner_reserve(tree, must_index ? count + 1 : 1) != 0)
        return -ENOMEM;
    list = list_reserve(list);
    if (list == NULL)
        return -ENOMEM;
    n->value = list;
    if (must_index) {
        for (uint32_t i = 0; i < count; i++)
            owner_place(tree, node, list->subs[i].owner, i);
        list->is_indexed = true;
    }
    if (list->is_indexed)
        owner_place(tree, node, sub->owner, count);
    list->subs[count] = *sub;
    list->count = count + 1;
    return 0;
}

int subtree_add(struct subtree *tree, struct slice filter, void *owner, uint8_t options,
                uint32_t sub_id)
{
    ASSERT(tree != NULL && owner != NULL);
    ASSERT_HOT(topic_filter_valid(filter));
    uint32_t node;
    if (trie_insert(&tree->trie, filter, &node) != 0)
        return -ENOMEM;
    struct subtree_list *list = trie_value(&tree->trie, node);
    uint32_t found = list_find(tree, node, list, owner);
    if (found != UINT32_MAX) {
        list->subs[found].options = options;
        list->subs[found].sub_id = sub_id;
        return 0;
    }
    struct subtree_sub sub = { .owner = owner, .sub_id = sub_id, .options = options };
    if (list_append(tree, node, &sub) != 0) {
        trie_prune(&tree->trie, node); /* frees the path if this call created it */
        return -ENOMEM;
    }
    tree->count++;
    ASSERT(tree->count != 0);
    return 1;
}

/* Gives memory back once the array is at most a quarter full. A failed shrink keeps the
 * larger array, which is still correct. */
static struct subtree_list *list_shrink(struct subtree_list *list)
{
    if (list->cap <= SUBTREE_LIST_INITIAL * 2 || list->count > list->cap / 4)
        return list;
    uint32_t new_cap = list->cap / 2;
    struct subtree_list *shrunk =
        realloc(list, sizeof(*shrunk) + (size_t)new_cap * sizeof(shrunk->subs[0]));
    if (shrunk == NULL)
        return list;
    shrunk->cap = new_cap;
    return shrunk;
}

/* Removes the entry at `found` of `node`'s array by moving the last entry into its place.
 * Frees the array and prunes the path when it empties. */
static void list_remove_at(struct subtree *tree, uint32_t node, uint32_t found)
{
    struct trie_node *n = trie_node(&tree->trie, node);
    struct subtree_list *list = n->value;
    uint32_t last = list->count - 1;
    if (list->is_indexed) {
        owner_remove(tree, owner_find(tree, node, list->subs[found].owner));
        if (found != last)
            owner_find(tree, node, list->subs[last].owner)->pos = found;
    }
    list->subs[found] = list->subs[last];
    list->count = last;
    if (list->count == 1 && list->has_mark) { /* the mark alone: no array (MARK_ONLY) */
        void *mark = list->subs[0].owner;
        if (list->is_indexed)
            owner_remove(tree, owner_find(tree, node, mark));
        free(list);
        n->value = mark_only(mark);
        return;
    }
    if (list->count > 0) {
        n->value = list_shrink(list);
        return;
    }
    free(list);
    n->value = NULL;
    trie_prune(&tree->trie, node);
}

int subtree_remove(struct subtree *tree, struct slice filter, void *owner)
{
    ASSERT(tree != NULL);
    ASSERT_HOT(topic_filter_valid(filter));
    uint32_t node = trie_find(&tree->trie, filter);
    if (node == TRIE_NONE)
        return -ENOENT;
    uint32_t found = list_find(tree, node, trie_value(&tree->trie, node), owner);
    if (found == UINT32_MAX)
        return -ENOENT;
    ASSERT(tree->count > 0);
    tree->count--;
    list_remove_at(tree, node, found);
    return 0;
}

int subtree_mark_set(struct subtree *tree, struct slice filter, void *mark)
{
    ASSERT(tree != NULL && mark != NULL && !is_mark_only(mark));
    ASSERT_HOT(topic_filter_valid(filter));
    uint32_t node;
    if (trie_insert(&tree->trie, filter, &node) != 0)
        return -ENOMEM;
    struct subtree_list *list = trie_value(&tree->trie, node);
    if (list == NULL || is_mark_only(list)) {
        trie_node(&tree->trie, node)->value = mark_only(mark);
        return 0;
    }
    if (list->has_mark) {
        if (list->is_indexed) {
            owner_remove(tree, owner_find(tree, node, list->subs[0].owner));
            owner_place(tree, node, mark, 0); /* the removal left a free slot */
        }
        list->subs[0].owner = mark;
        return 0;
    }
    struct subtree_sub sub = { .owner = mark, .sub_id = 0, .options = 0 };
    if (list_append(tree, node, &sub) != 0) {
        trie_prune(&tree->trie, node); /* frees the path if this call created it */
        return -ENOMEM;
    }
    list = trie_value(&tree->trie, node);
    uint32_t last = list->count - 1;
    if (last != 0) {
        struct subtree_sub first = list->subs[0];
        if (list->is_indexed) { /* both found before the array changes */
            struct owner_slot *to_first = owner_find(tree, node, mark);
            struct owner_slot *to_last = owner_find(tree, node, first.owner);
            to_first->pos = 0;
            to_last->pos = last;
        }
        list->subs[0] = list->subs[last];
        list->subs[last] = first;
    }
    list->has_mark = true;
    return 0;
}

int subtree_mark_clear(struct subtree *tree, struct slice filter)
{
    ASSERT(tree != NULL);
    ASSERT_HOT(topic_filter_valid(filter));
    uint32_t node = trie_find(&tree->trie, filter);
    if (node == TRIE_NONE)
        return -ENOENT;
    struct subtree_list *list = trie_value(&tree->trie, node);
    if (list != NULL && is_mark_only(list)) {
        trie_node(&tree->trie, node)->value = NULL;
        trie_prune(&tree->trie, node);
        return 0;
    }
    if (list == NULL || !list->has_mark)
        return -ENOENT;
    list->has_mark = false;
    list_remove_at(tree, node, 0);
    return 0;
}

void subtree_marks_clear(struct subtree *tree)
{
    ASSERT(tree != NULL);
    for (uint32_t i = 0; i < trie_node_used(&tree->trie); i++) {
        struct subtree_list *list = trie_value(&tree->trie, i);
        if (list != NULL && is_mark_only(list)) {
            trie_node(&tree->trie, i)->value = NULL;
            trie_prune(&tree->trie, i); /* may free or join nodes: values keep their index */
        } else if (list != NULL && list->has_mark) {
            list->has_mark = false;
            list_remove_at(tree, i, 0); /* may free nodes: their values read NULL */
        }
    }
}

/* Reports the subscribers of `list` (NULL = none), or with `marks` only its mark. Inlined with
 * `marks` constant, so subtree_match pays one byte read (where its subscribers start). */
static inline __attribute__((always_inline)) void
list_report(const struct subtree_list *list, subtree_match_fn fn, void *ctx, bool marks)
{
    if (list == NULL)
        return;
    if (is_mark_only(list)) {
        if (marks)
            fn(ctx, mark_of(list), 0, 0);
        return;
    }
    if (marks) {
        if (list->has_mark)
            fn(ctx, list->subs[0].owner, 0, 0);
        return;
    }
    for (uint32_t i = list->has_mark; i < list->count; i++)
        fn(ctx, list->subs[i].owner, list->subs[i].options, list->subs[i].sub_id);
}

struct match_frame {
    uint32_t node; /* a node whose filter prefix matched the topic up to `pos` */
    uint32_t pos;  /* where the next topic level starts; past the end when none is left */
};

/* Depth-first over the branches the topic can take, with an explicit bounded stack instead
 * of recursion. At a node with topic levels left, the '#' child matches right away, and the
 * '+' child and the literal child for the next level are pushed. At a node with no level
 * left, the node itself matches and so does its '#' child, because '#' also matches the
 * parent level. At the root of a topic starting with '$', the '+' and '#' children are
 * skipped (MQTT-4.7.2-1). Each pop pushes at most two frames one level deeper, so at most one
 * frame per level waits beside the one being walked: the stack never exceeds levels + 1.
 */
static inline __attribute__((always_inline)) void
match_walk(const struct subtree *tree, struct slice topic, subtree_match_fn fn, void *ctx,
           bool marks)
{
    ASSERT(tree != NULL && fn != NULL);
    ASSERT_HOT(topic_name_valid(topic));
    const struct trie *t = &tree->trie;
    bool is_dollar = topic.len > 0 && topic.ptr[0] == '$';
    struct match_frame stack[SUBTREE_STACK_MAX];
    uint32_t depth = 0;
    stack[depth++] = (struct match_frame){ .node = TRIE_ROOT, .pos = 0 };
    while (depth > 0) {
        struct match_frame frame = stack[--depth];
        const struct trie_node *n = trie_node(t, frame.node);
        bool is_wild_allowed = !(is_dollar && frame.node == TRIE_ROOT);
        struct slice level;
        uint32_t pos = frame.pos;
        if (!topic_level_next(topic, &pos, &level)) {
            list_report(n->value, fn, ctx, marks);
            if (n->pound_child != TRIE_NONE)
                list_report(trie_value(t, n->pound_child), fn, ctx, marks);
            continue;
        }
        if (n->pound_child != TRIE_NONE && is_wild_allowed)
            list_report(trie_value(t, n->pound_child), fn, ctx, marks);
        if (n->first_child == TRIE_NONE)
            continue;
        uint32_t children[2] = { is_wild_allowed ? n->plus_child : TRIE_NONE,
                                 trie_child(t, frame.node, level) };
        for (uint32_t i = 0; i < 2; i++) {
            if (children[i] == TRIE_NONE)
                continue;
            const struct trie_node *c = trie_node(t, children[i]);
            if (trie_is_tail(c)) { /* its last levels at once (core/trie.h) */
                uint32_t start = (uint32_t)(level.ptr - topic.ptr);
                /* No '$' rule here: it applies at the root only, where match_walk skips
                 * the wildcard children of a '$' topic, and a tail never starts with '#'. */
                if (topic_match_levels((struct slice){ trie_level_bytes(c),
                                                       trie_level_len(c) },
                                       (struct slice){ level.ptr, topic.len - start }))
                    list_report(c->value, fn, ctx, marks);
                continue;
            }
            ASSERT(depth < SUBTREE_STACK_MAX);
            stack[depth++] = (struct match_frame){ .node = children[i], .pos = pos };
        }
    }
}

void subtree_match(const struct subtree *tree, struct slice topic, subtree_match_fn fn,
                   void *ctx)
{
    match_walk(tree, topic, fn, ctx, false);
}

void subtree_match_marks(const struct subtree *tree, struct slice topic, subtree_match_fn fn,
                         void *ctx)
{
    match_walk(tree, topic, fn, ctx, true);
}
