/* core/codec_props.c - MQTT 5.0 properties, UTF-8 validation, varints and the byte writer.
 *
 * The packet-level decoder and encoder live in core/codec.c; this file owns everything about
 * property blocks: which identifiers each packet may carry, their data types, the value ranges
 * the spec allows, and the wire walkers of core/codec.h. No allocation; any thread.
 */
#include "core/codec_props.h"

#include <stddef.h>
#include <string.h>

enum prop_type {
    PROP_NONE = 0, /* not a property identifier */
    PROP_BYTE,
    PROP_U16,
    PROP_U32,
    PROP_VARINT,
    PROP_UTF8,
    PROP_BINARY,
    PROP_PAIR,
};

struct prop_info {
    uint8_t type;
    uint16_t offset; /* of the value's field in struct mqtt_props */
};

#define PROP(id, t, field) [id] = { t, offsetof(struct mqtt_props, field) }

/* MQTT 5.0 section 2.2.2.2, table 2-4. */
static const struct prop_info prop_table[64] = {
    PROP(MQTT_PROP_PAYLOAD_FORMAT, PROP_BYTE, payload_format),
    PROP(MQTT_PROP_MESSAGE_EXPIRY, PROP_U32, message_expiry),
    PROP(MQTT_PROP_CONTENT_TYPE, PROP_UTF8, content_type),
    PROP(MQTT_PROP_RESPONSE_TOPIC, PROP_UTF8, response_topic),
    PROP(MQTT_PROP_CORRELATION_DATA, PROP_BINARY, correlation_data),
    PROP(MQTT_PROP_SUBSCRIPTION_ID, PROP_VARINT, sub_id),
    PROP(MQTT_PROP_SESSION_EXPIRY, PROP_U32, session_expiry),
    PROP(MQTT_PROP_ASSIGNED_CLIENT_ID, PROP_UTF8, assigned_client_id),
    PROP(MQTT_PROP_SERVER_KEEPALIVE, PROP_U16, server_keepalive),
    PROP(MQTT_PROP_AUTH_METHOD, PROP_UTF8, auth_method),
    PROP(MQTT_PROP_AUTH_DATA, PROP_BINARY, auth_data),
    PROP(MQTT_PROP_REQUEST_PROBLEM_INFO, PROP_BYTE, request_problem_info),
    PROP(MQTT_PROP_WILL_DELAY, PROP_U32, will_delay),
    PROP(MQTT_PROP_REQUEST_RESPONSE_INFO, PROP_BYTE, request_response_info),
    PROP(MQTT_PROP_RESPONSE_INFO, PROP_UTF8, response_info),
    PROP(MQTT_PROP_SERVER_REFERENCE, PROP_UTF8, server_reference),
    PROP(MQTT_PROP_REASON_STRING, PROP_UTF8, reason_string),
    PROP(MQTT_PROP_RECEIVE_MAX, PROP_U16, receive_max),
    PROP(MQTT_PROP_TOPIC_ALIAS_MAX, PROP_U16, topic_alias_max),
    PROP(MQTT_PROP_TOPIC_ALIAS, PROP_U16, topic_alias),
    PROP(MQTT_PROP_MAX_QOS, PROP_BYTE, max_qos),
    PROP(MQTT_PROP_RETAIN_AVAILABLE, PROP_BYTE, retain_available),
    PROP(MQTT_PROP_USER_PROPERTY, PROP_PAIR, user_props_raw),
    PROP(MQTT_PROP_MAX_PACKET_SIZE, PROP_U32, max_packet_size),
    PROP(MQTT_PROP_WILDCARD_SUB_AVAILABLE, PROP_BYTE, wildcard_sub_available),
    PROP(MQTT_PROP_SUB_ID_AVAILABLE, PROP_BYTE, sub_id_available),
    PROP(MQTT_PROP_SHARED_SUB_AVAILABLE, PROP_BYTE, shared_sub_available),
};

#define BIT(id) ((uint64_t)1 << (id))

