/* tests/unit/test_retain.c - the per-shard retained-message index: set, clear, get, match. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "core/retain.h"
#include "core/topic.h"

static struct retain *index_under_test;

static void retain_setup(void)
{
    index_under_test = retain_create();
    cr_assert_not_null(index_under_test);
}

static void retain_teardown(void)
{
    retain_destroy(index_under_test, NULL, NULL);
    index_under_test = NULL;
}

TestSuite(retain, .init = retain_setup, .fini = retain_teardown);

static struct slice s(const char *text)
{
    return slice_from_cstr(text);
}

#define VALUE(n) ((void *)(uintptr_t)(n))
#define FOUND_MAX 20000u

struct found {
    uint32_t count;
    uintptr_t values[FOUND_MAX];
};

static void found_collect(void *ctx, struct slice topic, void *value)
{
    struct found *f = ctx;
    cr_assert_lt(f->count, FOUND_MAX);
    cr_assert(topic_name_valid(topic));
    cr_assert_eq(retain_get(index_under_test, topic), value, "topic handed back is the key");
    f->values[f->count++] = (uintptr_t)value;
}

static int compare_uintptr(const void *a, const void *b)
{
    uintptr_t x = *(const uintptr_t *)a;
    uintptr_t y = *(const uintptr_t *)b;
    return (x > y) - (x < y);
}

/* Returns the values matching `filter`, sorted. */
static struct found *match(const char *filter)
{
    static struct found f;
    f.count = 0;
    retain_match(index_under_test, s(filter), found_collect, &f);
    qsort(f.values, f.count, sizeof(f.values[0]), compare_uintptr);
    return &f;
}

static void set(const char *topic, uintptr_t value)
{
    int err = -1;
    (void)retain_set(index_under_test, s(topic), VALUE(value), &err);
    cr_assert_eq(err, 0);
}

static void expect_values(const struct found *f, const uintptr_t *values, uint32_t count)
{
    cr_assert_eq(f->count, count);
    for (uint32_t i = 0; i < count; i++)
        cr_expect_eq(f->values[i], values[i], "value %u", i);
}

Test(retain, new_index_is_empty)
{
    cr_expect_eq(retain_count(index_under_test), 0);
    cr_expect_null(retain_get(index_under_test, s("a")));
    cr_expect_eq(match("#")->count, 0);
}

Test(retain, set_then_get_returns_the_value)
{
    int err = -1;
    cr_expect_null(retain_set(index_under_test, s("a/b"), VALUE(1), &err));
    cr_expect_eq(err, 0);
    cr_expect_eq(retain_get(index_under_test, s("a/b")), VALUE(1));
    cr_expect_null(retain_get(index_under_test, s("a")), "inner node holds no value");
    cr_expect_null(retain_get(index_under_test, s("a/b/c")));
    cr_expect_eq(retain_count(index_under_test), 1);
}

Test(retain, set_existing_replaces_and_returns_the_previous_value)
{
    int err = -1;
    set("a/b", 1);
    cr_expect_eq(retain_set(index_under_test, s("a/b"), VALUE(2), &err), VALUE(1));
    cr_expect_eq(err, 0);
    cr_expect_eq(retain_get(index_under_test, s("a/b")), VALUE(2));
    cr_expect_eq(retain_count(index_under_test), 1);
}

Test(retain, clear_returns_the_value_and_forgets_the_topic)
{
    set("a/b", 1);
    set("a/b/c", 2);
    cr_expect_eq(retain_clear(index_under_test, s("a/b")), VALUE(1));
    cr_expect_null(retain_get(index_under_test, s("a/b")));
    cr_expect_eq(retain_get(index_under_test, s("a/b/c")), VALUE(2), "child survives");
    cr_expect_null(retain_clear(index_under_test, s("a/b")), "second clear finds nothing");
    cr_expect_null(retain_clear(index_under_test, s("x/y")));
    cr_expect_eq(retain_clear(index_under_test, s("a/b/c")), VALUE(2));
    cr_expect_eq(retain_count(index_under_test), 0);
    cr_expect_eq(match("#")->count, 0);
}

