/* core/lifetime.h - how long messages live in the broker (MQTT 5 Message Expiry Interval),
 * and the arithmetic of session expiry and will delay.
 *
 * A message's expiry counts from its receive time (struct msg.time_ns, wall clock, the same
 * timestamp its log record carries, so a message read back from the log or restored after a
 * restart ages from when it was first received). A message whose interval has passed is not
 * delivered to anyone who has not started receiving it (MQTT-3.3.2-5); a PUBLISH that does go
 * out carries the seconds left (MQTT-3.3.2-6). Retained messages that expired are dropped from
 * the shard's retained index by a periodic scan, and never sent in the meantime.
 *
 * The pure functions may be called from any thread; lifetime_retained_scan from the owning
 * shard's thread only. Session expiry and the will timer themselves live in core/session.c.
 */
#ifndef KEELMQ_CORE_LIFETIME_H
#define KEELMQ_CORE_LIFETIME_H

#include "core/base.h"

struct shard;
struct msg;
struct mqtt_props;

#define LIFETIME_NO_EXPIRY UINT32_MAX     /* a message without Message Expiry Interval */
#define LIFETIME_NEVER UINT32_MAX         /* session expiry: the session never expires */
#define LIFETIME_RETAIN_SCAN_MAX 1024u    /* expired retained messages dropped per scan */

/* Seconds left of an interval of `expiry_s` seconds that started at `start_ns` (wall clock),
 * at `now_ns`: `expiry_s` minus the whole seconds elapsed, or 0 once `expiry_s` seconds have
 * passed. A clock that went backwards counts as no time elapsed. Pure. */
uint32_t lifetime_left_s(uint32_t expiry_s, uint64_t start_ns, uint64_t now_ns);

/* The seconds `m` has left at `now_ns`: LIFETIME_NO_EXPIRY when it carries no Message Expiry
 * Interval, 0 when it expired. Borrows `m` (any shard's, read-only). */
uint32_t lifetime_msg_left_s(const struct msg *m, uint64_t now_ns);

/* True if `m` carries a Message Expiry Interval that has passed at `now_ns`. */
static inline bool lifetime_msg_expired(const struct msg *m, uint64_t now_ns)
{
    return lifetime_msg_left_s(m, now_ns) == 0;
}

/* Sets the Message Expiry Interval in `props` (a copy of m->props going out in a PUBLISH) to
 * the seconds `m` has left now, at least 1: a delivery that has started goes out even past
 * its expiry (MQTT-3.3.2-6). No-op for a message without one. */
void lifetime_props_out(const struct msg *m, struct mqtt_props *props);

/* The session expiry the server uses: the client's `asked_s` (LIFETIME_NEVER = never) capped
 * at `max_s` (mqtt.session_expiry_max). Pure. */
static inline uint32_t lifetime_session_expiry(uint32_t asked_s, uint32_t max_s)
{
    return MIN(asked_s, max_s);
}

/* True if an offline session with expiry `expiry_s` that went offline at `offline_ms`
 * (monotonic) has expired at `now_ms`. LIFETIME_NEVER never expires. Pure. */
static inline bool lifetime_session_expired(uint32_t expiry_s, uint64_t offline_ms,
                                            uint64_t now_ms)
{
    return expiry_s != LIFETIME_NEVER && now_ms >= offline_ms &&
           now_ms - offline_ms >= (uint64_t)expiry_s * 1000u;
}

/* Shard `s` stored a retained message: if it carries an expiry, the next scan looks. */
void lifetime_retained_stored(struct shard *s, const struct msg *m);

/* On the shard's expiry tick: drops up to LIFETIME_RETAIN_SCAN_MAX expired messages from the
 * shard's retained index (counted in dropped_expired, logged once per scan that dropped
 * some). Walks the index only while a message with an expiry may be in it. */
void lifetime_retained_scan(struct shard *s);

#endif
