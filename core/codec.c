/* core/codec.c - MQTT 3.1, 3.1.1 and 5.0 framing, packet decoding and packet encoding.
 *
 * Decoding validates every rule of docs/protocol-errors.md and returns the reason code given
 * there; it borrows from the frame and never allocates. Encoding runs the same writer twice:
 * once counting (codec_size) and once writing (codec_encode), so the two always agree.
 * Property blocks, UTF-8 and the byte writer are in core/codec_props.c. Pure; any thread.
 *
 * Checks run in wire order, malformed-packet checks of a field before the protocol-error checks
 * that need later fields (a zero packet id is reported only once the whole packet parsed), so
 * the first problem on the wire decides the reason code.
 */
#include "core/codec.h"

#include <string.h>

#include "core/codec_props.h"

static bool version_known(uint8_t version)
{
    return version == MQTT_V31 || version == MQTT_V311 || version == MQTT_V5;
}

uint32_t codec_varint_size(uint32_t value)
{
    ASSERT(value <= MQTT_VARINT_MAX);
    if (value < 128u)
        return 1;
    if (value < 16384u)
        return 2;
    if (value < 2097152u)
        return 3;
    return 4;
}

uint32_t codec_varint_encode(uint32_t value, uint8_t *out)
{
    ASSERT(value <= MQTT_VARINT_MAX);
    ASSERT(out != NULL);
    uint32_t n = 0;
    do {
        uint8_t b = value & 0x7F;
        value >>= 7;
        if (value > 0)
            b |= 0x80;
        out[n++] = b;
    } while (value > 0);
    return n;
}

int codec_frame(const uint8_t *buf, uint32_t len, uint32_t *frame_len)
{
    ASSERT(frame_len != NULL);
    if (len == 0)
        return 0;
    if ((buf[0] >> 4) == 0)
        return -MQTT_RC_MALFORMED; /* packet type 0 is reserved (2.1.2) */
    uint32_t value = 0;
    for (uint32_t i = 0; i < 4; i++) {
        if (1 + i >= len)
            return 0;
        uint8_t b = buf[1 + i];
        value |= (uint32_t)(b & 0x7F) << (7 * i);
        if ((b & 0x80) == 0) {
            *frame_len = 2 + i + value;
            return (int)(2 + i);
        }
    }
    return -MQTT_RC_MALFORMED; /* more than 4 remaining-length bytes (1.5.5, 2.1.4) */
}

/* ---- reason code sets (v5 tables 3-1 .. 3-13 of each packet's reason code section) ---- */

static const uint8_t rc_connack_v5[] = { 0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86,
                                         0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
                                         0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F };
static const uint8_t rc_puback[] = { 0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99 };
static const uint8_t rc_pubrel[] = { 0x00, 0x92 };
static const uint8_t rc_suback_v5[] = { 0x00, 0x01, 0x02, 0x80, 0x83, 0x87,
                                        0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2 };
static const uint8_t rc_suback_v3[] = { 0x00, 0x01, 0x02, 0x80 };
static const uint8_t rc_unsuback_v5[] = { 0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91 };
static const uint8_t rc_disconnect[] = { 0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89,
                                         0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95,
                                         0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D,
                                         0x9E, 0x9F, 0xA0, 0xA1, 0xA2 };
static const uint8_t rc_auth[] = { 0x00, 0x18, 0x19 };

static bool rc_in(uint8_t rc, const uint8_t *set, uint32_t count)
{
    for (uint32_t i = 0; i < count; i++)
        if (set[i] == rc)
            return true;
    return false;
}

#define RC_IN(rc, set) rc_in(rc, set, ARRAY_LEN(set))

/* Whether `rc` is a reason code `type` may carry on `version` (CONNACK on v3: return code). */
static bool rc_allowed(uint8_t type, uint8_t version, uint8_t rc)
{
    bool v5 = version == MQTT_V5;
    switch (type) {
    case MQTT_CONNACK:
        return v5 ? RC_IN(rc, rc_connack_v5) : rc <= MQTT_V3_NOT_AUTHORIZED;
    case MQTT_PUBACK:
    case MQTT_PUBREC:
        return RC_IN(rc, rc_puback);
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
        return RC_IN(rc, rc_pubrel);
    case MQTT_SUBACK:
        return v5 ? RC_IN(rc, rc_suback_v5) : RC_IN(rc, rc_suback_v3);
    case MQTT_UNSUBACK:
        return RC_IN(rc, rc_unsuback_v5);
    case MQTT_DISCONNECT:
        return RC_IN(rc, rc_disconnect);
    case MQTT_AUTH:
        return RC_IN(rc, rc_auth);
    default:
        return false;
    }
}

