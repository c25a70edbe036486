/* tests/unit/test_codec_malformed.c - every decoder rejection of core/codec with its reason code.
 *
 * One named table entry per rule of docs/protocol-errors.md. An entry is a fixed header byte and
 * a body; the test builds the remaining length itself, so each body only lists the fields that
 * matter (commented per field). Entries marked RAW are whole frames, used for framing errors.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <string.h>

#include "core/codec.h"

#define BODY_MAX 96

TestSuite(codec_malformed);

struct malformed_case {
    const char *name;
    uint8_t version;    /* connection version passed to codec_decode */
    uint8_t rc;         /* the reason code the decoder must return */
    bool is_raw;        /* body is the whole frame, header ignored */
    uint8_t header;     /* fixed header byte 1 */
    uint32_t body_len;
    uint8_t body[BODY_MAX];
};

#define BYTES(...) sizeof((uint8_t[]){ __VA_ARGS__ }), { __VA_ARGS__ }
#define CASE(n, v, r, h, ...) { n, v, r, false, h, BYTES(__VA_ARGS__) }
#define CASE_EMPTY(n, v, r, h) { n, v, r, false, h, 0, { 0 } }
#define RAW(n, v, r, ...) { n, v, r, true, 0, BYTES(__VA_ARGS__) }

#define MAL MQTT_RC_MALFORMED
#define PE MQTT_RC_PROTOCOL_ERROR

/* CONNECT variable header prefixes: protocol name, level, flags, keepalive 60. */
#define NAME_MQTT 0, 4, 'M', 'Q', 'T', 'T'
#define CONNECT_V4(flags) NAME_MQTT, 4, flags, 0, 60
#define CONNECT_V5(flags) NAME_MQTT, 5, flags, 0, 60
#define CLIENT_C 0, 1, 'c'        /* client id "c" */
#define TOPIC_AB 0, 3, 'a', '/', 'b' /* topic "a/b" */

static struct malformed_case cases[] = {
    /* ---- framing and fixed header (2.1) ---- */
    RAW("remaining_length_five_bytes", 4, MAL, 0x30, 0x80, 0x80, 0x80, 0x80, 0x01),
    RAW("packet_type_zero", 4, MAL, 0x00, 0x00),
    RAW("remaining_length_past_frame", 4, MAL, 0xC0, 0x01),      /* says 1 byte, none follow */
    RAW("bytes_after_remaining_length", 4, MAL, 0xC0, 0x00, 0x00), /* frame longer than 2 */
    CASE("connect_header_flags_nonzero", 0, MAL, 0x11, CONNECT_V4(0x02), CLIENT_C),
    CASE("connack_header_flags_nonzero", 4, MAL, 0x21, 0x00, 0x00),
    CASE("puback_header_flags_nonzero", 5, MAL, 0x41, 0x00, 0x01),
    CASE("pubrel_header_flags_zero", 4, MAL, 0x60, 0x00, 0x01),
    CASE("subscribe_header_flags_zero", 4, MAL, 0x80, 0x00, 0x01, TOPIC_AB, 0x00),
    CASE("unsubscribe_header_flags_zero", 5, MAL, 0xA0, 0x00, 0x01, 0x00, TOPIC_AB),
    CASE_EMPTY("pingreq_header_flags_nonzero", 4, MAL, 0xC1),
    CASE_EMPTY("disconnect_header_flags_nonzero", 5, MAL, 0xE2),
    CASE("publish_qos3", 4, MAL, 0x36, TOPIC_AB, 0x00, 0x01),
    CASE("publish_qos0_with_dup", 4, MAL, 0x38, TOPIC_AB),
    CASE_EMPTY("auth_before_v5", 4, MAL, 0xF0),
    CASE("pingreq_with_body", 4, MAL, 0xC0, 0x00),
    CASE("pingresp_with_body", 5, MAL, 0xD0, 0x00),
    CASE("disconnect_v311_with_body", 4, MAL, 0xE0, 0x00),
    CASE_EMPTY("pingreq_before_connect", 0, PE, 0xC0),

