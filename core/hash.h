/* core/hash.h - the one place that wraps xxHash (STYLE 2: each third-party library is wrapped
 * in one place).
 *
 * Non-cryptographic 64-bit hashing: in-memory tables (topic tries, lookup tables), client id
 * home shards, and values that are persisted: commit log record checksums and consume-queue
 * ids. Persisting them is safe because XXH3's output is frozen since xxHash 0.8.0 (the
 * consume-queue run files also store a probe hash, so a changed XXH3 would be caught at
 * open). Not for anything an attacker may exploit beyond table collisions. Pure; any thread.
 * The build defines XXH_INLINE_ALL, so these compile to inlined XXH3 code with no library to
 * link.
 */
#ifndef KEELMQ_CORE_HASH_H
#define KEELMQ_CORE_HASH_H

#include <stddef.h>
#include <stdint.h>

#include <xxhash.h>

/* Hash of the `n` bytes at `p` (borrowed; may be NULL when `n` is 0). */
static inline uint64_t hash_bytes(const void *p, size_t n)
{
    return XXH3_64bits(p, n);
}

/* Like hash_bytes, but mixes in `seed`: hashes the pair (seed, bytes) without building it. */
static inline uint64_t hash_bytes_seeded(const void *p, size_t n, uint64_t seed)
{
    return XXH3_64bits_withSeed(p, n, seed);
}

#endif