/* Every reason code in `rcs` is allowed for `type`. */
static bool rcs_allowed(uint8_t type, uint8_t version, struct slice rcs)
{
    for (uint32_t i = 0; i < rcs.len; i++)
        if (!rc_allowed(type, version, rcs.ptr[i]))
            return false;
    return true;
}

/* ---- decoding ---- */

/* Fixed header flags (2.1.3): reserved bits must hold the listed value, PUBLISH QoS 3 is
 * malformed (3.3.1.2) and so is DUP on QoS 0 (3.3.1.1, an invalid flag combination). */
static bool flags_valid(uint8_t type, uint8_t flags)
{
    if (type == MQTT_PUBLISH) {
        uint8_t qos = (flags >> 1) & 3u;
        return qos != 3 && !(qos == 0 && (flags & 0x08));
    }
    if (type == MQTT_PUBREL || type == MQTT_SUBSCRIBE || type == MQTT_UNSUBSCRIBE)
        return flags == 0x02;
    return flags == 0;
}

/* A UTF-8 Encoded String (1.5.4): length-prefixed, well-formed, no U+0000. */
static bool read_string(struct codec_reader *r, struct slice *out)
{
    return codec_read_binary(r, out) && codec_utf8_valid(*out);
}

static bool slice_is(struct slice s, const char *text)
{
    return slice_eq(s, slice_from_cstr(text));
}

static bool protocol_supported(struct slice name, uint8_t level)
{
    if (level == MQTT_V31)
        return slice_is(name, "MQIsdp");
    if (level == MQTT_V311 || level == MQTT_V5)
        return slice_is(name, "MQTT");
    return false;
}

/* CONNECT flags (3.1.2.3 .. 3.1.2.9). */
static enum mqtt_rc decode_connect_flags(uint8_t flags, struct mqtt_connect *c)
{
    if (flags & 0x01)
        return MQTT_RC_MALFORMED; /* reserved [MQTT-3.1.2-3] */
    c->clean_start = (flags & 0x02) != 0;
    c->has_will = (flags & 0x04) != 0;
    c->will.qos = (flags >> 3) & 3u;
    c->will.retain = (flags & 0x20) != 0;
    c->has_password = (flags & 0x40) != 0;
    c->has_username = (flags & 0x80) != 0;
    if (c->will.qos == 3)
        return MQTT_RC_MALFORMED; /* 3.1.2.6 */
    if (!c->has_will && (c->will.qos != 0 || c->will.retain))
        return MQTT_RC_MALFORMED; /* [MQTT-3.1.2-11], [MQTT-3.1.2-13] */
    if (c->version != MQTT_V5 && c->has_password && !c->has_username)
        return MQTT_RC_MALFORMED; /* 3.1.1 [MQTT-3.1.2-22] */
    return MQTT_RC_SUCCESS;
}

static enum mqtt_rc decode_will(struct codec_reader *r, struct mqtt_connect *c)
{
    if (c->version == MQTT_V5) {
        enum mqtt_rc rc = codec_props_decode(r, CODEC_PROPS_WILL, &c->will.props);
        if (rc != MQTT_RC_SUCCESS)
            return rc;
    }
    if (!read_string(r, &c->will.topic) || !codec_read_binary(r, &c->will.payload))
        return MQTT_RC_MALFORMED;
    if (c->will.topic.len == 0 || codec_has_wildcard(c->will.topic))
        return MQTT_RC_TOPIC_NAME_INVALID; /* a will topic is a topic name (3.1.3.3) */
    return MQTT_RC_SUCCESS;
}

