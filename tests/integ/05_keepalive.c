/* tests/integ/05_keepalive.c - keep alive: an idle client is cut after 1.5 x its keepalive,
 * PINGREQ gets PINGRESP, and a client that pings in time stays connected.
 *
 * Times are measured on the monotonic clock around the broker's own close; the only sleep is
 * the pinging client's own schedule, not synchronisation with the broker.
 */
#include <criterion/criterion.h>

#include <time.h>

#include "tests/helpers/integ.h"

#define IDLE_CLOSE_MIN_MS 1000u  /* the keepalive itself: closing earlier is wrong */
#define IDLE_CLOSE_MAX_MS 3000u  /* 1.5 s plus timer granularity and scheduling slack */
#define PING_INTERVAL_MS 500u
#define PING_DURATION_MS 3000u

static struct broker broker;
static struct rawclient client;

static void start_default(void)
{
    integ_start(&broker, NULL);
}

static void stop(void)
{
    rawclient_close(&client);
    integ_stop(&broker);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void connect_with_keepalive(uint8_t version, uint16_t keepalive_s)
{
    struct rawclient_connect_options options = {
        .version = version, .client_id = "integ-keepalive", .clean_start = true,
        .keepalive_s = keepalive_s,
    };
    integ_connect(&broker, &client, &options, 0);
}

static void ping(void)
{
    static const uint8_t pingreq[] = { 0xC0, 0x00 }; /* PINGREQ, length 0 */
    cr_assert_eq(rawclient_send(&client, pingreq, sizeof(pingreq)), 0);
    struct mqtt_packet packet;
    integ_expect_packet(&broker, &client, MQTT_PINGRESP, &packet);
    static const uint8_t pingresp[] = { 0xD0, 0x00 }; /* PINGRESP, length 0 */
    cr_assert_eq(client.frame_len, sizeof(pingresp));
    cr_assert_eq(client.frame[0], pingresp[0]);
    cr_assert_eq(client.frame[1], pingresp[1]);
}

static void check_idle_close_time(uint64_t start_ms)
{
    uint64_t elapsed_ms = now_ms() - start_ms;
    cr_assert_geq(elapsed_ms, IDLE_CLOSE_MIN_MS, "closed after %lu ms: before the keepalive",
                  (unsigned long)elapsed_ms);
    cr_assert_leq(elapsed_ms, IDLE_CLOSE_MAX_MS, "closed after %lu ms: more than 1.5 x "
                  "keepalive plus slack", (unsigned long)elapsed_ms);
}

TestSuite(keepalive);

/* 3.1.1 MQTT-3.1.2-24: no packet within 1.5 x keepalive: the server disconnects. */
Test(keepalive, v311_idle_client_is_closed_after_one_and_a_half_keepalive,
     .init = start_default, .fini = stop, .timeout = 30)
{
    connect_with_keepalive(MQTT_V311, 1);
    uint64_t start_ms = now_ms();
    int rc = rawclient_await_close(&client, 5000);
    cr_assert_eq(rc, RAWCLIENT_CLOSED, "idle client not closed: %s\n--- broker log ---\n%s",
                 rawclient_result_name(rc), broker_log(&broker));
    check_idle_close_time(start_ms);
}

/* 5.0 3.1.2.10: the same, and the broker may say why first with DISCONNECT 0x8D. */
Test(keepalive, v5_idle_client_is_closed_after_one_and_a_half_keepalive,
     .init = start_default, .fini = stop, .timeout = 30)
{
    connect_with_keepalive(MQTT_V5, 1);
    uint64_t start_ms = now_ms();
    int rc = rawclient_await_close(&client, 5000);
    if (rc == RAWCLIENT_DATA) {
        struct mqtt_packet packet;
        integ_expect_packet(&broker, &client, MQTT_DISCONNECT, &packet);
        cr_assert_eq(packet.reason.rc, MQTT_RC_KEEPALIVE_TIMEOUT, "DISCONNECT 0x%02x",
                     packet.reason.rc);
        rc = rawclient_await_close(&client, 5000);
    }
    cr_assert_eq(rc, RAWCLIENT_CLOSED, "idle client not closed: %s\n--- broker log ---\n%s",
                 rawclient_result_name(rc), broker_log(&broker));
    check_idle_close_time(start_ms);
}

Test(keepalive, pingreq_gets_pingresp, .init = start_default, .fini = stop, .timeout = 30)
{
    connect_with_keepalive(MQTT_V311, 60);
    ping();
}

/* Pinging every 0.5 s with keepalive 1 s keeps the connection for 3 s (and beyond). */
Test(keepalive, client_pinging_every_half_second_stays_connected, .init = start_default,
     .fini = stop, .timeout = 30)
{
    connect_with_keepalive(MQTT_V311, 1);
    uint64_t end_ms = now_ms() + PING_DURATION_MS;
    while (now_ms() < end_ms) {
        struct timespec interval = { .tv_nsec = PING_INTERVAL_MS * 1000000l };
        nanosleep(&interval, NULL); /* the client's own ping schedule */
        ping();
    }
    cr_assert_eq(rawclient_await_close(&client, 0), RAWCLIENT_TIMEOUT, "connection closed");
    ping();
}
