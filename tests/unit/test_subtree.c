/* tests/unit/test_subtree.c - the per-shard subscription tree: add, replace, remove, match. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "core/subtree.h"
#include "core/topic.h"

static struct subtree *tree;

static void tree_setup(void)
{
    tree = subtree_create();
    cr_assert_not_null(tree);
}

static void tree_teardown(void)
{
    subtree_destroy(tree);
    tree = NULL;
}

TestSuite(subtree, .init = tree_setup, .fini = tree_teardown);

static struct slice s(const char *text)
{
    return slice_from_cstr(text);
}

#define OWNER(n) ((void *)(uintptr_t)(n))
#define HITS_MAX 100000u

struct hit {
    void *owner;
    uint32_t sub_id;
    uint8_t options;
};

struct hits {
    uint32_t count;
    struct hit items[HITS_MAX];
};

static void hits_collect(void *ctx, void *owner, uint8_t options, uint32_t sub_id)
{
    struct hits *h = ctx;
    cr_assert_lt(h->count, HITS_MAX);
    h->items[h->count++] = (struct hit){ .owner = owner, .sub_id = sub_id, .options = options };
}

static struct hits *match(const char *topic)
{
    static struct hits h;
    h.count = 0;
    subtree_match(tree, s(topic), hits_collect, &h);
    return &h;
}

static uint32_t owner_hits(const struct hits *h, void *owner)
{
    uint32_t count = 0;
    for (uint32_t i = 0; i < h->count; i++)
        count += h->items[i].owner == owner;
    return count;
}

Test(subtree, new_tree_is_empty_and_matches_nothing)
{
    cr_expect_eq(subtree_count(tree), 0);
    cr_expect_eq(match("a/b")->count, 0);
}

Test(subtree, add_returns_one_and_counts_each_subscription)
{
    cr_expect_eq(subtree_add(tree, s("a/b"), OWNER(1), 1, 7), 1);
    cr_expect_eq(subtree_add(tree, s("a/b"), OWNER(2), 0, 0), 1);
    cr_expect_eq(subtree_add(tree, s("a/+"), OWNER(1), 2, 0), 1);
    cr_expect_eq(subtree_count(tree), 3);
}

Test(subtree, add_existing_replaces_options_and_identifier)
{
    cr_assert_eq(subtree_add(tree, s("a/#"), OWNER(1), 1, 7), 1);
    cr_expect_eq(subtree_add(tree, s("a/#"), OWNER(1), 2, 9), 0);
    cr_expect_eq(subtree_count(tree), 1);
    struct hits *h = match("a/x");
    cr_assert_eq(h->count, 1);
    cr_expect_eq(h->items[0].options, 2);
    cr_expect_eq(h->items[0].sub_id, 9);
}

Test(subtree, match_reports_options_and_identifier)
{
    cr_assert_eq(subtree_add(tree, s("sensor/+/temp"), OWNER(5), 0x21, 42), 1);
    struct hits *h = match("sensor/kitchen/temp");
    cr_assert_eq(h->count, 1);
    cr_expect_eq(h->items[0].owner, OWNER(5));
    cr_expect_eq(h->items[0].options, 0x21);
    cr_expect_eq(h->items[0].sub_id, 42);
    cr_expect_eq(match("sensor/kitchen/humidity")->count, 0);
}

Test(subtree, overlapping_filters_are_reported_once_per_filter)
{
    const char *filters[] = { "a/b", "a/+", "a/#", "#", "+/b", "+/+", "a/b/#" };
    for (size_t i = 0; i < ARRAY_LEN(filters); i++)
        cr_assert_eq(subtree_add(tree, s(filters[i]), OWNER(1), 0, (uint32_t)i + 1), 1);
    cr_assert_eq(subtree_add(tree, s("a/c"), OWNER(1), 0, 100), 1);
    struct hits *h = match("a/b");
    cr_expect_eq(h->count, ARRAY_LEN(filters));
    uint32_t seen = 0;
    for (uint32_t i = 0; i < h->count; i++)
        seen |= 1u << h->items[i].sub_id;
    cr_expect_eq(seen, 0xfe, "each filter exactly once, a/c not at all");
}

Test(subtree, pound_matches_the_parent_level)
{
    cr_assert_eq(subtree_add(tree, s("sport/#"), OWNER(1), 0, 0), 1);
    cr_assert_eq(subtree_add(tree, s("sport/tennis/#"), OWNER(2), 0, 0), 1);
    cr_expect_eq(owner_hits(match("sport"), OWNER(1)), 1);
    cr_expect_eq(owner_hits(match("sport"), OWNER(2)), 0);
    cr_expect_eq(owner_hits(match("sport/tennis"), OWNER(2)), 1);
    cr_expect_eq(owner_hits(match("sport/tennis/x/y"), OWNER(2)), 1);
    cr_expect_eq(match("sports")->count, 0);
}

Test(subtree, plus_matches_exactly_one_level_even_empty)
{
    cr_assert_eq(subtree_add(tree, s("a/+"), OWNER(1), 0, 0), 1);
    cr_expect_eq(match("a/x")->count, 1);
    cr_expect_eq(match("a/")->count, 1);
    cr_expect_eq(match("a")->count, 0);
    cr_expect_eq(match("a/x/y")->count, 0);
}

Test(subtree, empty_levels_are_distinct_levels)
{
    cr_assert_eq(subtree_add(tree, s("a//b"), OWNER(1), 0, 0), 1);
    cr_assert_eq(subtree_add(tree, s("/a"), OWNER(2), 0, 0), 1);
    cr_expect_eq(owner_hits(match("a//b"), OWNER(1)), 1);
    cr_expect_eq(match("a/b")->count, 0);
    cr_expect_eq(owner_hits(match("/a"), OWNER(2)), 1);
    cr_expect_eq(match("a")->count, 0);
}

Test(subtree, dollar_topics_skip_leading_wildcards)
{
    cr_assert_eq(subtree_add(tree, s("#"), OWNER(1), 0, 0), 1);
    cr_assert_eq(subtree_add(tree, s("+/uptime"), OWNER(2), 0, 0), 1);
    cr_assert_eq(subtree_add(tree, s("$SYS/#"), OWNER(3), 0, 0), 1);
    cr_assert_eq(subtree_add(tree, s("$SYS/+"), OWNER(4), 0, 0), 1);
    struct hits *h = match("$SYS/uptime");
    cr_expect_eq(h->count, 2);
    cr_expect_eq(owner_hits(h, OWNER(3)), 1);
    cr_expect_eq(owner_hits(h, OWNER(4)), 1);
    h = match("sys/uptime");
    cr_expect_eq(h->count, 2);
    cr_expect_eq(owner_hits(h, OWNER(1)), 1);
    cr_expect_eq(owner_hits(h, OWNER(2)), 1);
}

Test(subtree, remove_of_missing_subscription_is_enoent)
{
    cr_expect_eq(subtree_remove(tree, s("a/b"), OWNER(1)), -ENOENT);
    cr_assert_eq(subtree_add(tree, s("a/b/c"), OWNER(1), 0, 0), 1);
    cr_expect_eq(subtree_remove(tree, s("a/b"), OWNER(1)), -ENOENT, "inner node, no list");
    cr_expect_eq(subtree_remove(tree, s("a/b/c"), OWNER(2)), -ENOENT, "other owner");
    cr_expect_eq(subtree_count(tree), 1);
}

Test(subtree, remove_stops_delivery_to_that_owner_only)
{
    cr_assert_eq(subtree_add(tree, s("a/+"), OWNER(1), 0, 0), 1);
    cr_assert_eq(subtree_add(tree, s("a/+"), OWNER(2), 0, 0), 1);
    cr_expect_eq(subtree_remove(tree, s("a/+"), OWNER(1)), 0);
    struct hits *h = match("a/b");
    cr_assert_eq(h->count, 1);
    cr_expect_eq(h->items[0].owner, OWNER(2));
    cr_expect_eq(subtree_remove(tree, s("a/+"), OWNER(1)), -ENOENT, "already removed");
}

Test(subtree, removing_everything_empties_the_tree_and_it_stays_usable)
{
    const char *filters[] = { "a/b/c", "a/b", "a/+/c", "a/#", "#", "+", "x//y", "/", "$SYS/#" };
    for (int round = 0; round < 3; round++) {
        for (size_t i = 0; i < ARRAY_LEN(filters); i++)
            for (uintptr_t owner = 1; owner <= 40; owner++)
                cr_assert_eq(subtree_add(tree, s(filters[i]), OWNER(owner), 0, 0), 1);
        cr_assert_eq(subtree_count(tree), ARRAY_LEN(filters) * 40);
        for (uintptr_t owner = 40; owner >= 1; owner--)
            for (size_t i = 0; i < ARRAY_LEN(filters); i++)
                cr_assert_eq(subtree_remove(tree, s(filters[i]), OWNER(owner)), 0);
        cr_assert_eq(subtree_count(tree), 0);
        cr_assert_eq(match("a/b/c")->count, 0);
        cr_assert_eq(match("$SYS/x")->count, 0);
    }
}

Test(subtree, long_and_deep_filters_round_trip)
{
    static char deep[2 * TOPIC_LEVELS_MAX];
    for (uint32_t i = 0; i < TOPIC_LEVELS_MAX; i++) {
        deep[2 * i] = i % 2 == 0 ? '+' : 'x';
        deep[2 * i + 1] = '/';
    }
    struct slice filter = { (const uint8_t *)deep, 2 * TOPIC_LEVELS_MAX - 1 };
    cr_assert_eq(subtree_add(tree, filter, OWNER(1), 0, 0), 1);
    for (uint32_t i = 0; i < TOPIC_LEVELS_MAX; i += 2)
        deep[2 * i] = 'x';
    static struct hits h;
    h.count = 0;
    subtree_match(tree, (struct slice){ (const uint8_t *)deep, filter.len }, hits_collect, &h);
    cr_expect_eq(h.count, 1);
    const char *long_level = "a-level-much-longer-than-inline-storage/and-another-long-one";
    cr_assert_eq(subtree_add(tree, s(long_level), OWNER(2), 0, 0), 1);
    cr_expect_eq(owner_hits(match(long_level), OWNER(2)), 1);
    cr_expect_eq(subtree_remove(tree, s(long_level), OWNER(2)), 0);
}

Test(subtree, null_owner_is_a_programmer_error, .signal = SIGABRT)
{
    (void)subtree_add(tree, s("a"), NULL, 0, 0);
}

/* Past a handful of owners a filter's array is indexed; every operation must still see each
 * owner exactly once, through growth, replacement, out-of-order removal and re-adding. */
