/* core/dispatch.c - the packet dispatcher: decode, validate against the session's state,
 * apply, answer. Shard thread only.
 *
 * Error mapping (STYLE 5): a decode failure or protocol violation ends the connection; a v5
 * client first gets DISCONNECT with the reason code (MQTT-4.13), a v3 client is just closed
 * (MQTT-4.8.0-1 of 3.1.1). Before CONNACK, failures are answered with CONNACK when the spec
 * has a code for them. docs/protocol-errors.md lists every case.
 */
#include "core/dispatch.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/codec.h"
#include "core/conn.h"
#include "core/iot.h"
#include "core/lifetime.h"
#include "core/log.h"
#include "core/msg.h"
#include "core/persist.h"
#include "core/router.h"
#include "core/session.h"
#include "core/shard.h"
#include "core/shared.h"
#include "core/subtree.h"
#include "core/topic.h"

#define CLIENT_ID_ASSIGNED_MAX 40

struct suback_answer;
static bool answer_subscribe(struct shard *s, struct conn *c, struct suback_answer *a);

/* Ends the connection for a peer error: DISCONNECT(rc) on v5, plain close on v3. */
static bool fail(struct shard *s, struct conn *c, enum mqtt_rc rc, const char *what)
{
    LOG_INFO("conn", "protocol_error conn=%s client=%s rc=0x%02x what=\"%s\"", c->label,
             c->session ? c->session->client_id : "-", rc, what);
    if (c->version == MQTT_V5) {
        struct mqtt_packet pkt = { .type = MQTT_DISCONNECT };
        pkt.reason.rc = (uint8_t)rc;
        /* Some decode results (0x84, 0x85...) are CONNACK-only: DISCONNECT says 0x82. */
        if (codec_size(&pkt, MQTT_V5) == 0)
            pkt.reason.rc = MQTT_RC_PROTOCOL_ERROR;
        (void)session_write_packet(s, c, &pkt); /* Best effort: we close either way. */
    }
    session_conn_lost(s, c, true);
    conn_close(s, c, what);
    return false;
}

/* Refuses a CONNECT: CONNACK with the v5 reason or the v3 return code, then close. */
static bool refuse_connect(struct shard *s, struct conn *c, enum mqtt_rc v5_rc,
                           enum mqtt_v3_connack v3_rc, const char *what)
{
    LOG_INFO("conn", "connect_refused conn=%s version=%u rc=0x%02x what=\"%s\"", c->label,
             c->version, c->version == MQTT_V5 ? (unsigned)v5_rc : (unsigned)v3_rc, what);
    struct mqtt_packet pkt = { .type = MQTT_CONNACK };
    pkt.connack.rc = c->version == MQTT_V5 ? (uint8_t)v5_rc : (uint8_t)v3_rc;
    (void)session_write_packet(s, c, &pkt); /* Best effort: we close either way. */
    conn_close(s, c, what);
    return false;
}

/* mqtt.redirect_to: every CONNECT is answered with CONNACK 0x9C Use another server (0x9D
 * Server moved with mqtt.redirect_permanent) carrying the Server Reference (v5), or 0x03
 * Server unavailable (v3, which has no redirect), and the connection closes. */
static bool redirect_connect(struct shard *s, struct conn *c)
{
    const struct config *cfg = s->cfg;
    enum mqtt_rc rc = cfg->redirect_permanent ? MQTT_RC_SERVER_MOVED : MQTT_RC_USE_ANOTHER_SERVER;
    LOG_INFO("conn", "connect_redirected conn=%s version=%u rc=0x%02x to=%s", c->label,
             c->version, c->version == MQTT_V5 ? (unsigned)rc : MQTT_V3_SERVER_UNAVAILABLE,
             cfg->redirect_to);
    struct mqtt_packet pkt = { .type = MQTT_CONNACK };
    pkt.connack.rc = c->version == MQTT_V5 ? (uint8_t)rc : (uint8_t)MQTT_V3_SERVER_UNAVAILABLE;
    if (c->version == MQTT_V5) {
        pkt.connack.props.present = 1ull << MQTT_PROP_SERVER_REFERENCE;
        pkt.connack.props.server_reference = slice_from_cstr(cfg->redirect_to);
    }
    (void)session_write_packet(s, c, &pkt); /* Best effort: we close either way. */
    conn_close(s, c, "redirected");
    return false;
}

/* True if a message to `topic` is a P2P message (mqtt.p2p, core/iot.h): such messages are
 * never retained, so their retain flag is cleared before they are logged. */
static bool is_p2p_topic(const struct shard *s, struct slice topic)
{
    struct slice target;
    return s->cfg->p2p && iot_p2p_target(topic, &target);
}

static bool send_ack(struct shard *s, struct conn *c, uint8_t type, uint16_t packet_id,
                     uint8_t rc)
{
    struct mqtt_packet pkt = { .type = type };
    pkt.ack.packet_id = packet_id;
    pkt.ack.rc = c->version == MQTT_V5 ? rc : 0;
    if (!session_write_packet(s, c, &pkt))
        return fail(s, c, MQTT_RC_QUOTA_EXCEEDED, "output full");
    return true;
}

/* Makes a client id whose home is this shard, so the connection need not move. */
static struct slice assign_client_id(struct shard *s, char *buf, size_t cap)
{
    for (;;) {
        int n = snprintf(buf, cap, "keelmq-%u-%llx", s->id,
                         (unsigned long long)(++s->client_id_counter * 0x9E3779B97F4A7C15ull));
        ASSERT(n > 0 && (size_t)n < cap);
        struct slice id = { (const uint8_t *)buf, (uint32_t)n };
        if (shard_home(s, id) == s->id)
            return id;
    }
}

static bool start_handoff(struct shard *s, struct conn *c, const uint8_t *frame, uint32_t len,
                          uint16_t home)
{
    c->state = CONN_HANDOFF;
    c->handoff_target = home;
    conn_stash(s, c, frame, len);
    if (c->state != CONN_HANDOFF)
        return false; /* The stash failed and closed it. */
    if (c->recv_armed) {
        /* The descriptor moves only once no recv of ours can still complete on it. */
        struct io_uring_sqe *sqe = uring_sqe(&s->ring);
        io_uring_prep_cancel64(sqe, uring_ud(URING_OP_RECV, c->gen, c->idx), 0);
        io_uring_sqe_set_data64(sqe, uring_ud(URING_OP_CANCEL, c->gen, c->idx));
    } else {
        dispatch_handoff_send(s, c);
    }
    return false;
}

