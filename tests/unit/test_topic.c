/* tests/unit/test_topic.c - topic name/filter rules, single-pair matching and $share parsing. */
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include "core/topic.h"

TestSuite(topic);

static struct slice s(const char *text)
{
    return slice_from_cstr(text);
}

/* Builds "a/a/.../a" with `levels` levels into `buf` (2 * levels bytes). */
static struct slice repeated_levels(char *buf, uint32_t levels, char level)
{
    for (uint32_t i = 0; i < levels; i++) {
        buf[2 * i] = level;
        buf[2 * i + 1] = '/';
    }
    return (struct slice){ (const uint8_t *)buf, levels * 2 - 1 };
}

Test(topic, name_plain_levels_are_valid)
{
    cr_expect(topic_name_valid(s("a")));
    cr_expect(topic_name_valid(s("sport/tennis/player1")));
    cr_expect(topic_name_valid(s("$SYS/broker/uptime")));
}

Test(topic, name_empty_levels_are_valid)
{
    cr_expect(topic_name_valid(s("/")));
    cr_expect(topic_name_valid(s("/a")));
    cr_expect(topic_name_valid(s("a//b")));
    cr_expect(topic_name_valid(s("a/")));
}

Test(topic, name_empty_is_invalid)
{
    cr_expect_not(topic_name_valid(s("")));
}

Test(topic, name_with_wildcards_is_invalid)
{
    cr_expect_not(topic_name_valid(s("+")));
    cr_expect_not(topic_name_valid(s("#")));
    cr_expect_not(topic_name_valid(s("a/+/b")));
    cr_expect_not(topic_name_valid(s("a/b#")));
}

Test(topic, name_length_edges)
{
    static char buf[TOPIC_LEN_MAX + 1];
    memset(buf, 'x', sizeof(buf));
    cr_expect(topic_name_valid((struct slice){ (const uint8_t *)buf, TOPIC_LEN_MAX }));
    cr_expect_not(topic_name_valid((struct slice){ (const uint8_t *)buf, TOPIC_LEN_MAX + 1 }));
}

Test(topic, levels_beyond_the_limit_are_invalid)
{
    static char buf[2 * (TOPIC_LEVELS_MAX + 1)];
    cr_expect(topic_name_valid(repeated_levels(buf, TOPIC_LEVELS_MAX, 'a')));
    cr_expect_not(topic_name_valid(repeated_levels(buf, TOPIC_LEVELS_MAX + 1, 'a')));
    cr_expect(topic_filter_valid(repeated_levels(buf, TOPIC_LEVELS_MAX, '+')));
    cr_expect_not(topic_filter_valid(repeated_levels(buf, TOPIC_LEVELS_MAX + 1, '+')));
}

Test(topic, filter_wildcards_as_whole_levels_are_valid)
{
    cr_expect(topic_filter_valid(s("#")));
    cr_expect(topic_filter_valid(s("+")));
    cr_expect(topic_filter_valid(s("+/+")));
    cr_expect(topic_filter_valid(s("sport/#")));
    cr_expect(topic_filter_valid(s("sport/+/player1")));
    cr_expect(topic_filter_valid(s("+/tennis/#")));
    cr_expect(topic_filter_valid(s("/#")));
    cr_expect(topic_filter_valid(s("$SYS/#")));
}

Test(topic, filter_empty_levels_are_valid)
{
    cr_expect(topic_filter_valid(s("/")));
    cr_expect(topic_filter_valid(s("a//b")));
    cr_expect(topic_filter_valid(s("/+")));
    cr_expect(topic_filter_valid(s("+/")));
}

Test(topic, filter_empty_is_invalid)
{
    cr_expect_not(topic_filter_valid(s("")));
}

Test(topic, filter_pound_not_last_is_invalid)
{
    cr_expect_not(topic_filter_valid(s("a/#/b")));
    cr_expect_not(topic_filter_valid(s("#/a")));
    cr_expect_not(topic_filter_valid(s("#/")));
    cr_expect_not(topic_filter_valid(s("#/#")));
}

Test(topic, filter_wildcard_inside_a_level_is_invalid)
{
    cr_expect_not(topic_filter_valid(s("a+")));
    cr_expect_not(topic_filter_valid(s("+a")));
    cr_expect_not(topic_filter_valid(s("a/b+/c")));
    cr_expect_not(topic_filter_valid(s("sport/tennis#")));
    cr_expect_not(topic_filter_valid(s("##")));
    cr_expect_not(topic_filter_valid(s("++")));
    cr_expect_not(topic_filter_valid(s("+#")));
}

Test(topic, level_next_yields_every_level_including_empty_ones)
{
    struct slice name = s("a//bc/");
    const char *expected[] = { "a", "", "bc", "" };
    uint32_t pos = 0;
    struct slice level;
    for (size_t i = 0; i < ARRAY_LEN(expected); i++) {
        cr_assert(topic_level_next(name, &pos, &level));
        cr_expect(slice_eq(level, s(expected[i])), "level %zu", i);
    }
    cr_expect_not(topic_level_next(name, &pos, &level));
}

