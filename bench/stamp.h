/* bench/stamp.h - the stamp keelmq-bench writes at the start of every payload: which run and
 * publisher sent the message, its sequence number and when it was meant to be sent.
 *
 * 16 bytes, little-endian, so the 16-byte payload scenarios carry nothing else:
 *   [0]      magic STAMP_MAGIC
 *   [1]      run id: a random non-zero byte per bench run, so that messages a broker still
 *            routes from an earlier run on the same topics are recognised as foreign instead
 *            of being counted as duplicates (they collide with probability 1/255)
 *   [2]      CRC-8 (polynomial 0x07) over every other byte: any single corrupted byte and any
 *            burst of up to 8 bits is rejected
 *   [3..5]   publisher index (24 bits)
 *   [6..10]  sequence number (40 bits), per publisher, from 0
 *   [11..15] send time since the bench's epoch on CLOCK_MONOTONIC, in units of 32 ns
 *            (40 bits: 9.7 hours; 32 ns is far below what a latency in microseconds needs)
 * The rest of the payload is not looked at. Pure functions; any thread.
 */
#ifndef KEELMQ_BENCH_STAMP_H
#define KEELMQ_BENCH_STAMP_H

#include "core/base.h"

#define STAMP_LEN 16u
#define STAMP_MAGIC 0xB7u
#define STAMP_TIME_SHIFT 5u                                   /* 32 ns units */
#define STAMP_PUBLISHER_MAX ((1u << 24) - 1u)
#define STAMP_SEQ_MAX ((1ull << 40) - 1u)
#define STAMP_TIME_MAX (((1ull << 40) << STAMP_TIME_SHIFT) - 1u) /* ns, about 9.7 hours */

struct stamp {
    uint8_t run_id;         /* non-zero */
    uint32_t publisher_idx;
    uint64_t seq;
    uint64_t send_ns;       /* decoded: rounded down to a multiple of 32 */
};

/* Writes `s` into the first STAMP_LEN bytes of `out`. Every field must be within its maximum
 * and run_id non-zero (asserted: the bench never produces a value that does not fit). */
void stamp_encode(const struct stamp *s, uint8_t *out);

/* Reads a stamp from `payload` (`len` bytes, borrowed). Returns true and fills `out` when the
 * payload is long enough and the magic, run id (non-zero) and checksum are right; false
 * otherwise. The caller compares out->run_id with its own. */
bool stamp_decode(const uint8_t *payload, uint32_t len, struct stamp *out);

#endif
