/* tests/integ/03_qos.c - QoS 1 and QoS 2 handshakes in both directions, QoS downgrade, the
 * QoS 2 exactly-once guarantee against a duplicate PUBLISH, and PUBREL for an unknown id.
 *
 * Clients are v3.1.1 unless the test is about a v5 reason code. Where a test must prove that
 * something was NOT delivered, the publisher follows up with a marker message and the
 * subscriber must see the marker next (per-publisher ordering), instead of waiting on a timer.
 */
#include <criterion/criterion.h>

#include "tests/helpers/integ.h"

static struct broker broker;
static struct rawclient publisher;
static struct rawclient subscriber;

static void start_default(void)
{
    integ_start(&broker, NULL);
}

static void stop(void)
{
    rawclient_close(&publisher);
    rawclient_close(&subscriber);
    integ_stop(&broker);
}

static void connect_as(struct rawclient *client, uint8_t version, const char *client_id)
{
    struct rawclient_connect_options options = {
        .version = version, .client_id = client_id, .clean_start = true, .keepalive_s = 60,
    };
    integ_connect(&broker, client, &options, 0);
}

static void publish(struct rawclient *client, const char *topic, const char *payload,
                    uint8_t qos, uint16_t packet_id, bool dup)
{
    struct rawclient_publish_options options = {
        .topic = topic, .payload = payload, .payload_len = (uint32_t)strlen(payload),
        .qos = qos, .packet_id = packet_id, .dup = dup,
    };
    cr_assert_eq(rawclient_publish(client, &options), 0);
}

/* Receives an ack of `type` for `packet_id` on `client` and returns its reason code. */
static uint8_t expect_ack(struct rawclient *client, uint8_t type, uint16_t packet_id)
{
    struct mqtt_packet packet;
    integ_expect_packet(&broker, client, type, &packet);
    cr_assert_eq(packet.ack.packet_id, packet_id, "%s for packet id %u, expected %u",
                 rawclient_type_name(type), packet.ack.packet_id, packet_id);
    if (type == MQTT_PUBREL)
        cr_assert_eq(client->frame[0], 0x62, "PUBREL first byte 0x%02x", client->frame[0]);
    return packet.ack.rc;
}

/* Publishes at QoS 2 and completes the publisher's side of the handshake. */
static void publish_qos2_complete(const char *topic, const char *payload, uint16_t packet_id)
{
    publish(&publisher, topic, payload, 2, packet_id, false);
    expect_ack(&publisher, MQTT_PUBREC, packet_id);
    cr_assert_eq(rawclient_send_ack(&publisher, MQTT_PUBREL, packet_id), 0);
    expect_ack(&publisher, MQTT_PUBCOMP, packet_id);
}

TestSuite(qos);

Test(qos, publisher_qos1_publish_gets_puback, .init = start_default, .fini = stop,
     .timeout = 30)
{
    connect_as(&publisher, MQTT_V311, "integ-pub");
    publish(&publisher, "qos/one", "hello", 1, 7, false);
    expect_ack(&publisher, MQTT_PUBACK, 7);
}

Test(qos, publisher_qos2_publish_gets_pubrec_then_pubcomp, .init = start_default,
     .fini = stop, .timeout = 30)
{
    connect_as(&publisher, MQTT_V311, "integ-pub");
    publish(&publisher, "qos/two", "hello", 2, 9, false);
    expect_ack(&publisher, MQTT_PUBREC, 9);
    cr_assert_eq(rawclient_send_ack(&publisher, MQTT_PUBREL, 9), 0);
    expect_ack(&publisher, MQTT_PUBCOMP, 9);
}

Test(qos, subscriber_receives_qos1_and_pubacks, .init = start_default, .fini = stop,
     .timeout = 30)
{
    connect_as(&subscriber, MQTT_V311, "integ-sub");
    integ_subscribe(&broker, &subscriber, 1, "qos/one", 1, 1);
    connect_as(&publisher, MQTT_V311, "integ-pub");
    publish(&publisher, "qos/one", "m1", 1, 3, false);
    expect_ack(&publisher, MQTT_PUBACK, 3);
    struct mqtt_packet packet;
    integ_expect_packet(&broker, &subscriber, MQTT_PUBLISH, &packet);
    integ_check_publish(&packet, "qos/one", "m1", 1);
    cr_assert_neq(packet.publish.packet_id, 0);
    cr_assert(!packet.publish.dup, "first delivery has DUP set");
    cr_assert_eq(rawclient_send_ack(&subscriber, MQTT_PUBACK, packet.publish.packet_id), 0);
}

