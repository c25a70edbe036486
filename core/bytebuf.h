/* core/bytebuf.h - a growable byte buffer: the one growth rule for every byte queue
 * (connection input and output, the load generator's and the null broker's sockets).
 *
 * Header-only and owner-thread only: a bytebuf belongs to whoever embeds it. It grows by
 * doubling from BYTEBUF_MIN and never shrinks; free it with bytebuf_free. Callers bound what
 * they put in it (mqtt.max_packet_size, mqtt.output_buffer_max...); bytebuf only refuses sizes
 * a uint32_t cannot hold and allocation failures.
 */
#ifndef KEELMQ_CORE_BYTEBUF_H
#define KEELMQ_CORE_BYTEBUF_H

#include <stdlib.h>
#include <string.h>

#include "core/base.h"

#define BYTEBUF_MIN 64u

struct bytebuf {
    uint8_t *data; /* owned */
    uint32_t len;
    uint32_t cap;
};

/* Grows `b` to hold at least `need` bytes, keeping its contents. False when out of memory. */
static inline bool bytebuf_reserve(struct bytebuf *b, uint32_t need)
{
    if (need <= b->cap)
        return true;
    uint32_t cap = b->cap < BYTEBUF_MIN ? BYTEBUF_MIN : b->cap;
    while (cap < need)
        cap = cap > UINT32_MAX / 2 ? need : cap * 2;
    uint8_t *p = realloc(b->data, cap);
    if (p == NULL)
        return false;
    b->data = p;
    b->cap = cap;
    return true;
}

/* Appends `n` bytes from `p` (borrowed). False when out of memory (nothing appended). */
static inline bool bytebuf_append(struct bytebuf *b, const void *p, uint32_t n)
{
    if (n > UINT32_MAX - b->len || !bytebuf_reserve(b, b->len + n))
        return false;
    if (n > 0)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return true;
}

/* Frees the memory; `b` is empty and reusable afterwards. */
static inline void bytebuf_free(struct bytebuf *b)
{
    free(b->data);
    *b = (struct bytebuf){ 0 };
}

#endif
