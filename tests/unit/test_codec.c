/* tests/unit/test_codec.c - core/codec: varints, framing, byte fixtures, round trips of every
 * packet in every protocol version, every 5.0 property, and a fuzz smoke test.
 *
 * Rejections of malformed input and their reason codes are in test_codec_malformed.c.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "core/codec.h"

#define PROP_BIT(id) ((uint64_t)1 << (id))
#define SUB_IDS_MAX 64
#define S(text) slice_from_cstr(text)

static const uint8_t all_versions[] = { MQTT_V31, MQTT_V311, MQTT_V5 };

/* Frames produced by the helpers stay alive until the next call (decoded slices borrow). */
static uint8_t *frame_first;
static uint8_t *frame_second;

static void frames_free(void)
{
    free(frame_first);
    free(frame_second);
    frame_first = NULL;
    frame_second = NULL;
}

TestSuite(codec, .fini = frames_free);

/* Encodes into an exact-size heap buffer (so ASan catches overruns). Returns ownership. */
static uint8_t *encode_exact(const struct mqtt_packet *pkt, uint8_t version, uint32_t *len)
{
    uint32_t size = codec_size(pkt, version);
    cr_assert_gt(size, 0, "type %u v%u cannot be encoded", pkt->type, version);
    uint8_t *out = malloc(size);
    cr_assert_not_null(out);
    cr_assert_eq(codec_encode(pkt, version, out), size);
    *len = size;
    return out;
}

/* Collects the subscription identifiers of a decoded block, in order. */
static uint32_t sub_ids_collect(struct slice block, uint32_t *ids)
{
    uint32_t count = 0, pos = 0;
    uint8_t id;
    struct slice value, value2;
    while (codec_prop_next(block, &pos, &id, &value, &value2)) {
        if (id != MQTT_PROP_SUBSCRIPTION_ID)
            continue;
        uint32_t v = 0;
        for (uint32_t i = 0; i < value.len; i++)
            v |= (uint32_t)(value.ptr[i] & 0x7F) << (7 * i);
        cr_assert_lt(count, SUB_IDS_MAX);
        ids[count++] = v;
    }
    return count;
}

static void assert_props_eq(const struct mqtt_props *want, const struct mqtt_props *got)
{
    uint64_t special = PROP_BIT(MQTT_PROP_USER_PROPERTY) | PROP_BIT(MQTT_PROP_SUBSCRIPTION_ID);
    cr_assert_eq(want->present & ~special, got->present & ~special);
    cr_assert_eq(want->payload_format, got->payload_format);
    cr_assert_eq(want->request_problem_info, got->request_problem_info);
    cr_assert_eq(want->request_response_info, got->request_response_info);
    cr_assert_eq(want->max_qos, got->max_qos);
    cr_assert_eq(want->retain_available, got->retain_available);
    cr_assert_eq(want->wildcard_sub_available, got->wildcard_sub_available);
    cr_assert_eq(want->sub_id_available, got->sub_id_available);
    cr_assert_eq(want->shared_sub_available, got->shared_sub_available);
    cr_assert_eq(want->server_keepalive, got->server_keepalive);
    cr_assert_eq(want->receive_max, got->receive_max);
    cr_assert_eq(want->topic_alias_max, got->topic_alias_max);
    cr_assert_eq(want->topic_alias, got->topic_alias);
    cr_assert_eq(want->message_expiry, got->message_expiry);
    cr_assert_eq(want->session_expiry, got->session_expiry);
    cr_assert_eq(want->will_delay, got->will_delay);
    cr_assert_eq(want->max_packet_size, got->max_packet_size);
    cr_assert(slice_eq(want->content_type, got->content_type));
    cr_assert(slice_eq(want->response_topic, got->response_topic));
    cr_assert(slice_eq(want->correlation_data, got->correlation_data));
    cr_assert(slice_eq(want->assigned_client_id, got->assigned_client_id));
    cr_assert(slice_eq(want->auth_method, got->auth_method));
    cr_assert(slice_eq(want->auth_data, got->auth_data));
    cr_assert(slice_eq(want->response_info, got->response_info));
    cr_assert(slice_eq(want->server_reference, got->server_reference));
    cr_assert(slice_eq(want->reason_string, got->reason_string));

    uint32_t want_ids[SUB_IDS_MAX], got_ids[SUB_IDS_MAX];
    uint32_t want_count = 0;
    if (want->sub_ids != NULL) {
        want_count = want->sub_id_count;
        memcpy(want_ids, want->sub_ids, want_count * sizeof(uint32_t));
    } else if (mqtt_props_has(want, MQTT_PROP_SUBSCRIPTION_ID)) {
        want_count = 1;
        want_ids[0] = want->sub_id;
    }
    cr_assert_eq(got->sub_id_count, want_count);
    cr_assert_eq(sub_ids_collect(got->raw, got_ids), want_count);
    for (uint32_t i = 0; i < want_count; i++)
        cr_assert_eq(got_ids[i], want_ids[i]);
    if (want_count > 0)
        cr_assert_eq(got->sub_id, want_ids[0]);

    uint32_t want_pos = 0, got_pos = 0, count = 0;
    struct slice wk, wv, gk, gv;
    while (codec_user_prop_next(want->user_props_raw, &want_pos, &wk, &wv)) {
        cr_assert(codec_user_prop_next(got->raw, &got_pos, &gk, &gv));
        cr_assert(slice_eq(wk, gk));
        cr_assert(slice_eq(wv, gv));
        count++;
    }
    cr_assert_not(codec_user_prop_next(got->raw, &got_pos, &gk, &gv));
    cr_assert_eq(got->user_prop_count, count);
}

/* Makes a decoded property set encodable again (user properties and every sub id). */
static void props_prepare(struct mqtt_props *p, uint32_t *ids)
{
    p->user_props_raw = p->raw;
    if (p->sub_id_count > 1) {
        p->sub_ids = ids;
        sub_ids_collect(p->raw, ids);
    }
}

static struct mqtt_props *packet_props(struct mqtt_packet *pkt)
{
    switch (pkt->type) {
    case MQTT_CONNECT: return &pkt->connect.props;
    case MQTT_CONNACK: return &pkt->connack.props;
    case MQTT_PUBLISH: return &pkt->publish.props;
    case MQTT_PUBACK: case MQTT_PUBREC: case MQTT_PUBREL: case MQTT_PUBCOMP:
        return &pkt->ack.props;
    case MQTT_SUBSCRIBE: case MQTT_UNSUBSCRIBE: return &pkt->subscribe.props;
    case MQTT_SUBACK: case MQTT_UNSUBACK: return &pkt->suback.props;
    case MQTT_DISCONNECT: case MQTT_AUTH: return &pkt->reason.props;
    default: return NULL;
    }
}

/* Encodes `in`, decodes it into `out`, re-encodes `out` and checks the bytes are identical.
 * Returns the encoded length. `out` borrows from frame_first. */
