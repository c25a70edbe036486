/* core/log.h - structured log lines that never block a shard's loop.
 *
 * A line is "TIME LEVEL shard=N SUBSYS: event key=value ..." . A shard thread registers its
 * own SPSC ring (log_thread_attach); its lines go there and the main thread writes them out
 * (log_drain). Threads without a ring (main, startup) write straight to stderr. When a ring is
 * full the line is dropped and counted; the count is reported by the next drain.
 * DEBUG lines are compiled out of release builds. Never log payloads or passwords.
 */
#ifndef KEELMQ_CORE_LOG_H
#define KEELMQ_CORE_LOG_H

#include "core/base.h"
#include "core/config.h"
#include "core/spsc.h"

#define LOG_LINE_MAX 256 /* bytes per line, including the newline; longer lines are cut */

/* Sets the process-wide level; call once before shards start. */
void log_set_level(enum log_level level);
bool log_enabled(enum log_level level);

/* Calling thread's shard id (-1 for main) and log ring (NULL: write directly). The ring's
 * entries must be LOG_LINE_MAX bytes. Borrows `ring` until the thread exits. */
void log_thread_attach(int shard_id, struct spsc *ring);

/* Formats and emits one line. `subsys` is a short word ("conn", "session", "store"). */
__attribute__((format(printf, 3, 4))) void log_line(enum log_level level, const char *subsys,
                                                  const char *fmt, ...);

/* Main thread: writes every pending line of `ring` to stderr. Returns lines written. */
uint32_t log_drain(struct spsc *ring);

#define LOG_ERROR(subsys, ...) log_line(LOG_ERROR, subsys, __VA_ARGS__)
#define LOG_WARN(subsys, ...)                                                                  \
    do {                                                                                       \
        if (log_enabled(LOG_WARN))                                                             \
            log_line(LOG_WARN, subsys, __VA_ARGS__);                                           \
    } while (0)
#define LOG_INFO(subsys, ...)                                                                  \
    do {                                                                                       \
        if (log_enabled(LOG_INFO))                                                             \
            log_line(LOG_INFO, subsys, __VA_ARGS__);                                           \
    } while (0)
#ifdef KEELMQ_DEBUG
#define LOG_DEBUG(subsys, ...)                                                                 \
    do {                                                                                       \
        if (log_enabled(LOG_DEBUG))                                                            \
            log_line(LOG_DEBUG, subsys, __VA_ARGS__);                                          \
    } while (0)
#else
#define LOG_DEBUG(subsys, ...) ((void)0)
#endif

#endif
