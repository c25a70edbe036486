/* tests/integ/04_session.c - persistent sessions (v3.1.1 clean session 0) across reconnects:
 * redelivery of an unacknowledged QoS 1 message, offline queueing in order, and clean
 * session 1 discarding everything.
 *
 * The subscriber disconnects either by closing its socket (an unclean loss of connection) or
 * with DISCONNECT, after which it waits for the broker's close so the broker has processed
 * the DISCONNECT before anything is published.
 */
#include <criterion/criterion.h>

#include <stdio.h>

#include "tests/helpers/integ.h"

#define OFFLINE_MESSAGE_COUNT 5

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

static void connect_as(struct rawclient *client, const char *client_id, bool clean_start,
                       int session_present)
{
    struct rawclient_connect_options options = {
        .version = MQTT_V311, .client_id = client_id, .clean_start = clean_start,
        .keepalive_s = 60,
    };
    integ_connect(&broker, client, &options, session_present);
}

static void publish_qos1(const char *topic, const char *payload, uint16_t packet_id)
{
    struct rawclient_publish_options options = {
        .topic = topic, .payload = payload, .payload_len = (uint32_t)strlen(payload),
        .qos = 1, .packet_id = packet_id,
    };
    cr_assert_eq(rawclient_publish(&publisher, &options), 0);
    struct mqtt_packet packet;
    integ_expect_packet(&broker, &publisher, MQTT_PUBACK, &packet);
    cr_assert_eq(packet.ack.packet_id, packet_id);
}

/* Sends DISCONNECT and waits for the broker to close (MQTT-3.14.4-1). */
static void disconnect_cleanly(struct rawclient *client)
{
    static const uint8_t disconnect[] = { 0xE0, 0x00 }; /* DISCONNECT, length 0 */
    cr_assert_eq(rawclient_send(client, disconnect, sizeof(disconnect)), 0);
    integ_expect_close(&broker, client);
    rawclient_close(client);
}

/* A persistent subscriber to "session/t" at QoS 1, offline once this returns. */
static void make_offline_subscriber(const char *client_id)
{
    connect_as(&subscriber, client_id, false, 0);
    integ_subscribe(&broker, &subscriber, 1, "session/t", 1, 1);
    disconnect_cleanly(&subscriber);
}

TestSuite(session);

/* MQTT-4.4.0-1 (3.1.1): on reconnect with clean session 0, unacknowledged PUBLISH packets are
 * re-sent with their original packet id and DUP = 1 (MQTT-3.3.1-1). */
Test(session, unacked_qos1_is_redelivered_with_dup_and_same_packet_id, .init = start_default,
     .fini = stop, .timeout = 30)
{
    connect_as(&subscriber, "integ-persistent", false, 0);
    integ_subscribe(&broker, &subscriber, 1, "session/t", 1, 1);
    connect_as(&publisher, "integ-pub", true, 0);
    publish_qos1("session/t", "unacked", 1);

    struct mqtt_packet packet;
    integ_expect_packet(&broker, &subscriber, MQTT_PUBLISH, &packet);
    integ_check_publish(&packet, "session/t", "unacked", 1);
    cr_assert(!packet.publish.dup);
    uint16_t packet_id = packet.publish.packet_id;
    rawclient_close(&subscriber); /* no PUBACK, no DISCONNECT: the connection is just lost */

    connect_as(&subscriber, "integ-persistent", false, 1);
    integ_expect_packet(&broker, &subscriber, MQTT_PUBLISH, &packet);
    integ_check_publish(&packet, "session/t", "unacked", 1);
    cr_assert(packet.publish.dup, "redelivery without DUP");
    cr_assert_eq(packet.publish.packet_id, packet_id, "redelivery with packet id %u, "
                 "expected %u", packet.publish.packet_id, packet_id);
    cr_assert_eq(rawclient_send_ack(&subscriber, MQTT_PUBACK, packet_id), 0);
}

/* MQTT-3.1.2-5 (3.1.1): QoS 1 and 2 messages published while the client is disconnected are
 * stored in its session, and delivered in publish order (MQTT-4.6.0-6) after reconnect. */
Test(session, messages_published_while_offline_are_delivered_in_order, .init = start_default,
     .fini = stop, .timeout = 30)
{
    make_offline_subscriber("integ-offline");
    connect_as(&publisher, "integ-pub", true, 0);
    char payload[32];
    for (uint16_t i = 0; i < OFFLINE_MESSAGE_COUNT; i++) {
        snprintf(payload, sizeof(payload), "offline-%u", i);
        publish_qos1("session/t", payload, (uint16_t)(i + 1));
    }

    connect_as(&subscriber, "integ-offline", false, 1);
    for (uint16_t i = 0; i < OFFLINE_MESSAGE_COUNT; i++) {
        struct mqtt_packet packet;
        integ_expect_packet(&broker, &subscriber, MQTT_PUBLISH, &packet);
        snprintf(payload, sizeof(payload), "offline-%u", i);
        integ_check_publish(&packet, "session/t", payload, 1);
        cr_assert_eq(rawclient_send_ack(&subscriber, MQTT_PUBACK, packet.publish.packet_id), 0);
    }
}

/* MQTT-3.1.2-6 (3.1.1): clean session 1 discards the previous session: session present 0,
 * no queued message, and the old subscription is gone. */
Test(session, clean_session_discards_stored_session, .init = start_default, .fini = stop,
     .timeout = 30)
{
    make_offline_subscriber("integ-discard");
    connect_as(&publisher, "integ-pub", true, 0);
    publish_qos1("session/t", "stale", 1);

    connect_as(&subscriber, "integ-discard", true, 0);
    static const uint8_t pingreq[] = { 0xC0, 0x00 }; /* PINGREQ, length 0 */
    cr_assert_eq(rawclient_send(&subscriber, pingreq, sizeof(pingreq)), 0);
    struct mqtt_packet packet;
    integ_expect_packet(&broker, &subscriber, MQTT_PINGRESP, &packet);
    /* The subscription went with the session: a new message is not delivered either. Its
     * PUBACK comes after routing, so a wrongly kept subscription would already have queued
     * the message before the silence window starts. */
    publish_qos1("session/t", "fresh", 2);
    integ_expect_silence(&broker, &subscriber, 500);
}

/* After a clean session 1 connection ends, nothing is kept: clean 0 starts without a
 * session (MQTT-3.2.2-2 of 3.1.1: session present 0). */
Test(session, clean_session_leaves_no_session_behind, .init = start_default, .fini = stop,
     .timeout = 30)
{
    connect_as(&subscriber, "integ-transient", true, 0);
    integ_subscribe(&broker, &subscriber, 1, "session/t", 1, 1);
    disconnect_cleanly(&subscriber);
    connect_as(&subscriber, "integ-transient", false, 0);
}
