/* tests/unit/test_trie.c - the topic-level trie under subtree and retain: lookup, growth of the
 * child table, and that pruning gives every node back. */
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "core/trie.h"

static struct trie trie;

static void trie_setup(void)
{
    cr_assert_eq(trie_init(&trie), 0);
}

static void trie_teardown(void)
{
    trie_fini(&trie);
}

TestSuite(trie, .init = trie_setup, .fini = trie_teardown);

static struct slice s(const char *text)
{
    return slice_from_cstr(text);
}

#define MARK ((void *)(uintptr_t)1)

/* Inserts `path`, marks its node as used and returns it. */
static uint32_t insert_marked(const char *path)
{
    uint32_t node = TRIE_NONE;
    cr_assert_eq(trie_insert(&trie, s(path), &node), 0);
    cr_assert_neq(node, TRIE_NONE);
    trie_node(&trie, node)->value = MARK;
    return node;
}

static void clear_and_prune(const char *path)
{
    uint32_t node = trie_find(&trie, s(path));
    cr_assert_neq(node, TRIE_NONE, "%s", path);
    trie_node(&trie, node)->value = NULL;
    trie_prune(&trie, node);
}

/* Children of `node`, counted on its sibling list. */
static uint32_t child_count(uint32_t node)
{
    uint32_t count = 0;
    for (uint32_t c = trie_node(&trie, node)->first_child; c != TRIE_NONE;
         c = trie_node(&trie, c)->next_sibling)
        count++;
    return count;
}

Test(trie, empty_trie_holds_only_the_root)
{
    cr_expect_eq(trie_node_count(&trie), 1);
    cr_expect_eq(trie_find(&trie, s("a")), TRIE_NONE);
}

Test(trie, insert_creates_one_node_per_level_and_find_returns_it)
{
    uint32_t node = insert_marked("a/b/c");
    cr_expect_eq(trie_node_count(&trie), 4);
    cr_expect_eq(trie_find(&trie, s("a/b/c")), node);
    cr_expect_neq(trie_find(&trie, s("a/b")), TRIE_NONE);
    cr_expect_eq(trie_find(&trie, s("a/b/c/d")), TRIE_NONE);
    cr_expect_eq(insert_marked("a/b/c"), node, "inserting again finds the same node");
    cr_expect_eq(trie_node_count(&trie), 4);
}

Test(trie, wildcard_children_live_in_the_parent)
{
    uint32_t plus = insert_marked("a/+");
    uint32_t pound = insert_marked("a/#");
    uint32_t a = trie_find(&trie, s("a"));
    cr_expect_eq(trie_node(&trie, a)->plus_child, plus);
    cr_expect_eq(trie_node(&trie, a)->pound_child, pound);
    cr_expect_eq(child_count(a), 2);
    clear_and_prune("a/+");
    cr_expect_eq(trie_node(&trie, a)->plus_child, TRIE_NONE);
}

Test(trie, prune_frees_empty_ancestors_but_keeps_used_ones)
{
    insert_marked("a/b");
    insert_marked("a/b/c/d");
    cr_expect_eq(trie_node_count(&trie), 5);
    clear_and_prune("a/b/c/d");
    cr_expect_eq(trie_node_count(&trie), 3, "a/b still has a value");
    clear_and_prune("a/b");
    cr_expect_eq(trie_node_count(&trie), 1);
}

Test(trie, empty_and_long_levels_are_keys_like_any_other)
{
    uint32_t empty = insert_marked("a//b");
    uint32_t plain = insert_marked("a/b");
    uint32_t longer = insert_marked("a/a-level-longer-than-the-inline-bytes");
    cr_expect_neq(empty, plain);
    cr_expect_eq(trie_find(&trie, s("a//b")), empty);
    cr_expect_eq(trie_find(&trie, s("a/a-level-longer-than-the-inline-bytes")), longer);
    cr_expect_eq(trie_find(&trie, s("a/a-level-longer-than-the-inline-byteS")), TRIE_NONE);
}

