/* tests/integ/02_malformed.c - malformed input from the network, one class per test.
 *
 * For each class: a v5 client gets DISCONNECT with the reason code the spec gives, then the
 * close; a v3.1.1 client gets the close and no packet at all (v3.1.1 has no DISCONNECT from
 * the server). After every case a fresh client must still connect: a bad client never takes
 * the broker down. Spec terms (5.0 section 1.2): a Malformed Packet (0x81) cannot be parsed;
 * a Protocol Error (0x82) parses but carries data the protocol forbids.
 * Every packet is a literal byte array with a comment per field (STYLE 12).
 */
#include <criterion/criterion.h>

#include "tests/helpers/integ.h"

#define BLAST_LEN (1024u * 1024u)
#define BLAST_SEED 0x6b65656c6d71ull /* "keelmq": fixed, so a failure reproduces */

static struct broker broker;
static struct rawclient client;

static void start_default(void)
{
    integ_start(&broker, NULL);
}

static void start_max_packet_1024(void)
{
    struct broker_options options = { .overrides = { "mqtt.max_packet_size=1024" } };
    integ_start(&broker, &options);
}

static void stop(void)
{
    rawclient_close(&client);
    integ_stop(&broker);
}

static void connect_client(uint8_t version)
{
    struct rawclient_connect_options options = {
        .version = version, .client_id = "integ-malformed", .clean_start = true,
        .keepalive_s = 60,
    };
    integ_connect(&broker, &client, &options, 0);
}

/* v5: connect, send `bytes`, expect DISCONNECT `reason` and the close, then a fresh client. */
static void expect_v5_disconnect(const uint8_t *bytes, uint32_t len, uint8_t reason)
{
    connect_client(MQTT_V5);
    cr_assert_eq(rawclient_send(&client, bytes, len), 0);
    integ_expect_disconnect(&broker, &client, reason);
    integ_expect_serving(&broker);
}

/* v3.1.1: connect, send `bytes`, expect the close without a packet, then a fresh client. */
static void expect_v311_close(const uint8_t *bytes, uint32_t len)
{
    connect_client(MQTT_V311);
    cr_assert_eq(rawclient_send(&client, bytes, len), 0);
    integ_expect_close(&broker, &client);
    integ_expect_serving(&broker);
}

TestSuite(malformed);

/* 5.0 MQTT-3.1.2-3: CONNECT's reserved flag must be 0, else Malformed Packet. For an error in
 * CONNECT the server MAY answer CONNACK with the reason code before closing (5.0 4.13.1), so
 * both "CONNACK 0x81, close" and a bare close are correct. */
Test(malformed, v5_connect_with_reserved_flag_gets_connack_0x81_or_close, .init = start_default,
     .fini = stop, .timeout = 30)
{
    static const uint8_t connect[] = {
        0x10, 0x0E,                   /* CONNECT, remaining length 14 */
        0x00, 0x04, 'M', 'Q', 'T', 'T', /* protocol name */
        0x05,                         /* level 5 */
        0x03,                         /* flags: clean start | reserved bit 0 (must be 0) */
        0x00, 0x3C,                   /* keepalive 60 s */
        0x00,                         /* properties: none */
        0x00, 0x01, 'r',              /* client id "r" */
    };
    cr_assert_eq(rawclient_open(&client, broker.port, MQTT_V5), 0);
    cr_assert_eq(rawclient_send(&client, connect, sizeof(connect)), 0);
    if (rawclient_await_close(&client, RAWCLIENT_TIMEOUT_MS) == RAWCLIENT_DATA) {
        struct mqtt_packet packet;
        integ_expect_packet(&broker, &client, MQTT_CONNACK, &packet);
        cr_assert_eq(packet.connack.rc, MQTT_RC_MALFORMED, "CONNACK 0x%02x", packet.connack.rc);
    }
    integ_expect_close(&broker, &client);
    integ_expect_serving(&broker);
}