Test(subtree, many_owners_on_one_filter_add_replace_and_remove)
{
    enum { OWNERS = 3000 };
    for (uintptr_t owner = 1; owner <= OWNERS; owner++)
        cr_assert_eq(subtree_add(tree, s("hot/topic"), OWNER(owner), 0, (uint32_t)owner), 1);
    for (uintptr_t owner = 1; owner <= OWNERS; owner += 3)
        cr_assert_eq(subtree_add(tree, s("hot/topic"), OWNER(owner), 1, (uint32_t)owner), 0);
    cr_assert_eq(subtree_count(tree), OWNERS);
    for (uint32_t i = 0; i < OWNERS; i += 2) {
        uintptr_t owner = 1 + (i * 1009u) % OWNERS;
        cr_assert_eq(subtree_remove(tree, s("hot/topic"), OWNER(owner)), 0, "owner %lu",
                     (unsigned long)owner);
        cr_assert_eq(subtree_remove(tree, s("hot/topic"), OWNER(owner)), -ENOENT);
    }
    struct hits *h = match("hot/topic");
    cr_assert_eq(h->count, subtree_count(tree));
    static uint8_t seen[OWNERS + 1];
    for (uint32_t i = 0; i < h->count; i++) {
        uintptr_t owner = (uintptr_t)h->items[i].owner;
        cr_assert_eq(h->items[i].sub_id, owner);
        cr_assert_eq(h->items[i].options, (owner - 1) % 3 == 0 ? 1 : 0);
        cr_assert_eq(seen[owner]++, 0, "owner %lu twice", (unsigned long)owner);
    }
    for (uintptr_t owner = 1; owner <= OWNERS; owner++) {
        int rc = subtree_remove(tree, s("hot/topic"), OWNER(owner));
        cr_assert_eq(rc, seen[owner] ? 0 : -ENOENT);
    }
    cr_assert_eq(subtree_count(tree), 0);
    cr_assert_eq(match("hot/topic")->count, 0);
    for (uintptr_t owner = 1; owner <= 40; owner++)
        cr_assert_eq(subtree_add(tree, s("hot/topic"), OWNER(owner), 0, 0), 1);
    cr_expect_eq(match("hot/topic")->count, 40);
}