static enum mqtt_rc decode_connect(struct codec_reader *r, struct mqtt_connect *c)
{
    uint8_t level, flags;
    if (!codec_read_binary(r, &c->protocol_name) || !codec_read_u8(r, &level))
        return MQTT_RC_MALFORMED;
    c->version = level;
    if (!protocol_supported(c->protocol_name, level))
        return MQTT_RC_UNSUPPORTED_VERSION; /* 3.1.2.1, 3.1.2.2 */
    if (!codec_read_u8(r, &flags) || !codec_read_u16(r, &c->keepalive_s))
        return MQTT_RC_MALFORMED;
    enum mqtt_rc rc = decode_connect_flags(flags, c);
    if (rc == MQTT_RC_SUCCESS && level == MQTT_V5)
        rc = codec_props_decode(r, CODEC_PROPS_CONNECT, &c->props);
    if (rc != MQTT_RC_SUCCESS)
        return rc;
    if (!read_string(r, &c->client_id))
        return MQTT_RC_MALFORMED;
    if (c->has_will && (rc = decode_will(r, c)) != MQTT_RC_SUCCESS)
        return rc;
    if (c->has_username && !read_string(r, &c->username))
        return MQTT_RC_MALFORMED;
    if (c->has_password && !codec_read_binary(r, &c->password))
        return MQTT_RC_MALFORMED;
    return codec_reader_left(r) == 0 ? MQTT_RC_SUCCESS : MQTT_RC_MALFORMED;
}

static enum mqtt_rc decode_connack(struct codec_reader *r, uint8_t version,
                                   struct mqtt_connack *a)
{
    uint8_t flags;
    if (!codec_read_u8(r, &flags) || !codec_read_u8(r, &a->rc))
        return MQTT_RC_MALFORMED;
    if (flags & 0xFE)
        return MQTT_RC_MALFORMED; /* reserved bits 7-1 (3.2.2.1) */
    a->session_present = flags & 1u;
    if (version == MQTT_V5) {
        enum mqtt_rc rc = codec_props_decode(r, CODEC_PROPS_CONNACK, &a->props);
        if (rc != MQTT_RC_SUCCESS)
            return rc;
    }
    if (codec_reader_left(r) != 0)
        return MQTT_RC_MALFORMED;
    return rc_allowed(MQTT_CONNACK, version, a->rc) ? MQTT_RC_SUCCESS : MQTT_RC_PROTOCOL_ERROR;
}

static enum mqtt_rc decode_publish(struct codec_reader *r, uint8_t flags, uint8_t version,
                                   struct mqtt_publish *p)
{
    p->qos = (flags >> 1) & 3u;
    p->dup = (flags & 0x08) != 0;
    p->retain = (flags & 0x01) != 0;
    if (!read_string(r, &p->topic))
        return MQTT_RC_MALFORMED;
    if (p->qos > 0 && !codec_read_u16(r, &p->packet_id))
        return MQTT_RC_MALFORMED;
    if (version == MQTT_V5) {
        enum mqtt_rc rc = codec_props_decode(r, CODEC_PROPS_PUBLISH, &p->props);
        if (rc != MQTT_RC_SUCCESS)
            return rc;
    }
    bool ok = codec_read_bytes(r, codec_reader_left(r), &p->payload);
    ASSERT_HOT(ok);
    if (p->qos > 0 && p->packet_id == 0)
        return MQTT_RC_PROTOCOL_ERROR; /* [MQTT-2.2.1-3] */
    if (p->topic.len == 0 && !mqtt_props_has(&p->props, MQTT_PROP_TOPIC_ALIAS))
        return MQTT_RC_PROTOCOL_ERROR; /* 3.3.2.1 */
    if (codec_has_wildcard(p->topic))
        return MQTT_RC_TOPIC_NAME_INVALID; /* [MQTT-3.3.2-2] */
    return MQTT_RC_SUCCESS;
}

/* PUBACK, PUBREC, PUBREL, PUBCOMP (3.4 .. 3.7). */
static enum mqtt_rc decode_ack(struct codec_reader *r, uint8_t type, uint8_t version,
                               struct mqtt_ack *a)
{
    if (!codec_read_u16(r, &a->packet_id))
        return MQTT_RC_MALFORMED;
    if (version == MQTT_V5 && codec_reader_left(r) > 0) {
        bool ok = codec_read_u8(r, &a->rc);
        ASSERT_HOT(ok);
        if (codec_reader_left(r) > 0) {
            enum mqtt_rc rc = codec_props_decode(r, CODEC_PROPS_ACK, &a->props);
            if (rc != MQTT_RC_SUCCESS)
                return rc;
        }
    }
    if (codec_reader_left(r) != 0)
        return MQTT_RC_MALFORMED;
    if (a->packet_id == 0)
        return MQTT_RC_PROTOCOL_ERROR;
    return rc_allowed(type, version, a->rc) ? MQTT_RC_SUCCESS : MQTT_RC_PROTOCOL_ERROR;
}

