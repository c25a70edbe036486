/* core/codec.h - MQTT 3.1, 3.1.1 and 5.0 packet framing, decoding and encoding.
 *
 * The decoder is zero-copy: every struct slice in a decoded packet borrows from the frame the
 * caller passed in, and is valid only as long as those bytes are (a receive buffer until it goes
 * back to the ring, or a connection's reassembly buffer). Copy anything that must outlive it.
 * The decoder validates strictly and never reads outside [frame, frame + len).
 * The encoder writes into caller memory sized with codec_size(). No allocation anywhere.
 * Pure functions: any thread may call them.
 * Implemented in core/codec.c (packets) and core/codec_props.c (properties, UTF-8, varints;
 * core/codec_props.h is private to those two files).
 */
#ifndef KEELMQ_CORE_CODEC_H
#define KEELMQ_CORE_CODEC_H

#include "core/base.h"
#include "core/mqtt.h"

/* Every 5.0 property. `present` has bit (1 << id) set for each property that was decoded (or,
 * for encoding, that must be written). Strings and binary data are slices. User properties stay
 * in their wire form inside `raw` and are walked with codec_user_prop_next(), which keeps their
 * order and needs no memory. */
struct mqtt_props {
    uint64_t present;
    struct slice raw; /* decoded: the whole property block (without its length); encode: unused */

    uint8_t payload_format;
    uint8_t request_problem_info;
    uint8_t request_response_info;
    uint8_t max_qos;
    uint8_t retain_available;
    uint8_t wildcard_sub_available;
    uint8_t sub_id_available;
    uint8_t shared_sub_available;
    uint16_t server_keepalive;
    uint16_t receive_max;
    uint16_t topic_alias_max;
    uint16_t topic_alias;
    uint32_t message_expiry;
    uint32_t session_expiry;
    uint32_t will_delay;
    uint32_t max_packet_size;
    /* Decoded: the first subscription identifier and how many there were (a server->client
     * PUBLISH may carry several; walk `raw` with codec_prop_next() for the rest).
     * Encoded: if `sub_ids` is non-NULL, `sub_id_count` identifiers from it are written
     * (the MQTT_PROP_SUBSCRIPTION_ID bit in `present` is then ignored). */
    uint32_t sub_id;
    uint32_t sub_id_count;
    const uint32_t *sub_ids;

    struct slice content_type;
    struct slice response_topic;
    struct slice correlation_data;
    struct slice assigned_client_id;
    struct slice auth_method;
    struct slice auth_data;
    struct slice response_info;
    struct slice server_reference;
    struct slice reason_string;
    /* Decoded: count of user properties in `raw`. Encode: user properties are copied in order
     * from `user_props_raw`, a property block in wire form (as in a decoded `raw`) of which only
     * the 0x26 entries are written; empty slice means none. */
    uint32_t user_prop_count;
    struct slice user_props_raw;
};

static inline bool mqtt_props_has(const struct mqtt_props *p, enum mqtt_prop id)
{
    return (p->present >> id) & 1u;
}

struct mqtt_will {
    uint8_t qos;
    bool retain;
    struct slice topic;
    struct slice payload;
    struct mqtt_props props;
};

struct mqtt_connect {
    uint8_t version;        /* enum mqtt_version; the raw level byte when unsupported */
    struct slice protocol_name;
    bool clean_start;       /* clean session (v3) / clean start (v5) */
    bool has_will;
    bool has_username;
    bool has_password;
    uint16_t keepalive_s;
    struct slice client_id;
    struct slice username;
    struct slice password;
    struct mqtt_will will;
    struct mqtt_props props;
};

struct mqtt_connack {
    bool session_present;
    uint8_t rc;             /* v5 reason code, or v3 return code when encoding for v3 */
    struct mqtt_props props;
};

struct mqtt_publish {
    uint8_t qos;
    bool dup;
    bool retain;
    uint16_t packet_id;     /* 0 for QoS 0 */
    struct slice topic;     /* may be empty on v5 when a topic alias is present */
    struct mqtt_props props;
    struct slice payload;
};

/* PUBACK, PUBREC, PUBREL, PUBCOMP. On v5, rc and props are omitted on the wire when rc is 0
 * and there are no properties (remaining length 2), as the spec allows. */
struct mqtt_ack {
    uint16_t packet_id;
    uint8_t rc;
    struct mqtt_props props;
};

/* SUBSCRIBE and UNSUBSCRIBE. `entries` is the payload in wire form; walk it with
 * codec_sub_next(). The decoder has already validated every entry (count >= 1). */
