/* tests/unit/test_histogram.c - core/histogram: bucket layout, percentiles against known
 * distributions within the documented 1/64 precision, merge, and the edges (0, the largest
 * value, values past it, an empty histogram).
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdlib.h>

#include "core/histogram.h"

TestSuite(histogram);

static struct histogram *new_histogram(void)
{
    struct histogram *h = malloc(sizeof(*h));
    cr_assert_not_null(h);
    histogram_reset(h);
    return h;
}

/* The reported percentile is the bucket's highest value: at or above the true value and
 * within 1/64 of it. */
static void expect_close(uint64_t got, uint64_t want)
{
    cr_expect(got >= want, "got %llu, want at least %llu", (unsigned long long)got,
              (unsigned long long)want);
    cr_expect((double)got <= (double)want * (1.0 + 1.0 / 64.0) + 1.0,
              "got %llu, want within 1/64 of %llu", (unsigned long long)got,
              (unsigned long long)want);
}

Test(histogram, small_values_have_exact_buckets)
{
    for (uint64_t v = 0; v < 128; v++) {
        cr_expect_eq(histogram_bucket_idx(v), v);
        cr_expect_eq(histogram_bucket_high((uint32_t)v), v);
    }
}

Test(histogram, buckets_are_contiguous_and_narrow)
{
    /* Every bucket starts right after the previous one ends, and is at most 1/64 wide. */
    uint64_t prev_high = histogram_bucket_high(127);
    for (uint32_t i = 128; i < HISTOGRAM_BUCKETS; i++) {
        uint64_t low = prev_high + 1;
        uint64_t high = histogram_bucket_high(i);
        cr_assert_eq(histogram_bucket_idx(low), i);
        cr_assert_eq(histogram_bucket_idx(high), i);
        cr_assert((double)(high - low + 1) <= (double)low / 64.0 + 1e-9);
        prev_high = high;
    }
    cr_expect_eq(prev_high, HISTOGRAM_VALUE_MAX);
}

Test(histogram, uniform_microseconds_percentiles)
{
    /* 1 us .. 1 s in 1 us steps, recorded in ns: percentile p is p% of 1e6 us. */
    struct histogram *h = new_histogram();
    for (uint64_t us = 1; us <= 1000000; us++)
        histogram_record(h, us * 1000);
    cr_expect_eq(h->total_count, 1000000);
    const double percentiles[] = { 50, 90, 99, 99.9, 100 };
    for (size_t i = 0; i < sizeof(percentiles) / sizeof(percentiles[0]); i++) {
        uint64_t want = (uint64_t)(percentiles[i] * 10000.0 + 0.5) * 1000;
        expect_close(histogram_percentile(h, percentiles[i]), want);
    }
    cr_expect_eq(histogram_percentile(h, 100), 1000000000ull); /* the exact max */
    cr_expect_eq(h->min, 1000);
    free(h);
}

Test(histogram, skewed_distribution)
{
    /* 990 values of 100 us and 10 of 50 ms: p50 and p99 at 100 us, p99.9 at 50 ms. */
    struct histogram *h = new_histogram();
    for (int i = 0; i < 990; i++)
        histogram_record(h, 100000);
    for (int i = 0; i < 10; i++)
        histogram_record(h, 50000000);
    expect_close(histogram_percentile(h, 50), 100000);
    expect_close(histogram_percentile(h, 99), 100000);
    cr_expect_eq(histogram_percentile(h, 99.9), 50000000); /* clamped to the exact max */
    free(h);
}

Test(histogram, merge_adds_counts_min_and_max)
{
    struct histogram *a = new_histogram();
    struct histogram *b = new_histogram();
    struct histogram *all = new_histogram();
    for (uint64_t v = 1; v <= 20000; v++) {
        histogram_record(v % 2 ? a : b, v * 997);
        histogram_record(all, v * 997);
    }
    histogram_merge(a, b);
    cr_expect_eq(a->total_count, 20000);
    cr_expect_eq(a->min, 997);
    cr_expect_eq(a->max, 20000ull * 997);
    for (double p = 1; p <= 100; p += 7.5)
        cr_expect_eq(histogram_percentile(a, p), histogram_percentile(all, p));
    free(a);
    free(b);
    free(all);
}

Test(histogram, merge_of_empty_changes_nothing)
{
    struct histogram *a = new_histogram();
    struct histogram *empty = new_histogram();
    histogram_record(a, 42);
    histogram_merge(a, empty);
    cr_expect_eq(a->total_count, 1);
    cr_expect_eq(a->min, 42);
    cr_expect_eq(a->max, 42);
    free(a);
    free(empty);
}

Test(histogram, edges)
{
    struct histogram *h = new_histogram();
    cr_expect_eq(histogram_percentile(h, 99), 0); /* empty */
    histogram_record(h, 0);
    cr_expect_eq(histogram_percentile(h, 50), 0);
    histogram_record(h, HISTOGRAM_VALUE_MAX);
    cr_expect_eq(h->clamped_count, 0);
    histogram_record(h, UINT64_MAX);
    cr_expect_eq(h->clamped_count, 1);
    cr_expect_eq(histogram_bucket_idx(UINT64_MAX), HISTOGRAM_BUCKETS - 1);
    cr_expect_eq(h->counts[HISTOGRAM_BUCKETS - 1], 2);
    cr_expect_eq(h->max, UINT64_MAX); /* the exact max survives the clamp */
    cr_expect_eq(histogram_percentile(h, 100), HISTOGRAM_VALUE_MAX);
    cr_expect_eq(histogram_percentile(h, 1), 0);
    free(h);
}

Test(histogram, single_value_reports_itself)
{
    struct histogram *h = new_histogram();
    histogram_record(h, 123456789);
    cr_expect_eq(histogram_percentile(h, 0.001), 123456789);
    cr_expect_eq(histogram_percentile(h, 100), 123456789);
    free(h);
}

Test(histogram, percentile_zero_asserts, .signal = SIGABRT)
{
    struct histogram *h = new_histogram();
    (void)histogram_percentile(h, 0);
}
