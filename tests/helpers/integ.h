/* tests/helpers/integ.h - criterion assertions shared by the tests/integ/ suites.
 *
 * Wraps tests/helpers/broker.h and rawclient.h in checks that fail the test with a useful
 * message (what was expected, what came, and the broker's log). Each integ test file owns one
 * `static struct broker` started in .init and stopped in .fini. Test code only.
 */
#ifndef KEELMQ_TESTS_HELPERS_INTEG_H
#define KEELMQ_TESTS_HELPERS_INTEG_H

#include <criterion/criterion.h>

#include "tests/helpers/broker.h"
#include "tests/helpers/rawclient.h"

/* Starts `broker` with `options` (may be NULL) or fails the test. */
static inline void integ_start(struct broker *broker, const struct broker_options *options)
{
    int rc = broker_start(broker, options);
    cr_assert_eq(rc, 0, "broker did not start: %s\n--- broker log ---\n%s", broker->error,
                 broker_log(broker));
}

/* Stops `broker`: it must exit by itself with status 0 on SIGTERM. */
static inline void integ_stop(struct broker *broker)
{
    int rc = broker_stop(broker);
    cr_expect_eq(rc, 0, "broker did not stop cleanly: %s\n--- broker log ---\n%s",
                 broker->error, broker_log(broker));
}

/* Receives one packet of `type` within the default timeout into `out`, or fails. */
static inline void integ_expect_packet(struct broker *broker, struct rawclient *client,
                                       uint8_t type, struct mqtt_packet *out)
{
    int rc = rawclient_recv(client, RAWCLIENT_TIMEOUT_MS, out);
    cr_assert_eq(rc, RAWCLIENT_OK, "expected %s, got: %s (decode rc 0x%02x)\n--- broker log "
                 "---\n%s", rawclient_type_name(type), rawclient_result_name(rc),
                 client->decode_rc, broker_log(broker));
    cr_assert_eq(out->type, type, "expected %s, got %s\n--- broker log ---\n%s",
                 rawclient_type_name(type), rawclient_type_name(out->type), broker_log(broker));
}

/* The peer closes within the default timeout without sending anything more. */
static inline void integ_expect_close(struct broker *broker, struct rawclient *client)
{
    int rc = rawclient_await_close(client, RAWCLIENT_TIMEOUT_MS);
    cr_assert_eq(rc, RAWCLIENT_CLOSED, "expected the broker to close the connection, got: %s "
                 "(first byte 0x%02x)\n--- broker log ---\n%s", rawclient_result_name(rc),
                 client->in_len > 0 ? client->in[0] : 0, broker_log(broker));
}

/* v5: a DISCONNECT with reason code `reason`, then the close. */
static inline void integ_expect_disconnect(struct broker *broker, struct rawclient *client,
                                           uint8_t reason)
{
    struct mqtt_packet packet;
    integ_expect_packet(broker, client, MQTT_DISCONNECT, &packet);
    cr_assert_eq(packet.reason.rc, reason, "expected DISCONNECT 0x%02x, got 0x%02x\n--- broker "
                 "log ---\n%s", reason, packet.reason.rc, broker_log(broker));
    integ_expect_close(broker, client);
}

/* Nothing arrives for `quiet_ms` (used to prove that something is NOT delivered). */
static inline void integ_expect_silence(struct broker *broker, struct rawclient *client,
                                        uint32_t quiet_ms)
{
    struct mqtt_packet packet;
    int rc = rawclient_recv(client, quiet_ms, &packet);
    cr_assert_eq(rc, RAWCLIENT_TIMEOUT, "expected nothing, got: %s (%s)\n--- broker log ---\n%s",
                 rawclient_result_name(rc), rc == RAWCLIENT_OK ? rawclient_type_name(packet.type)
                 : "-", broker_log(broker));
}

/* Opens a client, sends CONNECT and checks that CONNACK accepts it (session present as
 * `session_present` when it is 0 or 1; pass -1 to skip that check). */
static inline void integ_connect(struct broker *broker, struct rawclient *client,
                                 const struct rawclient_connect_options *options,
                                 int session_present)
{
    struct mqtt_packet packet;
    int rc = rawclient_connect(client, broker->port, options, &packet);
    cr_assert_eq(rc, RAWCLIENT_OK, "CONNECT got no CONNACK: %s (decode rc 0x%02x)\n--- broker "
                 "log ---\n%s", rawclient_result_name(rc), client->decode_rc,
                 broker_log(broker));
    cr_assert_eq(packet.type, MQTT_CONNACK, "expected CONNACK, got %s",
                 rawclient_type_name(packet.type));
    cr_assert_eq(packet.connack.rc, 0, "CONNACK refused: 0x%02x\n--- broker log ---\n%s",
                 packet.connack.rc, broker_log(broker));
    if (session_present >= 0)
        cr_assert_eq(packet.connack.session_present, session_present == 1,
                     "session present %d, expected %d", packet.connack.session_present,
                     session_present);
}

/* Subscribes `client` to `filter` and checks the SUBACK grants `granted_qos`. */
static inline void integ_subscribe(struct broker *broker, struct rawclient *client,
                                   uint16_t packet_id, const char *filter, uint8_t qos,
                                   uint8_t granted_qos)
{
    struct mqtt_packet packet;
    int rc = rawclient_subscribe(client, packet_id, filter, qos, &packet);
    cr_assert_eq(rc, RAWCLIENT_OK, "SUBSCRIBE got no answer: %s\n--- broker log ---\n%s",
                 rawclient_result_name(rc), broker_log(broker));
    cr_assert_eq(packet.type, MQTT_SUBACK, "expected SUBACK, got %s",
                 rawclient_type_name(packet.type));
    cr_assert_eq(packet.suback.packet_id, packet_id);
    cr_assert_eq(packet.suback.rcs.len, 1);
    cr_assert_eq(packet.suback.rcs.ptr[0], granted_qos, "SUBACK granted 0x%02x, expected %u",
                 packet.suback.rcs.ptr[0], granted_qos);
}

/* A fresh client still gets served: the broker survived whatever the test did. */
static inline void integ_expect_serving(struct broker *broker)
{
    cr_assert(broker_is_alive(broker),
              "broker process died\n--- broker log ---\n%s", broker_log(broker));
    cr_assert(rawclient_is_serving(broker->port), "broker no longer serves new clients\n--- "
              "broker log ---\n%s", broker_log(broker));
}

/* Checks that `packet` is a PUBLISH of `topic` with `payload` at `qos`. */
static inline void integ_check_publish(const struct mqtt_packet *packet, const char *topic,
                                       const char *payload, uint8_t qos)
{
    cr_assert_eq(packet->type, MQTT_PUBLISH, "expected PUBLISH, got %s",
                 rawclient_type_name(packet->type));
    cr_assert(slice_eq(packet->publish.topic, slice_from_cstr(topic)), "wrong topic");
    cr_assert(slice_eq(packet->publish.payload, slice_from_cstr(payload)),
              "wrong payload: '%.*s', expected '%s'", (int)packet->publish.payload.len,
              (const char *)packet->publish.payload.ptr, payload);
    cr_assert_eq(packet->publish.qos, qos, "PUBLISH qos %u, expected %u", packet->publish.qos,
                 qos);
}

#endif