static uint32_t round_trip(const struct mqtt_packet *in, uint8_t version, struct mqtt_packet *out)
{
    frames_free();
    uint32_t len, len2;
    frame_first = encode_exact(in, version, &len);
    enum mqtt_rc rc = codec_decode(frame_first, len, version, out);
    cr_assert_eq(rc, MQTT_RC_SUCCESS, "type %u v%u decode rc 0x%02x", in->type, version, rc);
    cr_assert_eq(out->type, in->type);

    struct mqtt_packet again = *out;
    static uint32_t ids_a[SUB_IDS_MAX], ids_b[SUB_IDS_MAX];
    struct mqtt_props *props = packet_props(&again);
    if (props != NULL)
        props_prepare(props, ids_a);
    if (again.type == MQTT_CONNECT)
        props_prepare(&again.connect.will.props, ids_b);
    frame_second = encode_exact(&again, version, &len2);
    cr_assert_eq(len2, len);
    cr_assert_eq(memcmp(frame_first, frame_second, len), 0);
    return len;
}

static struct slice user_props_build(uint8_t *out, const char *const *pairs, uint32_t count)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < count; i++) {
        struct slice key = S(pairs[2 * i]), value = S(pairs[2 * i + 1]);
        out[n++] = MQTT_PROP_USER_PROPERTY;
        out[n++] = (uint8_t)(key.len >> 8);
        out[n++] = (uint8_t)key.len;
        memcpy(out + n, key.ptr, key.len);
        n += key.len;
        out[n++] = (uint8_t)(value.len >> 8);
        out[n++] = (uint8_t)value.len;
        memcpy(out + n, value.ptr, value.len);
        n += value.len;
    }
    return (struct slice){ out, n };
}

/* ---- varints and framing ---- */

Test(codec, varint_edges_encode_and_frame)
{
    static const struct {
        uint32_t value;
        uint32_t size;
        uint8_t bytes[4];
    } edges[] = {
        { 0, 1, { 0x00 } },
        { 127, 1, { 0x7F } },
        { 128, 2, { 0x80, 0x01 } },
        { 16383, 2, { 0xFF, 0x7F } },
        { 16384, 3, { 0x80, 0x80, 0x01 } },
        { 2097151, 3, { 0xFF, 0xFF, 0x7F } },
        { 2097152, 4, { 0x80, 0x80, 0x80, 0x01 } },
        { 268435455, 4, { 0xFF, 0xFF, 0xFF, 0x7F } },
    };
    for (size_t i = 0; i < ARRAY_LEN(edges); i++) {
        uint8_t header[5] = { 0x30 };
        cr_assert_eq(codec_varint_size(edges[i].value), edges[i].size);
        cr_assert_eq(codec_varint_encode(edges[i].value, header + 1), edges[i].size);
        cr_assert_eq(memcmp(header + 1, edges[i].bytes, edges[i].size), 0);
        uint32_t frame_len = 0;
        cr_assert_eq(codec_frame(header, 1 + edges[i].size, &frame_len), 1 + edges[i].size);
        cr_assert_eq(frame_len, 1 + edges[i].size + edges[i].value);
    }
}

Test(codec, varint_of_five_bytes_is_malformed)
{
    uint8_t header[] = { 0x30, 0x80, 0x80, 0x80, 0x80, 0x01 }; /* PUBLISH, 5 length bytes */
    uint32_t frame_len = 0;
    cr_assert_eq(codec_frame(header, sizeof(header), &frame_len), -MQTT_RC_MALFORMED);
    cr_assert_eq(codec_frame(header, 5, &frame_len), -MQTT_RC_MALFORMED);
}

Test(codec, frame_needs_more_bytes_at_each_header_prefix)
{
    uint8_t header[] = { 0x30, 0xFF, 0xFF, 0xFF, 0x7F }; /* PUBLISH, remaining 268435455 */
    uint32_t frame_len = 0;
    for (uint32_t len = 0; len < sizeof(header); len++)
        cr_assert_eq(codec_frame(header, len, &frame_len), 0, "prefix %u", len);
    cr_assert_eq(codec_frame(header, sizeof(header), &frame_len), 5);
    cr_assert_eq(frame_len, 5 + 268435455u);

    uint8_t three[] = { 0x30, 0x80, 0x01 }; /* PUBLISH, remaining 128 */
    for (uint32_t len = 0; len < sizeof(three); len++)
        cr_assert_eq(codec_frame(three, len, &frame_len), 0, "prefix %u", len);
    cr_assert_eq(codec_frame(three, sizeof(three), &frame_len), 3);
    cr_assert_eq(frame_len, 131);
}

Test(codec, frame_reports_whole_length_before_the_body_arrives)
{
    uint8_t header[] = { 0x32, 0x0A }; /* PUBLISH QoS 1, remaining 10, body not yet here */
    uint32_t frame_len = 0;
    cr_assert_eq(codec_frame(header, sizeof(header), &frame_len), 2);
    cr_assert_eq(frame_len, 12);
}

Test(codec, frame_of_packet_type_zero_is_malformed)
{
    uint8_t header[] = { 0x00 }; /* type 0 is reserved */
    uint32_t frame_len = 0;
    cr_assert_eq(codec_frame(header, sizeof(header), &frame_len), -MQTT_RC_MALFORMED);
}

Test(codec, non_minimal_remaining_length_is_accepted)
{
    uint8_t frame[] = { 0xC0, 0x80, 0x00 }; /* PINGREQ, remaining length 0 in two bytes */
    struct mqtt_packet pkt;
    uint32_t frame_len = 0;
    cr_assert_eq(codec_frame(frame, sizeof(frame), &frame_len), 3);
    cr_assert_eq(frame_len, 3);
    cr_assert_eq(codec_decode(frame, sizeof(frame), MQTT_V311, &pkt), MQTT_RC_SUCCESS);
    cr_assert_eq(pkt.type, MQTT_PINGREQ);
}

/* ---- byte fixtures ---- */

Test(codec, fixture_connect_v311_decodes)
{
    static const uint8_t frame[] = {
        0x10, 29,                       /* CONNECT, remaining length 29 */
        0x00, 0x04, 'M', 'Q', 'T', 'T', /* protocol name "MQTT" */
        0x04,                           /* level 4: 3.1.1 */
        0xEE,                           /* user, password, will retain, will QoS 1, will, clean */
        0x00, 0x3C,                     /* keepalive 60 s */
        0x00, 0x02, 'c', '1',           /* client id "c1" */
        0x00, 0x03, 'w', '/', 't',      /* will topic "w/t" */
        0x00, 0x01, 'x',                /* will payload "x" */
        0x00, 0x01, 'u',                /* username "u" */
        0x00, 0x02, 'p', 'w',           /* password "pw" */
    };
    struct mqtt_packet pkt;
    cr_assert_eq(codec_decode(frame, sizeof(frame), 0, &pkt), MQTT_RC_SUCCESS);
    const struct mqtt_connect *c = &pkt.connect;
    cr_assert_eq(pkt.type, MQTT_CONNECT);
    cr_assert_eq(c->version, MQTT_V311);
    cr_assert(slice_eq(c->protocol_name, S("MQTT")));
    cr_assert(c->clean_start && c->has_will && c->has_username && c->has_password);
    cr_assert_eq(c->keepalive_s, 60);
    cr_assert_eq(c->will.qos, 1);
    cr_assert(c->will.retain);
    cr_assert(slice_eq(c->client_id, S("c1")));
    cr_assert(slice_eq(c->will.topic, S("w/t")));
    cr_assert(slice_eq(c->will.payload, S("x")));
    cr_assert(slice_eq(c->username, S("u")));
    cr_assert(slice_eq(c->password, S("pw")));
}