/* Heavy churn on one indexed filter while the owner index stays small, so its probe runs wrap
 * around the table end; after every operation each owner is found exactly when subscribed. */
Test(subtree, owner_churn_on_one_filter_keeps_every_owner_findable)
{
    enum { OWNERS = 400, PRESENT_MIN = 20, PRESENT_MAX = 30, OPS = 30000 };
    static bool is_present[OWNERS + 1];
    uint32_t present = 0;
    for (uintptr_t owner = 1; owner <= PRESENT_MIN; owner++) {
        cr_assert_eq(subtree_add(tree, s("churn"), OWNER(owner), 0, 0), 1);
        is_present[owner] = true;
        present++;
    }
    uint64_t rng = 88172645463325252u;
    for (uint32_t op = 0; op < OPS; op++) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        uintptr_t owner = 1 + (uintptr_t)(rng % OWNERS);
        if (is_present[owner] && present > PRESENT_MIN) {
            cr_assert_eq(subtree_remove(tree, s("churn"), OWNER(owner)), 0, "op %u", op);
            present--;
        } else if (!is_present[owner] && present < PRESENT_MAX) {
            cr_assert_eq(subtree_add(tree, s("churn"), OWNER(owner), 0, 0), 1, "op %u", op);
            present++;
        } else {
            continue;
        }
        is_present[owner] = !is_present[owner];
        struct hits *h = match("churn");
        cr_assert_eq(h->count, present);
        for (uint32_t i = 0; i < h->count; i++)
            cr_assert(is_present[(uintptr_t)h->items[i].owner]);
        for (uintptr_t other = 1; other <= OWNERS; other++) {
            int rc = subtree_add(tree, s("churn"), OWNER(other), 1, 0);
            cr_assert_eq(rc, is_present[other] ? 0 : 1, "op %u owner %lu", op,
                         (unsigned long)other);
            if (rc == 1)
                cr_assert_eq(subtree_remove(tree, s("churn"), OWNER(other)), 0);
        }
    }
}