void dispatch_handoff_send(struct shard *s, struct conn *c)
{
    ASSERT(c->state == CONN_HANDOFF && !c->recv_armed && c->handoff == NULL);
    struct handoff *h = malloc(sizeof(*h) + c->in.len);
    if (h == NULL) {
        conn_close(s, c, "out of memory for handoff");
        return;
    }
    h->from_shard = s->id;
    h->len = c->in.len;
    h->accepted_ms = c->accepted_ms;
    memcpy(h->label, c->label, sizeof(h->label));
    memcpy(h->bytes, c->in.data, c->in.len);
    c->in.len = 0;
    c->handoff = h;
    /* Counted from now: the target's release note can overtake our own MSG_RING completion. */
    s->handoffs_pending++;
    struct shard *target = &s->set->shards[c->handoff_target];
    struct io_uring_sqe *sqe = uring_sqe(&s->ring);
    uring_prep_msg_ring_fd(sqe, target->wake.ring_fd, c->slot, IORING_FILE_INDEX_ALLOC,
                           uring_ud_ptr(URING_OP_HANDOFF_IN, h));
    io_uring_sqe_set_data64(sqe, uring_ud(URING_OP_HANDOFF_OUT, c->gen, c->idx));
}

void dispatch_handoff_sent(struct shard *s, struct conn *c, int res)
{
    struct handoff *h = c->handoff;
    ASSERT(h != NULL);
    c->handoff = NULL;
    if (res < 0) {
        /* The target's descriptor table is full (-ENFILE) or it is gone: nobody else has the
         * socket, so it is ours to close. */
        LOG_WARN("conn", "handoff_failed conn=%s target=%u err=%d", c->label, c->handoff_target,
                 res);
        free(h);
        s->handoffs_pending--;
    } else {
        /* The target owns the connection now and sends NOTE_HANDOFF_RELEASE for `h`. */
        s->stats.handoffs_out++;
    }
    conn_close(s, c, res < 0 ? "handoff failed" : "handed off");
}

void dispatch_handoff_in(struct shard *s, int slot, const struct handoff *h)
{
    struct conn *c = s->stopping ? NULL : conn_alloc(s, slot);
    if (c == NULL) {
        if (!s->stopping)
            LOG_WARN("conn", "handoff_refused conn=%s reason=pool_full", h->label);
        struct io_uring_sqe *sqe = uring_sqe(&s->ring);
        io_uring_prep_close_direct(sqe, (unsigned)slot);
        io_uring_sqe_set_data64(sqe, uring_ud(URING_OP_NONE, 0, 0));
    } else {
        s->stats.handoffs_in++;
        snprintf(c->label, sizeof(c->label), "%u/%d", s->id, slot);
        c->accepted_ms = h->accepted_ms;
        conn_arm_recv(s, c);
        conn_feed(s, c, h->bytes, h->len);
    }
    /* The pointer goes back to its owner, which frees it; we never write through it. */
    shard_post(s, h->from_shard, (struct note){ .kind = NOTE_HANDOFF_RELEASE,
                                                .ptr = (void *)h });
}

/* Settles the session for an accepted CONNECT on the client id's home shard: takeover of an
 * older connection, clean start or resume. Returns the session or NULL (out of memory). */
static struct session *take_session(struct shard *s, struct slice id, bool clean_start,
                                    bool *present)
{
    struct session *sess = session_find(s->sessions, id);
    if (sess != NULL && session_expire_if_due(s, sess))
        sess = NULL; /* Expired before the tick noticed: it is absent (and its will sent). */
    if (sess != NULL && sess->conn != NULL) {
        struct conn *old = sess->conn;
        LOG_INFO("session", "takeover client=%s old_conn=%s", sess->client_id, old->label);
        if (old->version == MQTT_V5) {
            struct mqtt_packet pkt = { .type = MQTT_DISCONNECT };
            pkt.reason.rc = MQTT_RC_SESSION_TAKEN_OVER;
            (void)session_write_packet(s, old, &pkt); /* Best effort: it is closed anyway. */
        }
        session_conn_lost(s, old, true); /* The old connection's will fires (MQTT-3.1.4-3). */
        conn_close(s, old, "session taken over");
        sess = session_find(s->sessions, id); /* A non-persistent session just ended. */
    }
    if (sess != NULL && clean_start) {
        session_destroy(s, sess);
        sess = NULL;
    }
    *present = sess != NULL;
    if (sess == NULL)
        sess = session_create(s, id);
    return sess;
}

/* The keepalive the server enforces, and whether it differs from the client's (v5 then says
 * so in CONNACK). Returns false when a v3 client asks for more than mqtt.keepalive_max. */
static bool effective_keepalive(const struct shard *s, const struct conn *c, uint16_t asked,
                                uint16_t *granted)
{
    uint32_t max = s->cfg->keepalive_max_s;
    if (asked <= max && (asked != 0 || max >= 65535)) {
        *granted = asked;
        return true;
    }
    *granted = (uint16_t)max;
    return c->version == MQTT_V5;
}

/* What the server granted that a v5 CONNACK reports when it differs from what was asked. */
struct connack_grant {
    uint16_t keepalive;
    bool keepalive_changed;
    uint32_t expiry_s;
    bool expiry_changed;     /* 3.2.2.3.2: mqtt.session_expiry_max capped it */
};