/* 3.1.1 MQTT-3.1.2-3: a reserved flag that is not 0: disconnect, no CONNACK. */
Test(malformed, v311_connect_with_reserved_flag_is_closed, .init = start_default,
     .fini = stop, .timeout = 30)
{
    static const uint8_t connect[] = {
        0x10, 0x0D,                   /* CONNECT, remaining length 13 */
        0x00, 0x04, 'M', 'Q', 'T', 'T', /* protocol name */
        0x04,                         /* level 4: v3.1.1 */
        0x03,                         /* flags: clean session | reserved bit 0 (must be 0) */
        0x00, 0x3C,                   /* keepalive 60 s */
        0x00, 0x01, 'r',              /* client id "r" */
    };
    cr_assert_eq(rawclient_open(&client, broker.port, MQTT_V311), 0);
    cr_assert_eq(rawclient_send(&client, connect, sizeof(connect)), 0);
    integ_expect_close(&broker, &client);
    integ_expect_serving(&broker);
}

/* 5.0 2.1.3 / 3.1.1 2.2.2: SUBSCRIBE's flags must be 0010; invalid flags are malformed. */
Test(malformed, v5_subscribe_with_reserved_flags_0000_gets_0x81, .init = start_default,
     .fini = stop, .timeout = 30)
{
    static const uint8_t subscribe[] = {
        0x80, 0x07,                   /* SUBSCRIBE with flags 0000 (must be 0010), length 7 */
        0x00, 0x01,                   /* packet id 1 */
        0x00,                         /* properties: none */
        0x00, 0x01, 'a',              /* filter "a" */
        0x00,                         /* options: QoS 0 */
    };
    expect_v5_disconnect(subscribe, sizeof(subscribe), MQTT_RC_MALFORMED);
}

Test(malformed, v311_subscribe_with_reserved_flags_0000_is_closed, .init = start_default,
     .fini = stop, .timeout = 30)
{
    static const uint8_t subscribe[] = {
        0x80, 0x06,                   /* SUBSCRIBE with flags 0000 (must be 0010), length 6 */
        0x00, 0x01,                   /* packet id 1 */
        0x00, 0x01, 'a',              /* filter "a" */
        0x00,                         /* requested QoS 0 */
    };
    expect_v311_close(subscribe, sizeof(subscribe));
}

/* 5.0 3.3.1.2 / 3.1.1 MQTT-3.3.1-4: both QoS bits set is malformed. */
Test(malformed, v5_publish_qos_3_gets_0x81, .init = start_default, .fini = stop,
     .timeout = 30)
{
    static const uint8_t publish[] = {
        0x36, 0x07,                   /* PUBLISH, flags 0110: QoS 3, length 7 */
        0x00, 0x01, 'a',              /* topic "a" */
        0x00, 0x01,                   /* packet id 1 */
        0x00,                         /* properties: none */
        'x',                          /* payload */
    };
    expect_v5_disconnect(publish, sizeof(publish), MQTT_RC_MALFORMED);
}

Test(malformed, v311_publish_qos_3_is_closed, .init = start_default, .fini = stop,
     .timeout = 30)
{
    static const uint8_t publish[] = {
        0x36, 0x06,                   /* PUBLISH, flags 0110: QoS 3, length 6 */
        0x00, 0x01, 'a',              /* topic "a" */
        0x00, 0x01,                   /* packet id 1 */
        'x',                          /* payload */
    };
    expect_v311_close(publish, sizeof(publish));
}

/* 5.0 MQTT-2.2.1-3: QoS > 0 PUBLISH needs a non-zero packet id. It parses, so: 0x82. */
Test(malformed, v5_publish_qos_1_with_packet_id_0_gets_0x82, .init = start_default,
     .fini = stop, .timeout = 30)
{
    static const uint8_t publish[] = {
        0x32, 0x07,                   /* PUBLISH QoS 1, length 7 */
        0x00, 0x01, 'a',              /* topic "a" */
        0x00, 0x00,                   /* packet id 0: forbidden */
        0x00,                         /* properties: none */
        'x',                          /* payload */
    };
    expect_v5_disconnect(publish, sizeof(publish), MQTT_RC_PROTOCOL_ERROR);
}

Test(malformed, v311_publish_qos_1_with_packet_id_0_is_closed, .init = start_default,
     .fini = stop, .timeout = 30)
{
    static const uint8_t publish[] = {
        0x32, 0x06,                   /* PUBLISH QoS 1, length 6 */
        0x00, 0x01, 'a',              /* topic "a" */
        0x00, 0x00,                   /* packet id 0: forbidden */
        'x',                          /* payload */
    };
    expect_v311_close(publish, sizeof(publish));
}

