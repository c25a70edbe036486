/* core/router.c - routing one published message: local subscribers, other shards, retained.
 *
 * Shard thread only. A routing pass collects the matching sessions into the shard's scratch
 * array (one entry per session: overlapping subscriptions are merged at the highest QoS, the
 * retain-as-published flags OR-ed; one subscription identifier kept, or PUBOUT_SUB_ID_MULTI
 * when several differ, core/pubout.h), then delivers.
 * Collecting first keeps the tree walk free of side effects: delivering can end a session
 * (a failed write), which must not happen while the tree is being walked.
 */
#include "core/router.h"

#include <stdlib.h>
#include <string.h>

#include "core/iot.h"
#include "core/lifetime.h"
#include "core/log.h"
#include "core/msg.h"
#include "core/mqtt.h"
#include "core/persist.h"
#include "core/pubout.h"
#include "core/retain.h"
#include "core/session.h"
#include "core/shard.h"
#include "core/shared.h"
#include "core/subtree.h"
#include "store/commitlog.h"

static void collect(void *ctx, void *owner, uint8_t options, uint32_t sub_id)
{
    struct shard *s = ctx;
    struct session *sess = owner;
    const struct msg *m = s->match_msg;
    if ((options & MQTT_SUBOPT_NO_LOCAL) && sess->client_id_len == m->client_id.len &&
        memcmp(sess->client_id, m->client_id.ptr, m->client_id.len) == 0)
        return; /* MQTT-3.8.3-3: not back to its own publisher. */
    uint8_t qos = options & MQTT_SUBOPT_QOS_MASK;
    bool rap = (options & MQTT_SUBOPT_RETAIN_AS_PUBLISHED) != 0;
    if (sess->match_stamp == s->match_stamp) {
        struct route_match *e = &s->matches[sess->match_idx];
        e->qos = MAX(e->qos, qos);
        e->retain_as_published |= rap;
        if (e->sub_id == 0)
            e->sub_id = sub_id;
        else if (sub_id != 0 && sub_id != e->sub_id)
            e->sub_id = PUBOUT_SUB_ID_MULTI; /* Collected when written (core/pubout.h). */
        return;
    }
    if (s->match_len == s->match_cap) {
        uint32_t cap = s->match_cap ? s->match_cap * 2 : 64;
        struct route_match *n = realloc(s->matches, cap * sizeof(*n));
        if (n == NULL)
            return; /* Out of memory: this subscriber misses the message (counted below). */
        s->matches = n;
        s->match_cap = cap;
    }
    sess->match_stamp = s->match_stamp;
    sess->match_idx = s->match_len;
    s->matches[s->match_len++] =
        (struct route_match){ .sess = sess, .qos = qos, .retain_as_published = rap,
                              .sub_id = sub_id };
}

/* A P2P message (core/iot.h) on its target's home shard: to that session only, if any. */
static void deliver_p2p(struct shard *s, const struct msg *m, struct slice target)
{
    ASSERT(shard_home(s, target) == s->id);
    struct session *sess = session_find(s->sessions, target);
    if (sess == NULL) {
        s->stats.p2p_no_target++;
        return;
    }
    s->stats.p2p_delivered++;
    session_deliver(s, sess, m, m->qos, false, 0);
}

/* If `m` is a P2P message, sets *target and returns true. */
static bool p2p_target(const struct shard *s, const struct msg *m, struct slice *target)
{
    return s->cfg->p2p && iot_p2p_target(m->topic, target);
}

static void deliver_local(struct shard *s, const struct msg *m)
{
    s->match_stamp++;
    if (s->match_stamp == 0) {
        /* Wrapped: stamps of sessions could collide with the new value; start over cleanly.
         * Sessions keep stale stamps, which only matter if equal, so skip 0. */
        s->match_stamp = 1;
    }
    s->match_len = 0;
    s->match_msg = m;
    subtree_match(s->subs, m->topic, collect, s);
    /* Encodings are shared within this pass only: after it, `m` may be freed and its address
     * reused by another message. */
    s->encoded.msg = m;
    s->encoded.variant_count = 0;
    s->encoded.used = 0;
    for (uint32_t i = 0; i < s->match_len; i++) {
        struct route_match *e = &s->matches[i];
        bool retain = e->retain_as_published && m->retain;
        session_deliver(s, e->sess, m, MIN(m->qos, e->qos), retain, e->sub_id);
    }
    s->encoded.msg = NULL;
    s->match_msg = NULL;
}

/* Applies a retained update to this shard's index. Every shard keeps a full copy; updates of
 * one topic are ordered by (time, origin shard), so copies converge whatever order the notes
 * arrive in. */