static bool write_connack(struct shard *s, struct conn *c, const struct mqtt_connect *cn,
                          bool present, struct slice assigned, const struct connack_grant *g)
{
    struct mqtt_packet pkt = { .type = MQTT_CONNACK };
    pkt.connack.session_present = present;
    if (c->version == MQTT_V5) {
        struct mqtt_props *p = &pkt.connack.props;
        const struct config *cfg = s->cfg;
        p->present = (1ull << MQTT_PROP_RECEIVE_MAX) | (1ull << MQTT_PROP_MAX_PACKET_SIZE) |
                     (1ull << MQTT_PROP_SHARED_SUB_AVAILABLE) |
                     (1ull << MQTT_PROP_RETAIN_AVAILABLE) |
                     (1ull << MQTT_PROP_WILDCARD_SUB_AVAILABLE) |
                     (1ull << MQTT_PROP_SUB_ID_AVAILABLE);
        /* Said explicitly though 1 is the default: clients and tools show what they got. */
        p->retain_available = cfg->retain_available ? 1 : 0;
        p->wildcard_sub_available = 1;
        p->sub_id_available = 1;
        p->receive_max = (uint16_t)MIN(cfg->max_inflight, 65535u);
        p->max_packet_size = cfg->max_packet_size;
        p->shared_sub_available = cfg->shared_subscriptions ? 1 : 0;
        if (cfg->max_topic_alias > 0) {
            p->present |= 1ull << MQTT_PROP_TOPIC_ALIAS_MAX;
            p->topic_alias_max = (uint16_t)cfg->max_topic_alias;
        }
        if (cfg->max_qos < 2) { /* MQTT-3.2.2-9: absent means 2. */
            p->present |= 1ull << MQTT_PROP_MAX_QOS;
            p->max_qos = (uint8_t)cfg->max_qos;
        }
        if (assigned.len > 0) {
            p->present |= 1ull << MQTT_PROP_ASSIGNED_CLIENT_ID;
            p->assigned_client_id = assigned;
        }
        if (g->keepalive_changed) {
            p->present |= 1ull << MQTT_PROP_SERVER_KEEPALIVE;
            p->server_keepalive = g->keepalive;
        }
        if (g->expiry_changed) {
            p->present |= 1ull << MQTT_PROP_SESSION_EXPIRY;
            p->session_expiry = g->expiry_s;
        }
        /* MAY (3.2.2.3.15): only on request, and only when configured. */
        if (mqtt_props_has(&cn->props, MQTT_PROP_REQUEST_RESPONSE_INFO) &&
            cn->props.request_response_info == 1 && cfg->response_information[0] != '\0') {
            p->present |= 1ull << MQTT_PROP_RESPONSE_INFO;
            p->response_info = slice_from_cstr(cfg->response_information);
        }
    }
    return session_write_packet(s, c, &pkt);
}

/* The Session Expiry Interval a v5 CONNECT asks for (absent: 0). */
static uint32_t connect_expiry(const struct mqtt_connect *cn)
{
    return mqtt_props_has(&cn->props, MQTT_PROP_SESSION_EXPIRY) ? cn->props.session_expiry : 0;
}

/* With mqtt.validate_utf8_payload: false if `props` say the payload is UTF-8 (payload format
 * indicator 1) and `payload` is not well-formed UTF-8 (RFC 3629, which allows U+0000 in a
 * payload, unlike in an MQTT string: MQTT-3.3.2-6 points at the Unicode definition). */
static bool payload_format_ok(const struct shard *s, const struct mqtt_props *props,
                              struct slice payload)
{
    if (!s->cfg->validate_utf8_payload || props == NULL ||
        !mqtt_props_has(props, MQTT_PROP_PAYLOAD_FORMAT) || props->payload_format != 1)
        return true;
    /* 0x00 never occurs inside a multi-byte sequence: check the runs between NULs. */
    const uint8_t *p = payload.ptr;
    const uint8_t *end = payload.ptr + payload.len;
    while (p < end) {
        const uint8_t *nul = memchr(p, 0, (size_t)(end - p));
        const uint8_t *stop = nul != NULL ? nul : end;
        if (!codec_utf8_valid((struct slice){ p, (uint32_t)(stop - p) }))
            return false;
        p = stop + (nul != NULL);
    }
    return true;
}

/* Applies the CONNECT's session parameters and will to `sess`. Returns a v5 reason code. */
static enum mqtt_rc configure_session(struct shard *s, struct conn *c, struct session *sess,
                                      const struct mqtt_connect *cn, struct slice id)
{
    sess->version = c->version;
    if (c->version == MQTT_V5) {
        sess->expiry_s = lifetime_session_expiry(connect_expiry(cn), s->cfg->session_expiry_max_s);
        sess->persistent = sess->expiry_s > 0;
        uint32_t rmax = mqtt_props_has(&cn->props, MQTT_PROP_RECEIVE_MAX)
                            ? cn->props.receive_max : 65535u;
        sess->receive_max_out = (uint16_t)MIN(rmax, MIN(s->cfg->max_inflight, 65535u));
        if (mqtt_props_has(&cn->props, MQTT_PROP_MAX_PACKET_SIZE))
            c->max_packet_out = cn->props.max_packet_size;
        if (mqtt_props_has(&cn->props, MQTT_PROP_TOPIC_ALIAS_MAX))
            topicalias_init(&c->alias_out, cn->props.topic_alias_max);
    } else {
        /* Clean session 0 never expires, unless mqtt.session_expiry_max says otherwise. */
        sess->expiry_s = cn->clean_start ? 0 : s->cfg->session_expiry_max_s;
        sess->persistent = sess->expiry_s > 0;
        sess->receive_max_out = (uint16_t)MIN(s->cfg->max_inflight, 65535u);
    }
    session_will_drop(s, sess); /* the previous connection's, or the one held */
    uint32_t will_delay_s = c->version == MQTT_V5 && cn->has_will &&
                                    mqtt_props_has(&cn->will.props, MQTT_PROP_WILL_DELAY)
                                ? cn->will.props.will_delay : 0;
    if (!cn->has_will)
        return MQTT_RC_SUCCESS;
    if (!topic_name_valid(cn->will.topic))
        return MQTT_RC_TOPIC_NAME_INVALID;
    if (cn->will.retain && !s->cfg->retain_available)
        return MQTT_RC_RETAIN_NOT_SUPPORTED;
    if (cn->will.qos > s->cfg->max_qos)
        return MQTT_RC_QOS_NOT_SUPPORTED; /* MQTT-3.2.2-12 */
    if (c->version == MQTT_V5 && !payload_format_ok(s, &cn->will.props, cn->will.payload))
        return MQTT_RC_PAYLOAD_FORMAT_INVALID;
    struct msg *will = msg_create(cn->will.topic, cn->will.payload,
                                  c->version == MQTT_V5 ? &cn->will.props : NULL, id,
                                  cn->will.qos,
                                  cn->will.retain && !is_p2p_topic(s, cn->will.topic), s->id);
    if (will == NULL || session_will_set(sess, will, will_delay_s) != 0)
        return MQTT_RC_SERVER_BUSY;
    return MQTT_RC_SUCCESS;
}