Test(malformed, v5_subscribe_with_packet_id_0_gets_0x82, .init = start_default, .fini = stop,
     .timeout = 30)
{
    static const uint8_t subscribe[] = {
        0x82, 0x07,                   /* SUBSCRIBE, length 7 */
        0x00, 0x00,                   /* packet id 0: forbidden */
        0x00,                         /* properties: none */
        0x00, 0x01, 'a',              /* filter "a" */
        0x00,                         /* options: QoS 0 */
    };
    expect_v5_disconnect(subscribe, sizeof(subscribe), MQTT_RC_PROTOCOL_ERROR);
}

Test(malformed, v311_subscribe_with_packet_id_0_is_closed, .init = start_default,
     .fini = stop, .timeout = 30)
{
    static const uint8_t subscribe[] = {
        0x82, 0x06,                   /* SUBSCRIBE, length 6 */
        0x00, 0x00,                   /* packet id 0: forbidden */
        0x00, 0x01, 'a',              /* filter "a" */
        0x00,                         /* requested QoS 0 */
    };
    expect_v311_close(subscribe, sizeof(subscribe));
}

/* 5.0 MQTT-3.3.2-2: no wildcards in a Topic Name. The string is well-formed UTF-8 but is not
 * an acceptable topic name: 0x90 Topic Name invalid (codec_decode's
 * MQTT_RC_TOPIC_NAME_INVALID). */
Test(malformed, v5_publish_topic_with_wildcard_gets_0x90, .init = start_default, .fini = stop,
     .timeout = 30)
{
    static const uint8_t publish[] = {
        0x30, 0x07,                   /* PUBLISH QoS 0, length 7 */
        0x00, 0x03, 'a', '/', '#',    /* topic "a/#": wildcard */
        0x00,                         /* properties: none */
        'x',                          /* payload */
    };
    expect_v5_disconnect(publish, sizeof(publish), MQTT_RC_TOPIC_NAME_INVALID);
}

Test(malformed, v311_publish_topic_with_wildcard_is_closed, .init = start_default,
     .fini = stop, .timeout = 30)
{
    static const uint8_t publish[] = {
        0x30, 0x06,                   /* PUBLISH QoS 0, length 6 */
        0x00, 0x03, 'a', '/', '+',    /* topic "a/+": wildcard */
        'x',                          /* payload */
    };
    expect_v311_close(publish, sizeof(publish));
}

/* 5.0 1.5.4 / 3.1.1 MQTT-1.5.3-1: ill-formed UTF-8 is a Malformed Packet. */
Test(malformed, v5_publish_topic_with_invalid_utf8_gets_0x81, .init = start_default,
     .fini = stop, .timeout = 30)
{
    static const uint8_t publish[] = {
        0x30, 0x07,                   /* PUBLISH QoS 0, length 7 */
        0x00, 0x03, 'a', 0xC3, 0x28,  /* topic: 0xC3 needs a continuation byte, 0x28 is not */
        0x00,                         /* properties: none */
        'x',                          /* payload */
    };
    expect_v5_disconnect(publish, sizeof(publish), MQTT_RC_MALFORMED);
}

Test(malformed, v311_publish_topic_with_invalid_utf8_is_closed, .init = start_default,
     .fini = stop, .timeout = 30)
{
    static const uint8_t publish[] = {
        0x30, 0x06,                   /* PUBLISH QoS 0, length 6 */
        0x00, 0x03, 'a', 0xC3, 0x28,  /* topic: 0xC3 needs a continuation byte, 0x28 is not */
        'x',                          /* payload */
    };
    expect_v311_close(publish, sizeof(publish));
}

/* 5.0 MQTT-1.5.4-2 / 3.1.1 MQTT-1.5.3-2: U+0000 in a string is a Malformed Packet. */
Test(malformed, v5_publish_topic_with_nul_gets_0x81, .init = start_default, .fini = stop,
     .timeout = 30)
{
    static const uint8_t publish[] = {
        0x30, 0x07,                   /* PUBLISH QoS 0, length 7 */
        0x00, 0x03, 'a', 0x00, 'b',   /* topic "a\0b": U+0000 */
        0x00,                         /* properties: none */
        'x',                          /* payload */
    };
    expect_v5_disconnect(publish, sizeof(publish), MQTT_RC_MALFORMED);
}