/* Random cross-check against topic_match, the single-pair oracle. */

#define RANDOM_SUBS 100000u
#define RANDOM_TOPICS 300u
#define RANDOM_NAME_MAX 96u

struct reference_sub {
    char filter[RANDOM_NAME_MAX];
    bool is_live;
};

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint32_t rng_next(uint32_t bound)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % bound);
}

/* Writes a random filter (is_filter) or name over a small alphabet so that levels collide. */
static void random_topic(char *out, bool is_filter)
{
    static const char *literals[] = { "a", "b", "c", "", "long-level-name", "d" };
    uint32_t levels = 1 + rng_next(5);
    size_t len = 0;
    for (uint32_t i = 0; i < levels; i++) {
        const char *level = literals[rng_next(ARRAY_LEN(literals))];
        uint32_t roll = rng_next(100);
        if (i == 0 && roll < 8)
            level = "$s";
        else if (is_filter && roll < 28)
            level = "+";
        else if (is_filter && i == levels - 1 && roll < 40)
            level = "#";
        if (levels == 1 && level[0] == '\0')
            level = "a"; /* "" alone would be an empty, invalid topic */
        len += (size_t)snprintf(out + len, RANDOM_NAME_MAX - len, "%s%s", i ? "/" : "", level);
    }
}

