/* core/subpack.c - a session's subscriptions packed in one buffer (core/subpack.h). */
#include "core/subpack.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static uint32_t varint_len(uint32_t value)
{
    uint32_t n = 1;
    while (value >= 0x80u) {
        value >>= 7;
        n++;
    }
    return n;
}

static uint32_t varint_write(uint8_t *out, uint32_t value)
{
    uint32_t n = 0;
    do {
        uint8_t b = (uint8_t)(value & 0x7Fu);
        value >>= 7;
        out[n++] = (uint8_t)(b | (value != 0 ? 0x80u : 0));
    } while (value != 0);
    return n;
}

uint32_t subpack_entry_len(struct slice filter, uint32_t sub_id)
{
    return 1u + varint_len(sub_id) + varint_len(filter.len) + filter.len;
}

static void entry_write(uint8_t *out, struct slice filter, uint8_t options, uint32_t sub_id)
{
    uint32_t n = 0;
    out[n++] = options;
    n += varint_write(out + n, sub_id);
    n += varint_write(out + n, filter.len);
    memcpy(out + n, filter.ptr, filter.len);
}

/* The offset of `filter`'s entry and its length, or false. */
static bool entry_locate(const struct subpack *p, struct slice filter, uint32_t *off,
                         uint32_t *entry_len, struct subpack_entry *e)
{
    uint32_t pos = 0;
    uint32_t start = 0;
    struct subpack_entry cur;
    while (subpack_next(p, &pos, &cur)) {
        if (slice_eq(cur.filter, filter)) {
            *off = start;
            *entry_len = pos - start;
            if (e != NULL)
                *e = cur;
            return true;
        }
        start = pos;
    }
    return false;
}

bool subpack_find(const struct subpack *p, struct slice filter, struct subpack_entry *e)
{
    uint32_t off, entry_len;
    return entry_locate(p, filter, &off, &entry_len, e);
}

/* Sets the buffer to `len` bytes (its content up to MIN(old, new) kept). A failed shrink keeps
 * the larger buffer, which is still correct. Returns 0 or -ENOMEM (nothing changed). */
static int buf_resize(struct subpack *p, uint32_t len)
{
    if (len == 0) {
        free(p->buf);
        p->buf = NULL;
        return 0;
    }
    uint8_t *n = realloc(p->buf, len);
    if (n == NULL)
        return len > p->len ? -ENOMEM : 0;
    p->buf = n;
    return 0;
}

int subpack_put(struct subpack *p, struct slice filter, uint8_t options, uint32_t sub_id)
{
    ASSERT(filter.len > 0 && filter.len <= SUBPACK_FILTER_MAX && sub_id <= SUBPACK_SUB_ID_MAX);
    uint32_t new_len = subpack_entry_len(filter, sub_id);
    uint32_t off, old_len;
    if (!entry_locate(p, filter, &off, &old_len, NULL)) {
        if (p->len > UINT32_MAX - new_len || p->count == UINT32_MAX)
            return -ENOMEM;
        if (buf_resize(p, p->len + new_len) != 0)
            return -ENOMEM;
        entry_write(p->buf + p->len, filter, options, sub_id);
        p->len += new_len;
        p->count++;
        return 1;
    }
    /* Replaced in place; the identifier's varint may change the entry's length. */
    uint32_t tail = p->len - off - old_len;
    if (new_len > old_len) {
        if (p->len > UINT32_MAX - (new_len - old_len) ||
            buf_resize(p, p->len + (new_len - old_len)) != 0)
            return -ENOMEM;
        memmove(p->buf + off + new_len, p->buf + off + old_len, tail);
    } else if (new_len < old_len) {
        memmove(p->buf + off + new_len, p->buf + off + old_len, tail);
        (void)buf_resize(p, p->len - (old_len - new_len)); /* a shrink cannot fail */
    }
    p->len = p->len - old_len + new_len;
    entry_write(p->buf + off, filter, options, sub_id);
    return 0;
}

static void reverse(uint8_t *b, uint32_t len)
{
    for (uint32_t i = 0, j = len; i + 1 < j; i++, j--) {
        uint8_t t = b[i];
        b[i] = b[j - 1];
        b[j - 1] = t;
    }
}

int subpack_remove(struct subpack *p, struct slice filter)
{
    uint32_t off, len;
    if (!entry_locate(p, filter, &off, &len, NULL))
        return -ENOENT;
    if (off + len < p->len) {
        /* Not the last: the last entry takes its place. [A M B] -> rotate -> [B A M], then M
         * moves over A. In place, so that a removal never needs memory. */
        uint32_t last_off = 0, pos = 0;
        struct subpack_entry e;
        for (uint32_t start = 0; subpack_next(p, &pos, &e); start = pos)
            last_off = start;
        uint32_t last_len = p->len - last_off;
        uint8_t *region = p->buf + off;
        uint32_t region_len = p->len - off;
        reverse(region, region_len);
        reverse(region, last_len);
        reverse(region + last_len, region_len - last_len);
        memmove(region + last_len, region + last_len + len, region_len - last_len - len);
    }
    p->len -= len;
    p->count--;
    (void)buf_resize(p, p->len); /* a shrink cannot fail */
    return 0;
}

void subpack_free(struct subpack *p)
{
    free(p->buf);
    *p = (struct subpack){ 0 };
}
