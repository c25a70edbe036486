/* tests/integ/01_connect.c - CONNECT handling end to end: versions, refusals, client ids,
 * protocol errors around CONNECT and the properties of a v5 CONNACK.
 *
 * Each test starts its own broker (.init) on an ephemeral loopback port and speaks raw bytes
 * through tests/helpers/rawclient.h. Refused CONNECTs are literal byte arrays (STYLE 12).
 */
#include <criterion/criterion.h>

#include "tests/helpers/integ.h"

static struct broker broker;
static struct rawclient client;

static void start_default(void)
{
    integ_start(&broker, NULL);
}

static void start_keepalive_max_10(void)
{
    struct broker_options options = { .overrides = { "mqtt.keepalive_max=10" } };
    integ_start(&broker, &options);
}

static void stop(void)
{
    rawclient_close(&client);
    integ_stop(&broker);
}

/* Sends `connect` on a fresh connection decoded as `version`. */
static void send_connect(uint8_t version, const uint8_t *connect, uint32_t len)
{
    int rc = rawclient_open(&client, broker.port, version);
    cr_assert_eq(rc, 0, "connect(): %d", rc);
    cr_assert_eq(rawclient_send(&client, connect, len), 0);
}

/* The last frame equals `expected` byte for byte. */
static void expect_frame_bytes(const uint8_t *expected, uint32_t len)
{
    cr_assert_eq(client.frame_len, len, "frame is %u bytes, expected %u", client.frame_len, len);
    for (uint32_t i = 0; i < len; i++)
        cr_assert_eq(client.frame[i], expected[i], "frame byte %u is 0x%02x, expected 0x%02x",
                     i, client.frame[i], expected[i]);
}

TestSuite(connect);

Test(connect, v31_mqisdp_level_3_is_accepted, .init = start_default, .fini = stop,
     .timeout = 30)
{
    struct rawclient_connect_options options = {
        .version = MQTT_V31, .client_id = "integ-v31", .clean_start = true, .keepalive_s = 60,
    };
    integ_connect(&broker, &client, &options, 0);
    static const uint8_t connack[] = { 0x20, 0x02, 0x00, 0x00 }; /* accepted, no session */
    expect_frame_bytes(connack, sizeof(connack));
}

Test(connect, v311_is_accepted, .init = start_default, .fini = stop, .timeout = 30)
{
    struct rawclient_connect_options options = {
        .version = MQTT_V311, .client_id = "integ-v311", .clean_start = true, .keepalive_s = 60,
    };
    integ_connect(&broker, &client, &options, 0);
    static const uint8_t connack[] = { 0x20, 0x02, 0x00, 0x00 };
    expect_frame_bytes(connack, sizeof(connack));
}

Test(connect, v5_is_accepted, .init = start_default, .fini = stop, .timeout = 30)
{
    struct rawclient_connect_options options = {
        .version = MQTT_V5, .client_id = "integ-v5", .clean_start = true, .keepalive_s = 60,
    };
    integ_connect(&broker, &client, &options, 0);
}

/* Level 6 is unknown: the broker cannot know how the client parses a CONNACK, so it answers in
 * the v3.1.1 form, which v3.1.1 requires (MQTT-3.1.2-2 of 3.1.1: return code 0x01, then
 * disconnect). v5 (MQTT-3.1.2-2 of 5.0) only says the server MAY send a CONNACK with 0x84 and
 * MUST close; the 4-byte v3 form satisfies both. */
Test(connect, unsupported_level_6_gets_v3_refusal_0x01_and_close, .init = start_default,
     .fini = stop, .timeout = 30)
{
    static const uint8_t connect[] = {
        0x10, 0x10,                   /* CONNECT, remaining length 16 */
        0x00, 0x04, 'M', 'Q', 'T', 'T', /* protocol name */
        0x06,                         /* protocol level 6: unsupported */
        0x02,                         /* flags: clean start */
        0x00, 0x3C,                   /* keepalive 60 s */
        0x00, 0x04, 'l', 'v', 'l', '6', /* client id "lvl6" */
    };
    send_connect(MQTT_V311, connect, sizeof(connect));
    struct mqtt_packet packet;
    integ_expect_packet(&broker, &client, MQTT_CONNACK, &packet);
    static const uint8_t connack[] = { 0x20, 0x02, 0x00, 0x01 }; /* unacceptable protocol */
    expect_frame_bytes(connack, sizeof(connack));
    integ_expect_close(&broker, &client);
}

