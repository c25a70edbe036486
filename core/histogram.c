/* core/histogram.c - log-linear histogram (layout and precision in core/histogram.h).
 * One owner per histogram; no allocation.
 *
 * Index arithmetic: with H = 2^HISTOGRAM_SUB_BITS, a value v < 2H is its own index. For a
 * larger v with highest set bit m, shift = m - SUB_BITS and the mantissa v >> shift lies in
 * [H, 2H); the index is shift * H + mantissa, so consecutive powers of two occupy consecutive
 * runs of H indexes and the table has no holes.
 */
#include "core/histogram.h"

#include <string.h>

STATIC_ASSERT(HISTOGRAM_BUCKETS == 1984, "36-bit values with 64 sub-buckets: 1984 buckets");

void histogram_reset(struct histogram *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

uint32_t histogram_bucket_idx(uint64_t value)
{
    const uint64_t half = 1ull << HISTOGRAM_SUB_BITS;
    if (value > HISTOGRAM_VALUE_MAX)
        value = HISTOGRAM_VALUE_MAX;
    if (value < 2 * half)
        return (uint32_t)value;
    uint32_t msb = 63u - (uint32_t)__builtin_clzll(value);
    uint32_t shift = msb - HISTOGRAM_SUB_BITS;
    uint32_t idx = (shift << HISTOGRAM_SUB_BITS) + (uint32_t)(value >> shift);
    ASSERT_HOT(idx < HISTOGRAM_BUCKETS);
    return idx;
}

uint64_t histogram_bucket_high(uint32_t idx)
{
    const uint32_t half = 1u << HISTOGRAM_SUB_BITS;
    ASSERT(idx < HISTOGRAM_BUCKETS);
    if (idx < 2 * half)
        return idx;
    uint32_t shift = (idx >> HISTOGRAM_SUB_BITS) - 1u;
    uint64_t mantissa = idx - (shift << HISTOGRAM_SUB_BITS);
    ASSERT(mantissa >= half && mantissa < 2u * half);
    return (mantissa << shift) + ((1ull << shift) - 1u);
}

uint64_t histogram_percentile(const struct histogram *h, double percentile)
{
    ASSERT(percentile > 0.0 && percentile <= 100.0);
    if (h->total_count == 0)
        return 0;
    /* Rank of the wanted value, 1-based: the smallest rank covering `percentile` %. */
    double exact = percentile / 100.0 * (double)h->total_count;
    uint64_t rank = (uint64_t)exact;
    if ((double)rank < exact)
        rank++;
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (uint32_t i = 0; i < HISTOGRAM_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            uint64_t high = histogram_bucket_high(i);
            return high > h->max ? h->max : high;
        }
    }
    return h->max;
}

void histogram_merge(struct histogram *dst, const struct histogram *src)
{
    ASSERT(dst != src);
    for (uint32_t i = 0; i < HISTOGRAM_BUCKETS; i++)
        dst->counts[i] += src->counts[i];
    dst->total_count += src->total_count;
    dst->clamped_count += src->clamped_count;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
}