Test(retain, empty_levels_are_distinct_topics)
{
    set("a//b", 1);
    set("a/b", 2);
    set("/a", 3);
    set("a", 4);
    set("a/", 5);
    cr_expect_eq(retain_get(index_under_test, s("a//b")), VALUE(1));
    cr_expect_eq(retain_get(index_under_test, s("/a")), VALUE(3));
    cr_expect_eq(retain_get(index_under_test, s("a/")), VALUE(5));
    expect_values(match("a/+/b"), (uintptr_t[]){ 1 }, 1);
    expect_values(match("+/a"), (uintptr_t[]){ 3 }, 1);
    expect_values(match("a/+"), (uintptr_t[]){ 2, 5 }, 2);
}

Test(retain, plus_matches_one_level)
{
    set("sport/tennis/player1", 1);
    set("sport/tennis/player2", 2);
    set("sport/golf/player1", 3);
    set("sport/tennis", 4);
    set("sport/tennis/player1/ranking", 5);
    expect_values(match("sport/tennis/+"), (uintptr_t[]){ 1, 2 }, 2);
    expect_values(match("sport/+/player1"), (uintptr_t[]){ 1, 3 }, 2);
    expect_values(match("+/+"), (uintptr_t[]){ 4 }, 1);
    expect_values(match("+/+/+/+"), (uintptr_t[]){ 5 }, 1);
    expect_values(match("sport/tennis/player1"), (uintptr_t[]){ 1 }, 1);
    cr_expect_eq(match("sport/+/player9")->count, 0);
}

Test(retain, pound_matches_the_subtree_and_its_parent)
{
    set("sport", 1);
    set("sport/tennis", 2);
    set("sport/tennis/player1", 3);
    set("sports", 4);
    set("other/x", 5);
    expect_values(match("sport/#"), (uintptr_t[]){ 1, 2, 3 }, 3);
    expect_values(match("sport/tennis/#"), (uintptr_t[]){ 2, 3 }, 2);
    expect_values(match("#"), (uintptr_t[]){ 1, 2, 3, 4, 5 }, 5);
    expect_values(match("+/#"), (uintptr_t[]){ 1, 2, 3, 4, 5 }, 5);
    cr_expect_eq(match("nothing/#")->count, 0);
}

Test(retain, dollar_topics_are_hidden_from_leading_wildcards)
{
    set("$SYS/x", 1);
    set("$SYS", 2);
    set("a/$b", 3);
    set("a", 4);
    expect_values(match("#"), (uintptr_t[]){ 3, 4 }, 2);
    expect_values(match("+"), (uintptr_t[]){ 4 }, 1);
    expect_values(match("+/x"), NULL, 0);
    expect_values(match("$SYS/#"), (uintptr_t[]){ 1, 2 }, 2);
    expect_values(match("$SYS/+"), (uintptr_t[]){ 1 }, 1);
    expect_values(match("a/+"), (uintptr_t[]){ 3 }, 1);
}

Test(retain, long_levels_and_deep_topics_round_trip)
{
    static char deep[2 * TOPIC_LEVELS_MAX];
    for (uint32_t i = 0; i < TOPIC_LEVELS_MAX; i++) {
        deep[2 * i] = 'x';
        deep[2 * i + 1] = '/';
    }
    struct slice topic = { (const uint8_t *)deep, 2 * TOPIC_LEVELS_MAX - 1 };
    int err = -1;
    cr_expect_null(retain_set(index_under_test, topic, VALUE(1), &err));
    cr_assert_eq(err, 0);
    for (uint32_t i = 0; i < TOPIC_LEVELS_MAX; i++)
        deep[2 * i] = '+';
    static struct found f;
    f.count = 0;
    retain_match(index_under_test, topic, found_collect, &f);
    cr_expect_eq(f.count, 1);
    set("a-level-much-longer-than-inline-storage/and-another-one", 2);
    expect_values(match("+/and-another-one"), (uintptr_t[]){ 2 }, 1);
}