    /* ---- CONNECT (3.1) ---- */
    CASE("connect_reserved_flag", 0, MAL, 0x10, CONNECT_V4(0x03), CLIENT_C),
    CASE("connect_will_qos_without_will", 0, MAL, 0x10, CONNECT_V4(0x0A), CLIENT_C),
    CASE("connect_will_retain_without_will", 0, MAL, 0x10, CONNECT_V4(0x22), CLIENT_C),
    CASE("connect_will_qos3", 0, MAL, 0x10, CONNECT_V4(0x1E), CLIENT_C,
         TOPIC_AB, /* will topic */ 0, 0 /* will payload */),
    CASE("connect_password_without_username_v311", 0, MAL, 0x10, CONNECT_V4(0x42), CLIENT_C,
         0, 1, 'p' /* password */),
    CASE("connect_unknown_level", 0, MQTT_RC_UNSUPPORTED_VERSION, 0x10, NAME_MQTT, 6, 0x02, 0,
         60, CLIENT_C),
    CASE("connect_unknown_protocol_name", 0, MQTT_RC_UNSUPPORTED_VERSION, 0x10,
         0, 4, 'M', 'Q', 'T', 'X', 4, 0x02, 0, 60, CLIENT_C),
    CASE("connect_level3_with_mqtt_name", 0, MQTT_RC_UNSUPPORTED_VERSION, 0x10, NAME_MQTT, 3,
         0x02, 0, 60, CLIENT_C),
    CASE("connect_protocol_name_truncated", 0, MAL, 0x10, 0, 4, 'M', 'Q'),
    CASE("connect_keepalive_truncated", 0, MAL, 0x10, NAME_MQTT, 4, 0x02, 0),
    CASE("connect_client_id_missing", 0, MAL, 0x10, CONNECT_V4(0x02)),
    CASE("connect_client_id_invalid_utf8", 0, MAL, 0x10, CONNECT_V4(0x02), 0, 2, 0xC3, 0x28),
    CASE("connect_client_id_null_char", 0, MAL, 0x10, CONNECT_V4(0x02), 0, 1, 0x00),
    CASE("connect_username_surrogate", 0, MAL, 0x10, CONNECT_V4(0x82), CLIENT_C,
         0, 3, 0xED, 0xA0, 0x80 /* U+D800 */),
    CASE("connect_username_missing", 0, MAL, 0x10, CONNECT_V4(0x82), CLIENT_C),
    CASE("connect_trailing_byte", 0, MAL, 0x10, CONNECT_V4(0x02), CLIENT_C, 0x00),
    CASE("connect_will_topic_wildcard", 0, MQTT_RC_TOPIC_NAME_INVALID, 0x10, CONNECT_V4(0x06),
         CLIENT_C, 0, 3, 'a', '/', '#', 0, 0),
    CASE("connect_will_topic_invalid_utf8", 0, MAL, 0x10, CONNECT_V4(0x06), CLIENT_C,
         0, 1, 0xFF, 0, 0),
    CASE("connect_will_payload_truncated", 0, MAL, 0x10, CONNECT_V4(0x06), CLIENT_C, TOPIC_AB,
         0, 5, 'x'),
    CASE("connect_v5_topic_alias_not_allowed", 0, MAL, 0x10, CONNECT_V5(0x02),
         3, 0x23, 0, 1, CLIENT_C),
    CASE("connect_v5_receive_max_zero", 0, PE, 0x10, CONNECT_V5(0x02), 3, 0x21, 0, 0, CLIENT_C),
    CASE("connect_v5_max_packet_size_zero", 0, PE, 0x10, CONNECT_V5(0x02),
         5, 0x27, 0, 0, 0, 0, CLIENT_C),
    CASE("connect_v5_session_expiry_twice", 0, PE, 0x10, CONNECT_V5(0x02),
         10, 0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2, CLIENT_C),
    CASE("connect_v5_request_problem_info_2", 0, PE, 0x10, CONNECT_V5(0x02), 2, 0x17, 2,
         CLIENT_C),
    CASE("connect_v5_request_response_info_2", 0, PE, 0x10, CONNECT_V5(0x02), 2, 0x19, 2,
         CLIENT_C),
    CASE("connect_v5_auth_data_without_method", 0, PE, 0x10, CONNECT_V5(0x02),
         4, 0x16, 0, 1, 'x', CLIENT_C),
    CASE("connect_v5_unknown_property", 0, MAL, 0x10, CONNECT_V5(0x02), 2, 0x05, 0, CLIENT_C),
    CASE("connect_v5_property_length_past_end", 0, MAL, 0x10, CONNECT_V5(0x02), 9, 0x11, 0),
    CASE("connect_v5_user_property_key_invalid_utf8", 0, MAL, 0x10, CONNECT_V5(0x02),
         7, 0x26, 0, 1, 0xC0, 0, 1, 'v', CLIENT_C),
    CASE("connect_v5_user_property_value_null_char", 0, MAL, 0x10, CONNECT_V5(0x02),
         7, 0x26, 0, 1, 'k', 0, 1, 0x00, CLIENT_C),
    CASE("connect_v5_will_payload_format_2", 0, PE, 0x10, CONNECT_V5(0x06), 0, CLIENT_C,
         2, 0x01, 2 /* will properties */, TOPIC_AB, 0, 0),
    CASE("connect_v5_will_session_expiry_not_allowed", 0, MAL, 0x10, CONNECT_V5(0x06), 0,
         CLIENT_C, 5, 0x11, 0, 0, 0, 1, TOPIC_AB, 0, 0),

