/* core/histogram.h - a log-linear latency histogram (our own; Debian packages no C
 * HdrHistogram), used by the load generators and by the commit log (commit latency).
 *
 * Values are unsigned integers (keelmq-bench records nanoseconds, the commit log
 * microseconds). Values below 128 have one
 * bucket each; above, every power-of-two range [2^k, 2^(k+1)) is split linearly into 64
 * buckets, so a bucket's width is at most 1/64 of its lower bound: a percentile is reported
 * within 1.6 % of the true value (always at or above it, like HdrHistogram's "highest
 * equivalent value"). The range ends at HISTOGRAM_VALUE_MAX (2^36 - 1 ns, about 68.7 s);
 * larger values are counted in the last bucket and in `clamped_count`. The exact minimum and
 * maximum are kept beside the buckets. 16 KiB, no allocation.
 *
 * Not thread-safe: one owner; merge copies from another histogram the caller owns or has
 * exclusive access to.
 */
#ifndef KEELMQ_CORE_HISTOGRAM_H
#define KEELMQ_CORE_HISTOGRAM_H

#include "core/base.h"

#define HISTOGRAM_SUB_BITS 6u                         /* 64 linear buckets per power of two */
#define HISTOGRAM_VALUE_BITS 36u
#define HISTOGRAM_VALUE_MAX ((1ull << HISTOGRAM_VALUE_BITS) - 1u)
#define HISTOGRAM_BUCKETS \
    (((HISTOGRAM_VALUE_BITS - HISTOGRAM_SUB_BITS) << HISTOGRAM_SUB_BITS) + \
     (1u << HISTOGRAM_SUB_BITS))

struct histogram {
    uint64_t total_count;
    uint64_t clamped_count; /* values above HISTOGRAM_VALUE_MAX */
    uint64_t min;           /* exact; UINT64_MAX while empty */
    uint64_t max;           /* exact; 0 while empty */
    uint64_t counts[HISTOGRAM_BUCKETS];
};

/* Empties `h`. */
void histogram_reset(struct histogram *h);

/* Index of the bucket holding `value` (clamped to HISTOGRAM_VALUE_MAX). Pure. */
uint32_t histogram_bucket_idx(uint64_t value);

/* Highest value that falls into bucket `idx` (< HISTOGRAM_BUCKETS). Pure. */
uint64_t histogram_bucket_high(uint32_t idx);

/* Records `value` `n` times (n > 0). */
static inline void histogram_record_n(struct histogram *h, uint64_t value, uint64_t n)
{
    h->counts[histogram_bucket_idx(value)] += n;
    h->total_count += n;
    if (UNLIKELY(value > HISTOGRAM_VALUE_MAX))
        h->clamped_count += n;
    if (value < h->min)
        h->min = value;
    if (value > h->max)
        h->max = value;
}

static inline void histogram_record(struct histogram *h, uint64_t value)
{
    histogram_record_n(h, value, 1);
}

/* The value below or at which `percentile` % (0 < percentile <= 100) of the recorded values
 * lie, as the highest value of the bucket holding that rank, but never above the exact
 * maximum. 0 when `h` is empty. */
uint64_t histogram_percentile(const struct histogram *h, double percentile);

/* Adds every value recorded in `src` (borrowed) to `dst`. */
void histogram_merge(struct histogram *dst, const struct histogram *src);

#endif