static int compare_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a;
    uint32_t y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Owner i + 1 subscribes to reference[i]'s filter with sub_id i + 1, so every report names
 * one reference entry. */
static void cross_check(const struct reference_sub *reference, uint32_t count)
{
    static uint32_t expected[RANDOM_SUBS];
    static uint32_t got[RANDOM_SUBS];
    static struct hits h;
    char topic[RANDOM_NAME_MAX];
    for (uint32_t t = 0; t < RANDOM_TOPICS; t++) {
        random_topic(topic, false);
        uint32_t expected_count = 0;
        for (uint32_t i = 0; i < count; i++)
            if (reference[i].is_live && topic_match(s(reference[i].filter), s(topic)))
                expected[expected_count++] = i + 1;
        h.count = 0;
        subtree_match(tree, s(topic), hits_collect, &h);
        cr_assert_eq(h.count, expected_count, "topic %s", topic);
        for (uint32_t i = 0; i < h.count; i++) {
            got[i] = h.items[i].sub_id;
            cr_assert_eq(h.items[i].owner, OWNER(got[i]));
        }
        qsort(got, h.count, sizeof(got[0]), compare_u32);
        cr_assert_arr_eq(got, expected, expected_count * sizeof(got[0]), "topic %s", topic);
    }
}

Test(subtree, random_subscriptions_agree_with_topic_match, .timeout = 120)
{
    static struct reference_sub reference[RANDOM_SUBS];
    for (uint32_t i = 0; i < RANDOM_SUBS; i++) {
        random_topic(reference[i].filter, true);
        cr_assert(topic_filter_valid(s(reference[i].filter)), "filter %s", reference[i].filter);
        cr_assert_eq(subtree_add(tree, s(reference[i].filter), OWNER(i + 1), 0, i + 1), 1);
        reference[i].is_live = true;
    }
    cr_assert_eq(subtree_count(tree), RANDOM_SUBS);
    cross_check(reference, RANDOM_SUBS);
    uint32_t live = RANDOM_SUBS;
    for (uint32_t i = 0; i < RANDOM_SUBS; i++) {
        if (rng_next(2) == 0)
            continue;
        cr_assert_eq(subtree_remove(tree, s(reference[i].filter), OWNER(i + 1)), 0);
        reference[i].is_live = false;
        live--;
    }
    cr_assert_eq(subtree_count(tree), live);
    cross_check(reference, RANDOM_SUBS);
    for (uint32_t i = 0; i < RANDOM_SUBS; i++)
        if (reference[i].is_live)
            cr_assert_eq(subtree_remove(tree, s(reference[i].filter), OWNER(i + 1)), 0);
    cr_assert_eq(subtree_count(tree), 0);
    cr_assert_eq(match("a/b")->count, 0);
}

/* Adds and removals interleaved, so that tails (core/trie.h) split and join in every order. */
Test(subtree, interleaved_churn_agrees_with_topic_match, .timeout = 120)
{
    static struct reference_sub reference[RANDOM_SUBS];
    const uint32_t count = 3000;
    for (uint32_t round = 0; round < 20; round++) {
        for (uint32_t step = 0; step < count; step++) {
            uint32_t i = rng_next(count);
            if (reference[i].is_live) {
                cr_assert_eq(subtree_remove(tree, s(reference[i].filter), OWNER(i + 1)), 0);
                reference[i].is_live = false;
                continue;
            }
            random_topic(reference[i].filter, true);
            cr_assert_eq(subtree_add(tree, s(reference[i].filter), OWNER(i + 1), 0, i + 1), 1);
            reference[i].is_live = true;
        }
        cross_check(reference, count);
    }
    for (uint32_t i = 0; i < count; i++)
        if (reference[i].is_live)
            cr_assert_eq(subtree_remove(tree, s(reference[i].filter), OWNER(i + 1)), 0);
    cr_assert_eq(subtree_count(tree), 0);
}