static bool on_connect(struct shard *s, struct conn *c, const uint8_t *frame, uint32_t len,
                       const struct mqtt_connect *cn)
{
    char assigned_buf[CLIENT_ID_ASSIGNED_MAX];
    struct slice id = cn->client_id;
    struct slice assigned = { NULL, 0 };
    if (c->version == MQTT_V5) {
        /* Known before any CONNACK: they bound what the server may add to it. */
        c->is_problem_info_off = mqtt_props_has(&cn->props, MQTT_PROP_REQUEST_PROBLEM_INFO) &&
                                 cn->props.request_problem_info == 0;
        if (mqtt_props_has(&cn->props, MQTT_PROP_MAX_PACKET_SIZE))
            c->max_packet_out = cn->props.max_packet_size;
    }
    if (s->cfg->redirect_to[0] != '\0')
        return redirect_connect(s, c);
    uint16_t group_len = 0;
    if (s->cfg->client_id_format == CLIENT_ID_FORMAT_GROUP_DEVICE &&
        !iot_group_device_parse(id, &group_len))
        return refuse_connect(s, c, MQTT_RC_CLIENT_ID_INVALID, MQTT_V3_IDENTIFIER_REJECTED,
                              "client id not GroupID@@@DeviceID");
    if (id.len > s->cfg->max_client_id_len)
        return refuse_connect(s, c, MQTT_RC_CLIENT_ID_INVALID, MQTT_V3_IDENTIFIER_REJECTED,
                              "client id too long");
    if (shared_filter_is_shared((const char *)id.ptr, id.len))
        return refuse_connect(s, c, MQTT_RC_CLIENT_ID_INVALID, MQTT_V3_IDENTIFIER_REJECTED,
                              "client id reserved for shared subscription groups");
    if (c->version == MQTT_V5 && mqtt_props_has(&cn->props, MQTT_PROP_AUTH_METHOD))
        return refuse_connect(s, c, MQTT_RC_BAD_AUTH_METHOD, MQTT_V3_NOT_AUTHORIZED,
                              "enhanced authentication not supported");
    uint16_t keepalive;
    if (!effective_keepalive(s, c, cn->keepalive_s, &keepalive))
        return refuse_connect(s, c, MQTT_RC_CLIENT_ID_INVALID, MQTT_V3_IDENTIFIER_REJECTED,
                              "keepalive above mqtt.keepalive_max");
    if (id.len == 0) {
        /* MQTT-3.1.3-8 (3.1.1): an empty id needs clean session; 3.1 has no empty ids. */
        if (c->version == MQTT_V31 || (c->version == MQTT_V311 && !cn->clean_start))
            return refuse_connect(s, c, MQTT_RC_CLIENT_ID_INVALID, MQTT_V3_IDENTIFIER_REJECTED,
                                  "empty client id");
        id = assign_client_id(s, assigned_buf, sizeof(assigned_buf));
        if (c->version == MQTT_V5)
            assigned = id;
    } else {
        uint16_t home = shard_home(s, id);
        if (home != s->id)
            return start_handoff(s, c, frame, len, home);
    }
    bool present = false;
    struct session *sess = take_session(s, id, cn->clean_start, &present);
    if (sess == NULL)
        return refuse_connect(s, c, MQTT_RC_SERVER_BUSY, MQTT_V3_SERVER_UNAVAILABLE,
                              "out of memory");
    sess->group_len = group_len;
    enum mqtt_rc rc = configure_session(s, c, sess, cn, id);
    if (rc != MQTT_RC_SUCCESS) {
        if (!present)
            session_destroy(s, sess);
        return refuse_connect(s, c, rc, MQTT_V3_SERVER_UNAVAILABLE, "bad will");
    }
    /* Journals the session's STATE (or its END, when a stored session goes on without
     * persistence) before CONNACK, in log order ahead of anything the client does next. */
    session_set_persistent(s, sess, sess->persistent);
    c->keepalive_ms = (uint32_t)keepalive * 1500u;
    c->state = CONN_ACTIVE;
    struct connack_grant grant = {
        .keepalive = keepalive, .keepalive_changed = keepalive != cn->keepalive_s,
        .expiry_s = sess->expiry_s,
        .expiry_changed = c->version == MQTT_V5 && sess->expiry_s != connect_expiry(cn),
    };
    if (!write_connack(s, c, cn, present, assigned, &grant)) {
        session_attach(s, sess, c);
        return fail(s, c, MQTT_RC_UNSPECIFIED, "output full at CONNACK");
    }
    s->stats.connects++;
    LOG_INFO("session",
             "connect client=%s conn=%s version=%u clean=%d present=%d keepalive=%u%s%.*s",
             sess->client_id, c->label, c->version, cn->clean_start, present, keepalive,
             group_len > 0 ? " group=" : "", (int)group_len, sess->client_id);
    session_attach(s, sess, c);
    return true;
}

static bool on_first_packet(struct shard *s, struct conn *c, const uint8_t *frame,
                            uint32_t len)
{
    if ((frame[0] >> 4) != MQTT_CONNECT) {
        LOG_INFO("conn", "first_packet_not_connect conn=%s type=%u", c->label, frame[0] >> 4);
        conn_close(s, c, "first packet not CONNECT");
        return false;
    }
    struct mqtt_packet pkt;
    enum mqtt_rc rc = codec_decode(frame, len, 0, &pkt);
    if (rc == MQTT_RC_UNSUPPORTED_VERSION) {
        /* MQTT-3.1.2-2: answer 0x01 in the 3.1.1 format, which every version can read. */
        c->version = MQTT_V311;
        return refuse_connect(s, c, MQTT_RC_UNSUPPORTED_VERSION, MQTT_V3_BAD_PROTOCOL_VERSION,
                              "unsupported protocol version");
    }
    if (rc != MQTT_RC_SUCCESS) {
        if (pkt.connect.version == MQTT_V5) {
            c->version = MQTT_V5;
            return refuse_connect(s, c, rc, MQTT_V3_SERVER_UNAVAILABLE, "bad CONNECT");
        }
        LOG_INFO("conn", "bad_connect conn=%s rc=0x%02x", c->label, rc);
        conn_close(s, c, "bad CONNECT");
        return false;
    }
    c->version = pkt.connect.version;
    return on_connect(s, c, frame, len, &pkt.connect);
}