Test(malformed, v311_publish_topic_with_nul_is_closed, .init = start_default, .fini = stop,
     .timeout = 30)
{
    static const uint8_t publish[] = {
        0x30, 0x06,                   /* PUBLISH QoS 0, length 6 */
        0x00, 0x03, 'a', 0x00, 'b',   /* topic "a\0b": U+0000 */
        'x',                          /* payload */
    };
    expect_v311_close(publish, sizeof(publish));
}

/* 5.0 3.3.2.3.2: "It is a Protocol Error to include the Payload Format Indicator more than
 * once." (v3.1.1 has no properties.) */
Test(malformed, v5_duplicate_property_gets_0x82, .init = start_default, .fini = stop,
     .timeout = 30)
{
    static const uint8_t publish[] = {
        0x30, 0x09,                   /* PUBLISH QoS 0, length 9 */
        0x00, 0x01, 'a',              /* topic "a" */
        0x04,                         /* properties: 4 bytes */
        0x01, 0x00,                   /* payload format indicator 0 */
        0x01, 0x00,                   /* payload format indicator 0 again */
        'x',                          /* payload */
    };
    expect_v5_disconnect(publish, sizeof(publish), MQTT_RC_PROTOCOL_ERROR);
}

/* 5.0 1.5.5 / 3.1.1 2.2.3: the remaining length has at most 4 bytes. */
Test(malformed, v5_five_byte_remaining_length_gets_0x81, .init = start_default, .fini = stop,
     .timeout = 30)
{
    static const uint8_t publish[] = {
        0x30,                         /* PUBLISH QoS 0 */
        0xFF, 0xFF, 0xFF, 0xFF, 0x7F, /* remaining length: a 5th varint byte */
    };
    expect_v5_disconnect(publish, sizeof(publish), MQTT_RC_MALFORMED);
}

Test(malformed, v311_five_byte_remaining_length_is_closed, .init = start_default,
     .fini = stop, .timeout = 30)
{
    static const uint8_t publish[] = {
        0x30,                         /* PUBLISH QoS 0 */
        0xFF, 0xFF, 0xFF, 0xFF, 0x7F, /* remaining length: a 5th varint byte */
    };
    expect_v311_close(publish, sizeof(publish));
}

/* 5.0 3.2.2.3.6 and 4.13: a packet over the server's Maximum Packet Size gets DISCONNECT
 * 0x95. The header alone announces it: the broker must answer without waiting for a body
 * that never comes (the test sends none and would time out). */
Test(malformed, v5_packet_over_max_packet_size_gets_0x95_without_body,
     .init = start_max_packet_1024, .fini = stop, .timeout = 30)
{
    static const uint8_t header[] = {
        0x30,                         /* PUBLISH QoS 0 */
        0xD0, 0x0F,                   /* remaining length 2000 (0x50 | 0x80, 0x0F) > 1024 */
        0x00, 0x01, 'a',              /* topic "a"; then nothing more is ever sent */
    };
    expect_v5_disconnect(header, sizeof(header), MQTT_RC_PACKET_TOO_LARGE);
}

Test(malformed, v5_connack_announces_max_packet_size, .init = start_max_packet_1024,
     .fini = stop, .timeout = 30)
{
    struct rawclient_connect_options options = {
        .version = MQTT_V5, .client_id = "integ-max", .clean_start = true, .keepalive_s = 60,
    };
    struct mqtt_packet packet;
    cr_assert_eq(rawclient_connect(&client, broker.port, &options, &packet), RAWCLIENT_OK);
    cr_assert_eq(packet.type, MQTT_CONNACK);
    cr_assert(mqtt_props_has(&packet.connack.props, MQTT_PROP_MAX_PACKET_SIZE));
    cr_assert_eq(packet.connack.props.max_packet_size, 1024);
}

Test(malformed, v311_packet_over_max_packet_size_is_closed_without_body,
     .init = start_max_packet_1024, .fini = stop, .timeout = 30)
{
    static const uint8_t header[] = {
        0x30,                         /* PUBLISH QoS 0 */
        0xD0, 0x0F,                   /* remaining length 2000 (0x50 | 0x80, 0x0F) > 1024 */
        0x00, 0x01, 'a',              /* topic "a"; then nothing more is ever sent */
    };
    expect_v311_close(header, sizeof(header));
}