/* ---- Marks (the persist registry's wildcard filters share the subscriptions' nodes) ---- */

static struct hits *match_marks(const char *topic)
{
    static struct hits h;
    h.count = 0;
    subtree_match_marks(tree, s(topic), hits_collect, &h);
    return &h;
}

#define MARK(n) ((void *)(uintptr_t)(0x100000u + 8u * (n))) /* aligned, like a pointer */

Test(subtree, a_mark_is_not_a_subscription)
{
    cr_assert_eq(subtree_mark_set(tree, s("a/+"), MARK(1)), 0);
    cr_expect_eq(subtree_count(tree), 0);
    cr_expect_eq(match("a/b")->count, 0);
    struct hits *h = match_marks("a/b");
    cr_assert_eq(h->count, 1);
    cr_expect_eq(h->items[0].owner, MARK(1));
    cr_expect_eq(match_marks("a/b/c")->count, 0);
    cr_expect_eq(match_marks("$SYS/b")->count, 0, "the '$' rule applies to marks too");
}

Test(subtree, marks_and_subscribers_share_a_filter_without_seeing_each_other)
{
    cr_assert_eq(subtree_add(tree, s("a/#"), OWNER(1), 1, 5), 1);
    cr_assert_eq(subtree_mark_set(tree, s("a/#"), MARK(1)), 0);
    cr_assert_eq(subtree_add(tree, s("a/#"), OWNER(2), 2, 0), 1);
    cr_assert_eq(subtree_mark_set(tree, s("a/#"), MARK(2)), 0, "replaces");
    struct hits *h = match("a/x");
    cr_assert_eq(h->count, 2);
    cr_expect_eq(owner_hits(h, OWNER(1)) + owner_hits(h, OWNER(2)), 2);
    h = match_marks("a/x");
    cr_assert_eq(h->count, 1);
    cr_expect_eq(h->items[0].owner, MARK(2));
    /* Removing subscribers keeps the mark, and the other way round. */
    cr_assert_eq(subtree_remove(tree, s("a/#"), OWNER(1)), 0);
    cr_expect_eq(match_marks("a/x")->count, 1);
    cr_assert_eq(subtree_mark_clear(tree, s("a/#")), 0);
    cr_expect_eq(subtree_mark_clear(tree, s("a/#")), -ENOENT);
    h = match("a/x");
    cr_assert_eq(h->count, 1);
    cr_expect_eq(h->items[0].owner, OWNER(2));
    cr_expect_eq(h->items[0].options, 2);
    cr_expect_eq(match_marks("a/x")->count, 0);
    cr_assert_eq(subtree_remove(tree, s("a/#"), OWNER(2)), 0);
    cr_expect_eq(subtree_mark_clear(tree, s("a/#")), -ENOENT);
    cr_expect_eq(match("a/x")->count, 0);
}

/* Past the scan limit the array is indexed: the mark's swaps to position 0 and the removals
 * around it must keep every owner findable. */
