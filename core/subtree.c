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
 */
#include "core/subtree.h"

#include <errno.h>
#include <stdlib.h>

#include "core/hash.h"
#include "core/topic.h"
#include "core/trie.h"

#define SUBTREE_LIST_INITIAL 2u
#define SUBTREE_SCAN_MAX 16u /* arrays up to this many subscribers are scanned, not indexed */
#define SUBTREE_OWNER_SLOTS_INITIAL 64u
#define SUBTREE_OWNER_SLOTS_MAX (1u << 31)
#define SUBTREE_LIST_MAX (UINT32_MAX / 2) /* subscribers per filter; add fails -ENOMEM past it */
/* A '+' branch and a literal branch may both be pending at each topic level, plus the root. */
#define SUBTREE_STACK_MAX (TOPIC_LEVELS_MAX + 2u)

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
    struct subtree_sub subs[];
};

/* One entry of the owner index: subs[pos] of node `node`'s array belongs to `owner`. */
struct owner_slot {
    const void *owner; /* NULL when the slot is empty (owners are never NULL) */
    uint32_t node;
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
    if (trie_init(&tree->trie) != 0)
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

static struct owner_slot *owner_find(const struct subtree *tree, uint32_t node, const void *owner)
{
    ASSERT_HOT(tree->owner_slots != NULL);
    for (uint32_t i = owner_home(tree, node, owner);; i = (i + 1) & tree->owner_mask) {
        struct owner_slot *slot = &tree->owner_slots[i];
        if (slot->owner == NULL)
            return NULL;
        if (slot->owner == owner && slot->node == node)
            return slot;
    }
}

/* Places an entry known to be absent. The table must have room (owner_reserve). */
static void owner_place(struct subtree *tree, uint32_t node, const void *owner, uint32_t pos)
{
    uint32_t i = owner_home(tree, node, owner);
    while (tree->owner_slots[i].owner != NULL)
        i = (i + 1) & tree->owner_mask;
    tree->owner_slots[i] = (struct owner_slot){ .owner = owner, .node = node, .pos = pos };
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
        if (old[i].owner != NULL)
            owner_place(tree, old[i].node, old[i].owner, old[i].pos);
    free(old);
    return 0;
}

static void owner_remove(struct subtree *tree, struct owner_slot *slot)
{
    uint32_t mask = tree->owner_mask;
    uint32_t hole = (uint32_t)(slot - tree->owner_slots);
    for (uint32_t j = (hole + 1) & mask; tree->owner_slots[j].owner != NULL; j = (j + 1) & mask) {
        const struct owner_slot *next = &tree->owner_slots[j];
        uint32_t home = owner_home(tree, next->node, next->owner);
        bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
        if (stays)
            continue;
        tree->owner_slots[hole] = *next;
        hole = j;
    }
    tree->owner_slots[hole].owner = NULL;
    tree->owner_used--;
}

/* Returns the position of `owner` in `node`'s array, or UINT32_MAX. */
static uint32_t list_find(const struct subtree *tree, uint32_t node,
                          const struct subtree_list *list, const void *owner)
{
    if (list == NULL)
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
    if (list == NULL)
        grown->is_indexed = false;
    grown->count = count;
    grown->cap = new_cap;
    return grown;
}

/* Appends a new subscriber to `node`'s array, indexing the array first if it is about to
 * outgrow scanning. Returns 0, or -ENOMEM with the tree unchanged except for spare room. */
static int list_append(struct subtree *tree, uint32_t node, const struct subtree_sub *sub)
{
    struct trie_node *n = trie_node(&tree->trie, node);
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

int subtree_remove(struct subtree *tree, struct slice filter, void *owner)
{
    ASSERT(tree != NULL);
    ASSERT_HOT(topic_filter_valid(filter));
    uint32_t node = trie_find(&tree->trie, filter);
    if (node == TRIE_NONE)
        return -ENOENT;
    struct trie_node *n = trie_node(&tree->trie, node);
    struct subtree_list *list = n->value;
    uint32_t found = list_find(tree, node, list, owner);
    if (found == UINT32_MAX)
        return -ENOENT;
    uint32_t last = list->count - 1;
    if (list->is_indexed) {
        owner_remove(tree, owner_find(tree, node, owner));
        if (found != last)
            owner_find(tree, node, list->subs[last].owner)->pos = found;
    }
    list->subs[found] = list->subs[last];
    list->count = last;
    ASSERT(tree->count > 0);
    tree->count--;
    if (list->count > 0) {
        n->value = list_shrink(list);
        return 0;
    }
    free(list);
    n->value = NULL;
    trie_prune(&tree->trie, node);
    return 0;
}

static void list_report(const struct subtree_list *list, subtree_match_fn fn, void *ctx)
{
    if (list == NULL)
        return;
    for (uint32_t i = 0; i < list->count; i++)
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
void subtree_match(const struct subtree *tree, struct slice topic, subtree_match_fn fn,
                   void *ctx)
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
            list_report(n->value, fn, ctx);
            if (n->pound_child != TRIE_NONE)
                list_report(trie_value(t, n->pound_child), fn, ctx);
            continue;
        }
        if (n->pound_child != TRIE_NONE && is_wild_allowed)
            list_report(trie_value(t, n->pound_child), fn, ctx);
        if (n->child_count == 0)
            continue;
        if (n->plus_child != TRIE_NONE && is_wild_allowed) {
            ASSERT(depth < SUBTREE_STACK_MAX);
            stack[depth++] = (struct match_frame){ .node = n->plus_child, .pos = pos };
        }
        uint32_t child = trie_child(t, frame.node, level);
        if (child != TRIE_NONE) {
            ASSERT(depth < SUBTREE_STACK_MAX);
            stack[depth++] = (struct match_frame){ .node = child, .pos = pos };
        }
    }
}
