/* core/le.h - little-endian loads and stores of unaligned integers in byte buffers.
 *
 * The one place on-disk formats (store/record.c, store/journal.c) get their byte order from:
 * a memcpy of the integer converted with <endian.h>, so the code is the same on any host and
 * any alignment, and compiles to a single load or store on a little-endian machine (the record
 * encoder writes a header per message on the hot path; byte-by-byte stores cost measurably).
 */
#ifndef KEELMQ_CORE_LE_H
#define KEELMQ_CORE_LE_H

#include <endian.h>
#include <stdint.h>
#include <string.h>

static inline void store_le16(uint8_t *p, uint16_t v)
{
    uint16_t le = htole16(v);
    memcpy(p, &le, sizeof(le));
}

static inline void store_le32(uint8_t *p, uint32_t v)
{
    uint32_t le = htole32(v);
    memcpy(p, &le, sizeof(le));
}

static inline void store_le64(uint8_t *p, uint64_t v)
{
    uint64_t le = htole64(v);
    memcpy(p, &le, sizeof(le));
}

static inline uint16_t load_le16(const uint8_t *p)
{
    uint16_t le;
    memcpy(&le, p, sizeof(le));
    return le16toh(le);
}

static inline uint32_t load_le32(const uint8_t *p)
{
    uint32_t le;
    memcpy(&le, p, sizeof(le));
    return le32toh(le);
}

static inline uint64_t load_le64(const uint8_t *p)
{
    uint64_t le;
    memcpy(&le, p, sizeof(le));
    return le64toh(le);
}

#endif