Test(trie, many_siblings_grow_the_table_and_all_come_back)
{
    char path[32];
    for (int round = 0; round < 2; round++) {
        for (uint32_t i = 0; i < 50000; i++) {
            snprintf(path, sizeof(path), "%u/%u", i % 3, i);
            insert_marked(path);
        }
        cr_assert_eq(trie_node_count(&trie), 1 + 3 + 50000);
        for (uint32_t i = 0; i < 50000; i++) {
            snprintf(path, sizeof(path), "%u/%u", i % 3, i);
            cr_assert_neq(trie_find(&trie, s(path)), TRIE_NONE, "%s", path);
        }
        /* Remove in an order unrelated to insertion to exercise backward-shift deletion;
         * halfway through, every key still present must still be found. */
        static bool is_removed[50000];
        memset(is_removed, 0, sizeof(is_removed));
        for (uint32_t i = 0; i < 50000; i++) {
            uint32_t k = (i * 7919u) % 50000u;
            snprintf(path, sizeof(path), "%u/%u", k % 3, k);
            clear_and_prune(path);
            is_removed[k] = true;
            if (i != 25000)
                continue;
            for (uint32_t j = 0; j < 50000; j++) {
                snprintf(path, sizeof(path), "%u/%u", j % 3, j);
                cr_assert_eq(trie_find(&trie, s(path)) == TRIE_NONE, is_removed[j], "%s", path);
            }
        }
        cr_assert_eq(trie_node_count(&trie), 1);
        cr_assert_eq(trie.slot_used, 0);
    }
}

Test(trie, children_are_enumerable_through_sibling_links)
{
    insert_marked("r/x");
    insert_marked("r/y");
    insert_marked("r/z");
    clear_and_prune("r/y");
    uint32_t r = trie_find(&trie, s("r"));
    uint32_t seen = 0;
    for (uint32_t c = trie_node(&trie, r)->first_child; c != TRIE_NONE;
         c = trie_node(&trie, c)->next_sibling) {
        const struct trie_node *n = trie_node(&trie, c);
        cr_assert_eq(n->level_len, 1);
        seen |= 1u << (trie_level_bytes(n)[0] - 'x');
    }
    cr_expect_eq(seen, 0x5);
    cr_expect_eq(child_count(r), 2);
}

/* A small table under heavy churn: probe runs wrap around the table end and the backward
 * shift must handle holes after the end of the run. Every operation is checked. */
Test(trie, churn_in_a_small_table_keeps_every_key_findable)
{
    enum { KEYS = 400, PRESENT_MAX = 30, OPS = 40000 };
    static bool is_present[KEYS];
    uint32_t present = 0;
    char path[16];
    uint64_t rng = 88172645463325252u;
    for (uint32_t op = 0; op < OPS; op++) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        uint32_t k = (uint32_t)(rng % KEYS);
        snprintf(path, sizeof(path), "k%u", k);
        if (is_present[k]) {
            clear_and_prune(path);
            present--;
        } else if (present < PRESENT_MAX) {
            insert_marked(path);
            present++;
        } else {
            continue;
        }
        is_present[k] = !is_present[k];
        for (uint32_t j = 0; j < KEYS; j++) {
            snprintf(path, sizeof(path), "k%u", j);
            cr_assert_eq(trie_find(&trie, s(path)) != TRIE_NONE, is_present[j], "op %u", op);
        }
    }
    cr_expect_eq(trie.slot_mask + 1, 64, "never grew: at most 30 of 64 slots in use");
}

/* ---- Tails (trie_init_tails, the subscription tree's trie) ---- */

static struct trie tails;

static void tails_setup(void)
{
    cr_assert_eq(trie_init_tails(&tails), 0);
}

static void tails_teardown(void)
{
    trie_fini(&tails);
}

TestSuite(trie_tails, .init = tails_setup, .fini = tails_teardown);