struct mqtt_subscribe {
    uint16_t packet_id;
    struct mqtt_props props;
    struct slice entries;
    uint32_t count;
};

/* SUBACK and UNSUBACK: one reason code per filter (UNSUBACK on v3 has none). */
struct mqtt_suback {
    uint16_t packet_id;
    struct mqtt_props props;
    struct slice rcs;
};

/* DISCONNECT and AUTH. */
struct mqtt_reason {
    uint8_t rc;
    struct mqtt_props props;
};

struct mqtt_packet {
    uint8_t type;           /* enum mqtt_type */
    union {
        struct mqtt_connect connect;
        struct mqtt_connack connack;
        struct mqtt_publish publish;
        struct mqtt_ack ack;
        struct mqtt_subscribe subscribe;   /* also UNSUBSCRIBE */
        struct mqtt_suback suback;         /* also UNSUBACK */
        struct mqtt_reason reason;         /* DISCONNECT, AUTH */
    };
};

/* Framing: parses the fixed header at `buf` (`len` bytes available).
 * Returns the fixed header's length (2..5) and sets *frame_len to the whole packet's length
 * (fixed header + remaining length) as soon as the header is complete, even if the body is
 * not: the caller checks the frame against its size limit before buffering the body.
 * Returns 0 when more bytes are needed to finish the header, and -MQTT_RC_MALFORMED when the
 * remaining length varint is longer than 4 bytes or the packet type is 0. */
int codec_frame(const uint8_t *buf, uint32_t len, uint32_t *frame_len);

/* Decodes one complete frame (`len` is exactly the frame length from codec_frame()).
 * `version` is the connection's protocol version (ignored for CONNECT, which carries its own).
 * Returns MQTT_RC_SUCCESS and fills `out` (borrowing from `frame`), or the reason code the
 * spec requires: MQTT_RC_MALFORMED, MQTT_RC_PROTOCOL_ERROR, MQTT_RC_UNSUPPORTED_VERSION
 * (CONNECT with an unknown level or protocol name; out->connect.version holds the level),
 * MQTT_RC_TOPIC_NAME_INVALID, MQTT_RC_TOPIC_FILTER_INVALID (see docs/ for the exact table). */
enum mqtt_rc codec_decode(const uint8_t *frame, uint32_t len, uint8_t version,
                          struct mqtt_packet *out);

/* Exact encoded size of `pkt` for `version`, or 0 if it cannot be encoded (remaining length
 * over MQTT_VARINT_MAX, a string over 65535 bytes). */
uint32_t codec_size(const struct mqtt_packet *pkt, uint8_t version);

/* Encodes `pkt` into `out`, which must have codec_size() bytes. Returns bytes written. */
uint32_t codec_encode(const struct mqtt_packet *pkt, uint8_t version, uint8_t *out);

/* Decodes a PUBLISH property block in wire form without its length prefix (a stored
 * mqtt_props.raw) into a zeroed `out`, borrowing from `block`. Returns MQTT_RC_SUCCESS or the
 * decode error. */
enum mqtt_rc codec_publish_props_decode(struct slice block, struct mqtt_props *out);

/* Walks a wire-form property block. Returns true and sets *id and *value (the property's
 * value bytes, for strings and binary without their length prefix; for integers the raw
 * big-endian bytes; for a string pair, the key, with the value in *value2) for the property
 * at *pos, advancing *pos; false at the end. The block must have been validated by decode. */
bool codec_prop_next(struct slice block, uint32_t *pos, uint8_t *id, struct slice *value,
                     struct slice *value2);

/* Walks the user properties of a wire-form property block, in order. */
bool codec_user_prop_next(struct slice block, uint32_t *pos, struct slice *key,
                          struct slice *value);

/* Walks SUBSCRIBE (options != NULL) or UNSUBSCRIBE (options == NULL) entries validated by
 * decode. Returns false at the end. */
bool codec_sub_next(struct slice entries, uint32_t *pos, struct slice *filter, uint8_t *options);

/* Encodes the remaining-length varint; returns bytes written (1..4). `out` needs 4 bytes. */
uint32_t codec_varint_encode(uint32_t value, uint8_t *out);
uint32_t codec_varint_size(uint32_t value);

/* Validates MQTT UTF-8: well-formed UTF-8, no U+0000, no surrogates (checked by UTF-8 rules).
 * Control characters and non-characters are allowed, as the spec permits. */
bool codec_utf8_valid(struct slice s);

#endif