/* Allowed identifiers per packet, from the "used in" column of table 2-4. */
static const uint64_t prop_allowed[CODEC_PROPS_CTX_COUNT] = {
    [CODEC_PROPS_CONNECT] = BIT(MQTT_PROP_SESSION_EXPIRY) | BIT(MQTT_PROP_RECEIVE_MAX) |
        BIT(MQTT_PROP_MAX_PACKET_SIZE) | BIT(MQTT_PROP_TOPIC_ALIAS_MAX) |
        BIT(MQTT_PROP_REQUEST_RESPONSE_INFO) | BIT(MQTT_PROP_REQUEST_PROBLEM_INFO) |
        BIT(MQTT_PROP_USER_PROPERTY) | BIT(MQTT_PROP_AUTH_METHOD) | BIT(MQTT_PROP_AUTH_DATA),
    [CODEC_PROPS_WILL] = BIT(MQTT_PROP_WILL_DELAY) | BIT(MQTT_PROP_PAYLOAD_FORMAT) |
        BIT(MQTT_PROP_MESSAGE_EXPIRY) | BIT(MQTT_PROP_CONTENT_TYPE) |
        BIT(MQTT_PROP_RESPONSE_TOPIC) | BIT(MQTT_PROP_CORRELATION_DATA) |
        BIT(MQTT_PROP_USER_PROPERTY),
    [CODEC_PROPS_CONNACK] = BIT(MQTT_PROP_SESSION_EXPIRY) | BIT(MQTT_PROP_RECEIVE_MAX) |
        BIT(MQTT_PROP_MAX_QOS) | BIT(MQTT_PROP_RETAIN_AVAILABLE) |
        BIT(MQTT_PROP_MAX_PACKET_SIZE) | BIT(MQTT_PROP_ASSIGNED_CLIENT_ID) |
        BIT(MQTT_PROP_TOPIC_ALIAS_MAX) | BIT(MQTT_PROP_REASON_STRING) |
        BIT(MQTT_PROP_USER_PROPERTY) | BIT(MQTT_PROP_WILDCARD_SUB_AVAILABLE) |
        BIT(MQTT_PROP_SUB_ID_AVAILABLE) | BIT(MQTT_PROP_SHARED_SUB_AVAILABLE) |
        BIT(MQTT_PROP_SERVER_KEEPALIVE) | BIT(MQTT_PROP_RESPONSE_INFO) |
        BIT(MQTT_PROP_SERVER_REFERENCE) | BIT(MQTT_PROP_AUTH_METHOD) |
        BIT(MQTT_PROP_AUTH_DATA),
    [CODEC_PROPS_PUBLISH] = BIT(MQTT_PROP_PAYLOAD_FORMAT) | BIT(MQTT_PROP_MESSAGE_EXPIRY) |
        BIT(MQTT_PROP_TOPIC_ALIAS) | BIT(MQTT_PROP_RESPONSE_TOPIC) |
        BIT(MQTT_PROP_CORRELATION_DATA) | BIT(MQTT_PROP_USER_PROPERTY) |
        BIT(MQTT_PROP_SUBSCRIPTION_ID) | BIT(MQTT_PROP_CONTENT_TYPE),
    [CODEC_PROPS_ACK] = BIT(MQTT_PROP_REASON_STRING) | BIT(MQTT_PROP_USER_PROPERTY),
    [CODEC_PROPS_SUBSCRIBE] = BIT(MQTT_PROP_SUBSCRIPTION_ID) | BIT(MQTT_PROP_USER_PROPERTY),
    [CODEC_PROPS_SUBACK] = BIT(MQTT_PROP_REASON_STRING) | BIT(MQTT_PROP_USER_PROPERTY),
    [CODEC_PROPS_UNSUBSCRIBE] = BIT(MQTT_PROP_USER_PROPERTY),
    [CODEC_PROPS_UNSUBACK] = BIT(MQTT_PROP_REASON_STRING) | BIT(MQTT_PROP_USER_PROPERTY),
    [CODEC_PROPS_DISCONNECT] = BIT(MQTT_PROP_SESSION_EXPIRY) | BIT(MQTT_PROP_REASON_STRING) |
        BIT(MQTT_PROP_USER_PROPERTY) | BIT(MQTT_PROP_SERVER_REFERENCE),
    [CODEC_PROPS_AUTH] = BIT(MQTT_PROP_AUTH_METHOD) | BIT(MQTT_PROP_AUTH_DATA) |
        BIT(MQTT_PROP_REASON_STRING) | BIT(MQTT_PROP_USER_PROPERTY),
};

