/* tests/unit/test_bench_track.c - bench/bench_track: in-order delivery, gaps that become
 * losses or reorderings, duplicates inside and beyond the window, unexpected publishers,
 * shared trackers, and the loss count against the publishers' sent counts.
 */
#include <criterion/criterion.h>
#include <signal.h>

#include "bench/bench_track.h"

TestSuite(bench_track);

static struct track t;
static struct track_counts counts;

static void setup(void)
{
    cr_assert_eq(track_init(&t, 4), 0);
    track_expect(&t, 0);
    track_expect(&t, 3);
    track_expect(&t, 3); /* idempotent */
    counts = (struct track_counts){ 0 };
}

static void teardown(void)
{
    track_destroy(&t);
}

Test(bench_track, in_order_has_no_anomalies, .init = setup, .fini = teardown)
{
    for (uint64_t seq = 0; seq < 1000; seq++) {
        cr_assert(track_receive(&t, 0, seq, &counts));
        cr_assert(track_receive(&t, 3, seq, &counts));
    }
    uint64_t sent[4] = { 1000, 0, 0, 1000 };
    cr_expect_eq(t.pair_count, 2);
    cr_expect_eq(counts.received, 2000);
    cr_expect_eq(counts.unique, 2000);
    cr_expect_eq(counts.duplicated + counts.reordered + counts.unexpected, 0);
    cr_expect_eq(track_lost(&t, sent), 0);
    cr_expect_eq(track_expected(&t, sent), 2000);
}

Test(bench_track, gap_is_lost_and_tail_is_lost, .init = setup, .fini = teardown)
{
    /* 0..9 without 4, 5; the publisher sent 12: 4, 5, 10, 11 are lost. */
    for (uint64_t seq = 0; seq < 10; seq++)
        if (seq != 4 && seq != 5)
            track_receive(&t, 0, seq, &counts);
    uint64_t sent[4] = { 12, 0, 0, 0 };
    cr_expect_eq(track_lost(&t, sent), 4);
    cr_expect_eq(counts.reordered, 0);
}

Test(bench_track, publisher_never_heard_is_all_lost, .init = setup, .fini = teardown)
{
    uint64_t sent[4] = { 0, 0, 0, 77 };
    cr_expect_eq(track_lost(&t, sent), 77);
}

Test(bench_track, late_message_is_reordered_not_lost, .init = setup, .fini = teardown)
{
    track_receive(&t, 0, 0, &counts);
    track_receive(&t, 0, 2, &counts);
    track_receive(&t, 0, 3, &counts);
    cr_expect(track_receive(&t, 0, 1, &counts));
    uint64_t sent[4] = { 4, 0, 0, 0 };
    cr_expect_eq(counts.reordered, 1);
    cr_expect_eq(counts.duplicated, 0);
    cr_expect_eq(track_lost(&t, sent), 0);
}

Test(bench_track, duplicates_near_and_far, .init = setup, .fini = teardown)
{
    for (uint64_t seq = 0; seq < 100000; seq++)
        track_receive(&t, 0, seq, &counts);
    cr_expect_not(track_receive(&t, 0, 99999, &counts)); /* the newest */
    cr_expect_not(track_receive(&t, 0, 99936, &counts)); /* 63 below the newest */
    cr_expect_not(track_receive(&t, 0, 0, &counts));     /* the oldest */
    cr_expect_eq(counts.duplicated, 3);
    cr_expect_eq(counts.unique, 100000);
}

Test(bench_track, far_behind_is_reordered_not_duplicated, .init = setup, .fini = teardown)
{
    /* A shared group's members interleave one publisher's messages by thousands. */
    track_receive(&t, 0, 0, &counts);
    track_receive(&t, 0, 50000, &counts);
    cr_expect(track_receive(&t, 0, 5, &counts));
    cr_expect_not(track_receive(&t, 0, 5, &counts));
    cr_expect_eq(counts.reordered, 1);
    cr_expect_eq(counts.duplicated, 1);
    uint64_t sent[4] = { 50001, 0, 0, 0 };
    cr_expect_eq(track_lost(&t, sent), 49998);
}

Test(bench_track, gap_then_fill, .init = setup, .fini = teardown)
{
    track_receive(&t, 3, 0, &counts);
    track_receive(&t, 3, 100, &counts);
    cr_expect(track_receive(&t, 3, 99, &counts)); /* just below: new */
    cr_expect_not(track_receive(&t, 3, 100, &counts));
    cr_expect_eq(counts.reordered, 1);
    cr_expect_eq(counts.duplicated, 1);
    uint64_t sent[4] = { 0, 0, 0, 101 };
    cr_expect_eq(track_lost(&t, sent), 98); /* 1..98 */
}

Test(bench_track, number_past_the_limit_fails_loudly, .init = setup, .fini = teardown)
{
    cr_expect_not(track_receive(&t, 0, TRACK_SEQ_MAX, &counts));
    cr_expect_eq(counts.duplicated, 1);
    cr_expect_eq(counts.unique, 0);
}

Test(bench_track, unexpected_publisher, .init = setup, .fini = teardown)
{
    cr_expect_not(track_receive(&t, 1, 0, &counts));
    cr_expect_not(track_receive(&t, 123456, 0, &counts));
    cr_expect_eq(counts.unexpected, 2);
    cr_expect_eq(counts.received, 2);
    cr_expect_eq(counts.unique, 0);
}

Test(bench_track, many_publishers)
{
    struct track big;
    struct track_counts c = { 0 };
    cr_assert_eq(track_init(&big, 1000), 0);
    static uint64_t sent[1000];
    for (uint32_t p = 0; p < 1000; p++) {
        track_expect(&big, p);
        sent[p] = 10;
    }
    for (uint64_t seq = 0; seq < 10; seq++)
        for (uint32_t p = 0; p < 1000; p++)
            if (!(p == 500 && seq == 9))
                track_receive(&big, p, seq, &c);
    cr_expect_eq(track_lost(&big, sent), 1);
    cr_expect_eq(track_expected(&big, sent), 10000);
    cr_expect_eq(c.unique, 9999);
    track_destroy(&big);
}

Test(bench_track, too_many_pairs_asserts, .signal = SIGABRT)
{
    struct track small;
    cr_assert_eq(track_init(&small, 1), 0);
    track_expect(&small, 1);
    track_expect(&small, 2);
}