Test(codec, fixture_connect_v31_decodes)
{
    static const uint8_t frame[] = {
        0x10, 15,                                 /* CONNECT, remaining length 15 */
        0x00, 0x06, 'M', 'Q', 'I', 's', 'd', 'p', /* protocol name "MQIsdp" */
        0x03,                                     /* level 3: 3.1 */
        0x00,                                     /* flags: none */
        0x00, 0x0A,                               /* keepalive 10 s */
        0x00, 0x01, 'a',                          /* client id "a" */
    };
    struct mqtt_packet pkt;
    cr_assert_eq(codec_decode(frame, sizeof(frame), 0, &pkt), MQTT_RC_SUCCESS);
    cr_assert_eq(pkt.connect.version, MQTT_V31);
    cr_assert_not(pkt.connect.clean_start);
    cr_assert(slice_eq(pkt.connect.client_id, S("a")));
}

Test(codec, fixture_publish_v5_decodes_zero_copy)
{
    static const uint8_t frame[] = {
        0x3B, 23,                   /* PUBLISH, DUP, QoS 1, RETAIN; remaining length 23 */
        0x00, 0x03, 'a', '/', 'b',  /* topic "a/b" */
        0x12, 0x34,                 /* packet id 0x1234 */
        12,                         /* property length 12 */
        0x01, 0x01,                 /* payload format: UTF-8 */
        0x0B, 0x81, 0x01,           /* subscription id 129 (two-byte varint) */
        0x26, 0x00, 0x01, 'k', 0x00, 0x01, 'v', /* user property k=v */
        'h', 'i', '!',              /* payload */
    };
    struct mqtt_packet pkt;
    cr_assert_eq(codec_decode(frame, sizeof(frame), MQTT_V5, &pkt), MQTT_RC_SUCCESS);
    const struct mqtt_publish *p = &pkt.publish;
    cr_assert(p->dup && p->retain);
    cr_assert_eq(p->qos, 1);
    cr_assert_eq(p->packet_id, 0x1234);
    cr_assert_eq(p->topic.ptr, frame + 4); /* borrows from the frame */
    cr_assert_eq(p->payload.ptr, frame + 22);
    cr_assert_eq(p->payload.len, 3);
    cr_assert_eq(p->props.payload_format, 1);
    cr_assert_eq(p->props.sub_id, 129);
    cr_assert_eq(p->props.sub_id_count, 1);
    cr_assert_eq(p->props.user_prop_count, 1);
    cr_assert_eq(p->props.raw.len, 12);
    struct slice key, value;
    uint32_t pos = 0;
    cr_assert(codec_user_prop_next(p->props.raw, &pos, &key, &value));
    cr_assert(slice_eq(key, S("k")) && slice_eq(value, S("v")));
    cr_assert_not(codec_user_prop_next(p->props.raw, &pos, &key, &value));
}

Test(codec, fixture_subscribe_v5_walks_entries)
{
    static const uint8_t frame[] = {
        0x82, 15,                       /* SUBSCRIBE, remaining length 15 */
        0x00, 0x07,                     /* packet id 7 */
        0x02, 0x0B, 0x05,               /* properties: subscription id 5 */
        0x00, 0x03, 'a', '/', '+',      /* filter "a/+" */
        0x2D,                           /* retain handling 2, RAP, no local, QoS 1 */
        0x00, 0x01, '#',                /* filter "#" */
        0x02,                           /* QoS 2 */
    };
    struct mqtt_packet pkt;
    cr_assert_eq(codec_decode(frame, sizeof(frame), MQTT_V5, &pkt), MQTT_RC_SUCCESS);
    const struct mqtt_subscribe *s = &pkt.subscribe;
    cr_assert_eq(s->packet_id, 7);
    cr_assert_eq(s->props.sub_id, 5);
    cr_assert_eq(s->count, 2);
    uint32_t pos = 0;
    struct slice filter;
    uint8_t options;
    cr_assert(codec_sub_next(s->entries, &pos, &filter, &options));
    cr_assert(slice_eq(filter, S("a/+")));
    cr_assert_eq(options, 0x2D);
    cr_assert(codec_sub_next(s->entries, &pos, &filter, &options));
    cr_assert(slice_eq(filter, S("#")));
    cr_assert_eq(options, 0x02);
    cr_assert_not(codec_sub_next(s->entries, &pos, &filter, &options));
}

Test(codec, fixture_connack_v5_encodes_exact_bytes)
{
    static const uint8_t want[] = {
        0x20, 0x08,             /* CONNACK, remaining length 8 */
        0x01,                   /* session present */
        0x00,                   /* reason: success */
        0x05,                   /* property length 5 */
        0x21, 0x00, 0x14,       /* receive maximum 20 */
        0x24, 0x01,             /* maximum QoS 1 */
    };
    struct mqtt_packet pkt = { .type = MQTT_CONNACK };
    pkt.connack.session_present = true;
    pkt.connack.props.present = PROP_BIT(MQTT_PROP_RECEIVE_MAX) | PROP_BIT(MQTT_PROP_MAX_QOS);
    pkt.connack.props.receive_max = 20;
    pkt.connack.props.max_qos = 1;
    uint8_t out[sizeof(want)];
    cr_assert_eq(codec_size(&pkt, MQTT_V5), sizeof(want));
    cr_assert_eq(codec_encode(&pkt, MQTT_V5, out), sizeof(want));
    cr_assert_eq(memcmp(out, want, sizeof(want)), 0);
}

Test(codec, v5_ack_disconnect_auth_short_forms_decode)
{
    static const uint8_t puback[] = { 0x40, 0x02, 0x00, 0x09 };      /* packet id 9, no rc */
    static const uint8_t pubrec[] = { 0x50, 0x03, 0x00, 0x09, 0x10 }; /* rc only: 0x10 */
    static const uint8_t disconnect0[] = { 0xE0, 0x00 };             /* rc 0, no props */
    static const uint8_t disconnect1[] = { 0xE0, 0x01, 0x04 };       /* rc 0x04 only */
    static const uint8_t auth0[] = { 0xF0, 0x00 };                   /* AUTH: rc 0 */
    struct mqtt_packet pkt;
    cr_assert_eq(codec_decode(puback, sizeof(puback), MQTT_V5, &pkt), MQTT_RC_SUCCESS);
    cr_assert_eq(pkt.ack.packet_id, 9);
    cr_assert_eq(pkt.ack.rc, 0);
    cr_assert_eq(codec_decode(pubrec, sizeof(pubrec), MQTT_V5, &pkt), MQTT_RC_SUCCESS);
    cr_assert_eq(pkt.ack.rc, 0x10);
    cr_assert_eq(pkt.ack.props.present, 0);
    cr_assert_eq(codec_decode(disconnect0, 2, MQTT_V5, &pkt), MQTT_RC_SUCCESS);
    cr_assert_eq(pkt.reason.rc, 0);
    cr_assert_eq(codec_decode(disconnect1, 3, MQTT_V5, &pkt), MQTT_RC_SUCCESS);
    cr_assert_eq(pkt.reason.rc, MQTT_RC_DISCONNECT_WITH_WILL);
    cr_assert_eq(codec_decode(auth0, 2, MQTT_V5, &pkt), MQTT_RC_SUCCESS);
    cr_assert_eq(pkt.type, MQTT_AUTH);
}

