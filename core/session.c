/* core/session.c - session table, subscriptions bookkeeping, the outbound QoS 1/2 window and
 * queue, inbound QoS 2 ids, and what happens when a connection goes away.
 *
 * Shard thread only. Window discipline: at most `receive_max_out` messages are unacknowledged
 * (MQTT-4.9.0-2); messages beyond wait in `queue` in arrival order, and are sent in that order
 * as acks free the window, so per-topic ordering holds (MQTT-4.6.0-6). A message owned by
 * another shard is cloned before it is kept (core/msg.h).
 */
#include "core/session.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/conn.h"
#include "core/catchup.h"
#include "core/dispatch.h"
#include "core/hash.h"
#include "core/iot.h"
#include "core/lifetime.h"
#include "core/log.h"
#include "core/msg.h"
#include "core/mqtt.h"
#include "core/persist.h"
#include "core/pubout.h"
#include "core/reason.h"
#include "core/recovery.h"
#include "core/router.h"
#include "core/shard.h"
#include "core/shared.h"
#include "core/subtree.h"
#include "core/topic.h"
#include "store/journal.h"

#define SESSION_TABLE_MIN 1024u
#define SESSION_WILLS_PER_TICK 64u /* held wills published per tick; the rest on the next */

/* True if `m` carries a Message Expiry Interval that has passed (MQTT-3.3.2-5: not to be
 * delivered to a subscriber it has not started going to). Reads the clock only for those. */
static bool msg_expired_now(const struct msg *m)
{
    return mqtt_props_has(&m->props, MQTT_PROP_MESSAGE_EXPIRY) &&
           lifetime_msg_expired(m, base_wall_ns());
}

struct session_table {
    struct session **buckets;
    uint32_t mask;
    uint32_t count;
};

struct session_table *session_table_create(void)
{
    struct session_table *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->buckets = calloc(SESSION_TABLE_MIN, sizeof(*t->buckets));
    if (t->buckets == NULL) {
        free(t);
        return NULL;
    }
    t->mask = SESSION_TABLE_MIN - 1;
    return t;
}

uint32_t session_table_count(const struct session_table *t) { return t->count; }

struct session *session_find(struct session_table *t, struct slice client_id)
{
    uint64_t h = hash_bytes(client_id.ptr, client_id.len);
    for (struct session *e = t->buckets[h & t->mask]; e != NULL; e = e->hash_next) {
        if (e->hash == h && e->client_id_len == client_id.len &&
            memcmp(e->client_id, client_id.ptr, client_id.len) == 0)
            return e;
    }
    return NULL;
}