/* Resolves a v5 topic alias (MQTT-3.3.2-7..12). Returns the topic to use, or sets *rc. */
static struct slice resolve_alias(struct shard *s, struct conn *c,
                                  const struct mqtt_publish *p, enum mqtt_rc *rc)
{
    struct slice topic = p->topic;
    *rc = MQTT_RC_SUCCESS;
    if (c->version != MQTT_V5 || !mqtt_props_has(&p->props, MQTT_PROP_TOPIC_ALIAS)) {
        if (topic.len == 0)
            *rc = MQTT_RC_PROTOCOL_ERROR;
        return topic;
    }
    uint16_t alias = p->props.topic_alias;
    if (alias == 0 || alias > s->cfg->max_topic_alias) {
        *rc = MQTT_RC_TOPIC_ALIAS_INVALID;
        return topic;
    }
    if (c->aliases == NULL) {
        c->aliases = calloc(s->cfg->max_topic_alias, sizeof(*c->aliases));
        if (c->aliases == NULL) {
            *rc = MQTT_RC_SERVER_BUSY;
            return topic;
        }
    }
    struct conn_alias *a = &c->aliases[alias - 1];
    if (topic.len == 0) {
        if (a->topic == NULL)
            *rc = MQTT_RC_PROTOCOL_ERROR;
        return (struct slice){ a->topic, a->len };
    }
    uint8_t *copy = malloc(topic.len);
    if (copy == NULL) {
        *rc = MQTT_RC_SERVER_BUSY;
        return topic;
    }
    memcpy(copy, topic.ptr, topic.len);
    free(a->topic);
    a->topic = copy;
    a->len = (uint16_t)topic.len;
    return topic;
}

/* Queues `m` (may be NULL; takes the caller's reference) to route, and/or `ack_type` for
 * `packet_id` to send to `c`, once the log is visible up to `end_off`. */
static bool wait_durable(struct shard *s, struct conn *c, struct msg *m, uint64_t end_off,
                         uint8_t ack_type, uint16_t packet_id)
{
    if (s->waits_len == s->waits_cap) {
        uint32_t cap = s->waits_cap ? s->waits_cap * 2 : 256;
        struct durable_wait *n = malloc(cap * sizeof(*n));
        if (n == NULL)
            return false;
        for (uint32_t i = 0; i < s->waits_len; i++)
            n[i] = s->waits[(s->waits_head + i) % s->waits_cap];
        free(s->waits);
        s->waits = n;
        s->waits_head = 0;
        s->waits_cap = cap;
    }
    s->waits[(s->waits_head + s->waits_len++) % s->waits_cap] = (struct durable_wait){
        .end_off = end_off, .msg = m, .conn_idx = c->idx, .conn_gen = c->gen,
        .packet_id = packet_id, .ack_type = ack_type, .answer = NULL,
    };
    return true;
}

bool dispatch_wait_pump(struct shard *s, struct conn *c, uint64_t end_off)
{
    return wait_durable(s, c, NULL, end_off, MQTT_PUBLISH, 0);
}

bool dispatch_routed_below(const struct shard *s, uint64_t off)
{
    /* The waits are in log order: the oldest one ends first. */
    return s->waits_len == 0 || s->waits[s->waits_head].end_off > off;
}

void dispatch_on_durable(struct shard *s)
{
    persist_on_visible(s); /* Indexed before anything below is routed (core/persist.h). */
    uint64_t visible = commitlog_visible_off(&s->log);
    while (s->waits_len > 0) {
        struct durable_wait *w = &s->waits[s->waits_head];
        if (w->end_off > visible)
            return;
        struct durable_wait done = *w;
        s->waits_head = (s->waits_head + 1) % s->waits_cap;
        s->waits_len--;
        if (done.msg != NULL) {
            if (!s->stopping)
                router_route(s, done.msg);
            msg_release(done.msg);
        }
        struct conn *c = &s->conns[done.conn_idx];
        bool is_publish_ack = done.ack_type == MQTT_PUBACK || done.ack_type == MQTT_PUBREC;
        if (is_publish_ack && c->gen == done.conn_gen) {
            uint32_t *held = done.ack_type == MQTT_PUBACK ? &c->pubacks_held : &c->pubrecs_held;
            ASSERT(*held > 0);
            (*held)--;
        }
        bool live = c->gen == done.conn_gen && c->state == CONN_ACTIVE && !s->stopping;
        if (done.ack_type == MQTT_PUBLISH) {
            if (live && c->session != NULL)
                session_pump(s, c->session);
        } else if (done.ack_type == MQTT_SUBACK) {
            if (live)
                (void)answer_subscribe(s, c, done.answer); /* Closes the conn on failure. */
            else
                free(done.answer);
        } else if (done.ack_type != 0 && live) {
            (void)send_ack(s, c, done.ack_type, done.packet_id,
                           MQTT_RC_SUCCESS); /* On failure it closed the conn: the client
                                              * re-sends after reconnecting. */
        }
        if (is_publish_ack && live && c->is_paused_for_acks) {
            /* Its answer went out: the held PUBLISH fits the Receive Maximum now. Replayed
             * here; what it appends lands behind `visible` and waits in this ring. */
            c->is_paused_for_acks = false;
            conn_resume(s, c);
        }
    }
}