/* ---- round trips ---- */

static void connect_check(const struct mqtt_connect *want, const struct mqtt_connect *got)
{
    cr_assert_eq(got->version, want->version);
    cr_assert(slice_eq(got->protocol_name, S(want->version == MQTT_V31 ? "MQIsdp" : "MQTT")));
    cr_assert_eq(got->clean_start, want->clean_start);
    cr_assert_eq(got->has_will, want->has_will);
    cr_assert_eq(got->has_username, want->has_username);
    cr_assert_eq(got->has_password, want->has_password);
    cr_assert_eq(got->keepalive_s, want->keepalive_s);
    cr_assert(slice_eq(got->client_id, want->client_id));
    cr_assert(slice_eq(got->username, want->username));
    cr_assert(slice_eq(got->password, want->password));
    cr_assert_eq(got->will.qos, want->will.qos);
    cr_assert_eq(got->will.retain, want->will.retain);
    cr_assert(slice_eq(got->will.topic, want->will.topic));
    cr_assert(slice_eq(got->will.payload, want->will.payload));
    assert_props_eq(&want->props, &got->props);
    assert_props_eq(&want->will.props, &got->will.props);
}

Test(codec, connect_round_trips_plain_in_every_version)
{
    for (size_t i = 0; i < ARRAY_LEN(all_versions); i++) {
        struct mqtt_packet in = { .type = MQTT_CONNECT }, out;
        in.connect.version = all_versions[i];
        in.connect.clean_start = true;
        in.connect.keepalive_s = 30;
        in.connect.client_id = S("plain-client");
        round_trip(&in, all_versions[i], &out);
        connect_check(&in.connect, &out.connect);
    }
}

Test(codec, connect_round_trips_with_will_username_password_in_every_version)
{
    for (size_t i = 0; i < ARRAY_LEN(all_versions); i++) {
        struct mqtt_packet in = { .type = MQTT_CONNECT }, out;
        struct mqtt_connect *c = &in.connect;
        c->version = all_versions[i];
        c->keepalive_s = 65535;
        c->client_id = S("");
        c->has_will = true;
        c->will.qos = 2;
        c->will.retain = true;
        c->will.topic = S("clients/gone");
        c->will.payload = (struct slice){ (const uint8_t *)"\0\1\2", 3 };
        c->has_username = c->has_password = true;
        c->username = S("user");
        c->password = (struct slice){ (const uint8_t *)"\xff\x00pw", 4 };
        round_trip(&in, all_versions[i], &out);
        connect_check(c, &out.connect);
    }
}

Test(codec, connect_v5_round_trips_every_connect_and_will_property)
{
    uint8_t user_buf[64], will_user_buf[64];
    static const char *const pairs[] = { "a", "1", "b", "2" };
    static const char *const will_pairs[] = { "w", "x" };
    struct mqtt_packet in = { .type = MQTT_CONNECT }, out;
    struct mqtt_connect *c = &in.connect;
    c->version = MQTT_V5;
    c->client_id = S("v5");
    struct mqtt_props *p = &c->props;
    p->present = PROP_BIT(MQTT_PROP_SESSION_EXPIRY) | PROP_BIT(MQTT_PROP_RECEIVE_MAX) |
                 PROP_BIT(MQTT_PROP_MAX_PACKET_SIZE) | PROP_BIT(MQTT_PROP_TOPIC_ALIAS_MAX) |
                 PROP_BIT(MQTT_PROP_REQUEST_RESPONSE_INFO) |
                 PROP_BIT(MQTT_PROP_REQUEST_PROBLEM_INFO) | PROP_BIT(MQTT_PROP_AUTH_METHOD) |
                 PROP_BIT(MQTT_PROP_AUTH_DATA);
    p->session_expiry = 0xFFFFFFFF;
    p->receive_max = 65535;
    p->max_packet_size = 1048576;
    p->topic_alias_max = 0;
    p->request_response_info = 1;
    p->request_problem_info = 0;
    p->auth_method = S("SCRAM-SHA-256");
    p->auth_data = (struct slice){ (const uint8_t *)"\x00\x01", 2 };
    p->user_props_raw = user_props_build(user_buf, pairs, 2);
    c->has_will = true;
    c->will.qos = 1;
    c->will.topic = S("will/topic");
    c->will.payload = S("gone");
    struct mqtt_props *w = &c->will.props;
    w->present = PROP_BIT(MQTT_PROP_WILL_DELAY) | PROP_BIT(MQTT_PROP_PAYLOAD_FORMAT) |
                 PROP_BIT(MQTT_PROP_MESSAGE_EXPIRY) | PROP_BIT(MQTT_PROP_CONTENT_TYPE) |
                 PROP_BIT(MQTT_PROP_RESPONSE_TOPIC) | PROP_BIT(MQTT_PROP_CORRELATION_DATA);
    w->will_delay = 30;
    w->payload_format = 1;
    w->message_expiry = 3600;
    w->content_type = S("text/plain");
    w->response_topic = S("reply/here");
    w->correlation_data = S("corr");
    w->user_props_raw = user_props_build(will_user_buf, will_pairs, 1);
    round_trip(&in, MQTT_V5, &out);
    connect_check(c, &out.connect);
}

Test(codec, connect_v5_password_without_username_round_trips)
{
    struct mqtt_packet in = { .type = MQTT_CONNECT }, out;
    in.connect.version = MQTT_V5;
    in.connect.client_id = S("c");
    in.connect.has_password = true;
    in.connect.password = S("token");
    round_trip(&in, MQTT_V5, &out);
    connect_check(&in.connect, &out.connect);
    in.connect.version = MQTT_V311; /* not allowed before 5.0 */
    cr_assert_eq(codec_size(&in, MQTT_V311), 0);
}

Test(codec, connack_round_trips_in_every_version)
{
    for (size_t i = 0; i < ARRAY_LEN(all_versions); i++) {
        uint8_t v = all_versions[i];
        struct mqtt_packet in = { .type = MQTT_CONNACK }, out;
        in.connack.session_present = true;
        cr_assert_eq(round_trip(&in, v, &out), v == MQTT_V5 ? 5 : 4);
        cr_assert(out.connack.session_present);
        in.connack.session_present = false;
        in.connack.rc = v == MQTT_V5 ? MQTT_RC_NOT_AUTHORIZED : MQTT_V3_NOT_AUTHORIZED;
        round_trip(&in, v, &out);
        cr_assert_eq(out.connack.rc, in.connack.rc);
    }
}

