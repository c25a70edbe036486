/* tests/unit/test_spsc.c - unit tests for core/spsc: argument checks, full ring, publish
 * visibility, reclaim, 32-bit index wraparound, and a two-thread stress test.
 *
 * Single-threaded tests drive both sides from the test thread. The stress test runs a producer
 * and a consumer thread; run it under -fsanitize=thread as well (see the report in the commit).
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/spsc.h"

#define STRESS_MESSAGE_COUNT 10000000u
#define STRESS_CAPACITY 1024u
#define STRESS_BATCH_MAX 64u

struct stress_entry {
    uint64_t sequence; /* written by the producer */
    uint64_t ack;      /* written by the consumer: sequence ^ ACK_MARK */
};
#define ACK_MARK UINT64_C(0x5a5a5a5a5a5a5a5a)

/* Places every index of the empty ring `r` at `start`, so tests can cross UINT32_MAX without
 * pushing four billion entries. Only before any other thread uses `r`; the plain assignments to
 * the _Atomic fields are sequentially consistent stores, which is harmless here. */
static void spsc_test_start_at(struct spsc *r, uint32_t start)
{
    r->tail = start;
    r->tail_local = start;
    r->reclaimed = start;
    r->head_cache = start;
    r->head = start;
    r->tail_cache = start;
}

static uint64_t *push(struct spsc *r, uint64_t value)
{
    uint64_t *slot = spsc_slot(r);
    if (slot != NULL)
        *slot = value;
    return slot;
}

Test(spsc, init_rejects_capacity_not_power_of_two, .signal = SIGABRT)
{
    struct spsc r;
    spsc_init(&r, 3, 8);
}

Test(spsc, init_rejects_capacity_one, .signal = SIGABRT)
{
    struct spsc r;
    spsc_init(&r, 1, 8);
}

Test(spsc, init_rejects_capacity_zero, .signal = SIGABRT)
{
    struct spsc r;
    spsc_init(&r, 0, 8);
}

Test(spsc, init_rejects_entry_size_not_multiple_of_8, .signal = SIGABRT)
{
    struct spsc r;
    spsc_init(&r, 4, 12);
}

Test(spsc, init_rejects_entry_size_zero, .signal = SIGABRT)
{
    struct spsc r;
    spsc_init(&r, 4, 0);
}

Test(spsc, init_gives_an_empty_ring)
{
    struct spsc r;
    cr_assert_eq(spsc_init(&r, 2, 8), 0);
    cr_assert(spsc_is_empty(&r));
    cr_assert_eq(spsc_available(&r), 0);
    cr_assert_eq(spsc_reclaimable(&r), 0);
    cr_assert_eq((uintptr_t)r.entries % CACHE_LINE, 0);
    spsc_destroy(&r);
}

Test(spsc, slot_returns_null_when_full)
{
    struct spsc r;
    cr_assert_eq(spsc_init(&r, 8, 8), 0);
    for (uint64_t i = 0; i < 8; i++)
        cr_assert_not_null(push(&r, i));
    cr_assert_null(spsc_slot(&r));
    spsc_publish(&r);
    cr_assert_null(spsc_slot(&r), "publishing does not free slots");
    cr_assert_eq(spsc_available(&r), 8);
    spsc_destroy(&r);
}

Test(spsc, entries_are_invisible_until_published)
{
    struct spsc r;
    cr_assert_eq(spsc_init(&r, 8, 8), 0);
    push(&r, 1);
    push(&r, 2);
    cr_assert_eq(spsc_available(&r), 0);
    cr_assert(spsc_is_empty(&r));
    spsc_publish(&r);
    push(&r, 3);
    cr_assert_eq(spsc_available(&r), 2);
    cr_assert_not(spsc_is_empty(&r));
    cr_assert_eq(*(uint64_t *)spsc_entry(&r, 0), 1);
    cr_assert_eq(*(uint64_t *)spsc_entry(&r, 1), 2);
    spsc_consumed(&r, 2);
    cr_assert_eq(spsc_available(&r), 0);
    cr_assert(spsc_is_empty(&r));
    spsc_publish(&r);
    cr_assert_eq(spsc_available(&r), 1);
    cr_assert_eq(*(uint64_t *)spsc_entry(&r, 0), 3);
    spsc_destroy(&r);
}

