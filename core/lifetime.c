/* core/lifetime.c - message expiry arithmetic and the retained index's expiry scan.
 *
 * Shard thread for the scan; the arithmetic is pure. Seconds left are rounded so that a
 * message forwarded within its first second still carries its full interval and one that is
 * forwarded at all carries at least 1 (0 would mean "no time left", which the spec does not
 * send: an expired message is dropped instead).
 */
#include "core/lifetime.h"

#include <stdlib.h>

#include "core/log.h"
#include "core/msg.h"
#include "core/mqtt.h"
#include "core/retain.h"
#include "core/shard.h"

uint32_t lifetime_left_s(uint32_t expiry_s, uint64_t start_ns, uint64_t now_ns)
{
    uint64_t elapsed_s = now_ns > start_ns ? (now_ns - start_ns) / 1000000000u : 0;
    if (elapsed_s >= expiry_s)
        return 0;
    uint32_t left = expiry_s - (uint32_t)elapsed_s;
    ASSERT(left > 0 && left <= expiry_s);
    return left;
}

uint32_t lifetime_msg_left_s(const struct msg *m, uint64_t now_ns)
{
    if (!mqtt_props_has(&m->props, MQTT_PROP_MESSAGE_EXPIRY))
        return LIFETIME_NO_EXPIRY;
    return lifetime_left_s(m->props.message_expiry, m->time_ns, now_ns);
}

void lifetime_retained_stored(struct shard *s, const struct msg *m)
{
    if (mqtt_props_has(&m->props, MQTT_PROP_MESSAGE_EXPIRY))
        s->retained_may_expire = true;
}

struct scan_ctx {
    uint64_t now_ns;
    uint32_t with_expiry;    /* messages seen that carry an expiry */
    uint32_t expired_len;
    struct msg *expired[LIFETIME_RETAIN_SCAN_MAX];
};

static void scan_one(void *ctx, struct slice topic, void *value)
{
    (void)topic;
    struct scan_ctx *sc = ctx;
    struct msg *m = value;
    uint32_t left = lifetime_msg_left_s(m, sc->now_ns);
    if (left == LIFETIME_NO_EXPIRY)
        return;
    sc->with_expiry++;
    if (left == 0 && sc->expired_len < LIFETIME_RETAIN_SCAN_MAX)
        sc->expired[sc->expired_len++] = m;
}

void lifetime_retained_scan(struct shard *s)
{
    if (!s->retained_may_expire)
        return;
    struct scan_ctx *sc = malloc(sizeof(*sc));
    if (sc == NULL)
        return; /* Out of memory: tried again on the next tick; sends skip them meanwhile. */
    sc->now_ns = base_wall_ns();
    sc->with_expiry = 0;
    sc->expired_len = 0;
    /* The walk may not change the index: collect first, then clear. */
    retain_walk_all(s->retained, scan_one, sc);
    for (uint32_t i = 0; i < sc->expired_len; i++) {
        struct msg *gone = retain_clear(s->retained, sc->expired[i]->topic);
        ASSERT(gone == sc->expired[i]);
        msg_release(gone);
    }
    s->stats.dropped_expired += sc->expired_len;
    s->retained_may_expire = sc->with_expiry > sc->expired_len;
    if (sc->expired_len > 0)
        LOG_INFO("retain", "expired count=%u", sc->expired_len);
    free(sc);
}

void lifetime_props_out(const struct msg *m, struct mqtt_props *props)
{
    if (mqtt_props_has(&m->props, MQTT_PROP_MESSAGE_EXPIRY))
        props->message_expiry = MAX(lifetime_msg_left_s(m, base_wall_ns()), 1u);
}