Test(codec, connack_v5_round_trips_every_connack_property)
{
    uint8_t user_buf[64];
    static const char *const pairs[] = { "region", "eu" };
    struct mqtt_packet in = { .type = MQTT_CONNACK }, out;
    struct mqtt_props *p = &in.connack.props;
    p->present = PROP_BIT(MQTT_PROP_SESSION_EXPIRY) | PROP_BIT(MQTT_PROP_RECEIVE_MAX) |
                 PROP_BIT(MQTT_PROP_MAX_QOS) | PROP_BIT(MQTT_PROP_RETAIN_AVAILABLE) |
                 PROP_BIT(MQTT_PROP_MAX_PACKET_SIZE) | PROP_BIT(MQTT_PROP_ASSIGNED_CLIENT_ID) |
                 PROP_BIT(MQTT_PROP_TOPIC_ALIAS_MAX) | PROP_BIT(MQTT_PROP_REASON_STRING) |
                 PROP_BIT(MQTT_PROP_WILDCARD_SUB_AVAILABLE) |
                 PROP_BIT(MQTT_PROP_SUB_ID_AVAILABLE) | PROP_BIT(MQTT_PROP_SHARED_SUB_AVAILABLE) |
                 PROP_BIT(MQTT_PROP_SERVER_KEEPALIVE) | PROP_BIT(MQTT_PROP_RESPONSE_INFO) |
                 PROP_BIT(MQTT_PROP_SERVER_REFERENCE) | PROP_BIT(MQTT_PROP_AUTH_METHOD) |
                 PROP_BIT(MQTT_PROP_AUTH_DATA);
    p->session_expiry = 120;
    p->receive_max = 1;
    p->max_qos = 1;
    p->retain_available = 0;
    p->max_packet_size = 268435460;
    p->assigned_client_id = S("auto-1234");
    p->topic_alias_max = 10;
    p->reason_string = S("welcome");
    p->wildcard_sub_available = 1;
    p->sub_id_available = 0;
    p->shared_sub_available = 1;
    p->server_keepalive = 15;
    p->response_info = S("resp/base");
    p->server_reference = S("other.example:1883");
    p->auth_method = S("PLAIN");
    p->auth_data = S("ok");
    p->user_props_raw = user_props_build(user_buf, pairs, 1);
    round_trip(&in, MQTT_V5, &out);
    assert_props_eq(p, &out.connack.props);
}

static void publish_check(const struct mqtt_publish *want, const struct mqtt_publish *got)
{
    cr_assert_eq(got->qos, want->qos);
    cr_assert_eq(got->dup, want->dup);
    cr_assert_eq(got->retain, want->retain);
    cr_assert_eq(got->packet_id, want->packet_id);
    cr_assert(slice_eq(got->topic, want->topic));
    cr_assert(slice_eq(got->payload, want->payload));
    assert_props_eq(&want->props, &got->props);
}

Test(codec, publish_round_trips_each_qos_in_every_version)
{
    for (size_t i = 0; i < ARRAY_LEN(all_versions); i++) {
        for (uint8_t qos = 0; qos <= 2; qos++) {
            struct mqtt_packet in = { .type = MQTT_PUBLISH }, out;
            in.publish.qos = qos;
            in.publish.dup = qos > 0;
            in.publish.retain = qos == 1;
            in.publish.packet_id = qos > 0 ? 65535 : 0;
            in.publish.topic = S("sensors/room-1/temp");
            in.publish.payload = qos == 2 ? S("") : S("21.5");
            round_trip(&in, all_versions[i], &out);
            publish_check(&in.publish, &out.publish);
        }
    }
}

Test(codec, publish_v5_round_trips_with_properties_each_qos)
{
    uint8_t user_buf[128];
    static const char *const pairs[] = { "z", "last?", "a", "first?", "a", "dup key" };
    for (uint8_t qos = 0; qos <= 2; qos++) {
        struct mqtt_packet in = { .type = MQTT_PUBLISH }, out;
        struct mqtt_publish *p = &in.publish;
        p->qos = qos;
        p->packet_id = qos > 0 ? 1 : 0;
        p->topic = S("");
        p->payload = S("{\"t\":1}");
        p->props.present = PROP_BIT(MQTT_PROP_PAYLOAD_FORMAT) |
                           PROP_BIT(MQTT_PROP_MESSAGE_EXPIRY) | PROP_BIT(MQTT_PROP_TOPIC_ALIAS) |
                           PROP_BIT(MQTT_PROP_RESPONSE_TOPIC) |
                           PROP_BIT(MQTT_PROP_CORRELATION_DATA) |
                           PROP_BIT(MQTT_PROP_CONTENT_TYPE) | PROP_BIT(MQTT_PROP_SUBSCRIPTION_ID);
        p->props.payload_format = 1;
        p->props.message_expiry = 60;
        p->props.topic_alias = 3; /* empty topic: the alias names it */
        p->props.response_topic = S("reply/1");
        p->props.correlation_data = S("id-42");
        p->props.content_type = S("application/json");
        p->props.sub_id = MQTT_SUB_ID_MAX;
        p->props.user_props_raw = user_props_build(user_buf, pairs, 3);
        round_trip(&in, MQTT_V5, &out);
        publish_check(p, &out.publish);
        cr_assert_eq(out.publish.props.user_prop_count, 3);
    }
}

Test(codec, user_properties_keep_their_order)
{
    uint8_t user_buf[256];
    static const char *const pairs[] = { "3", "c", "1", "a", "2", "b", "1", "again" };
    struct mqtt_packet in = { .type = MQTT_PUBACK }, out;
    in.ack.packet_id = 5;
    in.ack.props.user_props_raw = user_props_build(user_buf, pairs, 4);
    round_trip(&in, MQTT_V5, &out);
    uint32_t pos = 0;
    struct slice key, value;
    for (uint32_t i = 0; i < 4; i++) {
        cr_assert(codec_user_prop_next(out.ack.props.raw, &pos, &key, &value));
        cr_assert(slice_eq(key, S(pairs[2 * i])));
        cr_assert(slice_eq(value, S(pairs[2 * i + 1])));
    }
    cr_assert_not(codec_user_prop_next(out.ack.props.raw, &pos, &key, &value));
}

Test(codec, server_publish_carries_several_subscription_ids)
{
    static const uint32_t ids[] = { 1, 127, 128, 16384, MQTT_SUB_ID_MAX };
    struct mqtt_packet in = { .type = MQTT_PUBLISH }, out;
    in.publish.qos = 1;
    in.publish.packet_id = 77;
    in.publish.topic = S("a/b");
    in.publish.payload = S("x");
    in.publish.props.sub_ids = ids;
    in.publish.props.sub_id_count = ARRAY_LEN(ids);
    round_trip(&in, MQTT_V5, &out);
    cr_assert_eq(out.publish.props.sub_id_count, ARRAY_LEN(ids));
    cr_assert_eq(out.publish.props.sub_id, 1);
    publish_check(&in.publish, &out.publish);
    /* SUBSCRIBE allows only one. */
    struct mqtt_packet sub = { .type = MQTT_SUBSCRIBE };
    sub.subscribe.packet_id = 1;
    sub.subscribe.entries = (struct slice){ (const uint8_t *)"\0\1a\0", 4 };
    sub.subscribe.props.sub_ids = ids;
    sub.subscribe.props.sub_id_count = 2;
    cr_assert_eq(codec_size(&sub, MQTT_V5), 0);
}

