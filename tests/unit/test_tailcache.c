/* tests/unit/test_tailcache.c - unit tests for store/tailcache: what is held after contiguous
 * writes of many sizes (against a reference copy of the whole log), reads inside, across the
 * ring's end (copied to scratch) and outside the held range, a gap, a write larger than the
 * cache, a cache of size 0, and skipped ranges (holes) that miss until the ring laps them. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "store/tailcache.h"

#define LOG_LEN (1u << 20)

TestSuite(tailcache, .timeout = 60);

static uint8_t ref[LOG_LEN];

static void fill_ref(void)
{
    uint32_t x = 12345;
    for (uint32_t i = 0; i < LOG_LEN; i++) {
        x = x * 1103515245u + 12345u;
        ref[i] = (uint8_t)(x >> 16);
    }
}

Test(tailcache, holds_the_newest_bytes_and_reads_them_back)
{
    fill_ref();
    const uint64_t caps[] = { 4096, 10000, 65536 };
    static uint8_t scratch[LOG_LEN];
    for (uint32_t c = 0; c < ARRAY_LEN(caps); c++) {
        struct tailcache tc;
        cr_assert_eq(tailcache_init(&tc, caps[c]), 0);
        uint64_t off = 0;
        uint32_t step = 1;
        uint32_t wrapped = 0;
        while (off < LOG_LEN / 4) {
            uint32_t len = (step * 7919u) % 9000u + 1u;
            step++;
            if (off + len > LOG_LEN / 4)
                len = (uint32_t)(LOG_LEN / 4 - off);
            tailcache_put(&tc, off, ref + off, len);
            off += len;
            cr_assert_eq(tc.hi, off);
            cr_assert_eq(tc.lo, off > caps[c] ? off - caps[c] : 0, "keeps the last cap bytes");
            /* Every few writes: reads at the edges and inside. */
            uint64_t edge = tc.hi - tc.hi % caps[c]; /* where the ring's end lies in the log */
            uint64_t across = edge >= tc.lo + 5 && edge + 5 <= tc.hi ? edge - 5 : tc.lo;
            const uint64_t starts[] = { tc.lo, tc.lo + (tc.hi - tc.lo) / 3, tc.hi - 1, across };
            for (uint32_t k = 0; k < ARRAY_LEN(starts); k++) {
                uint64_t at = starts[k];
                uint32_t n = (uint32_t)MIN(tc.hi - at, k == 3 ? 10u : 777u);
                const uint8_t *p = tailcache_get(&tc, at, n, scratch, sizeof(scratch));
                cr_assert_not_null(p, "cap %lu: %lu+%u held", caps[c], at, n);
                cr_assert_eq(memcmp(p, ref + at, n), 0, "cap %lu: bytes of %lu+%u", caps[c], at,
                             n);
                wrapped += p == scratch;
            }
            if (tc.lo > 0)
                cr_assert_null(tailcache_get(&tc, tc.lo - 1, 2, scratch, sizeof(scratch)),
                               "below the held range");
            cr_assert_null(tailcache_get(&tc, tc.hi - 1, 2, scratch, sizeof(scratch)),
                           "beyond the written end");
        }
        cr_assert_gt(wrapped, 0, "some reads crossed the ring's end");
        /* A wrapped read that does not fit the scratch is a miss, never a partial answer. */
        uint64_t edge = tc.hi - tc.hi % caps[c];
        if (edge > tc.lo + 8 && edge + 8 <= tc.hi)
            cr_assert_null(tailcache_get(&tc, edge - 8, 16, scratch, 15));
        cr_assert_gt(tc.hits, 0);
        cr_assert_gt(tc.misses, 0);
        tailcache_free(&tc);
    }
}

Test(tailcache, a_gap_or_a_huge_write_restarts_it)
{
    fill_ref();
    uint8_t scratch[64];
    struct tailcache tc;
    cr_assert_eq(tailcache_init(&tc, 8192), 0);
    tailcache_put(&tc, 0, ref, 4096);
    tailcache_put(&tc, 100000, ref + 100000, 4096); /* not contiguous */
    cr_assert_eq(tc.lo, 100000);
    cr_assert_eq(tc.hi, 104096);
    cr_assert_null(tailcache_get(&tc, 0, 16, scratch, sizeof(scratch)));
    const uint8_t *p = tailcache_get(&tc, 100010, 16, scratch, sizeof(scratch));
    cr_assert_not_null(p);
    cr_assert_eq(memcmp(p, ref + 100010, 16), 0);
    /* Larger than the cache: only its last 8192 bytes stay. */
    tailcache_put(&tc, 104096, ref + 104096, 20000);
    cr_assert_eq(tc.hi, 124096);
    cr_assert_eq(tc.lo, 124096 - 8192);
    p = tailcache_get(&tc, 124096 - 64, 64, scratch, sizeof(scratch));
    cr_assert_not_null(p);
    cr_assert_eq(memcmp(p, ref + 124096 - 64, 64), 0);
    cr_assert_null(tailcache_get(&tc, 124096 - 8193, 4, scratch, sizeof(scratch)));
    tailcache_free(&tc);
}