/* v3.1.1 MQTT-3.1.3-8: an empty client id needs clean session 1; else return code 0x02. */
Test(connect, v311_empty_client_id_without_clean_session_is_rejected_0x02,
     .init = start_default, .fini = stop, .timeout = 30)
{
    static const uint8_t connect[] = {
        0x10, 0x0C,                   /* CONNECT, remaining length 12 */
        0x00, 0x04, 'M', 'Q', 'T', 'T', /* protocol name */
        0x04,                         /* level 4: v3.1.1 */
        0x00,                         /* flags: clean session 0 */
        0x00, 0x3C,                   /* keepalive 60 s */
        0x00, 0x00,                   /* client id: empty */
    };
    send_connect(MQTT_V311, connect, sizeof(connect));
    struct mqtt_packet packet;
    integ_expect_packet(&broker, &client, MQTT_CONNACK, &packet);
    static const uint8_t connack[] = { 0x20, 0x02, 0x00, 0x02 }; /* identifier rejected */
    expect_frame_bytes(connack, sizeof(connack));
    integ_expect_close(&broker, &client);
}

Test(connect, v311_empty_client_id_with_clean_session_is_accepted, .init = start_default,
     .fini = stop, .timeout = 30)
{
    struct rawclient_connect_options options = {
        .version = MQTT_V311, .client_id = "", .clean_start = true, .keepalive_s = 60,
    };
    integ_connect(&broker, &client, &options, 0);
}

/* v5 MQTT-3.2.2-16: an empty client id is answered with an Assigned Client Identifier. */
Test(connect, v5_empty_client_id_gets_assigned_client_identifier, .init = start_default,
     .fini = stop, .timeout = 30)
{
    struct rawclient_connect_options options = {
        .version = MQTT_V5, .client_id = "", .clean_start = true, .keepalive_s = 60,
    };
    struct mqtt_packet packet;
    cr_assert_eq(rawclient_connect(&client, broker.port, &options, &packet), RAWCLIENT_OK);
    cr_assert_eq(packet.type, MQTT_CONNACK);
    cr_assert_eq(packet.connack.rc, MQTT_RC_SUCCESS);
    const struct mqtt_props *props = &packet.connack.props;
    cr_assert(mqtt_props_has(props, MQTT_PROP_ASSIGNED_CLIENT_ID), "no assigned client id");
    cr_assert_gt(props->assigned_client_id.len, 0);
    cr_assert(codec_utf8_valid(props->assigned_client_id));
}

/* MQTT-3.1.0-1: the first packet must be CONNECT; anything else closes the connection. The
 * broker does not know the client's version yet, so it sends nothing. */
Test(connect, pingreq_before_connect_is_closed, .init = start_default, .fini = stop,
     .timeout = 30)
{
    static const uint8_t pingreq[] = { 0xC0, 0x00 }; /* PINGREQ, remaining length 0 */
    send_connect(MQTT_V311, pingreq, sizeof(pingreq));
    integ_expect_close(&broker, &client);
    integ_expect_serving(&broker);
}

Test(connect, publish_before_connect_is_closed, .init = start_default, .fini = stop,
     .timeout = 30)
{
    static const uint8_t publish[] = {
        0x30, 0x04,                   /* PUBLISH QoS 0, remaining length 4 */
        0x00, 0x01, 't',              /* topic "t" */
        'x',                          /* payload */
    };
    send_connect(MQTT_V311, publish, sizeof(publish));
    integ_expect_close(&broker, &client);
    integ_expect_serving(&broker);
}

/* v5 MQTT-3.1.0-2: a second CONNECT is a Protocol Error: DISCONNECT 0x82, then close. */
Test(connect, v5_second_connect_gets_disconnect_0x82, .init = start_default, .fini = stop,
     .timeout = 30)
{
    struct rawclient_connect_options options = {
        .version = MQTT_V5, .client_id = "integ-twice", .clean_start = true, .keepalive_s = 60,
    };
    integ_connect(&broker, &client, &options, 0);
    struct rawpacket connect;
    rawclient_build_connect(&options, &connect);
    cr_assert_eq(rawclient_send_packet(&client, &connect), 0);
    integ_expect_disconnect(&broker, &client, MQTT_RC_PROTOCOL_ERROR);
    integ_expect_serving(&broker);
}