Test(codec, acks_round_trip_in_every_version_and_form)
{
    static const uint8_t types[] = { MQTT_PUBACK, MQTT_PUBREC, MQTT_PUBREL, MQTT_PUBCOMP };
    for (size_t t = 0; t < ARRAY_LEN(types); t++) {
        for (size_t i = 0; i < ARRAY_LEN(all_versions); i++) {
            struct mqtt_packet in = { .type = types[t] }, out;
            in.ack.packet_id = 4242;
            cr_assert_eq(round_trip(&in, all_versions[i], &out), 4);
            cr_assert_eq(out.ack.packet_id, 4242);
        }
        uint8_t rc = types[t] <= MQTT_PUBREC ? MQTT_RC_NO_MATCHING_SUBSCRIBERS
                                             : MQTT_RC_PACKET_ID_NOT_FOUND;
        struct mqtt_packet in = { .type = types[t] }, out;
        in.ack.packet_id = 1;
        in.ack.rc = rc;
        cr_assert_eq(round_trip(&in, MQTT_V5, &out), 5); /* rc, no property length */
        cr_assert_eq(out.ack.rc, rc);
        uint8_t user_buf[32];
        static const char *const pairs[] = { "k", "v" };
        in.ack.props.present = PROP_BIT(MQTT_PROP_REASON_STRING);
        in.ack.props.reason_string = S("because");
        in.ack.props.user_props_raw = user_props_build(user_buf, pairs, 1);
        round_trip(&in, MQTT_V5, &out);
        cr_assert_eq(out.ack.rc, rc);
        assert_props_eq(&in.ack.props, &out.ack.props);
        in.ack.rc = 0; /* properties force the reason code onto the wire */
        round_trip(&in, MQTT_V5, &out);
        assert_props_eq(&in.ack.props, &out.ack.props);
    }
}

/* "a/+" QoS 1, "b/#" QoS 2, "$SYS/x" QoS 0: wire-form SUBSCRIBE entries. */
static const uint8_t sub_entries_v3[] = {
    0, 3, 'a', '/', '+', 0x01,
    0, 3, 'b', '/', '#', 0x02,
    0, 6, '$', 'S', 'Y', 'S', '/', 'x', 0x00,
};
/* The same with v5 options: no local, retain as published, retain handling 1 and 2. */
static const uint8_t sub_entries_v5[] = {
    0, 3, 'a', '/', '+', 0x05,
    0, 3, 'b', '/', '#', 0x1A,
    0, 6, '$', 'S', 'Y', 'S', '/', 'x', 0x20,
};

Test(codec, subscribe_round_trips_several_filters_in_every_version)
{
    for (size_t i = 0; i < ARRAY_LEN(all_versions); i++) {
        uint8_t v = all_versions[i];
        struct mqtt_packet in = { .type = MQTT_SUBSCRIBE }, out;
        in.subscribe.packet_id = 10;
        in.subscribe.entries = v == MQTT_V5
            ? (struct slice){ sub_entries_v5, sizeof(sub_entries_v5) }
            : (struct slice){ sub_entries_v3, sizeof(sub_entries_v3) };
        if (v == MQTT_V5) {
            in.subscribe.props.present = PROP_BIT(MQTT_PROP_SUBSCRIPTION_ID);
            in.subscribe.props.sub_id = 99;
        }
        round_trip(&in, v, &out);
        cr_assert_eq(out.subscribe.packet_id, 10);
        cr_assert_eq(out.subscribe.count, 3);
        cr_assert(slice_eq(out.subscribe.entries, in.subscribe.entries));
        assert_props_eq(&in.subscribe.props, &out.subscribe.props);
    }
}

Test(codec, unsubscribe_round_trips_in_every_version)
{
    static const uint8_t entries[] = { 0, 3, 'a', '/', '+', 0, 1, '#' };
    for (size_t i = 0; i < ARRAY_LEN(all_versions); i++) {
        struct mqtt_packet in = { .type = MQTT_UNSUBSCRIBE }, out;
        in.subscribe.packet_id = 11;
        in.subscribe.entries = (struct slice){ entries, sizeof(entries) };
        round_trip(&in, all_versions[i], &out);
        cr_assert_eq(out.subscribe.count, 2);
        uint32_t pos = 0;
        struct slice filter;
        cr_assert(codec_sub_next(out.subscribe.entries, &pos, &filter, NULL));
        cr_assert(slice_eq(filter, S("a/+")));
        cr_assert(codec_sub_next(out.subscribe.entries, &pos, &filter, NULL));
        cr_assert(slice_eq(filter, S("#")));
        cr_assert_not(codec_sub_next(out.subscribe.entries, &pos, &filter, NULL));
    }
}

Test(codec, suback_and_unsuback_round_trip_in_every_version)
{
    static const uint8_t rcs_v3[] = { 0x00, 0x01, 0x02, 0x80 };
    static const uint8_t rcs_v5[] = { 0x00, 0x02, 0x8F, 0xA2 };
    static const uint8_t unsub_v5[] = { 0x00, 0x11 };
    for (size_t i = 0; i < ARRAY_LEN(all_versions); i++) {
        uint8_t v = all_versions[i];
        struct mqtt_packet in = { .type = MQTT_SUBACK }, out;
        in.suback.packet_id = 12;
        in.suback.rcs = v == MQTT_V5 ? (struct slice){ rcs_v5, 4 } : (struct slice){ rcs_v3, 4 };
        if (v == MQTT_V5) {
            in.suback.props.present = PROP_BIT(MQTT_PROP_REASON_STRING);
            in.suback.props.reason_string = S("partly");
        }
        round_trip(&in, v, &out);
        cr_assert(slice_eq(out.suback.rcs, in.suback.rcs));
        assert_props_eq(&in.suback.props, &out.suback.props);

        struct mqtt_packet un = { .type = MQTT_UNSUBACK };
        un.suback.packet_id = 13;
        un.suback.rcs = (struct slice){ unsub_v5, 2 };
        cr_assert_eq(round_trip(&un, v, &out), v == MQTT_V5 ? 7 : 4);
        cr_assert_eq(out.suback.packet_id, 13);
        cr_assert_eq(out.suback.rcs.len, v == MQTT_V5 ? 2 : 0);
    }
}

Test(codec, ping_and_disconnect_round_trip_in_every_version)
{
    static const uint8_t types[] = { MQTT_PINGREQ, MQTT_PINGRESP, MQTT_DISCONNECT };
    for (size_t t = 0; t < ARRAY_LEN(types); t++) {
        for (size_t i = 0; i < ARRAY_LEN(all_versions); i++) {
            struct mqtt_packet in = { .type = types[t] }, out;
            cr_assert_eq(round_trip(&in, all_versions[i], &out), 2);
            cr_assert_eq(frame_first[0], types[t] << 4);
            cr_assert_eq(frame_first[1], 0);
        }
    }
}

Test(codec, disconnect_v5_round_trips_with_reason_and_properties)
{
    uint8_t user_buf[32];
    static const char *const pairs[] = { "why", "maintenance" };
    struct mqtt_packet in = { .type = MQTT_DISCONNECT }, out;
    in.reason.rc = MQTT_RC_SERVER_SHUTTING_DOWN;
    cr_assert_eq(round_trip(&in, MQTT_V5, &out), 3);
    cr_assert_eq(out.reason.rc, MQTT_RC_SERVER_SHUTTING_DOWN);
    in.reason.rc = MQTT_RC_USE_ANOTHER_SERVER;
    in.reason.props.present = PROP_BIT(MQTT_PROP_SESSION_EXPIRY) |
                              PROP_BIT(MQTT_PROP_REASON_STRING) |
                              PROP_BIT(MQTT_PROP_SERVER_REFERENCE);
    in.reason.props.session_expiry = 0;
    in.reason.props.reason_string = S("moving");
    in.reason.props.server_reference = S("b.example");
    in.reason.props.user_props_raw = user_props_build(user_buf, pairs, 1);
    round_trip(&in, MQTT_V5, &out);
    cr_assert_eq(out.reason.rc, MQTT_RC_USE_ANOTHER_SERVER);
    assert_props_eq(&in.reason.props, &out.reason.props);
}

