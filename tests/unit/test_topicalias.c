/* tests/unit/test_topicalias.c - server -> client topic aliases of one connection: assignment
 * in order, reuse, least-recently-used replacement, nothing recorded before commit, limits. */
#include <stdio.h>

#include <criterion/criterion.h>

#include "core/topicalias.h"

static struct topicalias_out table;

static void topicalias_teardown(void)
{
    topicalias_free(&table);
}

TestSuite(topicalias, .fini = topicalias_teardown);

static struct slice s(const char *text)
{
    return slice_from_cstr(text);
}

/* Picks and commits `topic`, as a written PUBLISH does; returns the verdict and the alias. */
static enum topicalias_verdict send(const char *topic, uint16_t *alias)
{
    enum topicalias_verdict v = topicalias_pick(&table, s(topic), alias);
    if (v != TOPICALIAS_NONE)
        topicalias_commit(&table, s(topic), *alias, v);
    return v;
}

Test(topicalias, off_when_client_allows_none)
{
    topicalias_init(&table, 0);
    uint16_t alias = 0;
    cr_assert_eq(topicalias_pick(&table, s("a"), &alias), TOPICALIAS_NONE);
    cr_assert_null(table.entries, "no memory for a client without aliases");
}

Test(topicalias, first_send_defines_then_known)
{
    topicalias_init(&table, 5);
    uint16_t alias = 0;
    cr_assert_eq(send("a/b", &alias), TOPICALIAS_NEW);
    cr_assert_eq(alias, 1);
    cr_assert_eq(send("a/c", &alias), TOPICALIAS_NEW);
    cr_assert_eq(alias, 2);
    cr_assert_eq(send("a/b", &alias), TOPICALIAS_KNOWN);
    cr_assert_eq(alias, 1);
}

Test(topicalias, pick_without_commit_records_nothing)
{
    topicalias_init(&table, 5);
    uint16_t alias = 0;
    cr_assert_eq(topicalias_pick(&table, s("dropped"), &alias), TOPICALIAS_NEW);
    cr_assert_eq(topicalias_pick(&table, s("dropped"), &alias), TOPICALIAS_NEW,
                 "a PUBLISH never written must not make the topic known");
    cr_assert_eq(alias, 1);
}

Test(topicalias, full_table_replaces_least_recently_used)
{
    topicalias_init(&table, 2);
    uint16_t alias = 0;
    send("x", &alias);               /* x -> 1 */
    send("y", &alias);               /* y -> 2 */
    send("x", &alias);               /* x used again: y is the least recent */
    cr_assert_eq(send("z", &alias), TOPICALIAS_NEW);
    cr_assert_eq(alias, 2, "z takes y's alias");
    cr_assert_eq(send("y", &alias), TOPICALIAS_NEW, "y lost its alias");
    cr_assert_eq(alias, 1, "x was least recent then");
    cr_assert_eq(send("z", &alias), TOPICALIAS_KNOWN);
    cr_assert_eq(alias, 2);
}

Test(topicalias, never_above_client_maximum_or_the_limit)
{
    topicalias_init(&table, 65535);
    cr_assert_eq(table.max, TOPICALIAS_OUT_MAX);
    char topic[16];
    uint16_t alias = 0;
    for (uint32_t i = 0; i < 3 * TOPICALIAS_OUT_MAX; i++) {
        snprintf(topic, sizeof(topic), "t/%u", i);
        cr_assert_eq(send(topic, &alias), TOPICALIAS_NEW);
        cr_assert(alias >= 1 && alias <= TOPICALIAS_OUT_MAX, "alias %u", alias);
    }
    topicalias_free(&table);
    topicalias_init(&table, 3);
    for (uint32_t i = 0; i < 10; i++) {
        snprintf(topic, sizeof(topic), "u/%u", i);
        send(topic, &alias);
        cr_assert(alias >= 1 && alias <= 3, "alias %u", alias);
    }
}

Test(topicalias, longer_topic_reuses_a_replaced_entry)
{
    topicalias_init(&table, 1);
    uint16_t alias = 0;
    send("a", &alias);
    cr_assert_eq(send("a/much/longer/topic/name", &alias), TOPICALIAS_NEW);
    cr_assert_eq(send("a/much/longer/topic/name", &alias), TOPICALIAS_KNOWN);
    cr_assert_eq(send("a", &alias), TOPICALIAS_NEW);
    cr_assert_eq(send("a", &alias), TOPICALIAS_KNOWN);
    cr_assert_eq(alias, 1);
}

Test(topicalias, empty_topic_never_aliased)
{
    topicalias_init(&table, 4);
    uint16_t alias = 0;
    cr_assert_eq(topicalias_pick(&table, s(""), &alias), TOPICALIAS_NONE);
}