    /* ---- CONNACK (3.2) ---- */
    CASE("connack_reserved_flags", 4, MAL, 0x20, 0x02, 0x00),
    CASE("connack_v311_return_code_6", 4, PE, 0x20, 0x00, 0x06),
    CASE("connack_v311_trailing_byte", 4, MAL, 0x20, 0x00, 0x00, 0x00),
    CASE("connack_truncated", 4, MAL, 0x20, 0x00),
    CASE("connack_v5_max_qos_2", 5, PE, 0x20, 0x00, 0x00, 2, 0x24, 2),
    CASE("connack_v5_retain_available_2", 5, PE, 0x20, 0x00, 0x00, 2, 0x25, 2),
    CASE("connack_v5_will_delay_not_allowed", 5, MAL, 0x20, 0x00, 0x00, 5, 0x18, 0, 0, 0, 1),
    CASE("connack_v5_unknown_reason_code", 5, PE, 0x20, 0x00, 0x01, 0),

    /* ---- PUBLISH (3.3) ---- */
    CASE("publish_topic_plus", 4, MQTT_RC_TOPIC_NAME_INVALID, 0x30, 0, 3, 'a', '/', '+'),
    CASE("publish_topic_hash", 5, MQTT_RC_TOPIC_NAME_INVALID, 0x30, 0, 1, '#', 0),
    CASE("publish_topic_invalid_utf8", 4, MAL, 0x30, 0, 2, 'a', 0x80),
    CASE("publish_topic_null_char", 5, MAL, 0x30, 0, 3, 'a', 0x00, 'b', 0),
    CASE("publish_topic_overlong_utf8", 4, MAL, 0x30, 0, 2, 0xC0, 0xAF),
    CASE("publish_topic_truncated", 4, MAL, 0x30, 0, 9, 'a'),
    CASE("publish_qos1_packet_id_zero", 4, PE, 0x32, TOPIC_AB, 0x00, 0x00),
    CASE("publish_qos1_packet_id_missing", 4, MAL, 0x32, TOPIC_AB, 0x00),
    CASE("publish_v5_empty_topic_without_alias", 5, PE, 0x30, 0, 0, 0),
    CASE("publish_v311_empty_topic", 4, PE, 0x30, 0, 0, 'x'),
    CASE("publish_v5_subscription_id_zero", 5, PE, 0x30, TOPIC_AB, 2, 0x0B, 0),
    CASE("publish_v5_payload_format_2", 5, PE, 0x30, TOPIC_AB, 2, 0x01, 2),
    CASE("publish_v5_topic_alias_twice", 5, PE, 0x30, TOPIC_AB, 6, 0x23, 0, 1, 0x23, 0, 2),
    CASE("publish_v5_session_expiry_not_allowed", 5, MAL, 0x30, TOPIC_AB, 5, 0x11, 0, 0, 0, 1),
    CASE("publish_v5_content_type_invalid_utf8", 5, MAL, 0x30, TOPIC_AB, 4, 0x03, 0, 1, 0xFE),
    CASE("publish_v5_response_topic_wildcard", 5, PE, 0x30, TOPIC_AB, 4, 0x08, 0, 1, '#'),
    CASE("publish_v5_property_length_five_bytes", 5, MAL, 0x30, TOPIC_AB,
         0x80, 0x80, 0x80, 0x80, 0x01),
    CASE("publish_v5_property_value_truncated", 5, MAL, 0x30, TOPIC_AB, 3, 0x02, 0, 0),
    CASE("publish_v5_properties_missing", 5, MAL, 0x32, TOPIC_AB, 0x00, 0x01),