/* One subscription options byte (3.8.3.1; 3.1.1 section 3.8.3). */
static enum mqtt_rc check_sub_options(uint8_t options, struct slice filter, uint8_t version)
{
    if (version != MQTT_V5) {
        if ((options & ~MQTT_SUBOPT_QOS_MASK) != 0 || (options & MQTT_SUBOPT_QOS_MASK) == 3)
            return MQTT_RC_MALFORMED; /* 3.1.1 [MQTT-3.8.3-4] */
        return MQTT_RC_SUCCESS;
    }
    if (options & MQTT_SUBOPT_RESERVED_MASK)
        return MQTT_RC_MALFORMED; /* [MQTT-3.8.3-5] */
    if ((options & MQTT_SUBOPT_QOS_MASK) == 3)
        return MQTT_RC_PROTOCOL_ERROR;
    if ((options & MQTT_SUBOPT_RETAIN_HANDLING_MASK) >> MQTT_SUBOPT_RETAIN_HANDLING_SHIFT == 3)
        return MQTT_RC_PROTOCOL_ERROR;
    struct slice prefix = { filter.ptr, MIN(filter.len, 7u) };
    if ((options & MQTT_SUBOPT_NO_LOCAL) && slice_is(prefix, "$share/"))
        return MQTT_RC_PROTOCOL_ERROR; /* [MQTT-3.8.3-4] */
    return MQTT_RC_SUCCESS;
}

/* SUBSCRIBE (3.8) and UNSUBSCRIBE (3.10). Topic filter rules ('+', '#', levels, empty) are
 * left to the broker, which answers per filter (0x8F); only the wire form is checked here. */
static enum mqtt_rc decode_subscribe(struct codec_reader *r, uint8_t type, uint8_t version,
                                     struct mqtt_subscribe *s)
{
    if (!codec_read_u16(r, &s->packet_id))
        return MQTT_RC_MALFORMED;
    if (version == MQTT_V5) {
        enum codec_props_ctx ctx =
            type == MQTT_SUBSCRIBE ? CODEC_PROPS_SUBSCRIBE : CODEC_PROPS_UNSUBSCRIBE;
        enum mqtt_rc rc = codec_props_decode(r, ctx, &s->props);
        if (rc != MQTT_RC_SUCCESS)
            return rc;
    }
    uint32_t start = r->pos;
    while (codec_reader_left(r) > 0) {
        struct slice filter;
        uint8_t options = 0;
        if (!read_string(r, &filter))
            return MQTT_RC_MALFORMED;
        if (type == MQTT_SUBSCRIBE) {
            if (!codec_read_u8(r, &options))
                return MQTT_RC_MALFORMED;
            enum mqtt_rc rc = check_sub_options(options, filter, version);
            if (rc != MQTT_RC_SUCCESS)
                return rc;
        }
        s->count++;
    }
    s->entries = (struct slice){ r->ptr + start, r->pos - start };
    if (s->count == 0)
        return MQTT_RC_PROTOCOL_ERROR; /* [MQTT-3.8.3-2], [MQTT-3.10.3-2] */
    if (s->packet_id == 0)
        return MQTT_RC_PROTOCOL_ERROR; /* [MQTT-2.2.1-3] */
    return MQTT_RC_SUCCESS;
}