Test(subtree, marks_in_large_indexed_arrays)
{
    enum { N = 300 };
    for (uint32_t i = 1; i <= N / 2; i++)
        cr_assert_eq(subtree_add(tree, s("big/+"), OWNER(i), 0, i), 1);
    cr_assert_eq(subtree_mark_set(tree, s("big/+"), MARK(1)), 0);
    for (uint32_t i = N / 2 + 1; i <= N; i++)
        cr_assert_eq(subtree_add(tree, s("big/+"), OWNER(i), 0, i), 1);
    cr_assert_eq(subtree_mark_set(tree, s("big/+"), MARK(2)), 0);
    for (uint32_t i = 1; i <= N; i += 2)
        cr_assert_eq(subtree_remove(tree, s("big/+"), OWNER(i)), 0);
    cr_expect_eq(subtree_count(tree), N / 2);
    struct hits *h = match("big/x");
    cr_assert_eq(h->count, N / 2);
    for (uint32_t i = 0; i < h->count; i++)
        cr_expect_eq((uintptr_t)h->items[i].owner % 2, 0);
    cr_expect_eq(match_marks("big/x")->count, 1);
    cr_assert_eq(subtree_mark_clear(tree, s("big/+")), 0);
    for (uint32_t i = 2; i <= N; i += 2) {
        cr_assert_eq(subtree_add(tree, s("big/+"), OWNER(i), 1, i), 0, "found, replaced");
        cr_assert_eq(subtree_remove(tree, s("big/+"), OWNER(i)), 0);
    }
    cr_expect_eq(subtree_count(tree), 0);
    cr_expect_eq(match("big/x")->count, 0);
    cr_expect_eq(match_marks("big/x")->count, 0);
}

Test(subtree, marks_clear_all_leaves_the_subscriptions)
{
    cr_assert_eq(subtree_mark_set(tree, s("m/+/x"), MARK(1)), 0);
    cr_assert_eq(subtree_mark_set(tree, s("m/#"), MARK(2)), 0);
    cr_assert_eq(subtree_add(tree, s("m/#"), OWNER(1), 0, 0), 1);
    subtree_marks_clear(tree);
    cr_expect_eq(match_marks("m/a/x")->count, 0);
    cr_expect_eq(match("m/a/x")->count, 1);
    cr_expect_eq(subtree_mark_clear(tree, s("m/+/x")), -ENOENT);
}

/* A filter left with its mark alone keeps it without an array (an offline session's
 * subscription left the tree), and takes subscribers again, small and indexed arrays alike. */
Test(subtree, a_mark_left_alone_stays_and_takes_subscribers_again)
{
    for (uint32_t subscribers = 1; subscribers <= 40; subscribers += 39) {
        cr_assert_eq(subtree_mark_set(tree, s("p/+/alarm"), MARK(1)), 0);
        for (uint32_t round = 0; round < 3; round++) {
            for (uint32_t i = 1; i <= subscribers; i++)
                cr_assert_eq(subtree_add(tree, s("p/+/alarm"), OWNER(i), 1, i), 1);
            cr_assert_eq(match("p/x/alarm")->count, subscribers);
            cr_assert_eq(match_marks("p/x/alarm")->count, 1);
            for (uint32_t i = 1; i <= subscribers; i++)
                cr_assert_eq(subtree_remove(tree, s("p/+/alarm"), OWNER(i)), 0);
            cr_assert_eq(match("p/x/alarm")->count, 0);
            struct hits *h = match_marks("p/x/alarm");
            cr_assert_eq(h->count, 1);
            cr_assert_eq(h->items[0].owner, MARK(1));
            cr_assert_eq(subtree_remove(tree, s("p/+/alarm"), OWNER(1)), -ENOENT);
            cr_assert_eq(subtree_mark_set(tree, s("p/+/alarm"), MARK(2)), 0, "replaces");
            cr_assert_eq(match_marks("p/y/alarm")->items[0].owner, MARK(2));
            cr_assert_eq(subtree_mark_set(tree, s("p/+/alarm"), MARK(1)), 0);
        }
        cr_assert_eq(subtree_mark_clear(tree, s("p/+/alarm")), 0);
        cr_assert_eq(subtree_mark_clear(tree, s("p/+/alarm")), -ENOENT);
        cr_assert_eq(match_marks("p/x/alarm")->count, 0);
        cr_assert_eq(subtree_count(tree), 0);
    }
    cr_assert_eq(subtree_mark_set(tree, s("q/#"), MARK(3)), 0);
    subtree_marks_clear(tree);
    cr_assert_eq(match_marks("q/x")->count, 0);
}
