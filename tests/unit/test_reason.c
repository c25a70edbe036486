/* tests/unit/test_reason.c - Reason Strings on failure packets (core/reason.c). */
#include <criterion/criterion.h>
#include <string.h>

#include "core/codec.h"
#include "core/reason.h"

static bool has_reason(const struct mqtt_props *p, const char *text)
{
    if (!mqtt_props_has(p, MQTT_PROP_REASON_STRING))
        return text == NULL;
    return text != NULL && p->reason_string.len == strlen(text) &&
           memcmp(p->reason_string.ptr, text, p->reason_string.len) == 0;
}

Test(reason, failed_ack_gets_a_string_only_with_problem_information)
{
    struct mqtt_packet pkt = { .type = MQTT_PUBCOMP };
    pkt.ack.packet_id = 7;
    pkt.ack.rc = MQTT_RC_PACKET_ID_NOT_FOUND;
    cr_assert(reason_is_failure(&pkt));
    cr_assert_not(reason_attach(&pkt, false, 1000));
    cr_assert(has_reason(&pkt.ack.props, NULL));
    cr_assert(reason_attach(&pkt, true, 1000));
    cr_assert(has_reason(&pkt.ack.props, "packet identifier not found"));
}

Test(reason, success_gets_nothing)
{
    struct mqtt_packet pkt = { .type = MQTT_PUBACK };
    pkt.ack.packet_id = 7;
    cr_assert_not(reason_is_failure(&pkt));
    cr_assert_not(reason_attach(&pkt, true, 1000));
    uint8_t rcs[] = { 0x00, 0x11 };
    struct mqtt_packet un = { .type = MQTT_UNSUBACK };
    un.suback.packet_id = 1;
    un.suback.rcs = (struct slice){ rcs, 2 };
    cr_assert_not(reason_is_failure(&un)); /* 0x11 No subscription existed is no failure */
}

Test(reason, connack_and_disconnect_ignore_request_problem_information)
{
    struct mqtt_packet c = { .type = MQTT_CONNACK };
    c.connack.rc = MQTT_RC_CLIENT_ID_INVALID;
    cr_assert(reason_attach(&c, false, 1000));
    cr_assert(has_reason(&c.connack.props, "client identifier not valid"));
    struct mqtt_packet d = { .type = MQTT_DISCONNECT };
    d.reason.rc = MQTT_RC_TOPIC_ALIAS_INVALID;
    cr_assert(reason_attach(&d, false, 1000));
    cr_assert(has_reason(&d.reason.props, "topic alias out of range"));
}

Test(reason, suback_names_its_first_failure)
{
    uint8_t rcs[] = { 0x01, MQTT_RC_QUOTA_EXCEEDED, MQTT_RC_TOPIC_FILTER_INVALID };
    struct mqtt_packet pkt = { .type = MQTT_SUBACK };
    pkt.suback.packet_id = 3;
    pkt.suback.rcs = (struct slice){ rcs, 3 };
    cr_assert(reason_attach(&pkt, true, 1000));
    cr_assert(has_reason(&pkt.suback.props, "quota exceeded"));
}

Test(reason, string_is_dropped_past_the_client_maximum_packet_size)
{
    struct mqtt_packet pkt = { .type = MQTT_PUBCOMP };
    pkt.ack.packet_id = 7;
    pkt.ack.rc = MQTT_RC_PACKET_ID_NOT_FOUND;
    /* 2 fixed header + 2 id + 1 rc + 1 props length + 3 + 27 string bytes = 36. */
    cr_assert_not(reason_attach(&pkt, true, 35));
    cr_assert(has_reason(&pkt.ack.props, NULL));
    cr_assert_eq(codec_size(&pkt, MQTT_V5), 5); /* rc 0x92 alone: no property length */
    cr_assert(reason_attach(&pkt, true, 36));
    cr_assert_eq(codec_size(&pkt, MQTT_V5), 36);
}

Test(reason, an_existing_string_is_kept)
{
    struct mqtt_packet pkt = { .type = MQTT_DISCONNECT };
    pkt.reason.rc = MQTT_RC_SERVER_BUSY;
    pkt.reason.props.present = 1ull << MQTT_PROP_REASON_STRING;
    pkt.reason.props.reason_string = (struct slice){ (const uint8_t *)"mine", 4 };
    cr_assert_not(reason_attach(&pkt, true, 1000));
    cr_assert(has_reason(&pkt.reason.props, "mine"));
}

Test(reason, every_failure_code_has_a_short_text)
{
    for (unsigned rc = 0x80; rc <= 0xA2; rc++) {
        const char *text = reason_text((uint8_t)rc);
        cr_assert(text != NULL, "0x%02x", rc);
        cr_assert(strlen(text) > 0 && strlen(text) < 48, "0x%02x", rc);
    }
    cr_assert_null(reason_text(0x00));
    cr_assert_null(reason_text(0x10));
}
