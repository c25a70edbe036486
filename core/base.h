/* core/base.h - assertions, compiler helpers and small utilities used everywhere.
 *
 * Leaf header: includes only libc. Safe to call from any thread.
 * ASSERT is on in every build; ASSERT_HOT only when KEELMQ_DEBUG is defined (make debug, CI),
 * and still type-checks its argument when off.
 */
#ifndef KEELMQ_CORE_BASE_H
#define KEELMQ_CORE_BASE_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#define STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define CACHE_LINE 128 /* two lines: the adjacent-line prefetcher pulls pairs (STYLE 8). */
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
/* `x` rounded up to a multiple of `a`, a power of two. */
#define ALIGN_UP(x, a) (((x) + ((a) - 1)) & ~((__typeof__(x))(a) - 1))

/* Prints the failed condition with its location and aborts. Never returns. */
__attribute__((noreturn, cold)) void base_assert_fail(const char *cond, const char *file,
                                                     int line);

#define ASSERT(cond) (LIKELY(cond) ? (void)0 : base_assert_fail(#cond, __FILE__, __LINE__))
#ifdef KEELMQ_DEBUG
#define ASSERT_HOT(cond) ASSERT(cond)
#else
#define ASSERT_HOT(cond) ((void)sizeof(!(cond)))
#endif

/* A byte range that borrows its memory from someone else (a receive buffer, a message). */
struct slice {
    const uint8_t *ptr;
    uint32_t len;
};

static inline struct slice slice_from_cstr(const char *s)
{
    size_t n = 0;
    while (s[n] != '\0')
        n++;
    return (struct slice){ (const uint8_t *)s, (uint32_t)n };
}

static inline bool slice_eq(struct slice a, struct slice b)
{
    if (a.len != b.len)
        return false;
    for (uint32_t i = 0; i < a.len; i++)
        if (a.ptr[i] != b.ptr[i])
            return false;
    return true;
}

/* Monotonic clock in nanoseconds and milliseconds. */
uint64_t base_now_ns(void);
static inline uint64_t base_now_ms(void) { return base_now_ns() / 1000000u; }
/* Wall clock in nanoseconds since the epoch (message timestamps). */
uint64_t base_wall_ns(void);

#endif
