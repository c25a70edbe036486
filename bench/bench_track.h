/* bench/bench_track.h - per-publisher receive tracking: lost, duplicated and reordered
 * messages, from the sequence numbers in the payload stamps.
 *
 * A tracker belongs to one receiving side: a subscriber, or a whole shared-subscription group
 * (whose members together must see each message once). It holds one pair per publisher whose
 * messages it must receive, declared up front with track_expect (the bench matches every
 * publisher's topic against the filter), so a publisher that never got through is still seen
 * as lost, and a message from any other publisher is "unexpected".
 *
 * Per pair: the next expected sequence number, a 64-bit window of which of the 64 numbers
 * below it arrived, and the count of distinct numbers received (32 bytes). A number above the
 * next expected one opens a gap (provisionally missing); one below it that is inside the window
 * and not yet seen fills a gap and counts as reordered; one already seen counts as duplicated.
 * One more than 64 below cannot be told apart and is counted as duplicated (the loud choice).
 * At the end, lost = messages the publisher sent - distinct numbers received, per pair.
 *
 * Single-threaded: the event loop's thread owns every tracker.
 */
#ifndef KEELMQ_BENCH_BENCH_TRACK_H
#define KEELMQ_BENCH_BENCH_TRACK_H

#include "core/base.h"

#define TRACK_WINDOW_BITS 64u

struct track_pair {
    uint32_t publisher_idx; /* UINT32_MAX: empty hash slot */
    uint64_t next_seq;
    uint64_t window;        /* bit i: next_seq - 1 - i was received */
    uint64_t unique_count;
};

struct track {
    struct track_pair *slots; /* open addressing, power-of-two capacity */
    uint32_t slot_mask;
    uint32_t pair_count;
    uint32_t pair_max;
};

/* Everything a run counted at the receivers (summed over trackers). */
struct track_counts {
    uint64_t received;      /* every stamped message */
    uint64_t unique;        /* distinct (publisher, sequence) */
    uint64_t duplicated;
    uint64_t reordered;
    uint64_t unexpected;    /* from a publisher this receiver should not hear */
};

/* Sizes `t` for up to `pair_max` publishers (> 0). Returns 0 or -ENOMEM. */
int track_init(struct track *t, uint32_t pair_max);
void track_destroy(struct track *t);

/* Declares that `t` must receive every message of `publisher_idx` (idempotent). At most
 * `pair_max` distinct publishers (asserted). */
void track_expect(struct track *t, uint32_t publisher_idx);

/* Counts the arrival of (`publisher_idx`, `seq`) into `counts`. Returns true when it was
 * the first arrival of that message (a new distinct number of an expected publisher). */
bool track_receive(struct track *t, uint32_t publisher_idx, uint64_t seq,
                   struct track_counts *counts);

/* Messages `t` should have received but did not: for each pair, sent_count[publisher] minus
 * the distinct numbers received (never negative). `sent_count` is indexed by publisher. */
uint64_t track_lost(const struct track *t, const uint64_t *sent_count);

/* Messages `t` should receive in total, given `sent_count`. */
uint64_t track_expected(const struct track *t, const uint64_t *sent_count);

#endif