/* Doubles the bucket array when the load passes 1. Growth failure is harmless: chains grow. */
static void table_grow(struct session_table *t)
{
    uint32_t n = (t->mask + 1) * 2;
    struct session **b = calloc(n, sizeof(*b));
    if (b == NULL)
        return;
    for (uint32_t i = 0; i <= t->mask; i++) {
        struct session *e = t->buckets[i];
        while (e != NULL) {
            struct session *next = e->hash_next;
            e->hash_next = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->mask = n - 1;
}

struct session *session_create(struct shard *s, struct slice client_id)
{
    struct session *sess = calloc(1, sizeof(*sess));
    if (sess == NULL)
        return NULL;
    sess->client_id = malloc((size_t)client_id.len + 1);
    if (sess->client_id == NULL) {
        free(sess);
        return NULL;
    }
    memcpy(sess->client_id, client_id.ptr, client_id.len);
    sess->client_id[client_id.len] = '\0';
    sess->client_id_len = (uint16_t)client_id.len;
    sess->hash = hash_bytes(client_id.ptr, client_id.len);
    sess->receive_max_out = (uint16_t)MIN(s->cfg->max_inflight, 65535u);
    sess->next_packet_id = 1;
    sess->serial = persist_next_serial(&s->persist);
    sess->since_ns = base_wall_ns();
    struct session_table *t = s->sessions;
    if (t->count >= t->mask + 1)
        table_grow(t);
    sess->hash_next = t->buckets[sess->hash & t->mask];
    t->buckets[sess->hash & t->mask] = sess;
    t->count++;
    return sess;
}

static void table_unlink(struct session_table *t, struct session *sess)
{
    struct session **pp = &t->buckets[sess->hash & t->mask];
    while (*pp != sess) {
        ASSERT(*pp != NULL);
        pp = &(*pp)->hash_next;
    }
    *pp = sess->hash_next;
    t->count--;
}

static void free_origins(const struct shard *s, struct session *sess)
{
    if (sess->origins == NULL)
        return;
    for (uint16_t i = 0; i < s->count; i++)
        free(sess->origins[i].hints);
    free(sess->origins);
    sess->origins = NULL;
}

/* Adds (+1) or removes (-1) every filter of `sess` in the registry. */
static void hold_filters(struct shard *s, struct session *sess, int32_t delta)
{
    uint32_t pos = 0;
    struct subpack_entry sub;
    while (subpack_next(&sess->subs, &pos, &sub))
        persist_filter_hold(s, sub.filter, delta);
}

void session_filter_changed(struct shard *s, struct session *sess, struct slice filter,
                            int32_t delta)
{
    if (sess->origins != NULL) /* Its filters are in the registry exactly while it has these. */
        persist_filter_hold(s, filter, delta);
}

void session_set_persistent(struct shard *s, struct session *sess, bool persistent)
{
    if (persistent) {
        if (sess->origins == NULL) {
            sess->origins = calloc(s->count, sizeof(*sess->origins));
            if (sess->origins == NULL) {
                LOG_ERROR("session", "not_durable client=%s reason=out_of_memory",
                          sess->client_id);
                return;
            }
            hold_filters(s, sess, +1);
        }
        if (persist_journal_state(s, sess) != 0)
            sess->journaled = true;
        return;
    }
    if (sess->journaled) {
        (void)persist_journal_end(s, sess); /* Counted and logged by persist on failure. */
        sess->journaled = false;
    }
    if (sess->origins != NULL)
        hold_filters(s, sess, -1);
    free_origins(s, sess);
}

/* The cold part of `sess`, allocated if needed. NULL when out of memory. */
static struct session_cold *cold_get(struct session *sess)
{
    if (sess->cold == NULL)
        sess->cold = calloc(1, sizeof(*sess->cold));
    return sess->cold;
}

/* Frees the cold part once nothing in it is held (the arrays are freed when they empty). */
static void cold_trim(struct session *sess)
{
    struct session_cold *cold = sess->cold;
    if (cold == NULL || cold->restored_len > 0 || cold->qos2_in_len > 0 || cold->will != NULL ||
        cold->will_journaled)
        return;
    free(cold->restored);
    free(cold->qos2_in);
    free(cold);
    sess->cold = NULL;
}

/* Takes the will out (the caller owns the reference), or NULL. Leaves the cold part for the
 * caller to trim. */
static struct msg *will_take(struct session *sess)
{
    struct msg *will = session_will(sess);
    if (will != NULL)
        sess->cold->will = NULL;
    return will;
}

int session_will_set(struct session *sess, struct msg *will, uint32_t delay_s)
{
    struct msg *old = will_take(sess);
    if (old != NULL)
        msg_release(old);
    if (will == NULL) {
        cold_trim(sess);
        return 0;
    }
    struct session_cold *cold = cold_get(sess);
    if (cold == NULL) {
        msg_release(will);
        return -ENOMEM;
    }
    cold->will = will;
    cold->will_delay_s = delay_s;
    return 0;
}

static void free_session(struct shard *s, struct session *sess)
{
    uint32_t pos = 0;
    struct subpack_entry sub;
    while (!sess->subs_parked && subpack_next(&sess->subs, &pos, &sub))
        if (!shared_filter_is_shared((const char *)sub.filter.ptr, sub.filter.len))
            (void)subtree_remove(s->subs, sub.filter, sess); /* Present: kept in step. */
    subpack_free(&sess->subs);
    for (uint32_t i = 0; i < sess->inflight_len; i++) {
        struct msg *m = sess->inflight[(sess->inflight_head + i) % sess->inflight_cap].msg;
        if (m != NULL)
            msg_release(m);
    }
    for (uint32_t i = 0; i < sess->queue_len; i++)
        msg_release(sess->queue[(sess->queue_head + i) % sess->queue_cap].msg);
    free(sess->inflight);
    free(sess->queue);
    free_origins(s, sess);
    if (sess->cold != NULL) {
        free(sess->cold->restored);
        free(sess->cold->qos2_in);
        if (sess->cold->will != NULL)
            msg_release(sess->cold->will);
        free(sess->cold);
    }
    free(sess->client_id);
    free(sess);
}

/* Frees a session that was never announced (a failed restore): nothing to journal. */
static void session_destroy_raw(struct shard *s, struct session *sess)
{
    table_unlink(s->sessions, sess);
    free_session(s, sess);
}

void session_destroy(struct shard *s, struct session *sess)
{
    ASSERT(sess->conn == NULL);
    shared_session_end(s, sess); /* Its shared deliveries go back to their groups. */
    session_set_persistent(s, sess, false); /* The end is journaled, the filters released. */
    table_unlink(s->sessions, sess);
    free_session(s, sess);
}

void session_table_destroy(struct shard *s, struct session_table *t)
{
    for (uint32_t i = 0; i <= t->mask; i++) {
        struct session *e = t->buckets[i];
        while (e != NULL) {
            struct session *next = e->hash_next;
            free_session(s, e);
            e = next;
        }
    }
    free(t->buckets);
    free(t);
}

int session_sub_add(struct session *sess, struct slice filter, uint8_t options, uint32_t sub_id)
{
    return subpack_put(&sess->subs, filter, options, sub_id) < 0 ? -ENOMEM : 0;
}

int session_sub_remove(struct session *sess, struct slice filter)
{
    return subpack_remove(&sess->subs, filter);
}

/* A persistent session going offline: its subscriptions leave the tree (nothing is routed to
 * it while it reads from the log; the registry's marks of its wildcard filters stay), so that
 * an offline session costs its packed subscriptions and no tree nodes (docs/benchmarks.md). */
static void subs_park(struct shard *s, struct session *sess)
{
    ASSERT(!sess->subs_parked);
    uint32_t pos = 0;
    struct subpack_entry sub;
    while (subpack_next(&sess->subs, &pos, &sub))
        if (!shared_filter_is_shared((const char *)sub.filter.ptr, sub.filter.len))
            (void)subtree_remove(s->subs, sub.filter, sess); /* Present: kept in step. */
    sess->subs_parked = true;
}

/* The session is back: its subscriptions return to the tree, with their options and
 * identifiers. One the tree has no memory for is dropped from the session (logged, its
 * registry hold released, the STATE journaled without it), so that both stay in step. */
static void subs_unpark(struct shard *s, struct session *sess)
{
    if (!sess->subs_parked)
        return;
    sess->subs_parked = false;
    uint32_t pos = 0;
    struct subpack_entry sub;
    bool is_lost = false;
    while (subpack_next(&sess->subs, &pos, &sub)) {
        if (shared_filter_is_shared((const char *)sub.filter.ptr, sub.filter.len) ||
            subtree_add(s->subs, sub.filter, sess, sub.options, sub.sub_id) >= 0)
            continue;
        LOG_ERROR("session", "subscription_lost client=%s filter_len=%u reason=out_of_memory",
                  sess->client_id, sub.filter.len);
        session_filter_changed(s, sess, sub.filter, -1);
        pos -= subpack_entry_len(sub.filter, sub.sub_id); /* the last entry moves here */
        (void)subpack_remove(&sess->subs, sub.filter);
        is_lost = true;
    }
    if (is_lost && sess->journaled)
        (void)persist_journal_state(s, sess); /* Counted and logged by persist on failure. */
}

bool session_write_packet(struct shard *s, struct conn *c, const struct mqtt_packet *pkt)
{
    struct mqtt_packet with_reason;
    if (c->version == MQTT_V5 && reason_is_failure(pkt)) {
        with_reason = *pkt;
        if (reason_attach(&with_reason, !c->is_problem_info_off, c->max_packet_out))
            pkt = &with_reason;
    }
    uint32_t n = codec_size(pkt, c->version);
    ASSERT(n > 0);
    uint8_t *p = conn_out_reserve(s, c, n);
    if (p == NULL)
        return false;
    uint32_t written = codec_encode(pkt, c->version, p);
    ASSERT(written == n);
    return true;
}

/* The cached encoding of this variant of the message being routed, or NULL. */
static const struct encode_variant *cached_variant(const struct encode_cache *ec,
                                                   const struct msg *m, uint8_t version,
                                                   uint8_t qos, bool retain, bool dup,
                                                   uint32_t sub_id)
{
    if (ec->msg != m)
        return NULL;
    for (uint32_t i = 0; i < ec->variant_count; i++) {
        const struct encode_variant *v = &ec->variants[i];
        if (v->version == version && v->qos == qos && v->retain == retain && v->dup == dup &&
            v->sub_id == sub_id)
            return v;
    }
    return NULL;
}

/* Remembers the encoding at `bytes` for the rest of the routing pass, if there is room. */
static void cache_variant(struct encode_cache *ec, const struct mqtt_packet *pkt,
                          uint8_t version, uint32_t sub_id, const uint8_t *bytes, uint32_t len)
{
    if (ec->variant_count == ENCODE_CACHE_VARIANTS || len > ENCODE_CACHE_BYTES_MAX - ec->used)
        return;
    uint32_t frame_len = 0;
    int header_len = codec_frame(bytes, len, &frame_len);
    ASSERT(header_len > 0 && frame_len == len);
    struct encode_variant *v = &ec->variants[ec->variant_count++];
    *v = (struct encode_variant){
        .version = version, .qos = pkt->publish.qos, .retain = pkt->publish.retain,
        .dup = pkt->publish.dup, .sub_id = sub_id, .off = ec->used, .len = len,
        .packet_id_off = (uint32_t)header_len + 2 + pkt->publish.topic.len,
    };
    memcpy(ec->bytes + ec->used, bytes, len);
    ec->used += len;
}

bool session_write_publish(struct shard *s, struct conn *c, const struct msg *m, uint8_t qos,
                           bool retain, bool dup, uint16_t packet_id, uint32_t sub_id)
{
    if (pubout_needed(c, sub_id)) /* Topic aliases or several identifiers: its own encoding. */
        return pubout_write(s, c, m, &(struct pubout_spec){ .qos = qos, .retain = retain,
                                                             .dup = dup, .packet_id = packet_id,
                                                             .sub_id = sub_id });
    const struct encode_variant *v =
        cached_variant(&s->encoded, m, c->version, qos, retain, dup, sub_id);
    if (v != NULL) {
        if (v->len > c->max_packet_out) {
            s->stats.dropped_too_large++;
            return true; /* MQTT-3.1.2-25: discard it as if it had been sent. */
        }
        uint8_t *p = conn_out_reserve(s, c, v->len);
        if (p == NULL)
            return false;
        memcpy(p, s->encoded.bytes + v->off, v->len);
        if (qos > 0) {
            p[v->packet_id_off] = (uint8_t)(packet_id >> 8);
            p[v->packet_id_off + 1] = (uint8_t)packet_id;
        }
        s->stats.deliveries++;
        return true;
    }
    struct mqtt_packet pkt = { .type = MQTT_PUBLISH };
    pkt.publish.qos = qos;
    pkt.publish.dup = dup;
    pkt.publish.retain = retain;
    pkt.publish.packet_id = packet_id;
    pkt.publish.topic = m->topic;
    pkt.publish.payload = m->payload;
    if (c->version == MQTT_V5) {
        pkt.publish.props = m->props;
        lifetime_props_out(m, &pkt.publish.props);
        if (sub_id != 0) {
            pkt.publish.props.sub_ids = &sub_id;
            pkt.publish.props.sub_id_count = 1;
        }
    }
    uint32_t n = codec_size(&pkt, c->version);
    if (n == 0 || n > c->max_packet_out) {
        s->stats.dropped_too_large++;
        return true; /* MQTT-3.1.2-25: discard it as if it had been sent. */
    }
    uint8_t *p = conn_out_reserve(s, c, n);
    if (p == NULL)
        return false;
    uint32_t written = codec_encode(&pkt, c->version, p);
    ASSERT(written == n);
    if (s->encoded.msg == m)
        cache_variant(&s->encoded, &pkt, c->version, sub_id, p, n);
    s->stats.deliveries++;
    return true;
}

/* Ring helpers for the window and the queue (both rings of struct session_out). */
static struct session_out *ring_at(struct session_out *r, uint32_t cap, uint32_t head,
                                   uint32_t i)
{
    return &r[(head + i) % cap];
}

static bool ring_reserve(struct session_out **r, uint32_t *head, uint32_t len, uint32_t *cap)
{
    if (len < *cap)
        return true;
    uint32_t ncap = *cap ? *cap * 2 : 8;
    struct session_out *n = malloc(ncap * sizeof(*n));
    if (n == NULL)
        return false;
    for (uint32_t i = 0; i < len; i++)
        n[i] = *ring_at(*r, *cap, *head, i);
    free(*r);
    *r = n;
    *head = 0;
    *cap = ncap;
    return true;
}

static bool packet_id_in_use(const struct session *sess, uint16_t id)
{
    for (uint32_t i = 0; i < sess->inflight_len; i++)
        if (sess->inflight[(sess->inflight_head + i) % sess->inflight_cap].packet_id == id)
            return true;
    const struct session_cold *cold = sess->cold;
    for (uint32_t i = 0; cold != NULL && i < cold->restored_len; i++)
        if (!cold->restored[i].skip && cold->restored[i].packet_id == id)
            return true;
    return false;
}

/* The next free packet id. The window is at most 65535, so one is always free. */
static uint16_t next_packet_id(struct session *sess)
{
    ASSERT(sess->inflight_len + (sess->cold != NULL ? sess->cold->restored_len : 0) < 65535);
    for (;;) {
        uint16_t id = sess->next_packet_id++;
        if (sess->next_packet_id == 0)
            sess->next_packet_id = 1;
        if (id != 0 && !packet_id_in_use(sess, id))
            return id;
    }
}

/* A shared delivery the group's owner counts as outstanding ended here (acknowledged, PUBREC'd,
 * or dropped): the owner stops counting it. */
static inline void share_done(struct shard *s, const struct session_out *e)
{
    if (e->share_tracked)
        shared_delivery_end(s, e->share_key, e->msg);
}

/* Moves the queue's head into the window and sends it. Returns false when the socket has no
 * room (the entry stays queued). */
static bool send_from_queue(struct shard *s, struct session *sess)
{
    struct session_out *q = ring_at(sess->queue, sess->queue_cap, sess->queue_head, 0);
    if (q->packet_id == 0 && msg_expired_now(q->msg)) {
        /* Expired while queued; a restored QoS 2 (packet id kept) was started and goes. */
        s->stats.dropped_expired++;
        share_done(s, q);
        msg_release(q->msg);
        sess->queue_head = (sess->queue_head + 1) % sess->queue_cap;
        sess->queue_len--;
        return true;
    }
    if (q->qos == 0) {
        /* Read from the log for a session that was behind: sent in log order, no window. */
        if (!session_write_publish(s, sess->conn, q->msg, 0, q->retain, false, 0, q->sub_id))
            return false;
        msg_release(q->msg);
        sess->queue_head = (sess->queue_head + 1) % sess->queue_cap;
        sess->queue_len--;
        return true;
    }
    if (pubout_too_large(sess->conn, q->msg, q->qos, q->sub_id)) {
        /* MQTT-3.1.2-25: discarded as if sent and acknowledged; never in the window. */
        s->stats.dropped_too_large++;
        share_done(s, q);
        if (q->packet_id != 0 && q->tracked && sess->journaled)
            (void)persist_journal_out(s, sess, q->packet_id, JOURNAL_OUT_COMPLETED,
                                      q->msg->origin_shard, q->msg->log_off); /* Logged. */
        msg_release(q->msg);
        sess->queue_head = (sess->queue_head + 1) % sess->queue_cap;
        sess->queue_len--;
        sess->cursor_dirty = sess->origins != NULL;
        return true;
    }
    if (!ring_reserve(&sess->inflight, &sess->inflight_head, sess->inflight_len,
                      &sess->inflight_cap))
        return false;
    /* A restored QoS 2 message keeps the packet id it had before the restart (DUP). */
    bool again = q->packet_id != 0;
    uint16_t id = again ? q->packet_id : next_packet_id(sess);
    struct session_out e = *q;
    e.packet_id = id;
    e.pubrec_received = false;
    e.unsent = false;
    if (q->qos == 2 && q->tracked && sess->journaled && !again) {
        /* The client may deliver it as soon as it arrives: its packet id is durable first,
         * so a restart re-sends it with the same id and the client sees it once. */
        uint64_t end = persist_journal_out(s, sess, id, JOURNAL_OUT_SENT,
                                           q->msg->origin_shard, q->msg->log_off);
        if (end > s->log.durable_off && s->cfg->store_flush == STORE_FLUSH_SYNC &&
            dispatch_wait_pump(s, sess->conn, end)) {
            e.unsent = true;
            e.journal_end = end;
            sess->unsent_count++;
        }
    }
    if (!e.unsent &&
        !session_write_publish(s, sess->conn, q->msg, q->qos, q->retain, again, id, q->sub_id))
        return false;
    *ring_at(sess->inflight, sess->inflight_cap, sess->inflight_head, sess->inflight_len++) = e;
    sess->queue_head = (sess->queue_head + 1) % sess->queue_cap;
    sess->queue_len--;
    return true;
}

/* Sends the window's held QoS 2 messages whose journal record is durable now, in order. */
static void send_unsent(struct shard *s, struct session *sess)
{
    for (uint32_t i = 0; sess->unsent_count > 0 && i < sess->inflight_len; i++) {
        struct session_out *e = ring_at(sess->inflight, sess->inflight_cap, sess->inflight_head,
                                        i);
        if (!e->unsent)
            continue;
        if (e->journal_end > s->log.durable_off)
            return; /* Later ones are later in the log. */
        if (!session_write_publish(s, sess->conn, e->msg, e->qos, e->retain, false,
                                   e->packet_id, e->sub_id))
            return;
        e->unsent = false;
        sess->unsent_count--;
    }
}

void session_pump(struct shard *s, struct session *sess)
{
    if (sess->conn != NULL && sess->conn->state == CONN_ACTIVE)
        send_unsent(s, sess);
    while (sess->conn != NULL && sess->queue_len > 0 &&
           sess->inflight_len < sess->receive_max_out) {
        if (!send_from_queue(s, sess))
            return;
    }
    session_catchup_poll(s, sess);
}

void session_catchup_poll(struct shard *s, struct session *sess)
{
    if (sess->origins == NULL || sess->conn == NULL || sess->conn->state != CONN_ACTIVE ||
        s->stopping || sess->queue_len >= MAX(s->cfg->max_queued_messages / 2, 1u))
        return;
    for (uint16_t i = 0; i < s->count; i++)
        if (sess->origins[i].mode == ORIGIN_BEHIND)
            catchup_start(s, sess, i);
}

/* Puts `m` in the queue (QoS 0 too, for log reads) as `spec` says (its msg is ignored; a
 * packet id in it is one the message had before a restart) and pumps. Returns false when it
 * could not be kept (out of memory, counted). */
static bool enqueue(struct shard *s, struct session *sess, const struct msg *m,
                    const struct session_out *spec)
{
    if (!ring_reserve(&sess->queue, &sess->queue_head, sess->queue_len, &sess->queue_cap)) {
        s->stats.dropped_queue++;
        return false;
    }
    struct msg *own = msg_keep(m, s->id);
    if (own == NULL) {
        s->stats.dropped_queue++;
        return false;
    }
    struct session_out e = *spec;
    e.msg = own;
    *ring_at(sess->queue, sess->queue_cap, sess->queue_head, sess->queue_len++) = e;
    if (sess->conn != NULL && sess->conn->state == CONN_ACTIVE)
        session_pump(s, sess);
    return true;
}

/* QoS 0 straight to the socket; QoS 1/2 into the window or the queue. */
static void deliver(struct shard *s, struct session *sess, const struct msg *m, uint8_t qos,
                    bool retain, uint32_t sub_id, bool tracked)
{
    ASSERT_HOT(qos <= 2);
    if (msg_expired_now(m)) {
        s->stats.dropped_expired++;
        return;
    }
    if (qos == 0) {
        if (sess->conn == NULL || sess->conn->state != CONN_ACTIVE ||
            !session_write_publish(s, sess->conn, m, 0, retain, false, 0, sub_id))
            s->stats.dropped_qos0++;
        return;
    }
    if (!tracked && sess->queue_len >= s->cfg->max_queued_messages) {
        s->stats.dropped_queue++;
        if ((s->stats.dropped_queue & 1023) == 1)
            LOG_WARN("session", "queue_full client=%s max=%u dropped_total=%llu",
                     sess->client_id, s->cfg->max_queued_messages,
                     (unsigned long long)s->stats.dropped_queue);
        return;
    }
    struct session_out spec = { .qos = qos, .retain = retain, .sub_id = sub_id,
                                .tracked = tracked };
    (void)enqueue(s, sess, m, &spec); /* Counted on failure. */
}

void session_deliver(struct shard *s, struct session *sess, const struct msg *m, uint8_t qos,
                     bool retain, uint32_t sub_id)
{
    if (sess->origins == NULL || m->log_off == MSG_NOT_LOGGED) {
        deliver(s, sess, m, qos, retain, sub_id, false);
        return;
    }
    /* A persistent session: the log is the source, live delivery the fast path. */
    struct session_origin *o = &sess->origins[m->origin_shard];
    if (o->mode != ORIGIN_LIVE)
        return; /* Read from the log when it catches up. */
    uint64_t end = m->log_off + m->log_len;
    uint64_t *pos = m->qos == 0 ? &o->pos0 : &o->pos1;
    if (end <= *pos)
        return; /* Already read from the log. */
    if (qos > 0 && sess->queue_len >= s->cfg->max_queued_messages) {
        /* Slow: stop holding copies; the rest of this origin's messages come from the log. */
        o->mode = ORIGIN_BEHIND;
        s->stats.sessions_behind++;
        return;
    }
    *pos = end;
    sess->cursor_dirty = true;
    deliver(s, sess, m, qos, retain, sub_id, true);
}

void session_deliver_retained(struct shard *s, struct session *sess, const struct msg *m,
                              uint8_t qos, uint32_t sub_id)
{
    deliver(s, sess, m, qos, true, sub_id, false);
}

void session_deliver_shared(struct shard *s, struct session *sess, const struct msg *m,
                            uint8_t qos, bool retain, uint32_t sub_id, uint64_t share_key,
                            bool is_tracked)
{
    ASSERT_HOT(share_key != 0);
    struct session_out spec = { .msg = (struct msg *)m, .qos = qos, .retain = retain,
                                .sub_id = sub_id, .share_key = share_key,
                                .share_tracked = is_tracked && qos > 0 };
    if (qos == 0 || msg_expired_now(m) || sess->queue_len >= s->cfg->max_queued_messages) {
        deliver(s, sess, m, qos, retain, sub_id, false); /* Sent, or dropped and counted. */
        share_done(s, &spec); /* QoS 0 was never counted. */
        return;
    }
    if (!enqueue(s, sess, m, &spec)) /* Counted. */
        share_done(s, &spec);
}

/* What a restart left for `m`: 0 nothing (a new delivery), 1 re-send it with packet id *id
 * (a QoS 2 delivery not yet PUBREC'd), -1 do not deliver it again (PUBREC'd or completed).
 * The entry is taken out of the list. */
static int restored_take(struct session *sess, const struct msg *m, uint16_t *id)
{
    struct session_cold *cold = sess->cold;
    for (uint32_t i = 0; i < cold->restored_len; i++) {
        struct session_out_restored *r = &cold->restored[i];
        if (r->origin == m->origin_shard && r->log_off == m->log_off) {
            int verdict = r->skip ? -1 : 1;
            *id = r->packet_id;
            *r = cold->restored[--cold->restored_len];
            if (cold->restored_len == 0) {
                free(cold->restored);
                cold->restored = NULL;
                cold_trim(sess);
            }
            return verdict;
        }
    }
    return 0;
}

void session_deliver_logged(struct shard *s, struct session *sess, const struct msg *m)
{
    ASSERT(sess->origins != NULL && m->log_off != MSG_NOT_LOGGED);
    struct session_origin *o = &sess->origins[m->origin_shard];
    uint64_t end = m->log_off + m->log_len;
    uint64_t *pos = m->qos == 0 ? &o->pos0 : &o->pos1;
    if (end <= *pos)
        return;
    bool matched = false;
    bool rap = false;
    uint8_t best = 0;
    uint32_t sub_id = 0;
    struct slice target;
    bool is_p2p = s->cfg->p2p && iot_p2p_target(m->topic, &target);
    if (is_p2p) {
        /* Read through the session's P2P queue: for it only, at its QoS (core/iot.h). */
        matched = target.len == sess->client_id_len &&
                  memcmp(target.ptr, sess->client_id, target.len) == 0;
        best = 2;
    }
    uint32_t sub_pos = 0;
    struct subpack_entry entry;
    while (!is_p2p && subpack_next(&sess->subs, &sub_pos, &entry)) {
        const struct subpack_entry *sub = &entry;
        if (!topic_match(sub->filter, m->topic))
            continue;
        if ((sub->options & MQTT_SUBOPT_NO_LOCAL) && sess->client_id_len == m->client_id.len &&
            memcmp(sess->client_id, m->client_id.ptr, m->client_id.len) == 0)
            continue;
        matched = true;
        best = MAX(best, (uint8_t)(sub->options & MQTT_SUBOPT_QOS_MASK));
        rap |= (sub->options & MQTT_SUBOPT_RETAIN_AS_PUBLISHED) != 0;
        if (sub_id == 0)
            sub_id = sub->sub_id;
        else if (sub->sub_id != 0 && sub->sub_id != sub_id)
            sub_id = PUBOUT_SUB_ID_MULTI; /* Collected when written (core/pubout.h). */
    }
    uint16_t id = 0;
    int restored = sess->cold != NULL && sess->cold->restored_len > 0
                       ? restored_take(sess, m, &id) : 0;
    if (matched && restored == 0 && msg_expired_now(m)) {
        s->stats.dropped_expired++; /* Expired while the session was offline or behind. */
        matched = false;
    }
    if (matched && restored >= 0) {
        struct session_out spec = { .qos = MIN(m->qos, best), .retain = rap && m->retain,
                                    .sub_id = sub_id, .tracked = true,
                                    .packet_id = restored == 1 ? id : 0 };
        if (!enqueue(s, sess, m, &spec))
            return; /* Kept behind: read again on the next catch-up. */
    }
    *pos = end;
    sess->cursor_dirty = true;
}

void session_origin_positions(const struct session *sess, uint16_t o, uint64_t *pos0,
                              uint64_t *pos1)
{
    *pos0 = sess->origins[o].pos0;
    uint64_t p1 = sess->origins[o].pos1;
    for (uint32_t i = 0; i < sess->inflight_len; i++) {
        const struct session_out *e =
            &sess->inflight[(sess->inflight_head + i) % sess->inflight_cap];
        if (e->tracked && e->msg != NULL && !e->pubrec_received && e->msg->origin_shard == o)
            p1 = MIN(p1, e->msg->log_off);
    }
    for (uint32_t i = 0; i < sess->queue_len; i++) {
        const struct session_out *e = &sess->queue[(sess->queue_head + i) % sess->queue_cap];
        if (e->tracked && e->msg->qos > 0 && e->msg->origin_shard == o)
            p1 = MIN(p1, e->msg->log_off);
    }
    *pos1 = p1;
}

/* Finds the window entry for `packet_id`; returns its position or -1. */
static int64_t window_find(const struct session *sess, uint16_t packet_id)
{
    for (uint32_t i = 0; i < sess->inflight_len; i++)
        if (sess->inflight[(sess->inflight_head + i) % sess->inflight_cap].packet_id == packet_id)
            return i;
    return -1;
}

/* Removes the window entry at position `i`, keeping the order of the others. */
static void window_remove(struct session *sess, uint32_t i)
{
    struct session_out *e = ring_at(sess->inflight, sess->inflight_cap, sess->inflight_head, i);
    if (e->msg != NULL)
        msg_release(e->msg);
    for (uint32_t j = i; j + 1 < sess->inflight_len; j++)
        *ring_at(sess->inflight, sess->inflight_cap, sess->inflight_head, j) =
            *ring_at(sess->inflight, sess->inflight_cap, sess->inflight_head, j + 1);
    sess->inflight_len--;
}

bool session_on_puback(struct shard *s, struct session *sess, uint16_t packet_id)
{
    int64_t i = window_find(sess, packet_id);
    if (i < 0)
        return false;
    struct session_out *e = ring_at(sess->inflight, sess->inflight_cap, sess->inflight_head,
                                    (uint32_t)i);
    if (e->qos != 1)
        return false;
    share_done(s, e);
    window_remove(sess, (uint32_t)i);
    sess->cursor_dirty = sess->origins != NULL;
    session_pump(s, sess);
    return true;
}

bool session_on_pubrec(struct shard *s, struct session *sess, uint16_t packet_id, bool failed)
{
    int64_t i = window_find(sess, packet_id);
    if (i < 0)
        return false;
    struct session_out *e = ring_at(sess->inflight, sess->inflight_cap, sess->inflight_head,
                                    (uint32_t)i);
    if (e->qos != 2 || e->unsent)
        return false;
    /* The client has it: a crash now must not make the group send it again. */
    share_done(s, e);
    e->share_tracked = false;
    if (e->msg != NULL && e->tracked && sess->journaled)
        (void)persist_journal_out(s, sess, packet_id,
                                  failed ? JOURNAL_OUT_COMPLETED : JOURNAL_OUT_PUBREC,
                                  e->msg->origin_shard, e->msg->log_off); /* Logged on failure. */
    if (failed) {
        /* PUBREC with a failure reason ends the exchange (MQTT-4.3.3): no PUBREL. */
        window_remove(sess, (uint32_t)i);
        session_pump(s, sess);
        return true;
    }
    e->pubrec_received = true;
    sess->cursor_dirty = sess->origins != NULL;
    return true;
}

bool session_on_pubcomp(struct shard *s, struct session *sess, uint16_t packet_id)
{
    int64_t i = window_find(sess, packet_id);
    if (i < 0)
        return false;
    struct session_out *e = ring_at(sess->inflight, sess->inflight_cap, sess->inflight_head,
                                    (uint32_t)i);
    if (e->qos != 2 || !e->pubrec_received)
        return false;
    if (sess->journaled)
        (void)persist_journal_out(s, sess, packet_id, JOURNAL_OUT_COMPLETED,
                                  e->msg != NULL ? e->msg->origin_shard : e->origin,
                                  e->msg != NULL ? e->msg->log_off : e->log_off);
    window_remove(sess, (uint32_t)i);
    session_pump(s, sess);
    return true;
}

/* The new connection of `sess` takes smaller packets than the one its window was sent on:
 * what it can never take is dropped as if sent and acknowledged (MQTT-3.1.2-25). */
static void window_drop_too_large(struct shard *s, struct session *sess)
{
    for (uint32_t i = 0; i < sess->inflight_len;) {
        struct session_out *e = ring_at(sess->inflight, sess->inflight_cap, sess->inflight_head,
                                        i);
        if (e->pubrec_received || e->msg == NULL ||
            !pubout_too_large(sess->conn, e->msg, e->qos, e->sub_id)) {
            i++;
            continue;
        }
        s->stats.dropped_too_large++;
        share_done(s, e);
        if (e->qos == 2 && e->tracked && sess->journaled)
            (void)persist_journal_out(s, sess, e->packet_id, JOURNAL_OUT_COMPLETED,
                                      e->msg->origin_shard, e->msg->log_off); /* Logged. */
        if (e->unsent)
            sess->unsent_count--;
        window_remove(sess, i);
        sess->cursor_dirty = sess->origins != NULL;
    }
}

void session_attach(struct shard *s, struct session *sess, struct conn *c)
{
    ASSERT(sess->conn == NULL && c->session == NULL);
    sess->conn = c;
    c->session = sess;
    subs_unpark(s, sess);
    window_drop_too_large(s, sess);
    /* MQTT-4.4.0-1: re-send unacknowledged PUBLISH (DUP set) and PUBREL, in original order. */
    for (uint32_t i = 0; i < sess->inflight_len; i++) {
        struct session_out *e = ring_at(sess->inflight, sess->inflight_cap, sess->inflight_head,
                                        i);
        if (e->pubrec_received) {
            struct mqtt_packet pkt = { .type = MQTT_PUBREL };
            pkt.ack.packet_id = e->packet_id;
            (void)session_write_packet(s, c, &pkt); /* Resent again on the next reconnect. */
        } else if (!e->unsent) { /* Held ones go out with session_pump. */
            (void)session_write_publish(s, c, e->msg, e->qos, e->retain, true, e->packet_id,
                                        e->sub_id);
        }
    }
    session_pump(s, sess);
    shared_session_online(s, sess);
}

bool session_qos2_has(const struct session *sess, uint16_t packet_id)
{
    const struct session_cold *cold = sess->cold;
    for (uint32_t i = 0; cold != NULL && i < cold->qos2_in_len; i++)
        if (cold->qos2_in[i] == packet_id)
            return true;
    return false;
}

int session_qos2_add(struct session *sess, uint16_t packet_id)
{
    struct session_cold *cold = cold_get(sess);
    if (cold == NULL)
        return -ENOMEM;
    if (cold->qos2_in_len == cold->qos2_in_cap) {
        if (cold->qos2_in_cap >= 65535)
            return -ENOSPC;
        uint32_t cap = cold->qos2_in_cap ? cold->qos2_in_cap * 2 : 4;
        uint16_t *n = realloc(cold->qos2_in, cap * sizeof(*n));
        if (n == NULL) {
            cold_trim(sess);
            return -ENOMEM;
        }
        cold->qos2_in = n;
        cold->qos2_in_cap = cap;
    }
    cold->qos2_in[cold->qos2_in_len++] = packet_id;
    return 0;
}

bool session_qos2_remove(struct session *sess, uint16_t packet_id)
{
    struct session_cold *cold = sess->cold;
    for (uint32_t i = 0; cold != NULL && i < cold->qos2_in_len; i++) {
        if (cold->qos2_in[i] == packet_id) {
            cold->qos2_in[i] = cold->qos2_in[--cold->qos2_in_len];
            if (cold->qos2_in_len == 0) {
                free(cold->qos2_in);
                cold->qos2_in = NULL;
                cold->qos2_in_cap = 0;
                cold_trim(sess);
            }
            return true;
        }
    }
    return false;
}

/* A persistent session loses its connection: it keeps its window (re-sent with the same
 * packet ids, MQTT-4.4.0-1) and its positions, not its queue: what was queued is read from
 * the log again when it returns. */
static void go_offline(struct shard *s, struct session *sess)
{
    for (uint32_t i = 0; i < sess->queue_len; i++) {
        struct session_out *e = ring_at(sess->queue, sess->queue_cap, sess->queue_head, i);
        if (e->tracked) {
            struct session_origin *o = &sess->origins[e->msg->origin_shard];
            uint64_t *pos = e->msg->qos == 0 ? &o->pos0 : &o->pos1;
            *pos = MIN(*pos, e->msg->log_off);
        }
        msg_release(e->msg);
    }
    /* Offline, it holds positions, not copies: the rings go (the window only when empty). */
    free(sess->queue);
    sess->queue = NULL;
    sess->queue_cap = 0;
    sess->queue_len = 0;
    sess->queue_head = 0;
    if (sess->inflight_len == 0) {
        free(sess->inflight);
        sess->inflight = NULL;
        sess->inflight_cap = 0;
        sess->inflight_head = 0;
    }
    for (uint16_t i = 0; i < s->count; i++)
        if (sess->origins[i].mode == ORIGIN_LIVE)
            sess->origins[i].mode = ORIGIN_BEHIND;
    (void)persist_journal_cursor(s, sess); /* Counted and logged by persist on failure. */
    sess->cursor_dirty = false;
    subs_park(s, sess);
}

/* Journals the will `sess` holds now (or that it holds none), if it differs from what the
 * journal says. Failures are counted and logged by persist. */
static void journal_will(struct shard *s, struct session *sess)
{
    struct msg *will = session_will(sess);
    if (!sess->journaled || (will == NULL && (sess->cold == NULL || !sess->cold->will_journaled)))
        return;
    (void)persist_journal_will(s, sess);
    sess->cold->will_journaled = will != NULL;
    cold_trim(sess);
}

void session_will_drop(struct shard *s, struct session *sess)
{
    if (session_will(sess) == NULL)
        return;
    (void)session_will_set(sess, NULL, 0); /* cannot fail */
    journal_will(s, sess);
}

void session_conn_lost(struct shard *s, struct conn *c, bool publish_will)
{
    struct session *sess = c->session;
    if (sess == NULL)
        return;
    c->session = NULL;
    sess->conn = NULL;
    sess->offline_since_ms = s->now_ms;
    if (sess->persistent)
        shared_session_offline(s, sess); /* Before go_offline drops the queue. */
    if (sess->persistent && sess->origins != NULL)
        go_offline(s, sess);
    struct msg *will = will_take(sess);
    if (will != NULL && publish_will && sess->persistent && sess->cold->will_delay_s > 0) {
        /* MQTT-3.1.3-9: held for its delay; session_tick sends it, a reconnect cancels it.
         * Journaled, so a restart does not lose it (also for a connection the server
         * closes itself at a stop). */
        sess->cold->will = will;
        sess->cold->will_due_ms = s->now_ms + (uint64_t)sess->cold->will_delay_s * 1000u;
        will = NULL;
        journal_will(s, sess);
        LOG_INFO("session", "will_held client=%s delay_s=%u", sess->client_id,
                 sess->cold->will_delay_s);
    }
    cold_trim(sess);
    if (!sess->persistent)
        session_destroy(s, sess);
    /* The will goes out after the session is settled so a subscriber on this very session
     * (it was just destroyed, or is offline) is handled like any other. */
    if (will != NULL) {
        if (publish_will)
            router_publish(s, will);
        msg_release(will);
    }
}

bool session_expire_if_due(struct shard *s, struct session *sess)
{
    if (sess->conn != NULL ||
        !lifetime_session_expired(sess->expiry_s, sess->offline_since_ms, s->now_ms))
        return false;
    struct msg *will = will_take(sess);
    LOG_INFO("session", "expired client=%s will=%d", sess->client_id, will != NULL);
    session_destroy(s, sess);
    if (will != NULL) {
        router_publish(s, will); /* The session ended before its will delay did. */
        msg_release(will);
    }
    return true;
}

/* One offline session on the tick: takes its will out into *will when due (its delay passed,
 * or the session ends now) and ends it when expired. Returns true when it ended. */
static bool tick_session(struct shard *s, struct session *sess, struct msg **will)
{
    *will = NULL;
    if (sess->conn != NULL)
        return false;
    bool expired = lifetime_session_expired(sess->expiry_s, sess->offline_since_ms, s->now_ms);
    if (session_will(sess) != NULL && (expired || s->now_ms >= sess->cold->will_due_ms)) {
        LOG_INFO("session", "will_due client=%s delay_s=%u", sess->client_id,
                 sess->cold->will_delay_s);
        *will = will_take(sess);
        cold_trim(sess);
    }
    if (expired) {
        LOG_INFO("session", "expired client=%s", sess->client_id);
        session_destroy(s, sess);
    }
    return expired;
}

void session_tick(struct shard *s)
{
    /* Wills are published after the scan: routing must not run while the table is walked.
     * The journal learns that a session holds its will no more only after the will's own
     * record, so a crash in between publishes it again rather than never. */
    struct msg *wills[SESSION_WILLS_PER_TICK];
    struct session *holders[SESSION_WILLS_PER_TICK]; /* NULL: the session ended */
    uint32_t will_count = 0;
    struct session_table *t = s->sessions;
    for (uint32_t i = 0; i <= t->mask && will_count < SESSION_WILLS_PER_TICK; i++) {
        struct session *e = t->buckets[i];
        while (e != NULL && will_count < SESSION_WILLS_PER_TICK) {
            struct session *next = e->hash_next;
            struct msg *will;
            bool ended = tick_session(s, e, &will);
            if (will != NULL) {
                holders[will_count] = ended ? NULL : e;
                wills[will_count++] = will;
            }
            e = next;
        }
    }
    for (uint32_t i = 0; i < will_count; i++) {
        router_publish(s, wills[i]);
        msg_release(wills[i]);
    }
    /* Routing to an offline session only queues or skips: the holders are all still here. */
    for (uint32_t i = 0; i < will_count; i++)
        if (holders[i] != NULL)
            journal_will(s, holders[i]);
}

void session_journal_cursors(struct shard *s)
{
    struct session_table *t = s->sessions;
    for (uint32_t i = 0; i <= t->mask; i++)
        for (struct session *e = t->buckets[i]; e != NULL; e = e->hash_next)
            if (e->cursor_dirty && e->journaled)
                (void)persist_journal_cursor(s, e); /* Counted and logged on failure. */
}

/* Journals the outbound QoS 2 deliveries in the window again (a snapshot). */
static bool journal_window(struct shard *s, struct session *sess)
{
    for (uint32_t i = 0; i < sess->inflight_len; i++) {
        const struct session_out *e = &sess->inflight[(sess->inflight_head + i) %
                                                      sess->inflight_cap];
        if (e->qos != 2 || (e->msg == NULL && !e->pubrec_received) ||
            (e->msg != NULL && !e->tracked))
            continue;
        uint16_t origin = e->msg != NULL ? e->msg->origin_shard : e->origin;
        uint64_t log_off = e->msg != NULL ? e->msg->log_off : e->log_off;
        if (persist_journal_out(s, sess, e->packet_id,
                                e->pubrec_received ? JOURNAL_OUT_PUBREC : JOURNAL_OUT_SENT,
                                origin, log_off) == 0)
            return false;
    }
    return true;
}

static bool journal_session_again(struct shard *s, struct session *e)
{
    return persist_journal_state(s, e) != 0 && persist_journal_cursor(s, e) != 0 &&
           journal_window(s, e) &&
           (e->cold == NULL || !e->cold->will_journaled || persist_journal_will(s, e) != 0);
}

uint32_t session_table_mask(const struct session_table *t)
{
    return t->mask;
}

int session_journal_step(struct shard *s, uint32_t *bucket, uint32_t mask, uint32_t max)
{
    struct session_table *t = s->sessions;
    if (t->mask != mask)
        return -EAGAIN;
    uint32_t visited = 0;
    for (; *bucket <= t->mask && visited < max; (*bucket)++) {
        for (struct session *e = t->buckets[*bucket]; e != NULL; e = e->hash_next, visited++)
            if (e->journaled && !journal_session_again(s, e))
                return -ENOBUFS;
    }
    return *bucket > t->mask ? 1 : 0;
}

/* Restores the subscriptions of a decoded STATE. */
static int adopt_subs(struct shard *s, struct session *sess, const struct journal_entry *st)
{
    uint32_t pos = 0;
    struct journal_sub sub;
    while (journal_sub_next(st, &pos, &sub)) {
        if (!topic_filter_valid(sub.filter) || sub.sub_id > SUBPACK_SUB_ID_MAX)
            continue; /* Never from this code; never trusted either. */
        if (shared_filter_is_shared((const char *)sub.filter.ptr, sub.filter.len)) {
            /* A shared subscription: the group's owner shard holds it (core/shared.h). */
            int rc = shared_subscribe(s, sess, sub.filter, sub.options, sub.sub_id);
            if (rc < 0)
                return rc;
            continue;
        }
        /* Restored offline: out of the tree until it returns (session_attach). A group
         * cursor's filter (core/shared.h) is never in it. */
        if (session_sub_add(sess, sub.filter, sub.options, sub.sub_id) != 0)
            return -ENOMEM;
    }
    return 0;
}

/* Outbound QoS 2 deliveries the journal holds: PUBREC'd ones wait in the window for PUBCOMP
 * (PUBREL is re-sent on connect); sent ones get their packet id back when the catch-up reads
 * their record again; PUBREC'd and completed ones are not delivered again. */
static int adopt_outs(struct session *sess, const struct recovery_session *rs)
{
    if (rs->outs_len == 0)
        return 0;
    struct session_cold *cold = cold_get(sess);
    if (cold == NULL)
        return -ENOMEM;
    cold->restored = calloc(rs->outs_len, sizeof(*cold->restored));
    if (cold->restored == NULL)
        return -ENOMEM; /* the session is freed with its cold part */
    for (uint32_t i = 0; i < rs->outs_len; i++) {
        const struct recovery_out *o = &rs->outs[i];
        cold->restored[cold->restored_len++] = (struct session_out_restored){
            .log_off = o->log_off, .origin = o->origin, .packet_id = o->packet_id,
            .skip = o->state != JOURNAL_OUT_SENT };
        if (o->state != JOURNAL_OUT_PUBREC)
            continue;
        if (!ring_reserve(&sess->inflight, &sess->inflight_head, sess->inflight_len,
                          &sess->inflight_cap))
            return -ENOMEM;
        *ring_at(sess->inflight, sess->inflight_cap, sess->inflight_head, sess->inflight_len++) =
            (struct session_out){ .packet_id = o->packet_id, .qos = 2, .pubrec_received = true,
                                  .log_off = o->log_off, .origin = o->origin };
    }
    return 0;
}

/* The will the session held offline when the broker stopped: held again, due when it was
 * due (at once if that passed while the broker was down). One that cannot be read is logged
 * and dropped (the session itself is restored). */
static void adopt_will(struct shard *s, struct session *sess, const struct recovery_session *rs,
                       uint64_t wall_ns, uint64_t now_ms)
{
    struct journal_entry w;
    struct record_header h;
    if (rs->will == NULL)
        return;
    int rc = journal_decode((struct slice){ rs->will, rs->will_len }, &w);
    if (rc == 0 && (w.kind != JOURNAL_WILL || w.will_record.len == 0 ||
                    record_verify(w.will_record.ptr, w.will_record.len, &h) != RECORD_OK))
        rc = -EBADMSG;
    struct msg *will = NULL;
    if (rc == 0)
        rc = msg_from_record(w.will_record.ptr, &h, s->id, &will);
    if (rc == 0)
        rc = session_will_set(sess, will, w.will_delay_s); /* takes `will` over */
    if (rc != 0) {
        LOG_ERROR("store", "will_restore_failed client=%s err=%d", sess->client_id, rc);
        return;
    }
    uint64_t left_ms = w.will_due_ns > wall_ns ? (w.will_due_ns - wall_ns) / 1000000u : 0;
    sess->cold->will_due_ms = now_ms + left_ms;
    sess->cold->will_journaled = true;
    LOG_INFO("store", "will_restored client=%s delay_s=%u due_in_ms=%llu", sess->client_id,
             w.will_delay_s, (unsigned long long)left_ms);
}

int session_adopt(struct shard *s, const struct recovery_session *rs)
{
    struct journal_entry st;
    if (journal_decode((struct slice){ rs->state, rs->state_len }, &st) != 0 ||
        st.kind != JOURNAL_STATE)
        return -EBADMSG;
    struct session *sess = session_create(
        s, (struct slice){ (const uint8_t *)rs->client_id, rs->client_id_len });
    if (sess == NULL)
        return -ENOMEM;
    sess->version = st.mqtt_version;
    sess->expiry_s = lifetime_session_expiry(st.expiry_s, s->cfg->session_expiry_max_s);
    sess->since_ns = st.since_ns;
    sess->persistent = true;
    sess->journaled = true;
    sess->subs_parked = true;
    /* Its filters are in the registry already: persist_open registered every restored one. */
    sess->origins = calloc(s->count, sizeof(*sess->origins));
    if (sess->origins == NULL || adopt_subs(s, sess, &st) != 0) {
        session_destroy_raw(s, sess);
        return -ENOMEM;
    }
    struct journal_entry cur;
    bool has_cursor = rs->cursor != NULL &&
                      journal_decode((struct slice){ rs->cursor, rs->cursor_len }, &cur) == 0 &&
                      cur.kind == JOURNAL_CURSOR;
    for (uint16_t i = 0; i < s->count; i++) {
        sess->origins[i].mode = ORIGIN_BEHIND;
        if (has_cursor && i < cur.shard_count) {
            struct journal_pos p = journal_pos_at(&cur, i);
            sess->origins[i].pos0 = p.pos0;
            sess->origins[i].pos1 = p.pos1;
        }
    }
    for (uint32_t i = 0; i < rs->qos2_in_len; i++)
        if (session_qos2_add(sess, rs->qos2_in[i]) != 0)
            break; /* Out of memory: a re-sent PUBLISH may then be taken as new. */
    if (adopt_outs(sess, rs) != 0) {
        session_destroy_raw(s, sess);
        return -ENOMEM;
    }
    uint64_t wall = base_wall_ns();
    uint64_t age_ms = wall > rs->last_ns ? (wall - rs->last_ns) / 1000000u : 0;
    uint64_t now = base_now_ms();
    sess->offline_since_ms = now > age_ms ? now - age_ms : 0;
    adopt_will(s, sess, rs, wall, now);
    return 0;
}