/* SUBACK (3.9) and UNSUBACK (3.11; no payload before 5.0). */
static enum mqtt_rc decode_suback(struct codec_reader *r, uint8_t type, uint8_t version,
                                  struct mqtt_suback *s)
{
    if (!codec_read_u16(r, &s->packet_id))
        return MQTT_RC_MALFORMED;
    if (version == MQTT_V5) {
        enum codec_props_ctx ctx = type == MQTT_SUBACK ? CODEC_PROPS_SUBACK : CODEC_PROPS_UNSUBACK;
        enum mqtt_rc rc = codec_props_decode(r, ctx, &s->props);
        if (rc != MQTT_RC_SUCCESS)
            return rc;
    }
    bool has_rcs = type == MQTT_SUBACK || version == MQTT_V5;
    if (!has_rcs && codec_reader_left(r) != 0)
        return MQTT_RC_MALFORMED;
    if (!has_rcs)
        return s->packet_id != 0 ? MQTT_RC_SUCCESS : MQTT_RC_PROTOCOL_ERROR;
    bool ok = codec_read_bytes(r, codec_reader_left(r), &s->rcs);
    ASSERT_HOT(ok);
    if (s->rcs.len == 0 || s->packet_id == 0 || !rcs_allowed(type, version, s->rcs))
        return MQTT_RC_PROTOCOL_ERROR;
    return MQTT_RC_SUCCESS;
}

/* DISCONNECT (3.14) and AUTH (3.15). On v5 a remaining length of 0 means reason code 0 and no
 * properties, 1 means a reason code only. */
static enum mqtt_rc decode_reason(struct codec_reader *r, uint8_t type, uint8_t version,
                                  struct mqtt_reason *m)
{
    if (version == MQTT_V5 && codec_reader_left(r) > 0) {
        bool ok = codec_read_u8(r, &m->rc);
        ASSERT_HOT(ok);
        if (codec_reader_left(r) > 0) {
            enum codec_props_ctx ctx =
                type == MQTT_DISCONNECT ? CODEC_PROPS_DISCONNECT : CODEC_PROPS_AUTH;
            enum mqtt_rc rc = codec_props_decode(r, ctx, &m->props);
            if (rc != MQTT_RC_SUCCESS)
                return rc;
        }
    }
    if (codec_reader_left(r) != 0)
        return MQTT_RC_MALFORMED;
    return rc_allowed(type, version, m->rc) ? MQTT_RC_SUCCESS : MQTT_RC_PROTOCOL_ERROR;
}

static enum mqtt_rc decode_body(struct codec_reader *r, uint8_t type, uint8_t flags,
                                uint8_t version, struct mqtt_packet *out)
{
    switch (type) {
    case MQTT_CONNACK:
        return decode_connack(r, version, &out->connack);
    case MQTT_PUBLISH:
        return decode_publish(r, flags, version, &out->publish);
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
        return decode_ack(r, type, version, &out->ack);
    case MQTT_SUBSCRIBE:
    case MQTT_UNSUBSCRIBE:
        return decode_subscribe(r, type, version, &out->subscribe);
    case MQTT_SUBACK:
    case MQTT_UNSUBACK:
        return decode_suback(r, type, version, &out->suback);
    case MQTT_PINGREQ:
    case MQTT_PINGRESP:
        return codec_reader_left(r) == 0 ? MQTT_RC_SUCCESS : MQTT_RC_MALFORMED;
    case MQTT_DISCONNECT:
        return decode_reason(r, type, version, &out->reason);
    case MQTT_AUTH:
        if (version != MQTT_V5)
            return MQTT_RC_MALFORMED; /* type 15 is reserved before 5.0 */
        return decode_reason(r, type, version, &out->reason);
    default:
        return MQTT_RC_MALFORMED;
    }
}

enum mqtt_rc codec_decode(const uint8_t *frame, uint32_t len, uint8_t version,
                          struct mqtt_packet *out)
{
    ASSERT(out != NULL);
    ASSERT(frame != NULL || len == 0);
    memset(out, 0, sizeof(*out));
    uint32_t frame_len = 0;
    int header_len = codec_frame(frame, len, &frame_len);
    if (header_len <= 0 || frame_len != len)
        return MQTT_RC_MALFORMED; /* not one complete frame: remaining length disagrees */
    uint8_t type = frame[0] >> 4;
    uint8_t flags = frame[0] & 0x0F;
    out->type = type;
    if (!flags_valid(type, flags))
        return MQTT_RC_MALFORMED;
    struct codec_reader r = { frame + header_len, len - (uint32_t)header_len, 0 };
    if (type == MQTT_CONNECT)
        return decode_connect(&r, &out->connect);
    if (!version_known(version))
        return MQTT_RC_PROTOCOL_ERROR; /* no CONNECT yet: the first packet must be CONNECT */
    return decode_body(&r, type, flags, version, out);
}