static uint32_t tails_insert(const char *path)
{
    uint32_t node = TRIE_NONE;
    cr_assert_eq(trie_insert(&tails, s(path), &node), 0);
    trie_node(&tails, node)->value = MARK;
    return node;
}

static void tails_clear(uint32_t node)
{
    trie_node(&tails, node)->value = NULL;
    trie_prune(&tails, node);
}

Test(trie_tails, a_new_path_is_one_tail_found_only_whole)
{
    uint32_t node = tails_insert("plant/12345/+/alarm");
    cr_assert_eq(trie_node_count(&tails), 2);
    cr_assert(trie_is_tail(trie_node(&tails, node)));
    cr_assert_eq(trie_find(&tails, s("plant/12345/+/alarm")), node);
    cr_assert_eq(trie_find(&tails, s("plant/12345/+")), TRIE_NONE);
    cr_assert_eq(trie_find(&tails, s("plant")), TRIE_NONE);
    cr_assert_eq(trie_find(&tails, s("plant/12345/+/alarm/x")), TRIE_NONE);
    cr_assert_eq(trie_find(&tails, s("plant/12345/+/alarms")), TRIE_NONE);
    cr_assert_eq(trie_child(&tails, TRIE_ROOT, s("plant")), node);
}

Test(trie_tails, a_diverging_path_splits_and_removal_joins_keeping_indexes)
{
    uint32_t alarm = tails_insert("plant/12345/+/alarm");
    uint32_t temp = tails_insert("plant/12345/temp");
    /* plant, 12345, the tail "+/alarm" (its index kept), the leaf "temp" */
    cr_assert_eq(trie_node_count(&tails), 5);
    cr_assert_eq(trie_find(&tails, s("plant/12345/+/alarm")), alarm);
    cr_assert_eq(trie_find(&tails, s("plant/12345/temp")), temp);
    uint32_t mid = trie_find(&tails, s("plant/12345"));
    cr_assert_neq(mid, TRIE_NONE);
    cr_assert_eq(trie_node(&tails, mid)->plus_child, alarm);
    cr_assert(trie_is_tail(trie_node(&tails, alarm)));
    uint32_t other = tails_insert("plant/7/cmd");
    cr_assert_eq(trie_node_count(&tails), 6);
    tails_clear(temp); /* 12345 has one child left without children: joined */
    cr_assert_eq(trie_node_count(&tails), 4);
    cr_assert_eq(trie_find(&tails, s("plant/12345/+/alarm")), alarm);
    cr_assert_eq(trie_find(&tails, s("plant/7/cmd")), other);
    tails_clear(other); /* and plant then too */
    cr_assert_eq(trie_node_count(&tails), 2);
    cr_assert_eq(trie_find(&tails, s("plant/12345/+/alarm")), alarm);
    tails_clear(alarm);
    cr_assert_eq(trie_node_count(&tails), 1);
}

Test(trie_tails, wildcards_long_and_empty_levels_split_and_join)
{
    static const char *paths[] = {
        "+/x/#", "+/x", "+/y/long-level-name-over-eight", "a//b", "a//", "a/#",
        "long-level-name-over-eight/a/b", "long-level-name-over-eight/a/c", "#", "+",
    };
    uint32_t nodes[ARRAY_LEN(paths)];
    for (uint32_t i = 0; i < ARRAY_LEN(paths); i++) {
        nodes[i] = tails_insert(paths[i]);
        for (uint32_t k = 0; k <= i; k++)
            cr_assert_eq(trie_find(&tails, s(paths[k])), nodes[k], "%s after %s", paths[k],
                         paths[i]);
    }
    for (uint32_t i = 0; i < ARRAY_LEN(paths); i++) {
        tails_clear(nodes[i]);
        for (uint32_t k = i + 1; k < ARRAY_LEN(paths); k++)
            cr_assert_eq(trie_find(&tails, s(paths[k])), nodes[k], "%s after removing %s",
                         paths[k], paths[i]);
    }
    cr_assert_eq(trie_node_count(&tails), 1);
}