Test(qos, subscriber_receives_qos2_with_full_handshake, .init = start_default, .fini = stop,
     .timeout = 30)
{
    connect_as(&subscriber, MQTT_V311, "integ-sub");
    integ_subscribe(&broker, &subscriber, 1, "qos/two", 2, 2);
    connect_as(&publisher, MQTT_V311, "integ-pub");
    publish_qos2_complete("qos/two", "m2", 4);
    struct mqtt_packet packet;
    integ_expect_packet(&broker, &subscriber, MQTT_PUBLISH, &packet);
    integ_check_publish(&packet, "qos/two", "m2", 2);
    uint16_t packet_id = packet.publish.packet_id;
    cr_assert_neq(packet_id, 0);
    cr_assert_eq(rawclient_send_ack(&subscriber, MQTT_PUBREC, packet_id), 0);
    expect_ack(&subscriber, MQTT_PUBREL, packet_id);
    cr_assert_eq(rawclient_send_ack(&subscriber, MQTT_PUBCOMP, packet_id), 0);
    /* The handshake is over: the connection still works and nothing is resent. */
    static const uint8_t pingreq[] = { 0xC0, 0x00 }; /* PINGREQ, length 0 */
    cr_assert_eq(rawclient_send(&subscriber, pingreq, sizeof(pingreq)), 0);
    integ_expect_packet(&broker, &subscriber, MQTT_PINGRESP, &packet);
}

/* MQTT-3.8.4-6 (3.1.1) / 3.8.4 (5.0): delivered QoS = min(published QoS, granted QoS). */
Test(qos, qos2_publish_is_downgraded_to_qos0_subscription, .init = start_default,
     .fini = stop, .timeout = 30)
{
    connect_as(&subscriber, MQTT_V311, "integ-sub");
    integ_subscribe(&broker, &subscriber, 1, "qos/down", 0, 0);
    connect_as(&publisher, MQTT_V311, "integ-pub");
    publish_qos2_complete("qos/down", "m0", 5);
    struct mqtt_packet packet;
    integ_expect_packet(&broker, &subscriber, MQTT_PUBLISH, &packet);
    integ_check_publish(&packet, "qos/down", "m0", 0);
    cr_assert_eq(packet.publish.packet_id, 0);
}

Test(qos, qos2_publish_is_downgraded_to_qos1_subscription, .init = start_default,
     .fini = stop, .timeout = 30)
{
    connect_as(&subscriber, MQTT_V311, "integ-sub");
    integ_subscribe(&broker, &subscriber, 1, "qos/down", 1, 1);
    connect_as(&publisher, MQTT_V311, "integ-pub");
    publish_qos2_complete("qos/down", "m1", 6);
    struct mqtt_packet packet;
    integ_expect_packet(&broker, &subscriber, MQTT_PUBLISH, &packet);
    integ_check_publish(&packet, "qos/down", "m1", 1);
    cr_assert_eq(rawclient_send_ack(&subscriber, MQTT_PUBACK, packet.publish.packet_id), 0);
}

/* MQTT-4.3.3-9 (3.1.1) / 4.3.3 (5.0): until PUBREL, a PUBLISH with the same packet id must not
 * cause onward delivery again; the receiver answers it with PUBREC again. */
Test(qos, qos2_duplicate_publish_before_pubrel_is_delivered_once, .init = start_default,
     .fini = stop, .timeout = 30)
{
    connect_as(&subscriber, MQTT_V311, "integ-sub");
    integ_subscribe(&broker, &subscriber, 1, "qos/once", 0, 0);
    connect_as(&publisher, MQTT_V311, "integ-pub");
    publish(&publisher, "qos/once", "once", 2, 8, false);
    expect_ack(&publisher, MQTT_PUBREC, 8);
    publish(&publisher, "qos/once", "once", 2, 8, true); /* retransmission, DUP = 1 */
    expect_ack(&publisher, MQTT_PUBREC, 8);
    cr_assert_eq(rawclient_send_ack(&publisher, MQTT_PUBREL, 8), 0);
    expect_ack(&publisher, MQTT_PUBCOMP, 8);
    publish(&publisher, "qos/once", "marker", 1, 9, false);
    expect_ack(&publisher, MQTT_PUBACK, 9);

    struct mqtt_packet packet;
    integ_expect_packet(&broker, &subscriber, MQTT_PUBLISH, &packet);
    integ_check_publish(&packet, "qos/once", "once", 0);
    integ_expect_packet(&broker, &subscriber, MQTT_PUBLISH, &packet);
    integ_check_publish(&packet, "qos/once", "marker", 0);
}

/* MQTT-4.3.3-11 / 3.1.1 4.3.3: PUBREL always gets PUBCOMP, even for an id the broker does
 * not know (e.g. lost state); on v5 with reason 0x92 Packet Identifier not found. */
Test(qos, v311_pubrel_for_unknown_id_gets_pubcomp, .init = start_default, .fini = stop,
     .timeout = 30)
{
    connect_as(&publisher, MQTT_V311, "integ-pub");
    cr_assert_eq(rawclient_send_ack(&publisher, MQTT_PUBREL, 77), 0);
    expect_ack(&publisher, MQTT_PUBCOMP, 77);
}

Test(qos, v5_pubrel_for_unknown_id_gets_pubcomp_0x92, .init = start_default, .fini = stop,
     .timeout = 30)
{
    connect_as(&publisher, MQTT_V5, "integ-pub");
    cr_assert_eq(rawclient_send_ack(&publisher, MQTT_PUBREL, 77), 0);
    uint8_t reason = expect_ack(&publisher, MQTT_PUBCOMP, 77);
    cr_assert_eq(reason, MQTT_RC_PACKET_ID_NOT_FOUND, "PUBCOMP reason 0x%02x", reason);
}