bool codec_sub_next(struct slice entries, uint32_t *pos, struct slice *filter, uint8_t *options)
{
    ASSERT(pos != NULL && filter != NULL);
    struct codec_reader r = { entries.ptr, entries.len, *pos };
    if (*pos >= entries.len || !codec_read_binary(&r, filter))
        return false;
    if (options != NULL && !codec_read_u8(&r, options))
        return false;
    *pos = r.pos;
    return true;
}

/* ---- encoding ---- */

static void write_props(struct codec_writer *w, uint8_t version, const struct mqtt_props *p,
                        enum codec_props_ctx ctx)
{
    if (version == MQTT_V5)
        codec_props_write(w, p, ctx);
}

static void write_connect(struct codec_writer *w, const struct mqtt_connect *c)
{
    uint8_t v = c->version;
    const struct mqtt_will *will = &c->will;
    if (!version_known(v) || (c->has_will && will->qos > 2) ||
        (v != MQTT_V5 && c->has_password && !c->has_username) ||
        (c->has_will && (will->topic.len == 0 || codec_has_wildcard(will->topic)))) {
        w->failed = true;
        return;
    }
    codec_write_binary(w, slice_from_cstr(v == MQTT_V31 ? "MQIsdp" : "MQTT"));
    codec_write_u8(w, v);
    uint8_t flags = (uint8_t)((c->clean_start ? 0x02 : 0) | (c->has_password ? 0x40 : 0) |
                              (c->has_username ? 0x80 : 0));
    if (c->has_will)
        flags |= (uint8_t)(0x04 | will->qos << 3 | (will->retain ? 0x20 : 0));
    codec_write_u8(w, flags);
    codec_write_u16(w, c->keepalive_s);
    write_props(w, v, &c->props, CODEC_PROPS_CONNECT);
    codec_write_binary(w, c->client_id);
    if (c->has_will) {
        write_props(w, v, &will->props, CODEC_PROPS_WILL);
        codec_write_binary(w, will->topic);
        codec_write_binary(w, will->payload);
    }
    if (c->has_username)
        codec_write_binary(w, c->username);
    if (c->has_password)
        codec_write_binary(w, c->password);
}

static void write_publish(struct codec_writer *w, uint8_t version, const struct mqtt_publish *p)
{
    bool has_alias = version == MQTT_V5 && mqtt_props_has(&p->props, MQTT_PROP_TOPIC_ALIAS);
    if (p->qos > 2 || (p->qos == 0 && p->dup) || (p->qos > 0 && p->packet_id == 0) ||
        (p->topic.len == 0 && !has_alias) || codec_has_wildcard(p->topic)) {
        w->failed = true;
        return;
    }
    codec_write_binary(w, p->topic);
    if (p->qos > 0)
        codec_write_u16(w, p->packet_id);
    write_props(w, version, &p->props, CODEC_PROPS_PUBLISH);
    codec_write_bytes(w, p->payload);
}

/* The optional reason code and properties tail of v5 acks, DISCONNECT and AUTH: omitted when
 * the code is 0 and there are no properties, properties omitted when there are none. */
static void write_reason_tail(struct codec_writer *w, uint8_t rc, const struct mqtt_props *p,
                              enum codec_props_ctx ctx)
{
    bool has_props = !codec_props_is_empty(p);
    if (rc == 0 && !has_props)
        return;
    codec_write_u8(w, rc);
    if (has_props)
        codec_props_write(w, p, ctx);
}

/* SUBACK and UNSUBACK; UNSUBACK before 5.0 has no reason codes, so `rcs` is not written. */
static void write_suback(struct codec_writer *w, uint8_t type, uint8_t version,
                         const struct mqtt_suback *s)
{
    bool has_rcs = type == MQTT_SUBACK || version == MQTT_V5;
    w->failed |= s->packet_id == 0;
    w->failed |= has_rcs && (s->rcs.len == 0 || !rcs_allowed(type, version, s->rcs));
    codec_write_u16(w, s->packet_id);
    write_props(w, version, &s->props,
                type == MQTT_SUBACK ? CODEC_PROPS_SUBACK : CODEC_PROPS_UNSUBACK);
    if (has_rcs)
        codec_write_bytes(w, s->rcs);
}