/* Integer properties whose value 0 is a Protocol Error (3.1.2.11.3, 3.1.2.11.4, 3.3.2.3.4,
 * 3.8.2.1.2). Every PROP_BYTE property must be 0 or 1 (same sections). */
static const uint64_t prop_nonzero = BIT(MQTT_PROP_RECEIVE_MAX) |
    BIT(MQTT_PROP_MAX_PACKET_SIZE) | BIT(MQTT_PROP_TOPIC_ALIAS) |
    BIT(MQTT_PROP_SUBSCRIPTION_ID);

bool codec_utf8_valid(struct slice s)
{
    const uint8_t *p = s.ptr;
    uint32_t i = 0;
    while (i < s.len) {
        uint8_t c = p[i];
        if (c >= 0x01 && c <= 0x7F) {
            i++;
            continue;
        }
        uint32_t need;
        uint8_t lo = 0x80, hi = 0xBF; /* allowed range of the first continuation byte */
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0)
                lo = 0xA0; /* overlong */
            if (c == 0xED)
                hi = 0x9F; /* surrogates U+D800..U+DFFF */
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0)
                lo = 0x90; /* overlong */
            if (c == 0xF4)
                hi = 0x8F; /* above U+10FFFF */
        } else {
            return false; /* U+0000, stray continuation, overlong C0/C1, F5..FF */
        }
        if (s.len - i - 1 < need)
            return false;
        if (p[i + 1] < lo || p[i + 1] > hi)
            return false;
        for (uint32_t k = 2; k <= need; k++)
            if ((p[i + k] & 0xC0) != 0x80)
                return false;
        i += need + 1;
    }
    return true;
}

bool codec_has_wildcard(struct slice s)
{
    return memchr(s.ptr, '+', s.len) != NULL || memchr(s.ptr, '#', s.len) != NULL;
}

bool codec_read_varint(struct codec_reader *r, uint32_t *value)
{
    uint32_t result = 0;
    for (uint32_t i = 0; i < 4; i++) {
        uint8_t b;
        if (!codec_read_u8(r, &b))
            return false;
        result |= (uint32_t)(b & 0x7F) << (7 * i);
        if ((b & 0x80) == 0) {
            *value = result;
            return true;
        }
    }
    return false; /* a fifth byte would be needed */
}

/* Reads one property (identifier and value) without interpreting it. For integers `value` is
 * the raw bytes; for strings and binary the bytes after the length; a pair sets both.
 * Returns false on truncation or an unknown identifier. */
static bool prop_read_raw(struct codec_reader *r, uint8_t *id, struct slice *value,
                          struct slice *value2)
{
    uint32_t ident;
    if (!codec_read_varint(r, &ident) || ident >= ARRAY_LEN(prop_table))
        return false;
    uint8_t type = prop_table[ident].type;
    uint32_t start = r->pos;
    uint32_t ignored;
    bool ok = false;
    *id = (uint8_t)ident;
    *value2 = (struct slice){ NULL, 0 };
    switch (type) {
    case PROP_BYTE:
        ok = codec_read_bytes(r, 1, value);
        break;
    case PROP_U16:
        ok = codec_read_bytes(r, 2, value);
        break;
    case PROP_U32:
        ok = codec_read_bytes(r, 4, value);
        break;
    case PROP_VARINT:
        ok = codec_read_varint(r, &ignored);
        *value = (struct slice){ r->ptr + start, r->pos - start };
        break;
    case PROP_UTF8:
    case PROP_BINARY:
        ok = codec_read_binary(r, value);
        break;
    case PROP_PAIR:
        ok = codec_read_binary(r, value) && codec_read_binary(r, value2);
        break;
    default:
        break;
    }
    return ok;
}