Test(codec, auth_round_trips_on_v5_only)
{
    struct mqtt_packet in = { .type = MQTT_AUTH }, out;
    cr_assert_eq(round_trip(&in, MQTT_V5, &out), 2);
    in.reason.rc = MQTT_RC_CONTINUE_AUTH;
    in.reason.props.present = PROP_BIT(MQTT_PROP_AUTH_METHOD) | PROP_BIT(MQTT_PROP_AUTH_DATA) |
                              PROP_BIT(MQTT_PROP_REASON_STRING);
    in.reason.props.auth_method = S("SCRAM-SHA-1");
    in.reason.props.auth_data = S("client-first");
    in.reason.props.reason_string = S("step 2");
    round_trip(&in, MQTT_V5, &out);
    cr_assert_eq(out.reason.rc, MQTT_RC_CONTINUE_AUTH);
    assert_props_eq(&in.reason.props, &out.reason.props);
    cr_assert_eq(codec_size(&in, MQTT_V311), 0);
    cr_assert_eq(codec_size(&in, MQTT_V31), 0);
}

Test(codec, topic_of_65535_bytes_round_trips_and_65536_cannot_be_encoded)
{
    uint8_t *topic = malloc(65536);
    memset(topic, 't', 65536);
    struct mqtt_packet in = { .type = MQTT_PUBLISH }, out;
    in.publish.topic = (struct slice){ topic, 65535 };
    in.publish.payload = S("p");
    cr_assert_eq(round_trip(&in, MQTT_V311, &out), 1 + 3 + 2 + 65535 + 1);
    cr_assert_eq(out.publish.topic.len, 65535);
    in.publish.topic.len = 65536;
    cr_assert_eq(codec_size(&in, MQTT_V311), 0);
    free(topic);
}

Test(codec, size_is_zero_for_packets_that_cannot_be_encoded)
{
    struct mqtt_packet pkt = { .type = MQTT_PUBLISH };
    pkt.publish.topic = S("a");
    pkt.publish.qos = 3;
    cr_assert_eq(codec_size(&pkt, MQTT_V311), 0); /* QoS 3 */
    pkt.publish.qos = 1;
    cr_assert_eq(codec_size(&pkt, MQTT_V311), 0); /* QoS 1 with packet id 0 */
    pkt.publish.packet_id = 1;
    cr_assert_gt(codec_size(&pkt, MQTT_V311), 0);
    cr_assert_eq(codec_size(&pkt, 0), 0);         /* unknown version */
    pkt.publish.topic = S("a/+");
    cr_assert_eq(codec_size(&pkt, MQTT_V311), 0); /* wildcard topic name */
    pkt.publish.topic = S("a");
    pkt.publish.props.present = PROP_BIT(MQTT_PROP_SESSION_EXPIRY);
    cr_assert_eq(codec_size(&pkt, MQTT_V5), 0);   /* property not allowed in PUBLISH */
    cr_assert_gt(codec_size(&pkt, MQTT_V311), 0); /* properties ignored before 5.0 */
    pkt.publish.props.present = PROP_BIT(MQTT_PROP_PAYLOAD_FORMAT);
    pkt.publish.props.payload_format = 2;
    cr_assert_eq(codec_size(&pkt, MQTT_V5), 0);   /* value the decoder refuses */

    struct mqtt_packet connect = { .type = MQTT_CONNECT };
    connect.connect.version = MQTT_V5;
    connect.connect.props.present = PROP_BIT(MQTT_PROP_RECEIVE_MAX);
    cr_assert_eq(codec_size(&connect, MQTT_V5), 0); /* receive maximum 0 */
    connect.connect.version = 6;
    cr_assert_eq(codec_size(&connect, MQTT_V5), 0); /* unknown level */

    struct mqtt_packet ack = { .type = MQTT_PUBREL };
    ack.ack.packet_id = 1;
    ack.ack.rc = MQTT_RC_NO_MATCHING_SUBSCRIBERS;
    cr_assert_eq(codec_size(&ack, MQTT_V5), 0);   /* not a PUBREL reason code */
    struct mqtt_packet bad_type = { .type = 0 };
    cr_assert_eq(codec_size(&bad_type, MQTT_V5), 0);
}

Test(codec, utf8_validation_follows_the_mqtt_rules)
{
    static const struct {
        const char *bytes;
        uint32_t len;
        bool is_valid;
    } cases[] = {
        { "", 0, true },
        { "plain/ascii", 11, true },
        { "\xC3\xA9", 2, true },              /* U+00E9 */
        { "\xE2\x82\xAC", 3, true },          /* U+20AC */
        { "\xF0\x9F\x98\x80", 4, true },      /* U+1F600 */
        { "\xEF\xBF\xBF", 3, true },          /* U+FFFF non-character: allowed */
        { "\x01\x1F\x7F", 3, true },          /* control characters: allowed */
        { "a\0b", 3, false },                 /* U+0000 */
        { "\xC0\x80", 2, false },             /* overlong U+0000 */
        { "\xC1\xBF", 2, false },             /* overlong */
        { "\xE0\x80\xAF", 3, false },         /* overlong */
        { "\xF0\x80\x80\xAF", 4, false },     /* overlong */
        { "\xED\xA0\x80", 3, false },         /* surrogate U+D800 */
        { "\xED\xBF\xBF", 3, false },         /* surrogate U+DFFF */
        { "\xF4\x90\x80\x80", 4, false },     /* above U+10FFFF */
        { "\xF5\x80\x80\x80", 4, false },     /* invalid lead byte */
        { "\x80", 1, false },                 /* stray continuation */
        { "\xC3", 1, false },                 /* truncated */
        { "\xE2\x82", 2, false },             /* truncated */
        { "\xE2\x28\xA1", 3, false },         /* bad continuation */
        { "\xFF", 1, false },
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct slice s = { (const uint8_t *)cases[i].bytes, cases[i].len };
        cr_assert_eq(codec_utf8_valid(s), cases[i].is_valid, "case %zu", i);
    }
}

Test(codec, size_respects_the_remaining_length_limit)
{
    /* codec_size() never reads the payload, so a fake length is enough here. */
    static const uint8_t dummy[1];
    struct mqtt_packet pkt = { .type = MQTT_PUBLISH };
    pkt.publish.topic = S("a");                       /* 3 bytes with its length */
    pkt.publish.payload = (struct slice){ dummy, MQTT_VARINT_MAX - 3 };
    cr_assert_eq(codec_size(&pkt, MQTT_V311), 1 + 4 + MQTT_VARINT_MAX);
    pkt.publish.payload.len++;
    cr_assert_eq(codec_size(&pkt, MQTT_V311), 0);
}