Test(retain, null_value_is_a_programmer_error, .signal = SIGABRT)
{
    int err = 0;
    (void)retain_set(index_under_test, s("a"), NULL, &err);
}

/* destroy hands every stored value to `release` exactly once. */

#define DESTROY_TOPICS 1000u

static void release_mark(void *ctx, void *value)
{
    uint8_t *released = ctx;
    uintptr_t n = (uintptr_t)value;
    cr_assert(n >= 1 && n <= DESTROY_TOPICS);
    released[n - 1]++;
}

Test(retain, destroy_releases_every_value_once)
{
    static uint8_t released[DESTROY_TOPICS];
    struct retain *r = retain_create();
    cr_assert_not_null(r);
    char topic[64];
    for (uint32_t i = 0; i < DESTROY_TOPICS; i++) {
        snprintf(topic, sizeof(topic), "t/%u/%u", i % 7, i);
        int err = -1;
        cr_assert_null(retain_set(r, s(topic), VALUE(i + 1), &err));
        cr_assert_eq(err, 0);
    }
    snprintf(topic, sizeof(topic), "t/%u/%u", 3u, 3u);
    cr_assert_eq(retain_clear(r, s(topic)), VALUE(4));
    retain_destroy(r, release_mark, released);
    for (uint32_t i = 0; i < DESTROY_TOPICS; i++)
        cr_expect_eq(released[i], i == 3 ? 0 : 1, "value %u", i + 1);
}

/* Random cross-check against topic_match, the single-pair oracle. */

#define RANDOM_TOPICS 20000u
#define RANDOM_FILTERS 400u
#define RANDOM_NAME_MAX 96u

static uint64_t rng_state = 0x2545f4914f6cdd1du;

static uint32_t rng_next(uint32_t bound)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % bound);
}

static void random_topic(char *out, bool is_filter)
{
    static const char *literals[] = { "a", "b", "c", "", "long-level-name", "d", "e" };
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

static void cross_check(char (*topics)[RANDOM_NAME_MAX], const bool *is_stored)
{
    static uintptr_t expected[RANDOM_TOPICS];
    char filter[RANDOM_NAME_MAX];
    for (uint32_t f = 0; f < RANDOM_FILTERS; f++) {
        random_topic(filter, true);
        uint32_t expected_count = 0;
        for (uint32_t i = 0; i < RANDOM_TOPICS; i++)
            if (is_stored[i] && topic_match(s(filter), s(topics[i])))
                expected[expected_count++] = i + 1;
        struct found *got = match(filter);
        cr_assert_eq(got->count, expected_count, "filter %s", filter);
        cr_assert_arr_eq(got->values, expected, expected_count * sizeof(expected[0]),
                         "filter %s", filter);
    }
}

Test(retain, random_topics_agree_with_topic_match, .timeout = 120)
{
    /* Distinct topics only, so that value i + 1 names topics[i]; duplicates are skipped. */
    static char topics[RANDOM_TOPICS][RANDOM_NAME_MAX];
    static bool is_stored[RANDOM_TOPICS];
    uint32_t stored = 0;
    for (uint32_t i = 0; i < RANDOM_TOPICS; i++) {
        random_topic(topics[i], false);
        cr_assert(topic_name_valid(s(topics[i])), "topic %s", topics[i]);
        if (retain_get(index_under_test, s(topics[i])) != NULL)
            continue;
        set(topics[i], i + 1);
        is_stored[i] = true;
        stored++;
    }
    cr_assert_eq(retain_count(index_under_test), stored);
    cross_check(topics, is_stored);
    for (uint32_t i = 0; i < RANDOM_TOPICS; i++) {
        if (!is_stored[i] || rng_next(2) == 0)
            continue;
        cr_assert_eq(retain_clear(index_under_test, s(topics[i])), VALUE(i + 1));
        is_stored[i] = false;
        stored--;
    }
    cr_assert_eq(retain_count(index_under_test), stored);
    cross_check(topics, is_stored);
}