Test(topic, level_next_single_level)
{
    uint32_t pos = 0;
    struct slice level;
    cr_assert(topic_level_next(s("abc"), &pos, &level));
    cr_expect(slice_eq(level, s("abc")));
    cr_expect_not(topic_level_next(s("abc"), &pos, &level));
}

Test(topic, shared_filter_splits_group_and_filter)
{
    struct slice group;
    struct slice filter;
    cr_assert_eq(topic_shared_parse(s("$share/g1/sport/+/x"), &group, &filter), 1);
    cr_expect(slice_eq(group, s("g1")));
    cr_expect(slice_eq(filter, s("sport/+/x")));
    cr_assert_eq(topic_shared_parse(s("$share/grp/#"), &group, &filter), 1);
    cr_expect(slice_eq(group, s("grp")));
    cr_expect(slice_eq(filter, s("#")));
    cr_assert_eq(topic_shared_parse(s("$share/g//a"), &group, &filter), 1);
    cr_expect(slice_eq(filter, s("/a")));
}

Test(topic, non_shared_filters_are_not_parsed)
{
    struct slice group;
    struct slice filter;
    cr_expect_eq(topic_shared_parse(s("sport/#"), &group, &filter), 0);
    cr_expect_eq(topic_shared_parse(s("$share"), &group, &filter), 0);
    cr_expect_eq(topic_shared_parse(s("$SHARE/g/a"), &group, &filter), 0);
    cr_expect_eq(topic_shared_parse(s("$sharex/g/a"), &group, &filter), 0);
    cr_expect_eq(topic_shared_parse(s("$SYS/#"), &group, &filter), 0);
}

Test(topic, malformed_shared_filters_are_rejected)
{
    struct slice group;
    struct slice filter;
    cr_expect_eq(topic_shared_parse(s("$share/"), &group, &filter), -1);
    cr_expect_eq(topic_shared_parse(s("$share//a"), &group, &filter), -1);
    cr_expect_eq(topic_shared_parse(s("$share/g"), &group, &filter), -1);
    cr_expect_eq(topic_shared_parse(s("$share/g/"), &group, &filter), -1);
    cr_expect_eq(topic_shared_parse(s("$share/+/a"), &group, &filter), -1);
    cr_expect_eq(topic_shared_parse(s("$share/#/a"), &group, &filter), -1);
    cr_expect_eq(topic_shared_parse(s("$share/g+/a"), &group, &filter), -1);
    cr_expect_eq(topic_shared_parse(s("$share/g/a/#/b"), &group, &filter), -1);
}

Test(topic, dollar_topics_are_hidden_from_leading_wildcards)
{
    cr_expect_not(topic_match(s("#"), s("$SYS/uptime")));
    cr_expect_not(topic_match(s("+/uptime"), s("$SYS/uptime")));
    cr_expect_not(topic_match(s("+"), s("$SYS")));
    cr_expect(topic_match(s("$SYS/#"), s("$SYS/uptime")));
    cr_expect(topic_match(s("$SYS/+"), s("$SYS/uptime")));
    cr_expect(topic_match(s("a/+"), s("a/$b")));
}

/* Strings are stored inside the parameter, not pointed to: criterion may run each test in a
 * fresh process image where pointers from the parent are meaningless. */
struct match_case {
    char filter[48];
    char name[48];
    bool is_match;
};

