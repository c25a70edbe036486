/* core/hash.h - the one place that wraps xxHash (STYLE 2: each third-party library is wrapped
 * in one place).
 *
 * Non-cryptographic 64-bit hashing for in-memory tables (topic tries, lookup tables). Not for
 * anything an attacker may exploit beyond table collisions, and not stable across xxHash
 * versions, so never persist a value computed here. Pure; any thread. The build defines
 * XXH_INLINE_ALL, so these compile to inlined XXH3 code with no library to link.
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
