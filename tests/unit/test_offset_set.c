/* tests/unit/test_offset_set.c - the (origin, log offset) multiset of core/offset_set.h:
 * counting, removal of absent entries, the floor per origin, and a long random run checked
 * against a plain array after every operation (probe runs that wrap around the table, removals
 * in the middle of a run, growth and the release of a grown table). */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "core/offset_set.h"

TestSuite(offset_set);

Test(offset_set, counts_each_position_and_forgets_it_at_zero)
{
    struct offset_set set = { 0 };
    cr_assert_eq(offset_set_add(&set, 1, 4096), 0);
    cr_assert_eq(offset_set_add(&set, 1, 4096), 0);
    cr_assert_eq(offset_set_add(&set, 0, 4096), 0);
    cr_assert_eq(set.used, 2);
    cr_assert_eq(offset_set_count(&set, 1, 4096), 2);
    cr_assert_eq(offset_set_count(&set, 0, 4096), 1);
    cr_assert(offset_set_remove(&set, 1, 4096));
    cr_assert_eq(offset_set_count(&set, 1, 4096), 1);
    cr_assert(offset_set_remove(&set, 1, 4096));
    cr_assert_eq(offset_set_count(&set, 1, 4096), 0);
    cr_assert_not(offset_set_remove(&set, 1, 4096), "absent: nothing changes");
    cr_assert_eq(offset_set_count(&set, 0, 4096), 1);
    cr_assert_eq(set.used, 1);
    offset_set_clear(&set);
    cr_assert_null(set.slots);
}

Test(offset_set, empty_set_answers_without_a_table)
{
    struct offset_set set = { 0 };
    cr_assert_not(offset_set_remove(&set, 0, 0));
    cr_assert_eq(offset_set_count(&set, 0, 0), 0);
    uint64_t floor[2] = { 100, 200 };
    offset_set_floor(&set, floor, 2);
    cr_assert_eq(floor[0], 100);
    cr_assert_eq(floor[1], 200);
}

Test(offset_set, floor_is_the_oldest_per_origin_and_ignores_unknown_origins)
{
    struct offset_set set = { 0 };
    cr_assert_eq(offset_set_add(&set, 0, 800), 0);
    cr_assert_eq(offset_set_add(&set, 0, 160), 0);
    cr_assert_eq(offset_set_add(&set, 1, 9000), 0);
    cr_assert_eq(offset_set_add(&set, 7, 8), 0); /* beyond origin_count */
    uint64_t floor[3] = { 1000, 1000, 1000 };
    offset_set_floor(&set, floor, 3);
    cr_assert_eq(floor[0], 160);
    cr_assert_eq(floor[1], 1000, "never raised");
    cr_assert_eq(floor[2], 1000);
    offset_set_clear(&set);
}

Test(offset_set, grown_table_goes_when_the_set_empties)
{
    struct offset_set set = { 0 };
    for (uint64_t i = 0; i < 1000; i++)
        cr_assert_eq(offset_set_add(&set, 0, i * 8), 0);
    cr_assert_geq(set.mask + 1, 2000u, "at most half full");
    for (uint64_t i = 0; i < 1000; i++)
        cr_assert(offset_set_remove(&set, 0, i * 8));
    cr_assert_null(set.slots);
    cr_assert_eq(set.used, 0);
}

#define REF_MAX 1024u /* 3 origins x 300 offsets */

struct ref_entry {
    uint16_t origin;
    uint64_t log_off;
    uint32_t count;
};

Test(offset_set, random_operations_match_a_reference)
{
    struct offset_set set = { 0 };
    struct ref_entry ref[REF_MAX] = { 0 };
    uint32_t ref_len = 0;
    srand(7);
    for (uint32_t step = 0; step < 200000; step++) {
        /* Few distinct values, so the same position comes back often and runs collide. */
        uint16_t origin = (uint16_t)(rand() % 3);
        uint64_t log_off = (uint64_t)(rand() % 300) * 8;
        uint32_t k = 0;
        while (k < ref_len && (ref[k].origin != origin || ref[k].log_off != log_off))
            k++;
        /* Grow more than shrink in the first half, the reverse in the second. */
        bool add = (rand() % 100) < (step < 100000 ? 60 : 35);
        if (add) {
            cr_assert_eq(offset_set_add(&set, origin, log_off), 0);
            if (k == ref_len)
                ref[ref_len++] = (struct ref_entry){ origin, log_off, 0 };
            ref[k].count++;
        } else {
            bool had = k < ref_len;
            cr_assert_eq(offset_set_remove(&set, origin, log_off), had, "step %u", step);
            if (had && --ref[k].count == 0)
                ref[k] = ref[--ref_len];
        }
        if (step % 97 == 0 || step > 199000) {
            cr_assert_eq(set.used, ref_len, "step %u", step);
            uint64_t floor[3] = { UINT64_MAX, UINT64_MAX, UINT64_MAX };
            uint64_t want[3] = { UINT64_MAX, UINT64_MAX, UINT64_MAX };
            for (uint32_t i = 0; i < ref_len; i++) {
                cr_assert_eq(offset_set_count(&set, ref[i].origin, ref[i].log_off),
                             ref[i].count, "step %u", step);
                want[ref[i].origin] = MIN(want[ref[i].origin], ref[i].log_off);
            }
            offset_set_floor(&set, floor, 3);
            for (int o = 0; o < 3; o++)
                cr_assert_eq(floor[o], want[o], "step %u origin %d", step, o);
        }
    }
    offset_set_clear(&set);
}