bool codec_prop_next(struct slice block, uint32_t *pos, uint8_t *id, struct slice *value,
                     struct slice *value2)
{
    ASSERT(pos != NULL);
    if (*pos >= block.len)
        return false;
    struct codec_reader r = { block.ptr, block.len, *pos };
    if (!prop_read_raw(&r, id, value, value2))
        return false;
    *pos = r.pos;
    return true;
}

bool codec_user_prop_next(struct slice block, uint32_t *pos, struct slice *key,
                          struct slice *value)
{
    uint8_t id;
    while (codec_prop_next(block, pos, &id, key, value))
        if (id == MQTT_PROP_USER_PROPERTY)
            return true;
    return false;
}

static uint32_t be_value(struct slice raw)
{
    uint32_t v = 0;
    for (uint32_t i = 0; i < raw.len; i++)
        v = v << 8 | raw.ptr[i];
    return v;
}

static uint32_t varint_value(struct slice raw)
{
    struct codec_reader r = { raw.ptr, raw.len, 0 };
    uint32_t v = 0;
    bool ok = codec_read_varint(&r, &v);
    ASSERT_HOT(ok);
    return v;
}

/* Stores one validated property into `out`. Returns the reason code for a bad value. */
static enum mqtt_rc props_store(uint8_t id, struct slice value, struct slice value2,
                                struct mqtt_props *out)
{
    const struct prop_info *info = &prop_table[id];
    uint8_t *field = (uint8_t *)out + info->offset;
    uint32_t number = 0;
    switch (info->type) {
    case PROP_BYTE:
        number = value.ptr[0];
        if (number > 1)
            return MQTT_RC_PROTOCOL_ERROR;
        *field = (uint8_t)number;
        break;
    case PROP_U16:
        number = be_value(value);
        *(uint16_t *)(void *)field = (uint16_t)number;
        break;
    case PROP_U32:
        number = be_value(value);
        *(uint32_t *)(void *)field = number;
        break;
    case PROP_VARINT:
        number = varint_value(value);
        if (out->sub_id_count == 0)
            out->sub_id = number;
        out->sub_id_count++;
        break;
    case PROP_UTF8:
        if (!codec_utf8_valid(value))
            return MQTT_RC_MALFORMED;
        *(struct slice *)(void *)field = value;
        break;
    case PROP_BINARY:
        *(struct slice *)(void *)field = value;
        break;
    case PROP_PAIR:
        if (!codec_utf8_valid(value) || !codec_utf8_valid(value2))
            return MQTT_RC_MALFORMED;
        out->user_prop_count++;
        break;
    default:
        ASSERT(false);
    }
    /* A Topic Alias of 0 is left to the receiver, which answers it like one above its maximum
     * (0x94 Topic Alias invalid, docs/protocol-errors.md). */
    if (number == 0 && ((prop_nonzero >> id) & 1u) && id != MQTT_PROP_TOPIC_ALIAS)
        return MQTT_RC_PROTOCOL_ERROR; /* only integer properties are in prop_nonzero */
    return MQTT_RC_SUCCESS;
}

enum mqtt_rc codec_props_decode(struct codec_reader *r, enum codec_props_ctx ctx,
                                struct mqtt_props *out)
{
    uint32_t block_len;
    struct slice block;
    if (!codec_read_varint(r, &block_len) || !codec_read_bytes(r, block_len, &block))
        return MQTT_RC_MALFORMED;
    return codec_props_decode_block(block, ctx, out);
}

enum mqtt_rc codec_props_decode_block(struct slice block, enum codec_props_ctx ctx,
                                      struct mqtt_props *out)
{
    ASSERT(ctx < CODEC_PROPS_CTX_COUNT);
    ASSERT(out->present == 0);
    out->raw = block;

