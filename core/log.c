/* core/log.c - log line formatting, per-thread rings, and the main thread's drain.
 *
 * The level is process-wide and written once before any shard starts. The thread-local
 * shard id and ring are the only thread-locals in the project (STYLE 8 allows them for
 * logging). Drops are counted per ring in the ring's owner thread and reported by the
 * producer itself in the next line it manages to write.
 */
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum log_level level_enabled = LOG_INFO;
static _Thread_local int thread_shard_id = -1;
static _Thread_local struct spsc *thread_ring;
static _Thread_local uint64_t thread_dropped;

static const char *const level_names[] = { "ERROR", "WARN", "INFO", "DEBUG" };

void log_set_level(enum log_level level) { level_enabled = level; }

bool log_enabled(enum log_level level) { return level <= level_enabled; }

void log_thread_attach(int shard_id, struct spsc *ring)
{
    thread_shard_id = shard_id;
    thread_ring = ring;
    thread_dropped = 0;
}

static void write_all(const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, p, n);
        if (w == -1)
            return; /* Nowhere left to report a failing stderr. */
        p += w;
        n -= (size_t)w;
    }
}

static size_t format_line(char *out, enum log_level level, const char *subsys, const char *fmt,
                          va_list ap)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(out, LOG_LINE_MAX, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s shard=%d %s: ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, level_names[level], thread_shard_id,
                     subsys);
    if (n < 0)
        n = 0;
    if (n < LOG_LINE_MAX - 1) {
        int m = vsnprintf(out + n, (size_t)(LOG_LINE_MAX - n), fmt, ap);
        if (m > 0)
            n += m;
    }
    if (n > LOG_LINE_MAX - 1)
        n = LOG_LINE_MAX - 1;
    out[n++] = '\n';
    return (size_t)n;
}

void log_line(enum log_level level, const char *subsys, const char *fmt, ...)
{
    ASSERT(level <= LOG_DEBUG);
    char line[LOG_LINE_MAX + 1];
    va_list ap;
    va_start(ap, fmt);
    size_t n = format_line(line, level, subsys, fmt, ap);
    va_end(ap);
    if (thread_ring == NULL) {
        write_all(line, n);
        return;
    }
    /* Log entries own nothing, so they are reclaimed as soon as the drain consumed them. */
    uint32_t done = spsc_reclaimable(thread_ring);
    if (done > 0)
        spsc_reclaim(thread_ring, done);
    char *slot = spsc_slot(thread_ring);
    if (slot == NULL) {
        thread_dropped++;
        return;
    }
    /* The entry holds the line's length in its first two bytes, then the text. */
    size_t cap = LOG_LINE_MAX - 2;
    if (n > cap) {
        n = cap;
        line[n - 1] = '\n';
    }
    uint16_t len16 = (uint16_t)n;
    memcpy(slot, &len16, 2);
    memcpy(slot + 2, line, n);
    spsc_publish(thread_ring);
    if (thread_dropped > 0) {
        uint64_t dropped = thread_dropped;
        thread_dropped = 0;
        log_line(LOG_WARN, "log", "lines_dropped count=%llu", (unsigned long long)dropped);
    }
}

uint32_t log_drain(struct spsc *ring)
{
    uint32_t n = spsc_available(ring);
    char buf[64 * LOG_LINE_MAX];
    size_t used = 0;
    for (uint32_t i = 0; i < n; i++) {
        const char *e = spsc_entry(ring, i);
        uint16_t len16;
        memcpy(&len16, e, 2);
        if (used + len16 > sizeof(buf)) {
            write_all(buf, used);
            used = 0;
        }
        memcpy(buf + used, e + 2, len16);
        used += len16;
    }
    if (used > 0)
        write_all(buf, used);
    if (n > 0)
        spsc_consumed(ring, n);
    return n;
}