/* `frame` is the PUBLISH's bytes: held for replay if the log has no room. */
static bool on_publish(struct shard *s, struct conn *c, const struct mqtt_publish *p,
                       const uint8_t *frame, uint32_t len)
{
    if (shard_congested(s, SHARD_CONGESTED_AT)) {
        /* Another shard cannot keep up with our notes: hold this publisher (this PUBLISH
         * first) until the backlog halves, rather than queue without bound. */
        s->stats.backlog_holds++;
        conn_pause(s, c, frame, len);
        shard_hold(s, c);
        return false;
    }
    struct session *sess = c->session;
    if (p->qos > s->cfg->max_qos)
        return fail(s, c, MQTT_RC_QOS_NOT_SUPPORTED, "QoS above mqtt.max_qos"); /* 3.3.1-4 */
    enum mqtt_rc rc;
    struct slice topic = resolve_alias(s, c, p, &rc);
    if (rc != MQTT_RC_SUCCESS)
        return fail(s, c, rc, "topic alias");
    if (!topic_name_valid(topic))
        return fail(s, c, MQTT_RC_TOPIC_NAME_INVALID, "invalid topic name");
    if (p->retain && !s->cfg->retain_available)
        return fail(s, c, MQTT_RC_RETAIN_NOT_SUPPORTED, "retain not available");
    if (c->version == MQTT_V5 && !payload_format_ok(s, &p->props, p->payload)) {
        /* Not delivered. QoS 1/2 say so in the ack (a PUBREC >= 0x80 ends the exchange, so
         * the id is not held); QoS 0 has no ack, and a silent drop would hide the fault. */
        if (p->qos == 0)
            return fail(s, c, MQTT_RC_PAYLOAD_FORMAT_INVALID, "payload is not UTF-8");
        return send_ack(s, c, p->qos == 1 ? MQTT_PUBACK : MQTT_PUBREC, p->packet_id,
                        MQTT_RC_PAYLOAD_FORMAT_INVALID);
    }
    if (p->qos == 2 && session_qos2_has(sess, p->packet_id))
        return send_ack(s, c, MQTT_PUBREC, p->packet_id, MQTT_RC_SUCCESS);
    /* MQTT-3.3.4-9: a v5 client has at most our Receive Maximum QoS 1/2 PUBLISHes we have not
     * answered with PUBACK or PUBCOMP: PUBACKs still waiting for the disk, QoS 2 ids not yet
     * released (v3 has no Receive Maximum: only its QoS 2 ids are bounded, for memory). When
     * the disk holds some of those answers (store.flush = sync), this PUBLISH is not read yet:
     * the input waits until one answer goes out (TCP back-pressure), so a client that pipelines
     * past the limit (MQTT.js does) is slowed, not cut off. When the client itself holds them
     * all (QoS 2 without PUBREL), it gets DISCONNECT 0x93. */
    uint32_t unanswered = session_qos2_count(sess) + (c->version == MQTT_V5 ? c->pubacks_held : 0u);
    if (p->qos > 0 && unanswered >= s->cfg->max_inflight) {
        if (c->pubacks_held + c->pubrecs_held == 0)
            return fail(s, c, MQTT_RC_RECEIVE_MAX_EXCEEDED, "receive maximum exceeded");
        s->stats.ack_holds++;
        c->is_paused_for_acks = true;
        conn_pause(s, c, frame, len);
        return false;
    }
    if (p->qos == 2 && session_qos2_add(sess, p->packet_id) != 0)
        return fail(s, c, MQTT_RC_SERVER_BUSY, "out of memory");
    struct msg *m = msg_create(topic, p->payload, c->version == MQTT_V5 ? &p->props : NULL,
                               (struct slice){ (const uint8_t *)sess->client_id,
                                               sess->client_id_len },
                               p->qos, p->retain && !is_p2p_topic(s, topic), s->id);
    if (m == NULL) {
        if (p->qos == 2)
            (void)session_qos2_remove(sess, p->packet_id);
        return fail(s, c, MQTT_RC_SERVER_BUSY, "out of memory");
    }
    int64_t end_off = router_append(s, m, p->packet_id);
    if (end_off == -ENOBUFS) {
        /* The disk is behind: hold this publisher's input (this PUBLISH first) until the log
         * has room, rather than drop or ack what is not stored. */
        msg_release(m);
        if (p->qos == 2)
            (void)session_qos2_remove(sess, p->packet_id);
        s->stats.log_full++;
        conn_pause(s, c, frame, len);
        shard_hold(s, c);
        return false;
    }
    if (end_off < 0) {
        msg_release(m);
        if (p->qos == 2)
            (void)session_qos2_remove(sess, p->packet_id);
        return fail(s, c, MQTT_RC_SERVER_BUSY, "out of memory");
    }
    /* QoS 1/2 are routed once visible (indexed at the same moment: core/persist.h) and
     * acked once durable (store.flush = sync) or at once (async). */
    uint8_t ack_type = p->qos == 1 ? MQTT_PUBACK : MQTT_PUBREC;
    if (p->qos > 0 && (uint64_t)end_off > commitlog_visible_off(&s->log)) {
        bool sync = s->cfg->store_flush == STORE_FLUSH_SYNC;
        if (!wait_durable(s, c, m, (uint64_t)end_off, sync ? ack_type : 0, p->packet_id)) {
            msg_release(m);
            return fail(s, c, MQTT_RC_SERVER_BUSY, "out of memory");
        }
        if (sync) /* Counted until dispatch_on_durable sends the answer. */
            (*(ack_type == MQTT_PUBACK ? &c->pubacks_held : &c->pubrecs_held))++;
        return sync || send_ack(s, c, ack_type, p->packet_id, MQTT_RC_SUCCESS);
    }
    router_route(s, m);
    msg_release(m);
    if (c->state != CONN_ACTIVE)
        return false; /* Delivering may have closed it (its own output overflowed). */
    if (p->qos == 0)
        return true;
    return send_ack(s, c, ack_type, p->packet_id, MQTT_RC_SUCCESS);
}

/* A released inbound QoS 2 id: a persistent session journals it, and PUBCOMP follows once
 * that is durable (store.flush = sync), so the id is never both reused by the client and
 * still held after a crash (a re-sent PUBLISH would be taken for a duplicate). */
static bool on_release(struct shard *s, struct conn *c, uint16_t packet_id)
{
    struct session *sess = c->session;
    if (!sess->journaled)
        return send_ack(s, c, MQTT_PUBCOMP, packet_id, MQTT_RC_SUCCESS);
    uint64_t end_off = persist_journal_rel(s, sess, packet_id);
    if (end_off == 0)
        return fail(s, c, MQTT_RC_SERVER_BUSY, "log full at PUBREL");
    if (s->cfg->store_flush == STORE_FLUSH_SYNC && end_off > s->log.durable_off) {
        if (!wait_durable(s, c, NULL, end_off, MQTT_PUBCOMP, packet_id))
            return fail(s, c, MQTT_RC_SERVER_BUSY, "out of memory");
        return true;
    }
    return send_ack(s, c, MQTT_PUBCOMP, packet_id, MQTT_RC_SUCCESS);
}

static bool on_ack(struct shard *s, struct conn *c, uint8_t type, const struct mqtt_ack *a)
{
    struct session *sess = c->session;
    switch (type) {
    case MQTT_PUBACK:
        (void)session_on_puback(s, sess, a->packet_id); /* Unknown ids are ignored. */
        return true;
    case MQTT_PUBREC:
        if (session_on_pubrec(s, sess, a->packet_id, a->rc >= 0x80)) {
            if (a->rc >= 0x80)
                return true;
            return send_ack(s, c, MQTT_PUBREL, a->packet_id, MQTT_RC_SUCCESS);
        }
        return send_ack(s, c, MQTT_PUBREL, a->packet_id, MQTT_RC_PACKET_ID_NOT_FOUND);
    case MQTT_PUBREL:
        if (session_qos2_remove(sess, a->packet_id))
            return on_release(s, c, a->packet_id);
        return send_ack(s, c, MQTT_PUBCOMP, a->packet_id, MQTT_RC_PACKET_ID_NOT_FOUND);
    case MQTT_PUBCOMP:
        (void)session_on_pubcomp(s, sess, a->packet_id); /* Unknown ids are ignored. */
        return true;
    default:
        ASSERT(false);
        return false;
    }
}