Test(spsc, consumed_entries_stay_until_reclaimed)
{
    struct spsc r;
    cr_assert_eq(spsc_init(&r, 4, 8), 0);
    for (uint64_t i = 0; i < 4; i++)
        push(&r, 100 + i);
    spsc_publish(&r);
    cr_assert_eq(spsc_reclaimable(&r), 0, "nothing is consumed yet");
    cr_assert_eq(spsc_available(&r), 4);
    spsc_consumed(&r, 3);
    cr_assert_null(spsc_slot(&r), "consumed but unreclaimed slots are not reused");
    cr_assert_eq(spsc_reclaimable(&r), 3);
    for (uint32_t i = 0; i < 3; i++)
        cr_assert_eq(*(uint64_t *)spsc_reclaim_entry(&r, i), 100 + i);
    spsc_reclaim(&r, 2);
    cr_assert_eq(spsc_reclaimable(&r), 1);
    cr_assert_eq(*(uint64_t *)spsc_reclaim_entry(&r, 0), 102);
    cr_assert_not_null(push(&r, 200));
    cr_assert_not_null(push(&r, 201));
    cr_assert_null(spsc_slot(&r));
    spsc_reclaim(&r, 1);
    cr_assert_not_null(push(&r, 202));
    cr_assert_null(spsc_slot(&r));
    spsc_publish(&r);
    cr_assert_eq(spsc_available(&r), 1, "the cached view is used until exhausted");
    spsc_consumed(&r, 1);
    cr_assert_eq(spsc_available(&r), 3);
    for (uint32_t i = 0; i < 3; i++)
        cr_assert_eq(*(uint64_t *)spsc_entry(&r, i), 200 + i);
    spsc_destroy(&r);
}

Test(spsc, reclaim_sees_what_the_consumer_wrote)
{
    struct spsc r;
    cr_assert_eq(spsc_init(&r, 2, 16), 0);
    struct stress_entry *e = spsc_slot(&r);
    e->sequence = 7;
    e->ack = 0;
    spsc_publish(&r);
    cr_assert_eq(spsc_available(&r), 1);
    struct stress_entry *seen = spsc_entry(&r, 0);
    seen->ack = seen->sequence ^ ACK_MARK;
    spsc_consumed(&r, 1);
    cr_assert_eq(spsc_reclaimable(&r), 1);
    struct stress_entry *back = spsc_reclaim_entry(&r, 0);
    cr_assert_eq(back->ack, 7 ^ ACK_MARK);
    spsc_reclaim(&r, 1);
    spsc_destroy(&r);
}

#ifdef KEELMQ_DEBUG /* ASSERT_HOT checks are compiled in only with KEELMQ_DEBUG. */
Test(spsc, consumed_more_than_available_asserts, .signal = SIGABRT)
{
    struct spsc r;
    cr_assert_eq(spsc_init(&r, 4, 8), 0);
    push(&r, 1);
    spsc_publish(&r);
    cr_assert_eq(spsc_available(&r), 1);
    spsc_consumed(&r, 2);
}
#endif

Test(spsc, indexes_wrap_past_uint32_max)
{
    struct spsc r;
    cr_assert_eq(spsc_init(&r, 8, 8), 0);
    spsc_test_start_at(&r, UINT32_MAX - 5);
    uint64_t next_push = 0, next_pop = 0, next_reclaim = 0;
    /* 40 rounds of 5 entries cross UINT32_MAX within the first two rounds and keep going. */
    for (int round = 0; round < 40; round++) {
        for (int i = 0; i < 5; i++)
            cr_assert_not_null(push(&r, next_push++));
        spsc_publish(&r);
        uint32_t n = spsc_available(&r);
        cr_assert_eq(n, 5);
        for (uint32_t i = 0; i < n; i++)
            cr_assert_eq(*(uint64_t *)spsc_entry(&r, i), next_pop++);
        spsc_consumed(&r, n);
        cr_assert(spsc_is_empty(&r));
        uint32_t done = spsc_reclaimable(&r);
        cr_assert_eq(done, 5);
        for (uint32_t i = 0; i < done; i++)
            cr_assert_eq(*(uint64_t *)spsc_reclaim_entry(&r, i), next_reclaim++);
        spsc_reclaim(&r, done);
    }
    cr_assert_lt(r.tail_local, UINT32_MAX - 5, "the test did wrap");
    /* Full detection across the wrap: 8 slots, then NULL. */
    for (int i = 0; i < 8; i++)
        cr_assert_not_null(push(&r, next_push++));
    cr_assert_null(spsc_slot(&r));
    spsc_destroy(&r);
}