    /* ---- PUBACK, PUBREC, PUBREL, PUBCOMP (3.4 - 3.7) ---- */
    CASE("puback_truncated_packet_id", 4, MAL, 0x40, 0x00),
    CASE("puback_v311_trailing_byte", 4, MAL, 0x40, 0x00, 0x01, 0x00),
    CASE("puback_packet_id_zero", 4, PE, 0x40, 0x00, 0x00),
    CASE("pubrec_v5_packet_id_zero", 5, PE, 0x50, 0x00, 0x00),
    CASE("puback_v5_reason_0x92", 5, PE, 0x40, 0x00, 0x01, 0x92),
    CASE("pubrel_v5_reason_0x10", 5, PE, 0x62, 0x00, 0x01, 0x10),
    CASE("pubcomp_v5_session_expiry_not_allowed", 5, MAL, 0x70, 0x00, 0x01, 0x00,
         5, 0x11, 0, 0, 0, 1),
    CASE("pubrec_v5_reason_string_twice", 5, PE, 0x50, 0x00, 0x01, 0x00,
         8, 0x1F, 0, 1, 'a', 0x1F, 0, 1, 'b'),
    CASE("pubrec_v5_properties_truncated", 5, MAL, 0x50, 0x00, 0x01, 0x00, 5, 0x1F, 0, 3, 'a'),