Test(codec, prop_next_walks_raw_values_in_wire_order)
{
    static const uint8_t frame[] = {
        0x20, 18,                           /* CONNACK, remaining length 18 */
        0x00, 0x00,                         /* flags, reason: success */
        15,                                 /* property length 15 */
        0x11, 0x00, 0x00, 0x01, 0x00,       /* session expiry 256 */
        0x26, 0x00, 0x01, 'k', 0x00, 0x01, 'v', /* user property k=v */
        0x13, 0x00, 0x05,                   /* server keepalive 5 */
    };
    struct mqtt_packet pkt;
    cr_assert_eq(codec_decode(frame, sizeof(frame), MQTT_V5, &pkt), MQTT_RC_SUCCESS);
    cr_assert_eq(pkt.connack.props.session_expiry, 256);
    cr_assert_eq(pkt.connack.props.server_keepalive, 5);
    uint32_t pos = 0;
    uint8_t id;
    struct slice value, value2;
    cr_assert(codec_prop_next(pkt.connack.props.raw, &pos, &id, &value, &value2));
    cr_assert_eq(id, MQTT_PROP_SESSION_EXPIRY);
    cr_assert_eq(value.len, 4);
    cr_assert_eq(value.ptr, frame + 6);
    cr_assert(codec_prop_next(pkt.connack.props.raw, &pos, &id, &value, &value2));
    cr_assert_eq(id, MQTT_PROP_USER_PROPERTY);
    cr_assert(slice_eq(value, S("k")) && slice_eq(value2, S("v")));
    cr_assert(codec_prop_next(pkt.connack.props.raw, &pos, &id, &value, &value2));
    cr_assert_eq(id, MQTT_PROP_SERVER_KEEPALIVE);
    cr_assert_eq(value.len, 2);
    cr_assert_eq(value.ptr[1], 5);
    cr_assert_not(codec_prop_next(pkt.connack.props.raw, &pos, &id, &value, &value2));
}

/* ---- fuzz smoke ---- */

static uint64_t fuzz_state = 0x9E3779B97F4A7C15ull;

static uint64_t fuzz_next(void)
{
    fuzz_state ^= fuzz_state << 13;
    fuzz_state ^= fuzz_state >> 7;
    fuzz_state ^= fuzz_state << 17;
    return fuzz_state;
}

/* Seeds: valid frames produced by the encoder for each version. */
static uint32_t fuzz_seeds_build(uint8_t seeds[][256], uint32_t *lens)
{
    static const char *const pairs[] = { "k", "v" };
    uint8_t user_buf[16];
    uint32_t n = 0;
    struct mqtt_packet pkts[8] = {
        { .type = MQTT_CONNECT }, { .type = MQTT_PUBLISH }, { .type = MQTT_SUBSCRIBE },
        { .type = MQTT_CONNACK }, { .type = MQTT_PUBREC }, { .type = MQTT_SUBACK },
        { .type = MQTT_UNSUBSCRIBE }, { .type = MQTT_DISCONNECT },
    };
    struct slice users = user_props_build(user_buf, pairs, 1);
    pkts[0].connect.client_id = S("fuzz");
    pkts[0].connect.has_will = pkts[0].connect.has_username = true;
    pkts[0].connect.will.topic = S("w");
    pkts[0].connect.username = S("u");
    pkts[0].connect.props.user_props_raw = users;
    pkts[1].publish.qos = 2;
    pkts[1].publish.packet_id = 3;
    pkts[1].publish.topic = S("a/b");
    pkts[1].publish.payload = S("payload");
    pkts[1].publish.props.present = PROP_BIT(MQTT_PROP_MESSAGE_EXPIRY);
    pkts[1].publish.props.user_props_raw = users;
    pkts[2].subscribe.packet_id = 4;
    pkts[2].subscribe.entries = (struct slice){ sub_entries_v3, sizeof(sub_entries_v3) };
    pkts[3].connack.props.present = PROP_BIT(MQTT_PROP_RECEIVE_MAX);
    pkts[3].connack.props.receive_max = 7;
    pkts[4].ack.packet_id = 5;
    pkts[4].ack.props.present = PROP_BIT(MQTT_PROP_REASON_STRING);
    pkts[4].ack.props.reason_string = S("r");
    pkts[5].suback.packet_id = 6;
    pkts[5].suback.rcs = S("\x01");
    pkts[6].subscribe.packet_id = 7;
    pkts[6].subscribe.entries = (struct slice){ (const uint8_t *)"\0\1#", 3 };
    for (size_t i = 0; i < ARRAY_LEN(all_versions); i++) {
        for (size_t k = 0; k < ARRAY_LEN(pkts); k++) {
            if (pkts[k].type == MQTT_CONNECT)
                pkts[k].connect.version = all_versions[i];
            uint32_t size = codec_size(&pkts[k], all_versions[i]);
            cr_assert(size > 0 && size <= 256);
            lens[n] = codec_encode(&pkts[k], all_versions[i], seeds[n]);
            n++;
        }
    }
    return n;
}

Test(codec, fuzz_smoke_200000_mutated_buffers_never_crash)
{
    static uint8_t seeds[24][256];
    static uint32_t seed_lens[24];
    uint32_t seed_count = fuzz_seeds_build(seeds, seed_lens);
    uint8_t work[300];
    uint32_t decoded = 0;
    for (uint32_t iter = 0; iter < 200000; iter++) {
        uint64_t r = fuzz_next();
        uint32_t len;
        if (r % 8 == 0) { /* fully random bytes */
            len = (uint32_t)(fuzz_next() % 64);
            for (uint32_t i = 0; i < len; i++)
                work[i] = (uint8_t)fuzz_next();
        } else { /* a seed with a few flipped, changed, dropped or added bytes */
            uint32_t s = (uint32_t)(fuzz_next() % seed_count);
            len = seed_lens[s];
            memcpy(work, seeds[s], len);
            uint32_t edits = 1 + (uint32_t)(fuzz_next() % 4);
            for (uint32_t e = 0; e < edits && len > 0; e++) {
                uint32_t at = (uint32_t)(fuzz_next() % len);
                switch (fuzz_next() % 4) {
                case 0: work[at] ^= (uint8_t)(1u << (fuzz_next() % 8)); break;
                case 1: work[at] = (uint8_t)fuzz_next(); break;
                case 2: len--; break;
                default: if (len < sizeof(work)) work[len++] = (uint8_t)fuzz_next(); break;
                }
            }
        }
        uint32_t frame_len = 0;
        int header_len = codec_frame(work, len, &frame_len);
        if (header_len <= 0 || frame_len > len)
            continue;
        uint8_t *frame = malloc(frame_len ? frame_len : 1);
        memcpy(frame, work, frame_len);
        for (uint8_t v = 0; v <= MQTT_V5; v++) {
            struct mqtt_packet pkt;
            if (codec_decode(frame, frame_len, v, &pkt) != MQTT_RC_SUCCESS)
                continue;
            decoded++;
            uint8_t ev = pkt.type == MQTT_CONNECT ? pkt.connect.version : v;
            static uint32_t ids[SUB_IDS_MAX];
            struct mqtt_props *props = packet_props(&pkt);
            if (props != NULL)
                props_prepare(props, ids);
            if (pkt.type == MQTT_CONNECT)
                pkt.connect.will.props.user_props_raw = pkt.connect.will.props.raw;
            cr_assert_gt(codec_size(&pkt, ev), 0, "decoded type %u cannot re-encode", pkt.type);
        }
        free(frame);
    }
    cr_assert_gt(decoded, 1000); /* the mutations reach the decoders' success paths */
}
