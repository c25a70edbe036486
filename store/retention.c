/* store/retention.c - segment retention for one shard's commit log (see store/retention.h).
 *
 * The decision is a pure function over a small array, so every rule and boundary is tested
 * without a disk; retention_apply only gathers that array from the directory (a list and one
 * stat per closed segment) and removes the prefix it returns. Blocking syscalls, called from
 * the owning shard's tick a few times a minute at most, never per message.
 *
 * Why whole segments, oldest first: records never span segments and the log is append-only,
 * so deleting a prefix of files keeps the log one contiguous range [start_off, append_off)
 * and the GC watermark a single number. Deleting from the middle (an old but pinned segment
 * followed by deletable ones) would split the range; the rules stop at the first segment
 * they must keep instead.
 */
#include "store/retention.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "store/segment.h"

#define RETENTION_NS_PER_SECOND UINT64_C(1000000000)
#define RETENTION_NS_PER_HOUR (UINT64_C(3600) * RETENTION_NS_PER_SECOND)
#define RETENTION_PATH_MAX 4096

struct retention_policy retention_policy_from_config(const struct config *cfg)
{
    ASSERT(cfg != NULL);
    /* config_finalize caps the hours far below this; a larger value stored by code is a bug. */
    ASSERT(cfg->store_retention_hours <= UINT64_MAX / RETENTION_NS_PER_HOUR);
    return (struct retention_policy){
        .max_bytes = cfg->store_retention_bytes,
        .max_age_ns = (uint64_t)cfg->store_retention_hours * RETENTION_NS_PER_HOUR,
    };
}

/* How many of the oldest segments may go at all: never the last (active) one, and only those
 * that end at or below `pinned_off`. */
static uint32_t deletable_count(const struct retention_segment *segs, uint32_t count,
                                uint64_t pinned_off)
{
    uint32_t n = 0;
    while (n + 1 < count && segs[n].end_off <= pinned_off)
        n++;
    return n;
}

/* The size rule: how many of the first `deletable` segments go so that what remains of
 * `total_bytes` is at most `max_bytes` (or as close as `deletable` allows). */
static uint32_t size_rule_count(const struct retention_segment *segs, uint32_t deletable,
                                uint64_t total_bytes, uint64_t max_bytes)
{
    if (max_bytes == 0)
        return 0;
    uint32_t n = 0;
    while (n < deletable && total_bytes > max_bytes) {
        total_bytes -= segs[n].end_off - segs[n].base_off;
        n++;
    }
    return n;
}

static bool is_expired(const struct retention_segment *s, uint64_t now_ns, uint64_t max_age_ns)
{
    /* A newest_ns after now_ns (the wall clock stepped back) is age 0, not a huge age. */
    return now_ns > s->newest_ns && now_ns - s->newest_ns > max_age_ns;
}

/* The age rule: how many of the first `deletable` segments are expired, counted from the
 * oldest and stopping at the first that is not. */
static uint32_t age_rule_count(const struct retention_segment *segs, uint32_t deletable,
                               uint64_t now_ns, uint64_t max_age_ns)
{
    if (max_age_ns == 0)
        return 0;
    uint32_t n = 0;
    while (n < deletable && is_expired(&segs[n], now_ns, max_age_ns))
        n++;
    return n;
}

uint32_t retention_decide(const struct retention_segment *segs, uint32_t count,
                          const struct retention_policy *p, uint64_t now_ns,
                          uint64_t pinned_off)
{
    ASSERT(p != NULL);
    ASSERT(count == 0 || segs != NULL);
    if (count == 0)
        return 0;
    /* Sorted and not overlapping, so the sum is at most the last end minus the first base and
     * cannot overflow. */
    uint64_t total_bytes = 0;
    for (uint32_t i = 0; i < count; i++) {
        ASSERT(segs[i].base_off <= segs[i].end_off);
        ASSERT(i == 0 || segs[i - 1].end_off <= segs[i].base_off);
        total_bytes += segs[i].end_off - segs[i].base_off;
    }
    uint32_t deletable = deletable_count(segs, count, pinned_off);
    uint32_t by_size = size_rule_count(segs, deletable, total_bytes, p->max_bytes);
    uint32_t by_age = age_rule_count(segs, deletable, now_ns, p->max_age_ns);
    uint32_t n = MAX(by_size, by_age);
    ASSERT(n <= deletable);
    ASSERT(n < count);
    return n;
}

static uint64_t mtime_ns(const struct stat *st)
{
    if (st->st_mtim.tv_sec < 0)
        return 0; /* before 1970: as old as can be */
    return (uint64_t)st->st_mtim.tv_sec * RETENTION_NS_PER_SECOND + (uint64_t)st->st_mtim.tv_nsec;
}

/* Fills segs[0..closed) from the first `closed` files of `list` (those before `active_base`):
 * each one's range from its base and file size, cut at the next base so that damaged sizes
 * cannot make ranges overlap, and its mtime as its newest record's time. Returns 0 or -errno. */
static int describe_closed(const char *dir, const struct segment_list *list, uint32_t closed,
                           uint64_t active_base, struct retention_segment *segs)
{
    for (uint32_t i = 0; i < closed; i++) {
        uint64_t base_off = list->base_offs[i];
        uint64_t next_off = i + 1 < closed ? list->base_offs[i + 1] : active_base;
        ASSERT(base_off < next_off);
        char path[RETENTION_PATH_MAX];
        segment_path(dir, base_off, path, sizeof(path));
        struct stat st;
        if (stat(path, &st) == -1)
            return -errno;
        uint64_t size = st.st_size > 0 ? (uint64_t)st.st_size : 0;
        segs[i] = (struct retention_segment){
            .base_off = base_off,
            .end_off = size < next_off - base_off ? base_off + size : next_off,
            .newest_ns = mtime_ns(&st),
        };
    }
    return 0;
}

int retention_apply(const char *dir, uint64_t active_base, uint64_t append_off,
                    const struct retention_policy *p, uint64_t now_ns, uint64_t pinned_off,
                    uint64_t *start_off)
{
    ASSERT(dir != NULL && p != NULL && start_off != NULL);
    ASSERT(append_off >= active_base);
    struct segment_list list;
    int rc = segment_list(dir, &list, NULL, 0);
    if (rc < 0)
        return rc;
    if (list.count == 0) {
        *start_off = append_off;
        segment_list_free(&list);
        return 0;
    }
    uint32_t closed = 0;
    while (closed < list.count && list.base_offs[closed] < active_base)
        closed++;
    /* One entry per closed segment plus the active one. */
    struct retention_segment *segs = calloc((size_t)closed + 1, sizeof(*segs));
    if (segs == NULL) {
        segment_list_free(&list);
        return -ENOMEM;
    }
    rc = describe_closed(dir, &list, closed, active_base, segs);
    if (rc < 0)
        goto done;
    segs[closed] = (struct retention_segment){
        .base_off = active_base, .end_off = append_off, .newest_ns = now_ns,
    };
    uint32_t n = retention_decide(segs, closed + 1, p, now_ns, pinned_off);
    ASSERT(n <= closed);
    uint32_t gone = 0;
    while (gone < n) {
        rc = segment_remove(dir, list.base_offs[gone]);
        /* A failed directory fsync may follow a successful unlink: count the segment as gone
         * either way, so the watermark never points below data that may have vanished. */
        gone++;
        if (rc < 0)
            break;
    }
    ASSERT(gone <= closed);
    *start_off = gone < list.count ? list.base_offs[gone] : append_off;
    if (rc == 0)
        rc = (int)gone;

done:
    free(segs);
    segment_list_free(&list);
    return rc;
}