/* One SUBSCRIBE entry: returns the SUBACK reason code; *is_new says whether it replaced an
 * existing subscription (retain handling 1 needs it). */
static uint8_t subscribe_one(struct shard *s, struct conn *c, struct slice filter,
                             uint8_t options, uint32_t sub_id, bool *is_new)
{
    bool v5 = c->version == MQTT_V5;
    struct slice group, real;
    int shared = topic_shared_parse(filter, &group, &real);
    if (shared < 0 || (shared > 0 && !s->cfg->shared_subscriptions))
        return v5 ? (shared < 0 ? MQTT_RC_TOPIC_FILTER_INVALID : MQTT_RC_SHARED_SUB_NOT_SUPPORTED)
                  : 0x80;
    if (!topic_filter_valid(filter))
        return v5 ? MQTT_RC_TOPIC_FILTER_INVALID : 0x80;
    /* mqtt.deny_subscribe: a filter the operator refuses (MQTT-3.9.3: a SUBACK reason code
     * >= 0x80 refuses one entry; 0x80 Unspecified error in both versions, as the Eclipse
     * Paho interoperability suite expects for its test/nosubscribe filter). */
    if (s->cfg->deny_subscribe[0] != '\0' &&
        slice_eq(filter, slice_from_cstr(s->cfg->deny_subscribe)))
        return 0x80;
    if ((options & MQTT_SUBOPT_QOS_MASK) > s->cfg->max_qos) /* Granted lower (MQTT-3.9.3). */
        options = (uint8_t)((options & ~MQTT_SUBOPT_QOS_MASK) | s->cfg->max_qos);
    if (shared > 0) {
        /* The group's owner shard routes it (core/shared.h); no local tree entry. No Local was
         * refused by the codec for v5 (MQTT-3.8.3-4); 3.1.1 has no such option. */
        int added_shared = shared_subscribe(s, c->session, filter, options, sub_id);
        if (added_shared < 0)
            return v5 ? MQTT_RC_QUOTA_EXCEEDED : 0x80;
        *is_new = added_shared == 1;
        return options & MQTT_SUBOPT_QOS_MASK;
    }
    int added = subtree_add(s->subs, filter, c->session, options, sub_id);
    if (added < 0)
        return v5 ? MQTT_RC_QUOTA_EXCEEDED : 0x80;
    if (session_sub_add(c->session, filter, options, sub_id) != 0) {
        if (added == 1)
            (void)subtree_remove(s->subs, filter, c->session); /* Just added: present. */
        return v5 ? MQTT_RC_QUOTA_EXCEEDED : 0x80;
    }
    *is_new = added == 1;
    if (added == 1)
        session_filter_changed(s, c->session, filter, +1);
    return options & MQTT_SUBOPT_QOS_MASK;
}

/* What SUBACK answers and which retained messages follow it: kept until the subscription's
 * journal record is durable when that has to wait (store.flush = sync). One allocation. */
struct suback_answer {
    uint16_t packet_id;
    uint32_t count;
    uint32_t sub_id;
    uint8_t *rcs;            /* count reason codes */
    uint8_t *fresh;          /* count flags: the subscription is new (retain handling 1) */
    struct slice entries;    /* a copy of the SUBSCRIBE's entries */
};

static struct suback_answer *suback_answer_create(const struct mqtt_subscribe *sub)
{
    struct suback_answer *a = malloc(sizeof(*a) + 2u * sub->count + sub->entries.len);
    if (a == NULL)
        return NULL;
    a->packet_id = sub->packet_id;
    a->count = sub->count;
    a->sub_id = mqtt_props_has(&sub->props, MQTT_PROP_SUBSCRIPTION_ID) ? sub->props.sub_id : 0;
    a->rcs = (uint8_t *)(a + 1);
    a->fresh = a->rcs + sub->count;
    memcpy(a->fresh + sub->count, sub->entries.ptr, sub->entries.len);
    a->entries = (struct slice){ a->fresh + sub->count, sub->entries.len };
    return a;
}

/* Writes SUBACK, then the retained messages of the new subscriptions; frees `a`. */
static bool answer_subscribe(struct shard *s, struct conn *c, struct suback_answer *a)
{
    struct mqtt_packet pkt = { .type = MQTT_SUBACK };
    pkt.suback.packet_id = a->packet_id;
    pkt.suback.rcs = (struct slice){ a->rcs, a->count };
    bool ok = session_write_packet(s, c, &pkt);
    /* Retained messages follow the SUBACK (MQTT-3.8.4-4 ordering as clients expect it). */
    uint32_t pos = 0;
    struct slice filter;
    uint8_t options;
    for (uint32_t i = 0; ok && codec_sub_next(a->entries, &pos, &filter, &options); i++) {
        uint8_t handling = (options & MQTT_SUBOPT_RETAIN_HANDLING_MASK) >>
                           MQTT_SUBOPT_RETAIN_HANDLING_SHIFT;
        if (a->rcs[i] >= 0x80 || handling == 2 || (handling == 1 && !a->fresh[i]))
            continue;
        if (shared_filter_is_shared((const char *)filter.ptr, filter.len))
            continue; /* MQTT 4.8.2: no retained messages on a shared subscription. */
        router_send_retained(s, c->session, filter, a->rcs[i], a->sub_id);
    }
    free(a);
    if (!ok)
        return fail(s, c, MQTT_RC_UNSPECIFIED, "output full at SUBACK");
    return c->state == CONN_ACTIVE;
}

static bool on_subscribe(struct shard *s, struct conn *c, const struct mqtt_subscribe *sub)
{
    struct suback_answer *a = suback_answer_create(sub);
    if (a == NULL)
        return fail(s, c, MQTT_RC_SERVER_BUSY, "out of memory");
    uint32_t pos = 0;
    struct slice filter;
    uint8_t options;
    for (uint32_t i = 0; codec_sub_next(sub->entries, &pos, &filter, &options); i++) {
        ASSERT(i < sub->count);
        bool is_new = false;
        a->rcs[i] = subscribe_one(s, c, filter, options, a->sub_id, &is_new);
        a->fresh[i] = is_new;
    }
    if (!c->session->journaled)
        return answer_subscribe(s, c, a);
    /* A persistent session's subscriptions are durable before SUBACK says so. */
    uint64_t end_off = persist_journal_state(s, c->session); /* 0: refused (logged) */
    if (end_off == 0 || s->cfg->store_flush != STORE_FLUSH_SYNC ||
        end_off <= s->log.durable_off)
        return answer_subscribe(s, c, a);
    if (!wait_durable(s, c, NULL, end_off, MQTT_SUBACK, 0)) {
        free(a);
        return fail(s, c, MQTT_RC_SERVER_BUSY, "out of memory");
    }
    s->waits[(s->waits_head + s->waits_len - 1) % s->waits_cap].answer = a;
    return true;
}