/* Regression: a second CONNECT whose level is unknown decodes to 0x84, which is not a
 * DISCONNECT reason code; the broker once asserted while encoding it. Found in review of
 * dispatch.c's fail(); the broker must answer 0x82 and keep serving. */
Test(connect, v5_second_connect_with_unknown_level_gets_disconnect_0x82,
     .init = start_default, .fini = stop, .timeout = 30)
{
    struct rawclient_connect_options options = {
        .version = MQTT_V5, .client_id = "integ-twice-bad", .clean_start = true,
        .keepalive_s = 60,
    };
    integ_connect(&broker, &client, &options, 0);
    static const uint8_t connect_level_6[] = {
        0x10, 0x0d,                   /* CONNECT, remaining length 13 */
        0x00, 0x04, 'M', 'Q', 'T', 'T', /* protocol name */
        0x06,                         /* protocol level 6: unknown */
        0x02,                         /* flags: clean start */
        0x00, 0x3c,                   /* keepalive 60 */
        0x00,                         /* properties length 0 */
        0x00, 0x00,                   /* client id "" */
    };
    cr_assert_eq(rawclient_send(&client, connect_level_6, sizeof(connect_level_6)), 0);
    integ_expect_disconnect(&broker, &client, MQTT_RC_PROTOCOL_ERROR);
    integ_expect_serving(&broker);
}

/* v3.1.1 MQTT-3.1.0-2: a second CONNECT is a protocol violation: close, nothing sent. */
Test(connect, v311_second_connect_is_closed, .init = start_default, .fini = stop,
     .timeout = 30)
{
    struct rawclient_connect_options options = {
        .version = MQTT_V311, .client_id = "integ-twice", .clean_start = true,
        .keepalive_s = 60,
    };
    integ_connect(&broker, &client, &options, 0);
    struct rawpacket connect;
    rawclient_build_connect(&options, &connect);
    cr_assert_eq(rawclient_send_packet(&client, &connect), 0);
    integ_expect_close(&broker, &client);
    integ_expect_serving(&broker);
}

/* keelmq announces its limits rather than relying on the spec defaults (65535 and 0). */
Test(connect, v5_connack_announces_receive_maximum_and_topic_alias_maximum,
     .init = start_default, .fini = stop, .timeout = 30)
{
    struct rawclient_connect_options options = {
        .version = MQTT_V5, .client_id = "integ-props", .clean_start = true, .keepalive_s = 60,
    };
    struct mqtt_packet packet;
    cr_assert_eq(rawclient_connect(&client, broker.port, &options, &packet), RAWCLIENT_OK);
    cr_assert_eq(packet.type, MQTT_CONNACK);
    cr_assert_eq(packet.connack.rc, MQTT_RC_SUCCESS);
    const struct mqtt_props *props = &packet.connack.props;
    cr_assert(mqtt_props_has(props, MQTT_PROP_RECEIVE_MAX), "no receive maximum");
    cr_assert_gt(props->receive_max, 0, "receive maximum 0 is a protocol error");
    cr_assert(mqtt_props_has(props, MQTT_PROP_TOPIC_ALIAS_MAX), "no topic alias maximum");
    cr_assert(!mqtt_props_has(props, MQTT_PROP_SERVER_KEEPALIVE),
              "server keep alive sent although keepalive 60 is within the limit");
}

/* v5 3.2.2.3.14: above mqtt.keepalive_max, the CONNACK carries Server Keep Alive = the max. */
Test(connect, v5_keepalive_above_max_gets_server_keep_alive, .init = start_keepalive_max_10,
     .fini = stop, .timeout = 30)
{
    struct rawclient_connect_options options = {
        .version = MQTT_V5, .client_id = "integ-keepalive", .clean_start = true,
        .keepalive_s = 60,
    };
    struct mqtt_packet packet;
    cr_assert_eq(rawclient_connect(&client, broker.port, &options, &packet), RAWCLIENT_OK);
    cr_assert_eq(packet.type, MQTT_CONNACK);
    cr_assert_eq(packet.connack.rc, MQTT_RC_SUCCESS);
    const struct mqtt_props *props = &packet.connack.props;
    cr_assert(mqtt_props_has(props, MQTT_PROP_SERVER_KEEPALIVE), "no server keep alive");
    cr_assert_eq(props->server_keepalive, 10);
}