    /* ---- SUBSCRIBE, UNSUBSCRIBE (3.8, 3.10) ---- */
    CASE("subscribe_v311_no_filters", 4, PE, 0x82, 0x00, 0x01),
    CASE("subscribe_v5_no_filters", 5, PE, 0x82, 0x00, 0x01, 0),
    CASE("subscribe_packet_id_zero", 4, PE, 0x82, 0x00, 0x00, TOPIC_AB, 0x00),
    CASE("subscribe_v311_options_reserved_bit", 4, MAL, 0x82, 0x00, 0x01, TOPIC_AB, 0x04),
    CASE("subscribe_v311_qos3", 4, MAL, 0x82, 0x00, 0x01, TOPIC_AB, 0x03),
    CASE("subscribe_v5_options_reserved_bit", 5, MAL, 0x82, 0x00, 0x01, 0, TOPIC_AB, 0x40),
    CASE("subscribe_v5_qos3", 5, PE, 0x82, 0x00, 0x01, 0, TOPIC_AB, 0x03),
    CASE("subscribe_v5_retain_handling_3", 5, PE, 0x82, 0x00, 0x01, 0, TOPIC_AB, 0x30),
    CASE("subscribe_v5_shared_no_local", 5, PE, 0x82, 0x00, 0x01, 0,
         0, 9, '$', 's', 'h', 'a', 'r', 'e', '/', 'g', '/', 0x04),
    CASE("subscribe_options_missing", 4, MAL, 0x82, 0x00, 0x01, TOPIC_AB),
    CASE("subscribe_filter_invalid_utf8", 4, MAL, 0x82, 0x00, 0x01, 0, 1, 0xF8, 0x00),
    CASE("subscribe_v5_subscription_id_twice", 5, PE, 0x82, 0x00, 0x01,
         4, 0x0B, 1, 0x0B, 2, TOPIC_AB, 0x00),
    CASE("subscribe_v5_subscription_id_zero", 5, PE, 0x82, 0x00, 0x01, 2, 0x0B, 0, TOPIC_AB, 0),
    CASE("subscribe_v5_reason_string_not_allowed", 5, MAL, 0x82, 0x00, 0x01,
         4, 0x1F, 0, 1, 'a', TOPIC_AB, 0),
    CASE("unsubscribe_v311_no_filters", 4, PE, 0xA2, 0x00, 0x01),
    CASE("unsubscribe_filter_truncated", 4, MAL, 0xA2, 0x00, 0x01, 0, 4, 'a'),
    CASE("unsubscribe_packet_id_zero", 4, PE, 0xA2, 0x00, 0x00, TOPIC_AB),
    CASE("unsubscribe_v5_subscription_id_not_allowed", 5, MAL, 0xA2, 0x00, 0x01,
         2, 0x0B, 1, TOPIC_AB),

    /* ---- SUBACK, UNSUBACK (3.9, 3.11) ---- */
    CASE("suback_no_reason_codes", 4, PE, 0x90, 0x00, 0x01),
    CASE("suback_v311_reason_0x8f", 4, PE, 0x90, 0x00, 0x01, 0x8F),
    CASE("suback_v5_reason_0x11", 5, PE, 0x90, 0x00, 0x01, 0, 0x11),
    CASE("unsuback_v311_with_payload", 4, MAL, 0xB0, 0x00, 0x01, 0x00),
    CASE("unsuback_v5_reason_0x01", 5, PE, 0xB0, 0x00, 0x01, 0, 0x01),
    CASE("unsuback_v5_no_reason_codes", 5, PE, 0xB0, 0x00, 0x01, 0),

    /* ---- DISCONNECT, AUTH (3.14, 3.15) ---- */
    CASE("disconnect_v5_reason_0x18", 5, PE, 0xE0, 0x18),
    CASE("disconnect_v5_auth_method_not_allowed", 5, MAL, 0xE0, 0x00, 4, 0x15, 0, 1, 'a'),
    CASE("disconnect_v5_reason_string_invalid_utf8", 5, MAL, 0xE0, 0x00, 4, 0x1F, 0, 1, 0xC1),
    CASE("disconnect_v5_session_expiry_truncated", 5, MAL, 0xE0, 0x00, 3, 0x11, 0, 0),
    CASE("auth_v5_reason_0x04", 5, PE, 0xF0, 0x04),
    CASE("auth_v5_data_without_method", 5, PE, 0xF0, 0x18, 4, 0x16, 0, 1, 'x'),
    CASE("auth_v5_trailing_byte", 5, MAL, 0xF0, 0x18, 0 /* no properties */, 0x00),
};

static uint32_t frame_build(const struct malformed_case *c, uint8_t *out)
{
    if (c->is_raw) {
        memcpy(out, c->body, c->body_len);
        return c->body_len;
    }
    out[0] = c->header;
    uint32_t n = 1 + codec_varint_encode(c->body_len, out + 1);
    memcpy(out + n, c->body, c->body_len);
    return n + c->body_len;
}