static void write_body(struct codec_writer *w, const struct mqtt_packet *pkt, uint8_t version)
{
    bool v5 = version == MQTT_V5;
    uint8_t type = pkt->type;
    switch (type) {
    case MQTT_CONNECT:
        write_connect(w, &pkt->connect);
        break;
    case MQTT_CONNACK:
        w->failed |= !rc_allowed(type, version, pkt->connack.rc);
        codec_write_u8(w, pkt->connack.session_present ? 1 : 0);
        codec_write_u8(w, pkt->connack.rc);
        write_props(w, version, &pkt->connack.props, CODEC_PROPS_CONNACK);
        break;
    case MQTT_PUBLISH:
        write_publish(w, version, &pkt->publish);
        break;
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
        w->failed |= pkt->ack.packet_id == 0 || (v5 && !rc_allowed(type, version, pkt->ack.rc));
        codec_write_u16(w, pkt->ack.packet_id);
        if (v5)
            write_reason_tail(w, pkt->ack.rc, &pkt->ack.props, CODEC_PROPS_ACK);
        break;
    case MQTT_SUBSCRIBE:
    case MQTT_UNSUBSCRIBE:
        w->failed |= pkt->subscribe.packet_id == 0 || pkt->subscribe.entries.len == 0;
        codec_write_u16(w, pkt->subscribe.packet_id);
        write_props(w, version, &pkt->subscribe.props,
                    type == MQTT_SUBSCRIBE ? CODEC_PROPS_SUBSCRIBE : CODEC_PROPS_UNSUBSCRIBE);
        codec_write_bytes(w, pkt->subscribe.entries);
        break;
    case MQTT_SUBACK:
    case MQTT_UNSUBACK:
        write_suback(w, type, version, &pkt->suback);
        break;
    case MQTT_PINGREQ:
    case MQTT_PINGRESP:
        break;
    case MQTT_DISCONNECT:
    case MQTT_AUTH:
        if (!v5) {
            w->failed |= type == MQTT_AUTH;
            break;
        }
        w->failed |= !rc_allowed(type, version, pkt->reason.rc);
        write_reason_tail(w, pkt->reason.rc, &pkt->reason.props,
                          type == MQTT_DISCONNECT ? CODEC_PROPS_DISCONNECT : CODEC_PROPS_AUTH);
        break;
    default:
        w->failed = true;
        break;
    }
}

static uint8_t header_byte(const struct mqtt_packet *pkt)
{
    uint8_t flags = 0;
    if (pkt->type == MQTT_PUBLISH) {
        const struct mqtt_publish *p = &pkt->publish;
        flags = (uint8_t)((p->dup ? 0x08 : 0) | p->qos << 1 | (p->retain ? 0x01 : 0));
    } else if (pkt->type == MQTT_PUBREL || pkt->type == MQTT_SUBSCRIBE ||
               pkt->type == MQTT_UNSUBSCRIBE) {
        flags = 0x02;
    }
    return (uint8_t)(pkt->type << 4 | flags);
}

/* Length of the variable header and payload, or UINT32_MAX if `pkt` cannot be encoded. */
static uint32_t body_len(const struct mqtt_packet *pkt, uint8_t version)
{
    if (pkt->type != MQTT_CONNECT && !version_known(version))
        return UINT32_MAX;
    struct codec_writer w = { NULL, 0, false };
    write_body(&w, pkt, version);
    if (w.failed || w.pos > MQTT_VARINT_MAX)
        return UINT32_MAX;
    return (uint32_t)w.pos;
}

uint32_t codec_size(const struct mqtt_packet *pkt, uint8_t version)
{
    ASSERT(pkt != NULL);
    uint32_t len = body_len(pkt, version);
    if (len == UINT32_MAX)
        return 0;
    return 1 + codec_varint_size(len) + len;
}

uint32_t codec_encode(const struct mqtt_packet *pkt, uint8_t version, uint8_t *out)
{
    ASSERT(pkt != NULL && out != NULL);
    uint32_t len = body_len(pkt, version);
    ASSERT(len != UINT32_MAX); /* the caller sized `out` with codec_size(), which was not 0 */
    struct codec_writer w = { out, 0, false };
    codec_write_u8(&w, header_byte(pkt));
    codec_write_varint(&w, len);
    write_body(&w, pkt, version);
    ASSERT(!w.failed);
    ASSERT(w.pos == 1 + codec_varint_size(len) + len);
    return (uint32_t)w.pos;
}