static void retain_update(struct shard *s, const struct msg *m)
{
    if (!s->cfg->retain_available)
        return;
    struct msg *old = retain_get(s->retained, m->topic);
    if (old != NULL && (old->time_ns > m->time_ns ||
                        (old->time_ns == m->time_ns && old->origin_shard > m->origin_shard)))
        return;
    if (m->payload.len == 0) {
        struct msg *gone = retain_clear(s->retained, m->topic);
        if (gone != NULL)
            msg_release(gone);
        return;
    }
    struct msg *own = msg_keep(m, s->id);
    if (own == NULL) {
        LOG_WARN("router", "retain_oom topic_len=%u", m->topic.len);
        return;
    }
    int err = 0;
    struct msg *prev = retain_set(s->retained, m->topic, own, &err);
    if (err != 0) {
        msg_release(own);
        LOG_WARN("router", "retain_oom topic_len=%u", m->topic.len);
        return;
    }
    if (prev != NULL)
        msg_release(prev);
    lifetime_retained_stored(s, own);
}

int64_t router_append(struct shard *s, struct msg *m, uint16_t packet_id)
{
    ASSERT(m->owner_shard == s->id);
    if (m->qos == 0 && !m->retain && !s->cfg->store_log_qos0)
        return 0; /* store.log_qos0 = off: not logged; nobody waits for it. */
    struct record_message r = {
        .timestamp_ns = m->time_ns, .qos = m->qos, .retain = m->retain, .topic = m->topic,
        .client_id = m->client_id, .props = m->props.raw, .payload = m->payload,
        .packet_id = m->qos == 2 ? packet_id : 0,
    };
    int64_t off = commitlog_append_message(&s->log, &r);
    if (off < 0)
        return off;
    m->log_off = (uint64_t)off;
    m->log_len = (uint32_t)(s->log.append_off - (uint64_t)off); /* the record just appended */
    persist_on_append(s, m);
    return off + m->log_len;
}

void router_publish(struct shard *s, struct msg *m)
{
    m->time_ns = base_wall_ns(); /* A will is published later than it was created. */
    if (router_append(s, m, 0) < 0) {
        s->stats.log_full++;
        LOG_WARN("router", "log_full dropped_from_log topic_len=%u", m->topic.len);
    }
    router_route(s, m);
}

void router_route(struct shard *s, struct msg *m)
{
    ASSERT(m->owner_shard == s->id && m->origin_shard == s->id);
    s->stats.publishes_in++;
    struct slice target;
    if (p2p_target(s, m, &target)) {
        /* Only the target's home shard can hold its session: no broadcast, never retained
         * (core/dispatch.c cleared the flag before the message was logged). */
        uint16_t home = shard_home(s, target);
        if (home == s->id)
            deliver_p2p(s, m, target);
        else
            shard_post(s, home, (struct note){ .kind = NOTE_PUBLISH, .ptr = msg_ref(m) });
        return;
    }
    deliver_local(s, m);
    shared_route(s, m); /* The shared groups this shard owns. */
    for (uint16_t i = 0; i < s->count; i++) {
        if (i == s->id)
            continue;
        /* The note holds a reference, dropped when the note is reclaimed (core/shard.c). */
        shard_post(s, i, (struct note){ .kind = NOTE_PUBLISH, .ptr = msg_ref(m) });
    }
    if (m->retain)
        retain_update(s, m);
}

void router_on_note(struct shard *s, const struct msg *m)
{
    struct slice target;
    if (p2p_target(s, m, &target)) {
        deliver_p2p(s, m, target);
        return;
    }
    deliver_local(s, m);
    shared_route(s, m); /* The shared groups this shard owns. */
    if (m->retain)
        retain_update(s, m);
}

struct retained_ctx {
    struct shard *s;
    struct session *sess;
    uint8_t granted_qos;
    uint32_t sub_id;
};

static void send_one_retained(void *ctx, struct slice topic, void *value)
{
    (void)topic;
    struct retained_ctx *r = ctx;
    const struct msg *m = value;
    if (lifetime_msg_expired(m, base_wall_ns())) {
        /* MQTT-3.3.2-5: not sent; the next expiry scan drops it from the index. */
        r->s->stats.dropped_expired++;
        return;
    }
    /* MQTT-3.3.1-8: messages sent because of a new subscription keep the retain flag. */
    session_deliver_retained(r->s, r->sess, m, MIN(m->qos, r->granted_qos), r->sub_id);
}

void router_send_retained(struct shard *s, struct session *sess, struct slice filter,
                          uint8_t granted_qos, uint32_t sub_id)
{
    struct retained_ctx ctx = { s, sess, granted_qos, sub_id };
    retain_match(s->retained, filter, send_one_retained, &ctx);
}

void router_release_retained(void *ctx, void *value)
{
    (void)ctx;
    msg_release(value);
}