Test(tailcache, size_zero_holds_nothing)
{
    fill_ref();
    uint8_t scratch[64];
    struct tailcache tc;
    cr_assert_eq(tailcache_init(&tc, 0), 0);
    tailcache_put(&tc, 0, ref, 4096);
    cr_assert_null(tailcache_get(&tc, 0, 16, scratch, sizeof(scratch)));
    cr_assert_null(tailcache_get(&tc, 0, 0, scratch, sizeof(scratch)));
    tailcache_free(&tc);
}

Test(tailcache, skipped_bytes_are_holes_that_miss_until_they_leave)
{
    fill_ref();
    uint8_t scratch[64];
    struct tailcache tc;
    cr_assert_eq(tailcache_init(&tc, 16384), 0);
    tailcache_put(&tc, 0, ref, 4096);
    tailcache_skip(&tc, 4096, 4096);
    tailcache_skip(&tc, 8192, 2048); /* adjacent: the same hole grows */
    cr_assert_eq(tc.hole_count, 1);
    tailcache_put(&tc, 10240, ref + 10240, 4096);
    cr_assert_eq(tc.lo, 0);
    cr_assert_eq(tc.hi, 14336);
    /* Around the hole: held bytes read back; anything touching it misses. */
    const uint8_t *p = tailcache_get(&tc, 4000, 96, scratch, sizeof(scratch));
    cr_assert_not_null(p);
    cr_assert_eq(memcmp(p, ref + 4000, 96), 0);
    p = tailcache_get(&tc, 10240, 64, scratch, sizeof(scratch));
    cr_assert_not_null(p);
    cr_assert_eq(memcmp(p, ref + 10240, 64), 0);
    cr_assert_null(tailcache_get(&tc, 4090, 8, scratch, sizeof(scratch)));
    cr_assert_null(tailcache_get(&tc, 6000, 16, scratch, sizeof(scratch)));
    cr_assert_null(tailcache_get(&tc, 10230, 16, scratch, sizeof(scratch)));
    /* Once the ring laps, the old hole's positions hold new bytes, which read back. */
    tailcache_put(&tc, 14336, ref + 14336, 16384);
    cr_assert_eq(tc.hole_count, 0, "the hole left with the bytes it covered");
    p = tailcache_get(&tc, 20480 + 6000, 16, scratch, sizeof(scratch));
    cr_assert_not_null(p);
    cr_assert_eq(memcmp(p, ref + 26480, 16), 0);
    /* The stale bytes of an older lap under a fresh hole are never returned. */
    tailcache_skip(&tc, 30720, 4096);
    cr_assert_null(tailcache_get(&tc, 30720, 16, scratch, sizeof(scratch)));
    cr_assert_eq(tc.hi, 34816);
    tailcache_free(&tc);
}

Test(tailcache, too_many_holes_forget_the_oldest_part)
{
    fill_ref();
    uint8_t scratch[64];
    struct tailcache tc;
    cr_assert_eq(tailcache_init(&tc, 1u << 19), 0);
    uint64_t off = 0;
    for (uint32_t i = 0; i < TAILCACHE_HOLES_MAX + 3; i++) {
        tailcache_put(&tc, off, ref + off, 1000);
        tailcache_skip(&tc, off + 1000, 1000);
        off += 2000;
        cr_assert_leq(tc.hole_count, TAILCACHE_HOLES_MAX);
    }
    cr_assert_eq(tc.hole_count, TAILCACHE_HOLES_MAX);
    cr_assert_eq(tc.lo, tc.holes[0].off - 1000, "held: from the put before the oldest hole");
    cr_assert_null(tailcache_get(&tc, 0, 16, scratch, sizeof(scratch)), "forgotten");
    /* Every remembered put still reads back; every hole misses. */
    uint32_t checked = 0;
    for (uint64_t at = tc.lo; at < off; at += 2000) {
        const uint8_t *p = tailcache_get(&tc, at, 16, scratch, sizeof(scratch));
        cr_assert_not_null(p);
        cr_assert_eq(memcmp(p, ref + at, 16), 0);
        cr_assert_null(tailcache_get(&tc, at + 1010, 16, scratch, sizeof(scratch)));
        checked++;
    }
    cr_assert_eq(checked, TAILCACHE_HOLES_MAX);
    /* A gap forgets the holes too. */
    tailcache_skip(&tc, off + 4096, 100);
    cr_assert_eq(tc.hole_count, 1);
    cr_assert_eq(tc.lo, off + 4096);
    tailcache_free(&tc);
}
