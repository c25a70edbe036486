/* bench/bench_track.h - per-publisher receive tracking: lost, duplicated and reordered
 * messages, from the sequence numbers in the payload stamps.
 *
 * A tracker belongs to one receiving side: a subscriber, or a whole shared-subscription group
 * (whose members together must see each message once). It holds one pair per publisher whose
 * messages it must receive, declared up front with track_expect (the bench matches every
 * publisher's topic against the filter), so a publisher that never got through is still seen
 * as lost, and a message from any other publisher is "unexpected".
 *
 * Per pair: one bit per sequence number received (a bitmap that doubles as the numbers grow:
 * one bit per message sent, 1.25 MB per 10 M), the next expected number and the count of
 * distinct numbers received. A number seen before counts as duplicated; one below the next
 * expected number that was not seen counts as reordered, however late. Exact at any distance:
 * a shared group's members interleave a publisher's messages by thousands (a 64-number window
 * reported those as lost and duplicated). A bitmap that cannot grow (out of memory, or a
 * number no real run reaches) counts the arrival as duplicated, so the run fails loudly.
 * At the end, lost = messages the publisher sent - distinct numbers received, per pair.
 *
 * Single-threaded: the event loop's thread owns every tracker.
 */
#ifndef KEELMQ_BENCH_BENCH_TRACK_H
#define KEELMQ_BENCH_BENCH_TRACK_H

#include "core/base.h"

#define TRACK_SEQ_MAX (1ull << 40) /* numbers from here on are not tracked (see above) */

struct track_pair {
    uint32_t publisher_idx; /* UINT32_MAX: empty hash slot */
    uint64_t next_seq;      /* one more than the highest number received */
    uint64_t *seen;         /* bit seq % 64 of word seq / 64: seq was received */
    uint64_t seen_words;
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
