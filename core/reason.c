/* core/reason.c - Reason Strings for failure packets (core/reason.h). Pure. */
#include "core/reason.h"

#include <string.h>

#include "core/codec.h"
#include "core/mqtt.h"

const char *reason_text(uint8_t rc)
{
    switch (rc) {
    case MQTT_RC_UNSPECIFIED: return "unspecified error";
    case MQTT_RC_MALFORMED: return "malformed packet";
    case MQTT_RC_PROTOCOL_ERROR: return "protocol error";
    case MQTT_RC_IMPL_SPECIFIC: return "implementation specific error";
    case MQTT_RC_UNSUPPORTED_VERSION: return "unsupported protocol version";
    case MQTT_RC_CLIENT_ID_INVALID: return "client identifier not valid";
    case MQTT_RC_BAD_USER_OR_PASSWORD: return "bad user name or password";
    case MQTT_RC_NOT_AUTHORIZED: return "not authorized";
    case MQTT_RC_SERVER_UNAVAILABLE: return "server unavailable";
    case MQTT_RC_SERVER_BUSY: return "server busy";
    case MQTT_RC_BANNED: return "banned";
    case MQTT_RC_SERVER_SHUTTING_DOWN: return "server shutting down";
    case MQTT_RC_BAD_AUTH_METHOD: return "authentication method not supported";
    case MQTT_RC_KEEPALIVE_TIMEOUT: return "keep alive timeout";
    case MQTT_RC_SESSION_TAKEN_OVER: return "session taken over";
    case MQTT_RC_TOPIC_FILTER_INVALID: return "topic filter invalid";
    case MQTT_RC_TOPIC_NAME_INVALID: return "topic name invalid";
    case MQTT_RC_PACKET_ID_IN_USE: return "packet identifier in use";
    case MQTT_RC_PACKET_ID_NOT_FOUND: return "packet identifier not found";
    case MQTT_RC_RECEIVE_MAX_EXCEEDED: return "receive maximum exceeded";
    case MQTT_RC_TOPIC_ALIAS_INVALID: return "topic alias out of range";
    case MQTT_RC_PACKET_TOO_LARGE: return "max packet size exceeded";
    case MQTT_RC_MESSAGE_RATE_TOO_HIGH: return "message rate too high";
    case MQTT_RC_QUOTA_EXCEEDED: return "quota exceeded";
    case MQTT_RC_ADMIN_ACTION: return "administrative action";
    case MQTT_RC_PAYLOAD_FORMAT_INVALID: return "payload format invalid";
    case MQTT_RC_RETAIN_NOT_SUPPORTED: return "retain not supported";
    case MQTT_RC_QOS_NOT_SUPPORTED: return "qos not supported";
    case MQTT_RC_USE_ANOTHER_SERVER: return "use another server";
    case MQTT_RC_SERVER_MOVED: return "server moved";
    case MQTT_RC_SHARED_SUB_NOT_SUPPORTED: return "shared subscriptions not supported";
    case MQTT_RC_CONNECTION_RATE_EXCEEDED: return "connection rate exceeded";
    case MQTT_RC_MAX_CONNECT_TIME: return "maximum connect time";
    case MQTT_RC_SUB_IDS_NOT_SUPPORTED: return "subscription identifiers not supported";
    case MQTT_RC_WILDCARD_SUBS_NOT_SUPPORTED: return "wildcard subscriptions not supported";
    default: return NULL;
    }
}

/* The first failing reason code among `rcs`, or 0. */
static uint8_t first_failure(struct slice rcs)
{
    for (uint32_t i = 0; i < rcs.len; i++)
        if (rcs.ptr[i] >= 0x80)
            return rcs.ptr[i];
    return 0;
}

bool reason_is_failure(const struct mqtt_packet *pkt)
{
    switch (pkt->type) {
    case MQTT_CONNACK:
        return pkt->connack.rc >= 0x80;
    case MQTT_DISCONNECT:
        return pkt->reason.rc >= 0x80;
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
        return pkt->ack.rc >= 0x80;
    case MQTT_SUBACK:
    case MQTT_UNSUBACK:
        return first_failure(pkt->suback.rcs) != 0;
    default:
        return false;
    }
}

bool reason_attach(struct mqtt_packet *pkt, bool problem_info, uint32_t max_packet)
{
    ASSERT(pkt != NULL);
    struct mqtt_props *props;
    uint8_t rc;
    bool always = false; /* CONNACK and DISCONNECT may carry it whatever the client asked */
    switch (pkt->type) {
    case MQTT_CONNACK:
        props = &pkt->connack.props;
        rc = pkt->connack.rc;
        always = true;
        break;
    case MQTT_DISCONNECT:
        props = &pkt->reason.props;
        rc = pkt->reason.rc;
        always = true;
        break;
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
        props = &pkt->ack.props;
        rc = pkt->ack.rc;
        break;
    case MQTT_SUBACK:
    case MQTT_UNSUBACK:
        props = &pkt->suback.props;
        rc = first_failure(pkt->suback.rcs);
        break;
    default:
        return false;
    }
    if (!always && !problem_info)
        return false; /* MQTT-3.1.2-29 */
    const char *text = reason_text(rc);
    if (text == NULL || mqtt_props_has(props, MQTT_PROP_REASON_STRING))
        return false;
    props->present |= 1ull << MQTT_PROP_REASON_STRING;
    props->reason_string = (struct slice){ (const uint8_t *)text, (uint32_t)strlen(text) };
    uint32_t size = codec_size(pkt, MQTT_V5);
    if (size == 0 || size > max_packet) {
        props->present &= ~(1ull << MQTT_PROP_REASON_STRING);
        props->reason_string = (struct slice){ NULL, 0 };
        return false;
    }
    return true;
}