static bool on_unsubscribe(struct shard *s, struct conn *c, const struct mqtt_subscribe *un)
{
    uint8_t *rcs = malloc(un->count);
    if (rcs == NULL)
        return fail(s, c, MQTT_RC_SERVER_BUSY, "out of memory");
    uint32_t pos = 0;
    struct slice filter;
    for (uint32_t i = 0; codec_sub_next(un->entries, &pos, &filter, NULL); i++) {
        ASSERT(i < un->count);
        struct slice group, real;
        if (!topic_filter_valid(filter) || topic_shared_parse(filter, &group, &real) < 0) {
            /* No subscription can exist for it; v5 says why (MQTT-3.11.3, 0x8F). */
            rcs[i] = MQTT_RC_TOPIC_FILTER_INVALID;
            continue;
        }
        if (topic_shared_parse(filter, &group, &real) > 0) {
            rcs[i] = shared_unsubscribe(s, c->session, filter) ? MQTT_RC_SUCCESS
                                                               : MQTT_RC_NO_SUBSCRIPTION_EXISTED;
            continue;
        }
        bool removed = subtree_remove(s->subs, filter, c->session) == 0;
        if (removed) {
            (void)session_sub_remove(c->session, filter); /* Kept in step with the tree. */
            session_filter_changed(s, c->session, filter, -1);
        }
        rcs[i] = removed ? MQTT_RC_SUCCESS : MQTT_RC_NO_SUBSCRIPTION_EXISTED;
    }
    if (c->session->journaled)
        (void)persist_journal_state(s, c->session); /* Counted and logged on failure. */
    struct mqtt_packet pkt = { .type = MQTT_UNSUBACK };
    pkt.suback.packet_id = un->packet_id;
    pkt.suback.rcs = (struct slice){ rcs, c->version == MQTT_V5 ? un->count : 0 };
    bool ok = session_write_packet(s, c, &pkt);
    free(rcs);
    if (!ok)
        return fail(s, c, MQTT_RC_UNSPECIFIED, "output full at UNSUBACK");
    return true;
}

static bool on_disconnect(struct shard *s, struct conn *c, const struct mqtt_reason *r)
{
    struct session *sess = c->session;
    bool publish_will = false;
    if (c->version == MQTT_V5) {
        if (mqtt_props_has(&r->props, MQTT_PROP_SESSION_EXPIRY)) {
            /* MQTT-3.14.2-2: a session that was to end at close cannot be extended here. */
            if (sess->expiry_s == 0 && r->props.session_expiry != 0)
                return fail(s, c, MQTT_RC_PROTOCOL_ERROR, "session expiry set at DISCONNECT");
            sess->expiry_s = lifetime_session_expiry(r->props.session_expiry,
                                                     s->cfg->session_expiry_max_s);
            sess->persistent = sess->expiry_s > 0;
            if (sess->journaled || sess->persistent)
                session_set_persistent(s, sess, sess->persistent);
        }
        publish_will = r->rc == MQTT_RC_DISCONNECT_WITH_WILL;
    }
    LOG_INFO("session", "disconnect client=%s rc=0x%02x", sess->client_id, r->rc);
    session_conn_lost(s, c, publish_will);
    conn_close(s, c, "client DISCONNECT");
    return false;
}

/* A packet whose answer states what its handling journaled (CONNACK: the old session ended or
 * a persistent one stored; PUBREL: the PUBREC is recorded, MQTT 4.3.3 and issue 4's "QoS 2
 * state is durable before the matching response"; UNSUBACK: the subscription is gone) holds
 * the connection's output until those records are durable, so a crash cannot undo what the
 * client was told. Other packets that journal wait on their own (SUBACK, PUBCOMP, PUBACK). */
static bool answer_needs_durable(uint8_t type)
{
    return type == MQTT_CONNECT || type == MQTT_PUBREC || type == MQTT_UNSUBSCRIBE;
}

static bool handle_packet(struct shard *s, struct conn *c, const uint8_t *frame, uint32_t len);

bool dispatch_packet(struct shard *s, struct conn *c, const uint8_t *frame, uint32_t len)
{
    uint64_t before = s->log.append_off;
    bool ok = handle_packet(s, c, frame, len);
    if (ok && s->log.append_off > before && answer_needs_durable(frame[0] >> 4))
        conn_hold(s, c, s->log.append_off);
    return ok;
}

static bool handle_packet(struct shard *s, struct conn *c, const uint8_t *frame, uint32_t len)
{
    if (c->state == CONN_NEW)
        return on_first_packet(s, c, frame, len);
    ASSERT(c->state == CONN_ACTIVE && c->session != NULL);
    if ((frame[0] >> 4) == MQTT_CONNECT)
        return fail(s, c, MQTT_RC_PROTOCOL_ERROR, "second CONNECT"); /* MQTT-3.1.0-2 */
    struct mqtt_packet pkt;
    enum mqtt_rc rc = codec_decode(frame, len, c->version, &pkt);
    if (rc != MQTT_RC_SUCCESS)
        return fail(s, c, rc, "invalid packet");
    switch (pkt.type) {
    case MQTT_PUBLISH:
        return on_publish(s, c, &pkt.publish, frame, len);
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
        return on_ack(s, c, pkt.type, &pkt.ack);
    case MQTT_SUBSCRIBE:
        return on_subscribe(s, c, &pkt.subscribe);
    case MQTT_UNSUBSCRIBE:
        return on_unsubscribe(s, c, &pkt.subscribe);
    case MQTT_PINGREQ: {
        struct mqtt_packet resp = { .type = MQTT_PINGRESP };
        if (!session_write_packet(s, c, &resp))
            return fail(s, c, MQTT_RC_UNSPECIFIED, "output full at PINGRESP");
        return true;
    }
    case MQTT_DISCONNECT:
        return on_disconnect(s, c, &pkt.reason);
    case MQTT_AUTH:
        return fail(s, c, MQTT_RC_PROTOCOL_ERROR, "AUTH without enhanced authentication");
    default:
        /* CONNACK, SUBACK, UNSUBACK, PINGRESP travel only from server to client. */
        return fail(s, c, MQTT_RC_PROTOCOL_ERROR, "server-to-client packet from a client");
    }
}