/* A small deterministic generator so batch sizes vary without libc's shared rand() state. */
static uint32_t xorshift32(uint32_t *state)
{
    uint32_t x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    return x;
}

struct stress_result {
    uint64_t errors;     /* order, loss, duplication or bad ack */
    uint64_t first_bad;  /* first sequence that was wrong, if any */
    uint64_t processed;  /* entries the thread finished */
};

static void *stress_consumer(void *arg)
{
    struct spsc *r = arg;
    struct stress_result *result = calloc(1, sizeof(*result));
    uint32_t seed = 0x9e3779b9u;
    uint64_t expect = 0;
    while (expect < STRESS_MESSAGE_COUNT) {
        uint32_t n = spsc_available(r);
        if (n == 0) {
            sched_yield(); /* The machine may have fewer free cores than threads. */
            continue;
        }
        /* Consume a random prefix so consumption batches differ from production batches. */
        uint32_t take = 1 + xorshift32(&seed) % n;
        for (uint32_t i = 0; i < take; i++) {
            struct stress_entry *e = spsc_entry(r, i);
            if (e->sequence != expect && result->errors++ == 0)
                result->first_bad = e->sequence;
            e->ack = e->sequence ^ ACK_MARK;
            expect++;
        }
        spsc_consumed(r, take);
    }
    result->processed = expect;
    return result;
}

static void stress_reclaim(struct spsc *r, uint64_t *next_reclaim, struct stress_result *result)
{
    uint32_t done = spsc_reclaimable(r);
    for (uint32_t i = 0; i < done; i++) {
        const struct stress_entry *e = spsc_reclaim_entry(r, i);
        bool is_good = e->sequence == *next_reclaim && e->ack == (e->sequence ^ ACK_MARK);
        if (!is_good && result->errors++ == 0)
            result->first_bad = *next_reclaim;
        (*next_reclaim)++;
    }
    spsc_reclaim(r, done);
}

static void stress_run(uint32_t start_index)
{
    struct spsc r;
    cr_assert_eq(spsc_init(&r, STRESS_CAPACITY, sizeof(struct stress_entry)), 0);
    spsc_test_start_at(&r, start_index);
    pthread_t consumer;
    cr_assert_eq(pthread_create(&consumer, NULL, stress_consumer, &r), 0);

    struct stress_result produced = { 0 };
    uint32_t seed = 12345;
    uint64_t next_push = 0, next_reclaim = 0;
    while (next_push < STRESS_MESSAGE_COUNT) {
        uint32_t batch = 1 + xorshift32(&seed) % STRESS_BATCH_MAX;
        uint32_t filled = 0;
        while (filled < batch && next_push < STRESS_MESSAGE_COUNT) {
            struct stress_entry *e = spsc_slot(&r);
            if (e == NULL) {
                stress_reclaim(&r, &next_reclaim, &produced);
                if (spsc_reclaimable(&r) == 0 && filled == 0)
                    sched_yield();
                if (filled > 0)
                    break; /* Publish what we have so the consumer can make progress. */
                continue;
            }
            e->sequence = next_push++;
            e->ack = 0;
            filled++;
        }
        spsc_publish(&r);
    }
    void *consumer_result;
    cr_assert_eq(pthread_join(consumer, &consumer_result), 0);
    struct stress_result *consumed = consumer_result;
    /* The cached view of head may be stale; reclaim until the reloaded view shows nothing. */
    while (spsc_reclaimable(&r) > 0)
        stress_reclaim(&r, &next_reclaim, &produced);

    cr_assert_eq(consumed->errors, 0, "consumer saw %llu bad entries, first %llu",
                 (unsigned long long)consumed->errors, (unsigned long long)consumed->first_bad);
    cr_assert_eq(consumed->processed, STRESS_MESSAGE_COUNT);
    cr_assert_eq(produced.errors, 0, "producer reclaimed %llu bad entries, first %llu",
                 (unsigned long long)produced.errors, (unsigned long long)produced.first_bad);
    cr_assert_eq(next_reclaim, STRESS_MESSAGE_COUNT, "every entry is reclaimed exactly once");
    cr_assert(spsc_is_empty(&r));
    free(consumed);
    spsc_destroy(&r);
}

Test(spsc, two_threads_keep_order_without_loss_or_duplication, .timeout = 120)
{
    stress_run(0);
}

Test(spsc, two_threads_across_index_wraparound, .timeout = 120)
{
    stress_run(UINT32_MAX - 3 * STRESS_CAPACITY);
}