/* A packet cut short by the client's close must not crash the broker or leak the session. */
static void send_truncated_and_close(uint8_t version)
{
    connect_client(version);
    static const uint8_t publish[] = {
        0x30, 0x0A,                   /* PUBLISH QoS 0, length 10 */
        0x00, 0x05, 't', 'r',         /* topic "tr..." cut after 2 of its 5 bytes */
    };
    cr_assert_eq(rawclient_send(&client, publish, sizeof(publish)), 0);
    rawclient_close(&client);
    integ_expect_serving(&broker);
}

Test(malformed, v5_truncated_packet_then_close_leaves_broker_serving, .init = start_default,
     .fini = stop, .timeout = 30)
{
    send_truncated_and_close(MQTT_V5);
}

Test(malformed, v311_truncated_packet_then_close_leaves_broker_serving, .init = start_default,
     .fini = stop, .timeout = 30)
{
    send_truncated_and_close(MQTT_V311);
}

/* 5.0 / 3.1.1 MQTT-3.6.1-1: PUBREL's flags must be 0010. */
Test(malformed, v5_pubrel_with_flags_0000_gets_0x81, .init = start_default, .fini = stop,
     .timeout = 30)
{
    static const uint8_t pubrel[] = {
        0x60, 0x02,                   /* PUBREL with flags 0000 (must be 0010), length 2 */
        0x00, 0x01,                   /* packet id 1 */
    };
    expect_v5_disconnect(pubrel, sizeof(pubrel), MQTT_RC_MALFORMED);
}

Test(malformed, v311_pubrel_with_flags_0000_is_closed, .init = start_default, .fini = stop,
     .timeout = 30)
{
    static const uint8_t pubrel[] = {
        0x60, 0x02,                   /* PUBREL with flags 0000 (must be 0010), length 2 */
        0x00, 0x01,                   /* packet id 1 */
    };
    expect_v311_close(pubrel, sizeof(pubrel));
}

/* 3.1.1 2.2.1: type 15 is reserved ("Forbidden"); AUTH exists only in v5. */
Test(malformed, v311_auth_is_closed, .init = start_default, .fini = stop, .timeout = 30)
{
    static const uint8_t auth[] = {
        0xF0, 0x00,                   /* type 15 (AUTH in v5), length 0 */
    };
    expect_v311_close(auth, sizeof(auth));
}

/* 5.0 4.12: without an Authentication Method in CONNECT, AUTH is a Protocol Error. */
Test(malformed, v5_auth_without_auth_method_gets_0x82, .init = start_default, .fini = stop,
     .timeout = 30)
{
    static const uint8_t auth[] = {
        0xF0, 0x00,                   /* AUTH, length 0: reason 0x00 success, no properties */
    };
    expect_v5_disconnect(auth, sizeof(auth), MQTT_RC_PROTOCOL_ERROR);
}

/* Fills `bytes` with a fixed pseudo-random sequence (xorshift64*, reproducible anywhere). */
static void fill_random(uint8_t *bytes, uint32_t len)
{
    uint64_t state = BLAST_SEED;
    for (uint32_t i = 0; i < len; i++) {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        bytes[i] = (uint8_t)((state * 0x2545F4914F6CDD1Dull) >> 56);
    }
}

/* Sends 1 MiB of random bytes; the broker may close at any point, so the send's result is
 * ignored. Afterwards the broker must still serve a new client. */
static void blast_random(void)
{
    static uint8_t bytes[BLAST_LEN];
    fill_random(bytes, sizeof(bytes));
    (void)rawclient_send(&client, bytes, sizeof(bytes)); /* fails once the broker closes */
    int rc = rawclient_await_close(&client, RAWCLIENT_TIMEOUT_MS);
    cr_assert(rc == RAWCLIENT_CLOSED || rc == RAWCLIENT_DATA, "broker kept a garbage "
              "connection open: %s", rawclient_result_name(rc));
    rawclient_close(&client);
    integ_expect_serving(&broker);
}

Test(malformed, random_blast_instead_of_connect_leaves_broker_serving, .init = start_default,
     .fini = stop, .timeout = 30)
{
    cr_assert_eq(rawclient_open(&client, broker.port, MQTT_V311), 0);
    blast_random();
}

Test(malformed, v5_random_blast_after_connect_leaves_broker_serving, .init = start_default,
     .fini = stop, .timeout = 30)
{
    connect_client(MQTT_V5);
    blast_random();
}

Test(malformed, v311_random_blast_after_connect_leaves_broker_serving, .init = start_default,
     .fini = stop, .timeout = 30)
{
    connect_client(MQTT_V311);
    blast_random();
}