    uint64_t repeatable = BIT(MQTT_PROP_USER_PROPERTY);
    if (ctx == CODEC_PROPS_PUBLISH)
        repeatable |= BIT(MQTT_PROP_SUBSCRIPTION_ID); /* 3.3.2.3.8 */
    struct codec_reader pr = { block.ptr, block.len, 0 };
    while (codec_reader_left(&pr) > 0) {
        uint8_t id;
        struct slice value, value2;
        if (!prop_read_raw(&pr, &id, &value, &value2))
            return MQTT_RC_MALFORMED; /* truncated, or an unknown identifier (2.2.2.2) */
        if (((prop_allowed[ctx] >> id) & 1u) == 0)
            return MQTT_RC_MALFORMED; /* not valid for this packet type (2.2.2.2) */
        if ((out->present & BIT(id)) && (repeatable & BIT(id)) == 0)
            return MQTT_RC_PROTOCOL_ERROR; /* "more than once" in each property's section */
        enum mqtt_rc rc = props_store(id, value, value2, out);
        if (rc != MQTT_RC_SUCCESS)
            return rc;
        out->present |= BIT(id);
    }
    /* 3.1.2.11.10, 3.2.2.3.18, 3.15.2.2.3: authentication data needs a method. */
    if (mqtt_props_has(out, MQTT_PROP_AUTH_DATA) && !mqtt_props_has(out, MQTT_PROP_AUTH_METHOD))
        return MQTT_RC_PROTOCOL_ERROR;
    /* 3.3.2.3.5 [MQTT-3.3.2-14]: the Response Topic is a topic name, no wildcards. */
    if (mqtt_props_has(out, MQTT_PROP_RESPONSE_TOPIC) &&
        (out->response_topic.len == 0 || codec_has_wildcard(out->response_topic)))
        return MQTT_RC_PROTOCOL_ERROR;
    return MQTT_RC_SUCCESS;
}

/* ---- writer ---- */

void codec_write_u8(struct codec_writer *w, uint8_t value)
{
    if (w->out != NULL)
        w->out[w->pos] = value;
    w->pos++;
}

void codec_write_u16(struct codec_writer *w, uint16_t value)
{
    codec_write_u8(w, (uint8_t)(value >> 8));
    codec_write_u8(w, (uint8_t)value);
}

void codec_write_u32(struct codec_writer *w, uint32_t value)
{
    codec_write_u16(w, (uint16_t)(value >> 16));
    codec_write_u16(w, (uint16_t)value);
}

void codec_write_varint(struct codec_writer *w, uint32_t value)
{
    if (value > MQTT_VARINT_MAX) {
        w->failed = true;
        return;
    }
    uint8_t tmp[4];
    uint32_t n = codec_varint_encode(value, tmp);
    codec_write_bytes(w, (struct slice){ tmp, n });
}

void codec_write_bytes(struct codec_writer *w, struct slice s)
{
    if (w->out != NULL && s.len > 0)
        memcpy(w->out + w->pos, s.ptr, s.len);
    w->pos += s.len;
}

void codec_write_binary(struct codec_writer *w, struct slice s)
{
    if (s.len > CODEC_STRING_LEN_MAX) {
        w->failed = true;
        return;
    }
    codec_write_u16(w, (uint16_t)s.len);
    codec_write_bytes(w, s);
}

bool codec_props_is_empty(const struct mqtt_props *p)
{
    uint64_t plain = p->present & ~(BIT(MQTT_PROP_USER_PROPERTY) |
                                    BIT(MQTT_PROP_SUBSCRIPTION_ID));
    bool has_sub_ids = p->sub_ids != NULL ? p->sub_id_count > 0
                                          : mqtt_props_has(p, MQTT_PROP_SUBSCRIPTION_ID);
    bool has_user = false;
    uint32_t pos = 0;
    struct slice key, value;
    if (p->user_props_raw.len > 0)
        has_user = codec_user_prop_next(p->user_props_raw, &pos, &key, &value);
    return plain == 0 && !has_sub_ids && !has_user;
}