ParameterizedTestParameters(topic, match_table)
{
    static struct match_case cases[] = {
        { "sport/tennis/player1", "sport/tennis/player1", true },
        { "sport/tennis/player1", "sport/tennis/player2", false },
        { "sport/tennis/player1", "sport/tennis", false },
        { "sport/tennis", "sport/tennis/player1", false },
        { "sport/tennis/player1/#", "sport/tennis/player1", true },
        { "sport/tennis/player1/#", "sport/tennis/player1/ranking", true },
        { "sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true },
        { "sport/tennis/player1/#", "sport/tennis/player2", false },
        { "sport/#", "sport", true },
        { "sport/#", "sports", false },
        { "sport/#", "sport/", true },
        { "#", "sport", true },
        { "#", "/", true },
        { "#", "a/b/c/d", true },
        { "#", "$SYS", false },
        { "#", "$SYS/x", false },
        { "sport/tennis/+", "sport/tennis/player1", true },
        { "sport/tennis/+", "sport/tennis/player1/ranking", false },
        { "sport/tennis/+", "sport/tennis", false },
        { "sport/tennis/+", "sport/tennis/", true },
        { "sport/+", "sport", false },
        { "sport/+", "sport/", true },
        { "+", "sport", true },
        { "+", "/sport", false },
        { "+", "a/b", false },
        { "+/+", "/finance", true },
        { "/+", "/finance", true },
        { "+", "$SYS", false },
        { "+/monitor/Clients", "$SYS/monitor/Clients", false },
        { "$SYS/monitor/+", "$SYS/monitor/Clients", true },
        { "$SYS/#", "$SYS/monitor/Clients", true },
        { "$SYS/#", "$SYS", true },
        { "a//b", "a//b", true },
        { "a//b", "a/b", false },
        { "a/+/b", "a//b", true },
        { "a/b", "a//b", false },
        { "/a", "/a", true },
        { "/a", "a", false },
        { "a", "/a", false },
        { "/", "/", true },
        { "/", "a", false },
        { "+/#", "a", true },
        { "+/#", "a/b/c", true },
        { "+/+/#", "a", false },
        { "a/+/#", "a/b", true },
        { "a/+/#", "a", false },
        { "a/#", "a/b/c", true },
        { "a/#", "ab/c", false },
        { "ab", "a", false },
        { "a", "ab", false },
        { "a/b/c", "a/b/cd", false },
        { "a/b/cd", "a/b/c", false },
        { "+/b", "a/b", true },
        { "+/+/+", "a//", true },
        { "$share", "$share", true },
    };
    return cr_make_param_array(struct match_case, cases, ARRAY_LEN(cases));
}

ParameterizedTest(struct match_case *c, topic, match_table)
{
    struct slice filter = s(c->filter);
    struct slice name = s(c->name);
    cr_assert(topic_filter_valid(filter), "fixture filter %s", c->filter);
    cr_assert(topic_name_valid(name), "fixture name %s", c->name);
    cr_expect_eq(topic_match(filter, name), c->is_match, "filter '%s' name '%s'", c->filter,
                 c->name);
}

/* Random cross-check of topic_match against a deliberately naive reference that splits both
 * strings into level arrays and applies the rules one level at a time. */

#define NAIVE_LEVELS_MAX 16u
#define NAIVE_TEXT_MAX 96u

static uint32_t naive_split(const char *text, struct slice *levels)
{
    uint32_t count = 0;
    uint32_t pos = 0;
    struct slice s_text = slice_from_cstr(text);
    struct slice level;
    while (topic_level_next(s_text, &pos, &level) && count < NAIVE_LEVELS_MAX)
        levels[count++] = level;
    return count;
}

static bool naive_match(const char *filter, const char *name)
{
    struct slice f[NAIVE_LEVELS_MAX];
    struct slice n[NAIVE_LEVELS_MAX];
    uint32_t f_count = naive_split(filter, f);
    uint32_t n_count = naive_split(name, n);
    if (name[0] == '$' && (filter[0] == '+' || filter[0] == '#'))
        return false;
    for (uint32_t i = 0; i < f_count; i++) {
        if (slice_eq(f[i], s("#")))
            return true; /* matches the parent level too: i may equal n_count */
        if (i >= n_count)
            return false;
        if (!slice_eq(f[i], s("+")) && !slice_eq(f[i], n[i]))
            return false;
    }
    return f_count == n_count;
}

static uint64_t rng_state = 0x853c49e6748fea9bu;

static uint32_t rng_next(uint32_t bound)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % bound);
}

static void random_text(char *out, bool is_filter)
{
    static const char *literals[] = { "a", "b", "", "ab", "$x" };
    uint32_t levels = 1 + rng_next(4);
    size_t len = 0;
    for (uint32_t i = 0; i < levels; i++) {
        const char *level = literals[rng_next(ARRAY_LEN(literals))];
        uint32_t roll = rng_next(100);
        if (is_filter && roll < 25)
            level = "+";
        else if (is_filter && i == levels - 1 && roll < 40)
            level = "#";
        if (levels == 1 && level[0] == '\0')
            level = "b";
        len += (size_t)snprintf(out + len, NAIVE_TEXT_MAX - len, "%s%s", i ? "/" : "", level);
    }
}

Test(topic, random_pairs_agree_with_a_naive_matcher)
{
    char filter[NAIVE_TEXT_MAX];
    char name[NAIVE_TEXT_MAX];
    for (uint32_t i = 0; i < 200000; i++) {
        random_text(filter, true);
        random_text(name, false);
        /* Plain checks: a criterion assertion per pair would dominate the run time. */
        if (!topic_filter_valid(s(filter)) || !topic_name_valid(s(name)))
            cr_assert_fail("fixture filter '%s' name '%s'", filter, name);
        if (topic_match(s(filter), s(name)) != naive_match(filter, name))
            cr_assert_fail("filter '%s' name '%s'", filter, name);
    }
}

Test(topic, match_levels_has_no_dollar_rule_and_takes_an_empty_rest)
{
    /* The subscription tree matches a tail from a later level (core/trie.h). */
    cr_assert(topic_match_levels(s("+/alarm"), s("line/alarm")));
    cr_assert(topic_match_levels(s("#"), s("$SYS/x")), "the '$' rule is the caller's");
    cr_assert(topic_match_levels(s("+"), s("$x")));
    cr_assert_not(topic_match(s("+"), s("$x")));
    cr_assert(topic_match_levels(s("+"), (struct slice){ (const uint8_t *)"", 0 }),
              "an empty rest is one empty level");
    cr_assert_not(topic_match_levels(s("a"), (struct slice){ (const uint8_t *)"", 0 }));
    cr_assert(topic_match_levels(s("a/#"), s("a")));
    cr_assert_not(topic_match_levels(s("a/+/b"), s("a/b")));
}