ParameterizedTestParameters(codec_malformed, each_case_returns_its_reason_code)
{
    return cr_make_param_array(struct malformed_case, cases, ARRAY_LEN(cases));
}

ParameterizedTest(struct malformed_case *c, codec_malformed, each_case_returns_its_reason_code)
{
    uint8_t *frame = malloc(BODY_MAX + 8);
    cr_assert_not_null(frame);
    uint32_t len = frame_build(c, frame);
    /* Exact-size copy so that ASan reports any read past the frame. */
    uint8_t *exact = malloc(len);
    memcpy(exact, frame, len);
    struct mqtt_packet pkt;
    enum mqtt_rc rc = codec_decode(exact, len, c->version, &pkt);
    cr_assert_eq(rc, c->rc, "%s: got 0x%02x, want 0x%02x", c->name, rc, c->rc);
    free(exact);
    free(frame);
}

Test(codec_malformed, table_has_at_least_sixty_cases)
{
    cr_assert_geq(ARRAY_LEN(cases), 60);
}

Test(codec_malformed, unsupported_version_reports_the_raw_level)
{
    uint8_t frame[] = {
        0x10, 12,                   /* CONNECT, remaining length */
        0, 4, 'M', 'Q', 'T', 'T',   /* protocol name */
        7,                          /* level 7: unknown */
        0x02, 0, 60,                /* flags (clean), keepalive */
        0, 0,                       /* empty client id */
    };
    struct mqtt_packet pkt;
    cr_assert_eq(codec_decode(frame, sizeof(frame), 0, &pkt), MQTT_RC_UNSUPPORTED_VERSION);
    cr_assert_eq(pkt.type, MQTT_CONNECT);
    cr_assert_eq(pkt.connect.version, 7);
}

Test(codec_malformed, publish_v5_empty_topic_with_alias_is_accepted)
{
    uint8_t frame[] = {
        0x30, 7,         /* PUBLISH QoS 0, remaining length */
        0, 0,            /* empty topic name */
        3, 0x23, 0, 5,   /* properties: topic alias 5 */
        'x',             /* payload */
    };
    struct mqtt_packet pkt;
    cr_assert_eq(codec_decode(frame, sizeof(frame), MQTT_V5, &pkt), MQTT_RC_SUCCESS);
    cr_assert_eq(pkt.publish.topic.len, 0);
    cr_assert_eq(pkt.publish.props.topic_alias, 5);
}

Test(codec_malformed, publish_v5_topic_alias_zero_is_left_to_the_broker)
{
    uint8_t frame[] = {
        0x30, 10,        /* PUBLISH QoS 0, remaining length */
        TOPIC_AB,        /* topic "a/b" */
        3, 0x23, 0, 0,   /* properties: topic alias 0 (the broker answers 0x94) */
        'x',             /* payload */
    };
    struct mqtt_packet pkt;
    cr_assert_eq(codec_decode(frame, sizeof(frame), MQTT_V5, &pkt), MQTT_RC_SUCCESS);
    cr_assert(mqtt_props_has(&pkt.publish.props, MQTT_PROP_TOPIC_ALIAS));
    cr_assert_eq(pkt.publish.props.topic_alias, 0);
}

Test(codec_malformed, subscribe_invalid_or_empty_filter_is_left_to_the_broker)
{
    uint8_t frame[] = {
        0x82, 13,                   /* SUBSCRIBE, remaining length */
        0, 1,                       /* packet id */
        0,                          /* no properties */
        0, 4, 'a', '#', '/', 'b',   /* filter "a#/b": invalid, but well-formed UTF-8 */
        0x01,                       /* options: QoS 1 */
        0, 0,                       /* filter "": empty */
        0x00,                       /* options: QoS 0 */
    };
    struct mqtt_packet pkt;
    cr_assert_eq(codec_decode(frame, sizeof(frame), MQTT_V5, &pkt), MQTT_RC_SUCCESS);
    cr_assert_eq(pkt.subscribe.count, 2);
}