/* Writes one fixed-layout property (everything except user properties and subscription ids). */
static void props_write_one(struct codec_writer *w, const struct mqtt_props *p, uint8_t id)
{
    const struct prop_info *info = &prop_table[id];
    const uint8_t *field = (const uint8_t *)p + info->offset;
    uint32_t number = 0;
    codec_write_u8(w, id);
    switch (info->type) {
    case PROP_BYTE:
        number = *field;
        codec_write_u8(w, *field);
        if (number > 1)
            w->failed = true;
        break;
    case PROP_U16:
        number = *(const uint16_t *)(const void *)field;
        codec_write_u16(w, (uint16_t)number);
        break;
    case PROP_U32:
        number = *(const uint32_t *)(const void *)field;
        codec_write_u32(w, number);
        break;
    case PROP_UTF8:
    case PROP_BINARY:
        number = 1;
        codec_write_binary(w, *(const struct slice *)(const void *)field);
        break;
    default:
        ASSERT(false);
    }
    if (number == 0 && ((prop_nonzero >> id) & 1u))
        w->failed = true;
}

static void props_write_sub_id(struct codec_writer *w, uint32_t sub_id)
{
    if (sub_id == 0 || sub_id > MQTT_SUB_ID_MAX)
        w->failed = true;
    codec_write_u8(w, MQTT_PROP_SUBSCRIPTION_ID);
    codec_write_varint(w, sub_id);
}

/* Writes the properties of `p` (without the block length). */
static void props_write_body(struct codec_writer *w, const struct mqtt_props *p,
                             enum codec_props_ctx ctx)
{
    uint64_t special = BIT(MQTT_PROP_USER_PROPERTY) | BIT(MQTT_PROP_SUBSCRIPTION_ID);
    uint64_t plain = p->present & ~special;
    if ((plain & ~prop_allowed[ctx]) != 0) {
        w->failed = true;
        return;
    }
    for (uint8_t id = 1; id < ARRAY_LEN(prop_table); id++)
        if ((plain >> id) & 1u)
            props_write_one(w, p, id);

    uint32_t sub_id_count = 0;
    if (p->sub_ids != NULL) {
        sub_id_count = p->sub_id_count;
        for (uint32_t i = 0; i < p->sub_id_count; i++)
            props_write_sub_id(w, p->sub_ids[i]);
    } else if (mqtt_props_has(p, MQTT_PROP_SUBSCRIPTION_ID)) {
        sub_id_count = 1;
        props_write_sub_id(w, p->sub_id);
    }
    if (sub_id_count > 0 && ((prop_allowed[ctx] >> MQTT_PROP_SUBSCRIPTION_ID) & 1u) == 0)
        w->failed = true;
    if (sub_id_count > 1 && ctx != CODEC_PROPS_PUBLISH)
        w->failed = true;

    uint32_t pos = 0;
    struct slice key, value;
    while (codec_user_prop_next(p->user_props_raw, &pos, &key, &value)) {
        if (((prop_allowed[ctx] >> MQTT_PROP_USER_PROPERTY) & 1u) == 0)
            w->failed = true;
        codec_write_u8(w, MQTT_PROP_USER_PROPERTY);
        codec_write_binary(w, key);
        codec_write_binary(w, value);
    }
}

void codec_props_write(struct codec_writer *w, const struct mqtt_props *p,
                       enum codec_props_ctx ctx)
{
    ASSERT(ctx < CODEC_PROPS_CTX_COUNT);
    struct codec_writer counter = { NULL, 0, false };
    props_write_body(&counter, p, ctx);
    if (counter.failed || counter.pos > MQTT_VARINT_MAX) {
        w->failed = true;
        return;
    }
    codec_write_varint(w, (uint32_t)counter.pos);
    uint64_t start = w->pos;
    props_write_body(w, p, ctx);
    ASSERT(w->pos - start == counter.pos);
}

enum mqtt_rc codec_publish_props_decode(struct slice block, struct mqtt_props *out)
{
    return codec_props_decode_block(block, CODEC_PROPS_PUBLISH, out);
}
